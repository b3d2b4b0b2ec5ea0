"""XDS-I.b Imaging Document Source (IHE RAD TF-1 18, TF-3 4.68 Provide and Register Imaging
Document Set): once a study has received nothing for the quiet period
(``HIE_DICOM_XDSI_QUIET`` seconds; 0 turns publishing off), the node builds its KOS manifest
(:mod:`dicom_qr.kos`) and provides and registers it — through the node's own repository and
registry, the ITI-41 path with all its checks (or the registry of ``HIE_REGISTRY_URL``) — under
the patient's affinity-domain identifier.  The instances themselves are retrieved with RAD-69
(:mod:`dicom_qr.rad69`).

DocumentEntry (RAD TF-3 4.68.4.1.2.3): mimeType ``application/dicom``; formatCode
``1.2.840.10008.5.1.4.1.1.88.59`` (scheme 1.2.840.10008.2.6.1); classCode and typeCode LOINC
18748-4 (影像检查); eventCodeList the study's modalities (DCM); uniqueId the KOS's SOP Instance
UID; patientId the affinity-domain ID, sourcePatientId the PACS's PatientID in its domain and
sourcePatientInfo its name / birth date / sex; serviceStartTime the study's date and time;
languageCode zh-CN; title 影像检查清单 and the study description.

A study that changes after its manifest was registered (more instances) gets a new manifest
that replaces the old (RPLC association, ITI TF-3 4.2.2.2.2; the registry deprecates the old
entry).  A study whose patient has no affinity-domain identifier yet is ``waiting`` and tried
again after each quiet period, as is a ``failed`` registration (its registry errors kept in
``dicom_manifest.detail`` for the operator).

The publisher polls every quarter of the quiet period (1 to 30 s).  After its first poll it
reads only what changed (:class:`Watch`: new instance rows, studies still receiving, manifests
waiting or failed), so a poll costs the same with ten thousand instances indexed or ten million.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa
from lxml import etree
from pydicom.filebase import DicomBytesIO
from pydicom.uid import generate_uid
from sqlalchemy.engine import Connection

from dicom_qr import kos
from dicom_qr.tables import dicom_instance as I, dicom_manifest as M, dicom_patient as P
from dicom_qr.tables import dicom_series as SE, dicom_study as ST
from hie.context import SERIOUS_FAILURE, Context
from hie.errors import STATUS_FAILURE, RegistryErrors
from hie.hl7types import OID_RE
from hie.soap import SoapRequest
from hie.transactions import ITI_41
from pix_pdq.index import Identifier
from pix_pdq.tables import identifier as t_id
from xds_registry import vocab as V
from xds_registry.ebrim import LocalizedString, Slot
from xds_registry.messages import SubmitObjects
from xds_registry.model import Association, Code, DocumentEntry, SubmissionSet

log = logging.getLogger("dicom_qr.xdsi")

PUBLISHED, WAITING, FAILED = "published", "waiting", "failed"
CHUNK = 500         # study ids per statement of a poll
SETTLED = 60.0      # seconds after which an instance row is surely committed (Watch.mark)
LOINC = "2.16.840.1.113883.6.1"
DCM = "1.2.840.10008.2.16.4"
IMAGING = ("18748-4", LOINC, "影像检查")
FORMAT = Code(kos.KOS, "1.2.840.10008.2.6.1", (LocalizedString("Key Object Selection"),))
CONFIDENTIALITY = Code("N", "2.16.840.1.113883.5.25", (LocalizedString("正常"),))
FACILITY = Code("22232009", "2.16.840.1.113883.6.96", (LocalizedString("医院"),))
PRACTICE = Code("394914008", "2.16.840.1.113883.6.96", (LocalizedString("放射科"),))


def _code(value: str, scheme: str, display: str) -> Code:
    return Code(value, scheme, (LocalizedString(display),))


def due_among(conn: Connection, cutoff: dt.datetime, pks: list[int] | None
              ) -> tuple[dict[int, str], set[int]]:
    """({study id: UID} of the due studies — quiet since ``cutoff`` and their manifest missing,
    out of date (more or fewer instances than it covers), or waiting / failed and last tried
    before ``cutoff`` —; ids of the studies not quiet since ``cutoff``) among the studies of
    row ids ``pks`` (None: every study)."""
    if pks is None:
        return _look(conn, cutoff, None)
    found: dict[int, str] = {}
    active: set[int] = set()
    for at in range(0, len(pks), CHUNK):
        more, busy = _look(conn, cutoff, ST.c.id.in_(pks[at:at + CHUNK]))
        found.update(more)
        active |= busy
    return found, active


def _look(conn: Connection, cutoff: dt.datetime, where: Any) -> tuple[dict[int, str], set[int]]:
    q = _activity() if where is None else _activity().where(where)
    found, active = {}, set()
    for r in conn.execute(q):
        if _aware(r.last) > cutoff:
            active.add(r.id)
        elif _due(r, cutoff):
            found[r.id] = r.study_uid
    return found, active


def _activity() -> sa.Select:
    """Per study: its id and UID, instance count and last reception, and its manifest's
    instance count, status and last try."""
    return (sa.select(ST.c.id, ST.c.study_uid, sa.func.count(I.c.id).label("n"),
                      sa.func.max(I.c.received_at).label("last"), M.c.instances, M.c.status,
                      M.c.attempted_at)
            .select_from(ST.join(SE, SE.c.study_pk == ST.c.id).join(I, I.c.series_pk == SE.c.id)
                         .outerjoin(M, M.c.study_uid == ST.c.study_uid))
            .group_by(ST.c.id, ST.c.study_uid, M.c.instances, M.c.status, M.c.attempted_at))


def _due(r: Any, cutoff: dt.datetime) -> bool:
    """A quiet study's manifest is due: none yet, out of date, or waiting / failed and last
    tried before ``cutoff``."""
    if r.status is None:
        return True
    if r.status == PUBLISHED:
        return r.instances != r.n
    return r.attempted_at is not None and _aware(r.attempted_at) <= cutoff


def _aware(at: dt.datetime) -> dt.datetime:
    """A time read back from the database, in UTC (SQLite returns it without its zone)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.timezone.utc)


class Watch:
    """What the publisher has already looked at, so that a poll reads what changed and not the
    whole index: the instance rows up to :attr:`mark` (row ids; a row is passed only once it
    is :data:`SETTLED` seconds old, so one committed late under a lower id is still seen), and
    the studies that received instances and were not quiet yet.  A poll looks at those
    studies, the ones with newer instance rows, and the ones whose manifest waits or failed —
    never at the rest.  The first poll (a new Watch: the node just started) reads everything
    once."""

    def __init__(self) -> None:
        self.mark: int | None = None
        self.studies: set[int] = set()

    def candidates(self, conn: Connection, cutoff: dt.datetime, now: dt.datetime
                   ) -> list[int] | None:
        """The study ids a poll looks at; None for the first one (everything)."""
        if self.mark is None:               # the rows of before are settled: pass them all
            self.mark = conn.execute(sa.select(sa.func.max(I.c.id)).where(
                I.c.received_at <= now - dt.timedelta(seconds=SETTLED))).scalar() or 0
            return None
        self._advance(conn, now)
        retry = conn.execute(sa.select(ST.c.id).select_from(
            ST.join(M, M.c.study_uid == ST.c.study_uid))
            .where(M.c.status != PUBLISHED, M.c.attempted_at <= cutoff)).scalars()
        return sorted(self.studies | set(retry))

    def _advance(self, conn: Connection, now: dt.datetime) -> None:
        rows = conn.execute(sa.select(I.c.id, SE.c.study_pk, I.c.received_at)
                            .select_from(I.join(SE, I.c.series_pk == SE.c.id))
                            .where(I.c.id > self.mark).order_by(I.c.id)).all()
        settled, passing = now - dt.timedelta(seconds=SETTLED), True
        for row in rows:
            self.studies.add(row.study_pk)
            passing = passing and _aware(row.received_at) <= settled
            if passing:
                self.mark = row.id

    def looked_at(self, active: set[int], failed: set[int], all_: set[int] | None) -> None:
        """After a poll: the studies still receiving (``active``) or whose publishing failed
        (``failed``) stay watched; the others of ``all_`` (None: every one) are done."""
        keep = active | failed
        self.studies = keep if all_ is None else (self.studies - all_) | keep


def affinity_id(conn: Connection, domain: str, patient_id: str, affinity: str) -> str | None:
    """The affinity-domain identifier of the person the index holds ``patient_id`` for."""
    if not domain or not affinity:
        return None
    person = sa.select(t_id.c.person_id).where(t_id.c.domain_oid == domain,
                                               t_id.c.value == patient_id).scalar_subquery()
    return conn.execute(sa.select(t_id.c.value).where(
        t_id.c.person_id == person, t_id.c.domain_oid == affinity,
        t_id.c.status == "active").limit(1)).scalar()


def _study(conn: Connection, study_uid: str):
    return conn.execute(sa.select(ST, P.c.patient_id, P.c.issuer, P.c.patient_name,
                                  P.c.birth_date, P.c.sex, P.c.domain)
                        .select_from(ST.join(P, ST.c.patient_pk == P.c.id))
                        .where(ST.c.study_uid == study_uid)).mappings().first()


def _instances(conn: Connection, study_pk: int) -> list[tuple[kos.Referenced, str]]:
    rows = conn.execute(sa.select(SE.c.series_uid, I.c.sop_class, I.c.sop_uid, SE.c.modality)
                        .select_from(SE.join(I, I.c.series_pk == SE.c.id))
                        .where(SE.c.study_pk == study_pk)
                        .order_by(SE.c.id, I.c.id)).all()
    return [(kos.Referenced(r.series_uid, r.sop_class, r.sop_uid), r.modality) for r in rows]


def _dtm(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y%m%d%H%M%S")


def submission(node: Any, study, modalities: list[str], manifest_uid: str, eid: str,
               previous_entry: str, now: dt.datetime) -> tuple[SubmitObjects, str]:
    """The ITI-41 metadata of a manifest (and the new DocumentEntry's entryUUID)."""
    s = node.settings
    patient = Identifier(eid, s.affinity_domain, "", "ISO").cx
    domain = study["domain"]
    # the PACS's own identifier when its domain is an OID (sourcePatientId is a CX with only
    # the universal id, ITI TF-3 4.2.3.2.22), else the affinity-domain one
    source = Identifier(study["patient_id"], domain, "", "ISO").cx \
        if OID_RE.fullmatch(domain or "") else patient
    info = [f"PID-3|{source}"]
    if study["patient_name"]:
        info.append(f"PID-5|{study['patient_name'].split('=')[-1]}")
    if study["birth_date"]:
        info.append(f"PID-7|{study['birth_date']}")
    if study["sex"]:
        info.append(f"PID-8|{study['sex']}")
    start = (study["study_date"] + study["study_time"].split(".")[0])[:14]
    title = "影像检查清单" + (f" {study['description']}" if study["description"] else "")
    de_id, ss_id = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    de = DocumentEntry(
        id=de_id, mime_type="application/dicom", patient_id=patient, unique_id=manifest_uid,
        class_code=_code(*IMAGING), type_code=_code(*IMAGING), format_code=FORMAT,
        hcft_code=FACILITY, practice_code=PRACTICE, confidentiality_codes=(CONFIDENTIALITY,),
        event_codes=tuple(_code(m, DCM, m) for m in modalities),
        creation_time=_dtm(now), service_start_time=start if len(start) >= 8 else None,
        language_code="zh-CN", source_patient_id=source, source_patient_info=tuple(info),
        title=(LocalizedString(title[:256]),))
    ss = SubmissionSet(
        id=ss_id, submission_time=_dtm(now), content_type=_code(*IMAGING), patient_id=patient,
        source_id=s.repository_unique_id, unique_id=generate_uid(),
        title=(LocalizedString("影像检查清单"),))
    assocs = [Association(id=f"urn:uuid:{uuid.uuid4()}", type=V.HAS_MEMBER, source=ss_id,
                          target=de_id,
                          extra_slots=(Slot("SubmissionSetStatus", ("Original",)),))]
    if previous_entry:
        assocs.append(Association(id=f"urn:uuid:{uuid.uuid4()}", type=V.RPLC, source=de_id,
                                  target=previous_entry))
    return SubmitObjects(submission_sets=[ss], documents=[de], associations=assocs), de_id


def _request(objects: SubmitObjects, entry_id: str, data: bytes) -> etree._Element:
    xdsb = "{%s}" % V.XDSB_NS
    root = etree.Element(xdsb + "ProvideAndRegisterDocumentSetRequest",
                         nsmap={"xdsb": V.XDSB_NS})
    root.append(objects.to_ebrim())
    etree.SubElement(root, xdsb + "Document", {"id": entry_id}).text = \
        base64.b64encode(data).decode("ascii")
    return root


def publish(node: Any, study_uid: str, now: dt.datetime | None = None) -> str:
    """Build and register the manifest of one study; its new ``dicom_manifest`` status."""
    from xds_repository.iti41 import provide_and_register

    now = now or dt.datetime.now(dt.timezone.utc)
    s = node.settings
    with node.db.read() as conn:
        study = _study(conn, study_uid)
        refs = _instances(conn, study["id"]) if study else []
        old = conn.execute(sa.select(M).where(M.c.study_uid == study_uid)).mappings().first()
        eid = affinity_id(conn, study["domain"], study["patient_id"], s.affinity_domain) \
            if study else None
    if study is None or not refs:
        return ""
    previous = old["entry_uuid"] if old else ""     # the last one registered, if any
    record = {"study_uid": study_uid, "instances": len(refs), "attempted_at": now}
    if eid is None:
        _save(node, old, dict(record, status=WAITING, kos_uid=old["kos_uid"] if old else "",
                              entry_uuid=previous,
                              detail="the patient has no affinity-domain identifier yet"))
        return WAITING
    info = kos.StudyInfo(study_uid, study["patient_id"], study["issuer"],
                         study["patient_name"], study["birth_date"], study["sex"],
                         study["study_date"], study["study_time"], study["accession"],
                         study["study_id"], study["description"], study["referring"])
    ds = kos.manifest(info, [r for r, _m in refs], ae_title=s.dicom_ae_title,
                      location_uid=s.repository_unique_id, now=now)
    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    modalities = sorted({m for _r, m in refs if m})
    objects, entry_id = submission(node, study, modalities, str(ds.SOPInstanceUID), eid,
                                   previous, now)
    ctx, started = Context(node, ITI_41, principal=s.dicom_ae_title), time.perf_counter()
    try:
        response = provide_and_register(ctx, SoapRequest(ITI_41.action, _request(
            objects, entry_id, buf.getvalue())))
        errors = [f"{e.error_code}: {e.code_context}" for e in response.errors if e.is_error]
        failed = response.status == STATUS_FAILURE
    except RegistryErrors as exc:
        errors, failed = [f"{e.error_code}: {e.code_context}" for e in exc.errors], True
    if failed:
        ctx.fail(SERIOUS_FAILURE, "; ".join(errors)[:4000])
    ctx.finish(time.perf_counter() - started)
    if failed:
        log.warning("XDS-I manifest of study %s not registered: %s", study_uid, errors)
        _save(node, old, dict(record, status=FAILED, kos_uid=old["kos_uid"] if old else "",
                              entry_uuid=previous, detail="; ".join(errors)[:4000]))
        return FAILED
    _save(node, old, dict(record, status=PUBLISHED, kos_uid=str(ds.SOPInstanceUID),
                          entry_uuid=entry_id, detail=""))
    log.info("XDS-I manifest %s of study %s registered (%d instances)", ds.SOPInstanceUID,
             study_uid, len(refs))
    return PUBLISHED


def _save(node: Any, old, values: dict) -> None:
    with node.db.begin() as conn:
        if old is None:
            conn.execute(M.insert().values(**values))
        else:
            conn.execute(M.update().where(M.c.study_uid == values["study_uid"]).values(**values))


def publish_due(node: Any, now: dt.datetime | None = None, watch: Watch | None = None
                ) -> dict[str, str]:
    """Publish every study due now; study UID -> status.  With ``watch`` (the publisher's),
    only the studies it names are looked at (after its first poll)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(seconds=node.settings.dicom_xdsi_quiet)
    with node.db.read() as conn:
        pks = watch.candidates(conn, cutoff, now) if watch is not None else None
        studies, active = due_among(conn, cutoff, pks)
    out = {}
    for uid in sorted(studies.values()):
        try:
            out[uid] = publish(node, uid, now)
        except Exception:  # noqa: BLE001 - one study's failure does not stop the others
            log.exception("XDS-I manifest of study %s", uid)
            out[uid] = FAILED
    if watch is not None:
        failed = {pk for pk, uid in studies.items() if out[uid] == FAILED}
        watch.looked_at(active, failed, None if pks is None else set(pks))
    return out


class Publisher:
    """The background thread that publishes due studies (main process only)."""

    def __init__(self, node: Any):
        self.node = node
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        quiet = self.node.settings.dicom_xdsi_quiet
        if quiet <= 0 or not self.node.settings.affinity_domain or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(max(1.0, min(30.0,
                                                                              quiet / 4)),),
                                        name="hie-xdsi", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self, interval: float) -> None:
        watch = Watch()
        while not self._stop.wait(interval):
            try:
                publish_due(self.node, watch=watch)
            except Exception:  # noqa: BLE001 - a database outage: try again next time
                log.exception("XDS-I publishing")


__all__ = ["PUBLISHED", "WAITING", "FAILED", "due_among", "Watch", "affinity_id",
           "submission", "publish", "publish_due", "Publisher"]

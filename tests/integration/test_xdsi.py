"""XDS-I.b (dicom_qr.xdsi, kos, rad69) on a live node, SQLite and PostgreSQL: a study stored with
DCMTK's storescu, once quiet, gets a KOS manifest registered under the patient's affinity-domain
ID (found with ITI-18, retrieved with ITI-43, read with pydicom); a study that grows gets a new
manifest replacing the old; a patient without an affinity-domain ID waits — each by a poll of
the whole index and by the publisher's watched polls, which look only at what changed; RAD-69 at
/xds/imaging returns the instances as stored (or re-encoded), with its RegistryErrors."""
from __future__ import annotations

import datetime as dt
import io
import time

import httpx
import pydicom
import pytest
import sqlalchemy as sa
from lxml import etree
from pydicom.uid import generate_uid

from conformance import soap_client as S
from dicom_qr import kos, rad69, xdsi
from dicom_qr.tables import dicom_manifest, dicom_study
from tests.dicom_support import instance, run
from tests.integration.test_dicom_patients import adt, feed
from tests.live import live_with
from tests.mllp_support import resident_id
from tests.xdsdata import AFFINITY_DOMAIN

Q = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
LATER = dt.timedelta(hours=1)


def store(live, *paths) -> None:
    host, port = live.node.listeners["dicom"]
    done = run("storescu", "-aec", live.settings.dicom_ae_title, host, str(port),
               *map(str, paths))
    assert done.returncode == 0, done.stderr.decode(errors="replace")


@pytest.fixture
def study(live, tmp_path):
    """Patient E0100 (MRN XH0100) with a CT study of two instances (one implicit VR)."""
    feed(live, adt("XH0100", "E0100", resident_id("110101", "19800101", "051"), name="宋^江"))
    uid, series = generate_uid(), generate_uid()
    paths = [instance(tmp_path, f"s{k}.dcm", patient_id="XH0100", patient_name="宋^江",
                      charset="ISO_IR 192", study=uid, series=series, number=k, issuer="XH",
                      implicit=k == 1)
             for k in range(2)]
    store(live, *paths)
    return {"uid": uid, "series": series, "paths": paths,
            "sops": [str(pydicom.dcmread(p).SOPInstanceUID) for p in paths]}


@pytest.fixture(params=["whole", "watched"])
def poll(request, live):
    """publish_due on the whole index each time, or as the publisher polls: with its Watch
    (after a first poll of everything, only what changed)."""
    watch = xdsi.Watch() if request.param == "watched" else None
    return lambda now=None: xdsi.publish_due(live.node, now, watch)


def soap(url: str, action: str, body: etree._Element) -> S.SoapReply:
    req = S.plain(action, body, url)
    r = httpx.post(url, content=req.body, headers={"content-type": req.content_type}, timeout=30)
    assert r.status_code == 200, r.text
    return S.read_reply(r.headers["content-type"], r.content)


def find_documents(live, patient: str, status: str = "Approved") -> list[etree._Element]:
    req = etree.Element(f"{{{Q}}}AdhocQueryRequest", nsmap={"query": Q, "rim": RIM})
    etree.SubElement(req, f"{{{Q}}}ResponseOption", returnType="LeafClass")
    q = etree.SubElement(req, f"{{{RIM}}}AdhocQuery", id=FIND_DOCUMENTS)
    for name, value in (("$XDSDocumentEntryPatientId", f"'{patient}'"),
                        ("$XDSDocumentEntryStatus",
                         f"('urn:oasis:names:tc:ebxml-regrep:StatusType:{status}')")):
        slot = etree.SubElement(q, f"{{{RIM}}}Slot", name=name)
        etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"),
                         f"{{{RIM}}}Value").text = value
    reply = soap(live.http + "/xds/registry", "urn:ihe:iti:2007:RegistryStoredQuery", req)
    return list(reply.body.iter(f"{{{RIM}}}ExtrinsicObject"))


def unique_id(eo: etree._Element) -> str:
    return [e.get("value") for e in eo.iter(f"{{{RIM}}}ExternalIdentifier")
            if e.get("identificationScheme") == "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"][0]


def retrieve_document(live, uid: str) -> bytes:
    root = etree.Element(f"{{{S.XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": S.XDSB})
    dr = etree.SubElement(root, f"{{{S.XDSB}}}DocumentRequest")
    etree.SubElement(dr, f"{{{S.XDSB}}}RepositoryUniqueId").text = \
        live.settings.repository_unique_id
    etree.SubElement(dr, f"{{{S.XDSB}}}DocumentUniqueId").text = uid
    reply = soap(live.http + "/xds/repository", "urn:ihe:iti:2007:RetrieveDocumentSet", root)
    inc = reply.body.find(f".//{{{S.XDSB}}}Document/{{{S.XOP}}}Include")
    return reply.attachments[inc.get("href").removeprefix("cid:")]


def test_a_quiet_study_gets_its_manifest_registered(live, study, poll):
    assert poll() == {}                  # not quiet yet
    later = dt.datetime.now(dt.timezone.utc) + LATER
    assert poll(later) == {study["uid"]: xdsi.PUBLISHED}
    assert poll(later) == {}           # published: nothing to do
    patient = f"E0100^^^&{AFFINITY_DOMAIN}&ISO"
    [eo] = find_documents(live, patient)
    assert eo.get("mimeType") == "application/dicom"
    fmt = [c for c in eo.iter(f"{{{RIM}}}Classification")
           if c.get("classificationScheme") == "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"]
    assert fmt[0].get("nodeRepresentation") == kos.KOS
    manifest = pydicom.dcmread(io.BytesIO(retrieve_document(live, unique_id(eo))))
    assert manifest.SOPClassUID == kos.KOS and manifest.StudyInstanceUID == study["uid"]
    [ev] = manifest.CurrentRequestedProcedureEvidenceSequence
    [series] = ev.ReferencedSeriesSequence
    assert series.RetrieveLocationUID == live.settings.repository_unique_id
    assert sorted(r.ReferencedSOPInstanceUID for r in series.ReferencedSOPSequence) == \
        sorted(study["sops"])
    assert [i.ValueType for i in manifest.ContentSequence] == ["IMAGE", "IMAGE"]
    assert manifest.ConceptNameCodeSequence[0].CodeValue == "113030"


def test_a_study_that_grows_gets_a_manifest_replacing_the_old(live, study, tmp_path, poll):
    later = dt.datetime.now(dt.timezone.utc) + LATER
    poll(later)
    more = instance(tmp_path, "more.dcm", patient_id="XH0100", patient_name="宋^江",
                    charset="ISO_IR 192", study=study["uid"], series=study["series"], number=7,
                    issuer="XH")
    store(live, more)
    assert poll(later + LATER) == {study["uid"]: xdsi.PUBLISHED}
    patient = f"E0100^^^&{AFFINITY_DOMAIN}&ISO"
    [new] = find_documents(live, patient)
    [old] = find_documents(live, patient, "Deprecated")
    assert unique_id(new) != unique_id(old)
    manifest = pydicom.dcmread(io.BytesIO(retrieve_document(live, unique_id(new))))
    refs = manifest.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert len(refs.ReferencedSOPSequence) == 3


def test_a_patient_without_an_enterprise_id_waits(live, tmp_path, poll):
    uid = generate_uid()
    store(live, instance(tmp_path, "w.dcm", patient_id="TT1", patient_name="卢^俊义",
                         charset="ISO_IR 192", study=uid, series=generate_uid(),
                         issuer="1.2.156.112604.1.3.2"))
    later = dt.datetime.now(dt.timezone.utc) + LATER
    assert poll(later) == {uid: xdsi.WAITING}
    with live.node.db.read() as c:
        row = c.execute(sa.select(dicom_manifest)).mappings().one()
    assert row["status"] == "waiting" and "affinity-domain" in row["detail"]
    assert poll(later) == {}               # tried again next period
    assert poll(later + LATER) == {uid: xdsi.WAITING}


def test_a_watched_poll_looks_only_at_what_changed(live, study, tmp_path, monkeypatch):
    watch, later = xdsi.Watch(), dt.datetime.now(dt.timezone.utc) + LATER
    assert xdsi.publish_due(live.node, later, watch) == {study["uid"]: xdsi.PUBLISHED}
    seen: list[list[int]] = []
    real = xdsi.due_among
    monkeypatch.setattr(xdsi, "due_among", lambda conn, cutoff, pks: (seen.append(pks),
                                                                      real(conn, cutoff, pks))[1])
    assert xdsi.publish_due(live.node, later, watch) == {}
    assert seen[-1] == []                         # the published study is not read again
    other, series = generate_uid(), generate_uid()
    store(live, instance(tmp_path, "o.dcm", patient_id="XH0100", patient_name="宋^江",
                         charset="ISO_IR 192", study=other, series=series, issuer="XH"))
    assert xdsi.publish_due(live.node, later + LATER, watch) == {other: xdsi.PUBLISHED}
    with live.node.db.read() as c:
        ids = dict(c.execute(sa.select(dicom_study.c.study_uid, dicom_study.c.id)).all())
    assert seen[-1] == [ids[other]]               # the new study alone
    assert xdsi.publish_due(live.node, later + 2 * LATER, watch) == {}
    assert seen[-1] == []


def rad69_request(repo: str, study: str, series: str, sops: list[str],
                  syntaxes: tuple[str, ...] = ("1.2.840.10008.1.2.1",)) -> etree._Element:
    ns = rad69.XDSI_NS
    root = etree.Element(f"{{{ns}}}RetrieveImagingDocumentSetRequest",
                         nsmap={"xdsiB": ns, "xdsb": S.XDSB})
    st = etree.SubElement(root, f"{{{ns}}}StudyRequest", studyInstanceUID=study)
    se = etree.SubElement(st, f"{{{ns}}}SeriesRequest", seriesInstanceUID=series)
    for sop in sops:
        dr = etree.SubElement(se, f"{{{S.XDSB}}}DocumentRequest")
        etree.SubElement(dr, f"{{{S.XDSB}}}RepositoryUniqueId").text = repo
        etree.SubElement(dr, f"{{{S.XDSB}}}DocumentUniqueId").text = sop
    lst = etree.SubElement(root, f"{{{ns}}}TransferSyntaxUIDList")
    for ts in syntaxes:
        etree.SubElement(lst, f"{{{ns}}}TransferSyntaxUID").text = ts
    return root


def test_rad69_returns_the_instances(live, study):
    repo, url = live.settings.repository_unique_id, live.http + "/xds/imaging"
    action = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
    reply = soap(url, action, rad69_request(repo, study["uid"], study["series"], study["sops"]))
    assert reply.action == "urn:ihe:iti:2007:RetrieveDocumentSetResponse"
    assert S.registry_status(reply.body) == ("Success", [])
    docs = reply.body.findall(f"{{{S.XDSB}}}DocumentResponse")
    assert [d.findtext(f"{{{S.XDSB}}}mimeType") for d in docs] == ["application/dicom"] * 2
    got = {d.findtext(f"{{{S.XDSB}}}DocumentUniqueId"): reply.attachments[
        d.find(f"{{{S.XDSB}}}Document/{{{S.XOP}}}Include").get("href").removeprefix("cid:")]
        for d in docs}
    first = pydicom.dcmread(io.BytesIO(got[study["sops"][0]]))
    second = pydicom.dcmread(io.BytesIO(got[study["sops"][1]]))   # stored implicit VR
    assert got[study["sops"][0]].endswith(study["paths"][0].read_bytes()[-64:])
    assert second.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert first.PatientName == second.PatientName == "宋^江"


def test_rad69_errors(live, study):
    repo, url = live.settings.repository_unique_id, live.http + "/xds/imaging"
    action = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
    partial = soap(url, action, rad69_request(repo, study["uid"], study["series"],
                                              [study["sops"][0], generate_uid()]))
    status, errors = S.registry_status(partial.body)
    assert status == "PartialSuccess" and [e.code for e in errors] == ["XDSDocumentUniqueIdError"]
    other = soap(url, action, rad69_request("1.2.3.4", study["uid"], study["series"],
                                            study["sops"][:1]))
    assert [e.code for e in S.registry_status(other.body)[1]] == ["XDSUnknownRepositoryId"]
    jpeg_only = soap(url, action, rad69_request(repo, study["uid"], study["series"],
                                                study["sops"][:1], ("1.2.840.10008.1.2.4.50",)))
    status, errors = S.registry_status(jpeg_only.body)
    assert status == "Failure" and [e.code for e in errors] == ["XDSRepositoryError"]


def test_the_node_publishes_by_itself_after_the_quiet_period(node, tmp_path):
    with live_with(node, dicom_xdsi_quiet=1) as ln:
        feed(ln, adt("XH0101", "E0101", resident_id("110101", "19800101", "060"), name="林^冲"))
        uid = generate_uid()
        store(ln, instance(tmp_path, "q.dcm", patient_id="XH0101", patient_name="林^冲",
                           charset="ISO_IR 192", study=uid, series=generate_uid(), issuer="XH"))
        deadline, status = time.time() + 30, None
        while time.time() < deadline and status != "published":
            with ln.node.db.read() as c:
                status = c.execute(sa.select(dicom_manifest.c.status).where(
                    dicom_manifest.c.study_uid == uid)).scalar()
            time.sleep(0.2)
        assert status == "published"
        assert len(find_documents(ln, f"E0101^^^&{AFFINITY_DOMAIN}&ISO")) == 1

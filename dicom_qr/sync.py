"""Back-fill from a source PACS — the "update now" button of requirement 001: compare what the
source holds (C-FIND, DICOM PS3.4 C.4.1, Study Root, hierarchical so that any PACS answers)
with the node's index, and C-MOVE (PS3.4 C.4.2) what is missing to the node.

1. C-FIND STUDY with the selection (PatientID, StudyInstanceUID, a StudyDate range from
   ``--since``) and the return keys StudyInstanceUID, PatientID, PatientName,
   NumberOfStudyRelatedInstances;
2. a study the node does not hold at all is moved whole (C-MOVE STUDY); a study whose
   instance count the source gives and the node matches is up to date; otherwise its series
   (C-FIND SERIES) and instances (C-FIND IMAGE per series) are listed and the instances the
   index lacks are moved at IMAGE level, their SOPInstanceUIDs as a UID list (C.2.2.2.2), in
   chunks of :data:`UID_CHUNK`;
3. the index is read again: the summary says what is now held.

The Move Destination is the node's own AE title (``HIE_DICOM_AE_TITLE``, or ``--dest``): the
source PACS must know it, and the node's listener (``hie serve``) receives the instances.
The work is sans-IO apart from :class:`Source` (the association) and the index reads, so the
plan (:func:`missing`) is tested on its own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from pydicom.dataset import Dataset
from pynetdicom.sop_class import (StudyRootQueryRetrieveInformationModelFind as FIND,
                                  StudyRootQueryRetrieveInformationModelMove as MOVE)

from dicom_qr.attrs import text_of
from dicom_qr.tables import dicom_instance as I, dicom_series as SE, dicom_study as ST
from hie.settings import Peer

log = logging.getLogger("dicom_qr.sync")

UID_CHUNK = 100
SUCCESS, WARNING = 0x0000, 0xB000


class SyncError(Exception):
    """The source cannot be reached or refuses a query (a message for the operator)."""


@dataclass
class Study:
    uid: str
    patient_id: str = ""
    patient_name: str = ""
    remote_count: int | None = None    # NumberOfStudyRelatedInstances, when the source gives it
    local_count: int = 0
    missing: int = 0                   # instances moved for (or the whole study: remote count)
    moved: int = 0
    failed: int = 0
    held_after: int = 0
    note: str = ""


@dataclass
class Summary:
    studies: list[Study] = field(default_factory=list)

    @property
    def up_to_date(self) -> int:
        return sum(1 for s in self.studies if not s.missing and not s.failed and not s.note)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.studies) + sum(1 for s in self.studies if s.note)

    def lines(self) -> list[str]:
        out = [f"{len(self.studies)} studies at the source, {self.up_to_date} up to date"]
        for s in self.studies:
            if s.missing or s.failed or s.note:
                out.append(f"  {s.uid} {s.patient_id} {s.patient_name}: missing {s.missing}, "
                           f"moved {s.moved}, failed {s.failed}, now held {s.held_after}"
                           + (f" ({s.note})" if s.note else ""))
        moved = sum(s.moved for s in self.studies)
        out.append(f"moved {moved} instance(s), {self.failed} failure(s)")
        return out


class Source:
    """An association with the source PACS for C-FIND and C-MOVE (Study Root)."""

    def __init__(self, peer: Peer, ae_title: str):
        from dicom_qr.association import NodeAE
        ae = NodeAE(ae_title=ae_title)
        ae.add_requested_context(FIND)
        ae.add_requested_context(MOVE)
        self.peer = peer
        self.assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
        if not self.assoc.is_established:
            raise SyncError(f"no association with {peer}")

    def find(self, keys: dict[str, str]) -> list[Dataset]:
        q = Dataset()
        q.SpecificCharacterSet = "ISO_IR 192"
        for k, v in keys.items():
            setattr(q, k, v)
        out = []
        for status, ident in self.assoc.send_c_find(q, FIND):
            code = int(getattr(status, "Status", -1)) if status else -1
            if code in (0xFF00, 0xFF01):
                if ident is not None:
                    out.append(ident)
            elif code != SUCCESS:
                raise SyncError(f"C-FIND {keys.get('QueryRetrieveLevel')} at "
                                f"{self.peer.ae_title}: status 0x{code & 0xFFFF:04X}"
                                if code >= 0 else "C-FIND: no answer")
        return out

    def move(self, keys: dict[str, str], dest: str) -> tuple[int, int]:
        """(completed, failed) sub-operations of a C-MOVE to ``dest``."""
        q = Dataset()
        for k, v in keys.items():
            setattr(q, k, v)
        counts = {"completed": 0, "warning": 0, "failed": 0}
        final = -1
        for status, _ident in self.assoc.send_c_move(q, dest, MOVE):
            if not status:
                continue
            final = int(status.Status)
            for name in counts:
                value = status.get(f"NumberOf{name.capitalize()}Suboperations", None)
                if value is not None:
                    counts[name] = int(value)
        done, failed = counts["completed"] + counts["warning"], counts["failed"]
        if final == 0xA801:
            raise SyncError(f"{self.peer.ae_title} does not know the Move Destination {dest}")
        if final not in (SUCCESS, WARNING) and not failed:
            failed = 1
        return done, failed

    def close(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()


def selection(patient: str | None, study: str | None, since: str | None) -> dict[str, str]:
    keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study or "",
            "PatientID": patient or "", "PatientName": "", "StudyDate": "",
            "NumberOfStudyRelatedInstances": ""}
    if since:
        keys["StudyDate"] = since.replace("-", "") + "-"
    return keys


def held(conn, study_uid: str) -> set[str]:
    """The SOPInstanceUIDs the index holds of a study."""
    return set(conn.execute(sa.select(I.c.sop_uid).select_from(
        I.join(SE, I.c.series_pk == SE.c.id).join(ST, SE.c.study_pk == ST.c.id))
        .where(ST.c.study_uid == study_uid)).scalars())


def missing(remote: dict[str, list[str]], local: set[str]) -> dict[str, list[str]]:
    """Series UID -> the instances of ``remote`` (series -> instances) not in ``local``."""
    return {series: [u for u in uids if u not in local]
            for series, uids in remote.items() if any(u not in local for u in uids)}


def chunks(items: list[str], size: int = UID_CHUNK) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run(node: Any, peer: Peer, *, patient: str | None = None, study: str | None = None,
        since: str | None = None, dest: str | None = None,
        progress: Callable[[int, int, Study], None] | None = None) -> Summary:
    """Compare ``peer`` with the index and move what is missing; the :class:`Summary`."""
    dest = dest or node.settings.dicom_ae_title
    source = Source(peer, node.settings.dicom_ae_title)
    summary = Summary()
    try:
        found = source.find(selection(patient, study, since))
        for ident in found:
            uid = text_of(ident.get("StudyInstanceUID", ""))
            if not uid:
                continue
            count = text_of(ident.get("NumberOfStudyRelatedInstances", ""))
            summary.studies.append(Study(uid, text_of(ident.get("PatientID", "")),
                                         text_of(ident.get("PatientName", "")),
                                         int(count) if count.isdigit() else None))
        for n, s in enumerate(summary.studies, 1):
            _one(node, source, s, dest)
            if progress is not None:
                progress(n, len(summary.studies), s)
    finally:
        source.close()
    return summary


def _one(node: Any, source: Source, s: Study, dest: str) -> None:
    with node.db.read() as conn:
        local = held(conn, s.uid)
    s.local_count = len(local)
    if s.remote_count is not None and s.remote_count == len(local):
        s.held_after = len(local)
        return
    try:
        if not local:
            s.missing = s.remote_count or 0
            done, failed = source.move({"QueryRetrieveLevel": "STUDY",
                                        "StudyInstanceUID": s.uid}, dest)
            s.moved, s.failed = done, failed
            s.missing = s.missing or done + failed
        else:
            remote: dict[str, list[str]] = {}
            for series in source.find({"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": s.uid,
                                       "SeriesInstanceUID": ""}):
                suid = text_of(series.get("SeriesInstanceUID", ""))
                images = source.find({"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": s.uid,
                                      "SeriesInstanceUID": suid, "SOPInstanceUID": ""})
                remote[suid] = [text_of(i.get("SOPInstanceUID", "")) for i in images]
            todo = missing(remote, local)
            s.missing = sum(len(v) for v in todo.values())
            for suid, uids in todo.items():
                for part in chunks(uids):
                    done, failed = source.move({"QueryRetrieveLevel": "IMAGE",
                                                "StudyInstanceUID": s.uid,
                                                "SeriesInstanceUID": suid,
                                                "SOPInstanceUID": "\\".join(part)}, dest)
                    s.moved += done
                    s.failed += failed
    except SyncError as exc:
        s.note = str(exc)
        log.warning("sync of study %s: %s", s.uid, exc)
    with node.db.read() as conn:
        s.held_after = len(held(conn, s.uid))


__all__ = ["SyncError", "Study", "Summary", "Source", "selection", "held", "missing", "chunks",
           "run"]

"""STOW-RS, Store Transaction (DICOM PS3.18 10.5): a ``multipart/related;
type="application/dicom"`` body of PS3.10 files, each stored like a C-STORE
(:func:`dicom_qr.receive.accept`: bytes kept as sent, indexed, tied to the patient index,
forwarded) — and the answer (10.5.3) in the DICOM JSON Model.

- Each part must be ``application/dicom`` and a PS3.10 file (preamble, ``DICM``, File Meta
  Information); a part that is not, or that the node cannot store, is in FailedSOPSequence
  (0008,1198) with its FailureReason (PS3.18 Table 10.5.3-2 uses the C-STORE statuses):
  0xC000 cannot understand, 0xA700 out of resources, 0xA900 for an instance whose Study
  Instance UID is not the one of the target resource (``/studies/{study}``);
- the stored ones are in ReferencedSOPSequence (0008,1199) with their RetrieveURL;
- HTTP status: 200 all stored, 202 some stored (with a Warning), 409 none stored; a body that
  is not multipart/related of application/dicom is 415, a malformed one 400.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable

import pydicom
from pydicom.dataset import Dataset

from dicom_qr import receive
from hie.mtom import parse_content_type

CANNOT_UNDERSTAND, MISMATCH = 0xC000, 0xA900


class StowError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_content_type(header: str) -> None:
    """415 unless the body is multipart/related of application/dicom parts."""
    mime, params = parse_content_type(header or "")
    if mime != "multipart/related":
        raise StowError(415, f"the body must be multipart/related, not {mime or 'untyped'}")
    kind = params.get("type", "application/dicom").lower()
    if kind != "application/dicom":
        raise StowError(415, f"only type=\"application/dicom\" parts are stored, not {kind}")


@dataclass
class Result:
    stored: list[receive.Outcome] = field(default_factory=list)
    failed: list[receive.Outcome] = field(default_factory=list)

    @property
    def http_status(self) -> int:
        if not self.failed:
            return 200
        return 202 if self.stored else 409


def store_part(node: Any, ctx, data: bytes, content_type: str, study: str | None,
               source: str, cache) -> receive.Outcome:
    """Store one part; its outcome."""
    mime, _params = parse_content_type(content_type or "application/dicom")
    if mime != "application/dicom":
        return receive.Outcome(CANNOT_UNDERSTAND, f"a {mime} part is not a DICOM instance")
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        syntax = str(ds.file_meta.TransferSyntaxUID)
    except Exception:  # noqa: BLE001 - not a PS3.10 file pydicom can read
        return receive.Outcome(CANNOT_UNDERSTAND, "not a DICOM file (PS3.10)")
    if study and str(ds.get("StudyInstanceUID", "")) != study:
        return receive.Outcome(MISMATCH, "not of the study of the request",
                               str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")))
    try:
        received = receive.Received.of(ds)
    except Exception:  # noqa: BLE001 - its attributes cannot be decoded
        return receive.Outcome(CANNOT_UNDERSTAND, "the data set cannot be decoded")
    return receive.accept(node, ctx, received, lambda: node.blobs.put(data), syntax, source,
                          cache)


def answer(result: Result, url_of: Callable[[receive.Outcome], str], study_url: str | None
           ) -> dict:
    """The DICOM JSON of the Store Instances Response Module (PS3.18 Table 10.5.3-1)."""
    ds = Dataset()
    if study_url:
        ds.RetrieveURL = study_url
    if result.failed:
        items = []
        for f in result.failed:
            item = Dataset()
            item.ReferencedSOPClassUID = f.sop_class or None
            item.ReferencedSOPInstanceUID = f.sop_uid or None
            item.FailureReason = f.status
            items.append(item)
        ds.FailedSOPSequence = items
    if result.stored:
        items = []
        for s in result.stored:
            item = Dataset()
            item.ReferencedSOPClassUID = s.sop_class
            item.ReferencedSOPInstanceUID = s.sop_uid
            item.RetrieveURL = url_of(s)
            items.append(item)
        ds.ReferencedSOPSequence = items
    return ds.to_json_dict()


__all__ = ["StowError", "Result", "check_content_type", "store_part", "answer"]

"""The request of one test step, built from its test plan — sans-IO.

A step of a NIST test plan names a transaction and a metadata file; this module makes the SOAP
body the transaction sends (ITI TF-2b / TF-2x Appendix V), after :mod:`conformance.prepare`
(placeholders, patient id, uniqueIds, entryUUIDs) and :mod:`conformance.ebrim21` (2.1 files):

==========  =======================================================  ============
transaction body (ITI TF-2b section)                                  sent to
==========  =======================================================  ============
ITI-41      ``xdsb:ProvideAndRegisterDocumentSetRequest`` (3.41.4.1.2):  repository
            the SubmitObjectsRequest and one ``xdsb:Document`` per
            ``Document`` of the plan, by the entryUUID its
            DocumentEntry got — sent as MTOM
ITI-42      ``lcm:SubmitObjectsRequest`` (3.42.4.1.2)                  registry
ITI-57      ``lcm:SubmitObjectsRequest`` (ITI TF-2b 3.57.4.1.2)         registry
ITI-18      ``query:AdhocQueryRequest`` (3.18.4.1.2)                    registry
ITI-43      ``xdsb:RetrieveDocumentSetRequest`` (3.43.4.1.2)            repository
ITI-62      ``lcm:RemoveObjectsRequest`` (ITI TF-2b 3.62.4.1.2)         registry
ITI-38      ``query:AdhocQueryRequest`` (ITI TF-2b 3.38.4.1.2)          gateway (query)
ITI-39      ``xdsb:RetrieveDocumentSetRequest`` (3.39.4.1.2)            gateway (retrieve)
==========  =======================================================  ============

Besides the placeholders the plan's ``UseId`` / ``UseReport`` give, a run gives
:func:`builtins`: ``$now$`` and ``$lastyear$`` (DTM, UTC), ``$DATE$`` (today, YYYYMMDD, for
assertions) and ``$repuid$`` (the repository's uniqueId, ``--repository-uid``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from lxml import etree

from conformance import ebrim21, prepare
from conformance.soap_client import ACTIONS, XDSB
from conformance.testplan import Transaction

LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
ENDPOINTS = {"ITI-41": "repository", "ITI-43": "repository", "ITI-42": "registry",
             "ITI-57": "registry", "ITI-18": "registry", "ITI-62": "registry",
             # a Responding Gateway: its query endpoint in the registry's place, its
             # retrieve endpoint in the repository's
             "ITI-38": "registry", "ITI-39": "repository"}
# the transactions whose metadata carries patient ids, uniqueIds and entryUUIDs to assign
SUBMISSIONS = ("ITI-41", "ITI-42", "ITI-57")


class BuildError(ValueError):
    """The step cannot be sent as the plan says (a file missing, a placeholder without a
    value, metadata that is not XML)."""


@dataclass
class Built:
    transaction: str
    endpoint: str                       # "registry" or "repository"
    action: str
    body: etree._Element
    metadata: bytes                     # InputMetadata as the log keeps it
    documents: dict[str, bytes] = field(default_factory=dict)    # xdsb:Document id -> bytes
    mime_types: dict[str, str] = field(default_factory=dict)
    assigned: dict[str, dict[str, str]] = field(default_factory=dict)   # log sections
    reports: dict[str, str] = field(default_factory=dict)   # <id>_uuid, <id>_uid


def builtins(now: dt.datetime | None = None, repository_uid: str = "") -> dict[str, str]:
    now = now or dt.datetime.now(dt.timezone.utc)
    out = {"$now$": f"{now:%Y%m%d%H%M%S}",
           "$lastyear$": f"{now.year - 1:04d}{now:%m%d%H%M%S}",
           "$DATE$": f"{now:%Y%m%d}"}
    if repository_uid:
        out["$repuid$"] = repository_uid
    return out


def _read(folder: Path, name: str) -> bytes:
    path = (folder / name).resolve()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read {name}: {exc.strerror}") from None


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def build(tx: Transaction, folder: Path, values: Mapping[str, str],
          patient_id: str | None) -> Built:
    """The request of ``tx`` (a step of the plan in ``folder``); ``patient_id``: the CX set in
    the metadata (None: keep the metadata's, ``NoPatientId``)."""
    if tx.transaction not in ENDPOINTS:
        raise BuildError(f"{tx.element} is not a SOAP transaction")
    if not tx.metadata_file:
        raise BuildError(f"{tx.element} without MetadataFile")
    text = _read(folder, tx.metadata_file).decode("utf-8", errors="replace")
    submission = tx.transaction in SUBMISSIONS
    try:
        root, assigned = prepare.prepare(
            text, values, patient_id=patient_id if submission else None,
            uuids=submission and "AssignUuids" in tx.flags,
            uids=submission and "NoAssignUids" not in tx.flags,
            translate=_translate, keep_uids=frozenset(tx.keep_uids))
    except (prepare.PreparationError, ebrim21.TranslationError) as exc:
        raise BuildError(f"{tx.metadata_file}: {exc}") from None
    built = Built(tx.transaction, ENDPOINTS[tx.transaction], ACTIONS[tx.transaction], root,
                  etree.tostring(root),
                  assigned={"AssignedUuids": assigned.uuids, "AssignedUids": assigned.uids,
                            "AssignedPatientId": assigned.patients})
    built.reports.update({f"{k}_uuid": v for k, v in assigned.uuids.items()})
    built.reports.update({f"{k}_uid": v for k, v in assigned.uids.items()})
    if tx.transaction == "ITI-41":
        _provide(built, tx, folder, assigned)
    return built


def _translate(root: etree._Element) -> etree._Element:
    """2.1 submissions -> 3.0, also inside a ProvideAndRegisterDocumentSetRequest."""
    if ebrim21.is_v21(root):
        return ebrim21.to_v3(root)
    for i, child in enumerate(list(root)):
        if isinstance(child.tag, str) and ebrim21.is_v21(child):
            root.remove(child)
            root.insert(i, ebrim21.to_v3(child))
    return root


def _provide(built: Built, tx: Transaction, folder: Path, assigned: prepare.Assigned) -> None:
    root = built.body
    if _local(root) == "ProvideAndRegisterDocumentSetRequest":
        request = root
        for old in request.findall(f"{{{XDSB}}}Document"):
            request.remove(old)
        submit = request.find(f"{{{LCM}}}SubmitObjectsRequest")
        if submit is None:
            raise BuildError(f"{tx.metadata_file}: no lcm:SubmitObjectsRequest")
    elif _local(root) == "SubmitObjectsRequest":
        submit = root
        request = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest",
                                nsmap={"xdsb": XDSB})
        request.append(submit)
    else:
        raise BuildError(f"{tx.metadata_file}: {_local(root)} is not a submission")
    built.metadata = etree.tostring(submit)
    mimes = {eo.get("id"): eo.get("mimeType", "application/octet-stream")
             for eo in submit.iter(f"{{{prepare.RIM}}}ExtrinsicObject")}
    for symbol, name in tx.documents.items():
        entry = assigned.uuids.get(symbol, symbol)
        etree.SubElement(request, f"{{{XDSB}}}Document").set("id", entry)
        built.documents[entry] = _read(folder, name)
        built.mime_types[entry] = mimes.get(entry, "application/octet-stream")
    built.body = request


def reference_file(folder: Path, name: str) -> bytes:
    """A ReferenceDocument: its path is relative to the test (``submit/my_document.txt``)."""
    return _read(folder.parent if (folder.parent / name).exists() else folder, name)



__all__ = ["ENDPOINTS", "SUBMISSIONS", "BuildError", "Built", "builtins", "build", "reference_file"]

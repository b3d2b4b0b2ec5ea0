"""Making a test plan's metadata file ready to send — sans-IO, ebRIM 3.0 (after
:mod:`conformance.ebrim21` for the kit's 2.1 files).

The NIST test plans write their metadata with symbols and placeholders the runner resolves:

- **placeholders** ``$name$`` in the file's text (``$patientid$``, ``$ssuid$``, ...), given by
  ``UseId`` / ``UseReport`` of the step and by the run (the patient id of the feed): replaced
  in the text before it is parsed, XML-escaped (:func:`substitute`); one left over is an error of
  the run, reported, never sent;
- **patient ids**: unless the step says ``NoPatientId``, the patientId external identifiers of
  every DocumentEntry, SubmissionSet and Folder (ITI TF-3 4.2.3.2.16, 4.2.3.3.7, 4.2.3.4.5)
  are set to the run's patient (:func:`set_patient_id`);
- **uniqueIds** (``AssignUids``, the default; ``NoAssignUids`` keeps them): the uniqueId external
  identifiers of DocumentEntries, SubmissionSets and Folders get fresh OIDs, reported under the
  symbolic id of their object as the section ``AssignedUids`` for later ``UseId``s;
- **entryUUIDs** (``AssignUuids``): objects whose id is symbolic (not ``urn:uuid:``) get fresh
  UUIDs, and every reference to them moves along (``classifiedObject``, ``registryObject``,
  ``sourceObject``, ``targetObject``); reported as the section ``AssignedUuids``.  Without it the
  symbolic ids are sent as they are (the registry assigns UUIDs, ITI TF-3 4.2.4.1).
"""
from __future__ import annotations

import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Mapping
from xml.sax.saxutils import escape

from lxml import etree

from conformance import xmlin
from conformance.ebrim21 import RIM

NS = {"rim": RIM}
# ITI TF-3 Table 4.2.5-1 (external identifier schemes)
UNIQUE_ID_SCHEMES = {
    "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab": "DocumentEntry",
    "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8": "SubmissionSet",
    "urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a": "Folder",
}
PATIENT_ID_SCHEMES = {
    "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427": "DocumentEntry",
    "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446": "SubmissionSet",
    "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a": "Folder",
}
_REFERENCES = ("classifiedObject", "registryObject", "sourceObject", "targetObject")
_OBJECTS = ("ExtrinsicObject", "RegistryPackage", "Association", "Classification",
            "ExternalIdentifier")
PLACEHOLDER = re.compile(r"\$[A-Za-z_][A-Za-z0-9_.-]*\$")


class PreparationError(ValueError):
    """The metadata cannot be made ready (a placeholder nobody gave a value, not XML)."""


_COMMENT = re.compile(r"<!--.*?-->", re.S)


def substitute(text: str, values: Mapping[str, str], strict: bool = True) -> str:
    """``text`` with each ``$name$`` of ``values`` replaced (XML-escaped); raises
    :class:`PreparationError` naming those left without a value (unless not ``strict``).
    XML comments are dropped first (the kit comments out elements holding placeholders nobody
    gives)."""
    text = _COMMENT.sub("", text)
    out = PLACEHOLDER.sub(lambda m: escape(values[m.group(0)], {'"': "&quot;"})
                          if m.group(0) in values else m.group(0), text)
    # a symbol without dollars (15801: UseId symbol="Document01") is replaced as plain text
    for name in sorted((k for k in values if not PLACEHOLDER.fullmatch(k)), key=len,
                       reverse=True):
        if name:
            out = out.replace(name, escape(values[name], {'"': "&quot;"}))
    if strict:
        _no_placeholder_left(out)
    return out


def _no_placeholder_left(text: str) -> None:
    left = sorted(set(PLACEHOLDER.findall(text)))
    if left:
        raise PreparationError("no value for " + ", ".join(left))


def _owner(ei: etree._Element) -> str:
    return ei.get("registryObject") or ei.getparent().get("id", "")


def set_patient_id(root: etree._Element, patient_id: str) -> int:
    """Set every patientId external identifier to ``patient_id``; how many were set."""
    n = 0
    for ei in root.iter(f"{{{RIM}}}ExternalIdentifier"):
        if ei.get("identificationScheme") in PATIENT_ID_SCHEMES:
            ei.set("value", patient_id)
            n += 1
    return n


def patient_ids(root: etree._Element) -> dict[str, str]:
    """The patient id of each object that has one, by its (symbolic) id: the section
    ``AssignedPatientId`` of the step's log."""
    return {_owner(ei): ei.get("value", "") for ei in root.iter(f"{{{RIM}}}ExternalIdentifier")
            if ei.get("identificationScheme") in PATIENT_ID_SCHEMES}


@dataclass
class Assigned:
    """What a preparation assigned, by symbolic id (the sections of the step's log)."""

    uuids: dict[str, str] = field(default_factory=dict)   # AssignedUuids
    uids: dict[str, str] = field(default_factory=dict)    # AssignedUids
    patients: dict[str, str] = field(default_factory=dict)   # AssignedPatientId


def new_uid_source(root: str = "1.2.156.112604.1.99") -> Callable[[], str]:
    """Fresh OIDs under ``root`` (the runner's arc): root.<milliseconds>.<counter>."""
    stamp = int(time.time() * 1000)
    counter = itertools.count(1)
    return lambda: f"{root}.{stamp}.{next(counter)}"


def assign(root: etree._Element, *, uuids: bool, uids: bool,
           new_uid: Callable[[], str] | None = None,
           new_uuid: Callable[[], str] | None = None, keep_uids: frozenset = frozenset()
           ) -> Assigned:
    """Assign uniqueIds (``uids``; not those of the objects in ``keep_uids``) and entryUUIDs
    (``uuids``) in place; see the module text."""
    new_uid = new_uid or new_uid_source()
    new_uuid = new_uuid or (lambda: f"urn:uuid:{uuid.uuid4()}")
    done = Assigned(patients=patient_ids(root))
    if uids:
        for ei in root.iter(f"{{{RIM}}}ExternalIdentifier"):
            if ei.get("identificationScheme") in UNIQUE_ID_SCHEMES:
                owner = _owner(ei)
                if owner in keep_uids:
                    continue
                uid = new_uid()
                ei.set("value", uid)
                done.uids[owner] = uid
    if uuids:
        for name in _OBJECTS:
            for el in root.iter(f"{{{RIM}}}{name}"):
                old = el.get("id", "")
                if old and not old.startswith("urn:uuid:"):
                    done.uuids[old] = new_uuid()
                    el.set("id", done.uuids[old])
        for el in root.iter():
            for attr in _REFERENCES:
                ref = el.get(attr)
                if ref in done.uuids:
                    el.set(attr, done.uuids[ref])
    return done


def prepare(text: str, values: Mapping[str, str], *, patient_id: str | None, uuids: bool,
            uids: bool, translate: Callable[[etree._Element], etree._Element] | None = None,
            new_uid: Callable[[], str] | None = None,
            new_uuid: Callable[[], str] | None = None, keep_uids: frozenset = frozenset()
            ) -> tuple[etree._Element, Assigned]:
    """The metadata of one step ready to send: placeholders, then (2.1 files) ``translate``,
    then the patient id (None: ``NoPatientId``), uniqueIds and entryUUIDs.  A placeholder
    without a value is an error only if it is still there after the ids are assigned (15800b's
    ``$Document01_uid$`` is a uniqueId the run assigns)."""
    text = substitute(text, values, strict=False)
    try:
        root = xmlin.parse(text.encode("utf-8"))
    except etree.XMLSyntaxError as exc:
        raise PreparationError(f"metadata is not XML: {exc}") from None
    if translate is not None:
        root = translate(root)
    if patient_id is not None:
        set_patient_id(root, patient_id)
    assigned = assign(root, uuids=uuids, uids=uids, new_uid=new_uid, new_uuid=new_uuid,
                      keep_uids=keep_uids)
    _no_placeholder_left(etree.tostring(root, encoding="unicode"))
    return root, assigned


__all__ = ["UNIQUE_ID_SCHEMES", "PATIENT_ID_SCHEMES", "PLACEHOLDER", "PreparationError",
           "Assigned", "substitute", "set_patient_id", "patient_ids", "new_uid_source", "assign", "prepare"]

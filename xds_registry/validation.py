"""Metadata validation for Register Document Set-b (ITI TF-2b 3.42.4.1.3) against the rules of
ITI TF-3 4.2 (and reused by Update Document Set, ITI TF-2b 3.57.4.1.3):

- per object: required attributes (ITI TF-3 Table 4.3.1-3, column XDS) and value formats
  (ITI TF-3 Table 4.2.3.1.7-2: CX, XCN, XON, XTN, DTM, OIDs, UUIDs; codes carry a codingScheme,
  4.2.3.1.2) → XDSRegistryMetadataError;
- across the submission: exactly one SubmissionSet; every new DocumentEntry and Folder is a
  HasMember target of it (4.2.2.1.1-2, SubmissionSetStatus Original/Reference); one patient
  (XDSPatientIdDoesNotMatch, ITI TF-2b 3.42.4.1.3.2); no uniqueId twice
  (XDSRegistryDuplicateUniqueIdInMessage); known association types;
- symbolic ids (ITI TF-3 4.2.1.1, ebRIM 3.0 IdentifiableType): every id that is not a
  ``urn:uuid:`` is replaced by a fresh UUID and every reference to it rewritten; a reference to a
  symbolic id the submission does not define is an UnresolvedReferenceException.

Checks needing the database (existing objects, known patients) are in :mod:`xds_registry.store`.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable

from hie import hl7types as T
from hie.errors import XDS, ErrorCollector
from xds_registry import vocab as V
from xds_registry.ebrim import LONG_NAME, new_id
from xds_registry.messages import SubmitObjects
from xds_registry.model import Association, Author, Code, DocumentEntry, Folder, SubmissionSet

META = XDS.RegistryMetadataError
HASH_RE = re.compile(r"^[0-9a-fA-F]{40}$")
LANG_RE = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
MIME_RE = re.compile(r"^[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(\s*;.*)?$")
SPI_RE = re.compile(r"^PID-\d+\|")
REGISTER_ASSOCIATIONS = frozenset({V.HAS_MEMBER, *V.RELATIONSHIPS})


class _Check:
    """Small helper binding an ErrorCollector to one object (the location of its errors)."""

    def __init__(self, errors: ErrorCollector, kind: str, obj_id: str):
        self.errors, self.kind, self.loc = errors, kind, obj_id

    def error(self, text: str, code: str = META) -> None:
        self.errors.error(code, f"{self.kind} {self.loc}: {text}", self.loc)

    def required(self, value, attr: str) -> bool:
        if value is None or value == "" or value == ():
            self.error(f"{attr} is required")
            return False
        return True

    def fmt(self, value: str | None, attr: str, parser: Callable[[str], object]) -> None:
        if value is None:
            return
        try:
            parser(value)
        except ValueError as e:
            self.error(f"{attr}: {e}")

    def code(self, code: Code | None, attr: str) -> None:
        if code is None:
            return
        if not code.code:
            self.error(f"{attr}: the code (nodeRepresentation) is empty")
        if not code.scheme:
            self.error(f"{attr} {code.code!r} has no codingScheme slot")

    def value_lengths(self, entry) -> None:
        """rim:Value, nodeRepresentation and ExternalIdentifier values are LongName (≤ 256)."""
        r = entry.to_rim()
        slots = [*r.slots, *(s for c in r.classifications for s in c.slots)]
        for s in slots:
            for v in s.values:
                if len(v) > LONG_NAME:
                    self.error(f"slot {s.name}: value longer than {LONG_NAME} characters")
        for c in r.classifications:
            if c.node_representation and len(c.node_representation) > LONG_NAME:
                self.error(f"code {c.node_representation[:40]}...: longer than {LONG_NAME} "
                           "characters")
        for e in r.external_identifiers:
            if len(e.value) > LONG_NAME:
                self.error(f"external identifier {e.value[:40]}...: longer than {LONG_NAME} "
                           "characters")


def _oid(text: str) -> str:
    return T.parse_oid(text)


def _hash(text: str) -> str:
    if not HASH_RE.match(text):
        raise ValueError(f"must be 40 hexadecimal digits (SHA-1): {text!r}")
    return text


def _lang(text: str) -> str:
    if not LANG_RE.match(text):
        raise ValueError(f"not an RFC 3066 language tag: {text!r}")
    return text


def _mime(text: str) -> str:
    if len(text) > 128 or not MIME_RE.match(text):
        raise ValueError(f"not a MIME type: {text!r}")
    return text


def _intended_recipient(text: str) -> str:
    """``XON|XCN|XTN`` with at least one part (ITI TF-3 4.2.3.3.5)."""
    parts = text.split("|")
    if len(parts) > 3 or not any(parts):
        raise ValueError(f"must be 'organization|person|telecom': {text!r}")
    parts += [""] * (3 - len(parts))
    if parts[0]:
        T.parse_xon(parts[0])
    if parts[1]:
        T.parse_xcn(parts[1])
    if parts[2]:
        T.parse_xtn(parts[2])
    return text


def _check_authors(c: _Check, authors: tuple[Author, ...]) -> None:
    for a in authors:
        if a.person_values > 1:
            c.error("author: authorPerson must have a single value")
        if not (a.person or a.institutions or a.telecoms):
            c.error("author: one of authorPerson, authorInstitution or authorTelecommunication "
                    "is required")
        c.fmt(a.person, "authorPerson", T.parse_xcn)
        for v in a.institutions:
            c.fmt(v, "authorInstitution", T.parse_xon)
        for v in a.telecoms:
            c.fmt(v, "authorTelecommunication", T.parse_xtn)


def _check_common(c: _Check, entry) -> None:
    c.fmt(entry.home, "homeCommunityId", T.parse_oid_urn)
    c.value_lengths(entry)
    for ls in (*entry.title, *entry.comments):
        if len(ls.value) > 1024:
            c.error("title/comments longer than 1024 characters")


# --------------------------------------------------------------------------------------------
# per object
# --------------------------------------------------------------------------------------------

def validate_document_entry(de: DocumentEntry, errors: ErrorCollector) -> None:
    """ITI TF-3 4.2.3.2 and Table 4.3.1-3 (XDS Document Source / Registry)."""
    c = _Check(errors, "DocumentEntry", de.id)
    _check_common(c, de)
    if de.limited:
        c.error("limitedMetadata is not accepted by an XDS Document Registry (ITI TF-3 4.1.1)")
    c.required(de.mime_type, "mimeType")
    c.fmt(de.mime_type, "mimeType", _mime)
    if c.required(de.patient_id, "patientId"):
        c.fmt(de.patient_id, "patientId", T.parse_patient_id)
    if c.required(de.unique_id, "uniqueId"):
        c.fmt(de.unique_id, "uniqueId", T.parse_document_unique_id)
    for attr in ("class_code", "type_code", "format_code", "hcft_code", "practice_code"):
        c.required(getattr(de, attr), _TF_NAMES[attr])
    c.required(de.confidentiality_codes, "confidentialityCode")
    for attr, code in de.all_codes():
        c.code(code, _TF_NAMES.get(attr, attr))
    _check_authors(c, de.authors)
    if de.is_on_demand:
        if de.hash is not None or de.size is not None:
            c.error("hash and size must not be present on an On-Demand DocumentEntry "
                    "(ITI TF-3 4.2.3.2.10/4.2.3.2.24)")
    else:
        c.required(de.creation_time, "creationTime")
        c.required(de.hash, "hash")
        c.required(de.size, "size")
    c.fmt(de.creation_time, "creationTime", T.parse_dtm)
    c.fmt(de.service_start_time, "serviceStartTime", T.parse_dtm)
    c.fmt(de.service_stop_time, "serviceStopTime", T.parse_dtm)
    if (de.service_start_time and de.service_stop_time and _dtm_ok(de.service_start_time)
            and _dtm_ok(de.service_stop_time)
            and T.parse_dtm(de.service_stop_time).lower()
            < T.parse_dtm(de.service_start_time).lower()):
        c.error("serviceStopTime is before serviceStartTime")
    c.fmt(de.hash, "hash", _hash)
    if c.required(de.language_code, "languageCode"):
        c.fmt(de.language_code, "languageCode", _lang)
    c.fmt(de.legal_authenticator, "legalAuthenticator", T.parse_xcn)
    if c.required(de.repository_unique_id, "repositoryUniqueId"):
        c.fmt(de.repository_unique_id, "repositoryUniqueId", _oid)
    if c.required(de.source_patient_id, "sourcePatientId"):
        c.fmt(de.source_patient_id, "sourcePatientId", T.parse_patient_id)
    for v in de.source_patient_info:
        if not SPI_RE.match(v):
            c.error(f"sourcePatientInfo value must be 'PID-n|value': {v!r}")
    for v in de.reference_ids:
        c.fmt(v, "referenceIdList", T.parse_cxi)
    if de.availability is not None and de.availability not in (V.AVAILABILITY_ONLINE,
                                                               V.AVAILABILITY_OFFLINE):
        c.error(f"documentAvailability must be {V.AVAILABILITY_ONLINE} or "
                f"{V.AVAILABILITY_OFFLINE}")
    if de.version is not None and not de.version.isdigit():
        c.error(f"version must be a positive integer: {de.version!r}")


def _dtm_ok(text: str) -> bool:
    try:
        T.parse_dtm(text)
        return True
    except ValueError:
        return False


_TF_NAMES = {"class_code": "classCode", "type_code": "typeCode", "format_code": "formatCode",
             "hcft_code": "healthcareFacilityTypeCode", "practice_code": "practiceSettingCode"}


def _check_package(errors: ErrorCollector, kind: str, obj: SubmissionSet | Folder) -> "_Check":
    """What SubmissionSet and Folder require alike (ITI TF-3 4.2.3.3 / 4.2.3.4): full metadata
    (no limitedMetadata in XDS), a patientId in CX form and an OID uniqueId."""
    c = _Check(errors, kind, obj.id)
    _check_common(c, obj)
    if obj.limited:
        c.error("limitedMetadata is not accepted by an XDS Document Registry")
    if c.required(obj.patient_id, "patientId"):
        c.fmt(obj.patient_id, "patientId", T.parse_patient_id)
    if c.required(obj.unique_id, "uniqueId"):
        c.fmt(obj.unique_id, "uniqueId", _oid)
    return c


def validate_submission_set(ss: SubmissionSet, errors: ErrorCollector) -> None:
    """ITI TF-3 4.2.3.3."""
    c = _check_package(errors, "SubmissionSet", ss)
    if c.required(ss.source_id, "sourceId"):
        c.fmt(ss.source_id, "sourceId", _oid)
    if c.required(ss.submission_time, "submissionTime"):
        c.fmt(ss.submission_time, "submissionTime", T.parse_dtm)
    if c.required(ss.content_type, "contentTypeCode"):
        c.code(ss.content_type, "contentTypeCode")
    _check_authors(c, ss.authors)
    for v in ss.intended_recipients:
        c.fmt(v, "intendedRecipient", _intended_recipient)


def validate_folder(fd: Folder, errors: ErrorCollector) -> None:
    """ITI TF-3 4.2.3.4."""
    c = _check_package(errors, "Folder", fd)
    c.required(fd.title, "title")
    c.required(fd.codes, "codeList")
    for code in fd.codes:
        c.code(code, "codeList")
    c.fmt(fd.last_update_time, "lastUpdateTime", T.parse_dtm)


def validate_association(a: Association, errors: ErrorCollector,
                         allowed: frozenset[str] = REGISTER_ASSOCIATIONS) -> None:
    """ITI TF-3 4.2.2: known type, slots with legal values."""
    c = _Check(errors, "Association", a.id)
    _check_common(c, a)
    if a.type not in V.ASSOCIATION_TYPES:
        c.error(f"unknown associationType {a.type!r}")
    elif a.type not in allowed:
        c.error(f"associationType {a.type_short} is not allowed in this transaction")
    if a.source == a.target:
        c.error("sourceObject and targetObject are the same object")
    sss = a.slot_values(V.SLOT_SS_STATUS)
    if sss is not None and (len(sss) != 1 or sss[0] not in ("Original", "Reference")):
        c.error("SubmissionSetStatus must be a single value, Original or Reference")


# --------------------------------------------------------------------------------------------
# across the submission
# --------------------------------------------------------------------------------------------

def validate_objects(so: SubmitObjects, errors: ErrorCollector,
                     allowed_associations: frozenset[str] = REGISTER_ASSOCIATIONS) -> None:
    """Per-object rules for every object of ``so`` plus the rules every submission shares:
    one SubmissionSet, unique ids, one patient, unique uniqueIds, no foreign object kinds."""
    for o in so.others:
        errors.error(META, f"rim:{o.tag} {o.id} is not an XDS metadata object", o.id)
    if len(so.submission_sets) != 1:
        errors.error(META, f"a submission contains exactly one SubmissionSet, found "
                     f"{len(so.submission_sets)}")
    seen: set[str] = set()
    for o in [*so.entries(), *so.object_refs]:
        if o.id in seen:
            errors.error(META, f"id {o.id} is used by more than one object", o.id)
        seen.add(o.id)
    for ref in so.object_refs:
        if not T.is_uuid_urn(ref.id):
            errors.error(META, f"ObjectRef {ref.id}: must be a urn:uuid: entryUUID", ref.id)
    for ss in so.submission_sets:
        validate_submission_set(ss, errors)
    for de in so.documents:
        validate_document_entry(de, errors)
    for fd in so.folders:
        validate_folder(fd, errors)
    for a in so.associations:
        validate_association(a, errors, allowed_associations)
    _unique_ids_in_message(so, errors)
    _same_patient(so, errors)


def _unique_ids_in_message(so: SubmitObjects, errors: ErrorCollector) -> None:
    seen: dict[str, str] = {}
    for o in [*so.submission_sets, *so.folders, *so.documents]:
        uid = o.unique_id
        if not uid:
            continue
        if uid in seen:
            errors.error(XDS.RegistryDuplicateUniqueIdInMessage,
                         f"uniqueId {uid} is used by both {seen[uid]} and {o.id}", o.id)
        else:
            seen[uid] = o.id


def _same_patient(so: SubmitObjects, errors: ErrorCollector) -> None:
    ss = so.submission_set
    if ss is None or not ss.patient_id:
        return
    for o in [*so.documents, *so.folders]:
        if o.patient_id and o.patient_id != ss.patient_id:
            errors.error(XDS.PatientIdDoesNotMatch,
                         f"{o.KIND} {o.id} has patientId {o.patient_id}, the SubmissionSet has "
                         f"{ss.patient_id}", o.id)


def validate_register(so: SubmitObjects, errors: ErrorCollector) -> None:
    """All message-level rules of ITI-42 (ITI TF-2b 3.42.4.1.3.1-3)."""
    validate_objects(so, errors)
    ss = so.submission_set
    if ss is None:
        return
    for a in so.associations:
        if a.type in V.RELATIONSHIPS:
            if a.source not in {d.id for d in so.documents}:
                errors.error(META, f"Association {a.id}: the source of a {a.type_short} "
                             "association must be a DocumentEntry of this submission", a.id)
    check_membership(so, errors)
    for a in so.associations:
        if a.previous_version is not None or a.association_propagation is not None:
            errors.error(META, f"Association {a.id}: PreviousVersion / AssociationPropagation "
                         "belong to Update Document Set (ITI-57), not to ITI-42", a.id)
    for de in so.documents:
        if de.lid is not None and de.lid != de.id:
            errors.error(META, f"DocumentEntry {de.id}: logicalID of a first version must be "
                         "absent or equal to its entryUUID", de.id)
        if de.version is not None and de.version != "1":
            errors.error(META, f"DocumentEntry {de.id}: a first version has version 1", de.id)
    for fd in so.folders:
        if fd.lid is not None and fd.lid != fd.id:
            errors.error(META, f"Folder {fd.id}: logicalID of a first version must be absent "
                         "or equal to its entryUUID", fd.id)


def check_membership(so: SubmitObjects, errors: ErrorCollector, *,
                     members_required: bool = True) -> None:
    """ITI TF-3 4.2.2.1: SubmissionSet HasMember every new DocumentEntry (SubmissionSetStatus
    Original) and Folder; HasMember to an existing document carries SubmissionSetStatus
    Reference; a Folder-DocumentEntry HasMember is itself a member of the SubmissionSet."""
    ss = so.submission_set
    assert ss is not None
    doc_ids = {d.id for d in so.documents}
    folder_ids = {f.id for f in so.folders}
    ss_members: dict[str, Association] = {}
    for a in so.associations:
        if a.type == V.HAS_MEMBER and a.source == ss.id:
            ss_members[a.target] = a
            if a.target in doc_ids and a.ss_status != "Original":
                errors.error(META, f"Association {a.id}: SubmissionSet HasMember of a new "
                             "DocumentEntry needs SubmissionSetStatus=Original", a.id)
            elif a.target not in doc_ids and a.target not in folder_ids and \
                    a.ss_status is None and not _is_association(so, a.target) and \
                    T.is_uuid_urn(a.target):
                errors.error(META, f"Association {a.id}: SubmissionSet HasMember of an existing "
                             "DocumentEntry needs SubmissionSetStatus=Reference", a.id)
    if members_required:
        for d in doc_ids:
            if d not in ss_members:
                errors.error(META, f"DocumentEntry {d} is not a member of the SubmissionSet "
                             "(HasMember association missing)", d)
        for f in folder_ids:
            if f not in ss_members:
                errors.error(META, f"Folder {f} is not a member of the SubmissionSet (HasMember "
                             "association missing)", f)
    for a in so.associations:
        if a.type == V.HAS_MEMBER and a.source != ss.id and a.id not in ss_members:
            errors.error(META, f"Association {a.id} (HasMember {a.source} -> {a.target}) must "
                         "itself be a member of the SubmissionSet", a.id)
        if a.type == V.HAS_MEMBER and a.target == ss.id:
            errors.error(META, f"Association {a.id}: the SubmissionSet cannot be a member", a.id)


def _is_association(so: SubmitObjects, target: str) -> bool:
    return any(a.id == target for a in so.associations)


# --------------------------------------------------------------------------------------------
# symbolic ids
# --------------------------------------------------------------------------------------------

def resolve_ids(so: SubmitObjects, errors: ErrorCollector) -> dict[str, str]:
    """Give every object a ``urn:uuid:`` id (ITI TF-3 4.2.1.1) and rewrite references.

    Returns the mapping symbolic id -> new UUID.  Classifications and ExternalIdentifiers nested
    in the objects get UUIDs too.  A reference (association source/target) that is neither a UUID
    nor the id of an object in the submission is reported as UnresolvedReferenceException; UUID
    references to objects outside the submission are left for the store to check."""
    mapping: dict[str, str] = {}
    for o in so.entries():
        if not T.is_uuid_urn(o.id):
            mapping[o.id] = new_id()
    for o in so.entries():
        if o.id in mapping:
            new = mapping[o.id]
            if o.lid == o.id:
                o.lid = new
            o.id = new
        elif T.is_uuid_urn(o.id) and o.id != o.id.lower():
            o.id = o.id.lower()
        if o.lid is not None and not T.is_uuid_urn(o.lid) and o.lid not in mapping:
            errors.error(META, f"{o.KIND} {o.id}: logicalID {o.lid} is not a urn:uuid:", o.id)
        _fresh_sub_ids(o)
    for a in so.associations:
        for end in ("source", "target"):
            ref = getattr(a, end)
            if ref in mapping:
                setattr(a, end, mapping[ref])
            elif not T.is_uuid_urn(ref):
                errors.error(XDS.UnresolvedReferenceException,
                             f"Association {a.id}: {end}Object {ref} is not an object of the "
                             "submission and not a urn:uuid:", a.id)
            else:
                setattr(a, end, ref.lower())
    return mapping


def _fresh_id(i: str) -> str:
    return i if T.is_uuid_urn(i) else new_id()


def _fresh_sub_ids(o) -> None:
    for c in o.extra_classifications:
        c.id = _fresh_id(c.id)
    for e in o.extra_external_identifiers:
        e.id = _fresh_id(e.id)
    if hasattr(o, "ei_ids"):
        o.ei_ids = {k: _fresh_id(v) for k, v in o.ei_ids.items()}
    for f in ("node_classification_id", "limited_id"):
        if hasattr(o, f):
            setattr(o, f, _fresh_id(getattr(o, f)))
    for f in ("class_code", "type_code", "format_code", "hcft_code", "practice_code",
              "content_type"):
        code = getattr(o, f, None)
        if code is not None:
            setattr(o, f, dataclasses.replace(code, id=_fresh_id(code.id)))
    for f in ("confidentiality_codes", "event_codes", "codes", "authors"):
        vals = getattr(o, f, None)
        if vals:
            setattr(o, f, tuple(dataclasses.replace(v, id=_fresh_id(v.id)) for v in vals))

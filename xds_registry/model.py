"""XDS metadata objects as typed models (ITI TF-3 4.1.3 and 4.2.3): DocumentEntry (4.2.3.2),
SubmissionSet (4.2.3.3), Folder (4.2.3.4), Association (4.2.2) and ObjectRef, each with
``from_ebrim(element)`` / ``to_ebrim()`` over ebRIM 3.0 (the mapping of ITI TF-3 4.2.3.x.y and
Table 4.2.5-1) via the generic layer of :mod:`xds_registry.ebrim`.

Constructors check what an object cannot exist without (an id, well-typed values, a known object
kind); the XDS conformance rules (required attributes, value formats, cross-object consistency)
are checked by :mod:`xds_registry.validation`, which reports all problems at once as registry
errors.  Anything the models do not know — extra slots, classifications, external identifiers,
attributes and child elements — is kept and written back, so a submission round-trips.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from lxml import etree

from xds_registry import vocab as V
from xds_registry.ebrim import (Classification, ExternalIdentifier, IString, RimObject, Slot,
                                VersionInfo, istring, istring_text, rim_element)

# --------------------------------------------------------------------------------------------
# coded values and authors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """A coded value (CE): ``nodeRepresentation`` + ``codingScheme`` slot + display name
    (ITI TF-3 4.2.3.1.2)."""

    code: str
    scheme: str = ""
    display: IString = ()
    extra_slots: tuple[Slot, ...] = ()
    id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.code, str):
            raise ValueError("a code value must be text")
        object.__setattr__(self, "display", istring(self.display))
        object.__setattr__(self, "extra_slots", tuple(self.extra_slots))

    @property
    def display_text(self) -> str | None:
        return istring_text(self.display)

    def to_classification(self, scheme_uuid: str, owner: str) -> Classification:
        slots = ((Slot("codingScheme", (self.scheme,)),) if self.scheme else ()) + self.extra_slots
        return Classification(owner, scheme_uuid, None, self.code, slots, self.display, (),
                              self.id)

    @classmethod
    def from_classification(cls, c: Classification) -> "Code":
        scheme = c.slot("codingScheme")
        if scheme is not None and len(scheme.values) != 1:
            raise ValueError(f"code {c.node_representation!r}: codingScheme must have exactly one "
                             "value")
        return cls(c.node_representation or "", scheme.value or "" if scheme else "", c.name,
                   tuple(s for s in c.slots if s.name != "codingScheme"), c.id)


AUTHOR_SLOTS = ("authorPerson", "authorInstitution", "authorRole", "authorSpecialty",
                "authorTelecommunication")


@dataclass(frozen=True)
class Author:
    """One author classification (ITI TF-3 4.2.3.1.4): person (XCN), institutions (XON), roles,
    specialties, telecommunications (XTN)."""

    person: str | None = None
    institutions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    telecoms: tuple[str, ...] = ()
    extra_slots: tuple[Slot, ...] = ()
    person_values: int = field(default=1, compare=False)  # how many authorPerson values came
    id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for f in ("institutions", "roles", "specialties", "telecoms", "extra_slots"):
            v = getattr(self, f)
            object.__setattr__(self, f, (v,) if isinstance(v, str) else tuple(v))

    def to_classification(self, scheme_uuid: str, owner: str) -> Classification:
        slots = []
        if self.person is not None:
            slots.append(Slot("authorPerson", (self.person,)))
        for name, vals in (("authorInstitution", self.institutions), ("authorRole", self.roles),
                           ("authorSpecialty", self.specialties),
                           ("authorTelecommunication", self.telecoms)):
            if vals:
                slots.append(Slot(name, vals))
        return Classification(owner, scheme_uuid, None, "", tuple(slots) + self.extra_slots,
                              (), (), self.id)

    @classmethod
    def from_classification(cls, c: Classification) -> "Author":
        by = {s.name: s for s in c.slots}
        person = by.get("authorPerson")
        return cls(person.value if person else None,
                   by["authorInstitution"].values if "authorInstitution" in by else (),
                   by["authorRole"].values if "authorRole" in by else (),
                   by["authorSpecialty"].values if "authorSpecialty" in by else (),
                   by["authorTelecommunication"].values if "authorTelecommunication" in by
                   else (),
                   tuple(s for s in c.slots if s.name not in AUTHOR_SLOTS),
                   len(person.values) if person else 0, c.id)


# --------------------------------------------------------------------------------------------
# common part of the registry objects
# --------------------------------------------------------------------------------------------

@dataclass
class RegistryEntry:
    """Fields every XDS object shares; ``extra_*`` keep what the XDS mapping does not use."""

    id: str
    home: str | None = None
    lid: str | None = None
    status: str | None = None          # ebRIM status URN; None on submission
    version: str | None = None         # rim:VersionInfo/@versionName
    title: IString = ()
    comments: IString = ()
    extra_slots: tuple[Slot, ...] = ()
    extra_classifications: tuple[Classification, ...] = ()
    extra_external_identifiers: tuple[ExternalIdentifier, ...] = ()
    extra_attrs: dict[str, str] = field(default_factory=dict)
    extra_children: tuple[etree._Element, ...] = field(default=(), compare=False)

    KIND: ClassVar[str] = ""
    _SINGLE: ClassVar[dict[str, str]] = {}   # slot name -> field (single-valued)
    _MULTI: ClassVar[dict[str, str]] = {}    # slot name -> field (tuple of values)

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise ValueError(f"{self.KIND or 'registry object'} without id")
        if self.status is not None and self.status not in V.STATUS_SHORT:
            raise ValueError(f"{self.id}: unknown status {self.status!r}")
        self.title = istring(self.title)
        self.comments = istring(self.comments)
        for f in ("extra_slots", "extra_classifications", "extra_external_identifiers",
                  "extra_children"):
            setattr(self, f, tuple(getattr(self, f)))
        for f in self._MULTI.values():
            v = getattr(self, f)
            setattr(self, f, (v,) if isinstance(v, str) else tuple(v))

    # -- helpers for subclasses ---------------------------------------------------------------
    @property
    def title_text(self) -> str | None:
        return istring_text(self.title)

    @property
    def comments_text(self) -> str | None:
        return istring_text(self.comments)

    @property
    def status_short(self) -> str | None:
        return V.STATUS_SHORT.get(self.status) if self.status else None

    @classmethod
    def _common_kwargs(cls, r: RimObject) -> dict:
        attrs = dict(r.attrs)
        kw = {"id": r.id, "home": attrs.pop("home", None), "lid": attrs.pop("lid", None),
              "status": attrs.pop("status", None),
              "version": r.version_info.version_name if r.version_info else None,
              "title": r.name, "comments": r.description,
              "extra_children": tuple(r.extra_children)}
        seen: set[str] = set()
        extra: list[Slot] = []
        for s in r.slots:
            if s.name in seen:
                raise ValueError(f"{r.id}: slot {s.name} appears more than once")
            seen.add(s.name)
            if s.name in cls._SINGLE:
                if len(s.values) > 1:
                    raise ValueError(f"{r.id}: slot {s.name} must have a single value")
                kw[cls._SINGLE[s.name]] = s.value
            elif s.name in cls._MULTI:
                kw[cls._MULTI[s.name]] = s.values
            else:
                extra.append(s)
        kw["extra_slots"] = tuple(extra)
        kw["_attrs"] = attrs
        return kw

    def _rim(self, tag: str, attrs: dict[str, str | None]) -> RimObject:
        a = {"home": self.home, "lid": self.lid, "status": self.status, **attrs,
             **self.extra_attrs}
        r = RimObject(tag, self.id, {k: v for k, v in a.items() if v is not None})
        for slot_name, fname in self._SINGLE.items():
            v = getattr(self, fname)
            if v is not None:
                r.slots.append(Slot(slot_name, (str(v),)))
        for slot_name, fname in self._MULTI.items():
            v = getattr(self, fname)
            if v:
                r.slots.append(Slot(slot_name, v))
        r.slots.extend(self.extra_slots)
        r.name, r.description = self.title, self.comments
        if self.version is not None:
            r.version_info = VersionInfo(self.version)
        r.extra_children = list(self.extra_children)
        return r

    def _finish_rim(self, r: RimObject) -> RimObject:
        for c in self.extra_classifications:
            c.classified_object = self.id
        r.classifications.extend(self.extra_classifications)
        for e in self.extra_external_identifiers:
            e.registry_object = self.id
        r.external_identifiers.extend(self.extra_external_identifiers)
        return r

    def to_ebrim(self) -> etree._Element:
        return self.to_rim().to_ebrim()

    def to_rim(self) -> RimObject:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def from_ebrim(cls, el: etree._Element):
        return cls.from_rim(RimObject.from_ebrim(el))

    @classmethod
    def from_rim(cls, r: RimObject):  # pragma: no cover - overridden
        raise NotImplementedError

    def with_(self, **changes):
        """A copy with ``changes`` (dataclasses.replace that keeps non-init state)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        kw.update(changes)
        return type(self)(**kw)


def _take_ids(r: RimObject, schemes: dict[str, str], kw: dict) -> list[ExternalIdentifier]:
    extra = []
    for e in r.external_identifiers:
        f = schemes.get(e.scheme)
        if f is None:
            extra.append(e)
        elif kw.get(f) is not None:
            raise ValueError(f"{r.id}: external identifier {V.EI_NAMES.get(e.scheme, e.scheme)} "
                             "appears more than once")
        else:
            kw[f] = e.value
            kw.setdefault("_ei_ids", {})[e.scheme] = e.id
    return extra


def _ei(owner: RegistryEntry, scheme: str, value: str | None,
        ids: dict[str, str]) -> ExternalIdentifier | None:
    if value is None:
        return None
    return ExternalIdentifier(owner.id, scheme, value, V.EI_NAMES.get(scheme, ""), (), (),
                              ids.get(scheme, ""))


def _check_attrs(kw: dict, allowed: set[str]) -> dict[str, str]:
    attrs = kw.pop("_attrs")
    return {k: v for k, v in attrs.items() if k not in allowed}


# --------------------------------------------------------------------------------------------
# DocumentEntry
# --------------------------------------------------------------------------------------------

DE_CODE_SCHEMES = {V.DE_CLASS_CODE: "class_code", V.DE_TYPE_CODE: "type_code",
                   V.DE_FORMAT_CODE: "format_code", V.DE_HCFT_CODE: "hcft_code",
                   V.DE_PRACTICE_CODE: "practice_code"}
DE_MULTI_CODES = {V.DE_CONFIDENTIALITY: "confidentiality_codes", V.DE_EVENT_CODE: "event_codes"}


@dataclass
class DocumentEntry(RegistryEntry):
    """XDSDocumentEntry: an rim:ExtrinsicObject (ITI TF-3 4.2.3.2)."""

    object_type: str = V.DE_STABLE
    mime_type: str | None = None
    patient_id: str | None = None
    unique_id: str | None = None
    class_code: Code | None = None
    type_code: Code | None = None
    format_code: Code | None = None
    hcft_code: Code | None = None
    practice_code: Code | None = None
    confidentiality_codes: tuple[Code, ...] = ()
    event_codes: tuple[Code, ...] = ()
    authors: tuple[Author, ...] = ()
    creation_time: str | None = None
    service_start_time: str | None = None
    service_stop_time: str | None = None
    hash: str | None = None
    size: int | None = None
    language_code: str | None = None
    legal_authenticator: str | None = None
    source_patient_id: str | None = None
    source_patient_info: tuple[str, ...] = ()
    repository_unique_id: str | None = None
    uri: str | None = None
    availability: str | None = None
    reference_ids: tuple[str, ...] = ()
    limited: bool = False
    limited_id: str = field(default="", compare=False)
    ei_ids: dict[str, str] = field(default_factory=dict, compare=False)

    KIND: ClassVar[str] = "DocumentEntry"
    _SINGLE: ClassVar[dict[str, str]] = {
        "creationTime": "creation_time", "hash": "hash", "size": "size",
        "languageCode": "language_code", "legalAuthenticator": "legal_authenticator",
        "repositoryUniqueId": "repository_unique_id", "serviceStartTime": "service_start_time",
        "serviceStopTime": "service_stop_time", "sourcePatientId": "source_patient_id",
        "documentAvailability": "availability"}
    _MULTI: ClassVar[dict[str, str]] = {
        "sourcePatientInfo": "source_patient_info",
        V.SLOT_REFERENCE_ID_LIST: "reference_ids"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.object_type not in V.DE_TYPES:
            raise ValueError(f"{self.id}: objectType {self.object_type!r} is neither the stable "
                             "nor the on-demand DocumentEntry type")
        if isinstance(self.size, str):
            if not self.size.isdigit():
                raise ValueError(f"{self.id}: size must be a non-negative integer: {self.size!r}")
            self.size = int(self.size)
        if self.size is not None and (not isinstance(self.size, int) or self.size < 0):
            raise ValueError(f"{self.id}: size must be a non-negative integer")
        self.confidentiality_codes = tuple(self.confidentiality_codes)
        self.event_codes = tuple(self.event_codes)
        self.authors = tuple(self.authors)

    @property
    def entry_type(self) -> str:
        """``stable`` or ``on-demand``."""
        return V.DE_TYPES[self.object_type]

    @property
    def is_on_demand(self) -> bool:
        return self.object_type == V.DE_ON_DEMAND

    @classmethod
    def from_rim(cls, r: RimObject) -> "DocumentEntry":
        if r.tag != "ExtrinsicObject":
            raise ValueError(f"{r.id}: a DocumentEntry is an ExtrinsicObject, not {r.tag}")
        kw = cls._common_kwargs(r)
        uri = next((s for s in r.slots if s.name == "URI"), None)
        kw["extra_slots"] = tuple(s for s in kw["extra_slots"] if s.name != "URI")
        if uri is not None:
            kw["uri"] = _join_uri(uri.values)
        kw["object_type"] = kw["_attrs"].pop("objectType", None) or ""
        kw["mime_type"] = kw["_attrs"].pop("mimeType", None)
        extra_c, authors = [], []
        multi: dict[str, list[Code]] = {f: [] for f in DE_MULTI_CODES.values()}
        for c in r.classifications:
            if c.scheme == V.DE_AUTHOR:
                authors.append(Author.from_classification(c))
            elif c.scheme in DE_CODE_SCHEMES:
                f = DE_CODE_SCHEMES[c.scheme]
                if f in kw:
                    raise ValueError(f"{r.id}: {f} appears more than once")
                kw[f] = Code.from_classification(c)
            elif c.scheme in DE_MULTI_CODES:
                multi[DE_MULTI_CODES[c.scheme]].append(Code.from_classification(c))
            elif c.node == V.DE_LIMITED:
                kw["limited"], kw["limited_id"] = True, c.id
            else:
                extra_c.append(c)
        kw.update(multi)
        kw["authors"] = tuple(authors)
        kw["extra_classifications"] = tuple(extra_c)
        kw["extra_external_identifiers"] = tuple(_take_ids(
            r, {V.DE_PATIENT_ID: "patient_id", V.DE_UNIQUE_ID: "unique_id"}, kw))
        kw["ei_ids"] = kw.pop("_ei_ids", {})
        kw["extra_attrs"] = _check_attrs(kw, {"objectType", "mimeType"})
        return cls(**kw)

    def to_rim(self) -> RimObject:
        r = self._rim("ExtrinsicObject", {"mimeType": self.mime_type,
                                          "objectType": self.object_type})
        if self.uri is not None:
            r.slots.insert(len(r.slots) - len(self.extra_slots),
                           Slot("URI", _split_uri(self.uri)))
        for a in self.authors:
            r.classifications.append(a.to_classification(V.DE_AUTHOR, self.id))
        for scheme, f in DE_CODE_SCHEMES.items():
            code = getattr(self, f)
            if code is not None:
                r.classifications.append(code.to_classification(scheme, self.id))
        for scheme, f in DE_MULTI_CODES.items():
            for code in getattr(self, f):
                r.classifications.append(code.to_classification(scheme, self.id))
        if self.limited:
            r.classifications.append(Classification(self.id, None, V.DE_LIMITED,
                                                    id=self.limited_id))
        for scheme, value in ((V.DE_PATIENT_ID, self.patient_id),
                              (V.DE_UNIQUE_ID, self.unique_id)):
            e = _ei(self, scheme, value, self.ei_ids)
            if e is not None:
                r.external_identifiers.append(e)
        return self._finish_rim(r)

    def all_codes(self) -> list[tuple[str, Code]]:
        """(attribute name, code) for every coded attribute, for the codingScheme check."""
        out = [(f, getattr(self, f)) for f in DE_CODE_SCHEMES.values() if getattr(self, f)]
        out += [("confidentialityCode", c) for c in self.confidentiality_codes]
        out += [("eventCodeList", c) for c in self.event_codes]
        return out


def _join_uri(values: tuple[str, ...]) -> str:
    """URI slot: one value, or the XDS.a-era split form ``1|part``, ``2|part`` (joined)."""
    if len(values) <= 1:
        return values[0] if values else ""
    parts = []
    for v in values:
        n, sep, rest = v.partition("|")
        if not sep or not n.isdigit():
            raise ValueError("URI slot with several values must use the 'n|part' form")
        parts.append((int(n), rest))
    return "".join(p for _, p in sorted(parts))


def _split_uri(uri: str) -> tuple[str, ...]:
    if len(uri) <= 256:
        return (uri,)
    chunks = [uri[i:i + 250] for i in range(0, len(uri), 250)]
    return tuple(f"{n}|{c}" for n, c in enumerate(chunks, 1))


# --------------------------------------------------------------------------------------------
# SubmissionSet and Folder (rim:RegistryPackage)
# --------------------------------------------------------------------------------------------

class _Package(RegistryEntry):
    """What SubmissionSet and Folder share as rim:RegistryPackage objects: the classification
    node that says which they are, the optional "limited metadata" node (ITI TF-3 4.1.1), and
    their external identifiers.  Subclasses name ``_NODE`` / ``_LIMITED`` and sort their own
    classifications in ``_classify``."""

    _NODE: ClassVar[str]
    _LIMITED: ClassVar[str]

    @classmethod
    def _classify(cls, c: Classification, kw: dict) -> bool:
        """Take ``c`` into ``kw`` if it is one of the subclass's coded attributes."""
        raise NotImplementedError

    @classmethod
    def from_rim(cls, r: RimObject):
        if r.tag != "RegistryPackage":
            raise ValueError(f"{r.id}: a {cls.KIND} is a RegistryPackage, not {r.tag}")
        kw = cls._common_kwargs(r)
        kw["_attrs"].pop("objectType", None)
        extra_c = []
        for c in r.classifications:
            if cls._classify(c, kw):
                continue
            if c.node == cls._NODE:
                kw["node_classification_id"] = c.id
            elif c.node == cls._LIMITED:
                kw["limited"], kw["limited_id"] = True, c.id
            else:
                extra_c.append(c)
        kw["extra_classifications"] = tuple(extra_c)
        kw["extra_external_identifiers"] = tuple(_take_ids(r, cls._EIS, kw))
        kw["ei_ids"] = kw.pop("_ei_ids", {})
        kw["extra_attrs"] = _check_attrs(kw, set())
        return cls(**kw)

    def _coded_classifications(self) -> list[Classification]:
        raise NotImplementedError

    def to_rim(self) -> RimObject:
        r = self._rim("RegistryPackage", {"objectType": V.OT_REGISTRY_PACKAGE})
        r.classifications.append(Classification(self.id, None, self._NODE,
                                                id=self.node_classification_id))
        if self.limited:
            r.classifications.append(Classification(self.id, None, self._LIMITED,
                                                    id=self.limited_id))
        r.classifications.extend(self._coded_classifications())
        for scheme, f in self._EIS.items():
            e = _ei(self, scheme, getattr(self, f), self.ei_ids)
            if e is not None:
                r.external_identifiers.append(e)
        return self._finish_rim(r)


@dataclass
class SubmissionSet(_Package):
    """XDSSubmissionSet: a RegistryPackage classified by the SubmissionSet node (ITI TF-3
    4.2.3.3)."""

    submission_time: str | None = None
    intended_recipients: tuple[str, ...] = ()
    authors: tuple[Author, ...] = ()
    content_type: Code | None = None
    patient_id: str | None = None
    source_id: str | None = None
    unique_id: str | None = None
    limited: bool = False
    limited_id: str = field(default="", compare=False)
    node_classification_id: str = field(default="", compare=False)
    ei_ids: dict[str, str] = field(default_factory=dict, compare=False)

    KIND: ClassVar[str] = "SubmissionSet"
    _NODE: ClassVar[str] = V.SUBMISSION_SET_NODE
    _LIMITED: ClassVar[str] = V.SS_LIMITED
    _SINGLE: ClassVar[dict[str, str]] = {"submissionTime": "submission_time"}
    _MULTI: ClassVar[dict[str, str]] = {"intendedRecipient": "intended_recipients"}
    _EIS: ClassVar[dict[str, str]] = {V.SS_UNIQUE_ID: "unique_id", V.SS_SOURCE_ID: "source_id",
                                      V.SS_PATIENT_ID: "patient_id"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.authors = tuple(self.authors)

    @classmethod
    def _classify(cls, c: Classification, kw: dict) -> bool:
        if c.scheme == V.SS_AUTHOR:
            kw["authors"] = (*kw.get("authors", ()), Author.from_classification(c))
            return True
        if c.scheme == V.SS_CONTENT_TYPE:
            if "content_type" in kw:
                raise ValueError(f"{c.classified_object}: contentTypeCode appears more than once")
            kw["content_type"] = Code.from_classification(c)
            return True
        return False

    def _coded_classifications(self) -> list[Classification]:
        out = [a.to_classification(V.SS_AUTHOR, self.id) for a in self.authors]
        if self.content_type is not None:
            out.append(self.content_type.to_classification(V.SS_CONTENT_TYPE, self.id))
        return out


@dataclass
class Folder(_Package):
    """XDSFolder: a RegistryPackage classified by the Folder node (ITI TF-3 4.2.3.4)."""

    codes: tuple[Code, ...] = ()
    last_update_time: str | None = None
    patient_id: str | None = None
    unique_id: str | None = None
    limited: bool = False
    limited_id: str = field(default="", compare=False)
    node_classification_id: str = field(default="", compare=False)
    ei_ids: dict[str, str] = field(default_factory=dict, compare=False)

    KIND: ClassVar[str] = "Folder"
    _NODE: ClassVar[str] = V.FOLDER_NODE
    _LIMITED: ClassVar[str] = V.FD_LIMITED
    _SINGLE: ClassVar[dict[str, str]] = {"lastUpdateTime": "last_update_time"}
    _MULTI: ClassVar[dict[str, str]] = {}
    _EIS: ClassVar[dict[str, str]] = {V.FD_PATIENT_ID: "patient_id", V.FD_UNIQUE_ID: "unique_id"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.codes = tuple(self.codes)

    @classmethod
    def _classify(cls, c: Classification, kw: dict) -> bool:
        if c.scheme == V.FD_CODE_LIST:
            kw["codes"] = (*kw.get("codes", ()), Code.from_classification(c))
            return True
        return False

    def _coded_classifications(self) -> list[Classification]:
        return [code.to_classification(V.FD_CODE_LIST, self.id) for code in self.codes]


@dataclass
class Association(RegistryEntry):
    """rim:Association (ITI TF-3 4.2.2): HasMember, document relationships, ITI-57 types.
    Its slots (SubmissionSetStatus, PreviousVersion, OriginalStatus, NewStatus,
    AssociationPropagation, ...) stay in ``extra_slots`` and are read through properties."""

    type: str = ""
    source: str = ""
    target: str = ""

    KIND: ClassVar[str] = "Association"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.type or not self.source or not self.target:
            raise ValueError(f"Association {self.id}: associationType, sourceObject and "
                             "targetObject are required")

    @property
    def type_short(self) -> str | None:
        """``HasMember``, ``RPLC``, ... or None for a type XDS does not define."""
        return V.ASSOCIATION_TYPES.get(self.type)

    def slot_value(self, name: str) -> str | None:
        s = next((s for s in self.extra_slots if s.name == name), None)
        return s.value if s else None

    def slot_values(self, name: str) -> tuple[str, ...] | None:
        s = next((s for s in self.extra_slots if s.name == name), None)
        return s.values if s else None

    @property
    def ss_status(self) -> str | None:
        return self.slot_value(V.SLOT_SS_STATUS)

    @property
    def previous_version(self) -> str | None:
        return self.slot_value(V.SLOT_PREVIOUS_VERSION)

    @property
    def original_status(self) -> str | None:
        return self.slot_value(V.SLOT_ORIGINAL_STATUS)

    @property
    def new_status(self) -> str | None:
        return self.slot_value(V.SLOT_NEW_STATUS)

    @property
    def association_propagation(self) -> str | None:
        return self.slot_value(V.SLOT_ASSOCIATION_PROPAGATION)

    @classmethod
    def from_rim(cls, r: RimObject) -> "Association":
        if r.tag != "Association":
            raise ValueError(f"{r.id}: not an Association")
        kw = cls._common_kwargs(r)
        attrs = kw["_attrs"]
        attrs.pop("objectType", None)
        kw["type"] = attrs.pop("associationType", "")
        kw["source"] = attrs.pop("sourceObject", "")
        kw["target"] = attrs.pop("targetObject", "")
        kw["extra_classifications"] = tuple(r.classifications)
        kw["extra_external_identifiers"] = tuple(r.external_identifiers)
        kw["extra_attrs"] = _check_attrs(kw, set())
        return cls(**kw)

    def to_rim(self) -> RimObject:
        r = self._rim("Association", {"objectType": V.OT_ASSOCIATION,
                                      "associationType": self.type,
                                      "sourceObject": self.source, "targetObject": self.target})
        return self._finish_rim(r)


@dataclass
class ObjectRef:
    """rim:ObjectRef: a registry object the submission refers to but does not carry."""

    id: str
    home: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("ObjectRef without id")

    @classmethod
    def from_ebrim(cls, el: etree._Element) -> "ObjectRef":
        return cls(el.get("id") or "", el.get("home"))

    def to_ebrim(self) -> etree._Element:
        return rim_element("ObjectRef", {"id": self.id, "home": self.home})


AnyEntry = DocumentEntry | SubmissionSet | Folder | Association

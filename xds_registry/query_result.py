"""The answer of a stored query and its ``query:AdhocQueryResponse`` (ebRS 3.0 §6.3.2,
ITI TF-2a 3.18.4.1.3 "Expected Actions" and 3.18.4.2 "Registry Stored Query Response").

- ``returnType="ObjectRef"``: one ``rim:ObjectRef id=... home=...`` per object;
- ``returnType="LeafClass"``: each object's ebRIM element as registered (the ``xml`` column) with
  the registry's current ``status`` (full StatusType URN), ``lid``, ``rim:VersionInfo`` (for
  DocumentEntries and Folders) and the ``home`` attribute (this community's homeCommunityId,
  ITI TF-3 4.2.3.1.5) written in;
- ``status``: Success; Failure with a ``rs:RegistryErrorList`` (and an empty
  ``rim:RegistryObjectList``, which the schema requires); PartialSuccess when there are both
  results and errors.  Warnings alone leave the status at Success.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from lxml import etree

from hie.errors import (SEVERITY_ERROR, SEVERITY_WARNING, STATUS_FAILURE, STATUS_PARTIAL,
                        STATUS_SUCCESS, RegistryError)
from xds_registry import vocab

RIM, RS, QUERY = vocab.RIM_NS, vocab.RS_NS, vocab.QUERY_NS
OBJECT_REF, LEAF_CLASS = "ObjectRef", "LeafClass"
RETURN_TYPES = (OBJECT_REF, LEAF_CLASS)
_BEFORE_VERSION_INFO = {f"{{{RIM}}}Slot", f"{{{RIM}}}Name", f"{{{RIM}}}Description"}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True,
                          huge_tree=True)
_KIND_ORDER = {"SubmissionSet": 0, "Folder": 1, "DocumentEntry": 2, "Association": 3}


@dataclass
class FoundObject:
    """One object of the answer (a row of ``xds_object`` plus its patient)."""

    id: str
    kind: str                   # DocumentEntry | SubmissionSet | Folder | Association
    lid: str
    version: int
    status: str                 # short form: Approved, Deprecated, ...
    patient_id: str | None      # None for Associations
    xml: bytes | None = None    # LeafClass only
    seq: int = 0

    def element(self, return_type: str, home: str) -> etree._Element:
        if return_type == OBJECT_REF or self.xml is None:
            ref = etree.Element(f"{{{RIM}}}ObjectRef", id=self.id, nsmap={"rim": RIM})
            if home:
                ref.set("home", home)
            return ref
        versioned = self.kind in ("DocumentEntry", "Folder")
        return leaf_element(self.xml, self.status, self.version if versioned else None,
                            self.lid, home)


def status_urn(status: str) -> str:
    if status == "DeferredCreation":
        return "urn:ihe:iti:2010:StatusType:DeferredCreation"
    return vocab.STATUS_URNS.get(status, status if ":" in status else
                                 "urn:oasis:names:tc:ebxml-regrep:StatusType:" + status)


def leaf_element(xml: bytes, status: str, version: int | None, lid: str, home: str
                 ) -> etree._Element:
    """The stored ebRIM element with the registry-managed attributes written in:
    ``status``, ``lid``, ``home`` and, for versioned objects (DocumentEntry, Folder — ITI TF-3
    4.1.4 / ITI TF-2b 3.57: SubmissionSets and Associations are not versioned),
    ``rim:VersionInfo/@versionName``."""
    el = etree.fromstring(xml, _PARSER)
    el.set("status", status_urn(status))
    if lid:
        el.set("lid", lid)
    if home:
        el.set("home", home)
    if version is None:
        return el
    vi = el.find(f"{{{RIM}}}VersionInfo")
    if vi is None:
        vi = etree.Element(f"{{{RIM}}}VersionInfo")
        pos = 0
        for i, child in enumerate(el):
            if child.tag in _BEFORE_VERSION_INFO:
                pos = i + 1
        el.insert(pos, vi)
    vi.set("versionName", str(version))
    return el


@dataclass
class QueryResult:
    """What :func:`xds_registry.queries.run_query` returns: the objects (already in answer order)
    or the errors, plus enough to render the response and the audit record."""

    query_id: str
    return_type: str
    home: str
    objects: list[FoundObject] = field(default_factory=list)
    errors: list[RegistryError] = field(default_factory=list)

    @property
    def status(self) -> str:
        if any(e.is_error for e in self.errors):
            return STATUS_PARTIAL if self.objects else STATUS_FAILURE
        return STATUS_SUCCESS

    @property
    def ok(self) -> bool:
        return self.status == STATUS_SUCCESS

    @property
    def ids(self) -> list[str]:
        return [o.id for o in self.objects]

    @property
    def patient_ids(self) -> list[str]:
        return list(dict.fromkeys(o.patient_id for o in self.objects if o.patient_id))

    def by_kind(self, kind: str) -> list[FoundObject]:
        return [o for o in self.objects if o.kind == kind]

    def elements(self) -> list[etree._Element]:
        return [o.element(self.return_type, self.home) for o in self.objects]

    def to_element(self) -> etree._Element:
        """The ``query:AdhocQueryResponse``."""
        resp = etree.Element(f"{{{QUERY}}}AdhocQueryResponse", status=self.status,
                             nsmap={"query": QUERY, "rim": RIM, "rs": RS})
        if self.errors:
            resp.append(error_list(self.errors))
        rol = etree.SubElement(resp, f"{{{RIM}}}RegistryObjectList")
        for el in self.elements():
            rol.append(el)
        return resp


def error_list(errors: Iterable[RegistryError]) -> etree._Element:
    errors = list(errors)
    highest = SEVERITY_ERROR if any(e.is_error for e in errors) else SEVERITY_WARNING
    el = etree.Element(f"{{{RS}}}RegistryErrorList", highestSeverity=highest, nsmap={"rs": RS})
    for e in errors:
        attrs = {"errorCode": e.error_code, "codeContext": e.code_context, "severity": e.severity}
        if e.location:
            attrs["location"] = e.location
        etree.SubElement(el, f"{{{RS}}}RegistryError", attrs).text = e.code_context
    return el


def answer_order(objects: list[FoundObject]) -> list[FoundObject]:
    """SubmissionSets, Folders, DocumentEntries, then Associations; registration order within."""
    return sorted(objects, key=lambda o: (_KIND_ORDER.get(o.kind, 9), o.seq))

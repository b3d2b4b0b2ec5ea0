"""Registry request and response messages (ebRS 3.0 §5, lcm.xsd / rs.xsd, as profiled by ITI TF-2b
3.42.4.1.2 (SubmitObjectsRequest), 3.42.4.2 (RegistryResponse), 3.57.4.1.2 and 3.62.4.1.2
(RemoveObjectsRequest)).

:func:`parse_submit_objects` turns an ``lcm:SubmitObjectsRequest`` into a :class:`SubmitObjects`
container of typed models: top-level Classifications / ExternalIdentifiers are attached to the
object they classify, RegistryPackages are told apart by their SubmissionSet / Folder
classification node.  Structural problems are collected as XDSRegistryMetadataError so that one
response lists them all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from lxml import etree

from hie.errors import (SEVERITY_ERROR, SEVERITY_WARNING, STATUS_FAILURE, STATUS_PARTIAL,
                        STATUS_SUCCESS, XDS, ErrorCollector, RegistryError)
from xds_registry import vocab as V
from xds_registry.ebrim import (Classification, ExternalIdentifier, RimObject, Slot, is_rim,
                                local, rim_element)
from xds_registry.model import (AnyEntry, Association, DocumentEntry, Folder, ObjectRef,
                                SubmissionSet)

LCM = "{%s}" % V.LCM_NS
RS = "{%s}" % V.RS_NS
DELETE_ALL = "urn:oasis:names:tc:ebxml-regrep:DeletionScopeType:DeleteAll"


@dataclass
class SubmitObjects:
    """The objects of one SubmitObjectsRequest, in document order per kind."""

    submission_sets: list[SubmissionSet] = field(default_factory=list)
    documents: list[DocumentEntry] = field(default_factory=list)
    folders: list[Folder] = field(default_factory=list)
    associations: list[Association] = field(default_factory=list)
    object_refs: list[ObjectRef] = field(default_factory=list)
    others: list[RimObject] = field(default_factory=list)   # kinds XDS does not define
    request_slots: list[Slot] = field(default_factory=list)
    request_id: str | None = None

    @property
    def submission_set(self) -> SubmissionSet | None:
        return self.submission_sets[0] if len(self.submission_sets) == 1 else None

    def entries(self) -> Iterator[AnyEntry]:
        yield from self.submission_sets
        yield from self.folders
        yield from self.documents
        yield from self.associations

    def by_id(self) -> dict[str, AnyEntry]:
        return {o.id: o for o in self.entries()}

    def to_ebrim(self) -> etree._Element:
        req = etree.Element(LCM + "SubmitObjectsRequest", nsmap={"lcm": V.LCM_NS,
                                                                  "rim": V.RIM_NS})
        if self.request_id:
            req.set("id", self.request_id)
        if self.request_slots:
            sl = etree.SubElement(req, LCM + "RequestSlotList")
            for s in self.request_slots:
                s.to_ebrim(sl)
        rol = rim_element("RegistryObjectList", None, req)
        for r in self.object_refs:
            rol.append(r.to_ebrim())
        for o in self.entries():
            rol.append(o.to_ebrim())
        for x in self.others:
            rol.append(x.to_ebrim())
        return req


def parse_submit_objects(root: etree._Element, errors: ErrorCollector) -> SubmitObjects:
    """Parse ``lcm:SubmitObjectsRequest``; problems go to ``errors`` (the offending object is
    left out of the result)."""
    out = SubmitObjects()
    if not isinstance(root.tag, str) or root.tag != LCM + "SubmitObjectsRequest":
        errors.error(XDS.RegistryMetadataError,
                     f"expected lcm:SubmitObjectsRequest, got {root.tag}")
        return out
    out.request_id = root.get("id")
    rol = None
    for c in root:
        if not isinstance(c.tag, str):
            continue
        if c.tag == LCM + "RequestSlotList":
            out.request_slots = [Slot.from_ebrim(s) for s in c if is_rim(s, "Slot")]
        elif is_rim(c, "RegistryObjectList"):
            rol = c
    if rol is None:
        errors.error(XDS.RegistryMetadataError, "SubmitObjectsRequest has no RegistryObjectList")
        return out

    raw: list[RimObject] = []
    for el in rol:
        if not isinstance(el.tag, str):
            continue
        if not is_rim(el):
            errors.error(XDS.RegistryMetadataError,
                         f"unexpected element {el.tag} in RegistryObjectList")
            continue
        try:
            if local(el) == "ObjectRef":
                out.object_refs.append(ObjectRef.from_ebrim(el))
            else:
                raw.append(RimObject.from_ebrim(el))
        except ValueError as e:
            errors.error(XDS.RegistryMetadataError, str(e), el.get("id") or "")

    # attach top-level Classifications / ExternalIdentifiers to the object they describe
    by_id = {r.id: r for r in raw if r.tag not in ("Classification", "ExternalIdentifier")}
    objects: list[RimObject] = []
    for r in raw:
        if r.tag == "Classification":
            try:
                c = _as_classification(r)
            except ValueError as e:
                errors.error(XDS.RegistryMetadataError, str(e), r.id)
                continue
            target = by_id.get(c.classified_object)
            if target is None:
                errors.error(XDS.UnresolvedReferenceException,
                             f"Classification {r.id} classifies {c.classified_object}, which is "
                             "not in the submission", r.id)
            else:
                target.classifications.append(c)
        elif r.tag == "ExternalIdentifier":
            e = _as_external_identifier(r)
            target = by_id.get(e.registry_object)
            if target is None:
                errors.error(XDS.UnresolvedReferenceException,
                             f"ExternalIdentifier {r.id} identifies {e.registry_object}, which is "
                             "not in the submission", r.id)
            else:
                target.external_identifiers.append(e)
        else:
            objects.append(r)

    for r in objects:
        try:
            _add(out, r)
        except ValueError as e:
            errors.error(XDS.RegistryMetadataError, str(e), r.id)
    return out


def _as_classification(r: RimObject) -> Classification:
    a = r.attrs
    known = {"classifiedObject", "classificationScheme", "classificationNode",
             "nodeRepresentation", "objectType"}
    if not a.get("classifiedObject"):
        raise ValueError(f"Classification {r.id}: classifiedObject is missing")
    return Classification(a["classifiedObject"], a.get("classificationScheme"),
                          a.get("classificationNode"), a.get("nodeRepresentation"),
                          tuple(r.slots), r.name, r.description, r.id,
                          {k: v for k, v in a.items() if k not in known})


def _as_external_identifier(r: RimObject) -> ExternalIdentifier:
    a = r.attrs
    return ExternalIdentifier(a.get("registryObject") or "", a.get("identificationScheme") or "",
                              a.get("value") or "", r.name, r.description, tuple(r.slots), r.id)


def _add(out: SubmitObjects, r: RimObject) -> None:
    if r.tag == "ExtrinsicObject":
        out.documents.append(DocumentEntry.from_rim(r))
    elif r.tag == "RegistryPackage":
        nodes = {c.node for c in r.classifications if c.node}
        is_ss, is_fd = V.SUBMISSION_SET_NODE in nodes, V.FOLDER_NODE in nodes
        if is_ss and is_fd:
            raise ValueError(f"RegistryPackage {r.id} is classified both as SubmissionSet and "
                             "as Folder")
        if is_ss:
            out.submission_sets.append(SubmissionSet.from_rim(r))
        elif is_fd:
            out.folders.append(Folder.from_rim(r))
        else:
            raise ValueError(f"RegistryPackage {r.id} is classified neither as SubmissionSet "
                             f"({V.SUBMISSION_SET_NODE}) nor as Folder ({V.FOLDER_NODE})")
    elif r.tag == "Association":
        out.associations.append(Association.from_rim(r))
    else:
        out.others.append(r)


# --------------------------------------------------------------------------------------------
# RegistryResponse
# --------------------------------------------------------------------------------------------

@dataclass
class RegistryResponse:
    """``rs:RegistryResponse`` (ebRS 3.0 §2.1.3, ITI TF-2b 3.42.4.2.2)."""

    status: str = STATUS_SUCCESS
    errors: list[RegistryError] = field(default_factory=list)
    request_id: str | None = None

    def __post_init__(self) -> None:
        if self.status not in (STATUS_SUCCESS, STATUS_FAILURE, STATUS_PARTIAL):
            raise ValueError(f"not a registry response status: {self.status}")

    @classmethod
    def from_errors(cls, errors: list[RegistryError]) -> "RegistryResponse":
        failed = any(e.is_error for e in errors)
        return cls(STATUS_FAILURE if failed else STATUS_SUCCESS, list(errors))

    @property
    def ok(self) -> bool:
        return self.status == STATUS_SUCCESS

    @property
    def codes(self) -> list[str]:
        return [e.error_code for e in self.errors]

    def to_ebrim(self) -> etree._Element:
        el = etree.Element(RS + "RegistryResponse", {"status": self.status},
                           nsmap={"rs": V.RS_NS})
        if self.request_id:
            el.set("requestId", self.request_id)
        if self.errors:
            lst = etree.SubElement(el, RS + "RegistryErrorList", {"highestSeverity": (
                SEVERITY_ERROR if any(e.is_error for e in self.errors) else SEVERITY_WARNING)})
            for e in self.errors:
                x = etree.SubElement(lst, RS + "RegistryError", {
                    "errorCode": e.error_code, "codeContext": e.code_context,
                    "severity": e.severity})
                if e.location:
                    x.set("location", e.location)
        return el

    @classmethod
    def from_ebrim(cls, el: etree._Element) -> "RegistryResponse":
        errs = [RegistryError(x.get("errorCode") or "", x.get("codeContext") or "",
                              x.get("severity") or SEVERITY_ERROR, x.get("location") or "")
                for x in el.iter(RS + "RegistryError")]
        return cls(el.get("status") or "", errs, el.get("requestId"))


# --------------------------------------------------------------------------------------------
# RemoveObjectsRequest (ITI-62)
# --------------------------------------------------------------------------------------------

def parse_remove_objects(root: etree._Element, errors: ErrorCollector) -> list[ObjectRef]:
    """The ObjectRefs of ``lcm:RemoveObjectsRequest`` (ITI TF-2b 3.62.4.1.2: an ObjectRefList,
    no AdhocQuery, deletionScope DeleteAll)."""
    if not isinstance(root.tag, str) or root.tag != LCM + "RemoveObjectsRequest":
        errors.error(XDS.RegistryMetadataError,
                     f"expected lcm:RemoveObjectsRequest, got {root.tag}")
        return []
    scope = root.get("deletionScope")
    if scope and scope != DELETE_ALL:
        errors.error(XDS.InvalidRequestException, f"deletionScope {scope} is not supported; "
                     f"only {DELETE_ALL}")
    refs: list[ObjectRef] = []
    for c in root:
        if is_rim(c, "AdhocQuery"):
            errors.error(XDS.InvalidRequestException,
                         "RemoveObjectsRequest with an AdhocQuery is not supported (ITI-62 "
                         "identifies objects by ObjectRefList)")
        elif is_rim(c, "ObjectRefList"):
            for r in c:
                if is_rim(r, "ObjectRef"):
                    if not r.get("id"):
                        errors.error(XDS.RegistryMetadataError, "ObjectRef without id")
                    else:
                        refs.append(ObjectRef(r.get("id"), r.get("home")))
    if not refs and not errors.has_errors:
        errors.error(XDS.RegistryMetadataError, "RemoveObjectsRequest lists no objects")
    return refs


def remove_objects_request(ids: list[str]) -> etree._Element:
    req = etree.Element(LCM + "RemoveObjectsRequest", nsmap={"lcm": V.LCM_NS, "rim": V.RIM_NS})
    lst = rim_element("ObjectRefList", None, req)
    for i in ids:
        rim_element("ObjectRef", {"id": i}, lst)
    return req

"""ebRIM 3.0 plumbing (OASIS ebRIM 3.0 §2-§4, rim.xsd; as profiled by ITI TF-3 4.2.1-4.2.2):
the generic registry-object layer under the XDS models of :mod:`xds_registry.model`.

- :class:`LocalizedString`, :class:`Slot`, :class:`VersionInfo` — value types;
- :class:`Classification`, :class:`ExternalIdentifier` — the two composed objects XDS uses for
  codes, authors and identifiers;
- :class:`RimObject` — any top-level RegistryObject (ExtrinsicObject, RegistryPackage,
  Association, Classification, ObjectRef, ...) with its attributes, slots, name, description,
  version info and composed objects; children it does not know are kept as raw XML so nothing is
  lost between :meth:`RimObject.from_ebrim` and :meth:`RimObject.to_ebrim`.

Elements are written in the schema order of RegistryObjectType: Slot*, Name?, Description?,
VersionInfo?, Classification*, ExternalIdentifier*, then the subtype's own children.  Pure
functions over lxml elements; no I/O.
"""
from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from lxml import etree

from xds_registry.vocab import OT_CLASSIFICATION, OT_EXTERNAL_IDENTIFIER, RIM_NS

R = "{%s}" % RIM_NS
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
NSMAP = {"rim": RIM_NS}
LONG_NAME = 256       # rim:LongName (slot values, nodeRepresentation, value, ...)
FREE_FORM_TEXT = 1024  # rim:FreeFormText (LocalizedString/@value)


def new_id() -> str:
    """A fresh entryUUID (RFC 4122 version 4 as ``urn:uuid:``)."""
    return f"urn:uuid:{uuid.uuid4()}"


def rim_element(tag: str, attrs: dict[str, str] | None = None,
                parent: etree._Element | None = None) -> etree._Element:
    a = {k: v for k, v in (attrs or {}).items() if v is not None}
    if parent is None:
        return etree.Element(R + tag, a, nsmap=NSMAP)
    return etree.SubElement(parent, R + tag, a)


def local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def is_rim(el: etree._Element, tag: str | None = None) -> bool:
    if not isinstance(el.tag, str) or etree.QName(el).namespace != RIM_NS:
        return False
    return tag is None or etree.QName(el).localname == tag


# --------------------------------------------------------------------------------------------
# value types
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalizedString:
    value: str
    lang: str | None = None
    charset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise ValueError("LocalizedString value must be text")

    def to_ebrim(self, parent: etree._Element) -> etree._Element:
        return rim_element("LocalizedString", {XML_LANG: self.lang, "charset": self.charset,
                                               "value": self.value}, parent)

    @classmethod
    def from_ebrim(cls, el: etree._Element) -> "LocalizedString":
        if el.get("value") is None:
            raise ValueError("rim:LocalizedString without value")
        return cls(el.get("value"), el.get(XML_LANG), el.get("charset"))


IString = tuple[LocalizedString, ...]


def istring(value: str | Sequence[LocalizedString] | LocalizedString | None) -> IString:
    """Normalize a title/comments argument: text, one LocalizedString or several."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (LocalizedString(value),)
    if isinstance(value, LocalizedString):
        return (value,)
    out = tuple(value)
    if not all(isinstance(v, LocalizedString) for v in out):
        raise ValueError("an international string is a sequence of LocalizedString")
    return out


def istring_text(value: IString) -> str | None:
    return value[0].value if value else None


def _istring_from(el: etree._Element | None) -> IString:
    if el is None:
        return ()
    return tuple(LocalizedString.from_ebrim(c) for c in el if is_rim(c, "LocalizedString"))


def _istring_to(tag: str, value: IString, parent: etree._Element) -> None:
    if value:
        holder = rim_element(tag, None, parent)
        for ls in value:
            ls.to_ebrim(holder)


@dataclass(frozen=True)
class Slot:
    """A named list of string values (ebRIM 3.0 §2.8.1)."""

    name: str
    values: tuple[str, ...] = ()
    slot_type: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a Slot needs a name")
        vals = tuple(self.values) if not isinstance(self.values, str) else (self.values,)
        if not all(isinstance(v, str) for v in vals):
            raise ValueError(f"slot {self.name}: values must be text")
        object.__setattr__(self, "values", vals)

    @property
    def value(self) -> str | None:
        return self.values[0] if self.values else None

    def to_ebrim(self, parent: etree._Element) -> etree._Element:
        s = rim_element("Slot", {"name": self.name, "slotType": self.slot_type}, parent)
        vl = rim_element("ValueList", None, s)
        for v in self.values:
            rim_element("Value", None, vl).text = v
        return s

    @classmethod
    def from_ebrim(cls, el: etree._Element) -> "Slot":
        name = el.get("name")
        if not name:
            raise ValueError("rim:Slot without name")
        values: list[str] = []
        for vl in el:
            if is_rim(vl, "ValueList"):
                values.extend((v.text or "") for v in vl if is_rim(v, "Value"))
        return cls(name, tuple(values), el.get("slotType"))


def slot_dict(slots: Iterable[Slot]) -> dict[str, Slot]:
    return {s.name: s for s in slots}


@dataclass(frozen=True)
class VersionInfo:
    version_name: str
    comment: str | None = None

    def to_ebrim(self, parent: etree._Element) -> None:
        rim_element("VersionInfo", {"versionName": self.version_name, "comment": self.comment},
                    parent)


# --------------------------------------------------------------------------------------------
# Classification / ExternalIdentifier
# --------------------------------------------------------------------------------------------

def _slots_from(el: etree._Element) -> tuple[Slot, ...]:
    return tuple(Slot.from_ebrim(s) for s in el if is_rim(s, "Slot"))


@dataclass
class Classification:
    """rim:Classification: external (``scheme`` + ``node_representation``: a code, an author)
    or internal (``node``: SubmissionSet/Folder/limited-metadata markers)."""

    classified_object: str
    scheme: str | None = None
    node: str | None = None
    node_representation: str | None = None
    slots: tuple[Slot, ...] = ()
    name: IString = ()
    description: IString = ()
    id: str = field(default="", compare=False)
    extra_attrs: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.slots = tuple(self.slots)
        self.name = istring(self.name)
        self.description = istring(self.description)
        if not self.scheme and not self.node:
            raise ValueError("a Classification needs classificationScheme or classificationNode")

    def slot(self, name: str) -> Slot | None:
        return next((s for s in self.slots if s.name == name), None)

    @classmethod
    def from_ebrim(cls, el: etree._Element, owner: str | None = None) -> "Classification":
        obj = el.get("classifiedObject") or owner
        if not obj:
            raise ValueError(f"Classification {el.get('id')}: classifiedObject is missing")
        known = {"id", "classifiedObject", "classificationScheme", "classificationNode",
                 "nodeRepresentation", "objectType"}
        return cls(obj, el.get("classificationScheme"), el.get("classificationNode"),
                   el.get("nodeRepresentation"), _slots_from(el),
                   _istring_from(_child(el, "Name")), _istring_from(_child(el, "Description")),
                   el.get("id") or "", {k: v for k, v in el.attrib.items() if k not in known})

    def to_ebrim(self, parent: etree._Element | None = None) -> etree._Element:
        if not self.id:
            self.id = new_id()
        c = rim_element("Classification", {
            "id": self.id, "objectType": OT_CLASSIFICATION,
            "classificationScheme": self.scheme, "classificationNode": self.node,
            "classifiedObject": self.classified_object,
            "nodeRepresentation": self.node_representation, **self.extra_attrs}, parent)
        for s in self.slots:
            s.to_ebrim(c)
        _istring_to("Name", self.name, c)
        _istring_to("Description", self.description, c)
        return c


@dataclass
class ExternalIdentifier:
    """rim:ExternalIdentifier: ``value`` in ``scheme`` identifies ``registry_object``."""

    registry_object: str
    scheme: str
    value: str
    name: IString = ()
    description: IString = ()
    slots: tuple[Slot, ...] = ()
    id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.slots = tuple(self.slots)
        self.name = istring(self.name)
        self.description = istring(self.description)
        if not self.scheme:
            raise ValueError("an ExternalIdentifier needs identificationScheme")
        if self.value is None:
            raise ValueError("an ExternalIdentifier needs a value")

    @classmethod
    def from_ebrim(cls, el: etree._Element, owner: str | None = None) -> "ExternalIdentifier":
        obj = el.get("registryObject") or owner
        if not obj:
            raise ValueError(f"ExternalIdentifier {el.get('id')}: registryObject is missing")
        if el.get("value") is None:
            raise ValueError(f"ExternalIdentifier {el.get('id')}: value is missing")
        return cls(obj, el.get("identificationScheme") or "", el.get("value"),
                   _istring_from(_child(el, "Name")), _istring_from(_child(el, "Description")),
                   _slots_from(el), el.get("id") or "")

    def to_ebrim(self, parent: etree._Element | None = None) -> etree._Element:
        if not self.id:
            self.id = new_id()
        e = rim_element("ExternalIdentifier", {
            "id": self.id, "objectType": OT_EXTERNAL_IDENTIFIER,
            "registryObject": self.registry_object, "identificationScheme": self.scheme,
            "value": self.value}, parent)
        for s in self.slots:
            s.to_ebrim(e)
        _istring_to("Name", self.name, e)
        _istring_to("Description", self.description, e)
        return e


def _child(el: etree._Element, tag: str) -> etree._Element | None:
    for c in el:
        if is_rim(c, tag):
            return c
    return None


# --------------------------------------------------------------------------------------------
# generic registry object
# --------------------------------------------------------------------------------------------

# objects that submitters (and older test tools) send without an id; nothing refers to them
ANONYMOUS_OK = {"Classification", "ExternalIdentifier", "Association"}
COMMON_CHILDREN = {"Slot", "Name", "Description", "VersionInfo", "Classification",
                   "ExternalIdentifier"}


@dataclass
class RimObject:
    """Any top-level ebRIM object of a RegistryObjectList, decomposed but lossless."""

    tag: str
    id: str
    attrs: dict[str, str] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    name: IString = ()
    description: IString = ()
    version_info: VersionInfo | None = None
    classifications: list[Classification] = field(default_factory=list)
    external_identifiers: list[ExternalIdentifier] = field(default_factory=list)
    extra_children: list[etree._Element] = field(default_factory=list)  # raw, after the rest

    @classmethod
    def from_ebrim(cls, el: etree._Element) -> "RimObject":
        if not is_rim(el):
            raise ValueError(f"not an ebRIM 3.0 element: {el.tag}")
        oid = el.get("id")
        if not oid:
            if local(el) not in ANONYMOUS_OK:
                raise ValueError(f"rim:{local(el)} without id")
            oid = new_id()  # nothing can reference it; the registry names it
        obj = cls(local(el), oid, {k: v for k, v in el.attrib.items() if k != "id"})
        for c in el:
            if not isinstance(c.tag, str):
                continue
            t = local(c) if is_rim(c) else ""
            if t == "Slot":
                obj.slots.append(Slot.from_ebrim(c))
            elif t == "Name":
                obj.name = _istring_from(c)
            elif t == "Description":
                obj.description = _istring_from(c)
            elif t == "VersionInfo":
                obj.version_info = VersionInfo(c.get("versionName") or "1.1", c.get("comment"))
            elif t == "Classification":
                obj.classifications.append(Classification.from_ebrim(c, oid))
            elif t == "ExternalIdentifier":
                obj.external_identifiers.append(ExternalIdentifier.from_ebrim(c, oid))
            else:
                obj.extra_children.append(copy.deepcopy(c))
        return obj

    def to_ebrim(self) -> etree._Element:
        el = rim_element(self.tag, {"id": self.id, **self.attrs})
        for s in self.slots:
            s.to_ebrim(el)
        _istring_to("Name", self.name, el)
        _istring_to("Description", self.description, el)
        if self.version_info is not None:
            self.version_info.to_ebrim(el)
        for c in self.classifications:
            c.to_ebrim(el)
        for e in self.external_identifiers:
            e.to_ebrim(el)
        for x in self.extra_children:
            el.append(copy.deepcopy(x))
        return el

    def slot(self, name: str) -> Slot | None:
        return next((s for s in self.slots if s.name == name), None)


def serialize(el: etree._Element) -> bytes:
    """The bytes stored in the registry's ``xml`` column (UTF-8, no declaration)."""
    return etree.tostring(el, encoding="UTF-8", xml_declaration=False)


def deserialize(data: bytes) -> etree._Element:
    return etree.fromstring(data, parser=_PARSER)


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                          remove_blank_text=True)

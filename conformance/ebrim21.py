"""ebRIM 2.1 submissions of the NIST test kit translated to ebRIM 3.0 — sans-IO.

Many of the kit's metadata files are XDS.a-era ``rs:SubmitObjectsRequest`` documents in ebRS /
ebRIM 2.1 (namespaces ``urn:oasis:names:tc:ebxml-regrep:registry:xsd:2.1`` and
``...:rim:xsd:2.1``).  XDS.b speaks ebRS 3.0 (ITI TF-3 4.2.3, ``lcm:SubmitObjectsRequest`` with a
``rim:RegistryObjectList``), so before sending, the runner rewrites them, as the toolkit does:

- ``rs:SubmitObjectsRequest`` / ``rim:LeafRegistryObjectList`` become ``lcm:SubmitObjectsRequest``
  / ``rim:RegistryObjectList``; the ``rim:ObjectRef`` declarations of 2.1 (references to the
  classification schemes) are dropped — 3.0 needs none;
- every element moves to the rim 3.0 namespace, with only the attributes ebRIM 3.0 defines
  (``lang`` becomes ``xml:lang``);
- a ``Classification``, ``ExternalIdentifier`` or ``Association`` gets the ``id`` 3.0 requires
  (a fresh ``urn:uuid``); a nested ``ExternalIdentifier`` names its ``registryObject``; the short
  association types of XDS.a (``HasMember``, ``RPLC``, ``APND``, ``XFRM``, ``XFRM_RPLC``,
  ``signs``) become their URNs (ebRIM 3.0 / ITI TF-3 4.2.2);
- the children of a registry object are put in the order ebRIM 3.0's schema wants: ``Slot``,
  ``Name``, ``Description``, ``Classification``, ``ExternalIdentifier`` (2.1 allowed any).

Anything else is copied as it is.  The result validates against the official ebRS 3.0 schema
(``../shared/standards/xsd-ebrs30``), which the runner's tests check for every 2.1 file of the
suites.
"""
from __future__ import annotations

import uuid
from typing import Callable

from lxml import etree

RS21 = "urn:oasis:names:tc:ebxml-regrep:registry:xsd:2.1"
RIM21 = "urn:oasis:names:tc:ebxml-regrep:rim:xsd:2.1"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
XML_NS = "http://www.w3.org/XML/1998/namespace"

ASSOCIATION_TYPES = {
    "HasMember": "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
    "RPLC": "urn:ihe:iti:2007:AssociationType:RPLC",
    "APND": "urn:ihe:iti:2007:AssociationType:APND",
    "XFRM": "urn:ihe:iti:2007:AssociationType:XFRM",
    "XFRM_RPLC": "urn:ihe:iti:2007:AssociationType:XFRM_RPLC",
    "signs": "urn:ihe:iti:2007:AssociationType:signs",
}
_NEEDS_ID = {"Classification", "ExternalIdentifier", "Association"}
# ebRIM 3.0 attributes by element (rim.xsd); others of 2.1 are dropped
_OBJECT = ("id", "home", "lid", "objectType", "status")
_ATTRIBUTES = {
    "ExtrinsicObject": _OBJECT + ("mimeType", "isOpaque"),
    "RegistryPackage": _OBJECT,
    "Classification": _OBJECT + ("classificationScheme", "classifiedObject",
                                 "classificationNode", "nodeRepresentation"),
    "ExternalIdentifier": _OBJECT + ("registryObject", "identificationScheme", "value"),
    "Association": _OBJECT + ("associationType", "sourceObject", "targetObject"),
    "Slot": ("name", "slotType"),
    "LocalizedString": ("charset", "value"),
}
# the order of a registry object's children in ebRIM 3.0 (RegistryObjectType)
_ORDER = {"Slot": 0, "Name": 1, "Description": 2, "VersionInfo": 3, "Classification": 4,
          "ExternalIdentifier": 5}


class TranslationError(ValueError):
    """Not an ebRS 2.1 SubmitObjectsRequest."""


def is_v21(root: etree._Element) -> bool:
    return root.tag == f"{{{RS21}}}SubmitObjectsRequest"


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _copy(el: etree._Element, parent_id: str, new_id: Callable[[], str]) -> etree._Element:
    name = _local(el)
    out = etree.Element(f"{{{RIM}}}{name}", nsmap={"rim": RIM})
    allowed = _ATTRIBUTES.get(name)
    for k, v in el.attrib.items():
        if name == "LocalizedString" and k == "lang":
            out.set(f"{{{XML_NS}}}lang", v)
        elif k.startswith(f"{{{XML_NS}}}") or allowed is None or k in allowed:
            out.set(k, v)
    if name in _NEEDS_ID and not out.get("id"):
        out.set("id", new_id())
    if name == "ExternalIdentifier" and not out.get("registryObject") and parent_id:
        out.set("registryObject", parent_id)
    if name == "Association":
        kind = out.get("associationType", "")
        out.set("associationType", ASSOCIATION_TYPES.get(kind, kind))
    children = [c for c in el if isinstance(c.tag, str)]
    if name in _ATTRIBUTES and name not in ("Slot", "LocalizedString"):
        children.sort(key=lambda c: _ORDER.get(_local(c), 9))   # stable: same kinds keep order
    me = out.get("id", "")
    for c in children:
        out.append(_copy(c, me, new_id))
    if not children and el.text and el.text.strip():
        out.text = el.text
    elif not children and name == "Value":
        out.text = el.text or ""
    return out


def to_v3(root: etree._Element, new_id: Callable[[], str] | None = None) -> etree._Element:
    """The ebRS 3.0 ``lcm:SubmitObjectsRequest`` for an ebRS 2.1 ``rs:SubmitObjectsRequest``;
    ``new_id`` makes the ids 3.0 requires (default: a fresh ``urn:uuid``)."""
    if not is_v21(root):
        raise TranslationError(f"not an ebRS 2.1 SubmitObjectsRequest: {root.tag}")
    new_id = new_id or (lambda: f"urn:uuid:{uuid.uuid4()}")
    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(request, f"{{{RIM}}}RegistryObjectList")
    for lst in root:
        if not isinstance(lst.tag, str):
            continue
        if _local(lst) != "LeafRegistryObjectList":
            raise TranslationError(f"unexpected {_local(lst)} in a SubmitObjectsRequest")
        for el in lst:
            if isinstance(el.tag, str) and _local(el) != "ObjectRef":
                objects.append(_copy(el, "", new_id))
    return request


__all__ = ["RS21", "RIM21", "LCM", "RIM", "ASSOCIATION_TYPES", "TranslationError", "is_v21",
           "to_v3"]

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

The response is built twice over: as an lxml tree (:meth:`QueryResult.to_element`, for callers
that want elements) and, on the hot path of the SOAP handlers, directly as bytes
(:meth:`QueryResult.to_bytes`) without parsing the stored XML again.  The bytes path relies on
the form ``xds_registry.store.insert`` writes (``store.stored_xml``): the serialised element
(``rim`` prefix, lxml's attribute escaping, no layout whitespace) carrying ``lid`` and, for
versioned objects, ``<rim:VersionInfo versionName="N"/>``, and never a ``status`` attribute.
Then writing the registry-managed attributes in is a splice after the tag name (attribute order
is not significant, XML 1.0 §3.1).  A stored element in any other form (a ``status`` or
``home`` attribute to replace, a different lid or version, whitespace-only text the tree path
would drop) goes through the tree, so both paths give the same infoset.  Inside the response
the stored element's own ``xmlns:rim`` declaration, the same as the response's, is left out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
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
_VERSIONED = ("DocumentEntry", "Folder")
_TAG_NAME = re.compile(rb"<[^\s/>]+")
# XML attribute value escaping exactly as libxml2 writes it (xmlBufAttrSerializeTxtContent)
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                               "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})
_RIM_DECLARATION = f' xmlns:rim="{RIM}"'.encode()
_BLANK_TEXT = re.compile(rb">[ \t\r\n]+<")
_NEEDS_ESCAPE = re.compile('[&<>"\n\r\t]')
_RESPONSE_OPEN = (f'<query:AdhocQueryResponse xmlns:query="{QUERY}" xmlns:rim="{RIM}" '
                  f'xmlns:rs="{RS}" status="').encode()
_LIST_OPEN = b"<rim:RegistryObjectList>"
_LIST_CLOSE = b"</rim:RegistryObjectList></query:AdhocQueryResponse>"


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
        versioned = self.kind in _VERSIONED
        return leaf_element(self.xml, self.status, self.version if versioned else None,
                            self.lid, home)

    def to_bytes(self, return_type: str, home: str) -> bytes:
        """:meth:`element` serialised (UTF-8, ``rim`` declared by the enclosing response)."""
        return b"".join(self.parts(return_type, home))

    def parts(self, return_type: str, home: str) -> list:
        """:meth:`to_bytes` as pieces (bytes and views of the stored XML) to be joined."""
        if return_type == OBJECT_REF or self.xml is None:
            return [b'<rim:ObjectRef id="', escape_attr(self.id), b'"',
                    attr_bytes("home", home) if home else b"", b"/>"]
        return leaf_parts(self.xml, self.status,
                          self.version if self.kind in _VERSIONED else None, self.lid, home,
                          rim_declared=True)


def escape_attr(value: str) -> bytes:
    """An attribute value's text as lxml writes it between double quotes (UTF-8)."""
    if _NEEDS_ESCAPE.search(value) is None:
        return value.encode("utf-8")
    return value.translate(_ATTR_ESCAPES).encode("utf-8")


@lru_cache(maxsize=256)
def attr_bytes(name: str, value: str) -> bytes:
    """`` name="value"`` written by lxml itself (so invalid characters fail the same way)."""
    return etree.tostring(etree.Element("a", {name: value}), encoding="UTF-8",
                          xml_declaration=False)[2:-2]


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


def leaf_bytes(xml: bytes, status: str, version: int | None, lid: str, home: str) -> bytes:
    """:func:`leaf_element` serialised (see :func:`leaf_parts`)."""
    return b"".join(leaf_parts(xml, status, version, lid, home))


def leaf_parts(xml: bytes, status: str, version: int | None, lid: str, home: str, *,
               rim_declared: bool = False) -> list:
    """:func:`leaf_element` serialised, as pieces: spliced into the stored bytes when they are
    in the form ``store.insert`` writes (see the module docstring), else through the tree.
    ``rim_declared``: the enclosing element declares ``rim`` (the stored element's own, same
    declaration is then left out)."""
    end = xml.find(b">")
    name = _TAG_NAME.match(xml)
    if end > 0 and name is not None:
        head = xml[:end]
        if (b' status="' not in head and not (home and b' home="' in head)
                and (not lid or b"".join((b' lid="', escape_attr(lid), b'"')) in head)
                and (version is None or _has_version(xml, end, version))
                and not _has_blank_text(xml)):
            cut = name.end()
            view = memoryview(xml)
            parts = [view[:cut], _status_attr(status)]
            if home:
                parts.append(attr_bytes("home", home))
            at = head.find(_RIM_DECLARATION, cut) if rim_declared else -1
            if at < 0:
                parts.append(view[cut:])
            else:
                parts += (view[cut:at], view[at + len(_RIM_DECLARATION):])
            return parts
    return [_tree_bytes(xml, status, version, lid, home)]


def _has_version(xml: bytes, start: int, version: int) -> bool:
    """The first ``rim:VersionInfo`` after ``start`` is ``store.insert``'s, naming ``version``
    (Slots, Name and Description, which come before it, cannot hold one)."""
    at = xml.find(b"<rim:VersionInfo ", start)
    return at >= 0 and xml.startswith(b'<rim:VersionInfo versionName="%d"/>' % version, at)


def _has_blank_text(xml: bytes) -> bool:
    """Whitespace-only text between tags with a line break or tab, which the tree path
    (``remove_blank_text``) drops: ``store.stored_xml`` writes none, this guards other rows
    (a byte search first, the expression only for the few objects with such characters)."""
    if b"\n" not in xml and b"\t" not in xml and b"\r" not in xml:
        return False
    return _BLANK_TEXT.search(xml) is not None


@lru_cache(maxsize=64)
def _status_attr(status: str) -> bytes:
    return attr_bytes("status", status_urn(status))


def _tree_bytes(xml: bytes, status: str, version: int | None, lid: str, home: str) -> bytes:
    return etree.tostring(leaf_element(xml, status, version, lid, home), encoding="UTF-8",
                          xml_declaration=False)


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

    def to_bytes(self) -> bytes:
        """:meth:`to_element` serialised (UTF-8, no XML declaration, every namespace declared
        inside), written directly: ``hie.soap.SoapResponse(body_bytes=...)``."""
        parts = [_RESPONSE_OPEN, self.status.encode(), b'">']
        if self.errors:
            parts.append(etree.tostring(error_list(self.errors), encoding="UTF-8",
                                        xml_declaration=False))
        parts.append(_LIST_OPEN)
        rt, home = self.return_type, self.home
        for o in self.objects:
            parts += o.parts(rt, home)
        parts.append(_LIST_CLOSE)
        return b"".join(parts)


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

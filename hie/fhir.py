"""FHIR R4 (4.0.1) codec, sans-IO: resources as JSON (R4 "JSON Representation of Resources",
http.html §3.1.0.1.6 / json.html) and as XML (xml.html), content negotiation (http.html
§3.1.0.1.6-7: ``_format``, ``Accept`` and ``Content-Type`` with ``application/fhir+json`` /
``application/fhir+xml``), OperationOutcome (operationoutcome.html, the issue-type value set),
searchset Bundles (bundle.html, search.html §3.1.1.5.x paging links) and Parameters
(parameters.html).

In memory a resource is its JSON form: ``dict`` / ``list`` / ``str`` / ``int`` / ``float`` /
``bool``, with ``_name`` siblings holding the id and extensions of primitive elements (json.html
§"primitive types").  XML is produced from and read into that same form.

Why a typed mapping of our own rather than the ``fhir.resources`` models that DESIGN.md lists:
the XML representation needs, for every element, whether it repeats, whether it is a primitive
(and of which JSON type), a resource wrapper or the narrative ``div`` — and its order.  The
pydantic models know this but only through annotations that have to be reverse-engineered, they
parse XML with their own parser (ours, :func:`hie.xmlsafe.parse_xml`, refuses DTDs, entities and
over-deep documents) and add pydantic to every process for the five resources the patient index
serves.  :data:`TYPES` below is that knowledge written out from the R4 resource pages (element
order, cardinality, type), in one table that both directions and :func:`validate` read; a later
actor (MHD: DocumentReference, List, Binary) adds its resources to the same table with
:func:`define`.  :func:`validate` checks structure (known elements, single vs repeating, primitive
types and formats) — the "basic FHIR validation rules" whose failure is HTTP 400; profile and
business rules (HTTP 422) are the transaction's.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlencode

from lxml import etree

from hie.errors import HieError
from hie.xmlsafe import XmlError, parse_xml

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
FHIR_VERSION = "4.0.1"
JSON_MEDIA_TYPE = "application/fhir+json"
XML_MEDIA_TYPE = "application/fhir+xml"
MEDIA_TYPES = {"json": JSON_MEDIA_TYPE, "xml": XML_MEDIA_TYPE}
_F = "{%s}" % FHIR_NS

# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


class FhirError(HieError):
    """A request FHIR answers with an OperationOutcome: HTTP ``status``, issue ``code`` (the
    R4 IssueType value set: invalid, structure, required, value, not-found, code-invalid,
    not-supported, multiple-matches, business-rule, conflict, processing, exception, ...)."""

    def __init__(self, status: int, code: str, diagnostics: str,
                 expression: Iterable[str] = (), severity: str = "error",
                 headers: Mapping[str, str] | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = tuple(expression)
        self.severity = severity
        self.headers = dict(headers or {})

    def outcome(self) -> dict:
        return operation_outcome([Issue(self.severity, self.code, self.diagnostics,
                                        self.expression)])


@dataclass(frozen=True)
class Issue:
    severity: str          # fatal | error | warning | information
    code: str              # IssueType
    diagnostics: str = ""
    expression: tuple[str, ...] = ()
    details: str = ""      # details.text


def operation_outcome(issues: Iterable[Issue]) -> dict:
    """An OperationOutcome with a generated narrative (operationoutcome.html)."""
    issues = list(issues) or [Issue("information", "informational", "ok")]
    rows = "".join(
        f"<tr><td>{_esc(i.severity)}</td><td>{_esc(i.code)}</td>"
        f"<td>{_esc(i.details or i.diagnostics)}</td></tr>" for i in issues)
    out: dict[str, Any] = {
        "resourceType": "OperationOutcome",
        "text": {"status": "generated",
                 "div": f'<div xmlns="{XHTML_NS}"><table><tr><th>severity</th><th>code</th>'
                        f"<th>details</th></tr>{rows}</table></div>"},
        "issue": []}
    for i in issues:
        issue: dict[str, Any] = {"severity": i.severity, "code": i.code}
        if i.details:
            issue["details"] = {"text": i.details}
        if i.diagnostics:
            issue["diagnostics"] = i.diagnostics
        if i.expression:
            issue["expression"] = list(i.expression)
        out["issue"].append(issue)
    return out


def _esc(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


# ---------------------------------------------------------------------------------------------
# the typed mapping: element name -> (type, repeating), in XML order
# ---------------------------------------------------------------------------------------------

PRIMITIVES = {
    "boolean": bool, "integer": int, "positiveInt": int, "unsignedInt": int, "decimal": float,
    "string": str, "code": str, "id": str, "uri": str, "url": str, "canonical": str, "oid": str,
    "uuid": str, "markdown": str, "base64Binary": str, "instant": str, "date": str,
    "dateTime": str, "time": str}
_FORMATS = {
    "id": re.compile(r"[A-Za-z0-9\-.]{1,64}"),
    "code": re.compile(r"[^\s]+( [^\s]+)*"),
    "date": re.compile(r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?"),
    "dateTime": re.compile(r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):"
                           r"[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?"),
    "instant": re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:"
                          r"([0-5]\d|60)(\.\d+)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))"),
    "oid": re.compile(r"urn:oid:[0-2](\.(0|[1-9]\d*))+"),
    "uri": re.compile(r"\S*"),
}
OPEN_TYPES = ("base64Binary boolean canonical code date dateTime decimal id instant integer "
              "markdown oid positiveInt string time unsignedInt uri url uuid Address Attachment "
              "CodeableConcept Coding ContactPoint HumanName Identifier Period Quantity Range "
              "Reference Meta ContactDetail").split()


@dataclass(frozen=True)
class Element:
    name: str          # JSON / XML name (choices expanded: valueString)
    type: str          # a primitive, a complex type, "Resource" or "xhtml"
    repeats: bool = False


@dataclass
class TypeDef:
    name: str
    kind: str                          # datatype | backbone | resource
    elements: list[Element] = field(default_factory=list)
    by_name: dict[str, Element] = field(default_factory=dict)
    attributes: tuple[str, ...] = ()   # XML attributes: id (datatypes), url (Extension)


TYPES: dict[str, TypeDef] = {}

_RESOURCE_BASE = "id:id meta:Meta implicitRules:uri language:code"
_DOMAIN_BASE = _RESOURCE_BASE + " text:Narrative contained:Resource* extension:Extension* " \
                                "modifierExtension:Extension*"


def define(name: str, spec: str, kind: str = "datatype") -> TypeDef:
    """Add (or replace) a type: ``spec`` lists ``name:Type`` tokens in XML order, ``*`` marks a
    repeating element, ``value[x]:A|B`` a choice (``*`` alone: every open type); a backbone
    element is named ``Resource.path`` and referenced by that name.  ``kind`` is ``datatype``,
    ``backbone``, ``resource`` or ``domain`` (a DomainResource)."""
    tokens = spec.split()
    if kind == "domain":
        tokens = _DOMAIN_BASE.split() + tokens
    elif kind == "resource":
        tokens = _RESOURCE_BASE.split() + tokens
    elif kind == "backbone":
        tokens = ["extension:Extension*", "modifierExtension:Extension*"] + tokens
    elif name != "Extension":
        tokens = ["extension:Extension*"] + tokens
    t = TypeDef(name, "resource" if kind in ("resource", "domain") else kind,
                attributes=() if kind in ("resource", "domain") else
                (("id", "url") if name == "Extension" else ("id",)))
    for token in tokens:
        ename, _, etype = token.partition(":")
        repeats = etype.endswith("*")
        etype = etype.rstrip("*")
        if ename.endswith("[x]"):
            base = ename[:-3]
            for choice in (OPEN_TYPES if etype == "" else etype.split("|")):
                t.elements.append(Element(base + choice[0].upper() + choice[1:], choice))
        else:
            t.elements.append(Element(ename, etype, repeats))
    t.by_name = {e.name: e for e in t.elements}
    TYPES[name] = t
    return t


define("Extension", "extension:Extension* value[x]:")
define("Coding", "system:uri version:string code:code display:string userSelected:boolean")
define("CodeableConcept", "coding:Coding* text:string")
define("Period", "start:dateTime end:dateTime")
define("Reference", "reference:string type:uri identifier:Identifier display:string")
define("Identifier", "use:code type:CodeableConcept system:uri value:string period:Period "
                     "assigner:Reference")
define("HumanName", "use:code text:string family:string given:string* prefix:string* "
                    "suffix:string* period:Period")
define("Address", "use:code type:code text:string line:string* city:string district:string "
                  "state:string postalCode:string country:string period:Period")
define("ContactPoint", "system:code value:string use:code rank:positiveInt period:Period")
define("Attachment", "contentType:code language:code data:base64Binary url:url "
                     "size:unsignedInt hash:base64Binary title:string creation:dateTime")
define("Meta", "versionId:id lastUpdated:instant source:uri profile:canonical* "
               "security:Coding* tag:Coding*")
define("Narrative", "status:code div:xhtml")
define("Quantity", "value:decimal comparator:code unit:string system:uri code:code")
define("Range", "low:Quantity high:Quantity")
define("ContactDetail", "name:string telecom:ContactPoint*")

define("Patient.contact", "relationship:CodeableConcept* name:HumanName telecom:ContactPoint* "
                          "address:Address gender:code organization:Reference period:Period",
       "backbone")
define("Patient.communication", "language:CodeableConcept preferred:boolean", "backbone")
define("Patient.link", "other:Reference type:code", "backbone")
define("Patient", "identifier:Identifier* active:boolean name:HumanName* telecom:ContactPoint* "
                  "gender:code birthDate:date deceased[x]:boolean|dateTime address:Address* "
                  "maritalStatus:CodeableConcept multipleBirth[x]:boolean|integer "
                  "photo:Attachment* contact:Patient.contact* "
                  "communication:Patient.communication* generalPractitioner:Reference* "
                  "managingOrganization:Reference link:Patient.link*", "domain")
define("OperationOutcome.issue", "severity:code code:code details:CodeableConcept "
                                 "diagnostics:string location:string* expression:string*",
       "backbone")
define("OperationOutcome", "issue:OperationOutcome.issue*", "domain")
define("Bundle.link", "relation:string url:uri", "backbone")
define("Bundle.entry.search", "mode:code score:decimal", "backbone")
define("Bundle.entry.request", "method:code url:uri ifNoneMatch:string ifModifiedSince:instant "
                               "ifMatch:string ifNoneExist:string", "backbone")
define("Bundle.entry.response", "status:string location:uri etag:string lastModified:instant "
                                "outcome:Resource", "backbone")
define("Bundle.entry", "link:Bundle.link* fullUrl:uri resource:Resource "
                       "search:Bundle.entry.search request:Bundle.entry.request "
                       "response:Bundle.entry.response", "backbone")
define("Bundle", "identifier:Identifier type:code timestamp:instant total:unsignedInt "
                 "link:Bundle.link* entry:Bundle.entry*", "resource")
define("Parameters.parameter", "name:string value[x]: resource:Resource "
                               "part:Parameters.parameter*", "backbone")
define("Parameters", "parameter:Parameters.parameter*", "resource")
define("CapabilityStatement.software", "name:string version:string releaseDate:dateTime",
       "backbone")
define("CapabilityStatement.implementation", "description:string url:url "
                                             "custodian:Reference", "backbone")
define("CapabilityStatement.rest.resource.interaction", "code:code documentation:markdown",
       "backbone")
define("CapabilityStatement.rest.resource.searchParam", "name:string definition:canonical "
                                                        "type:code documentation:markdown",
       "backbone")
define("CapabilityStatement.rest.resource.operation", "name:string definition:canonical "
                                                      "documentation:markdown", "backbone")
define("CapabilityStatement.rest.resource",
       "type:code profile:canonical supportedProfile:canonical* documentation:markdown "
       "interaction:CapabilityStatement.rest.resource.interaction* versioning:code "
       "readHistory:boolean updateCreate:boolean conditionalCreate:boolean "
       "conditionalRead:code conditionalUpdate:boolean conditionalDelete:code "
       "referencePolicy:code* searchInclude:string* searchRevInclude:string* "
       "searchParam:CapabilityStatement.rest.resource.searchParam* "
       "operation:CapabilityStatement.rest.resource.operation*", "backbone")
define("CapabilityStatement.rest.interaction", "code:code documentation:markdown", "backbone")
define("CapabilityStatement.rest",
       "mode:code documentation:markdown resource:CapabilityStatement.rest.resource* "
       "interaction:CapabilityStatement.rest.interaction* "
       "searchParam:CapabilityStatement.rest.resource.searchParam* "
       "operation:CapabilityStatement.rest.resource.operation* compartment:canonical*",
       "backbone")
define("CapabilityStatement",
       "url:uri version:string name:string title:string status:code experimental:boolean "
       "date:dateTime publisher:string contact:ContactDetail* description:markdown "
       "purpose:markdown copyright:markdown kind:code instantiates:canonical* "
       "imports:canonical* software:CapabilityStatement.software "
       "implementation:CapabilityStatement.implementation fhirVersion:code format:code* "
       "patchFormat:code* implementationGuide:canonical* rest:CapabilityStatement.rest*",
       "domain")

# ---------------------------------------------------------------------------------------------
# validation of the JSON form
# ---------------------------------------------------------------------------------------------


def validate(resource: Any, expected: str | None = None) -> None:
    """Raise :class:`FhirError` 400 when ``resource`` breaks the structure of its type: unknown
    or misplaced elements, a list where one value belongs (or the reverse), a primitive of the
    wrong JSON type or format, a resource type this node does not know."""
    errors: list[tuple[str, str]] = []
    if not isinstance(resource, dict):
        raise FhirError(400, "structure", "the body is not a FHIR resource (a JSON object)")
    rtype = resource.get("resourceType")
    if expected and rtype != expected:
        raise FhirError(400, "invalid", f"expected a {expected} resource, got "
                        f"{rtype if isinstance(rtype, str) else 'no resourceType'}",
                        ["resourceType"])
    _check_resource(resource, rtype or "", errors)
    if errors:
        raise FhirError(400, "structure" if any(c == "structure" for c, _ in errors) else
                        "value", "; ".join(m for _, m in errors[:20]),
                        [m.split(":")[0] for _, m in errors[:20]])


def _check_resource(obj: dict, path: str, errors: list) -> None:
    rtype = obj.get("resourceType")
    t = TYPES.get(rtype) if isinstance(rtype, str) else None
    if t is None or t.kind != "resource":
        errors.append(("structure", f"{path or 'resource'}: unknown resourceType {rtype!r}"))
        return
    _check_complex(obj, t, rtype, errors, skip=("resourceType",))


def _check_complex(obj: Any, t: TypeDef, path: str, errors: list, skip: tuple = ()) -> None:
    if not isinstance(obj, dict):
        errors.append(("structure", f"{path}: a {t.name} must be a JSON object"))
        return
    if not obj or all(k in skip for k in obj):
        if t.kind != "resource":
            errors.append(("structure", f"{path}: an element must have a value or children"))
    for key, value in obj.items():
        if key in skip or key == "fhir_comments":
            continue
        if key in t.attributes:
            if not isinstance(value, str):
                errors.append(("value", f"{path}.{key}: must be a string"))
            continue
        base = key[1:] if key.startswith("_") else key
        el = t.by_name.get(base)
        if el is None:
            errors.append(("structure", f"{path}.{key}: unknown element of {t.name}"))
            continue
        sub = f"{path}.{base}"
        if key.startswith("_"):
            if el.type not in PRIMITIVES:
                errors.append(("structure", f"{path}.{key}: only primitives have '_' siblings"))
                continue
            for item in (value if el.repeats and isinstance(value, list) else [value]):
                if item is not None:
                    _check_complex(item, _PRIM_EXT, sub, errors)
            continue
        if el.repeats:
            if not isinstance(value, list) or not value:
                errors.append(("structure", f"{sub}: must be a non-empty JSON array"))
                continue
            items = value
        else:
            if isinstance(value, list):
                errors.append(("structure", f"{sub}: repeats, but it has one value at most"))
                continue
            items = [value]
        for n, item in enumerate(items):
            where = f"{sub}[{n}]" if el.repeats else sub
            if item is None and el.type in PRIMITIVES and el.repeats:
                continue   # a value given only by its '_' extension
            _check_value(item, el.type, where, errors)


_PRIM_EXT = TypeDef("primitive extension", "datatype", attributes=("id",))
_PRIM_EXT.elements = [Element("extension", "Extension", True)]
_PRIM_EXT.by_name = {"extension": _PRIM_EXT.elements[0]}


def _check_value(item: Any, etype: str, where: str, errors: list) -> None:
    if etype in PRIMITIVES:
        want = PRIMITIVES[etype]
        ok = isinstance(item, want) and not (want is int and isinstance(item, bool))
        if want is float:
            ok = isinstance(item, (int, float)) and not isinstance(item, bool)
        if not ok:
            errors.append(("value", f"{where}: {etype} must be a JSON "
                           f"{ {bool: 'boolean', int: 'integer', float: 'number'}.get(want, 'string') }"))
            return
        if want is str:
            if not item.strip():
                errors.append(("value", f"{where}: an empty string is not a value"))
            fmt = _FORMATS.get(etype)
            if fmt is not None and not fmt.fullmatch(item):
                errors.append(("value", f"{where}: {item[:40]!r} is not a valid {etype}"))
        elif want is int:
            if etype == "positiveInt" and item < 1 or etype == "unsignedInt" and item < 0:
                errors.append(("value", f"{where}: {item} is not a valid {etype}"))
    elif etype == "xhtml":
        if not isinstance(item, str) or not item.lstrip().startswith("<div"):
            errors.append(("value", f"{where}: the narrative must be an XHTML <div>"))
    elif etype == "Resource":
        if not isinstance(item, dict):
            errors.append(("structure", f"{where}: must be a resource"))
        else:
            _check_resource(item, where, errors)
    else:
        _check_complex(item, TYPES[etype], where, errors)


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def _no_duplicates(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"property {k!r} appears twice")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(data: bytes | str, charset: str | None = None) -> dict:
    """A resource from JSON bytes (UTF-8 unless ``charset`` says otherwise); FhirError 400 for
    malformed JSON, duplicate properties or a body that is not an object with resourceType."""
    try:
        text = data if isinstance(data, str) else data.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError) as exc:
        raise FhirError(400, "structure", f"the body is not readable text: {exc}") from None
    try:
        obj = json.loads(text.lstrip("\ufeff"), object_pairs_hook=_no_duplicates,
                         parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise FhirError(400, "structure", f"malformed JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("resourceType"), str):
        raise FhirError(400, "structure", "the body is not a FHIR resource (a JSON object with "
                        "resourceType)")
    return obj


def to_json(resource: Mapping[str, Any], pretty: bool = False) -> bytes:
    return json.dumps(resource, ensure_ascii=False, indent=2 if pretty else None,
                      separators=None if pretty else (",", ":")).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# XML
# ---------------------------------------------------------------------------------------------


def to_xml(resource: Mapping[str, Any], pretty: bool = False) -> bytes:
    """The XML representation (xml.html) of a structurally valid resource."""
    root = _resource_element(resource)
    if pretty:  # indent FHIR elements, never the narrative's mixed content
        divs = [(d, copy.deepcopy(d)) for d in root.iter("{%s}div" % XHTML_NS)
                if d.getparent() is None or etree.QName(d.getparent()).namespace == FHIR_NS]
        etree.indent(root)
        for indented, original in divs:
            original.tail = indented.tail
            indented.getparent().replace(indented, original)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _resource_element(resource: Mapping[str, Any]) -> etree._Element:
    rtype = resource["resourceType"]
    el = etree.Element(_F + rtype, nsmap={None: FHIR_NS})
    _write_children(el, resource, TYPES[rtype])
    return el


def _write_children(el: etree._Element, obj: Mapping[str, Any], t: TypeDef) -> None:
    for attr in t.attributes:
        if attr in obj:
            el.set(attr, str(obj[attr]))
    for spec in t.elements:
        if spec.name not in obj and "_" + spec.name not in obj:
            continue
        value = obj.get(spec.name)
        ext = obj.get("_" + spec.name)
        values = value if spec.repeats and isinstance(value, list) else [value]
        exts = ext if spec.repeats and isinstance(ext, list) else [ext]
        if value is None:
            values = [None] * len(exts)
        for n, item in enumerate(values):
            extra = exts[n] if n < len(exts) else None
            child = etree.SubElement(el, _F + spec.name)
            if spec.type in PRIMITIVES:
                if item is not None:
                    child.set("value", _xml_primitive(item))
                if extra:
                    _write_children(child, extra, _PRIM_EXT)
            elif spec.type == "xhtml":
                el.remove(child)
                el.append(_parse_div(item))
            elif spec.type == "Resource":
                child.append(_resource_element(item))
            else:
                _write_children(child, item, TYPES[spec.type])


def _xml_primitive(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_div(text: str) -> etree._Element:
    try:
        div = parse_xml(text.encode("utf-8"), max_depth=64)
    except XmlError as exc:
        raise FhirError(400, "value", f"the narrative div is not XHTML: {exc.reason}") from None
    if div.tag != "{%s}div" % XHTML_NS:
        raise FhirError(400, "value", "the narrative must be a <div> in the XHTML namespace")
    return div


def parse_xml_resource(data: bytes, charset: str | None = None,
                       max_bytes: int = 16 * 1024 * 1024) -> dict:
    """A resource (its JSON form) from the XML representation; FhirError 400 for malformed
    XML, a DOCTYPE, elements outside the FHIR namespace or unknown to the type."""
    try:
        root = parse_xml(data, max_bytes=max_bytes, charset=charset)
    except XmlError as exc:
        raise FhirError(400, "structure", f"malformed XML: {exc.reason}") from None
    return _read_resource(root, "")


def _local(el: etree._Element, path: str) -> str:
    q = etree.QName(el)
    if q.namespace != FHIR_NS:
        raise FhirError(400, "structure", f"{path or '/'}: element <{q.localname}> is not in the "
                        f"FHIR namespace {FHIR_NS}", [path or q.localname])
    return q.localname


def _read_resource(el: etree._Element, path: str) -> dict:
    rtype = _local(el, path)
    t = TYPES.get(rtype)
    if t is None or t.kind != "resource":
        raise FhirError(400, "structure", f"{path or '/'}: unknown resource type {rtype}")
    out: dict[str, Any] = {"resourceType": rtype}
    _read_children(el, t, path or rtype, out)
    return out


def _read_children(el: etree._Element, t: TypeDef, path: str, out: dict) -> None:
    for name, value in el.attrib.items():
        if name in t.attributes:
            out[name] = value
        elif not (name == "value" and t is _PRIM_EXT):
            raise FhirError(400, "structure", f"{path}: unexpected attribute {name!r}", [path])
    if (el.text or "").strip():
        raise FhirError(400, "structure", f"{path}: FHIR elements carry no text content "
                        "(use the value attribute)", [path])
    for child in el:
        if not isinstance(child.tag, str):
            continue   # comments, processing instructions
        if (child.tail or "").strip():
            raise FhirError(400, "structure", f"{path}: unexpected text", [path])
        if etree.QName(child).namespace == XHTML_NS and "div" in t.by_name:
            name = "div"
        else:
            name = _local(child, path)
        spec = t.by_name.get(name)
        sub = f"{path}.{name}"
        if spec is None:
            raise FhirError(400, "structure", f"{sub}: unknown element of {t.name}", [sub])
        if not spec.repeats and (name in out or "_" + name in out):
            raise FhirError(400, "structure", f"{sub}: appears more than once", [sub])
        if spec.type in PRIMITIVES:
            raw = child.get("value")
            value = None if raw is None else _from_xml_primitive(raw, spec.type, sub)
            extra: dict[str, Any] = {}
            _read_children(child, _PRIM_EXT, sub, extra)
            if raw is None and not extra:
                raise FhirError(400, "structure", f"{sub}: has neither a value nor extensions",
                                [sub])
            if spec.repeats:
                values = out.setdefault(name, [])
                exts = out.setdefault("_" + name, [])
                values.append(value)
                exts.append(extra or None)
            else:
                if value is not None:
                    out[name] = value
                if extra:
                    out["_" + name] = extra
            continue
        if spec.type == "xhtml":
            value = etree.tostring(child, encoding="unicode", with_tail=False)
        elif spec.type == "Resource":
            inner = [c for c in child if isinstance(c.tag, str)]
            if len(inner) != 1:
                raise FhirError(400, "structure", f"{sub}: must hold exactly one resource", [sub])
            value = _read_resource(inner[0], sub)
        else:
            value = {}
            _read_children(child, TYPES[spec.type], sub, value)
        if spec.repeats:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    for key in [k for k in out if k.startswith("_") and isinstance(out[k], list)]:
        if all(x is None for x in out[key]):
            del out[key]
    for key in [k for k in out if isinstance(out[k], list) and not k.startswith("_")]:
        if all(x is None for x in out[key]) and "_" + key in out:
            del out[key]


def _from_xml_primitive(raw: str, etype: str, where: str) -> Any:
    kind = PRIMITIVES[etype]
    if kind is bool:
        if raw not in ("true", "false"):
            raise FhirError(400, "value", f"{where}: {raw!r} is not a boolean", [where])
        return raw == "true"
    if kind is int:
        if not re.fullmatch(r"[+-]?\d{1,10}", raw):
            raise FhirError(400, "value", f"{where}: {raw!r} is not an integer", [where])
        return int(raw)
    if kind is float:
        if not re.fullmatch(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?", raw):
            raise FhirError(400, "value", f"{where}: {raw!r} is not a decimal", [where])
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() \
            else number
    return raw


# ---------------------------------------------------------------------------------------------
# content negotiation (http.html §3.1.0.1.6 "Content Types and encodings", §3.1.0.1.7)
# ---------------------------------------------------------------------------------------------

_JSON_TYPES = {"application/fhir+json", "application/json+fhir", "application/json", "text/json",
               "json"}
_XML_TYPES = {"application/fhir+xml", "application/xml+fhir", "application/xml", "text/xml",
              "xml"}


def _media(value: str) -> tuple[str, dict[str, str]]:
    parts = [p.strip() for p in value.split(";")]
    params = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        params[k.strip().lower()] = v.strip().strip('"')
    return parts[0].lower(), params


def format_of(media: str) -> str | None:
    """``json`` / ``xml`` for a media type or ``_format`` value this server speaks."""
    mime = _media(media)[0]
    if mime in _JSON_TYPES:
        return "json"
    if mime in _XML_TYPES:
        return "xml"
    return None


def response_format(format_param: str | None, accept: str | None) -> str:
    """The representation to answer in: ``_format`` wins over ``Accept``; JSON when neither
    says; FhirError 406 when the client accepts nothing this server produces."""
    if format_param:
        found = format_of(format_param.replace(" ", "+"))  # '+' may arrive decoded as a blank
        if found is None:
            raise FhirError(406, "not-supported", f"_format {format_param!r} is not supported: "
                            "use json or xml")
        return found
    if not accept or not accept.strip():
        return "json"
    ranked = []
    for n, item in enumerate(accept.split(",")):
        if not item.strip():
            continue
        mime, params = _media(item)
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            ranked.append((-q, n, mime))
    for _q, _n, mime in sorted(ranked):
        if mime in ("*/*", "application/*"):
            return "json"
        found = format_of(mime)
        if found:
            return found
    raise FhirError(406, "not-supported", f"none of the accepted types ({accept[:200]}) is "
                    f"produced here: use {JSON_MEDIA_TYPE} or {XML_MEDIA_TYPE}")


def parse_body(data: bytes, content_type: str | None) -> dict:
    """A request body in either representation, by ``Content-Type`` (sniffed when absent);
    FhirError 415 for another media type, 400 for a malformed body."""
    if not data or not data.strip():
        raise FhirError(400, "required", "the request has no body: a resource is expected")
    charset = None
    if content_type and content_type.strip():
        mime, params = _media(content_type)
        charset = params.get("charset")
        fmt = format_of(mime)
        if fmt is None:
            raise FhirError(415, "not-supported", f"Content-Type {mime} is not supported: send "
                            f"{JSON_MEDIA_TYPE} or {XML_MEDIA_TYPE}")
    else:
        head = data.lstrip()[:1]
        fmt = "xml" if head == b"<" else "json"
    return parse_xml_resource(data, charset) if fmt == "xml" else parse_json(data, charset)


def encode(resource: Mapping[str, Any], fmt: str, pretty: bool = False) -> tuple[bytes, str]:
    """(body, Content-Type) of ``resource`` in ``fmt``."""
    body = to_xml(resource, pretty) if fmt == "xml" else to_json(resource, pretty)
    return body, MEDIA_TYPES[fmt] + "; charset=utf-8"


# ---------------------------------------------------------------------------------------------
# Bundle and Parameters
# ---------------------------------------------------------------------------------------------


def search_url(base: str, path: str, params: Iterable[tuple[str, str]]) -> str:
    query = urlencode(list(params))
    return f"{base}{path}" + (f"?{query}" if query else "")


def searchset(resources: Iterable[Mapping[str, Any]], base: str, total: int | None,
              links: Mapping[str, str], outcome: Mapping[str, Any] | None = None,
              timestamp: str | None = None) -> dict:
    """A searchset Bundle (bundle.html; search.html §3.1.1.5.6): one ``match`` entry per
    resource with its fullUrl, the paging ``links`` (relation -> url: self, next, previous,
    first, last), ``total`` when known and an ``outcome`` entry for warnings."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if timestamp:
        bundle["timestamp"] = timestamp
    if total is not None:
        bundle["total"] = total
    if links:
        bundle["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": dict(r),
                "search": {"mode": "match"}} for r in resources]
    if outcome is not None:
        entries.append({"resource": dict(outcome), "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle


def parameters(items: Iterable[tuple[str, str, Any]]) -> dict:
    """A Parameters resource from (name, value[x] element name, value) triples, e.g.
    ``("targetIdentifier", "valueIdentifier", {...})``."""
    out: dict[str, Any] = {"resourceType": "Parameters"}
    params = [{"name": name, key: value} for name, key, value in items]
    if params:
        out["parameter"] = params
    return out


def parameter_values(resource: Mapping[str, Any], name: str) -> list[Any]:
    """The values (whatever their value[x] type) of the parameters called ``name``."""
    out = []
    for p in resource.get("parameter") or []:
        if p.get("name") == name:
            out.extend(v for k, v in p.items() if k.startswith("value"))
    return out


# ---------------------------------------------------------------------------------------------
# CapabilityStatement (capabilitystatement.html), extendable by every FHIR actor of the node
# ---------------------------------------------------------------------------------------------


class Capabilities:
    """What the node's ``/fhir`` endpoint serves.  Each actor adds its resources, search
    parameters and operations; ``GET /fhir/metadata`` renders them."""

    def __init__(self, software: str = "HIE node", version: str = "0.1.0"):
        self.software = software
        self.version = version
        self.resources: dict[str, dict[str, Any]] = {}
        self.operations: list[dict[str, Any]] = []

    def add_resource(self, rtype: str, interactions: Iterable[str] = (),
                     search_params: Iterable[tuple[str, str, str]] = (),
                     operations: Iterable[tuple[str, str]] = (),
                     profiles: Iterable[str] = (), **flags: Any) -> None:
        """Merge into the resource ``rtype``: interactions (read, search-type, create,
        update...), search parameters (name, type, documentation), operations (name,
        definition canonical), supported profiles and flags such as ``conditionalUpdate``."""
        r = self.resources.setdefault(rtype, {"type": rtype})
        have = {i["code"] for i in r.get("interaction", [])}
        r.setdefault("interaction", []).extend({"code": c} for c in interactions if c not in have)
        for name, kind, doc in search_params:
            if all(p["name"] != name for p in r.get("searchParam", [])):
                r.setdefault("searchParam", []).append(
                    {"name": name, "type": kind, **({"documentation": doc} if doc else {})})
        for name, definition in operations:
            r.setdefault("operation", []).append({"name": name, "definition": definition})
        for p in profiles:
            if p not in r.get("supportedProfile", []):
                r.setdefault("supportedProfile", []).append(p)
        r.update(flags)
        if not r["interaction"]:
            del r["interaction"]

    def statement(self, base: str, date: str) -> dict:
        order = list(TYPES["CapabilityStatement.rest.resource"].by_name)
        resources = [{k: r[k] for k in sorted(r, key=lambda k: order.index(k)
                                              if k in order else 99)}
                     for _, r in sorted(self.resources.items())]
        rest: dict[str, Any] = {"mode": "server", "resource": resources}
        return {"resourceType": "CapabilityStatement", "status": "active", "date": date,
                "publisher": self.software, "kind": "instance",
                "software": {"name": self.software, "version": self.version},
                "implementation": {"description": f"{self.software} FHIR R4 endpoint",
                                   "url": base},
                "fhirVersion": FHIR_VERSION,
                "format": [JSON_MEDIA_TYPE, XML_MEDIA_TYPE, "json", "xml"],
                "rest": [rest]}


def capabilities(node: Any) -> Capabilities:
    """The node's one :class:`Capabilities` (created on first use)."""
    caps = getattr(node, "fhir_capabilities", None)
    if caps is None:
        caps = Capabilities()
        setattr(node, "fhir_capabilities", caps)
    return caps


__all__ = ["Capabilities", "FHIR_NS", "FhirError", "Issue", "JSON_MEDIA_TYPE", "TYPES",
           "XML_MEDIA_TYPE", "capabilities", "define", "encode", "format_of",
           "operation_outcome", "parameter_values", "parameters", "parse_body", "parse_json",
           "parse_xml_resource", "response_format", "search_url", "searchset", "to_json",
           "to_xml", "validate"]

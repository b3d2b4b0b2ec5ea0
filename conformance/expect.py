"""What a data suite's step expects of a response — sans-IO.

One expectation is one line::

    MSA-1 = AA                      # HL7 v2: SEG-field[.component[.subcomponent]]
    PID-3 has ${id}^^^&${oid}&ISO   # any occurrence / repetition equals
    count(PID) = 1                  # segments; count(PID-3) = repetitions over occurrences
    DSC-1 present                   # a non-empty value; 'absent': none
    QAK-2 ~ ^(OK|NF)$               # a regular expression searched in the first value
    xpath //hl7:acknowledgement/hl7:typeCode/@code = 'AA'    # HL7 v3 / SOAP: true by boolean()
    status = 200                    # HTTP status
    header content-type ~ fhir\\+json
    json total >= 1                 # JSON: dotted path, [n] an index, [*] every element
    json parameter[*].valueIdentifier.value has ${idB}
    count(json entry) = 2

``=`` / ``!=`` compare the first value, ``has`` any value, ``>=`` / ``<=`` the first as a
number.  HL7 v2 paths read the message as ITI TF-2x C / HL7 v2.5 2.5 (segment terminator
``\\r``, ``|`` fields, ``~`` repetitions, ``^`` components, ``&`` subcomponents, MSH-1 the
field separator itself).  XPath prefixes: ``hl7`` (urn:hl7-org:v3), ``s`` (SOAP 1.2).
A line the grammar does not read is a failed verdict naming it, never passed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from conformance.checks import Verdict

NS = {"hl7": "urn:hl7-org:v3", "s": "http://www.w3.org/2003/05/soap-envelope"}
_LINE = re.compile(r"^(?P<count>count\()?(?P<path>(?:json |header )?[^\s()]+)(?(count)\))"
                   r"\s+(?P<op>=|!=|has|~|>=|<=|present|absent)(?:\s+(?P<value>.*))?$")


@dataclass
class Response:
    """What came back: an HL7 v2 message, an XML document, or an HTTP answer (or several)."""

    hl7: str = ""
    xml: etree._Element | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None


def hl7_values(message: str, path: str) -> list[str]:
    """Every value at ``path`` (``PID-3.1``, ``MSA-1``, ``PID``) of ``message``."""
    seg_name, _, rest = path.partition("-")
    segments = [s for s in message.replace("\n", "\r").split("\r") if s[:3] == seg_name]
    if not rest:
        return [s for s in segments]
    parts = rest.split(".")
    try:
        number = int(parts[0])
        comp = int(parts[1]) if len(parts) > 1 else 0
        sub = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise ValueError(f"not an HL7 v2 path: {path}") from None
    out = []
    for seg in segments:
        fields = seg.split("|")
        if seg_name == "MSH":            # MSH-1 is the separator itself
            fields = ["MSH", "|"] + fields[1:]
        value = fields[number] if number < len(fields) else ""
        reps = [value] if seg_name == "MSH" and number == 2 else value.split("~")
        for rep in reps:
            if comp:
                comps = rep.split("^")
                rep = comps[comp - 1] if comp - 1 < len(comps) else ""
                if sub:
                    subs = rep.split("&")
                    rep = subs[sub - 1] if sub - 1 < len(subs) else ""
            out.append(rep)
    return out


_INDEX = re.compile(r"^([^\[\]]*)((?:\[(?:\d+|\*)\])*)$")


def json_values(doc: Any, path: str) -> list[Any]:
    """Every value at ``path`` (``entry[*].resource.id``) of ``doc``."""
    current = [doc]
    for part in path.split("."):
        m = _INDEX.match(part)
        if not m:
            raise ValueError(f"not a JSON path: {path}")
        key, indexes = m.group(1), re.findall(r"\[(\d+|\*)\]", m.group(2))
        nxt = []
        for c in current:
            if key:
                if not isinstance(c, dict) or key not in c:
                    continue
                c = c[key]
            items = [c]
            for ix in indexes:
                fanned = []
                for it in items:
                    if not isinstance(it, list):
                        continue
                    if ix == "*":
                        fanned += it
                    elif int(ix) < len(it):
                        fanned.append(it[int(ix)])
                items = fanned
            nxt += items
        current = nxt
    return current


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def values_at(path: str, r: Response) -> list[str]:
    """The values at ``path`` (an HL7 v2 path, ``json ...``, ``header ...`` or ``status``)."""
    if path.startswith("json "):
        return [_text(v) for v in json_values(r.json, path[5:])]
    if path.startswith("header "):
        v = r.headers.get(path[7:].lower())
        return [v] if v is not None else []
    if path == "status":
        return [] if r.status is None else [str(r.status)]
    return hl7_values(r.hl7, path)


def check(line: str, r: Response) -> Verdict:
    """One expectation ``line`` (placeholders already expanded) over ``r``."""
    line = line.strip()
    if line.startswith("xpath "):
        if r.xml is None:
            return Verdict(line, False, "the response is not XML")
        try:
            ok = bool(r.xml.xpath(f"boolean({line[6:]})", namespaces=NS))
        except etree.XPathError as exc:
            return Verdict(line, False, f"not an XPath 1.0 expression: {exc}")
        return Verdict(line, ok, "")
    m = _LINE.match(line)
    if not m:
        return Verdict(line, False, "the runner cannot read this expectation")
    path, op, want = m.group("path"), m.group("op"), (m.group("value") or "").strip()
    try:
        values = values_at(path, r)
        if m.group("count") and path.startswith("json "):   # a list counts its elements
            found = json_values(r.json, path[5:])
            if len(found) == 1 and isinstance(found[0], list):
                values = found[0]
    except ValueError as exc:
        return Verdict(line, False, str(exc))
    if m.group("count"):
        values = [str(len(values))]
    first = values[0] if values else None
    shown = "found " + (", ".join(repr(v[:120]) for v in values[:8]) if values else "nothing")
    if op == "present":
        return Verdict(line, bool(first), shown)
    if op == "absent":
        return Verdict(line, not any(values), shown)
    if op == "=":
        return Verdict(line, first == want, shown)
    if op == "!=":
        return Verdict(line, first != want, shown)
    if op == "has":
        return Verdict(line, want in values, shown)
    if op == "~":
        try:
            return Verdict(line, first is not None and re.search(want, first) is not None,
                           shown)
        except re.error as exc:
            return Verdict(line, False, f"not a regular expression: {exc}")
    a, b = _number(first), _number(want)
    if a is None or b is None:
        return Verdict(line, False, shown + " (not a number)")
    return Verdict(line, a >= b if op == ">=" else a <= b, shown)


__all__ = ["NS", "Response", "hl7_values", "json_values", "values_at", "check"]

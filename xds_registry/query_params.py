"""Stored query parameters: how ``rim:Slot`` values of an ``AdhocQuery`` become typed values,
ITI TF-2a 3.18.4.1.2.3 (3.18.4.1.2.3.1 parameter names, 3.18.4.1.2.3.5 value encoding and
AND/OR semantics, 3.18.4.1.2.3.6 parameter types, 3.18.4.1.2.3.7 the parameter tables) and
ebRS 3.0 §6.3 (``query:AdhocQueryRequest``).

Value encoding (one ``rim:Value``):

- a string is single-quoted, a quote inside it doubled (``'O''Brien'``); a number (a DTM) may be
  bare (``20240315``);
- a list is parenthesised, items separated by commas: ``('a^^s1', 'b^^s1')``; the items of a
  list may also be spread over several ``rim:Value`` elements of the same Slot (CP 295), and a
  list split across Values (``('a',`` / ``'b')``) is accepted too;
- within one Slot the values are OR-ed; a parameter with AND/OR semantics
  (``$XDSDocumentEntryEventCodeList``, ``$XDSDocumentEntryConfidentialityCode``,
  ``$XDSFolderCodeList``, and here also ``$XDSDocumentEntryReferenceIdList``) may be given as
  several Slots of the same name, which are AND-ed;
- coded values are ``code^^scheme`` (HL7 v2.5 CE, ITI TF-2a 3.18.4.1.2.3.5); ``code^^^scheme`` is
  read the same way; a code without its scheme is a format error;
- times are DTM (ITI TF-3 Table 4.2.3.1.7-2, 4 to 14 digits, UTC); they are normalised to 14
  digits with the first instant of their precision (``2004`` -> ``20040101000000``), the same
  normalisation the SQL applies to stored values, so values of differing precision compare as
  instants.

Errors (ITI TF-2a 3.18.4.1.3, ITI TF-3 Table 4.2.4.1-2): a missing required parameter is
``XDSStoredQueryMissingParam``; a single-valued parameter given several values (or a parameter
without AND/OR semantics given as several Slots), and "exactly one of" violations, are
``XDSStoredQueryParamNumber``; a malformed value is ``XDSRegistryError``.  Parameters a query does
not define are ignored (as the TF requires of a Document Registry).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from lxml import etree

from hie.errors import XDS, ErrorCollector, RegistryErrors
from xds_registry import vocab

if TYPE_CHECKING:  # pragma: no cover
    from xds_registry.query_sql import QueryContext

RIM = vocab.RIM_NS
QUERY = vocab.QUERY_NS

# -- parameter value types --------------------------------------------------------------------
STRING = "string"          # any quoted string (patient id, uniqueId, entryUUID, sourceId, ...)
CODE = "code"              # code^^scheme
TIME = "time"              # DTM
STATUS = "status"          # urn:oasis:names:tc:ebxml-regrep:StatusType:*
ENTRY_TYPE = "entry_type"  # DocumentEntry objectType UUID (stable / on-demand)
ASSOC_TYPE = "assoc_type"  # association type URN
PATTERN = "pattern"        # author person with SQL LIKE wildcards % and _
LEVEL = "level"            # $MetadataLevel: 1 or 2

_SLOT, _VALUE_LIST, _VALUE = f"{{{RIM}}}Slot", f"{{{RIM}}}ValueList", f"{{{RIM}}}Value"
_STATUS_PREFIX = "urn:oasis:names:tc:ebxml-regrep:StatusType:"
_DEFERRED = "urn:ihe:iti:2010:StatusType:DeferredCreation"
_TIME_LENGTHS = (4, 6, 8, 10, 12, 14)
_TIME_PAD = "0101000000"  # first month, first day, hour 00, minute 00, second 00


class ParamError(ValueError):
    """A malformed parameter value (rendered as XDSRegistryError)."""


@dataclass(frozen=True)
class Code:
    code: str
    scheme: str


@dataclass(frozen=True)
class Param:
    """One row of a stored query's parameter table (ITI TF-2a 3.18.4.1.2.3.7)."""

    name: str
    type: str = STRING
    required: bool = False
    multiple: bool = False   # "M" in the table: a list of values (OR-ed)
    and_or: bool = False     # several Slots of this name are AND-ed (implies multiple)


# -- value syntax -----------------------------------------------------------------------------

def _items(text: str) -> list[str]:
    """Comma-separated items, each a quoted string or a bare token."""
    items: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise ParamError("missing value" if not items else "trailing comma")
        if text[i] == "'":
            i += 1
            buf = []
            while True:
                j = text.find("'", i)
                if j < 0:
                    raise ParamError("unterminated quoted string")
                buf.append(text[i:j])
                if j + 1 < n and text[j + 1] == "'":  # doubled quote: a literal quote
                    buf.append("'")
                    i = j + 2
                    continue
                i = j + 1
                break
            items.append("".join(buf))
        else:
            j = i
            while j < n and text[j] not in ",()'" and not text[j].isspace():
                j += 1
            if j == i:
                raise ParamError(f"unexpected {text[i]!r}")
            items.append(text[i:j])
            i = j
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return items
        if text[i] != ",":
            raise ParamError(f"unexpected {text[i]!r} after a value")
        i += 1


def split_value(text: str | None) -> list[str]:
    """The items of one ``rim:Value``: ``'a'`` -> [a]; ``('a', 'b')`` -> [a, b]; ``2004`` ->
    [2004]."""
    s = (text or "").strip()
    if not s:
        raise ParamError("empty value")
    if s[0] == "(":
        if s[-1] != ")":
            raise ParamError("unbalanced parenthesis")
        inner = s[1:-1]
        if not inner.strip():
            raise ParamError("empty list")
        return _items(inner)
    if s[-1] == ")":
        raise ParamError("unbalanced parenthesis")
    return _items(s)


def split_slot(values: Sequence[str | None]) -> list[str]:
    """The items of one Slot: the union of its Values; a list spread over several Values is
    also accepted (``('a',`` + ``'b')``)."""
    if not values:
        raise ParamError("a Slot without values")
    try:
        out: list[str] = []
        for v in values:
            out.extend(split_value(v))
        return out
    except ParamError:
        if len(values) > 1:
            try:
                return split_value(" ".join((v or "").strip() for v in values))
            except ParamError:
                pass
        raise


# -- typed conversion -------------------------------------------------------------------------

def parse_code(text: str) -> Code:
    parts = text.split("^")
    if len(parts) not in (3, 4) or not parts[0] or not parts[-1]:
        raise ParamError(f"coded value must be code^^scheme: {text!r}")
    return Code(parts[0], parts[-1])


def normalize_time(text: str) -> str:
    """DTM to 14 digits, lower precision meaning the first instant of its period."""
    if not text.isdigit() or len(text) not in _TIME_LENGTHS:
        raise ParamError(f"time must be a DTM of 4 to 14 digits (YYYY[MM[DD[hh[mm[ss]]]]]): "
                         f"{text!r}")
    return text + _TIME_PAD[len(text) - 4:]


def parse_status(text: str) -> str:
    if text == _DEFERRED:
        return "DeferredCreation"
    if text.startswith(_STATUS_PREFIX) and len(text) > len(_STATUS_PREFIX):
        return text[len(_STATUS_PREFIX):]
    if text in vocab.STATUS_URNS:  # a bare short name, accepted
        return text
    raise ParamError(f"not a status: {text!r}")


def parse_entry_type(text: str) -> str:
    try:
        return vocab.DE_TYPES[text]
    except KeyError:
        raise ParamError(f"not a DocumentEntry type: {text!r} (use {vocab.DE_STABLE} or "
                         f"{vocab.DE_ON_DEMAND})") from None


def parse_assoc_type(text: str) -> str:
    if text in vocab.ASSOCIATION_TYPES:
        return vocab.ASSOCIATION_TYPES[text]
    if text in vocab.ASSOCIATION_URNS:  # short name, accepted
        return text
    raise ParamError(f"not an association type: {text!r}")


def parse_level(text: str) -> int:
    if text not in ("1", "2"):
        raise ParamError(f"$MetadataLevel must be 1 or 2: {text!r}")
    return int(text)


def parse_string(text: str) -> str:
    if not text.strip():
        raise ParamError("empty string")
    return text


CONVERTERS: dict[str, Callable[[str], Any]] = {
    STRING: parse_string, CODE: parse_code, TIME: normalize_time, STATUS: parse_status,
    ENTRY_TYPE: parse_entry_type, ASSOC_TYPE: parse_assoc_type, PATTERN: parse_string,
    LEVEL: parse_level,
}


# -- parsed parameters ------------------------------------------------------------------------

RawParams = Mapping[str, Sequence["str | Sequence[str]"]]


@dataclass
class Params:
    """Typed values by parameter name: a scalar for single-valued parameters, a list for
    multi-valued ones, a list of lists (AND of ORs) for AND/OR parameters."""

    values: dict[str, Any] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def list(self, name: str) -> list:
        """A parameter's values as a list ([] when absent, [v] for a single-valued one)."""
        v = self.values.get(name)
        if v is None:
            return []
        return list(v) if isinstance(v, list) else [v]

    def groups(self, name: str) -> list[list]:
        """An AND/OR parameter: one OR-list per Slot ([] when absent)."""
        return [list(g) for g in self.values.get(name, ())]


def _slots(raw: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Normalise ``raw`` (a list of Slots, each a list of Value texts; a bare string is a Slot
    with one Value) to a list of lists."""
    if isinstance(raw, str):
        return [[raw]]
    return [[s] if isinstance(s, str) else list(s) for s in raw]


def _canonical(specs: Mapping[str, Param], raw: RawParams,
               lower: Mapping[str, str] | None = None) -> dict[str, list[list[str]]]:
    """Slots by canonical parameter name; names are matched exactly, then case-insensitively
    (``$XDSDocumentEntryPatientID``); unknown names are ignored."""
    if lower is None:
        lower = {name.lower(): name for name in specs}
    out: dict[str, list[list[str]]] = {}
    for name, slots in raw.items():
        canon = name if name in specs else lower.get(name.lower())
        if canon is not None:
            out.setdefault(canon, []).extend(_slots(slots))
    return out


class ParamTable:
    """A parameter table by name and by lower-case name, for :func:`parse_params`."""

    __slots__ = ("by_name", "lower")

    def __init__(self, specs: Iterable[Param]):
        self.by_name = {p.name: p for p in specs}
        self.lower = {name.lower(): name for name in self.by_name}


def parse_params(specs: "Iterable[Param] | ParamTable", raw: RawParams) -> Params:
    """Check and convert ``raw`` against ``specs``; all problems are reported together."""
    table = specs if isinstance(specs, ParamTable) else ParamTable(specs)
    by_name = table.by_name
    slots_by_name = _canonical(by_name, raw, table.lower)
    errors = ErrorCollector()
    values: dict[str, Any] = {}
    for name, spec in by_name.items():
        slots = slots_by_name.get(name)
        if not slots:
            if spec.required:
                errors.error(XDS.StoredQueryMissingParam, f"required parameter {name} is missing",
                             name)
            continue
        if len(slots) > 1 and not spec.and_or:
            errors.error(XDS.StoredQueryParamNumber,
                         f"parameter {name} may appear in one Slot only", name)
            continue
        convert = CONVERTERS[spec.type]
        try:
            groups = [[convert(item) for item in split_slot(s)] for s in slots]
        except ParamError as e:
            errors.error(XDS.RegistryError, f"parameter {name}: {e}", name)
            continue
        if not (spec.multiple or spec.and_or):
            if len(groups[0]) != 1:
                errors.error(XDS.StoredQueryParamNumber,
                             f"parameter {name} takes a single value, got {len(groups[0])}", name)
                continue
            values[name] = groups[0][0]
        elif spec.and_or:
            values[name] = [list(dict.fromkeys(g)) for g in groups]
        else:
            values[name] = list(dict.fromkeys(groups[0]))
    errors.raise_if_errors()
    return Params(values)


# -- the stored query interface ---------------------------------------------------------------

@dataclass(frozen=True)
class StoredQuery:
    """One stored query: its id and name, its parameter table, and the function that finds the
    entryUUIDs of its answer (ITI TF-2a 3.18.4.1.2.3.7.x)."""

    id: str
    name: str
    params: tuple[Param, ...]
    run: Callable[["QueryContext", Params], list[str]]
    exactly_one: tuple[tuple[str, ...], ...] = ()   # XDSStoredQueryParamNumber if 0 or > 1
    at_least_one: tuple[tuple[str, ...], ...] = ()  # XDSStoredQueryMissingParam if none
    single_patient: bool = True                     # LeafClass answers must be one patient's

    @cached_property
    def table(self) -> ParamTable:
        return ParamTable(self.params)

    def parse(self, raw: RawParams) -> Params:
        params = parse_params(self.table, raw)
        errors = ErrorCollector()
        for names in self.exactly_one:
            given = [n for n in names if n in params]
            if len(given) != 1:
                errors.error(XDS.StoredQueryParamNumber,
                             f"{self.name} needs exactly one of {', '.join(names)}"
                             + (f"; got {', '.join(given)}" if given else ""),
                             ",".join(names))
        for names in self.at_least_one:
            if not any(n in params for n in names):
                errors.error(XDS.StoredQueryMissingParam,
                             f"{self.name} needs at least one of {', '.join(names)}",
                             ",".join(names))
        errors.raise_if_errors()
        return params


# -- the request element ----------------------------------------------------------------------

@dataclass
class AdhocQueryRequest:
    """The parts of ``query:AdhocQueryRequest`` a stored query uses (ebRS 3.0 §6.3.1)."""

    query_id: str
    return_type: str
    params: dict[str, list[list[str]]]
    home: str | None = None

    @classmethod
    def from_element(cls, el: etree._Element) -> "AdhocQueryRequest":
        """Read the request; a structurally wrong request raises :class:`RegistryErrors`."""
        if el.tag != f"{{{QUERY}}}AdhocQueryRequest":
            raise RegistryErrors.one(XDS.RegistryError,
                                     f"expected query:AdhocQueryRequest, got {el.tag}")
        option = el.find(f"{{{QUERY}}}ResponseOption")
        query = el.find(f"{{{RIM}}}AdhocQuery")
        if option is None or query is None:
            raise RegistryErrors.one(XDS.RegistryError,
                                     "AdhocQueryRequest needs ResponseOption and AdhocQuery")
        query_id = (query.get("id") or "").strip()
        if not query_id:
            raise RegistryErrors.one(XDS.UnknownStoredQuery, "AdhocQuery has no id")
        params: dict[str, list[list[str]]] = {}
        for slot in query.iterchildren(_SLOT):
            name = (slot.get("name") or "").strip()
            values = [v.text or "" for vl in slot.iterchildren(_VALUE_LIST)
                      for v in vl.iterchildren(_VALUE)]
            params.setdefault(name, []).append(values)
        return cls(query_id, option.get("returnType", "RegistryObject"), params,
                   query.get("home"))


def build_request(query_id: str, params: Mapping[str, Sequence[str | Sequence[str]]],
                  return_type: str = "LeafClass") -> etree._Element:
    """A ``query:AdhocQueryRequest`` (for clients and tests): ``params`` maps a name to its
    Slots' Value texts as :func:`run_query <xds_registry.queries.run_query>` takes them."""
    req = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(req, f"{{{QUERY}}}ResponseOption", returnType=return_type,
                     returnComposedObjects="true")
    q = etree.SubElement(req, f"{{{RIM}}}AdhocQuery", id=query_id)
    for name, slots in params.items():
        for values in _slots(slots):
            s = etree.SubElement(q, f"{{{RIM}}}Slot", name=name)
            vl = etree.SubElement(s, f"{{{RIM}}}ValueList")
            for v in values:
                etree.SubElement(vl, f"{{{RIM}}}Value").text = v
    return req


def quote(*values: str) -> str:
    """Encode values as one Value text: ``'a'`` for one, ``('a', 'b')`` for several."""
    q = ["'" + v.replace("'", "''") + "'" for v in values]
    return q[0] if len(q) == 1 else "(" + ", ".join(q) + ")"

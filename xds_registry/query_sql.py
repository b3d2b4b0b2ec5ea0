"""SQL building blocks of the stored queries (ITI TF-2a 3.18.4.1.2.3.7, ITI TF-2b 3.51.4.1.2), over
the typed, indexed columns of ``xds_registry.tables`` (DESIGN.md principle 7).

Every query starts from an index on its key (patient_id + status, uniqueId, entryUUID, association
source/target) and filters the rows found there, so its cost grows with the answer, not with the
registry.  Lists of ids passed back into SQL are bounded by ``max_query_results`` (anything larger
is XDSTooManyResults before it gets here) and are sent in chunks only above ``IN_CHUNK``.

Matching rules implemented here:

- times: stored DTMs of any precision are padded to 14 digits with the first instant of their
  period, in SQL (``t || substr('0101000000', length(t) - 3)``), and compared with the parameter
  normalised the same way: From inclusive (``>=``), To exclusive (``<``) (ITI TF-2a
  3.18.4.1.2.3.7.1);
- codes: code and coding scheme must both match (OR within a Slot, AND across Slots for the
  AND/OR parameters, through EXISTS on ``xds_object_code``);
- author wildcards: SQL LIKE ``%`` and ``_``, case-sensitive and without an escape character on
  both databases (SQLite's LIKE folds ASCII case, so there it is translated to GLOB).

FindDocuments (and the DocumentEntry part of GetAll and ITI-51), the hot path, is one statement
that finds the entries through the index and reads their ``xds_object`` rows (with the XML for
LeafClass) by primary key.  It is built and compiled once per request *shape* (which parameters,
how many values each) and then run as SQL text on the driver's cursor (:class:`Prepared`), so a
request costs no SQLAlchemy expression work.  The other queries build their statements per
request; their answer's objects are read by :func:`fetch_objects` in one statement.
"""
from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hie.errors import XDS, RegistryErrors
from xds_registry.query_params import Code
from xds_registry.query_result import FoundObject
from xds_registry.tables import (association, document_entry, folder, object_author,
                                 object_code, object_reference_id, registry_object,
                                 submission_set)

IN_CHUNK = 5000
DOCUMENT_ENTRY, SUBMISSION_SET, FOLDER, ASSOCIATION = (
    "DocumentEntry", "SubmissionSet", "Folder", "Association")
# association types a Metadata Level 1 answer does not show (ITI TF-2b 3.57: they only exist in
# registries that support Metadata Update)
LEVEL2_ASSOCIATION_TYPES = ("UpdateAvailabilityStatus", "SubmitAssociation")
# above this many DocumentEntries, FindDocuments reads the XML in a second statement (so that a
# query ending in XDSTooManyResults never reads max_query_results objects' XML)
FUSED_XML_ROWS = 200
SHAPE_CACHE = 512          # statements kept per process (one per query shape and dialect)

_DE = document_entry.c
_CODE_COLUMNS = ((_DE.class_code, _DE.class_scheme), (_DE.type_code, _DE.type_scheme),
                 (_DE.practice_code, _DE.practice_scheme), (_DE.hcft_code, _DE.hcft_scheme),
                 (_DE.format_code, _DE.format_scheme))
_TIME_BOUNDS = ((_DE.creation_time, operator.ge), (_DE.creation_time, operator.lt),
                (_DE.service_start_time, operator.ge), (_DE.service_start_time, operator.lt),
                (_DE.service_stop_time, operator.ge), (_DE.service_stop_time, operator.lt))


@dataclass
class QueryContext:
    """What a stored query runs with: the read connection, the result bound, and whether the
    answer's objects are wanted with their XML (LeafClass).  Queries that can read the
    answer's objects in the statement that finds them leave them in ``found`` (by id), so that
    :func:`fetch_objects` need not read them again."""

    conn: Connection
    max_results: int
    with_xml: bool = False
    found: dict[str, FoundObject] = field(default_factory=dict)
    # a patient ID asked for and the IDs merged into it: one patient (query_find.patients)
    merged_ids: set[str] = field(default_factory=set)

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name

    def check_count(self, n: int, what: str = "objects") -> None:
        if n > self.max_results:
            raise RegistryErrors.one(
                XDS.TooManyResults,
                f"the query matches more than {self.max_results} {what}; narrow it down")

    def ids(self, stmt: sa.Select, what: str = "objects") -> list[str]:
        """Run ``stmt`` (selecting one id column) with a LIMIT one above the bound."""
        rows = self.conn.execute(stmt.limit(self.max_results + 1)).scalars().all()
        self.check_count(len(rows), what)
        return list(dict.fromkeys(rows))


def chunks(values: Sequence[str], size: int = IN_CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# -- predicates -------------------------------------------------------------------------------

def padded_time(col: sa.ColumnElement) -> sa.ColumnElement:
    """The stored DTM as 14 digits (first instant of its precision); NULL stays NULL."""
    return col.concat(sa.func.substr(sa.literal_column("'0101000000'"), sa.func.length(col) - 3))


def time_range(col: sa.ColumnElement, lo: str | None, hi: str | None) -> list[sa.ColumnElement]:
    out = []
    if lo is not None:
        out.append(padded_time(col) >= lo)
    if hi is not None:
        out.append(padded_time(col) < hi)
    return out


def code_in(code_col: sa.ColumnElement, scheme_col: sa.ColumnElement,
            codes: Sequence[Code]) -> sa.ColumnElement:
    return _code_match(code_col, scheme_col, [(c.code, c.scheme) for c in codes])


def _code_match(code_col: sa.ColumnElement, scheme_col: sa.ColumnElement,
                pairs: Sequence[tuple]) -> sa.ColumnElement:
    """(code, scheme) is one of ``pairs`` (values or bound parameters)."""
    return sa.or_(*[sa.and_(code_col == c, scheme_col == s) for c, s in pairs])


def has_codes(id_col: sa.ColumnElement, kind: str, groups: Sequence[Sequence[Code]]
              ) -> list[sa.ColumnElement]:
    """One EXISTS per AND group on ``xds_object_code`` (kind ``event``, ``conf`` or ``folder``)."""
    out = []
    for group in groups:
        oc = object_code.alias()
        out.append(sa.select(sa.literal(1)).where(
            oc.c.object_id == id_col, oc.c.kind == kind,
            code_in(oc.c.code, oc.c.scheme, group)).exists())
    return out


def like_to_glob(pattern: str) -> str:
    """SQL LIKE (``%``, ``_``; no escape character) as an equivalent SQLite GLOB pattern."""
    out = []
    for ch in pattern:
        out.append({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch))
    return "".join(out)


def like_value(pattern: str, dialect: str) -> str:
    """An author pattern as the value bound for :func:`like_op`."""
    if dialect == "sqlite":
        return like_to_glob(pattern)
    # PostgreSQL's LIKE escapes with backslash by default: make backslashes literal
    return pattern.replace("\\", "\\\\")


def like_op(col: sa.ColumnElement, value: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """``col`` matches the bound :func:`like_value`: GLOB on SQLite, LIKE elsewhere."""
    return col.op("GLOB")(value) if dialect == "sqlite" else col.like(value)


def like(col: sa.ColumnElement, pattern: str, dialect: str) -> sa.ColumnElement:
    return like_op(col, sa.bindparam(None, like_value(pattern, dialect), type_=sa.String),
                   dialect)


def has_author(id_col: sa.ColumnElement, patterns: Sequence[str], dialect: str
               ) -> sa.ColumnElement:
    a = object_author.alias()
    return sa.select(sa.literal(1)).where(
        a.c.object_id == id_col, sa.or_(*[like(a.c.person, p, dialect) for p in patterns])
    ).exists()


# -- DocumentEntry filters shared by FindDocuments, GetAll, Get*AndContents, ITI-51 -------------

@dataclass
class DocumentFilter:
    """The DocumentEntry attribute filters of ITI TF-2a 3.18.4.1.2.3.7.1 (all optional).

    Its SQL is written from its :meth:`shape` (which filters are present, how many values each
    has) with the values as bound parameters taken in :meth:`values` order, so that a statement
    built once per shape serves every request of that shape (see :func:`find_documents`)."""

    statuses: Sequence[str] = ()
    entry_types: Sequence[str] = ("stable",)
    class_codes: Sequence[Code] = ()
    type_codes: Sequence[Code] = ()
    practice_codes: Sequence[Code] = ()
    hcft_codes: Sequence[Code] = ()
    format_codes: Sequence[Code] = ()
    event_groups: Sequence[Sequence[Code]] = ()
    conf_groups: Sequence[Sequence[Code]] = ()
    reference_id_groups: Sequence[Sequence[str]] = ()
    authors: Sequence[str] = ()
    creation: tuple[str | None, str | None] = (None, None)
    service_start: tuple[str | None, str | None] = (None, None)
    service_stop: tuple[str | None, str | None] = (None, None)

    def _codes(self) -> tuple[Sequence[Code], ...]:
        return (self.class_codes, self.type_codes, self.practice_codes, self.hcft_codes,
                self.format_codes)

    def _times(self) -> tuple[str | None, ...]:
        return self.creation + self.service_start + self.service_stop

    def shape(self) -> tuple:
        """What the SQL depends on besides the values (hashable)."""
        return (len(self.statuses), len(self.entry_types),
                tuple(len(c) for c in self._codes()),
                tuple(t is not None for t in self._times()),
                tuple(len(g) for g in self.event_groups),
                tuple(len(g) for g in self.conf_groups),
                tuple(len(g) for g in self.reference_id_groups), len(self.authors))

    def values(self, dialect: str) -> list[str]:
        """The bound values, in the order :func:`document_where` takes them."""
        v: list[str] = [*self.statuses, *self.entry_types]
        for codes in self._codes():
            for c in codes:
                v += (c.code, c.scheme)
        v += [t for t in self._times() if t is not None]
        for groups in (self.event_groups, self.conf_groups):
            for g in groups:
                for c in g:
                    v += (c.code, c.scheme)
        for g in self.reference_id_groups:
            v += g
        v += [like_value(p, dialect) for p in self.authors]
        return v

    def where(self, dialect: str) -> list[sa.ColumnElement]:
        """The filter as SQL conditions with their values bound."""
        values = iter(self.values(dialect))
        return document_where(self.shape(), dialect,
                              lambda: sa.bindparam(None, next(values), type_=sa.String))


def document_where(shape: tuple, dialect: str, bind: Callable[..., sa.BindParameter], *,
                   drive_by_event: bool = False) -> list[sa.ColumnElement]:
    """The conditions of a :class:`DocumentFilter` of ``shape``; ``bind()`` gives the next
    value's parameter.  ``drive_by_event`` turns the first eventCodeList group into
    ``id IN (SELECT object_id FROM xds_object_code ...)`` so the code index can drive."""
    statuses, entry_types, codes, times, events, confs, refs, authors = shape
    de = document_entry.c
    w: list[sa.ColumnElement] = []
    if statuses:
        w.append(de.status.in_([bind() for _ in range(statuses)]))
    if entry_types:
        w.append(de.entry_type.in_([bind() for _ in range(entry_types)]))
    for n, (code_col, scheme_col) in zip(codes, _CODE_COLUMNS):
        if n:
            w.append(_code_match(code_col, scheme_col, [(bind(), bind()) for _ in range(n)]))
    for present, (col, op) in zip(times, _TIME_BOUNDS):
        if present:
            w.append(op(padded_time(col), bind()))
    for kind, groups in (("event", events), ("conf", confs)):
        for i, n in enumerate(groups):
            oc = object_code.alias()
            match = _code_match(oc.c.code, oc.c.scheme, [(bind(), bind()) for _ in range(n)])
            if kind == "event" and i == 0 and drive_by_event:
                w.append(de.id.in_(sa.select(oc.c.object_id).where(oc.c.kind == kind, match)))
            else:
                w.append(sa.select(sa.literal(1)).where(
                    oc.c.object_id == de.id, oc.c.kind == kind, match).exists())
    for n in refs:
        r = object_reference_id.alias()
        w.append(sa.select(sa.literal(1)).where(
            r.c.object_id == de.id, r.c.reference_id.in_([bind() for _ in range(n)])).exists())
    if authors:
        a = object_author.alias()
        w.append(sa.select(sa.literal(1)).where(
            a.c.object_id == de.id,
            sa.or_(*[like_op(a.c.person, bind(), dialect) for _ in range(authors)])).exists())
    return w


# -- statements built once per shape ----------------------------------------------------------

class Prepared:
    """A statement compiled once for a dialect and run as its SQL text on the driver's cursor
    of the connection (inside its unit of work): no expression building, cache-key computation,
    compilation or result wrapping per request.  ``run(conn, values)`` takes the values of the
    parameters ``v0``, ``v1``, ... in order; parameters with a value of their own (literals of
    the statement) keep it.  Rows come back as tuples; psycopg returns them in binary format
    (``bytea`` as is, not hex-encoded).  Driver errors are raised as the driver's (a lost
    connection is invalidated first, as SQLAlchemy would)."""

    def __init__(self, stmt: sa.Executable, dialect: Any):
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        if "POSTCOMPILE" in self.sql:  # pragma: no cover - a statement needing SQLAlchemy
            raise ValueError("Prepared statements take no expanding parameters")
        self.positional = compiled.positional
        self.names = list(compiled.positiontup or ()) if compiled.positional else []
        names = compiled.bind_names.values()
        self.value_names = sorted((n for n in names if _is_value(n)), key=lambda n: int(n[1:]))
        self.fixed = {name: bp.effective_value for bp, name in compiled.bind_names.items()
                      if not _is_value(name)}
        self.binary = dialect.driver == "psycopg"

    def run(self, conn: Connection, values: Sequence[Any]) -> list[tuple]:
        if len(values) != len(self.value_names):
            raise ValueError(f"{len(self.value_names)} values expected, got {len(values)}")
        params: Any = dict(self.fixed)
        params.update(zip(self.value_names, values))
        if self.positional:
            params = tuple(params[n] for n in self.names)
        pooled = conn.connection
        try:
            cur = pooled.driver_connection.cursor(binary=True) if self.binary else pooled.cursor()
            try:
                cur.execute(self.sql, params)
                return cur.fetchall()
            finally:
                cur.close()
        except conn.dialect.loaded_dbapi.Error as exc:
            if conn.dialect.is_disconnect(exc, pooled.dbapi_connection, None):
                conn.invalidate(exc)
            raise


def _is_value(name: str) -> bool:
    return name[:1] == "v" and name[1:].isdigit()


def _placeholders() -> Callable[..., sa.BindParameter]:
    """``bind()``: the next parameter (``v0``, ``v1``, ...) of a :class:`Prepared` statement."""
    numbers = itertools.count()
    return lambda type_=sa.String: sa.bindparam(f"v{next(numbers)}", type_=type_)


_OBJECT_COLUMNS = (registry_object.c.id, registry_object.c.kind, registry_object.c.seq,
                   registry_object.c.lid, registry_object.c.version, registry_object.c.status)


@lru_cache(maxsize=SHAPE_CACHE)
def _find_documents_sql(dialect: Any, shape: tuple, patients: int | None, drive_by_event: bool,
                        with_xml: bool) -> Prepared:
    """FindDocuments of ``shape`` for ``patients`` patient ids (None: any), selecting the
    answer's object columns (and the XML) through the primary key of ``xds_object``."""
    bind = _placeholders()
    w = document_where(shape, dialect.name, bind, drive_by_event=drive_by_event)
    if patients is not None:
        w.append(_DE.patient_id == bind() if patients == 1
                 else _DE.patient_id.in_([bind() for _ in range(patients)]))
    o = registry_object.c
    cols = _OBJECT_COLUMNS + (_DE.patient_id,) + ((o.xml,) if with_xml else ())
    stmt = (sa.select(*cols).select_from(document_entry.join(registry_object, o.id == _DE.id))
            .where(*w).limit(bind(sa.Integer)))
    return Prepared(stmt, dialect)


def find_documents(qc: QueryContext, patient_ids: Sequence[str] | None,
                   flt: DocumentFilter) -> list[str]:
    """DocumentEntries of the patients (None: any patient, for ITI-51) matching ``flt``.

    With patients, the ``(patient_id, status, entry_type)`` index drives and every other filter
    (EXISTS included) is checked per row found.  Without (ITI-51), classCode or
    healthcareFacilityTypeCode use their own indexes; with only an eventCodeList its first AND
    group becomes ``id IN (SELECT object_id FROM xds_object_code ...)`` so that the code index
    can drive the search.

    The same statement reads the entries' ``xds_object`` rows by primary key (and, for LeafClass
    answers of up to :data:`FUSED_XML_ROWS` entries, their XML) into ``qc.found``: the common
    FindDocuments is then one statement.  The statement is built once per shape of the request
    (:meth:`DocumentFilter.shape`) and reused with the new values."""
    drive = (patient_ids is None and not flt.class_codes and not flt.hcft_codes
             and bool(flt.event_groups))
    dialect = qc.conn.dialect
    key = (dialect, flt.shape(), None if patient_ids is None else len(patient_ids), drive)
    values = flt.values(dialect.name) + list(patient_ids or ())
    limit = qc.max_results + 1
    fused = qc.with_xml
    first = min(limit, FUSED_XML_ROWS + 1) if fused else limit
    rows = _find_documents_sql(*key, fused).run(qc.conn, values + [first])
    if len(rows) == first < limit:  # a large answer: the ids first, the XML by fetch_objects
        qc.found.update(_found(r) for r in rows)
        rows = _find_documents_sql(*key, False).run(qc.conn, values + [limit])
        qc.check_count(len(rows), "DocumentEntries")
        return unique(r[0] for r in rows)
    qc.check_count(len(rows), "DocumentEntries")
    qc.found.update(_found(r) for r in rows)
    return unique(r[0] for r in rows)


def _found(r: Sequence) -> tuple[str, FoundObject]:
    """A row of (id, kind, seq, lid, version, status, patient_id[, xml])."""
    return r[0], FoundObject(r[0], r[1], r[3], r[4], r[5], r[6], r[7] if len(r) > 7 else None,
                             r[2])


def filter_documents(qc: QueryContext, ids: Sequence[str], flt: DocumentFilter) -> list[str]:
    """Those of ``ids`` (DocumentEntry entryUUIDs) that pass ``flt``, in the order given."""
    keep: set[str] = set()
    de = document_entry.c
    for part in chunks(unique(ids)):
        stmt = sa.select(de.id).where(de.id.in_(list(part)), *flt.where(qc.dialect))
        keep.update(qc.conn.execute(stmt).scalars())
    return [i for i in ids if i in keep]


# -- lookups by key ---------------------------------------------------------------------------

def ids_by(qc: QueryContext, table: sa.Table, column: str, values: Sequence[str],
           latest_only: bool = False) -> list[str]:
    """entryUUIDs of ``table`` rows whose ``column`` is one of ``values`` (registration order);
    ``latest_only``: of the versions of one logical object, only the latest."""
    o = registry_object.c
    out: list[str] = []
    for part in chunks(unique(values)):
        stmt = (sa.select(table.c.id, o.lid, o.version).join(registry_object, o.id == table.c.id)
                .where(table.c[column].in_(list(part))).order_by(o.seq))
        rows = qc.conn.execute(stmt.limit(qc.max_results + 1)).all()
        if latest_only:
            newest: dict[str, int] = {}
            for r in rows:
                newest[r.lid] = max(newest.get(r.lid, 0), r.version)
            rows = [r for r in rows if r.version == newest[r.lid]]
        out += [r.id for r in rows]
        qc.check_count(len(out))
    return unique(out)


@dataclass(frozen=True)
class Assoc:
    id: str
    type: str
    source: str
    target: str


def associations(qc: QueryContext, *, sources: Sequence[str] = (), targets: Sequence[str] = (),
                 types: Sequence[str] | None = None, active_only: bool = False,
                 metadata_level: int = 1, statuses: Sequence[str] | None = None
                 ) -> list[Assoc]:
    """Associations whose source is in ``sources`` or whose target is in ``targets`` (through the
    source_id / target_id indexes).  ``active_only`` skips Deprecated ones (a membership removed
    by Metadata Update), ``statuses`` keeps those (short names); Level 1 hides the Metadata
    Update association types."""
    a = association.c
    found: dict[str, Assoc] = {}
    for col, values in ((a.source_id, sources), (a.target_id, targets)):
        for part in chunks(unique(values)):
            stmt = sa.select(a.id, a.type, a.source_id, a.target_id).where(col.in_(list(part)))
            if types is not None:
                stmt = stmt.where(a.type.in_(list(types)))
            if active_only:
                stmt = stmt.where(a.status != "Deprecated")
            if statuses is not None:
                stmt = stmt.where(a.status.in_(list(statuses)))
            if metadata_level < 2:
                stmt = stmt.where(a.type.not_in(LEVEL2_ASSOCIATION_TYPES))
            for row in qc.conn.execute(stmt.limit(qc.max_results + 1)):
                found.setdefault(row.id, Assoc(row.id, row.type, row.source_id, row.target_id))
            qc.check_count(len(found), "Associations")
    return list(found.values())


def association_rows(qc: QueryContext, ids: Sequence[str], *, active_only: bool = False,
                     metadata_level: int = 1) -> list[Assoc]:
    """The Associations among ``ids`` (entryUUIDs of any kind)."""
    a = association.c
    out: list[Assoc] = []
    for part in chunks(unique(ids)):
        stmt = sa.select(a.id, a.type, a.source_id, a.target_id).where(a.id.in_(list(part)))
        if active_only:
            stmt = stmt.where(a.status != "Deprecated")
        if metadata_level < 2:
            stmt = stmt.where(a.type.not_in(LEVEL2_ASSOCIATION_TYPES))
        for row in qc.conn.execute(stmt):
            out.append(Assoc(row.id, row.type, row.source_id, row.target_id))
    return out


def kinds(qc: QueryContext, ids: Sequence[str]) -> dict[str, str]:
    """entryUUID -> kind (DocumentEntry, SubmissionSet, Folder, Association) of the known ids."""
    o = registry_object.c
    out: dict[str, str] = {}
    for part in chunks(unique(ids)):
        for row in qc.conn.execute(sa.select(o.id, o.kind).where(o.id.in_(list(part)))):
            out[row.id] = row.kind
    return out


# -- the final fetch --------------------------------------------------------------------------

def _fetch_statement(with_xml: bool) -> sa.Select:
    o = registry_object.c
    # the patient through primary-key lookups per row (a correlated subquery per table, so no
    # plan can turn it into a scan of a whole table)
    patient = sa.func.coalesce(*[
        sa.select(t.c.patient_id).where(t.c.id == o.id).scalar_subquery()
        for t in (document_entry, submission_set, folder)]).label("patient_id")
    cols = _OBJECT_COLUMNS + (patient,) + ((o.xml,) if with_xml else ())
    return sa.select(*cols).where(o.id.in_(sa.bindparam("ids", expanding=True)))


_FETCH = {False: _fetch_statement(False), True: _fetch_statement(True)}


def fetch_objects(conn: Connection, ids: Sequence[str], with_xml: bool,
                  found: dict[str, FoundObject] | None = None) -> list[FoundObject]:
    """The answer's objects: those already in ``found`` (read by the query itself, see
    :attr:`QueryContext.found`) and the others in one query (per IN_CHUNK ids): id, kind, seq,
    lid, version, status, patient_id (DocumentEntry / SubmissionSet / Folder; NULL for
    Associations) and, for LeafClass, the stored XML."""
    found = found or {}
    out: list[FoundObject] = []
    missing: list[str] = []
    for i in unique(ids):
        obj = found.get(i)
        if obj is not None and (obj.xml is not None or not with_xml):
            out.append(obj)
        else:
            missing.append(i)
    for part in chunks(missing):
        out += (_found(r)[1] for r in conn.execute(_FETCH[with_xml], {"ids": list(part)}))
    return out

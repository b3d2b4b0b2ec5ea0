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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hie.errors import XDS, RegistryErrors
from xds_registry.query_params import Code
from xds_registry.tables import (association, document_entry, folder, object_author,
                                 object_code, object_reference_id, registry_object,
                                 submission_set)

IN_CHUNK = 5000
DOCUMENT_ENTRY, SUBMISSION_SET, FOLDER, ASSOCIATION = (
    "DocumentEntry", "SubmissionSet", "Folder", "Association")
# association types a Metadata Level 1 answer does not show (ITI TF-2b 3.57: they only exist in
# registries that support Metadata Update)
LEVEL2_ASSOCIATION_TYPES = ("UpdateAvailabilityStatus", "SubmitAssociation")


@dataclass
class QueryContext:
    """What a stored query runs with: the read connection and the result bound."""

    conn: Connection
    max_results: int

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
    return sa.or_(*[sa.and_(code_col == c.code, scheme_col == c.scheme) for c in codes])


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


def has_reference_ids(id_col: sa.ColumnElement, groups: Sequence[Sequence[str]]
                      ) -> list[sa.ColumnElement]:
    out = []
    for group in groups:
        r = object_reference_id.alias()
        out.append(sa.select(sa.literal(1)).where(
            r.c.object_id == id_col, r.c.reference_id.in_(list(group))).exists())
    return out


def like_to_glob(pattern: str) -> str:
    """SQL LIKE (``%``, ``_``; no escape character) as an equivalent SQLite GLOB pattern."""
    out = []
    for ch in pattern:
        out.append({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch))
    return "".join(out)


def like(col: sa.ColumnElement, pattern: str, dialect: str) -> sa.ColumnElement:
    if dialect == "sqlite":
        return col.op("GLOB")(like_to_glob(pattern))
    # PostgreSQL's LIKE escapes with backslash by default: make backslashes literal
    return col.like(pattern.replace("\\", "\\\\"))


def has_author(id_col: sa.ColumnElement, patterns: Sequence[str], dialect: str
               ) -> sa.ColumnElement:
    a = object_author.alias()
    return sa.select(sa.literal(1)).where(
        a.c.object_id == id_col, sa.or_(*[like(a.c.person, p, dialect) for p in patterns])
    ).exists()


# -- DocumentEntry filters shared by FindDocuments, GetAll, Get*AndContents, ITI-51 -------------

@dataclass
class DocumentFilter:
    """The DocumentEntry attribute filters of ITI TF-2a 3.18.4.1.2.3.7.1 (all optional)."""

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

    def where(self, dialect: str) -> list[sa.ColumnElement]:
        de = document_entry.c
        w: list[sa.ColumnElement] = []
        if self.statuses:
            w.append(de.status.in_(list(self.statuses)))
        if self.entry_types:
            w.append(de.entry_type.in_(list(self.entry_types)))
        for codes, code_col, scheme_col in (
                (self.class_codes, de.class_code, de.class_scheme),
                (self.type_codes, de.type_code, de.type_scheme),
                (self.practice_codes, de.practice_code, de.practice_scheme),
                (self.hcft_codes, de.hcft_code, de.hcft_scheme),
                (self.format_codes, de.format_code, de.format_scheme)):
            if codes:
                w.append(code_in(code_col, scheme_col, codes))
        w += time_range(de.creation_time, *self.creation)
        w += time_range(de.service_start_time, *self.service_start)
        w += time_range(de.service_stop_time, *self.service_stop)
        w += has_codes(de.id, "event", self.event_groups)
        w += has_codes(de.id, "conf", self.conf_groups)
        w += has_reference_ids(de.id, self.reference_id_groups)
        if self.authors:
            w.append(has_author(de.id, self.authors, dialect))
        return w


def find_documents(qc: QueryContext, patient_ids: Sequence[str] | None,
                   flt: DocumentFilter) -> list[str]:
    """DocumentEntries of the patients (None: any patient, for ITI-51) matching ``flt``.

    With patients, the ``(patient_id, status, entry_type)`` index drives and every other filter
    (EXISTS included) is checked per row found.  Without (ITI-51), classCode or
    healthcareFacilityTypeCode use their own indexes; with only an eventCodeList its first AND
    group becomes ``id IN (SELECT object_id FROM xds_object_code ...)`` so that the code index
    can drive the search."""
    de = document_entry.c
    if patient_ids is None and not flt.class_codes and not flt.hcft_codes and flt.event_groups:
        oc = object_code.alias()
        driver = de.id.in_(sa.select(oc.c.object_id).where(
            oc.c.kind == "event", code_in(oc.c.code, oc.c.scheme, flt.event_groups[0])))
        rest = DocumentFilter(**{**flt.__dict__, "event_groups": flt.event_groups[1:]})
        stmt = sa.select(de.id).where(driver, *rest.where(qc.dialect))
    else:
        stmt = sa.select(de.id).where(*flt.where(qc.dialect))
    if patient_ids is not None:
        stmt = stmt.where(de.patient_id.in_(list(patient_ids)) if len(patient_ids) != 1
                          else de.patient_id == patient_ids[0])
    return qc.ids(stmt, "DocumentEntries")


def filter_documents(qc: QueryContext, ids: Sequence[str], flt: DocumentFilter) -> list[str]:
    """Those of ``ids`` (DocumentEntry entryUUIDs) that pass ``flt``, in the order given."""
    keep: set[str] = set()
    de = document_entry.c
    for part in chunks(unique(ids)):
        stmt = sa.select(de.id).where(de.id.in_(list(part)), *flt.where(qc.dialect))
        keep.update(qc.conn.execute(stmt).scalars())
    return [i for i in ids if i in keep]


# -- lookups by key ---------------------------------------------------------------------------

def ids_by(qc: QueryContext, table: sa.Table, column: str, values: Sequence[str]) -> list[str]:
    """entryUUIDs of ``table`` rows whose ``column`` is one of ``values`` (registration order)."""
    o = registry_object.c
    out: list[str] = []
    for part in chunks(unique(values)):
        stmt = (sa.select(table.c.id).join(registry_object, o.id == table.c.id)
                .where(table.c[column].in_(list(part))).order_by(o.seq))
        out += qc.conn.execute(stmt.limit(qc.max_results + 1)).scalars().all()
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
                 metadata_level: int = 1) -> list[Assoc]:
    """Associations whose source is in ``sources`` or whose target is in ``targets`` (through the
    source_id / target_id indexes).  ``active_only`` skips Deprecated ones (a membership removed
    by Metadata Update); Level 1 hides the Metadata Update association types."""
    a = association.c
    found: dict[str, Assoc] = {}
    for col, values in ((a.source_id, sources), (a.target_id, targets)):
        for part in chunks(unique(values)):
            stmt = sa.select(a.id, a.type, a.source_id, a.target_id).where(col.in_(list(part)))
            if types is not None:
                stmt = stmt.where(a.type.in_(list(types)))
            if active_only:
                stmt = stmt.where(a.status != "Deprecated")
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

def fetch_objects(conn: Connection, ids: Sequence[str], with_xml: bool) -> list[sa.Row]:
    """The answer's objects in one query (per IN_CHUNK ids): id, kind, seq, lid, version,
    status, patient_id (DocumentEntry / SubmissionSet / Folder; NULL for Associations) and,
    for LeafClass, the stored XML."""
    o = registry_object.c
    # the patient through primary-key lookups per row (a correlated subquery per table, so no
    # plan can turn it into a scan of a whole table)
    patient = sa.func.coalesce(*[
        sa.select(t.c.patient_id).where(t.c.id == o.id).scalar_subquery()
        for t in (document_entry, submission_set, folder)]).label("patient_id")
    cols = [o.id, o.kind, o.seq, o.lid, o.version, o.status, patient]
    if with_xml:
        cols.append(o.xml)
    rows: list[sa.Row] = []
    for part in chunks(unique(ids)):
        rows += conn.execute(sa.select(*cols).where(o.id.in_(list(part)))).all()
    return rows

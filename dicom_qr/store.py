"""Writing the imaging index (dicom_qr.tables): one received instance becomes (or updates) its
patient, study, series and instance rows in one unit of work.

The levels are looked up by their keys (PatientID + IssuerOfPatientID, Study / Series / SOP
Instance UID) and inserted when new; a level's attributes follow the latest instance received
that has them (PS3.4 C.6.1.1.1 leaves the SCP to keep one value per level).  An instance received again
(same SOP Instance UID) points to the bytes received last; an attribute an instance leaves
empty does not erase the value another instance of the level gave.  Two associations storing the first
instances of one study at once may both try to insert it: the loser's unit of work fails on the
unique key and runs again, finding the row.

A :class:`LevelCache` (one per association) remembers the patient, study and series rows an
association has written and what they hold: the next instance of the same series whose level
attributes say nothing new costs no statement at those levels.  What it remembers is taken in
only once the unit of work has committed.  Such an instance — the common case, a series arriving
instance after instance — is then one statement, an ``INSERT … ON CONFLICT (sop_uid) DO UPDATE
… RETURNING id`` (SQLite 3.35+, PostgreSQL 9.5+) compiled once per dialect and run on the
database driver's own connection, without SQLAlchemy's per-statement machinery.  Should it fail
(a level row removed under the cache), the cache is forgotten and the instance written the
ordinary way.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dicom_qr.tables import dicom_instance, dicom_patient, dicom_series, dicom_study

log = logging.getLogger("dicom_qr.store")

ATTEMPTS = 3
_STAMPS = ("updated_at", "received_at")   # when a row was written, not what it holds
Known = dict[tuple[str, tuple], tuple[int, dict[str, Any]]]


class LevelCache:
    """Level rows one association has written: (table, key values) -> (id, attributes)."""

    LIMIT = 256

    def __init__(self) -> None:
        self.known: Known = {}

    def knows(self, table: sa.Table, key: tuple) -> bool:
        return (table.name, key) in self.known

    def held(self, table: sa.Table, key: tuple) -> dict[str, Any]:
        """What the row of ``key`` is known to hold ({} when not known)."""
        return self.known.get((table.name, key), (0, {}))[1]

    def take(self, written: Known) -> None:
        if len(self.known) + len(written) > self.LIMIT:
            self.known.clear()
        self.known.update(written)


@functools.lru_cache(maxsize=None)
def _statements(table: sa.Table, keys: tuple[str, ...]):
    """(look-up by ``keys``, insert, update by id) of ``table``, built once: the values come
    as parameters, so each call costs no statement construction (SQLAlchemy compiles each
    shape once)."""
    look_up = sa.select(table.c.id).where(*[table.c[k] == sa.bindparam(f"key_{k}")
                                            for k in keys])
    return look_up, table.insert(), table.update().where(table.c.id == sa.bindparam("row_pk"))


def _said(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The attributes an instance gives a level (empty ones keep the level's value)."""
    return {k: v for k, v in values.items() if k not in keys and v not in ("", None)}


def _holds(held: dict[str, Any], attributes: dict[str, Any]) -> bool:
    """A known row already holds every attribute given."""
    return all(held.get(k) == v for k, v in attributes.items())


def _upsert(conn: Connection, table: sa.Table, keys: tuple[str, ...], values: dict[str, Any],
            known: Known, written: Known) -> int:
    """The id of the row of ``table`` whose ``keys`` columns have ``values``' values: updated
    (an attribute the new instance leaves empty keeps its value) or inserted — or, when
    ``known`` says the row already holds every attribute given, left as it is.  What the row
    holds afterwards goes to ``written``."""
    ident = (table.name, tuple(values[k] for k in keys))
    said = _said(values, keys)
    attributes = {k: v for k, v in said.items() if k not in _STAMPS}
    if ident in known:
        pk, held = known[ident]
        if _holds(held, attributes):
            return pk
        written[ident] = (pk, {**held, **attributes})
        conn.execute(_statements(table, keys)[2], {**said, "row_pk": pk})
        return pk
    look_up, insert, update = _statements(table, keys)
    row = conn.execute(look_up, {f"key_{k}": values[k] for k in keys}).first()
    if row is not None:
        conn.execute(update, {**said, "row_pk": row.id})
        pk = row.id
    else:
        pk = conn.execute(insert, values).inserted_primary_key[0]
    written[ident] = (pk, attributes)
    return pk


# the columns of an instance row, in the order the one-statement upsert binds them
_INSTANCE_COLUMNS = ("series_pk", "sop_uid", "sop_class", "instance_number", "transfer_syntax",
                     "blob_key", "size", "source_ae", "received_at")


@functools.lru_cache(maxsize=None)
def _instance_upsert(dialect) -> tuple[str, tuple[str, ...] | None, tuple]:
    """(SQL, parameter order for a positional driver or None, bind processors) of the instance
    row's one-statement upsert for ``dialect``."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(dicom_instance).values({c: sa.bindparam(c) for c in _INSTANCE_COLUMNS})
    stmt = stmt.on_conflict_do_update(
        index_elements=[dicom_instance.c.sop_uid],
        set_={c: stmt.excluded[c] for c in _INSTANCE_COLUMNS if c != "sop_uid"},
    ).returning(dicom_instance.c.id)
    compiled = stmt.compile(dialect=dialect)
    order = tuple(compiled.positiontup) if compiled.positiontup else None
    processors = tuple((c, dicom_instance.c[c].type.bind_processor(dialect))
                       for c in _INSTANCE_COLUMNS)
    return compiled.string, order, processors


def _instance_row(db, values: dict[str, Any]) -> int:
    """Insert (or, for a SOP Instance UID already held, update) one instance row in one
    statement and unit of work on the driver's connection; its id."""
    sql, order, processors = _instance_upsert(db.engine.dialect)
    bound = {c: (f(values[c]) if f is not None else values[c]) for c, f in processors}
    with db.driver_unit() as cursor:
        cursor.execute(sql, tuple(bound[c] for c in order) if order is not None else bound)
        return cursor.fetchone()[0]


_LEVELS = ((dicom_patient, "patient", ("patient_id", "issuer"), None),
           (dicom_study, "study", ("study_uid",), "patient_pk"),
           (dicom_series, "series", ("series_uid",), "study_pk"))


def _unchanged(levels: dict[str, dict[str, Any]], known: Known) -> list[int] | None:
    """The ids of the patient, study and series rows when ``known`` says each holds every
    attribute ``levels`` gives it already (the study under that patient, the series under
    that study), as :func:`_upsert` would find; else None."""
    pks: list[int] = []
    for table, level, keys, parent in _LEVELS:
        values = levels[level] if parent is None else {**levels[level], parent: pks[-1]}
        entry = known.get((table.name, tuple(values[k] for k in keys)))
        if entry is None or not _holds(entry[1], _said(values, keys)):
            return None
        pks.append(entry[0])
    return pks


def record(db, levels: dict[str, dict[str, Any]], *, transfer_syntax: str, blob_key: str,
           size: int, source_ae: str, now: dt.datetime | None = None,
           cache: LevelCache | None = None,
           also: Callable[[Connection], None] | None = None) -> int:
    """Index one instance (``levels``: :func:`dicom_qr.attrs.index_values`); its row id.
    ``cache``: the association's :class:`LevelCache`, if it keeps one; ``also``: more to
    write in the same unit of work (the outbox rows of forwarding)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    known = cache.known if cache is not None else {}
    pks = _unchanged(levels, known) if also is None and known else None
    if pks is not None:
        try:
            return _instance_row(db, {**levels["instance"], "series_pk": pks[2],
                                      "transfer_syntax": transfer_syntax, "blob_key": blob_key,
                                      "size": size, "source_ae": source_ae, "received_at": now})
        except Exception as exc:  # noqa: BLE001 - e.g. a level row removed under the cache
            log.warning("instance row written the ordinary way after: %s", exc)
            known.clear()
    for attempt in range(ATTEMPTS):
        written: Known = {}
        try:
            with db.begin() as conn:
                patient_pk = _upsert(conn, dicom_patient, ("patient_id", "issuer"),
                                     {**levels["patient"], "updated_at": now}, known, written)
                study_pk = _upsert(conn, dicom_study, ("study_uid",),
                                   {**levels["study"], "patient_pk": patient_pk,
                                    "updated_at": now}, known, written)
                series_pk = _upsert(conn, dicom_series, ("series_uid",),
                                    {**levels["series"], "study_pk": study_pk, "updated_at": now},
                                    known, written)
                pk = _upsert(conn, dicom_instance, ("sop_uid",),
                             {**levels["instance"], "series_pk": series_pk,
                              "transfer_syntax": transfer_syntax, "blob_key": blob_key,
                              "size": size, "source_ae": source_ae, "received_at": now},
                             {}, {})
                if also is not None:
                    also(conn)
        except sa.exc.IntegrityError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        if cache is not None:
            cache.take(written)
        return pk
    raise AssertionError("unreachable")


__all__ = ["LevelCache", "record"]

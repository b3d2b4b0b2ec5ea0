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
attributes say nothing new costs no statement at those levels — one look-up and one insert for
the instance.  What it remembers is taken in only once the unit of work has committed.
"""
from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dicom_qr.tables import dicom_instance, dicom_patient, dicom_series, dicom_study

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
        if all(held.get(k) == v for k, v in attributes.items()):
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


def record(db, levels: dict[str, dict[str, Any]], *, transfer_syntax: str, blob_key: str,
           size: int, source_ae: str, now: dt.datetime | None = None,
           cache: LevelCache | None = None,
           also: Callable[[Connection], None] | None = None) -> int:
    """Index one instance (``levels``: :func:`dicom_qr.attrs.index_values`); its row id.
    ``cache``: the association's :class:`LevelCache`, if it keeps one; ``also``: more to
    write in the same unit of work (the outbox rows of forwarding)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    known = cache.known if cache is not None else {}
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

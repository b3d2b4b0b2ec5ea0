"""Writing the imaging index (dicom_qr.tables): one received instance becomes (or updates) its
patient, study, series and instance rows in one unit of work.

The levels are looked up by their keys (PatientID + IssuerOfPatientID, Study / Series / SOP
Instance UID) and inserted when new; a level's attributes follow the latest instance received
that has them (PS3.4 C.6.1.1.1 leaves the SCP to keep one value per level).  An instance received again
(same SOP Instance UID) points to the bytes received last; an attribute an instance leaves
empty does not erase the value another instance of the level gave.  Two associations storing the first
instances of one study at once may both try to insert it: the loser's unit of work fails on the
unique key and runs again, finding the row.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dicom_qr.tables import dicom_instance, dicom_patient, dicom_series, dicom_study

ATTEMPTS = 3


def _upsert(conn: Connection, table: sa.Table, keys: tuple[str, ...], values: dict[str, Any]
            ) -> int:
    """The id of the row of ``table`` whose ``keys`` columns have ``values``' values: updated
    (an attribute the new instance leaves empty keeps its value) or inserted."""
    where = [table.c[k] == values[k] for k in keys]
    row = conn.execute(sa.select(table.c.id).where(*where)).first()
    if row is not None:
        changed = {k: v for k, v in values.items() if k not in keys and v not in ("", None)}
        conn.execute(table.update().where(table.c.id == row.id).values(**changed))
        return row.id
    return conn.execute(table.insert().values(**values)).inserted_primary_key[0]


def record(db, levels: dict[str, dict[str, Any]], *, transfer_syntax: str, blob_key: str,
           size: int, source_ae: str, now: dt.datetime | None = None) -> int:
    """Index one instance (``levels``: :func:`dicom_qr.attrs.index_values`); its row id."""
    now = now or dt.datetime.now(dt.timezone.utc)
    for attempt in range(ATTEMPTS):
        try:
            with db.begin() as conn:
                patient_pk = _upsert(conn, dicom_patient, ("patient_id", "issuer"),
                                     {**levels["patient"], "updated_at": now})
                study_pk = _upsert(conn, dicom_study, ("study_uid",),
                                   {**levels["study"], "patient_pk": patient_pk,
                                    "updated_at": now})
                series_pk = _upsert(conn, dicom_series, ("series_uid",),
                                    {**levels["series"], "study_pk": study_pk, "updated_at": now})
                return _upsert(conn, dicom_instance, ("sop_uid",),
                               {**levels["instance"], "series_pk": series_pk,
                                "transfer_syntax": transfer_syntax, "blob_key": blob_key,
                                "size": size, "source_ae": source_ae, "received_at": now})
        except sa.exc.IntegrityError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


__all__ = ["record"]

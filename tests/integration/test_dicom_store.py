"""The imaging index's writer (dicom_qr.store) on SQLite and PostgreSQL: an association's
LevelCache spares the level statements of instances that say nothing new, writes what they do
say, and is not taught anything by a unit of work that did not commit."""
from __future__ import annotations

import sqlalchemy as sa

from dicom_qr import store
from dicom_qr.tables import dicom_instance, dicom_series, dicom_study


def levels(sop: str, *, description: str = "胸部CT平扫", modality: str = "CT") -> dict:
    return {"patient": {"patient_id": "P100", "issuer": "BJXH", "patient_name": "王^小明",
                        "name_norm": "王小明", "name_alpha": "", "birth_date": "19800101",
                        "sex": "M"},
            "study": {"study_uid": "1.2.3.4", "study_date": "20261202", "study_time": "",
                      "accession": "A1", "study_id": "", "description": description,
                      "referring": "", "charset": "ISO_IR 192"},
            "series": {"series_uid": "1.2.3.4.1", "modality": modality, "series_number": "1",
                       "description": "", "body_part": ""},
            "instance": {"sop_uid": sop, "sop_class": "1.2.840.10008.5.1.4.1.1.2",
                         "instance_number": "1"}}


def _record(db, sop: str, cache, **kw) -> int:
    return store.record(db, levels(sop, **kw), transfer_syntax="1.2.840.10008.1.2.1",
                        blob_key=f"k{sop}", size=10, source_ae="CT1", cache=cache)


class Statements:
    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, *args):
        if statement.split()[0].upper() in ("SELECT", "INSERT", "UPDATE"):
            self.seen.append(statement.split()[0].upper())


def test_an_instance_that_says_nothing_new_costs_no_level_statement(database):
    cache = store.LevelCache()
    _record(database, "1.2.3.4.1.1", cache)
    with Statements(database.engine) as st:
        _record(database, "1.2.3.4.1.2", cache)
    assert st.seen == ["SELECT", "INSERT"]        # the instance's look-up and its row
    with Statements(database.engine) as st:
        _record(database, "1.2.3.4.1.3", cache, description="胸部CT增强")
    assert st.seen.count("UPDATE") == 1            # the study, and nothing else
    with database.read() as c:
        assert c.execute(sa.select(dicom_study.c.description)).scalar_one() == "胸部CT增强"
        assert c.execute(sa.select(sa.func.count()).select_from(dicom_instance)).scalar() == 3


def test_without_a_cache_every_level_is_looked_up(database):
    _record(database, "1.2.3.4.1.1", None)
    with Statements(database.engine) as st:
        _record(database, "1.2.3.4.1.2", None)
    assert st.seen.count("SELECT") == 4


def test_a_unit_of_work_that_fails_teaches_the_cache_nothing(database, monkeypatch):
    cache = store.LevelCache()
    _record(database, "1.2.3.4.1.1", cache)
    real = store._upsert

    def failing(conn, table, keys, values, known, written):
        if table is dicom_instance:
            raise RuntimeError("disk full")
        return real(conn, table, keys, values, known, written)

    monkeypatch.setattr(store, "_upsert", failing)
    try:
        _record(database, "1.2.3.4.1.2", cache, modality="MR")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failure did not reach the caller")
    monkeypatch.setattr(store, "_upsert", real)
    with database.read() as c:                    # rolled back: the series is still CT
        assert c.execute(sa.select(dicom_series.c.modality)).scalar_one() == "CT"
    _record(database, "1.2.3.4.1.3", cache, modality="MR")
    with database.read() as c:                    # and the cache did not believe it was MR
        assert c.execute(sa.select(dicom_series.c.modality)).scalar_one() == "MR"

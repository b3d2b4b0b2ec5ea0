"""The imaging index's writer (dicom_qr.store) on SQLite and PostgreSQL: an association's
LevelCache spares the level statements of instances that say nothing new (such an instance is
one upsert on the driver's connection), writes what they do say, is not taught anything by a
unit of work that did not commit, and is forgotten when a row it names is gone."""
from __future__ import annotations

import sqlalchemy as sa

from dicom_qr import store
from dicom_qr.tables import dicom_instance, dicom_patient, dicom_series, dicom_study


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


class DriverStatements:
    """The statements run on the driver's connections handed out by ``engine.raw_connection``."""

    def __init__(self, engine, monkeypatch):
        self.seen: list[str] = []
        real = engine.raw_connection
        seen = self.seen

        class Cursor:
            def __init__(self, cursor):
                self._cursor = cursor

            def execute(self, sql, *args):
                seen.append(sql.split()[0].upper() if sql.split()[0].upper() != "BEGIN"
                            else "BEGIN")
                return self._cursor.execute(sql, *args)

            def __getattr__(self, name):
                return getattr(self._cursor, name)

        class Connection:
            def __init__(self, raw):
                self._raw = raw

            def cursor(self):
                return Cursor(self._raw.cursor())

            def __getattr__(self, name):
                return getattr(self._raw, name)

        monkeypatch.setattr(engine, "raw_connection", lambda: Connection(real()))


def _instances(db) -> list[tuple]:
    with db.read() as c:
        return [tuple(r) for r in c.execute(
            sa.select(dicom_instance.c.sop_uid, dicom_instance.c.blob_key,
                      dicom_instance.c.series_pk).order_by(dicom_instance.c.sop_uid))]


def test_an_instance_that_says_nothing_new_costs_no_level_statement(database, monkeypatch):
    cache = store.LevelCache()
    _record(database, "1.2.3.4.1.1", cache)
    driver = DriverStatements(database.engine, monkeypatch)
    with Statements(database.engine) as st:
        pk = _record(database, "1.2.3.4.1.2", cache)
    assert st.seen == []                          # nothing through SQLAlchemy's execution
    assert [s for s in driver.seen if s not in ("BEGIN", "COMMIT")] == ["INSERT"]
    with database.read() as c:
        row = c.execute(sa.select(dicom_instance).where(dicom_instance.c.id == pk)).one()
        first = c.execute(sa.select(dicom_instance)
                          .where(dicom_instance.c.sop_uid == "1.2.3.4.1.1")).one()
    assert (row.sop_uid, row.blob_key, row.size, row.source_ae, row.series_pk,
            row.transfer_syntax) == ("1.2.3.4.1.2", "k1.2.3.4.1.2", 10, "CT1", first.series_pk,
                                     "1.2.840.10008.1.2.1")
    assert row.received_at is not None
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


def test_an_instance_received_again_points_to_its_latest_bytes(database):
    cache = store.LevelCache()
    _record(database, "1.2.3.4.1.1", cache)
    _record(database, "1.2.3.4.1.2", cache)
    again = store.record(database, levels("1.2.3.4.1.2"), transfer_syntax="1.2.840.10008.1.2",
                         blob_key="newer", size=11, source_ae="CT1", cache=cache)
    rows = _instances(database)
    assert [r[:2] for r in rows] == [("1.2.3.4.1.1", "k1.2.3.4.1.1"), ("1.2.3.4.1.2", "newer")]
    with database.read() as c:
        assert c.execute(sa.select(dicom_instance.c.id)
                         .where(dicom_instance.c.sop_uid == "1.2.3.4.1.2")).scalar_one() == again


def test_a_study_now_under_another_patient_is_written_the_ordinary_way(database):
    cache = store.LevelCache()
    _record(database, "1.2.3.4.1.1", cache)
    other = levels("9.9.9.1")
    other["patient"]["patient_id"], other["study"]["study_uid"] = "P200", "9.9"
    other["series"]["series_uid"] = "9.9.1"
    store.record(database, other, transfer_syntax="1.2.840.10008.1.2.1", blob_key="x",
                 size=1, source_ae="CT1", cache=cache)           # P200 is known now
    moved = levels("1.2.3.4.1.2")
    moved["patient"]["patient_id"] = "P200"                       # the study, corrected
    store.record(database, moved, transfer_syntax="1.2.840.10008.1.2.1", blob_key="y",
                 size=1, source_ae="CT1", cache=cache)
    with database.read() as c:
        owner = c.execute(sa.select(dicom_patient.c.patient_id)
                          .join(dicom_study, dicom_study.c.patient_pk == dicom_patient.c.id)
                          .where(dicom_study.c.study_uid == "1.2.3.4")).scalar_one()
    assert owner == "P200"


def test_a_level_row_gone_under_the_cache_is_written_again(database):
    cache = store.LevelCache()
    _record(database, "1.2.3.4.1.1", cache)
    with database.begin() as c:                   # the series removed (e.g. by a deletion)
        c.execute(dicom_instance.delete())
        c.execute(dicom_series.delete())
    _record(database, "1.2.3.4.1.2", cache)       # the one-statement path fails, then not
    rows = _instances(database)
    assert [r[0] for r in rows] == ["1.2.3.4.1.2"]
    with database.read() as c:
        assert c.execute(sa.select(dicom_series.c.id)).scalar_one() == rows[0][2]

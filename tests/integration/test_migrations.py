"""Alembic migrations create exactly the schema the code declares, on SQLite and PostgreSQL, and
``hie db upgrade`` is idempotent — so a forgotten migration fails here, not in production."""
import itertools

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hie import migrations
from hie.db import Database, all_tables_imported, create_engine

_n = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path):
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    else:
        pg = request.getfixturevalue("postgres")
        name = f"mig{next(_n)}"
        eng = create_engine(pg.url())
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(sa.text(f"CREATE DATABASE {name}"))
        eng.dispose()
        db = Database(pg.url(name))
    yield db
    db.dispose()


def test_upgrade_matches_declared_schema(empty_db):
    migrations.upgrade(empty_db)
    first = migrations.current(empty_db)
    assert first
    migrations.upgrade(empty_db)  # idempotent
    assert migrations.current(empty_db) == first
    with empty_db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, all_tables_imported())
    assert diffs == [], diffs


def test_registration_numbers_continue_after_existing_rows(empty_db):
    """The sequence revision starts the registration numbers after the highest one stored, so a
    registry upgraded with data keeps ``xds_object.seq`` unique (PostgreSQL; SQLite keeps
    ``max(seq) + 1``)."""
    from xds_registry import store
    migrations.upgrade(empty_db, "60023b5fdbc6")
    with empty_db.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO xds_object (id, seq, kind, lid, version, status, xml, created_at) "
            "VALUES ('urn:uuid:1', 41, 'DocumentEntry', 'urn:uuid:1', 1, 'Approved', :x, "
            "CURRENT_TIMESTAMP)"), {"x": b"<x/>"})
    migrations.upgrade(empty_db)
    with empty_db.begin() as conn:
        first = store.next_seqs(conn, 3)
    assert first == [42, 43, 44]
    if empty_db.dialect == "postgresql":
        with empty_db.begin() as conn:  # drawn numbers are never handed out again
            assert store.next_seq(conn) == 45
            has_lz4 = conn.execute(sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                "WHERE name = 'default_toast_compression'")).scalar()
            compression = conn.execute(sa.text(
                "SELECT attcompression FROM pg_attribute WHERE attrelid = 'xds_object'::regclass "
                "AND attname = 'xml'")).scalar()
            assert compression == ("l" if has_lz4 else "")


def test_blocks_get_the_persons_resident_id_number(empty_db):
    """f2c8e5a7b9d1 fills ``pix_block.number`` for an index upgraded with data: the one
    national identifier of each person; none for a person with none, or with two."""
    migrations.upgrade(empty_db, "e4b7d9a1c3f6")
    national = "2.16.156.10011.1.3"
    with empty_db.begin() as conn:
        for pid in (1, 2, 3):
            conn.execute(sa.text(
                "INSERT INTO pix_person (id, status, demographics, created_at, updated_at) "
                "VALUES (:id, 'active', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"id": pid})
        idents = [(1, national, "110105199003071234"), (1, "1.2.3", "MR1"), (2, "1.2.3", "MR2"),
                  (3, national, "110105199003075678"), (3, national, "110105199003079012")]
        for pid, domain, value in idents:
            conn.execute(sa.text(
                "INSERT INTO pix_identifier (person_id, domain_oid, value, domain_namespace, "
                "domain_type, id_type, status, created_at) VALUES (:p, :d, :v, '', '', '', "
                "'active', CURRENT_TIMESTAMP)"), {"p": pid, "d": domain, "v": value})
        for pid in (1, 2, 3):
            conn.execute(sa.text("INSERT INTO pix_block (key, person_id) VALUES ('bd:19900307:z', "
                                 ":p)"), {"p": pid})
    migrations.upgrade(empty_db)
    with empty_db.read() as conn:
        numbers = dict(conn.execute(sa.text("SELECT person_id, number FROM pix_block")).all())
    assert numbers == {1: "110105199003071234", 2: None, 3: None}

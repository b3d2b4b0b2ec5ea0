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

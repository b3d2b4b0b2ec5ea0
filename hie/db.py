"""The node's database: one SQLAlchemy 2 ``MetaData`` shared by every actor, an engine factory for
the embedded SQLite default and for PostgreSQL (psycopg 3), and the unit of work.

Every actor package declares its tables in its own ``tables.py`` against :data:`metadata`; the
Alembic migrations in ``hie/migrations`` create them.  A transaction handler receives a
:class:`Database` and does all its writes inside one ``db.begin()`` block, so a submission is
stored completely or not at all (DESIGN.md principle 5).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class NeedsTransaction(Exception):
    """Raised inside a one-statement unit of work (:meth:`Database.begin` with
    ``one_statement``) by a step that needs a transaction block: the caller runs its unit again
    as an ordinary one.  Raised before anything was written."""


def needs_transaction(conn: Connection) -> None:
    """Called by a step that writes (or sets something) before a unit's final statement:
    raises :class:`NeedsTransaction` when ``conn`` runs a one-statement unit."""
    if conn.info.get("one_statement"):
        raise NeedsTransaction()


def custom_plans(conn: Connection) -> None:
    """PostgreSQL: plan the statements of this transaction with their values and the tables'
    sizes of now.  Prepared statements otherwise get a generic plan after five runs, made from
    average selectivities (and from statistics that lag a table growing fast, e.g. a platform
    loading its hospitals' patients) — a scan of a whole table or index for some values."""
    if conn.dialect.name == "postgresql":
        needs_transaction(conn)  # SET LOCAL lasts as long as the transaction block
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")


def member_of(column: sa.ColumnElement, name: str, postgresql: bool) -> sa.ColumnElement:
    """``column IN (:name)`` for a list parameter: on PostgreSQL ``column = ANY(:name)`` with one
    array parameter (the statement is not expanded anew for each list, which costs more Python
    than the query), elsewhere an expanding IN."""
    if postgresql:
        from sqlalchemy.dialects.postgresql import ARRAY
        return column == sa.any_(sa.bindparam(name, type_=ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


def create_engine(url: str, **kw) -> Engine:
    """An engine for ``url``.  ``postgresql://`` URLs are routed to psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  **kw)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # SQLite's own BEGIN is deferred; take the write lock at the start of a unit of work so
        # two concurrent writers queue instead of failing with "database is locked".
        @sa.event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn, _record):  # pragma: no cover - driver hook
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # pragma: no cover - driver hook
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write", True) else "BEGIN")
        return engine
    kw.setdefault("pool_size", 20)
    kw.setdefault("max_overflow", 40)
    # no pre-ping round trip per checkout: a connection broken by a database restart fails one
    # request and is replaced (SQLAlchemy invalidates the pool on disconnect errors)
    kw.setdefault("pool_recycle", 1800)
    return sa.create_engine(url, **kw)


class Database:
    """Engine plus the unit-of-work helpers the handlers use."""

    def __init__(self, url: str, **engine_kw):
        self.url = url
        self.engine = create_engine(url, **engine_kw)
        # SQLite has one writer at a time and its busy handler makes waiting writers sleep in
        # steps of up to 100 ms; queueing this process's writers on a lock hands the database
        # over at once.  (Other processes still meet SQLite's own lock.)
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def begin(self, one_statement: bool = False) -> Iterator[Connection]:
        """A write unit of work: committed when the block ends, rolled back on any exception.

        ``one_statement``: the caller's block reads, then writes everything in its **last
        statement**.  On PostgreSQL the block then runs without a transaction block (autocommit):
        one statement is atomic by itself, and under READ COMMITTED the reads before it see
        what they would see inside a transaction (each statement its own snapshot; none of them
        takes a lock) — two round trips (BEGIN, COMMIT) fewer per unit.  A step that would
        write before the last statement calls :func:`needs_transaction`, which raises
        :class:`NeedsTransaction` for the caller to run its unit again without
        ``one_statement``.  Other databases ignore it."""
        if one_statement and self.dialect == "postgresql":
            with self.engine.connect() as conn:
                conn.info["write"] = True
                conn.info["one_statement"] = True
                try:
                    yield conn.execution_options(isolation_level="AUTOCOMMIT")
                finally:
                    conn.info["one_statement"] = False
            return
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self.engine.connect() as conn:
            conn.info["write"] = True
            conn.info["one_statement"] = False
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def driver_unit(self) -> Iterator[Any]:
        """A write unit of work on the database driver's own connection — a DBAPI cursor —
        for a hot path that runs statements compiled once, without SQLAlchemy's per-statement
        machinery (:mod:`dicom_qr.store`): committed when the block ends, rolled back on any
        exception; on SQLite under the same write lock and ``BEGIN IMMEDIATE`` as
        :meth:`begin`.  The statements see no SQLAlchemy events and take the driver's
        parameter style and value types."""
        sqlite = self.dialect == "sqlite"
        with self._write_lock or contextlib.nullcontext():
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    if sqlite:            # the driver runs in autocommit mode (see above)
                        cursor.execute("BEGIN IMMEDIATE")
                    yield cursor
                    if sqlite:
                        cursor.execute("COMMIT")
                    else:
                        raw.commit()
                except BaseException:
                    raw.rollback()
                    raise
                finally:
                    cursor.close()
            finally:
                raw.close()               # back to the pool

    @contextlib.contextmanager
    def read(self, planned: bool = False) -> Iterator[Connection]:
        """A read-only unit of work (on SQLite it does not take the write lock).  On PostgreSQL
        the statements run in autocommit: under READ COMMITTED a transaction gives separate
        statements no common snapshot anyway, and BEGIN/COMMIT would cost two round trips.
        ``planned``: every statement is planned with its values (see :func:`custom_plans`), for
        queries whose best plan depends on them — a search by a family name shared by 7 % of
        the patients (王, 张) wants another plan than one by a rare name (欧阳); worth the
        BEGIN / SET / COMMIT round trips."""
        with self.engine.connect() as conn:
            conn.info["write"] = False
            conn.info["one_statement"] = False
            if self.dialect == "postgresql" and not planned:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
                return
            with conn.begin():
                custom_plans(conn)
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def all_tables_imported() -> sa.MetaData:
    """Import every actor's ``tables`` module so :data:`metadata` knows all tables."""
    import importlib
    for mod in ("hie.tables", "xds_registry.tables", "xds_repository.tables", "pix_pdq.tables",
                "dicom_qr.tables"):
        importlib.import_module(mod)
    return metadata

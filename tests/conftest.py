"""Shared fixtures.

- ``database``: a fresh :class:`hie.db.Database` with every table, once on SQLite and once on the
  throwaway real PostgreSQL that the session starts (tests using it run twice);
  ``pg_database``: the PostgreSQL one alone, for behaviour only PostgreSQL has.
- ``settings`` / ``node``: a node on that database with its own temporary data folder.
- outbound sockets other than loopback are forbidden for the whole run.
"""
from __future__ import annotations

import itertools
import socket

import pytest
import sqlalchemy as sa

from tests.pg import TempPostgres

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    real = socket.socket.connect

    def guarded(self, address):
        if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if not (host.startswith("127.") or host in ("localhost", "::1")):
                raise OSError(f"tests may not connect to {host}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def postgres():
    pg = TempPostgres().start()
    try:
        from hie.db import all_tables_imported, create_engine
        eng = create_engine(pg.url())
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(sa.text("CREATE DATABASE hie_template"))
        eng.dispose()
        tpl = create_engine(pg.url("hie_template"))
        all_tables_imported().create_all(tpl)
        tpl.dispose()
        yield pg
    finally:
        pg.stop()


def _pg_database(pg) -> str:
    from hie.db import create_engine
    name = f"t{next(_counter)}"
    eng = create_engine(pg.url())
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE hie_template"))
    eng.dispose()
    return pg.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        from hie.db import all_tables_imported, create_engine
        url = f"sqlite:///{tmp_path / 'hie.sqlite3'}"
        eng = create_engine(url)
        all_tables_imported().create_all(eng)
        eng.dispose()
        return url
    return _pg_database(request.getfixturevalue("postgres"))


@pytest.fixture
def database(database_url):
    from hie.db import Database
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture(params=["young", "grown"])
def index_age(request, monkeypatch):
    """The patient index young (feeds plan each statement with its values, one transaction
    each) or grown: the size from which feeds keep PostgreSQL's cached plans and an ordinary
    feed is one statement outside a transaction block (hie.db.Database.begin)."""
    from pix_pdq import linking
    if request.param == "grown":
        monkeypatch.setattr(linking, "YOUNG", 0)
    return request.param


@pytest.fixture
def pg_database(postgres):
    """A fresh database on the throwaway PostgreSQL only, for what only PostgreSQL has."""
    from hie.db import Database
    db = Database(_pg_database(postgres))
    yield db
    db.dispose()


@pytest.fixture
def settings(tmp_path, database_url):
    from hie.settings import load_settings
    from tests.xdsdata import AFFINITY_DOMAIN
    return load_settings(env={}, data_dir=tmp_path / "data", database_url=database_url,
                         http_port=0, mllp_port=0, dicom_port=0, affinity_domain=AFFINITY_DOMAIN)


@pytest.fixture
def node(settings):
    from hie.node import Node
    n = Node(settings, create_schema=False)
    yield n
    n.close()


@pytest.fixture
def live(node):
    """The node running, every listener on a free loopback port (:func:`tests.live.live_node`)."""
    from tests.live import live_node
    with live_node(node.settings, node) as ln:
        yield ln

"""Schema migrations (Alembic).  ``upgrade(db)`` brings a database to the newest revision; it runs
on every start and from ``hie db upgrade``.  New revisions: ``hie db revision -m "..."`` (Alembic
autogenerate against :data:`hie.db.metadata`), then review the generated file."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(db) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    cfg.attributes["engine"] = db.engine
    return cfg


def upgrade(db, revision: str = "head") -> None:
    command.upgrade(alembic_config(db), revision)


def downgrade(db, revision: str) -> None:
    command.downgrade(alembic_config(db), revision)


def current(db) -> str | None:
    from alembic.runtime.migration import MigrationContext
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def revision(db, message: str) -> None:
    command.revision(alembic_config(db), message=message, autogenerate=True)

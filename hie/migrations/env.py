"""Alembic environment: runs migrations on the engine the node passes in ``config.attributes``."""
from __future__ import annotations

from alembic import context

from hie.db import all_tables_imported

config = context.config
target_metadata = all_tables_imported()


def run() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from hie.db import create_engine
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        conn.info["write"] = True
        context.configure(connection=conn, target_metadata=target_metadata,
                          render_as_batch=conn.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()


run()

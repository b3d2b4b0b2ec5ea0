"""registration numbers from a sequence; lz4 for the stored metadata

On PostgreSQL: the ``xds_object_seq_seq`` sequence, started after the highest registration number
already stored, so that concurrent registrations no longer serialize on ``max(seq) + 1``
(xds_registry.store, "Concurrency"); and lz4 instead of pglz for new values of ``xds_object.xml``
where the server has it (PostgreSQL 14+ built with lz4): stored queries decompress every object
they return, and lz4 does that several times faster.  Nothing changes on SQLite.

Revision ID: 7b1e4c2a9d30
Revises: 60023b5fdbc6
Create Date: 2026-12-02 05:00:00
"""
from alembic import op

revision = '7b1e4c2a9d30'
down_revision = '60023b5fdbc6'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE IF NOT EXISTS xds_object_seq_seq START WITH 1")
    op.execute("SELECT setval('xds_object_seq_seq', "
               "COALESCE((SELECT max(seq) FROM xds_object), 0) + 1, false)")
    has_lz4 = bind.exec_driver_sql(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
        "WHERE name = 'default_toast_compression'").scalar()
    if has_lz4:
        op.execute("ALTER TABLE xds_object ALTER COLUMN xml SET COMPRESSION lz4")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE xds_object ALTER COLUMN xml SET COMPRESSION default")
    op.execute("DROP SEQUENCE IF EXISTS xds_object_seq_seq")

"""Patient index look-ups: a covering index of pix_identifier by person (its resident ID number
read without visiting the table), the status index only for the rare merged identifiers, and
pix_block without a foreign key (derived data, rebuilt by ``hie mpi reindex``; persons are
never deleted)

Revision ID: e4b7d9a1c3f6
Revises: d8a4f2c6b1e7
Create Date: 2026-12-02 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'e4b7d9a1c3f6'
down_revision = 'd8a4f2c6b1e7'
branch_labels = None
depends_on = None

_MERGED = sa.text("status = 'merged'")


def upgrade() -> None:
    op.drop_index('ix_pix_identifier_person_id', table_name='pix_identifier')
    op.create_index('ix_pix_identifier_person_id_domain_oid_status_value', 'pix_identifier',
                    ['person_id', 'domain_oid', 'status', 'value'])
    op.drop_index('ix_pix_identifier_status', table_name='pix_identifier')
    op.create_index('ix_pix_identifier_merged', 'pix_identifier', ['status'],
                    postgresql_where=_MERGED, sqlite_where=_MERGED)
    with op.batch_alter_table('pix_block') as batch:
        batch.drop_constraint('fk_pix_block_person_id_pix_person', type_='foreignkey')


def downgrade() -> None:
    with op.batch_alter_table('pix_block') as batch:
        batch.create_foreign_key('fk_pix_block_person_id_pix_person', 'pix_person',
                                 ['person_id'], ['id'], ondelete='CASCADE')
    op.drop_index('ix_pix_identifier_merged', table_name='pix_identifier')
    op.create_index('ix_pix_identifier_status', 'pix_identifier', ['status'])
    op.drop_index('ix_pix_identifier_person_id_domain_oid_status_value',
                  table_name='pix_identifier')
    op.create_index('ix_pix_identifier_person_id', 'pix_identifier', ['person_id'])

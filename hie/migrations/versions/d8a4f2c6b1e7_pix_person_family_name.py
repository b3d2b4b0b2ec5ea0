"""PDQ by family name: index on pix_person (family_name varchar_pattern_ops, id)

Revision ID: d8a4f2c6b1e7
Revises: c5e1a7d3b902
Create Date: 2026-12-02 07:30:00
"""
from alembic import op

revision = 'd8a4f2c6b1e7'
down_revision = 'c5e1a7d3b902'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_pix_person_family_name', 'pix_person', ['family_name', 'id'],
                    unique=False, postgresql_ops={'family_name': 'varchar_pattern_ops'})


def downgrade() -> None:
    op.drop_index('ix_pix_person_family_name', table_name='pix_person')

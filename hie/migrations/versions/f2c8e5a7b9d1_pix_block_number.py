"""Blocking keys carry the person's resident ID number (pix_block.number: its one active
identifier of the national domain 2.16.156.10011.1.3, NULL for none or several), so matching
drops candidates with another number from the block rows alone; on PostgreSQL the number is
carried in the primary key's index too (INCLUDE), so the candidates are read from the index
alone

Revision ID: f2c8e5a7b9d1
Revises: e4b7d9a1c3f6
Create Date: 2026-12-02 10:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'f2c8e5a7b9d1'
down_revision = 'e4b7d9a1c3f6'
branch_labels = None
depends_on = None

_NUMBERS = ("SELECT person_id, min(value) AS value FROM pix_identifier "
            "WHERE domain_oid = '2.16.156.10011.1.3' AND status = 'active' "
            "GROUP BY person_id HAVING count(*) = 1")


def upgrade() -> None:
    op.add_column('pix_block', sa.Column('number', sa.String(length=18), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"UPDATE pix_block b SET number = n.value FROM ({_NUMBERS}) AS n "
                   "WHERE n.person_id = b.person_id")
        op.execute("ALTER TABLE pix_block DROP CONSTRAINT pk_pix_block, ADD CONSTRAINT "
                   "pk_pix_block PRIMARY KEY (key, person_id) INCLUDE (number)")
    else:
        op.execute(f"UPDATE pix_block SET number = (SELECT n.value FROM ({_NUMBERS}) AS n "
                   "WHERE n.person_id = pix_block.person_id)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE pix_block DROP CONSTRAINT pk_pix_block, ADD CONSTRAINT "
                   "pk_pix_block PRIMARY KEY (key, person_id)")
    with op.batch_alter_table('pix_block') as batch:
        batch.drop_column('number')

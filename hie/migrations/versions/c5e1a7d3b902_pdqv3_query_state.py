"""PDQV3 continuation state: pix_pdq_query (ITI TF-2b 3.47.4.3)

Revision ID: c5e1a7d3b902
Revises: 9c4d2e7f1a05
Create Date: 2026-12-02 12:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = 'c5e1a7d3b902'
down_revision = '9c4d2e7f1a05'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('pix_pdq_query',
    sa.Column('id', BIGINT, autoincrement=True, nullable=False),
    sa.Column('sender', sa.String(length=256), nullable=False),
    sa.Column('query_id', sa.String(length=256), nullable=False),
    sa.Column('params', JSON, nullable=False),
    sa.Column('query', sa.LargeBinary(), nullable=True),
    sa.Column('after', BIGINT, nullable=False),
    sa.Column('sent', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pix_pdq_query')),
    sa.UniqueConstraint('sender', 'query_id', name='uq_pix_pdq_query_sender_query_id')
    )
    with op.batch_alter_table('pix_pdq_query', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pix_pdq_query_updated_at'), ['updated_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pix_pdq_query', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pix_pdq_query_updated_at'))
    op.drop_table('pix_pdq_query')

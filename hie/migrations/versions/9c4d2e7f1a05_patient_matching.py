"""patient matching: identity domains, blocking keys, decisions, review queue; identifier status index

Revision ID: 9c4d2e7f1a05
Revises: 7b1e4c2a9d30
Create Date: 2026-12-02 05:20:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '9c4d2e7f1a05'
down_revision = '7b1e4c2a9d30'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('pix_domain',
    sa.Column('oid', sa.String(length=128), nullable=False),
    sa.Column('namespace', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=256), nullable=False),
    sa.Column('auto', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('oid', name=op.f('pk_pix_domain'))
    )
    with op.batch_alter_table('pix_identifier', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pix_identifier_status'), ['status'], unique=False)

    op.create_table('pix_block',
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('person_id', BIGINT, nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['pix_person.id'], name=op.f('fk_pix_block_person_id_pix_person'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key', 'person_id', name=op.f('pk_pix_block'))
    )
    with op.batch_alter_table('pix_block', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pix_block_person_id'), ['person_id'], unique=False)

    op.create_table('pix_match',
    sa.Column('id', BIGINT, autoincrement=True, nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=256), nullable=False),
    sa.Column('identifiers', sa.Text(), nullable=False),
    sa.Column('person_id', BIGINT, nullable=True),
    sa.Column('candidate_id', BIGINT, nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('evidence', JSON, nullable=False),
    sa.ForeignKeyConstraint(['candidate_id'], ['pix_person.id'], name=op.f('fk_pix_match_candidate_id_pix_person'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['pix_person.id'], name=op.f('fk_pix_match_person_id_pix_person'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pix_match'))
    )
    with op.batch_alter_table('pix_match', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pix_match_candidate_id'), ['candidate_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pix_match_person_id'), ['person_id'], unique=False)

    op.create_table('pix_review',
    sa.Column('id', BIGINT, autoincrement=True, nullable=False),
    sa.Column('person_id', BIGINT, nullable=False),
    sa.Column('candidate_id', BIGINT, nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('evidence', JSON, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=256), nullable=True),
    sa.ForeignKeyConstraint(['candidate_id'], ['pix_person.id'], name=op.f('fk_pix_review_candidate_id_pix_person'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['pix_person.id'], name=op.f('fk_pix_review_person_id_pix_person'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pix_review'))
    )
    with op.batch_alter_table('pix_review', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pix_review_candidate_id'), ['candidate_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pix_review_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pix_review_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pix_identifier', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pix_identifier_status'))
    op.drop_table('pix_review')
    op.drop_table('pix_match')
    op.drop_table('pix_block')
    op.drop_table('pix_domain')

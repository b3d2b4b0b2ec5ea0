"""XDS-I.b manifests (dicom_manifest: the KOS registered for each study, its DocumentEntry's
entryUUID for the next replacement, what it covered and how the last attempt went)

Revision ID: c6a2e8f4d0b7
Revises: b3f9d1e7a4c2
Create Date: 2026-12-02 17:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'c6a2e8f4d0b7'
down_revision = 'b3f9d1e7a4c2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dicom_manifest',
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('kos_uid', sa.String(length=64), server_default='', nullable=False),
    sa.Column('entry_uuid', sa.String(length=64), server_default='', nullable=False),
    sa.Column('instances', sa.Integer(), server_default='0', nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.Text(), server_default='', nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('study_uid', name=op.f('pk_dicom_manifest'))
    )


def downgrade() -> None:
    op.drop_table('dicom_manifest')

"""stored query indexes for ITI-51 (classCode, healthcareFacilityTypeCode)

FindDocumentsForMultiplePatients (ITI TF-2b 3.51.4.1.2) without a patient id is driven by
XDSDocumentEntry.classCode or healthcareFacilityTypeCode; these indexes keep its cost to the size
of the answer (xds_registry/query_sql.py).

Revision ID: 53db8b8574da
Revises: 0ed4065e9b93
Create Date: 2026-11-22 02:11:06.438932
"""
from alembic import op
import sqlalchemy as sa


revision = '53db8b8574da'
down_revision = '0ed4065e9b93'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('xds_document_entry', schema=None) as batch_op:
        batch_op.create_index('ix_xds_document_entry_class', ['class_code', 'class_scheme', 'status'], unique=False)
        batch_op.create_index('ix_xds_document_entry_hcft', ['hcft_code', 'hcft_scheme', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('xds_document_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_xds_document_entry_hcft')
        batch_op.drop_index('ix_xds_document_entry_class')

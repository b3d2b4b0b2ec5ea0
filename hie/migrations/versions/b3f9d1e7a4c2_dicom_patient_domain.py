"""A DICOM patient's identity domain (dicom_patient.domain: the domain the patient index files its
PatientID under, dicom_qr.patients) replaces the person_id column: imaging is tied to the
enterprise identity through pix_identifier, which follows links and merges

Revision ID: b3f9d1e7a4c2
Revises: a7d3c9e1f5b2
Create Date: 2026-12-02 17:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'b3f9d1e7a4c2'
down_revision = 'a7d3c9e1f5b2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dicom_patient', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dicom_patient_person_id'))
        batch_op.drop_column('person_id')
        batch_op.add_column(sa.Column('domain', sa.String(length=128), server_default='',
                                      nullable=False))
        batch_op.create_index('ix_dicom_patient_domain_patient_id', ['domain', 'patient_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dicom_patient', schema=None) as batch_op:
        batch_op.drop_index('ix_dicom_patient_domain_patient_id')
        batch_op.drop_column('domain')
        batch_op.add_column(sa.Column('person_id', sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f('ix_dicom_patient_person_id'), ['person_id'],
                              unique=False)

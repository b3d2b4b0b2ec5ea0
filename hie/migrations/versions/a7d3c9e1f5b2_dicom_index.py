"""The imaging index (dicom_qr.tables): patients, studies, series and instances that C-FIND and
QIDO-RS match on, and where each instance's bytes are

Revision ID: a7d3c9e1f5b2
Revises: f2c8e5a7b9d1
Create Date: 2026-12-02 14:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'a7d3c9e1f5b2'
down_revision = 'f2c8e5a7b9d1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dicom_patient',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('issuer', sa.String(length=64), server_default='', nullable=False),
    sa.Column('patient_name', sa.String(length=324), server_default='', nullable=False),
    sa.Column('name_norm', sa.String(length=324), server_default='', nullable=False),
    sa.Column('name_alpha', sa.String(length=324), server_default='', nullable=False),
    sa.Column('birth_date', sa.String(length=8), server_default='', nullable=False),
    sa.Column('sex', sa.String(length=16), server_default='', nullable=False),
    sa.Column('person_id', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dicom_patient')),
    sa.UniqueConstraint('patient_id', 'issuer', name=op.f('uq_dicom_patient_patient_id_issuer'))
    )
    op.create_index(op.f('ix_dicom_patient_name_alpha'), 'dicom_patient', ['name_alpha'], unique=False)
    op.create_index(op.f('ix_dicom_patient_name_norm'), 'dicom_patient', ['name_norm'], unique=False)
    op.create_index(op.f('ix_dicom_patient_person_id'), 'dicom_patient', ['person_id'], unique=False)
    op.create_table('dicom_study',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('patient_pk', sa.BigInteger(), nullable=False),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('study_date', sa.String(length=8), server_default='', nullable=False),
    sa.Column('study_time', sa.String(length=16), server_default='', nullable=False),
    sa.Column('accession', sa.String(length=64), server_default='', nullable=False),
    sa.Column('study_id', sa.String(length=16), server_default='', nullable=False),
    sa.Column('description', sa.String(length=324), server_default='', nullable=False),
    sa.Column('referring', sa.String(length=324), server_default='', nullable=False),
    sa.Column('charset', sa.String(length=128), server_default='', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_pk'], ['dicom_patient.id'], name=op.f('fk_dicom_study_patient_pk_dicom_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dicom_study')),
    sa.UniqueConstraint('study_uid', name=op.f('uq_dicom_study_study_uid'))
    )
    op.create_index(op.f('ix_dicom_study_accession'), 'dicom_study', ['accession'], unique=False)
    op.create_index(op.f('ix_dicom_study_patient_pk'), 'dicom_study', ['patient_pk'], unique=False)
    op.create_index(op.f('ix_dicom_study_study_date'), 'dicom_study', ['study_date'], unique=False)
    op.create_table('dicom_series',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('study_pk', sa.BigInteger(), nullable=False),
    sa.Column('series_uid', sa.String(length=64), nullable=False),
    sa.Column('modality', sa.String(length=16), server_default='', nullable=False),
    sa.Column('series_number', sa.String(length=12), server_default='', nullable=False),
    sa.Column('description', sa.String(length=324), server_default='', nullable=False),
    sa.Column('body_part', sa.String(length=64), server_default='', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['study_pk'], ['dicom_study.id'], name=op.f('fk_dicom_series_study_pk_dicom_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dicom_series')),
    sa.UniqueConstraint('series_uid', name=op.f('uq_dicom_series_series_uid'))
    )
    op.create_index(op.f('ix_dicom_series_study_pk'), 'dicom_series', ['study_pk'], unique=False)
    op.create_table('dicom_instance',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('series_pk', sa.BigInteger(), nullable=False),
    sa.Column('sop_uid', sa.String(length=64), nullable=False),
    sa.Column('sop_class', sa.String(length=64), nullable=False),
    sa.Column('instance_number', sa.String(length=12), server_default='', nullable=False),
    sa.Column('transfer_syntax', sa.String(length=64), nullable=False),
    sa.Column('blob_key', sa.String(length=256), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('source_ae', sa.String(length=16), server_default='', nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['series_pk'], ['dicom_series.id'], name=op.f('fk_dicom_instance_series_pk_dicom_series')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dicom_instance')),
    sa.UniqueConstraint('sop_uid', name=op.f('uq_dicom_instance_sop_uid'))
    )
    op.create_index(op.f('ix_dicom_instance_series_pk'), 'dicom_instance', ['series_pk'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_dicom_instance_series_pk'), table_name='dicom_instance')
    op.drop_table('dicom_instance')
    op.drop_index(op.f('ix_dicom_series_study_pk'), table_name='dicom_series')
    op.drop_table('dicom_series')
    op.drop_index(op.f('ix_dicom_study_study_date'), table_name='dicom_study')
    op.drop_index(op.f('ix_dicom_study_patient_pk'), table_name='dicom_study')
    op.drop_index(op.f('ix_dicom_study_accession'), table_name='dicom_study')
    op.drop_table('dicom_study')
    op.drop_index(op.f('ix_dicom_patient_person_id'), table_name='dicom_patient')
    op.drop_index(op.f('ix_dicom_patient_name_norm'), table_name='dicom_patient')
    op.drop_index(op.f('ix_dicom_patient_name_alpha'), table_name='dicom_patient')
    op.drop_table('dicom_patient')

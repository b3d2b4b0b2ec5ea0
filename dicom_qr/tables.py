"""The imaging index: what C-FIND (DICOM PS3.4 C.6 Patient Root / Study Root Query/Retrieve
Information Models) and QIDO-RS match on, one table per level of the information model, and
where each instance's bytes are (the node's :class:`hie.blobs.BlobStore`, exactly as received).

- ``dicom_patient``: one row per (PatientID, IssuerOfPatientID) — the patient of one
  hospital's PACS; ``domain`` is the identity domain the patient index files that PatientID
  under (:mod:`dicom_qr.patients`; empty when the instance names none), so that
  (``domain``, ``patient_id``) is the patient's identifier in the index and imaging is found
  under the enterprise identity (through ``pix_identifier``, which follows links and merges).
- ``dicom_study`` / ``dicom_series`` / ``dicom_instance``: one row per Study / Series / SOP
  Instance UID, with the attributes of PS3.4 Table C.6-1..C.6-6 that are matched or returned.

Person names are kept as received (decoded: the three component groups, ``=``-separated) and
in a comparable form (``name_norm``: the ideographic group, else the alphabetic, folded by
:func:`pix_pdq.names.normalize`-like rules in :mod:`dicom_qr.attrs`) so that ``张*`` matches
张 and never 章.  Dates are ``YYYYMMDD``, times ``HHMMSS.FFFFFF`` as sent.
"""
from __future__ import annotations

import sqlalchemy as sa

from hie.db import metadata

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

dicom_patient = sa.Table(
    "dicom_patient", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("issuer", sa.String(64), nullable=False, server_default=""),
    sa.Column("patient_name", sa.String(324), nullable=False, server_default=""),
    sa.Column("name_norm", sa.String(324), nullable=False, server_default="", index=True),
    sa.Column("name_alpha", sa.String(324), nullable=False, server_default="", index=True),
    sa.Column("birth_date", sa.String(8), nullable=False, server_default=""),
    sa.Column("sex", sa.String(16), nullable=False, server_default=""),
    sa.Column("domain", sa.String(128), nullable=False, server_default=""),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("patient_id", "issuer"),
    sa.Index("ix_dicom_patient_domain_patient_id", "domain", "patient_id"),
)

dicom_study = sa.Table(
    "dicom_study", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("patient_pk", sa.BigInteger, sa.ForeignKey("dicom_patient.id"), nullable=False,
              index=True),
    sa.Column("study_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("study_date", sa.String(8), nullable=False, server_default="", index=True),
    sa.Column("study_time", sa.String(16), nullable=False, server_default=""),
    sa.Column("accession", sa.String(64), nullable=False, server_default="", index=True),
    sa.Column("study_id", sa.String(16), nullable=False, server_default=""),
    sa.Column("description", sa.String(324), nullable=False, server_default=""),
    sa.Column("referring", sa.String(324), nullable=False, server_default=""),
    sa.Column("charset", sa.String(128), nullable=False, server_default=""),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

dicom_series = sa.Table(
    "dicom_series", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("study_pk", sa.BigInteger, sa.ForeignKey("dicom_study.id"), nullable=False,
              index=True),
    sa.Column("series_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("modality", sa.String(16), nullable=False, server_default=""),
    sa.Column("series_number", sa.String(12), nullable=False, server_default=""),
    sa.Column("description", sa.String(324), nullable=False, server_default=""),
    sa.Column("body_part", sa.String(64), nullable=False, server_default=""),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

dicom_instance = sa.Table(
    "dicom_instance", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("series_pk", sa.BigInteger, sa.ForeignKey("dicom_series.id"), nullable=False,
              index=True),
    sa.Column("sop_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("sop_class", sa.String(64), nullable=False),
    sa.Column("instance_number", sa.String(12), nullable=False, server_default=""),
    sa.Column("transfer_syntax", sa.String(64), nullable=False),
    sa.Column("blob_key", sa.String(256), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("source_ae", sa.String(16), nullable=False, server_default=""),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# XDS-I.b (dicom_qr.xdsi): the KOS manifest registered for each study, to replace it when the
# study changes; ``status`` published | waiting (no affinity-domain ID yet) | failed
dicom_manifest = sa.Table(
    "dicom_manifest", metadata,
    sa.Column("study_uid", sa.String(64), primary_key=True),
    sa.Column("kos_uid", sa.String(64), nullable=False, server_default=""),
    sa.Column("entry_uuid", sa.String(64), nullable=False, server_default=""),
    sa.Column("instances", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
)

__all__ = ["dicom_patient", "dicom_study", "dicom_series", "dicom_instance", "dicom_manifest"]

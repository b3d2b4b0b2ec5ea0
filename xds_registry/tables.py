"""Registry tables: typed, indexed columns for every attribute a stored query filters on, and the
object's ebRIM 3.0 XML as registered, so responses are faithful (DESIGN.md principle 7).

ITI TF-3 4.2 (metadata attributes) and ITI TF-2a 3.18.4.1.2.3.7 (stored query parameters) decide
which attributes get columns.  Conventions:

- ``id`` is the entryUUID (``urn:uuid:...``), ``lid`` the logicalId (ITI-57 versions share it).
- ``status`` holds the short name: ``Approved``, ``Deprecated`` or ``Submitted``.
- times (DTM, ITI TF-3 Table 4.2.3.1.7-2) are stored as submitted: 4 to 14 digits, UTC.
- patient IDs are the CX string ``id^^^&oid&ISO`` exactly as in XDSDocumentEntry.patientId.
- coded values (CE) are split into ``code`` and ``scheme`` (the codingScheme slot).
- ``xml`` is the serialized ebRIM element (ExtrinsicObject / RegistryPackage / Association) with
  its final ids; ``status`` and ``version`` are written into it when returned.
"""
from __future__ import annotations

import sqlalchemy as sa

from hie.db import metadata

UUID_LEN = 64
CX_LEN = 256
CODE_LEN = 256

# every registry object (one row per version); the common part of the four object kinds
registry_object = sa.Table(
    "xds_object", metadata,
    sa.Column("id", sa.String(UUID_LEN), primary_key=True),
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False,
              unique=True),  # registration order, for stable result order
    sa.Column("kind", sa.String(16), nullable=False),  # DocumentEntry|SubmissionSet|Folder|Association
    sa.Column("lid", sa.String(UUID_LEN), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("home", sa.String(CX_LEN)),  # homeCommunityId the object came from, if any
    sa.Column("xml", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# registration numbers on PostgreSQL (xds_object.seq), so that concurrent registrations need not
# serialize on max(seq) + 1 (see xds_registry.store, "Concurrency"); SQLite ignores sequences
OBJECT_SEQ = sa.Sequence("xds_object_seq_seq", metadata=metadata, start=1)

document_entry = sa.Table(
    "xds_document_entry", metadata,
    sa.Column("id", sa.String(UUID_LEN), sa.ForeignKey("xds_object.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("lid", sa.String(UUID_LEN), nullable=False, index=True),
    sa.Column("unique_id", sa.String(CODE_LEN), nullable=False, index=True),
    sa.Column("patient_id", sa.String(CX_LEN), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("entry_type", sa.String(16), nullable=False),  # stable | on-demand
    sa.Column("class_code", sa.String(CODE_LEN)), sa.Column("class_scheme", sa.String(CODE_LEN)),
    sa.Column("type_code", sa.String(CODE_LEN)), sa.Column("type_scheme", sa.String(CODE_LEN)),
    sa.Column("practice_code", sa.String(CODE_LEN)),
    sa.Column("practice_scheme", sa.String(CODE_LEN)),
    sa.Column("hcft_code", sa.String(CODE_LEN)), sa.Column("hcft_scheme", sa.String(CODE_LEN)),
    sa.Column("format_code", sa.String(CODE_LEN)), sa.Column("format_scheme", sa.String(CODE_LEN)),
    sa.Column("creation_time", sa.String(14)),
    sa.Column("service_start_time", sa.String(14)),
    sa.Column("service_stop_time", sa.String(14)),
    sa.Column("mime_type", sa.String(128)),
    sa.Column("hash", sa.String(40)),
    sa.Column("size", sa.BigInteger),
    sa.Column("repository_unique_id", sa.String(CODE_LEN)),
    sa.Column("availability", sa.String(16)),  # same as status, kept for clarity of queries
    sa.Index("ix_xds_document_entry_patient_status", "patient_id", "status", "entry_type"),
    sa.Index("ix_xds_document_entry_patient_class", "patient_id", "class_code"),
    # Multi-Patient Stored Query (ITI-51) without a patient: classCode or
    # healthcareFacilityTypeCode drive the search (eventCodeList through xds_object_code)
    sa.Index("ix_xds_document_entry_class", "class_code", "class_scheme", "status"),
    sa.Index("ix_xds_document_entry_hcft", "hcft_code", "hcft_scheme", "status"),
)

# multi-valued codes: eventCodeList, confidentialityCode (DocumentEntry), codeList (Folder)
object_code = sa.Table(
    "xds_object_code", metadata,
    sa.Column("object_id", sa.String(UUID_LEN), sa.ForeignKey("xds_object.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # event | conf | folder
    sa.Column("code", sa.String(CODE_LEN), nullable=False),
    sa.Column("scheme", sa.String(CODE_LEN), nullable=False),
    sa.Index("ix_xds_object_code_lookup", "kind", "code", "scheme", "object_id"),
    sa.Index("ix_xds_object_code_object", "object_id"),
)

# authorPerson values (DocumentEntry, SubmissionSet), for the author wildcard parameters
object_author = sa.Table(
    "xds_object_author", metadata,
    sa.Column("object_id", sa.String(UUID_LEN), sa.ForeignKey("xds_object.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("person", sa.String(CODE_LEN), nullable=False),
    sa.Index("ix_xds_object_author_person", "person"),
    sa.Index("ix_xds_object_author_object", "object_id"),
)

# referenceIdList values (CXi), for FindDocumentsByReferenceId
object_reference_id = sa.Table(
    "xds_object_reference_id", metadata,
    sa.Column("object_id", sa.String(UUID_LEN), sa.ForeignKey("xds_object.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("reference_id", sa.String(CODE_LEN), nullable=False),
    sa.Index("ix_xds_object_reference_id_value", "reference_id"),
    sa.Index("ix_xds_object_reference_id_object", "object_id"),
)

submission_set = sa.Table(
    "xds_submission_set", metadata,
    sa.Column("id", sa.String(UUID_LEN), sa.ForeignKey("xds_object.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("unique_id", sa.String(CODE_LEN), nullable=False, unique=True),
    sa.Column("patient_id", sa.String(CX_LEN), nullable=False),
    sa.Column("source_id", sa.String(CODE_LEN), nullable=False),
    sa.Column("submission_time", sa.String(14)),
    sa.Column("content_type_code", sa.String(CODE_LEN)),
    sa.Column("content_type_scheme", sa.String(CODE_LEN)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Index("ix_xds_submission_set_patient", "patient_id", "status"),
)

folder = sa.Table(
    "xds_folder", metadata,
    sa.Column("id", sa.String(UUID_LEN), sa.ForeignKey("xds_object.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("lid", sa.String(UUID_LEN), nullable=False, index=True),
    sa.Column("unique_id", sa.String(CODE_LEN), nullable=False, index=True),
    sa.Column("patient_id", sa.String(CX_LEN), nullable=False),
    sa.Column("last_update_time", sa.String(14)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Index("ix_xds_folder_patient", "patient_id", "status"),
)

association = sa.Table(
    "xds_association", metadata,
    sa.Column("id", sa.String(UUID_LEN), sa.ForeignKey("xds_object.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),  # HasMember, RPLC, APND, XFRM, XFRM_RPLC, signs, IsSnapshotOf, UpdateAvailabilityStatus, SubmitAssociation
    sa.Column("source_id", sa.String(UUID_LEN), nullable=False, index=True),
    sa.Column("target_id", sa.String(UUID_LEN), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("ss_status", sa.String(16)),  # SubmissionSetStatus slot: Original | Reference
)

"""Document Repository table: which blob holds which document (ITI TF-2b 3.41.4.1.3 — the
repository stores each document of a Provide and Register request; 3.43.4.1.3 — it returns the
document named by repositoryUniqueId + documentUniqueId, ITI TF-3 4.2.3.2.18 and 4.2.3.2.26).

One row per (repository_unique_id, document_unique_id); ``blob_key`` is the key the node's
:class:`hie.blobs.BlobStore` returned (several rows may share a blob: identical content).
``sha1`` and ``size`` are the XDSDocumentEntry ``hash`` (lower-case hex) and ``size``.
"""
from __future__ import annotations

import sqlalchemy as sa

from hie.db import metadata

repo_document = sa.Table(
    "repo_document", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("repository_unique_id", sa.String(128), nullable=False),
    sa.Column("document_unique_id", sa.String(256), nullable=False),  # as xds_document_entry
    sa.Column("blob_key", sa.String(256), nullable=False, index=True),
    sa.Column("sha1", sa.String(40), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mime_type", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("repository_unique_id", "document_unique_id"),
)

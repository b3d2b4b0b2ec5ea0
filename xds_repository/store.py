"""The Document Repository's store: document bytes in the node's blob store, and one
``repo_document`` row per (repositoryUniqueId, documentUniqueId) naming the blob (ITI TF-2b
3.41.4.1.3 "Expected Actions" — store the documents; 3.43.4.1.3 — retrieve them by
repositoryUniqueId + documentUniqueId; hash and size as ITI TF-3 4.2.3.2.10 / 4.2.3.2.19).

Writing is two-phase so a failed Provide and Register leaves nothing behind (DESIGN.md
principle 5): :func:`put_blob` streams each document into the blob store first (outside any
database transaction — a 1 GB upload must not hold the write lock), then :func:`insert_rows`
writes the rows inside the caller's unit of work; when the transaction fails,
:func:`discard_blobs` removes the blobs this request created that no row references.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hie.blobs import BlobInfo, BlobStore
from hie.db import Database
from hie.soap import Attachment
from xds_repository.tables import repo_document

log = logging.getLogger("xds_repository.store")

_IN_BATCH = 500  # bound on IN (...) lists

# the statements of every Provide and Register, built once (their compiled form is reused)
_FIND = sa.select(repo_document).where(
    repo_document.c.repository_unique_id == sa.bindparam("repo"),
    repo_document.c.document_unique_id.in_(sa.bindparam("uids", expanding=True)))
_INSERT = repo_document.insert()


@dataclass(frozen=True)
class StoredDocument:
    repository_unique_id: str
    document_unique_id: str
    blob_key: str
    sha1: str
    size: int
    mime_type: str
    created_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row) -> "StoredDocument":
        return cls(row.repository_unique_id, row.document_unique_id, row.blob_key, row.sha1,
                   row.size, row.mime_type, row.created_at)


def put_blob(blobs: BlobStore, attachment: Attachment) -> BlobInfo:
    """Store one :class:`hie.soap.Attachment` in ``blobs``: bytes already in memory as they are; a
    part the transport spooled to disk adopted by the store without a copy when it can
    (:meth:`hie.blobs.FileBlobStore.adopt`; the spooled file keeps its own name, so it is still
    "our own copy of the bytes" for :func:`discard_blobs` / :func:`restore_missing`); anything
    else streamed (never read whole into memory)."""
    if attachment.data is not None:
        return blobs.put(attachment.data)
    adopt = getattr(blobs, "adopt", None)
    if attachment.spooled and attachment.path is not None and adopt is not None:
        return adopt(attachment.path)
    with attachment.open() as fh:
        return blobs.put(fh)


def find(conn: Connection, repository_unique_id: str,
         document_unique_ids: Iterable[str]) -> dict[str, StoredDocument]:
    """The stored documents among ``document_unique_ids`` of one repository, by uniqueId."""
    wanted = list(dict.fromkeys(document_unique_ids))
    found: dict[str, StoredDocument] = {}
    for i in range(0, len(wanted), _IN_BATCH):
        rows = conn.execute(_FIND, {"repo": repository_unique_id,
                                    "uids": wanted[i:i + _IN_BATCH]})
        for row in rows:
            found[row.document_unique_id] = StoredDocument.from_row(row)
    return found


def insert_rows(conn: Connection, docs: Sequence[StoredDocument], now: dt.datetime) -> None:
    if docs:
        conn.execute(_INSERT, [
            {"repository_unique_id": d.repository_unique_id,
             "document_unique_id": d.document_unique_id, "blob_key": d.blob_key,
             "sha1": d.sha1, "size": d.size, "mime_type": d.mime_type, "created_at": now}
            for d in docs])


def delete_rows(conn: Connection, repository_unique_id: str,
                document_unique_ids: Iterable[str]) -> None:
    ids = list(document_unique_ids)
    t = repo_document
    for i in range(0, len(ids), _IN_BATCH):
        conn.execute(t.delete().where(t.c.repository_unique_id == repository_unique_id,
                                      t.c.document_unique_id.in_(ids[i:i + _IN_BATCH])))


def referenced_keys(conn: Connection, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` some ``repo_document`` row still names."""
    wanted = list(dict.fromkeys(keys))
    out: set[str] = set()
    for i in range(0, len(wanted), _IN_BATCH):
        rows = conn.execute(sa.select(repo_document.c.blob_key).distinct()
                            .where(repo_document.c.blob_key.in_(wanted[i:i + _IN_BATCH])))
        out.update(r.blob_key for r in rows)
    return out


def discard_blobs(db: Database, blobs: BlobStore,
                  stored: Iterable[tuple[BlobInfo, Attachment]]) -> None:
    """After a failed submission: delete the blobs this request created that no row references.

    Blobs that existed before the request (identical content stored earlier) are never touched.
    Content addressing lets a concurrent successful submission of the same bytes share a blob we
    created; so after deleting, the references are read again and any blob a row now names is
    written back from our own copy of the bytes (together with :func:`restore_missing` on the
    other side this leaves no window in which a committed row loses its blob).  A failure here is
    logged, never raised: the submission's own error is what the client needs.
    """
    created = {info.key: att for info, att in stored if info.created}
    if not created:
        return
    try:
        with db.read() as conn:
            keep = referenced_keys(conn, created)
        deleted = [key for key in created if key not in keep and blobs.delete(key)]
        if deleted:
            with db.read() as conn:
                now_used = referenced_keys(conn, deleted)
            for key in now_used:
                log.warning("blob %s became referenced while being discarded; writing it back",
                            key)
                put_blob(blobs, created[key])
    except Exception:  # pragma: no cover - storage trouble while cleaning up
        log.exception("could not discard the blobs of a failed submission: %s", list(created))


def restore_missing(blobs: BlobStore, stored: Iterable[tuple[BlobInfo, Attachment]]) -> None:
    """After a successful submission (rows committed): put back any blob that a concurrent failing
    submission of identical content deleted between our write and our commit."""
    for info, attachment in stored:
        if not blobs.exists(info.key):
            log.warning("blob %s vanished before commit; writing it again", info.key)
            put_blob(blobs, attachment)

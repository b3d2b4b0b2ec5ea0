"""Blob storage for the node's documents: the bytes behind ``XDSDocumentEntry`` (ITI TF-2b 3.41
Provide and Register Document Set-b stores them, 3.43 Retrieve Document Set returns them).

While a blob is written its SHA-1 (``XDSDocumentEntry.hash``, ITI TF-3 4.2.3.2.10: lower-case hex of
the SHA-1 over the document's octets), SHA-256 and size (``XDSDocumentEntry.size``, ITI TF-3
4.2.3.2.19) are computed in one pass over 1 MiB chunks, so memory stays constant whatever the size
of the document (a 1 GB scan costs the same few MiB as a 1 KB note).

The interface is :class:`BlobStore`; :class:`FileBlobStore` is the embedded default (a folder
under ``HIE_DATA_DIR``):

- content-addressed by SHA-256: ``<root>/ab/cd/abcd...`` (two fan-out levels of 256 folders keep
  every folder small for hundreds of millions of blobs);
- atomic: bytes are written to a temporary file under ``<root>/.tmp`` (same file system), the file
  is fsync'ed, renamed to its final name, and the folder fsync'ed, so a reader never sees a partial
  blob and a crash leaves at most an orphan temporary file (swept after a day);
- idempotent: putting identical content again returns the same key and writes nothing new
  (:attr:`BlobInfo.created` tells the caller whether this call created the blob, which is what a
  failed transaction needs to know to clean up after itself).

Keys are opaque to callers: persist the key a store returned and never derive paths from it.

How other stores fit (DESIGN.md principle 8) — implement the same five methods:

- **S3-compatible object store**: ``put`` streams the chunks into a multipart upload under a
  temporary object name while hashing, then copies to ``<sha256>`` (skipped when a HEAD shows it
  exists) and aborts/deletes the temporary upload; ``open`` returns the streaming GET body;
  ``path`` returns ``None`` (transports then stream from ``open`` instead of sending a file).
- **read-through proxy to a hospital's own archive**: a store wrapping a local cache store and a
  fetcher for the archive's file-index path (requirement 000: records retrieved from the hospital's
  archive service).  Its keys carry the archive locator (e.g. ``archive:<locator>``); ``open``
  serves the cached copy or fetches, verifies the registered SHA-1/size, caches and streams;
  ``put`` writes to the cache (or forwards to the archive when it accepts uploads).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Protocol, runtime_checkable

CHUNK = 1024 * 1024
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
STALE_TEMP_SECONDS = 24 * 3600


class BlobNotFound(LookupError):
    """No blob is stored under this key."""


@dataclass(frozen=True)
class BlobInfo:
    """What :meth:`BlobStore.put` learned while writing: the key to persist, the hashes (lower-case
    hex) and the size in octets.  ``created`` is False when identical content was already stored."""

    key: str
    sha1: str
    sha256: str
    size: int
    created: bool = field(default=True, compare=False)


@runtime_checkable
class BlobStore(Protocol):
    """Where document bytes live.  Implementations are safe to share between threads."""

    def put(self, stream: BinaryIO | Iterable[bytes]) -> BlobInfo:
        """Store the bytes read from ``stream`` (a binary file object or an iterable of chunks)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A binary file object positioned at the start of the blob; :class:`BlobNotFound`."""
        ...

    def path(self, key: str) -> Path | None:
        """The blob's local file for zero-copy sending, or None when the store has no local
        files; :class:`BlobNotFound` when there is no such blob."""
        ...

    def exists(self, key: str) -> bool:
        ...

    def delete(self, key: str) -> bool:
        """Remove the blob; True if it existed.  Deleting a missing blob is not an error."""
        ...


def iter_chunks(stream: BinaryIO | Iterable[bytes] | bytes, size: int = CHUNK) -> Iterator[bytes]:
    """The chunks of ``stream``: read ``size`` octets at a time from a file object, or pass an
    iterable of chunks through (``bytes`` itself is one chunk)."""
    if isinstance(stream, (bytes, bytearray, memoryview)):
        if len(stream):
            yield bytes(stream)
        return
    read = getattr(stream, "read", None)
    if read is not None:
        while True:
            chunk = read(size)
            if not chunk:
                return
            yield chunk
    else:
        for chunk in stream:
            if chunk:
                yield bytes(chunk) if not isinstance(chunk, bytes) else chunk


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse fsync on folders
        pass
    finally:
        os.close(fd)


class FileBlobStore:
    """Content-addressed blobs in a local folder (see the module docstring)."""

    def __init__(self, root: Path | str, fsync: bool = True):
        self.root = Path(root)
        self.fsync = fsync
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self.sweep_temp()

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    # -- keys -------------------------------------------------------------------------------

    def _file(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise BlobNotFound(f"not a blob key of this store: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    # -- writing ----------------------------------------------------------------------------

    def put(self, stream: BinaryIO | Iterable[bytes] | bytes) -> BlobInfo:
        sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter_chunks(stream):
                    sha1.update(chunk)
                    sha256.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            key = sha256.hexdigest()
            final = self._file(key)
            created = True
            try:
                existing = final.stat().st_size
            except FileNotFoundError:
                existing = None
            if existing == size:
                created = False  # identical content is already there: keep the old file
                tmp.unlink()
            else:
                new_dirs = not final.parent.exists()
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                if self.fsync:
                    _fsync_dir(final.parent)
                    if new_dirs:
                        _fsync_dir(final.parent.parent)
                        _fsync_dir(self.root)
            return BlobInfo(key, sha1.hexdigest(), key, size, created)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> bool:
        try:
            self._file(key).unlink()
            return True
        except (FileNotFoundError, BlobNotFound):
            return False

    def sweep_temp(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Remove temporary files left by writers that died; returns how many were removed."""
        limit, removed = time.time() - older_than, 0
        for entry in os.scandir(self._tmp):
            try:
                if entry.is_file() and entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    # -- reading ----------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._file(key), "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def path(self, key: str) -> Path | None:
        file = self._file(key)
        if not file.is_file():
            raise BlobNotFound(key)
        return file

    def exists(self, key: str) -> bool:
        try:
            return self._file(key).is_file()
        except BlobNotFound:
            return False

    def size(self, key: str) -> int:
        try:
            return self._file(key).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(key) from None


__all__ = ["BlobStore", "BlobInfo", "BlobNotFound", "FileBlobStore", "iter_chunks", "CHUNK"]

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
- atomic: bytes are written to a temporary file under ``<root>/.tmp`` (same file system) — or,
  for bytes already in memory, beside the final name (``<key>.<pid>-<thread>.part``: the rename
  stays in one folder) — the file is fsync'ed, renamed to its final name, and the folder
  fsync'ed, so a reader never sees a partial blob and a crash leaves at most an orphan
  temporary file (those of ``.tmp`` swept after a day).  A fan-out folder's
  own entry is fsync'ed in its parent the first time this process uses the folder (created now or
  found), after which a put costs two fsyncs: the file and its folder;
- no copy for spooled uploads: :meth:`FileBlobStore.adopt` takes a private temporary file (an MTOM
  part the transport spooled to disk under the same data folder), hashes it in one read pass,
  fsyncs it and hard-links it under its key — same guarantees as :meth:`~FileBlobStore.put`
  without writing the bytes a second time (it copies when the files are on different file
  systems);
- idempotent: putting identical content again returns the same key and writes nothing new
  (:attr:`BlobInfo.created` tells the caller whether this call created the blob, which is what a
  failed transaction needs to know to clean up after itself).

Keys are opaque to callers: persist the key a store returned and never derive paths from it.

How other stores fit (DESIGN.md principle 8) — implement the same five methods (``adopt`` is an
optional extra that callers look for with ``getattr``):

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

import errno
import hashlib
import os
import re
import tempfile
import threading
import time
import uuid
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

    def put(self, stream: BinaryIO | Iterable[bytes] | bytes) -> BlobInfo:
        """Store the bytes read from ``stream`` (a binary file object, an iterable of chunks, or
        the bytes themselves: :func:`iter_chunks` takes all three)."""
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


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# a failed os.link that means "this file system (or this pair of them) cannot hard-link": copy
_NO_LINK = frozenset(e for e in (getattr(errno, n, None) for n in (
    "EXDEV", "EPERM", "EACCES", "EMLINK", "ENOTSUP", "EOPNOTSUPP", "ENOSYS")) if e is not None)


class FileBlobStore:
    """Content-addressed blobs in a local folder (see the module docstring)."""

    def __init__(self, root: Path | str, fsync: bool = True):
        self.root = Path(root)
        self._root = str(self.root)
        self.fsync = fsync
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        # fan-out folders known to exist with a durable entry in their parent (index: the
        # folder's hex name(s) as a number), so a put costs no mkdir/stat and no folder fsync
        # beyond the blob's own folder once its folder is known
        self._known1 = bytearray(256)
        self._known2 = bytearray(65536)
        self.sweep_temp()

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    @property
    def temp_folder(self) -> Path:
        """Where a writer may spool a file it will :meth:`adopt` (same file system, so the
        adoption is a link; what a dead writer leaves there is swept at start-up)."""
        return self._tmp

    # -- keys -------------------------------------------------------------------------------

    def _file(self, key: str) -> Path:
        return Path(self._name(key))

    def _name(self, key: str) -> str:
        """The blob's file name (a str: a hot path builds no Path)."""
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise BlobNotFound(f"not a blob key of this store: {key!r}")
        return f"{self._root}/{key[:2]}/{key[2:4]}/{key}"

    # -- writing ----------------------------------------------------------------------------

    def put(self, stream: BinaryIO | Iterable[bytes] | bytes) -> BlobInfo:
        if isinstance(stream, (bytes, bytearray)):
            return self._put_buffer(stream)
        sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter_chunks(stream):
                    sha1.update(chunk)
                    sha256.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                key = sha256.hexdigest()
                final = self._file(key)
                pending = self._fan_out(key)
                exists = self._has(final, size)
                if self.fsync and not exists:
                    os.fsync(out.fileno())
            if exists:
                os.unlink(tmp_name)  # identical content is already there: keep the old file
                return self._existing(key, sha1.hexdigest(), size, pending)
            self._install(tmp_name, final, key, pending)
            return BlobInfo(key, sha1.hexdigest(), key, size, True)
        except BaseException:
            _unlink_quietly(tmp_name)
            raise

    def _put_buffer(self, data: bytes | bytearray) -> BlobInfo:
        """:meth:`put` of bytes already in memory: hashed first, so identical content already
        stored costs no write at all."""
        sha1, key = hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()
        size = len(data)
        final = self._name(key)
        pending = self._fan_out(key)
        if self._has(final, size):
            return self._existing(key, sha1, size, pending)
        # the temporary file beside its final name: the rename stays in one folder (a
        # rename across folders, and mkstemp's name search, cost more than the write itself)
        tmp_name = f"{final}.{os.getpid()}-{threading.get_ident()}.part"
        try:
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:   # a fan-out folder vanished (removed by hand): make it again
            pending = self._refan(key)
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                _write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self._install(tmp_name, final, key, pending)
        except BaseException:
            _unlink_quietly(tmp_name)
            raise
        return BlobInfo(key, sha1, key, size, True)

    def adopt(self, path: Path | str) -> BlobInfo:
        """Store the bytes of the file at ``path`` without copying them: the file is read once
        (SHA-1, SHA-256, size), fsync'ed and hard-linked under its key.  ``path`` itself stays
        where it is and still belongs to the caller, who deletes it as usual; the blob keeps the
        bytes.  Meant for private temporary files that nobody writes to any more (an MTOM part
        spooled by :class:`hie.mtom.MtomParser`): never adopt a file someone may change in
        place.  Where hard links are impossible (``path`` on another file system) the bytes are
        copied as :meth:`put` does."""
        sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), 0
        with open(path, "rb", buffering=0) as fh:
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                sha1.update(chunk)
                sha256.update(chunk)
                size += len(chunk)
            key = sha256.hexdigest()
            final = self._file(key)
            pending = self._fan_out(key)
            if self._has(final, size):
                return self._existing(key, sha1.hexdigest(), size, pending)
            if self.fsync:
                os.fsync(fh.fileno())
        tmp_name = os.path.join(self._tmp, f"adopt-{uuid.uuid4().hex}")
        try:
            os.link(path, tmp_name)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            with open(path, "rb") as fh:
                return self.put(fh)
        try:
            self._install(tmp_name, final, key, pending)
        except BaseException:
            _unlink_quietly(tmp_name)
            raise
        return BlobInfo(key, sha1.hexdigest(), key, size, True)

    # -- the steps every write shares ---------------------------------------------------------

    def _fan_out(self, key: str) -> list[tuple[int, int, str]]:
        """Make sure the blob's two fan-out folders exist.  Returns those whose entry in their
        parent is not yet known to be durable (created now, or first seen by this process):
        :meth:`_install` fsyncs their parents once, then they are known."""
        i1, i2 = int(key[:2], 16), int(key[:4], 16)
        if self._known2[i2]:
            return []
        pending = []
        l1 = f"{self._root}/{key[:2]}"
        for level, index, folder in ((1, i1, l1), (2, i2, f"{l1}/{key[2:4]}")):
            if level == 1 and self._known1[i1]:
                continue
            try:
                os.mkdir(folder)
            except FileExistsError:
                pass
            pending.append((level, index, folder))
        return pending

    def _refan(self, key: str) -> list[tuple[int, int, str]]:
        self._known1[int(key[:2], 16)] = 0
        self._known2[int(key[:4], 16)] = 0
        return self._fan_out(key)

    def _has(self, final: Path | str, size: int) -> bool:
        try:
            return os.stat(final).st_size == size
        except FileNotFoundError:
            return False

    def _existing(self, key: str, sha1: str, size: int,
                  pending: list[tuple[int, int, str]]) -> BlobInfo:
        # the file may have just been renamed into place by a concurrent writer that has not yet
        # fsync'ed the folder: do it here too before the caller commits a row naming the blob
        if self.fsync:
            _fsync_dir(self.root / key[:2] / key[2:4])
        self._sync_fan_out(pending)
        return BlobInfo(key, sha1, key, size, False)

    def _install(self, tmp_name: str, final: Path | str, key: str,
                 pending: list[tuple[int, int, str]]) -> None:
        """Rename the fsync'ed temporary file to its final name; make the names durable."""
        try:
            os.replace(tmp_name, final)
        except FileNotFoundError:  # a fan-out folder vanished (removed by hand): make it again
            pending = self._refan(key)
            os.replace(tmp_name, final)
        if self.fsync:
            _fsync_dir(os.path.dirname(final))
        self._sync_fan_out(pending)

    def _sync_fan_out(self, pending: list[tuple[int, int, str]]) -> None:
        if self.fsync:
            for parent in dict.fromkeys(os.path.dirname(folder) for _, _, folder in pending):
                _fsync_dir(parent)
        for level, index, _ in pending:
            (self._known1 if level == 1 else self._known2)[index] = 1

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


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


__all__ = ["BlobStore", "BlobInfo", "BlobNotFound", "FileBlobStore", "iter_chunks", "CHUNK"]

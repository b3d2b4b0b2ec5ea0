"""hie.blobs: the content-addressed file store behind the Document Repository (ITI TF-2b 3.41 /
3.43; hash and size as ITI TF-3 4.2.3.2.10 / 4.2.3.2.19)."""
from __future__ import annotations

import hashlib
import io
import os
import time
import tracemalloc

import pytest

from hie.blobs import CHUNK, BlobInfo, BlobNotFound, BlobStore, FileBlobStore

PDF_LIKE = (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Title(" + "出院小结".encode("utf-8")
            + b")>>endobj\n%%EOF\n")
TEXT = "患者张三，男，45岁。出院小结：诊断为社区获得性肺炎，经抗感染治疗后好转出院。".encode("utf-8")


@pytest.fixture
def store(tmp_path):
    return FileBlobStore(tmp_path / "blobs")


def test_is_a_blob_store(store):
    assert isinstance(store, BlobStore)


@pytest.mark.parametrize("content", [PDF_LIKE, TEXT, b"", os.urandom(3 * CHUNK + 17)])
def test_put_computes_hashes_and_size(store, content):
    info = store.put(io.BytesIO(content))
    assert info == BlobInfo(hashlib.sha256(content).hexdigest(), hashlib.sha1(content).hexdigest(),
                            hashlib.sha256(content).hexdigest(), len(content))
    assert info.sha1 == info.sha1.lower() and len(info.sha1) == 40
    assert info.created
    with store.open(info.key) as fh:
        assert fh.read() == content
    assert store.exists(info.key)
    path = store.path(info.key)
    assert path.read_bytes() == content
    # fan-out ab/cd/<hash>
    assert path.relative_to(store.root).parts == (info.key[:2], info.key[2:4], info.key)


def test_put_accepts_iterables_and_bytes(store):
    chunks = [TEXT[:10], b"", TEXT[10:], bytearray(b"!")]
    a = store.put(iter(chunks))
    b = store.put(TEXT + b"!")
    assert a.key == b.key and a.size == len(TEXT) + 1
    assert not b.created


def test_identical_content_is_idempotent(store):
    first = store.put(io.BytesIO(PDF_LIKE))
    path = store.path(first.key)
    before = path.stat()
    time.sleep(0.01)
    second = store.put(io.BytesIO(PDF_LIKE))
    assert second == first
    assert first.created and not second.created
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert files == [path]


def test_failure_while_writing_leaves_nothing(store):
    def broken():
        yield TEXT
        raise OSError("peer reset the connection")

    with pytest.raises(OSError):
        store.put(broken())
    assert [p for p in store.root.rglob("*") if p.is_file()] == []
    assert not store.exists(hashlib.sha256(TEXT).hexdigest())


def test_blob_is_invisible_until_complete(store):
    key = hashlib.sha256(TEXT * 3).hexdigest()
    seen = []

    def chunks():
        for _ in range(3):
            seen.append(store.exists(key))
            yield TEXT

    info = store.put(chunks())
    assert info.key == key and seen == [False, False, False]
    assert store.exists(key)
    assert list((store.root / ".tmp").iterdir()) == []


def test_truncated_existing_blob_is_repaired(store):
    info = store.put(TEXT)
    store.path(info.key).write_bytes(TEXT[:5])  # damaged on disk
    again = store.put(TEXT)
    assert again.created
    assert store.path(info.key).read_bytes() == TEXT


def test_missing_and_foreign_keys(store):
    missing = "0" * 64
    assert not store.exists(missing)
    with pytest.raises(BlobNotFound):
        store.open(missing)
    with pytest.raises(BlobNotFound):
        store.path(missing)
    for bad in ("../../etc/passwd", "ABC", "a" * 63, "g" * 64, "s3:" + "a" * 64):
        assert not store.exists(bad)
        with pytest.raises(BlobNotFound):
            store.open(bad)
        assert store.delete(bad) is False


def test_delete(store):
    info = store.put(TEXT)
    assert store.delete(info.key) is True
    assert not store.exists(info.key)
    assert store.delete(info.key) is False
    assert store.put(TEXT).created


def test_stale_temp_files_are_swept(tmp_path):
    store = FileBlobStore(tmp_path / "b")
    old = store.root / ".tmp" / "put-dead"
    old.write_bytes(b"partial")
    fresh = store.root / ".tmp" / "put-live"
    fresh.write_bytes(b"writing")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    FileBlobStore(tmp_path / "b")  # a restarted node
    assert not old.exists() and fresh.exists()


def _generated(total: int, chunk: int = CHUNK):
    """``total`` octets in ``chunk`` pieces, never all in memory; varies so hashing is real."""
    block = bytes(range(256)) * (chunk // 256)
    sent, n = 0, 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        piece = n.to_bytes(8, "big") + piece[8:] if len(piece) >= 8 else piece
        yield piece
        sent += len(piece)
        n += 1


def test_large_blob_streams_in_constant_memory(store):
    total = 50 * 1024 * 1024 + 123
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    for piece in _generated(total):
        sha1.update(piece)
        sha256.update(piece)

    tracemalloc.start()
    try:
        info = store.put(_generated(total))
        _, peak_put = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        check = hashlib.sha1()
        with store.open(info.key) as fh:
            while chunk := fh.read(CHUNK):
                check.update(chunk)
        _, peak_read = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == total
    assert info.sha1 == sha1.hexdigest() and info.key == sha256.hexdigest()
    assert check.hexdigest() == info.sha1
    assert peak_put < 8 * CHUNK, peak_put
    assert peak_read < 4 * CHUNK, peak_read


def test_large_file_object_input(store, tmp_path):
    src = tmp_path / "scan.pdf"
    with open(src, "wb") as out:
        for piece in _generated(12 * CHUNK + 5):
            out.write(piece)
    tracemalloc.start()
    try:
        with open(src, "rb") as fh:
            info = store.put(fh)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == src.stat().st_size
    assert peak < 6 * CHUNK
    assert store.path(info.key).read_bytes() == src.read_bytes()


# -- durability: what is fsync'ed, and in which order -------------------------------------------

def _record_syncs(monkeypatch):
    """Record fsync'ed paths and renames/links, in order (Linux: /proc/self/fd names an fd)."""
    events = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("replace", str(dst)))
        return real_replace(src, dst, **kw)

    def link(src, dst, **kw):
        events.append(("link", str(dst)))
        return real_link(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    return events


@pytest.mark.parametrize("how", ["bytes", "stream", "adopt"])
def test_blob_and_its_names_are_durable_before_put_returns(store, tmp_path, monkeypatch, how):
    """The file is fsync'ed before it gets its name; then its folder, and the parent of every
    fan-out folder this store had not seen yet; a second blob in a known folder costs two."""
    events = _record_syncs(monkeypatch)
    src = tmp_path / "spooled.part"

    def store_it(content):
        if how == "bytes":
            return store.put(content)
        if how == "stream":
            return store.put(io.BytesIO(content))
        src.write_bytes(content)
        return store.adopt(src)

    info = store_it(TEXT)
    final = store.path(info.key)
    renamed = [i for i, e in enumerate(events) if e == ("replace", str(final))]
    file_synced = [i for i, (kind, _) in enumerate(events) if kind == "fsync"][0]
    assert renamed and file_synced < renamed[0]
    after = {path for kind, path in events[renamed[0]:] if kind == "fsync"}
    assert after == {str(final.parent), str(final.parent.parent), str(store.root)}

    # a second blob in the same fan-out folder: the file, then the folder
    other = next(c for c in (TEXT + i.to_bytes(4, "big") for i in range(1 << 24))
                 if hashlib.sha256(c).hexdigest()[:4] == info.key[:4])
    events.clear()
    second = store_it(other)
    assert [kind for kind, _ in events if kind == "fsync"] == ["fsync", "fsync"]
    assert events[-1] == ("fsync", str(store.path(second.key).parent))


def test_identical_bytes_are_not_written_again(store, monkeypatch):
    first = store.put(PDF_LIKE)
    events = _record_syncs(monkeypatch)
    again = store.put(PDF_LIKE)
    assert again == first and not again.created
    # only the folder is synced (a concurrent writer may just have renamed the file into it)
    assert events == [("fsync", str(store.path(first.key).parent))]
    assert os.listdir(store.root / ".tmp") == []


def test_a_removed_fan_out_folder_is_made_again(store):
    info = store.put(TEXT)
    store.delete(info.key)
    os.rmdir(store.root / info.key[:2] / info.key[2:4])
    os.rmdir(store.root / info.key[:2])
    again = store.put(TEXT)
    assert again.created and store.path(again.key).read_bytes() == TEXT


# -- adopting a spooled file -----------------------------------------------------------------

def test_adopt_links_the_file_with_the_right_digests(store, tmp_path):
    src = tmp_path / "spool" / "mtom-1.part"
    src.parent.mkdir()
    content = os.urandom(2 * CHUNK + 5)
    src.write_bytes(content)
    info = store.adopt(src)
    assert info == BlobInfo(hashlib.sha256(content).hexdigest(), hashlib.sha1(content).hexdigest(),
                            hashlib.sha256(content).hexdigest(), len(content))
    assert info.created
    final = store.path(info.key)
    assert final.stat().st_ino == src.stat().st_ino        # no copy: the same file
    assert src.read_bytes() == content                      # still the caller's
    src.unlink()                                            # the transport's cleanup
    assert final.read_bytes() == content
    assert os.listdir(store.root / ".tmp") == []


def test_adopt_identical_content_keeps_the_existing_blob(store, tmp_path):
    first = store.put(PDF_LIKE)
    before = store.path(first.key).stat()
    src = tmp_path / "again.part"
    src.write_bytes(PDF_LIKE)
    again = store.adopt(src)
    assert again == first and not again.created
    after = store.path(first.key).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert src.read_bytes() == PDF_LIKE


def test_adopt_repairs_a_damaged_blob(store, tmp_path):
    info = store.put(TEXT)
    final = store.path(info.key)
    final.unlink()
    final.write_bytes(TEXT[:5])   # damaged on disk (a new file: the adopted one must not change)
    src = tmp_path / "good.part"
    src.write_bytes(TEXT)
    again = store.adopt(src)
    assert again.created and store.path(info.key).read_bytes() == TEXT


def test_adopt_copies_across_file_systems(store, tmp_path, monkeypatch):
    import errno

    def no_link(src, dst, **kw):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    src = tmp_path / "other-fs.part"
    src.write_bytes(TEXT)
    info = store.adopt(src)
    assert info.created and info.sha1 == hashlib.sha1(TEXT).hexdigest()
    assert store.path(info.key).stat().st_ino != src.stat().st_ino
    src.unlink()
    assert store.path(info.key).read_bytes() == TEXT
    assert os.listdir(store.root / ".tmp") == []


def test_adopt_failure_leaves_nothing(store, tmp_path, monkeypatch):
    src = tmp_path / "x.part"
    src.write_bytes(TEXT)

    def broken(src, dst, **kw):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        store.adopt(src)
    assert not store.exists(hashlib.sha256(TEXT).hexdigest())
    assert os.listdir(store.root / ".tmp") == []
    assert src.read_bytes() == TEXT

"""ITI-43 Retrieve Document Set on the Document Repository (ITI TF-2b 3.43): handler called
directly with SoapRequest objects, on SQLite and PostgreSQL (``node`` fixture)."""
from __future__ import annotations

import copy
import hashlib
import tracemalloc

import pytest
from lxml import etree

from hie.context import MINOR_FAILURE, SERIOUS_FAILURE, SUCCESS, Context
from hie.errors import STATUS_FAILURE, STATUS_PARTIAL, STATUS_SUCCESS
from hie.mtom import inline_xop, mtom_stream
from hie.soap import SoapRequest, build_envelope
from hie.transactions import ITI_43
from xds_repository import iti43, store
from xds_repository.store import StoredDocument
from xds_repository.tables import repo_document

XDSB = "urn:ihe:iti:xds-b:2007"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
XOP = "http://www.w3.org/2004/08/xop/include"
NS = {"xdsb": XDSB, "rs": RS, "xop": XOP}

PDF = (b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\n"
       + "出院小结 张三".encode("utf-8") + bytes(range(256)) + b"\n%%EOF\n")
TEXT = "姓名：张三\n诊断：社区获得性肺炎\n出院医嘱：按时服药，两周后复诊。\n".encode("utf-8")

try:
    from tests.schemas import assert_valid
except ImportError:  # pragma: no cover
    assert_valid = None


def seed(node, uid: str, content: bytes, mime: str) -> StoredDocument:
    info = node.blobs.put(content)
    doc = StoredDocument(node.settings.repository_unique_id, uid, info.key, info.sha1, info.size,
                         mime)
    with node.db.begin() as conn:
        store.insert_rows(conn, [doc], Context.now())
    return doc


def request(*docs: tuple[str, str] | tuple[str, str, str]) -> SoapRequest:
    root = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB})
    for d in docs:
        dr = etree.SubElement(root, f"{{{XDSB}}}DocumentRequest")
        if len(d) == 3:
            etree.SubElement(dr, f"{{{XDSB}}}HomeCommunityId").text = d[2]
        etree.SubElement(dr, f"{{{XDSB}}}RepositoryUniqueId").text = d[0]
        etree.SubElement(dr, f"{{{XDSB}}}DocumentUniqueId").text = d[1]
    return SoapRequest(ITI_43.action, root, mtom=True,
                       message_id="urn:uuid:0f6e0c4e-7a47-4d0b-9e4c-1b2c3d4e5f60")


def call(node, req):
    ctx = Context(node, ITI_43)
    return ctx, iti43.handle(ctx, req)


def status(resp) -> str:
    return resp.body.find("rs:RegistryResponse", NS).get("status")


def error_codes(resp) -> list[tuple[str, str]]:
    return [(e.get("errorCode"), e.get("location"))
            for e in resp.body.iterfind("rs:RegistryResponse/rs:RegistryErrorList/rs:RegistryError",
                                        NS)]


def contents(resp) -> dict[str, tuple[str, bytes]]:
    """DocumentUniqueId -> (mimeType, bytes) read through the xop:Include'd attachments."""
    by_cid = {a.content_id: a for a in resp.attachments}
    out = {}
    for dr in resp.body.iterfind("xdsb:DocumentResponse", NS):
        href = dr.find("xdsb:Document/xop:Include", NS).get("href")
        att = by_cid[href[4:]]
        out[dr.findtext("xdsb:DocumentUniqueId", namespaces=NS)] = (
            dr.findtext("xdsb:mimeType", namespaces=NS), att.read())
    return out


def validate(resp) -> None:
    """Validate against XDS.b_DocumentRepository.xsd with the documents inlined (the schema types
    Document as xs:base64Binary; on the wire XOP stands for that content)."""
    if assert_valid is None:  # pragma: no cover
        pytest.skip("tests.schemas not available")
    assert_valid(inline_xop(copy.deepcopy(resp.body), resp.attachments))


def test_single_document(node):
    repo = node.settings.repository_unique_id
    seed(node, "1.2.156.112604.1.1.101.20.1", PDF, "application/pdf")
    ctx, resp = call(node, request((repo, "1.2.156.112604.1.1.101.20.1")))
    assert status(resp) == STATUS_SUCCESS
    assert error_codes(resp) == []
    assert contents(resp) == {"1.2.156.112604.1.1.101.20.1": ("application/pdf", PDF)}
    dr = resp.body.find("xdsb:DocumentResponse", NS)
    assert dr.find("xdsb:HomeCommunityId", NS) is None
    assert dr.findtext("xdsb:RepositoryUniqueId", namespaces=NS) == repo
    assert resp.mtom is True and len(resp.attachments) == 1
    assert resp.attachments[0].size == len(PDF)
    assert resp.attachments[0].content_type == "application/pdf"
    assert ctx.outcome == SUCCESS
    assert ctx.object_ids == ["1.2.156.112604.1.1.101.20.1"]
    validate(resp)


def test_many_documents_and_home_community_echo(node):
    repo = node.settings.repository_unique_id
    hc = "urn:oid:1.2.156.112604.1.4"
    docs = {f"1.2.156.112604.1.1.101.20.{i}": (TEXT + str(i).encode(), "text/plain; charset=UTF-8")
            for i in range(1, 8)}
    docs["1.2.156.112604.1.1.101.20.99"] = (PDF, "application/pdf")
    for uid, (data, mime) in docs.items():
        seed(node, uid, data, mime)
    ctx, resp = call(node, request(*[(repo, uid, hc) for uid in docs]))
    assert status(resp) == STATUS_SUCCESS
    got = contents(resp)
    assert got == {uid: (mime, data) for uid, (data, mime) in docs.items()}
    assert [dr.findtext("xdsb:HomeCommunityId", namespaces=NS)
            for dr in resp.body.iterfind("xdsb:DocumentResponse", NS)] == [hc] * len(docs)
    # document order follows the request
    assert [dr.findtext("xdsb:DocumentUniqueId", namespaces=NS)
            for dr in resp.body.iterfind("xdsb:DocumentResponse", NS)] == list(docs)
    assert "张三".encode() in got["1.2.156.112604.1.1.101.20.3"][1]
    validate(resp)


def test_partial_success(node):
    repo = node.settings.repository_unique_id
    seed(node, "1.2.156.112604.1.1.101.20.1", TEXT, "text/plain")
    ctx, resp = call(node, request((repo, "1.2.156.112604.1.1.101.20.1"),
                                   (repo, "1.2.156.112604.1.1.101.20.404")))
    assert status(resp) == STATUS_PARTIAL
    assert error_codes(resp) == [("XDSDocumentUniqueIdError", "1.2.156.112604.1.1.101.20.404")]
    assert list(contents(resp)) == ["1.2.156.112604.1.1.101.20.1"]
    assert ctx.outcome == MINOR_FAILURE
    validate(resp)


def test_unknown_document_only(node):
    repo = node.settings.repository_unique_id
    ctx, resp = call(node, request((repo, "1.2.3.4.404")))
    assert status(resp) == STATUS_FAILURE
    assert error_codes(resp) == [("XDSDocumentUniqueIdError", "1.2.3.4.404")]
    assert resp.body.find("xdsb:DocumentResponse", NS) is None
    assert resp.attachments == []
    assert ctx.outcome == SERIOUS_FAILURE
    validate(resp)


def test_unknown_repository(node):
    repo = node.settings.repository_unique_id
    seed(node, "1.2.156.112604.1.1.101.20.1", TEXT, "text/plain")
    ctx, resp = call(node, request(("1.2.156.999.9", "1.2.156.112604.1.1.101.20.1")))
    assert status(resp) == STATUS_FAILURE
    assert error_codes(resp) == [("XDSUnknownRepositoryId", "1.2.156.999.9")]
    validate(resp)
    # mixed with a good one: partial
    ctx, resp = call(node, request(("1.2.156.999.9", "1.2.156.112604.1.1.101.20.1"),
                                   (repo, "1.2.156.112604.1.1.101.20.1")))
    assert status(resp) == STATUS_PARTIAL
    assert [c for c, _ in error_codes(resp)] == ["XDSUnknownRepositoryId"]
    assert ctx.outcome == MINOR_FAILURE


def test_document_whose_blob_is_gone(node):
    repo = node.settings.repository_unique_id
    doc = seed(node, "1.2.156.112604.1.1.101.20.7", TEXT, "text/plain")
    node.blobs.delete(doc.blob_key)
    ctx, resp = call(node, request((repo, doc.document_unique_id)))
    assert status(resp) == STATUS_FAILURE
    assert error_codes(resp) == [("XDSRepositoryError", doc.document_unique_id)]


def test_same_content_two_unique_ids_share_a_blob(node):
    repo = node.settings.repository_unique_id
    a = seed(node, "1.2.156.112604.1.1.101.20.11", PDF, "application/pdf")
    b = seed(node, "1.2.156.112604.1.1.101.20.12", PDF, "application/pdf")
    assert a.blob_key == b.blob_key
    ctx, resp = call(node, request((repo, a.document_unique_id), (repo, b.document_unique_id)))
    assert status(resp) == STATUS_SUCCESS
    assert {k: v[1] for k, v in contents(resp).items()} == {a.document_unique_id: PDF,
                                                            b.document_unique_id: PDF}
    assert len({att.content_id for att in resp.attachments}) == 2


def test_not_a_retrieve_request_is_a_sender_fault(node):
    from hie.errors import SoapFault
    body = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest")
    with pytest.raises(SoapFault) as exc:
        iti43.handle(Context(node, ITI_43), SoapRequest(ITI_43.action, body))
    assert exc.value.code == "Sender"


def test_large_document_is_streamed_not_loaded(node, tmp_path):
    """50 MB document: retrieving and serialising the MTOM response keeps Python memory small."""
    total, chunk = 50 * 1024 * 1024, 1024 * 1024
    block = bytes(range(256)) * (chunk // 256)

    def gen():
        for i in range(total // chunk):
            yield i.to_bytes(4, "big") + block[4:]

    info = node.blobs.put(gen())
    uid = "1.2.156.112604.1.1.101.20.50"
    with node.db.begin() as conn:
        store.insert_rows(conn, [StoredDocument(node.settings.repository_unique_id, uid, info.key,
                                                info.sha1, info.size, "application/pdf")],
                          Context.now())
    tracemalloc.start()
    try:
        ctx, resp = call(node, request((node.settings.repository_unique_id, uid)))
        env = build_envelope(ITI_43.response_action, resp.body)
        ctype, chunks = mtom_stream(env, resp.attachments)
        sha1, sent = hashlib.sha1(), 0
        for piece in chunks:
            sent += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.attachments[0].path is not None  # the transport can send the file as is
    assert resp.attachments[0].size == total
    assert sent > total
    assert peak < 8 * chunk, peak
    with resp.attachments[0].open() as fh:
        while data := fh.read(chunk):
            sha1.update(data)
    assert sha1.hexdigest() == info.sha1


def test_rows_are_unique_per_repository_and_document(node):
    import sqlalchemy as sa
    doc = seed(node, "1.2.156.112604.1.1.101.20.1", TEXT, "text/plain")
    with pytest.raises(sa.exc.IntegrityError):
        with node.db.begin() as conn:
            store.insert_rows(conn, [doc], Context.now())
    with node.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(repo_document)).scalar() == 1


class NoFileStore:
    """A store without local files (as an S3 store would be): ITI-43 must stream via open()."""

    def __init__(self, inner):
        self.inner = inner

    def put(self, stream):
        return self.inner.put(stream)

    def open(self, key):
        return self.inner.open(key)

    def path(self, key):
        if not self.inner.exists(key):
            from hie.blobs import BlobNotFound
            raise BlobNotFound(key)
        return None

    def exists(self, key):
        return self.inner.exists(key)

    def delete(self, key):
        return self.inner.delete(key)


def test_store_without_local_files_streams_through_open(node):
    from hie.blobs import BlobStore
    node.blobs = NoFileStore(node.blobs)
    assert isinstance(node.blobs, BlobStore)
    repo = node.settings.repository_unique_id
    seed(node, "1.2.156.112604.1.1.101.20.31", PDF, "application/pdf")
    ctx, resp = call(node, request((repo, "1.2.156.112604.1.1.101.20.31")))
    assert status(resp) == STATUS_SUCCESS
    [att] = resp.attachments
    assert att.path is None and att.opener is not None and att.size == len(PDF)
    assert contents(resp) == {"1.2.156.112604.1.1.101.20.31": ("application/pdf", PDF)}

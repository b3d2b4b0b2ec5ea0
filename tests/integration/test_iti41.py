"""ITI-41 Provide and Register Document Set-b on the Document Repository with the node's own
registry in-process (ITI TF-2b 3.41.4.1.3), on SQLite and PostgreSQL (``node`` fixture): one and
several documents, inline base64 and MTOM (through the real MTOM codec), every repository error
code, and "nothing stays stored" when the registration fails."""
from __future__ import annotations

import copy
import hashlib
import tracemalloc

import pytest
import sqlalchemy as sa
from lxml import etree

from hie.context import SERIOUS_FAILURE, SUCCESS, Context
from hie.errors import STATUS_FAILURE, STATUS_SUCCESS, RegistryErrors, SoapFault
from hie.mtom import MtomParser, mtom_stream, new_content_id, xop_include
from hie.soap import Attachment, SoapRequest, build_envelope, parse_envelope
from hie.transactions import ITI_41, ITI_43
from tests import xdsdata as X
from tests.schemas import assert_valid
from xds_registry import tables as RT
from xds_registry.messages import RegistryResponse
from xds_repository import iti41, iti43
from xds_repository.tables import repo_document

XDSB = "urn:ihe:iti:xds-b:2007"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
NS = {"xdsb": XDSB, "rim": RIM, "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"}

PDF = (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       + "（出院小结 张三）".encode("utf-16-be") + bytes(range(256)) * 20 + b"\n%%EOF\n")
TEXT = ("北京市第一人民医院 出院小结\n姓名：张三  性别：男  年龄：34岁\n"
        "入院诊断：稳定型心绞痛\n出院医嘱：低盐低脂饮食，按时服药，两周后心内科门诊复诊。\n"
        ).encode("utf-8")


# --------------------------------------------------------------------------------------------
# helpers (also used by test_iti41_remote.py)
# --------------------------------------------------------------------------------------------

@pytest.fixture
def known(node):
    """张三 and 李四 are known to the patient index."""
    X.register_patient(node.db, person=X.ZHANG_SAN)
    X.register_patient(node.db, person=X.LI_SI)
    return node


def inline_request(body: etree._Element) -> SoapRequest:
    return SoapRequest(ITI_41.action, body, message_id=X.new_uuid())


def mtom_request(body: etree._Element, tmp_path, spool_threshold: int = 256) -> SoapRequest:
    """Turn the inline documents of ``body`` into MTOM parts, then send the whole message
    through the real MTOM writer and reader (large parts end up spooled to files)."""
    atts = []
    for d in body.iterfind("xdsb:Document", NS):
        data = X.base64.b64decode(d.text or "")
        cid = new_content_id()
        d.text = None
        d.append(xop_include(cid))
        atts.append(Attachment(cid, "application/octet-stream", data=data))
    env = build_envelope(ITI_41.action, body)
    ctype, chunks = mtom_stream(env, atts)
    parser = MtomParser(ctype, tmp_path / "spool", spool_threshold=spool_threshold)
    for chunk in chunks:
        parser.feed(chunk)
    root, parts = parser.close()
    return parse_envelope(root, parts, mtom=True)


def provide(node, req: SoapRequest) -> tuple[Context, RegistryResponse]:
    """Call the handler like the transport does (RegistryErrors become a Failure response)."""
    ctx = Context(node, ITI_41, remote_addr="127.0.0.1")
    try:
        resp = iti41.handle(ctx, req)
    except RegistryErrors as e:
        ctx.fail(SERIOUS_FAILURE, str(e))
        return ctx, RegistryResponse(STATUS_FAILURE, e.errors)
    assert_valid(resp.body)
    return ctx, RegistryResponse.from_ebrim(resp.body)


def repo_rows(node) -> list:
    with node.db.read() as c:
        return c.execute(sa.select(repo_document).order_by(repo_document.c.id)).all()


def blob_files(node) -> list:
    return sorted(p.name for p in node.blobs.root.rglob("*")
                  if p.is_file() and ".tmp" not in p.parts)


def registry_entries(node) -> list:
    with node.db.read() as c:
        return c.execute(sa.select(RT.document_entry)).all()


def assert_nothing_stored(node, before_blobs=()) -> None:
    assert repo_rows(node) == []
    assert blob_files(node) == sorted(before_blobs)
    assert registry_entries(node) == []


def retrieve(node, uids: list[str]) -> dict[str, bytes]:
    root = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB})
    for uid in uids:
        dr = etree.SubElement(root, f"{{{XDSB}}}DocumentRequest")
        etree.SubElement(dr, f"{{{XDSB}}}RepositoryUniqueId").text = \
            node.settings.repository_unique_id
        etree.SubElement(dr, f"{{{XDSB}}}DocumentUniqueId").text = uid
    resp = iti43.handle(Context(node, ITI_43), SoapRequest(ITI_43.action, root))
    by_cid = {a.content_id: a for a in resp.attachments}
    out = {}
    for dr in resp.body.iterfind("xdsb:DocumentResponse", NS):
        href = dr.find("xdsb:Document/{http://www.w3.org/2004/08/xop/include}Include",
                       NS).get("href")
        out[dr.findtext("xdsb:DocumentUniqueId", namespaces=NS)] = by_cid[href[4:]].read()
    return out


def three_documents() -> X.Submission:
    sub = X.Submission()
    sub.document(title="出院小结")                                       # CDA, text/xml
    sub.document(title="出院小结（扫描件）", content=PDF, mime_type="application/pdf")
    sub.document(title="出院医嘱", content=TEXT, mime_type="text/plain; charset=UTF-8")
    return sub


# --------------------------------------------------------------------------------------------
# success
# --------------------------------------------------------------------------------------------

def test_one_document_inline(known):
    node = known
    sub = X.submission(1)
    did = sub.documents[0]
    content, uid = sub.contents[did], sub.unique_ids[did]
    ctx, resp = provide(node, inline_request(sub.provide_and_register()))
    assert resp.status == STATUS_SUCCESS, resp.errors
    assert resp.errors == []

    [row] = repo_rows(node)
    assert (row.repository_unique_id, row.document_unique_id) == (
        node.settings.repository_unique_id, uid)
    assert row.sha1 == hashlib.sha1(content).hexdigest() and row.size == len(content)
    assert row.mime_type == "text/xml"
    assert node.blobs.path(row.blob_key).read_bytes() == content

    [entry] = registry_entries(node)
    assert entry.unique_id == uid
    # the repository's values replaced the Document Source's repositoryUniqueId
    assert entry.repository_unique_id == node.settings.repository_unique_id
    assert (entry.hash, entry.size) == (row.sha1, row.size)

    assert ctx.outcome == SUCCESS
    assert ctx.patient_ids == [X.patient_cx(X.ZHANG_SAN)]
    assert ctx.object_ids == [sub.ss_unique_id, uid]
    assert retrieve(node, [uid]) == {uid: content}


def test_several_documents_mtom(known, tmp_path):
    node = known
    sub = three_documents()
    req = mtom_request(sub.provide_and_register(), tmp_path)
    assert req.mtom and len(req.attachments) == 3
    assert any(a.path is not None for a in req.attachments.values())  # spooled parts too
    ctx, resp = provide(node, req)
    assert resp.status == STATUS_SUCCESS, resp.errors
    rows = {r.document_unique_id: r for r in repo_rows(node)}
    assert set(rows) == set(sub.unique_ids.values())
    uids = [sub.unique_ids[d] for d in sub.documents]
    assert retrieve(node, uids) == {sub.unique_ids[d]: sub.contents[d] for d in sub.documents}
    assert rows[sub.unique_ids[sub.documents[1]]].mime_type == "application/pdf"
    assert rows[sub.unique_ids[sub.documents[2]]].mime_type == "text/plain; charset=UTF-8"
    assert len(registry_entries(node)) == 3
    assert ctx.object_ids == [sub.ss_unique_id, *uids]


def test_spooled_parts_are_adopted_without_a_copy(known, tmp_path):
    """A part the MTOM reader spooled to disk becomes the blob itself (hard link): same bytes,
    the registered hash and size are right, and the blob outlives the spool file."""
    node = known
    sub = X.Submission()
    did = sub.document(content=PDF * 3, mime_type="application/pdf")
    req = mtom_request(sub.provide_and_register(), tmp_path)
    [att] = req.attachments.values()
    assert att.spooled and att.path is not None
    ctx, resp = provide(node, req)
    assert resp.status == STATUS_SUCCESS, resp.errors
    [row] = repo_rows(node)
    assert (row.sha1, row.size) == (hashlib.sha1(PDF * 3).hexdigest(), len(PDF * 3))
    assert node.blobs.path(row.blob_key).stat().st_ino == att.path.stat().st_ino
    att.path.unlink()                                   # the transport's cleanup
    uid = sub.unique_ids[did]
    assert retrieve(node, [uid]) == {uid: PDF * 3}


def test_failed_request_with_spooled_parts_leaves_nothing(known, tmp_path):
    node = known
    sub = X.Submission(patient_id=X.new_patient())      # unknown to the registry
    sub.document(content=PDF * 3, mime_type="application/pdf")
    sub.document(content=TEXT * 20, mime_type="text/plain")
    req = mtom_request(sub.provide_and_register(), tmp_path)
    assert all(a.spooled for a in req.attachments.values())
    ctx, resp = provide(node, req)
    assert "XDSUnknownPatientId" in codes(resp)
    assert_nothing_stored(node)
    for att in req.attachments.values():                # the spool files are still the caller's
        assert att.read() in (PDF * 3, TEXT * 20)


def test_several_documents_inline_with_symbolic_ids_and_folder(known):
    node = known
    sub = X.submission(3, folder=True, symbolic=True)
    ctx, resp = provide(node, inline_request(sub.provide_and_register()))
    assert resp.status == STATUS_SUCCESS, resp.errors
    assert {r.document_unique_id for r in repo_rows(node)} == set(
        sub.unique_ids[d] for d in sub.documents)


def test_hash_size_and_repository_slots_are_added(known):
    """No hash/size/repositoryUniqueId from the source: the repository supplies them, in a
    schema-valid place (Slots first), and the registry stores them."""
    node = known
    sub = X.Submission()
    did = sub.document(hash=None, size=None, repository_unique_id=None, content=TEXT,
                       mime_type="text/plain")
    body = sub.provide_and_register()
    ctx, resp = provide(node, inline_request(body))
    assert resp.status == STATUS_SUCCESS, resp.errors
    eo = body.find(f".//rim:ExtrinsicObject[@id='{did}']", NS)
    slots = {s.get("name"): [v.text for v in s.iterfind(".//rim:Value", NS)]
             for s in eo.iterfind("rim:Slot", NS)}
    assert slots["hash"] == [hashlib.sha1(TEXT).hexdigest()]
    assert slots["size"] == [str(len(TEXT))]
    assert slots["repositoryUniqueId"] == [node.settings.repository_unique_id]
    assert_valid(body.find("lcm:SubmitObjectsRequest", {"lcm": X.LCM}))
    [entry] = registry_entries(node)
    assert (entry.hash, entry.size) == (hashlib.sha1(TEXT).hexdigest(), len(TEXT))


def test_upper_case_hash_from_the_source_is_accepted(known):
    node = known
    sub = X.Submission()
    sub.document(content=PDF, mime_type="application/pdf", hash=X.sha1(PDF).upper())
    ctx, resp = provide(node, inline_request(sub.provide_and_register()))
    assert resp.status == STATUS_SUCCESS, resp.errors
    assert registry_entries(node)[0].hash == X.sha1(PDF)


def test_set_slot_keeps_schema_order():
    eo = X.rim("ExtrinsicObject", None, id="urn:uuid:0b1b2c3d-0000-4000-8000-000000000001",
               mimeType="text/plain", objectType=X.DE_STABLE)
    X.name_el(eo, "出院小结")
    iti41.set_slot(eo, "size", "12")        # no slot yet: goes before rim:Name
    iti41.set_slot(eo, "hash", "a" * 40)    # after the last slot
    iti41.set_slot(eo, "size", "13")
    assert [etree.QName(c).localname for c in eo] == ["Slot", "Slot", "Name"]
    assert [s.get("name") for s in eo.iterfind("rim:Slot", NS)] == ["size", "hash"]
    assert eo.findtext("rim:Slot[@name='size']/rim:ValueList/rim:Value", namespaces=NS) == "13"
    assert_valid(eo)


def test_identical_resubmission_is_accepted_and_stored_once(known):
    node = known
    sub = X.Submission()
    sub.document(content=TEXT, mime_type="text/plain", unique_id="1.2.156.112604.1.1.101.20.7")
    assert provide(node, inline_request(sub.provide_and_register()))[1].status == STATUS_SUCCESS
    again = X.Submission()
    again.document(content=TEXT, mime_type="text/plain", unique_id="1.2.156.112604.1.1.101.20.7")
    ctx, resp = provide(node, inline_request(again.provide_and_register()))
    assert resp.status == STATUS_SUCCESS, resp.errors
    assert len(repo_rows(node)) == 1
    assert len(blob_files(node)) == 1
    assert len(registry_entries(node)) == 2  # two DocumentEntries for one document


def test_large_mtom_document_is_stored_in_constant_memory(known, tmp_path):
    """A 50 MB scan arriving as a spooled MTOM part is streamed into the blob store."""
    node = known
    total, chunk = 50 * 1024 * 1024, 1024 * 1024
    part = tmp_path / "scan.pdf"
    sha1 = hashlib.sha1()
    with open(part, "wb") as out:
        block = bytes(range(256)) * (chunk // 256)
        for i in range(total // chunk):
            piece = i.to_bytes(4, "big") + block[4:]
            sha1.update(piece)
            out.write(piece)
    sub = X.Submission()
    did = sub.document(content=b"placeholder", hash=sha1.hexdigest(), size=total,
                       mime_type="application/pdf")
    del sub.contents[did]
    body = sub.provide_and_register()
    cid = new_content_id()
    etree.SubElement(body, f"{{{XDSB}}}Document", id=did).append(xop_include(cid))
    req = SoapRequest(ITI_41.action, body, attachments={
        cid: Attachment(cid, "application/pdf", path=part)}, mtom=True)
    tracemalloc.start()
    try:
        ctx, resp = provide(node, req)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status == STATUS_SUCCESS, resp.errors
    [row] = repo_rows(node)
    assert (row.sha1, row.size) == (sha1.hexdigest(), total)
    assert peak < 8 * chunk, peak


# --------------------------------------------------------------------------------------------
# repository errors (ITI TF-2b 3.41.4.1.3): nothing stored
# --------------------------------------------------------------------------------------------

def codes(resp: RegistryResponse) -> list[str]:
    return [e.error_code for e in resp.errors]


def test_hash_mismatch(known):
    node = known
    sub = X.Submission()
    sub.document(content=TEXT, mime_type="text/plain", hash=X.sha1(b"other content"))
    ctx, resp = provide(node, inline_request(sub.provide_and_register()))
    assert resp.status == STATUS_FAILURE
    assert codes(resp) == ["XDSRepositoryMetadataError"]
    assert "hash" in resp.errors[0].code_context
    assert ctx.outcome == SERIOUS_FAILURE
    assert_nothing_stored(node)


def test_size_mismatch(known):
    node = known
    sub = X.Submission()
    sub.document(content=PDF, mime_type="application/pdf", size=len(PDF) + 1)
    ctx, resp = provide(node, inline_request(sub.provide_and_register()))
    assert codes(resp) == ["XDSRepositoryMetadataError"]
    assert "size" in resp.errors[0].code_context
    assert_nothing_stored(node)


def test_not_a_number_size(known):
    node = known
    sub = X.Submission()
    did = sub.document(content=TEXT, mime_type="text/plain", size=None)
    body = sub.provide_and_register()
    X.set_slot(body.find(f".//rim:ExtrinsicObject[@id='{did}']", NS), "size", "一百")
    ctx, resp = provide(node, inline_request(body))
    assert codes(resp) == ["XDSRepositoryMetadataError"]
    assert_nothing_stored(node)


def test_missing_document(known):
    """An ExtrinsicObject without its xdsb:Document."""
    node = known
    sub = X.submission(2)
    body = sub.provide_and_register()
    missing = sub.documents[1]
    body.remove(body.find(f"xdsb:Document[@id='{missing}']", NS))
    ctx, resp = provide(node, inline_request(body))
    assert codes(resp) == ["XDSMissingDocument"]
    assert resp.errors[0].location == missing
    assert_nothing_stored(node)


def test_missing_document_metadata(known):
    """An xdsb:Document without its ExtrinsicObject."""
    node = known
    body = X.submission(1).provide_and_register()
    extra = etree.SubElement(body, f"{{{XDSB}}}Document", id="urn:uuid:5b1d2c5e-1111-4222-8333-"
                                                             "944455556666")
    extra.text = X.base64.b64encode(TEXT).decode()
    ctx, resp = provide(node, inline_request(body))
    assert codes(resp) == ["XDSMissingDocumentMetadata"]
    assert_nothing_stored(node)


def test_duplicate_unique_id_in_message(known):
    node = known
    sub = X.Submission()
    sub.document(unique_id="1.2.156.112604.1.1.101.20.5", content=TEXT, mime_type="text/plain")
    sub.document(unique_id="1.2.156.112604.1.1.101.20.5", content=PDF, mime_type="application/pdf")
    ctx, resp = provide(node, inline_request(sub.provide_and_register()))
    assert codes(resp) == ["XDSRepositoryDuplicateUniqueIdInMessage"]
    assert_nothing_stored(node)


def test_two_documents_with_one_id(known):
    node = known
    sub = X.submission(1)
    body = sub.provide_and_register()
    body.append(copy.deepcopy(body.find("xdsb:Document", NS)))
    ctx, resp = provide(node, inline_request(body))
    assert codes(resp) == ["XDSRepositoryMetadataError"]
    assert_nothing_stored(node)


def test_on_demand_entry_is_refused(known):
    node = known
    sub = X.Submission()
    did = sub.document(on_demand=True)
    body = sub.provide_and_register()
    etree.SubElement(body, f"{{{XDSB}}}Document", id=did).text = X.base64.b64encode(
        TEXT).decode()
    ctx, resp = provide(node, inline_request(body))
    assert codes(resp) == ["XDSRepositoryMetadataError"]
    assert_nothing_stored(node)


def test_errors_are_listed_together(known):
    node = known
    sub = X.submission(3)
    body = sub.provide_and_register()
    body.remove(body.find(f"xdsb:Document[@id='{sub.documents[0]}']", NS))
    etree.SubElement(body, f"{{{XDSB}}}Document", id="urn:uuid:00000000-0000-4000-8000-"
                                                     "0000000000aa").text = "5byg5LiJ"
    ctx, resp = provide(node, inline_request(body))
    assert sorted(codes(resp)) == ["XDSMissingDocument", "XDSMissingDocumentMetadata"]
    assert_nothing_stored(node)


def test_same_unique_id_other_content_in_repository(known):
    node = known
    sub = X.Submission()
    sub.document(unique_id="1.2.156.112604.1.1.101.20.9", content=TEXT, mime_type="text/plain")
    assert provide(node, inline_request(sub.provide_and_register()))[1].status == STATUS_SUCCESS
    before = blob_files(node)
    other = X.Submission()
    other.document(unique_id="1.2.156.112604.1.1.101.20.9", content=PDF,
                   mime_type="application/pdf")
    ctx, resp = provide(node, inline_request(other.provide_and_register()))
    assert codes(resp) == ["XDSNonIdenticalHash"]
    assert len(repo_rows(node)) == 1 and blob_files(node) == before
    assert len(registry_entries(node)) == 1


def test_unknown_patient_from_the_registry_leaves_nothing(known):
    node = known
    sub = X.submission(2, patient_id=X.new_patient())
    ctx, resp = provide(node, inline_request(sub.provide_and_register()))
    assert resp.status == STATUS_FAILURE
    assert "XDSUnknownPatientId" in codes(resp)
    assert ctx.outcome == SERIOUS_FAILURE
    assert_nothing_stored(node)


def test_registry_metadata_error_is_passed_through(known):
    node = known
    sub = X.Submission()
    did = sub.document(content=TEXT, mime_type="text/plain")
    body = sub.provide_and_register()
    X.remove_classification(body.find(f".//rim:ExtrinsicObject[@id='{did}']", NS), X.DE_CLASS)
    ctx, resp = provide(node, inline_request(body))
    assert resp.status == STATUS_FAILURE
    assert "XDSRegistryMetadataError" in codes(resp)
    assert_nothing_stored(node)


def test_failed_registration_keeps_blobs_other_documents_use(known):
    node = known
    first = X.Submission()
    first.document(content=PDF, mime_type="application/pdf")
    assert provide(node, inline_request(first.provide_and_register()))[1].status == STATUS_SUCCESS
    kept = blob_files(node)
    assert len(kept) == 1
    failing = X.Submission(patient_id=X.new_patient())
    failing.document(content=PDF, mime_type="application/pdf")   # same bytes, shared blob
    failing.document(content=TEXT, mime_type="text/plain")       # new bytes
    ctx, resp = provide(node, inline_request(failing.provide_and_register()))
    assert "XDSUnknownPatientId" in codes(resp)
    assert blob_files(node) == kept
    assert len(repo_rows(node)) == 1 and len(registry_entries(node)) == 1
    assert retrieve(node, [first.unique_ids[first.documents[0]]]) == {
        first.unique_ids[first.documents[0]]: PDF}


def test_registry_database_failure_rolls_back_rows(known, monkeypatch):
    """The rows are written in the registry's unit of work: an exception after registering
    (here: inserting the rows themselves fails) leaves neither registry entries nor rows."""
    node = known
    from xds_repository import store

    def broken(conn, docs, now):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "insert_rows", broken)
    sub = X.submission(1)
    with pytest.raises(RuntimeError):
        iti41.handle(Context(node, ITI_41), inline_request(sub.provide_and_register()))
    assert_nothing_stored(node)


def test_not_a_provide_and_register_request(known):
    body = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetRequest")
    with pytest.raises(SoapFault) as exc:
        iti41.handle(Context(known, ITI_41), inline_request(body))
    assert exc.value.code == "Sender"


def test_no_submit_objects_request(known):
    body = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB})
    ctx, resp = provide(known, inline_request(body))
    assert codes(resp) == ["XDSRepositoryMetadataError"]


def test_invalid_base64_is_a_sender_fault(known):
    sub = X.submission(1)
    body = sub.provide_and_register()
    body.find("xdsb:Document", NS).text = "这不是base64!"
    with pytest.raises(SoapFault):
        iti41.handle(Context(known, ITI_41), inline_request(body))
    assert_nothing_stored(known)


def test_concurrent_success_and_failure_sharing_content(known):
    """Submissions of identical bytes race while some fail: every stored row keeps its blob
    (content addressing shares one blob; the failing request must not take it away)."""
    import threading
    node = known
    results: list[str] = []

    def submit(good: bool, i: int) -> None:
        sub = X.Submission(patient_id=X.patient_cx() if good else X.new_patient())
        sub.document(content=PDF, mime_type="application/pdf")
        sub.document(content=TEXT + str(i).encode(), mime_type="text/plain")
        results.append(provide(node, inline_request(sub.provide_and_register()))[1].status)

    threads = [threading.Thread(target=submit, args=(i % 2 == 0, i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == sorted([STATUS_SUCCESS] * 4 + [STATUS_FAILURE] * 4)
    rows = repo_rows(node)
    assert len(rows) == 8
    for r in rows:
        assert node.blobs.exists(r.blob_key)
    assert len(blob_files(node)) == 1 + 4  # the shared PDF + the successful texts


def _race_then_discard(node, monkeypatch, att: Attachment, unique_id: str, after_put=None):
    """Store ``att`` (then call ``after_put(info)``), let a concurrent submission commit a row
    for it, and run :func:`store.discard_blobs` with its first reference check blind to it."""
    from xds_repository import store
    info = store.put_blob(node.blobs, att)
    if after_put is not None:
        after_put(info)
    with node.db.begin() as conn:
        store.insert_rows(conn, [store.StoredDocument(node.settings.repository_unique_id,
                                                      unique_id, info.key, info.sha1, info.size,
                                                      att.content_type)], Context.now())
    real = store.referenced_keys
    calls = []

    def first_blind(conn, keys):
        calls.append(list(keys))
        return set() if len(calls) == 1 else real(conn, keys)

    monkeypatch.setattr(store, "referenced_keys", first_blind)
    store.discard_blobs(node.db, node.blobs, [(info, att)])
    assert len(calls) == 2
    return info


def test_discard_writes_back_a_blob_that_became_referenced(node, monkeypatch):
    """The race :func:`store.discard_blobs` closes: between its reference check and its delete a
    concurrent submission of the same bytes committed a row; the blob is written back."""
    att = Attachment("c1", "application/pdf", data=PDF)
    info = _race_then_discard(node, monkeypatch, att, "1.2.156.112604.1.1.101.20.77")
    assert node.blobs.path(info.key).read_bytes() == PDF


def test_discard_writes_back_an_adopted_blob_from_the_spool_file(node, tmp_path, monkeypatch):
    """The same race with a spooled part: the blob was the spool file itself (hard link); the
    spool file still holds the bytes, so the blob is written back from it."""
    spooled = tmp_path / "mtom-1.part"
    spooled.write_bytes(TEXT * 7)
    att = Attachment("c1", "text/plain", path=spooled, spooled=True)

    def adopted(info):
        assert info.created and node.blobs.path(info.key).stat().st_ino == spooled.stat().st_ino

    info = _race_then_discard(node, monkeypatch, att, "1.2.156.112604.1.1.101.20.78", adopted)
    spooled.unlink()
    assert node.blobs.path(info.key).read_bytes() == TEXT * 7

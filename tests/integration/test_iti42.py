"""ITI-42 Register Document Set-b against SQLite and PostgreSQL (ITI TF-2b 3.42.4.1.3): storage,
symbolic ids, one test per error code, replacement and deprecation, folder propagation,
atomicity and concurrent writers."""
from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from hie.errors import STATUS_FAILURE, STATUS_SUCCESS, XDS
from hie.settings import load_settings
from tests.xdsdata import AFFINITY_DOMAIN
from hie.soap import SoapRequest
from hie.transactions import ITI_42
from tests import xdsdata as X
from tests.schemas import assert_failure, assert_success, assert_valid
from xds_registry import iti42, store
from xds_registry import tables as T
from xds_registry.ebrim import deserialize
from xds_registry.model import DocumentEntry, Folder


@pytest.fixture
def node(database, tmp_path):
    settings = load_settings(env={}, data_dir=tmp_path / "data", database_url=database.url,
                             affinity_domain=AFFINITY_DOMAIN)
    return X.StubNode(database, settings)


@pytest.fixture
def ctx(node):
    X.register_patient(node.db, person=X.ZHANG_SAN)
    X.register_patient(node.db, person=X.LI_SI)
    return X.registry_context(node, ITI_42)


def register(ctx, req):
    resp = iti42.register(ctx, req)
    assert_valid(resp.to_ebrim())
    return resp


def ok(ctx, req):
    return assert_success(register(ctx, req))


def fails(ctx, req, code):
    return assert_failure(register(ctx, req), code)


def rows(db, table, **where):
    with db.read() as c:
        q = sa.select(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        return c.execute(q).all()


def counts(db):
    with db.read() as c:
        return store.counts(c)


def status_of(db, oid):
    return rows(db, T.registry_object, id=oid)[0].status


# --------------------------------------------------------------------------------------------
# success
# --------------------------------------------------------------------------------------------

def test_register_stores_every_row(ctx, node):
    sub = X.submission(2, folder=True, reference_ids=[
        "ACC20240315001^^^&1.2.156.112604.1.1.101.5&ISO^urn:ihe:iti:xds:2013:accession"])
    ok(ctx, sub.build())
    db = node.db
    objs = rows(db, T.registry_object)
    # SS + folder + 2 docs + 2 SS-doc + SS-folder + 2 folder-doc + 2 SS-(folder-doc)
    assert len(objs) == 11
    assert {o.status for o in objs} == {"Approved"}
    assert len({o.seq for o in objs}) == 11
    d1 = rows(db, T.document_entry, id=sub.documents[0])[0]
    assert d1.patient_id == X.patient_cx(X.ZHANG_SAN)
    assert d1.unique_id == sub.unique_ids[sub.documents[0]]
    assert (d1.class_code, d1.class_scheme) == ("18842-5", X.LOINC)
    assert d1.entry_type == "stable" and d1.availability == "Approved"
    assert d1.hash == X.sha1(sub.contents[sub.documents[0]])
    assert d1.size == len(sub.contents[sub.documents[0]])
    assert d1.lid == d1.id
    codes = {(r.kind, r.code) for r in rows(db, T.object_code, object_id=d1.id)}
    assert codes == {("event", "I20.801"), ("conf", "N")}
    assert [r.person for r in rows(db, T.object_author, object_id=d1.id)] == [
        X.Author().person]
    assert [r.reference_id for r in rows(db, T.object_reference_id, object_id=d1.id)] == [
        "ACC20240315001^^^&1.2.156.112604.1.1.101.5&ISO^urn:ihe:iti:xds:2013:accession"]
    ss = rows(db, T.submission_set, id=sub.ss_id)[0]
    assert ss.unique_id == sub.ss_unique_id and ss.source_id == X.SOURCE_ID
    assert ss.content_type_code == "34133-9"
    fd = rows(db, T.folder, id=sub.folders[0])[0]
    assert fd.last_update_time and len(fd.last_update_time) == 14
    assert [r.code for r in rows(db, T.object_code, object_id=fd.id)] == ["INPATIENT"]
    members = rows(db, T.association, source_id=sub.ss_id)
    assert {m.ss_status for m in members if m.target_id in sub.documents} == {"Original"}
    assert ctx.patient_ids == [X.patient_cx(X.ZHANG_SAN)]
    assert ctx.object_ids == [sub.ss_unique_id]


def test_stored_xml_is_the_final_object(ctx, node):
    sub = X.submission(1, folder=True, symbolic=True)
    ok(ctx, sub.build())
    with node.db.read() as c:
        objs = c.execute(sa.select(T.registry_object)).all()
    ids = {o.id for o in objs}
    assert all(i.startswith("urn:uuid:") for i in ids)
    assert "Document01" not in ids
    for o in objs:
        el = deserialize(o.xml)
        assert_valid(el)
        assert el.get("id") == o.id
        # no symbolic id survives anywhere in the stored element
        for x in el.iter():
            for attr in ("id", "classifiedObject", "registryObject", "sourceObject",
                         "targetObject"):
                v = x.get(attr)
                assert v is None or v.startswith("urn:uuid:"), (attr, v)
    de = [o for o in objs if o.kind == "DocumentEntry"][0]
    model = DocumentEntry.from_ebrim(deserialize(de.xml))
    assert model.title_text == "出院小结"
    assert model.version == "1" and model.lid == de.id
    fd = Folder.from_ebrim(deserialize([o for o in objs if o.kind == "Folder"][0].xml))
    assert fd.last_update_time is not None


def test_symbolic_references_are_rewritten(ctx, node):
    sub = X.submission(1, folder=True, symbolic=True)
    ok(ctx, sub.build())
    assocs = rows(node.db, T.association)
    ids = {o.id for o in rows(node.db, T.registry_object)}
    for a in assocs:
        assert a.source_id in ids and a.target_id in ids
    folder_doc = [a for a in assocs if rows(node.db, T.registry_object, id=a.source_id)[0].kind
                  == "Folder"]
    assert len(folder_doc) == 1


def test_soap_handler(ctx, node):
    req = SoapRequest(action=ITI_42.action, body=X.submit_objects_request(1))
    resp = iti42.handle(ctx, req)
    assert_valid(resp.body)
    assert resp.body.get("status") == STATUS_SUCCESS


def test_on_demand_entry(ctx, node):
    sub = X.Submission()
    did = sub.document(on_demand=True)
    ok(ctx, sub.build())
    assert rows(node.db, T.document_entry, id=did)[0].entry_type == "on-demand"


def test_unknown_patient_accepted_when_check_disabled(database, tmp_path):
    settings = load_settings(env={}, data_dir=tmp_path / "d", database_url=database.url,
                             validate_patient_id=False)
    ctx = X.registry_context(X.StubNode(database, settings))
    ok(ctx, X.submit_objects_request(1, patient_id=X.new_patient()))


def test_reference_existing_document_from_new_submission(ctx, node):
    first = X.submission(1)
    ok(ctx, first.build())
    sub = X.Submission()
    sub.associate(X.HAS_MEMBER, sub.ss_id, first.documents[0],
                  slots={"SubmissionSetStatus": ["Reference"]})
    sub.object_ref(first.documents[0])
    ok(ctx, sub.build())


def test_add_existing_document_to_existing_folder_updates_last_update_time(ctx, node):
    first = X.submission(1, folder=True)
    ok(ctx, first.build())
    fid = first.folders[0]
    with node.db.begin() as c:
        c.execute(T.folder.update().where(T.folder.c.id == fid)
                  .values(last_update_time="20200101000000"))
    sub = X.Submission()
    did = sub.document(title="检验报告")
    sub.add_to_folder(fid, did)
    ok(ctx, sub.build())
    assert rows(node.db, T.folder, id=fid)[0].last_update_time > "20200101000000"
    xml = rows(node.db, T.registry_object, id=fid)[0].xml
    assert Folder.from_ebrim(deserialize(xml)).last_update_time > "20200101000000"


def test_resubmission_of_same_document_is_accepted(ctx, node):
    """Same uniqueId, same hash and size, same patient (NIST test 12004)."""
    first = X.submission(1)
    ok(ctx, first.build())
    did = first.documents[0]
    again = X.Submission()
    again.document(unique_id=first.unique_ids[did], content=first.contents[did])
    ok(ctx, again.build())
    assert len(rows(node.db, T.document_entry, unique_id=first.unique_ids[did])) == 2


def test_register_joins_callers_unit_of_work(ctx, node):
    """The repository calls register() inside its own transaction."""
    with node.db.begin() as conn:
        resp = iti42.register(ctx, X.submit_objects_request(1), conn=conn)
        assert resp.ok
        bad = X.submit_objects_request(1, patient_id=X.new_patient())
        assert not iti42.register(ctx, bad, conn=conn).ok
    assert counts(node.db)["xds_document_entry"] == 1


def test_prepared_registration_without_savepoint(ctx, node):
    """ITI-41's way in: parsed and validated before the unit of work, then registered in the
    caller's transaction without a SAVEPOINT; the caller rolls back on a Failure."""
    prepared = iti42.prepare(ctx, X.submit_objects_request(1))
    with node.db.begin() as conn:
        assert iti42.register(ctx, None, conn=conn, prepared=prepared, nested=False).ok
    assert counts(node.db)["xds_document_entry"] == 1
    bad = iti42.prepare(ctx, X.submit_objects_request(1, patient_id=X.new_patient()))
    with pytest.raises(RuntimeError):
        with node.db.begin() as conn:
            assert not iti42.register(ctx, None, conn=conn, prepared=bad, nested=False).ok
            raise RuntimeError("the caller refuses")
    assert counts(node.db)["xds_document_entry"] == 1


def test_one_insert_per_table(ctx, node):
    """A submission's rows are written with one (executemany) INSERT per table."""
    inserts: list[str] = []

    def seen(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO XDS_"):
            inserts.append(statement.split()[2])

    sa.event.listen(node.db.engine, "before_cursor_execute", seen)
    try:
        ok(ctx, X.submission(3, folder=True, reference_ids=[
            "ACC20240315001^^^&1.2.156.112604.1.1.101.5&ISO^urn:ihe:iti:xds:2013:accession"]
        ).build())
    finally:
        sa.event.remove(node.db.engine, "before_cursor_execute", seen)
    assert sorted(inserts) == sorted(set(inserts)) and "xds_object" in inserts, inserts


@pytest.mark.parametrize("chunk", [store.CHUNK, 1])
def test_lookup_is_the_single_look_ups_in_one(ctx, node, monkeypatch, chunk):
    """store.lookup answers what load / documents_by_unique_id / package_unique_ids answer
    (and falls back to them for lists longer than an IN chunk)."""
    first = X.submission(2, folder=True)
    ok(ctx, first.build())
    again = X.Submission()
    did = first.documents[0]
    again.document(unique_id=first.unique_ids[did], content=first.contents[did])
    ok(ctx, again.build())
    monkeypatch.setattr(store, "CHUNK", chunk)
    ids = [first.ss_id, *first.documents, first.folders[0], "urn:uuid:not-there"]
    doc_uids = [first.unique_ids[d] for d in first.documents] + ["1.2.3.404"]
    with node.db.read() as c:
        found = store.lookup(c, ids=ids, document_uids=doc_uids,
                             submission_set_uids=[first.ss_unique_id, "1.2.3.405"],
                             folder_uids=["1.2.3.406"])
        assert found.by_id == store.load(c, ids)
        assert found.documents == store.documents_by_unique_id(c, doc_uids)
        assert len(found.documents[first.unique_ids[did]]) == 2
        assert found.submission_sets == store.package_unique_ids(
            c, "SubmissionSet", [first.ss_unique_id]) == {first.ss_unique_id: first.ss_id}
        assert found.folders == {}
        assert store.lookup(c) == store.Lookup({}, {}, {}, {})


# --------------------------------------------------------------------------------------------
# one test per error code
# --------------------------------------------------------------------------------------------

def test_metadata_error_missing_class_code(ctx, node):
    req = X.submit_objects_request(1)
    X.remove_classification(req.find(f".//{{{X.RIM}}}ExtrinsicObject"), X.DE_CLASS)
    resp = fails(ctx, req, XDS.RegistryMetadataError)
    assert any("classCode" in e.code_context for e in resp.errors)
    assert counts(node.db)["xds_object"] == 0


def test_patient_id_does_not_match(ctx):
    sub = X.Submission()
    sub.document(patient_id=X.patient_cx(X.LI_SI))
    fails(ctx, sub.build(), XDS.PatientIdDoesNotMatch)


def test_duplicate_unique_id_in_message(ctx):
    sub = X.Submission()
    sub.document(unique_id="1.2.156.112604.1.1.101.20.7")
    sub.document(unique_id="1.2.156.112604.1.1.101.20.7", title="入院记录")
    fails(ctx, sub.build(), XDS.RegistryDuplicateUniqueIdInMessage)


def test_unresolved_symbolic_reference(ctx):
    sub = X.submission(1, symbolic=True)
    sub.associate(X.HAS_MEMBER, sub.ss_id, "NoSuchFolder")
    fails(ctx, sub.build(), XDS.UnresolvedReferenceException)


def test_unresolved_uuid_reference(ctx):
    sub = X.submission(1)
    sub.replace(X.new_uuid())
    fails(ctx, sub.build(), XDS.UnresolvedReferenceException)


def test_unknown_patient_id(ctx, node):
    fails(ctx, X.submit_objects_request(1, patient_id=X.new_patient()), XDS.UnknownPatientId)
    assert ctx.outcome != 0


def test_duplicate_submission_set_unique_id_in_registry(ctx):
    first = X.submission(1)
    ok(ctx, first.build())
    again = X.Submission(ss_unique_id=first.ss_unique_id)
    again.document()
    fails(ctx, again.build(), XDS.DuplicateUniqueIdInRegistry)


def test_duplicate_folder_unique_id_in_registry(ctx):
    first = X.submission(1, folder=True)
    ok(ctx, first.build())
    again = X.Submission()
    again.folder(unique_id=first.unique_ids[first.folders[0]])
    fails(ctx, again.build(), XDS.DuplicateUniqueIdInRegistry)


def test_non_identical_hash(ctx, node):
    first = X.submission(1)
    ok(ctx, first.build())
    again = X.Submission()
    again.document(unique_id=first.unique_ids[first.documents[0]],
                   content="另一份不同的文档".encode())
    fails(ctx, again.build(), XDS.NonIdenticalHash)


def test_replace_deprecated_document(ctx, node):
    first = X.submission(1)
    ok(ctx, first.build())
    original = first.documents[0]
    r1 = X.Submission()
    r1.replace(original, title="出院小结（更正）")
    ok(ctx, r1.build())
    r2 = X.Submission()
    r2.replace(original, title="出院小结（再次更正）")
    fails(ctx, r2.build(), XDS.RegistryDeprecatedDocumentError)


def test_replacement_of_another_patients_document(ctx, node):
    first = X.submission(1, person=X.LI_SI)
    ok(ctx, first.build())
    sub = X.Submission()
    sub.replace(first.documents[0])
    fails(ctx, sub.build(), XDS.PatientIdDoesNotMatch)


def test_folder_member_of_other_patient(ctx, node):
    li = X.submission(1, person=X.LI_SI)
    ok(ctx, li.build())
    sub = X.Submission()
    f = sub.folder()
    sub.add_to_folder(f, li.documents[0])
    sub.object_ref(li.documents[0])
    fails(ctx, sub.build(), XDS.PatientIdDoesNotMatch)


def test_entry_uuid_already_registered(ctx):
    first = X.submission(1)
    ok(ctx, first.build())
    again = X.Submission()
    again.document(id=first.documents[0])
    fails(ctx, again.build(), XDS.RegistryMetadataError)


# --------------------------------------------------------------------------------------------
# document relationships
# --------------------------------------------------------------------------------------------

def test_replacement_deprecates_original_and_its_addenda(ctx, node):
    db = node.db
    first = X.submission(2)
    ok(ctx, first.build())
    original, other = first.documents
    apnd = X.Submission()
    addendum = apnd.relate(X.APND, original, title="出院小结补充说明")
    xfrm = apnd.relate(X.XFRM, original, title="出院小结（PDF）", mime_type="application/pdf")
    ok(ctx, apnd.build())
    rplc = X.Submission()
    new = rplc.replace(original, title="出院小结（更正）")
    ok(ctx, rplc.build())
    assert status_of(db, original) == "Deprecated"
    assert rows(db, T.document_entry, id=original)[0].status == "Deprecated"
    assert status_of(db, addendum) == "Deprecated"
    assert status_of(db, xfrm) == "Deprecated"
    assert status_of(db, new) == "Approved"
    assert status_of(db, other) == "Approved"
    rplc_assoc = rows(db, T.association, type="RPLC")
    assert [(a.source_id, a.target_id) for a in rplc_assoc] == [(new, original)]


def test_xfrm_rplc_deprecates_original(ctx, node):
    first = X.submission(1)
    ok(ctx, first.build())
    sub = X.Submission()
    new = sub.relate(X.XFRM_RPLC, first.documents[0], mime_type="application/pdf")
    ok(ctx, sub.build())
    assert status_of(node.db, first.documents[0]) == "Deprecated"
    assert status_of(node.db, new) == "Approved"


def test_append_to_deprecated_document(ctx, node):
    first = X.submission(1)
    ok(ctx, first.build())
    r = X.Submission()
    r.replace(first.documents[0])
    ok(ctx, r.build())
    a = X.Submission()
    a.relate(X.APND, first.documents[0])
    fails(ctx, a.build(), XDS.RegistryDeprecatedDocumentError)


def test_replacement_joins_the_folders_of_the_original(ctx, node):
    """ITI TF-2b 3.42.4.1.3.5 / NIST 12327: the replacement becomes a member of every folder
    the original is in; the original stays a member; lastUpdateTime moves."""
    db = node.db
    first = X.submission(1, folder=True)
    ok(ctx, first.build())
    fid, original = first.folders[0], first.documents[0]
    with db.begin() as c:
        c.execute(T.folder.update().values(last_update_time="20200101000000"))
    sub = X.Submission()
    new = sub.replace(original)
    ok(ctx, sub.build())
    members = {a.target_id for a in rows(db, T.association, source_id=fid)}
    assert members == {original, new}
    link = [a for a in rows(db, T.association, source_id=fid) if a.target_id == new][0]
    # the new Folder-DocumentEntry association is itself a member of the SubmissionSet
    assert rows(db, T.association, source_id=sub.ss_id, target_id=link.id)
    assert rows(db, T.folder, id=fid)[0].last_update_time > "20200101000000"


def test_signs_a_document_of_the_same_submission(ctx):
    sub = X.Submission()
    doc = sub.document()
    sig = sub.document(title="数字签名", mime_type="text/xml",
                       format_code=X.Code("http://www.w3.org/2000/09/xmldsig#",
                                          "1.3.6.1.4.1.19376.1.2.3", "数字签名"))
    sub.associate(X.SIGNS, sig, doc)
    ok(ctx, sub.build())


# --------------------------------------------------------------------------------------------
# atomicity and concurrency
# --------------------------------------------------------------------------------------------

def test_failing_submission_leaves_no_row(ctx, node):
    first = X.submission(1)
    ok(ctx, first.build())
    before = counts(node.db)
    sub = X.Submission()
    sub.document()                                          # fine on its own
    sub.folder()                                            # fine on its own
    sub.document(unique_id=first.unique_ids[first.documents[0]],
                 content=b"different content")              # XDSNonIdenticalHash
    fails(ctx, sub.build(), XDS.NonIdenticalHash)
    assert counts(node.db) == before


def test_database_error_midway_rolls_back(ctx, node, monkeypatch):
    before = counts(node.db)
    real = store.Rows.write

    def flaky(rows, conn):
        first = store.Rows()
        first.tables.update(list(rows.tables.items())[:3])
        real(first, conn)                                       # some rows are written...
        conn.execute(sa.text("SELECT * FROM no_such_table"))    # ...then the database fails

    monkeypatch.setattr(store.Rows, "write", flaky)
    resp = register(ctx, X.submit_objects_request(2, folder=True))
    assert resp.status == STATUS_FAILURE and resp.codes == [XDS.RegistryError]
    assert counts(node.db) == before


def together(fn, *args) -> None:
    """Run ``fn(arg)`` for every arg in its own thread, all at once; wait for all."""
    threads = [threading.Thread(target=fn, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_submissions(ctx, node):
    results, errors = [], []

    def worker():
        try:
            for _ in range(3):
                c = X.registry_context(node, ITI_42)
                results.append(iti42.register(c, X.submit_objects_request(2)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    together(lambda _n: worker(), *range(6))
    assert not errors
    assert all(r.ok for r in results), [r.errors for r in results if not r.ok]
    objs = rows(node.db, T.registry_object)
    assert len(objs) == 18 * 5
    assert len({o.seq for o in objs}) == len(objs)


def test_concurrent_replacement_of_one_document(ctx, node):
    """Two submissions replacing the same original at once: exactly one wins."""
    first = X.submission(1)
    ok(ctx, first.build())
    results = []

    def worker():
        s = X.Submission()
        s.replace(first.documents[0])
        results.append(iti42.register(X.registry_context(node, ITI_42), s.build()))

    together(lambda _n: worker(), *range(4))
    assert sorted(r.ok for r in results) == [False, False, False, True]
    for r in results:
        if not r.ok:
            assert r.codes == [XDS.RegistryDeprecatedDocumentError]
    approved = [r for r in rows(node.db, T.document_entry) if r.status == "Approved"]
    assert len(approved) == 1


def test_non_identical_size(ctx, node):
    first = X.submission(1)
    ok(ctx, first.build())
    did = first.documents[0]
    again = X.Submission()
    again.document(unique_id=first.unique_ids[did], content=first.contents[did],
                   size=len(first.contents[did]) + 1)
    fails(ctx, again.build(), XDS.NonIdenticalSize)


def test_patient_id_outside_the_affinity_domain_is_unknown(database, tmp_path):
    """A hospital-local patient number known to the patient index is still not an XDS patient
    ID: the registry accepts only the affinity domain's identifiers (ITI TF-2a 3.8.4.1.3)."""
    settings = load_settings(env={}, data_dir=tmp_path / "d", database_url=database.url,
                             affinity_domain=AFFINITY_DOMAIN)
    local = f"MR2024000101^^^&{X.HOSPITAL_PID_OID}&ISO"
    X.register_patient(database, local)
    ctx = X.registry_context(X.StubNode(database, settings))
    resp = iti42.register(ctx, X.submit_objects_request(1, patient_id=local))
    assert XDS.UnknownPatientId in resp.codes


def test_concurrent_registrations_of_one_document_unique_id(ctx, node):
    """Four submissions of one DocumentEntry uniqueId with four different contents at once:
    the first to lock the uniqueId registers, the others see it and get XDSNonIdenticalHash."""
    uid = X.new_oid()
    results = []

    def worker(n):
        s = X.Submission()
        s.document(unique_id=uid, content=f"出院小结 第{n}版".encode())
        results.append(iti42.register(X.registry_context(node, ITI_42), s.build()))

    together(worker, *range(4))
    assert sorted(r.ok for r in results) == [False, False, False, True]
    assert all(r.codes == [XDS.NonIdenticalHash] for r in results if not r.ok)
    assert len(rows(node.db, T.document_entry, unique_id=uid)) == 1


def test_concurrent_registrations_of_one_submission_set_unique_id(ctx, node):
    uid = X.new_oid()
    results = []

    def worker():
        s = X.Submission(ss_unique_id=uid)
        s.document()
        results.append(iti42.register(X.registry_context(node, ITI_42), s.build()))

    together(lambda _n: worker(), *range(4))
    assert sorted(r.ok for r in results) == [False, False, False, True]
    assert all(r.codes == [XDS.DuplicateUniqueIdInRegistry] for r in results if not r.ok)
    assert len(rows(node.db, T.submission_set, unique_id=uid)) == 1


def _register_in_thread(node, req):
    out: list = []
    t = threading.Thread(target=lambda: out.append(
        iti42.register(X.registry_context(node, ITI_42), req)))
    t.start()
    return t, out


@pytest.fixture
def pg_node(pg_database, tmp_path):
    settings = load_settings(env={}, data_dir=tmp_path / "pg", database_url=pg_database.url,
                             affinity_domain=AFFINITY_DOMAIN)
    X.register_patient(pg_database, person=X.ZHANG_SAN)
    return X.StubNode(pg_database, settings)


def test_registrations_that_share_nothing_run_side_by_side(pg_node):
    """PostgreSQL: while one registration holds its locks (here: a unit of work that took the
    locks of a submission naming uniqueId U), an unrelated submission registers at once, one
    naming U waits until the first unit ends, and ITI-57/62's exclusive lock waits for both
    kinds.  (SQLite serializes every writer with its database lock.)"""
    node = pg_node
    ctx = X.registry_context(node, ITI_42)
    blocked = X.Submission()
    blocked.document()
    held = iti42.lock_names(iti42.prepare(ctx, blocked.build()).so)
    with node.db.begin() as conn:
        store.lock_for_register(conn, held)
        free, free_out = _register_in_thread(node, X.submit_objects_request(1))
        free.join(30)
        assert not free.is_alive() and free_out[0].ok  # not held up by the other unit
        same, same_out = _register_in_thread(node, blocked.build())
        same.join(1.0)
        assert same.is_alive() and not same_out  # waits for the uniqueId's lock
    same.join(30)
    assert not same.is_alive() and same_out[0].ok


def test_exclusive_registry_lock_waits_for_registrations(pg_node):
    node = pg_node
    with node.db.begin() as conn:
        store.lock_registry(conn)  # what ITI-57 and ITI-62 take
        t, out = _register_in_thread(node, X.submit_objects_request(1))
        t.join(1.0)
        assert t.is_alive() and not out
    t.join(30)
    assert out[0].ok

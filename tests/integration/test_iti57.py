"""ITI-57 Update Document Set against SQLite and PostgreSQL (ITI TF-2b 3.57.4.1.3): new versions,
association propagation, availabilityStatus updates, submitted associations, patient ID changes,
one test per error code, atomicity."""
from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from hie.errors import STATUS_SUCCESS, XDS
from hie.settings import load_settings
from tests.xdsdata import AFFINITY_DOMAIN
from hie.soap import SoapRequest
from hie.transactions import ITI_42, ITI_57
from tests import xdsdata as X
from tests.schemas import assert_failure, assert_success, assert_valid
from xds_registry import iti42, iti57, store
from xds_registry import tables as T
from xds_registry.ebrim import deserialize
from xds_registry.model import DocumentEntry, Folder


@pytest.fixture
def node(database, tmp_path):
    settings = load_settings(env={}, data_dir=tmp_path / "data", database_url=database.url,
                             affinity_domain=AFFINITY_DOMAIN)
    n = X.StubNode(database, settings)
    X.register_patient(database, person=X.ZHANG_SAN)
    X.register_patient(database, person=X.LI_SI)
    return n


def submit(node, sub):
    resp = iti42.register(X.registry_context(node, ITI_42), sub.build())
    assert resp.ok, resp.errors
    return sub


def update(node, sub):
    ctx = X.registry_context(node, ITI_57)
    req = sub.build()
    assert_valid(req)
    resp = iti57.update(ctx, req)
    assert_valid(resp.to_ebrim())
    return resp


def ok(node, sub):
    return assert_success(update(node, sub))


def fails(node, sub, code):
    return assert_failure(update(node, sub), code)


def obj(db, oid):
    with db.read() as c:
        return c.execute(sa.select(T.registry_object).where(T.registry_object.c.id == oid)).one()


def assocs(db, **where):
    with db.read() as c:
        q = sa.select(T.association)
        for k, v in where.items():
            q = q.where(T.association.c[k] == v)
        return c.execute(q).all()


def counts(db):
    with db.read() as c:
        return store.counts(c)


@pytest.fixture
def original(node):
    """One DocumentEntry (出院小结) of 张三 in one Folder."""
    return submit(node, X.submission(1, folder=True))


def new_version(original, *, previous=1, propagate=None, patient=None, person=X.ZHANG_SAN,
                **kw):
    did = original.documents[0]
    sub = X.Submission(patient_id=patient or X.patient_cx(person), person=person)
    kw.setdefault("unique_id", original.unique_ids[did])
    kw.setdefault("content", original.contents[did])
    new = X.update_document(sub, did, previous, association_propagation=propagate, **kw)
    return sub, new


# --------------------------------------------------------------------------------------------
# Update DocumentEntry metadata
# --------------------------------------------------------------------------------------------

def test_new_document_version(node, original):
    did = original.documents[0]
    sub, new = new_version(original, title="出院小结（修订）", confidentiality=[X.CONF_RESTRICTED])
    ok(node, sub)
    old_row, new_row = obj(node.db, did), obj(node.db, new)
    assert (old_row.status, old_row.version, old_row.lid) == ("Deprecated", 1, did)
    assert (new_row.status, new_row.version, new_row.lid) == ("Approved", 2, did)
    model = DocumentEntry.from_ebrim(deserialize(new_row.xml))
    assert model.title_text == "出院小结（修订）"
    assert model.lid == did and model.version == "2"
    assert [c.code for c in model.confidentiality_codes] == ["R"]
    with node.db.read() as c:
        de = c.execute(sa.select(T.document_entry).where(T.document_entry.c.id == new)).one()
        assert de.lid == did and de.status == "Approved"
        conf = c.execute(sa.select(T.object_code.c.code).where(
            T.object_code.c.object_id == new, T.object_code.c.kind == "conf")).scalars().all()
        assert conf == ["R"]


def test_soap_handler(node, original):
    sub, _ = new_version(original, title="出院小结（修订）")
    resp = iti57.handle(X.registry_context(node, ITI_57),
                        SoapRequest(action=ITI_57.action, body=sub.build()))
    assert_valid(resp.body)
    assert resp.body.get("status") == STATUS_SUCCESS


def test_association_propagation_copies_folder_membership(node, original):
    fid = original.folders[0]
    sub, new = new_version(original)
    ok(node, sub)
    members = {a.target_id for a in assocs(node.db, source_id=fid)}
    assert members == {original.documents[0], new}


def test_no_association_propagation(node, original):
    fid = original.folders[0]
    sub, new = new_version(original, propagate=False)
    ok(node, sub)
    assert {a.target_id for a in assocs(node.db, source_id=fid)} == {original.documents[0]}


def test_update_of_deprecated_latest_version_stays_deprecated(node, original):
    did = original.documents[0]
    sub = X.Submission()
    X.update_availability(sub, did)
    ok(node, sub)
    upd, new = new_version(original, title="出院小结（修订）")
    ok(node, upd)
    assert obj(node.db, new).status == "Deprecated"
    assert obj(node.db, new).version == 2


def test_patient_id_change_of_unconnected_document(node):
    first = submit(node, X.submission(1))
    sub, new = new_version(first, person=X.LI_SI)
    ok(node, sub)
    with node.db.read() as c:
        assert c.execute(sa.select(T.document_entry.c.patient_id).where(
            T.document_entry.c.id == new)).scalar() == X.patient_cx(X.LI_SI)


# --------------------------------------------------------------------------------------------
# error codes
# --------------------------------------------------------------------------------------------

def test_version_error_previous_version_not_latest(node, original):
    sub, _ = new_version(original)
    ok(node, sub)
    again, _ = new_version(original, previous=1, title="基于旧版本的修改")
    fails(node, again, XDS.MetadataVersionError)


def test_version_error_unknown_logical_id(node):
    sub = X.Submission()
    X.update_document(sub, X.new_uuid(), 1)
    fails(node, sub, XDS.MetadataVersionError)


def test_update_error_unique_id_changed(node, original):
    sub, _ = new_version(original, unique_id=X.new_oid())
    fails(node, sub, XDS.MetadataUpdateError)


def test_hash_and_size_may_be_updated(node, original):
    """No rule of ITI TF-2b 3.57.4.1.3.3.1 keeps hash and size as they were; NIST tests 15800
    (size 4 -> 44) and 15801/hash update them and expect Success."""
    content = "内容已更正".encode()
    sub, new = new_version(original, content=content)
    ok(node, sub)
    model = DocumentEntry.from_ebrim(deserialize(obj(node.db, new).xml))
    assert model.hash == hashlib.sha1(content).hexdigest() and model.size == len(content)


def test_update_error_bad_association_propagation(node, original):
    sub, new = new_version(original)
    req = sub.build()
    member = [a for a in req.iter(f"{{{X.RIM}}}Association") if a.get("targetObject") == new][0]
    X.set_slot(member, "AssociationPropagation", "maybe")
    resp = iti57.update(X.registry_context(node, ITI_57), req)
    assert XDS.MetadataUpdateError in resp.codes


def test_update_error_first_version_through_iti57(node):
    fails(node, X.submission(1), XDS.MetadataUpdateError)


def test_update_error_two_updates_of_one_logical_id(node, original):
    did = original.documents[0]
    sub = X.Submission()
    for title in ("修订一", "修订二"):
        X.update_document(sub, did, 1, unique_id=original.unique_ids[did],
                          content=original.contents[did], title=title)
    fails(node, sub, XDS.MetadataUpdateError)


def test_update_error_original_status_mismatch(node, original):
    sub = X.Submission()
    X.update_availability(sub, original.documents[0], original=X.DEPRECATED, new=X.APPROVED)
    fails(node, sub, XDS.MetadataUpdateError)


def test_patient_reconciliation_error(node, original):
    """The document is in a folder: its patient ID cannot change (3.57.4.1.3.3.1.7)."""
    sub, _ = new_version(original, person=X.LI_SI)
    fails(node, sub, XDS.PatientIDReconciliationError)


def test_status_update_of_submission_set_fails(node, original):
    sub = X.Submission()
    X.update_availability(sub, original.ss_id)
    fails(node, sub, XDS.MetadataUpdateError)


def test_status_update_of_older_version(node, original):
    sub, _ = new_version(original)
    ok(node, sub)
    st = X.Submission()
    X.update_availability(st, original.documents[0], original=X.DEPRECATED, new=X.APPROVED)
    fails(node, st, XDS.MetadataVersionError)


def test_failed_update_leaves_registry_unchanged(node, original):
    before = counts(node.db)
    sub, _ = new_version(original, title="修订")
    X.update_availability(sub, original.ss_id)        # illegal second operation
    fails(node, sub, XDS.MetadataUpdateError)
    assert counts(node.db) == before
    assert obj(node.db, original.documents[0]).status == "Approved"


# --------------------------------------------------------------------------------------------
# availabilityStatus, folders, submitted associations
# --------------------------------------------------------------------------------------------

def test_deprecate_and_approve_again(node, original):
    did = original.documents[0]
    dep = X.Submission()
    X.update_availability(dep, did)
    ok(node, dep)
    assert obj(node.db, did).status == "Deprecated"
    with node.db.read() as c:
        assert c.execute(sa.select(T.document_entry.c.status).where(
            T.document_entry.c.id == did)).scalar() == "Deprecated"
    app = X.Submission()
    X.update_availability(app, did, original=X.DEPRECATED, new=X.APPROVED)
    ok(node, app)
    assert obj(node.db, did).status == "Approved"
    assert len(assocs(node.db, type="UpdateAvailabilityStatus")) == 2


def test_deprecate_an_association(node, original):
    link = assocs(node.db, source_id=original.folders[0])[0]
    sub = X.Submission()
    X.update_availability(sub, link.id)
    ok(node, sub)
    assert obj(node.db, link.id).status == "Deprecated"


def test_new_folder_version_keeps_members(node, original):
    fid = original.folders[0]
    sub = X.Submission()
    new = X.update_folder(sub, fid, 1, unique_id=original.unique_ids[fid], title="住院资料（更名）")
    ok(node, sub)
    assert obj(node.db, fid).status == "Deprecated"
    row = obj(node.db, new)
    assert (row.status, row.version, row.lid) == ("Approved", 2, fid)
    assert Folder.from_ebrim(deserialize(row.xml)).title_text == "住院资料（更名）"
    assert {a.target_id for a in assocs(node.db, source_id=new)} == {original.documents[0]}


def test_folder_version_and_status_in_one_submission(node, original):
    """NIST 20004: a new Folder version and its deprecation in one transaction."""
    fid = original.folders[0]
    sub = X.Submission()
    new = X.update_folder(sub, fid, 1, unique_id=original.unique_ids[fid])
    X.update_availability(sub, new)
    ok(node, sub)
    assert obj(node.db, fid).status == "Deprecated"
    assert obj(node.db, new).status == "Deprecated"


def test_submit_association_adds_document_to_folder(node, original):
    other = submit(node, X.submission(1))
    fid, did = original.folders[0], other.documents[0]
    sub = X.Submission()
    link = sub.associate(X.HAS_MEMBER, fid, did)
    sub.associate("urn:ihe:iti:2010:AssociationType:SubmitAssociation", sub.ss_id, link)
    ok(node, sub)
    assert did in {a.target_id for a in assocs(node.db, source_id=fid)}
    with node.db.read() as c:
        lut = c.execute(sa.select(T.folder.c.last_update_time).where(
            T.folder.c.id == fid)).scalar()
    assert lut is not None


def test_submit_association_already_registered(node, original):
    """The folder already holds the document (NIST 20008): the same HasMember again is an
    XDSMetadataUpdateError, and nothing is written."""
    fid, did = original.folders[0], original.documents[0]
    before = len(assocs(node.db, source_id=fid))
    sub = X.Submission()
    link = sub.associate(X.HAS_MEMBER, fid, did)
    sub.associate("urn:ihe:iti:2010:AssociationType:SubmitAssociation", sub.ss_id, link)
    fails(node, sub, XDS.MetadataUpdateError)
    assert len(assocs(node.db, source_id=fid)) == before


def test_submit_association_on_deprecated_document(node, original):
    other = submit(node, X.submission(1))
    dep = X.Submission()
    X.update_availability(dep, other.documents[0])
    ok(node, dep)
    sub = X.Submission()
    link = sub.associate(X.HAS_MEMBER, original.folders[0], other.documents[0])
    sub.associate("urn:ihe:iti:2010:AssociationType:SubmitAssociation", sub.ss_id, link)
    fails(node, sub, XDS.MetadataUpdateError)


def test_concurrent_updates_of_one_document(node, original):
    """Two new versions of the same logicalID at once: one wins, the other gets
    XDSMetadataVersionError (the registry write lock serializes them)."""
    import threading
    results = []

    def worker(title):
        sub, _ = new_version(original, title=title)
        results.append(iti57.update(X.registry_context(node, ITI_57), sub.build()))

    threads = [threading.Thread(target=worker, args=(f"修订{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.ok for r in results) == [False, False, False, True]
    assert all(r.codes == [XDS.MetadataVersionError] for r in results if not r.ok)
    with node.db.read() as c:
        versions = c.execute(sa.select(T.registry_object.c.version).where(
            T.registry_object.c.lid == original.documents[0])).scalars().all()
    assert sorted(versions) == [1, 2]

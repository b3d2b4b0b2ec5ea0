"""ITI-62 Delete Document Set against SQLite and PostgreSQL (ITI TF-2b 3.62.4.1.3): whole
submissions, folder membership, UnresolvedReferenceException, ReferencesExistException,
XDSUnreferencedObjectException, atomicity."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from hie.errors import STATUS_SUCCESS, XDS
from hie.settings import load_settings
from tests.xdsdata import AFFINITY_DOMAIN
from hie.soap import SoapRequest
from hie.transactions import ITI_42, ITI_62
from tests import xdsdata as X
from tests.schemas import assert_failure, assert_valid
from xds_registry import iti42, iti62, store
from xds_registry import tables as T


@pytest.fixture
def node(database, tmp_path):
    settings = load_settings(env={}, data_dir=tmp_path / "data", database_url=database.url,
                             affinity_domain=AFFINITY_DOMAIN)
    X.register_patient(database)
    return X.StubNode(database, settings)


def submit(node, sub):
    resp = iti42.register(X.registry_context(node, ITI_42), sub.build())
    assert resp.ok, resp.errors
    return sub


def remove(node, ids):
    req = X.remove_objects_request(ids)
    assert_valid(req)
    ctx = X.registry_context(node, ITI_62)
    resp = iti62.delete(ctx, req)
    assert_valid(resp.to_ebrim())
    return resp, ctx


def fails(node, ids, code):
    resp, _ = remove(node, ids)
    return assert_failure(resp, code)


def counts(db):
    with db.read() as c:
        return store.counts(c)


def assoc_ids(db, **where):
    with db.read() as c:
        q = sa.select(T.association.c.id)
        for k, v in where.items():
            q = q.where(T.association.c[k] == v)
        return c.execute(q).scalars().all()


def all_ids(sub: X.Submission) -> list[str]:
    return [sub.ss_id, *sub.folders, *sub.documents, *sub.associations]


def test_remove_whole_submission(node):
    keep = submit(node, X.submission(1))
    before = counts(node.db)
    sub = submit(node, X.submission(2, folder=True, reference_ids=[
        "ACC1^^^&1.2.156.112604.1.1.101.5&ISO^urn:ihe:iti:xds:2013:accession"]))
    resp, ctx = remove(node, all_ids(sub))
    assert resp.status == STATUS_SUCCESS, resp.errors
    assert counts(node.db) == before
    assert ctx.patient_ids == [X.patient_cx()]
    assert set(ctx.object_ids) == set(all_ids(sub))
    with node.db.read() as c:
        assert c.execute(sa.select(T.registry_object.c.id).where(
            T.registry_object.c.id == keep.documents[0])).scalar()


def test_soap_handler(node):
    sub = submit(node, X.submission(1))
    resp = iti62.handle(X.registry_context(node, ITI_62),
                        SoapRequest(action=ITI_62.action,
                                    body=X.remove_objects_request(all_ids(sub))))
    assert_valid(resp.body)
    assert resp.body.get("status") == STATUS_SUCCESS


def test_remove_folder_membership(node):
    """NIST 30003 step 3: the Folder-DocumentEntry HasMember and its SubmissionSet HasMember."""
    sub = submit(node, X.submission(1, folder=True))
    link = assoc_ids(node.db, source_id=sub.folders[0])
    ss_link = assoc_ids(node.db, source_id=sub.ss_id, target_id=link[0])
    resp, _ = remove(node, link + ss_link)
    assert resp.ok, resp.errors
    assert assoc_ids(node.db, source_id=sub.folders[0]) == []


def test_unknown_object(node):
    fails(node, [X.new_uuid()], XDS.UnresolvedReferenceException)


def test_references_exist(node):
    sub = submit(node, X.submission(1))
    before = counts(node.db)
    fails(node, [sub.ss_id], XDS.ReferencesExistException)
    fails(node, [sub.documents[0]], XDS.ReferencesExistException)
    assert counts(node.db) == before


def test_references_exist_from_another_submission(node):
    """NIST 30004: the APND of a later submission still references the original."""
    first = submit(node, X.submission(1))
    apnd = X.Submission()
    apnd.relate(X.APND, first.documents[0], title="补充说明")
    submit(node, apnd)
    fails(node, all_ids(first), XDS.ReferencesExistException)
    resp, _ = remove(node, all_ids(apnd))
    assert resp.ok, resp.errors
    resp, _ = remove(node, all_ids(first))
    assert resp.ok, resp.errors
    assert counts(node.db)["xds_object"] == 0


def test_unreferenced_submission_set(node):
    sub = submit(node, X.submission(1))
    fails(node, [*sub.documents, *sub.associations], XDS.UnreferencedObjectException)


def test_atomic_failure_keeps_everything(node):
    sub = submit(node, X.submission(2))
    before = counts(node.db)
    fails(node, [*all_ids(sub), X.new_uuid()], XDS.UnresolvedReferenceException)
    assert counts(node.db) == before


def test_adhoc_query_is_not_supported(node):
    from lxml import etree
    req = X.remove_objects_request([])
    req.insert(0, etree.Element(f"{{{X.RIM}}}AdhocQuery", id=X.new_uuid()))
    resp = iti62.delete(X.registry_context(node, ITI_62), req)
    assert XDS.InvalidRequestException in resp.codes

"""ITI-18 / ITI-51 error handling and transport, on SQLite and PostgreSQL: XDSUnknownStoredQuery,
unsupported returnType, malformed requests, XDSTooManyResults (ITI TF-2a 3.18.4.1.3), the
Multi-Patient Stored Query (ITI TF-2b 3.51), ``run_query`` for reuse, and the whole path over
HTTP through the node's /xds/registry endpoint."""
from __future__ import annotations

import httpx
import pytest
import zeep
from lxml import etree

from hie.context import Context
from hie.errors import SoapFault
from hie.soap import SOAP12_NS, SoapRequest, build_envelope
from hie.transactions import ITI_18
from tests import xdsdata as X
from tests.integration.iti18_support import (HOME, code, load_find_data, q, query, register,
                                             settings)
from tests.schemas import assert_valid
from xds_registry import iti18, vocab
from xds_registry.queries import ITI51_QUERIES, QUERY_IDS, run_query
from xds_registry.query_params import build_request

APPROVED = q(vocab.APPROVED)


@pytest.fixture
def data(database):
    return load_find_data(database)


def find_params(pid):
    return {"$XDSDocumentEntryPatientId": [q(pid)], "$XDSDocumentEntryStatus": [APPROVED]}


# -- request-level errors --------------------------------------------------------------------------

def test_unknown_stored_query(database, data):
    ans = query(database, "urn:uuid:00000000-1111-2222-3333-444444444444", find_params(data.pid))
    assert ans.status == "Failure" and ans.codes == ["XDSUnknownStoredQuery"]
    assert ans.objects == [] and ans.ctx.outcome == 8
    # the Multi-Patient queries are not ITI-18 queries, and the reverse
    ans = query(database, QUERY_IDS["FindDocumentsForMultiplePatients"], find_params(data.pid))
    assert ans.codes == ["XDSUnknownStoredQuery"]
    ans = query(database, QUERY_IDS["FindDocuments"], find_params(data.pid), mpq=True)
    assert ans.codes == ["XDSUnknownStoredQuery"]


@pytest.mark.parametrize("return_type", ["RegistryObject", "LeafClassWithRepositoryItem"])
def test_unsupported_return_type(database, data, return_type):
    ans = query(database, QUERY_IDS["FindDocuments"], find_params(data.pid), return_type)
    assert ans.status == "Failure" and ans.errors == [("XDSRegistryError", "returnType")]


def handle(database, body):
    from types import SimpleNamespace
    ctx = Context(SimpleNamespace(db=database, settings=settings()), ITI_18)
    return ctx, iti18.handle(ctx, SoapRequest(ITI_18.action, body))


def test_malformed_requests(database):
    req = build_request(QUERY_IDS["FindDocuments"], {})
    req.remove(req[0])  # no ResponseOption
    ctx, resp = handle(database, req)
    body = resp.element()
    assert_valid(body)
    assert body.get("status").endswith("Failure")
    assert [e.get("errorCode") for e in body.iter("{*}RegistryError")] == ["XDSRegistryError"]
    req = build_request("", {})
    ctx, resp = handle(database, req)
    assert [e.get("errorCode") for e in resp.element().iter("{*}RegistryError")] == [
        "XDSUnknownStoredQuery"]
    with pytest.raises(SoapFault) as exc:
        handle(database, etree.Element("{urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0}"
                                       "SubmitObjectsRequest"))
    assert exc.value.code == "Sender"


# -- XDSTooManyResults -----------------------------------------------------------------------------

def test_too_many_results(database, data):
    small = settings(max_query_results=2)
    ans = query(database, QUERY_IDS["FindDocuments"], find_params(data.pid), st=small)
    assert ans.status == "Failure" and ans.codes == ["XDSTooManyResults"] and ans.objects == []
    ans = query(database, QUERY_IDS["FindDocuments"], find_params(data.pid), "ObjectRef",
                st=settings(max_query_results=3))
    assert ans.status == "Success" and len(ans.ids) == 3
    # a Get query whose associations exceed the bound
    ans = query(database, QUERY_IDS["GetSubmissionSetAndContents"],
                {"$XDSSubmissionSetEntryUUID": [q(data.s1.ss_id)]},
                st=settings(max_query_results=5))
    assert ans.codes == ["XDSTooManyResults"]
    ans = query(database, QUERY_IDS["GetAll"], {
        "$patientId": [q(data.pid)], "$XDSDocumentEntryStatus": [APPROVED],
        "$XDSSubmissionSetStatus": [APPROVED], "$XDSFolderStatus": [APPROVED]},
        st=settings(max_query_results=10))
    assert ans.codes == ["XDSTooManyResults"]


# -- run_query, for reuse (e.g. by the responding gateway) ----------------------------------------

def test_run_query_plain_function(database, data):
    with database.read() as conn:
        result = run_query(conn, settings(), QUERY_IDS["FindDocuments"], {
            "$XDSDocumentEntryPatientId": [f"'{data.pid}'"],
            "$XDSDocumentEntryStatus": "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')",
            "$XDSDocumentEntryClassCode": [[f"('{code(X.CLASS_LAB)}')"]],
        }, "LeafClass")
    assert result.ok and result.ids == [data.b]
    assert result.patient_ids == [data.pid]
    assert result.objects[0].kind == "DocumentEntry" and result.objects[0].status == "Approved"
    assert_valid(result.to_element())
    [el] = result.elements()
    assert el.get("id") == data.b and el.get("home") == HOME
    with database.read() as conn:
        bad = run_query(conn, settings(), QUERY_IDS["FindDocuments"], {}, "ObjectRef")
    assert not bad.ok and {e.error_code for e in bad.errors} == {"XDSStoredQueryMissingParam"}
    assert_valid(bad.to_element())


# -- ITI-51 Multi-Patient Stored Query -------------------------------------------------------------

def test_find_documents_for_multiple_patients(database, data):
    qid = QUERY_IDS["FindDocumentsForMultiplePatients"]
    ans = query(database, qid, {"$XDSDocumentEntryPatientId": [q(data.pid, data.pid2)],
                                "$XDSDocumentEntryStatus": [APPROVED]}, mpq=True)
    assert ans.status == "Success"     # LeafClass across patients is what ITI-51 is for
    assert set(ans.of("DocumentEntry")) == {data.a, data.b, data.d, data.e}
    assert set(ans.ctx.patient_ids) == {data.pid, data.pid2}
    ans = query(database, qid, {"$XDSDocumentEntryClassCode": [q(code(X.CLASS_DISCHARGE))],
                                "$XDSDocumentEntryStatus": [APPROVED],
                                "$XDSDocumentEntryAuthorPerson": [q("%赵^敏%", "%王^建国%")]},
                mpq=True)
    assert set(ans.of("DocumentEntry")) == {data.a, data.e}
    ans = query(database, qid, {"$XDSDocumentEntryHealthcareFacilityTypeCode": [
        q(code(X.HCFT_HOSPITAL))], "$XDSDocumentEntryStatus": [APPROVED],
        "$XDSDocumentEntryEventCodeList": [[q(code(X.EVENT_ANGINA))],
                                           [q(code(data.hypertension))]]},
        "ObjectRef", mpq=True)
    assert ans.ids == [data.b]
    ans = query(database, qid, {"$XDSDocumentEntryStatus": [APPROVED]}, mpq=True)
    assert ans.status == "Failure" and ans.codes == ["XDSStoredQueryMissingParam"]
    ans = query(database, qid, {"$XDSDocumentEntryPatientId": [q(data.pid)]}, mpq=True)
    assert ans.errors == [("XDSStoredQueryMissingParam", "$XDSDocumentEntryStatus")]


def test_find_folders_for_multiple_patients(database):
    subs = []
    for person in (X.ZHANG_SAN, X.LI_SI):
        sub = X.submission(1, folder=True, person=person)
        register(database, sub)
        subs.append(sub)
    qid = QUERY_IDS["FindFoldersForMultiplePatients"]
    ans = query(database, qid, {"$XDSFolderCodeList": [q(code(X.FOLDER_CODE))],
                                "$XDSFolderStatus": [APPROVED]}, mpq=True)
    assert set(ans.of("Folder")) == {s.folders[0] for s in subs}
    ans = query(database, qid, {"$XDSFolderPatientId": [q(subs[1].patient_id)],
                                "$XDSFolderStatus": [APPROVED]}, mpq=True)
    assert ans.of("Folder") == [subs[1].folders[0]]
    ans = query(database, qid, {"$XDSFolderStatus": [APPROVED]}, mpq=True)
    assert ans.codes == ["XDSStoredQueryMissingParam"]
    assert len(ITI51_QUERIES) == 2


# -- over HTTP: the node's /xds/registry endpoint --------------------------------------------------

def test_over_http(node, data):
    from tests.live import live_node
    with live_node(node.settings, node) as live:
        env = build_envelope(ITI_18.action, build_request(QUERY_IDS["FindDocuments"], {
            "$XDSDocumentEntryPatientId": [q(data.pid)],
            "$XDSDocumentEntryStatus": [APPROVED],
            "$XDSDocumentEntryEventCodeList": [[q(code(data.hypertension))]]}, "LeafClass"),
            to=live.http + "/xds/registry")
        r = httpx.post(live.http + "/xds/registry", content=etree.tostring(env),
                       headers={"Content-Type": "application/soap+xml; charset=UTF-8"},
                       timeout=30)
        # and with zeep, a real SOAP 1.2 client, from the service's own WSDL
        client = zeep.Client(live.http + "/xds/registry?wsdl")
        req = build_request(QUERY_IDS["GetFolderAndContents"],
                            {"$XDSFolderEntryUUID": [q(data.f1)]}, "ObjectRef")
        answer = client.service.DocumentRegistry_RegistryStoredQuery(_value_1=list(req))
        mpq = build_request(QUERY_IDS["FindDocumentsForMultiplePatients"], {
            "$XDSDocumentEntryPatientId": [q(data.pid, data.pid2)],
            "$XDSDocumentEntryStatus": [APPROVED]}, "ObjectRef")
        mpq_answer = client.service.DocumentRegistry_MultiPatientStoredQuery(_value_1=list(mpq))
    assert answer["_attr_1"]["status"].endswith(":Success")
    [rol] = answer["_value_1"]
    ids = [r.get("id") for r in rol]
    assert ids[:3] == [data.f1, data.a, data.b] and len(ids) == 5  # and the two HasMember
    assert {r.get("id") for r in mpq_answer["_value_1"][0]} == {data.a, data.b, data.d, data.e}
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    action = root.find(f"{{{SOAP12_NS}}}Header/{{http://www.w3.org/2005/08/addressing}}Action")
    assert action.text == ITI_18.response_action
    resp = root.find(f"{{{SOAP12_NS}}}Body")[0]
    assert_valid(resp)
    assert resp.get("status") == "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
    [doc] = resp.find("{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}RegistryObjectList")
    assert doc.get("id") == data.b
    assert doc.get("home") == node.settings.home_community_id

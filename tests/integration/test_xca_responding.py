"""The XCA Responding Gateway (hie/gateway.py) over real HTTP, on SQLite and PostgreSQL: ITI-38
answered from the local registry with this community's id on every object, XDSUnknownCommunity
for another community, XDSMissingHomeCommunityId for a Get query without one (NIST 15815);
ITI-39 retrieving from the local repository, with the same two errors per DocumentRequest
(PartialSuccess when some documents come back) and the audit records of ITI-38 / ITI-39."""
from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from lxml import etree

from conformance import soap_client as S
from hie.tables import audit_event as t_audit
from hie.transactions import ITI_42
from tests import xdsdata as X
from tests.integration.test_iti43 import TEXT, seed
from tests.live import live_node
from xds_registry import iti42

Q = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
OTHER = "urn:oid:1.2.156.112604.9.9.9"


@pytest.fixture
def gateway(node):
    """A registered DocumentEntry whose document is in this node's repository."""
    cx = X.register_patient(node.db)
    sub = X.submission(1, patient_id=cx)
    assert iti42.register(X.registry_context(node, ITI_42), sub.build()).ok
    [did] = sub.documents
    uid = sub.unique_ids[did]
    seed(node, uid, TEXT, "text/plain")
    with live_node(node.settings, node) as ln:
        yield ln, cx, uid, "urn:oid:" + node.settings.home_community_id.removeprefix("urn:oid:")


def adhoc(query_id: str, slots: dict[str, str], home: str | None) -> etree._Element:
    req = etree.Element(f"{{{Q}}}AdhocQueryRequest", nsmap={"query": Q, "rim": RIM})
    etree.SubElement(req, f"{{{Q}}}ResponseOption", returnType="LeafClass",
                     returnComposedObjects="true")
    q = etree.SubElement(req, f"{{{RIM}}}AdhocQuery", id=query_id)
    if home is not None:
        q.set("home", home)
    for name, value in slots.items():
        slot = etree.SubElement(q, f"{{{RIM}}}Slot", name=name)
        etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = value
    return req


def send(url: str, action: str, body: etree._Element) -> S.SoapReply:
    req = S.plain(action, body, url)
    r = httpx.post(url, content=req.body, headers={"content-type": req.content_type}, timeout=30)
    assert r.status_code == 200, r.text
    return S.read_reply(r.headers["content-type"], r.content)


def test_cross_gateway_query_answers_from_the_registry_with_the_community(gateway):
    ln, cx, uid, home = gateway
    url = ln.http + "/xca/query"
    reply = send(url, "urn:ihe:iti:2007:CrossGatewayQuery", adhoc(FIND_DOCUMENTS, {
        "$XDSDocumentEntryPatientId": f"'{cx}'",
        "$XDSDocumentEntryStatus": "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"},
        None))                                      # a patient query needs no home
    assert reply.action == "urn:ihe:iti:2007:CrossGatewayQueryResponse"
    assert S.registry_status(reply.body) == ("Success", [])
    [eo] = reply.body.iter(f"{{{RIM}}}ExtrinsicObject")
    assert eo.get("home") == home
    by_uid = send(url, "urn:ihe:iti:2007:CrossGatewayQuery",
                  adhoc(GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": f"('{uid}')"}, home))
    assert len(list(by_uid.body.iter(f"{{{RIM}}}ExtrinsicObject"))) == 1


@pytest.mark.parametrize("home, code", [(None, "XDSMissingHomeCommunityId"),
                                        (OTHER, "XDSUnknownCommunity")])
def test_cross_gateway_query_community_errors(gateway, home, code):
    ln, _, uid, _ = gateway
    reply = send(ln.http + "/xca/query", "urn:ihe:iti:2007:CrossGatewayQuery",
                 adhoc(GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": f"('{uid}')"}, home))
    status, errors = S.registry_status(reply.body)
    assert status == "Failure" and [e.code for e in errors] == [code]
    assert not list(reply.body.iter(f"{{{RIM}}}ExtrinsicObject"))


def retrieve_request(repo: str, *docs: tuple[str, str | None]) -> etree._Element:
    root = etree.Element(f"{{{S.XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": S.XDSB})
    for uid, home in docs:
        dr = etree.SubElement(root, f"{{{S.XDSB}}}DocumentRequest")
        if home is not None:
            etree.SubElement(dr, f"{{{S.XDSB}}}HomeCommunityId").text = home
        etree.SubElement(dr, f"{{{S.XDSB}}}RepositoryUniqueId").text = repo
        etree.SubElement(dr, f"{{{S.XDSB}}}DocumentUniqueId").text = uid
    return root


def test_cross_gateway_retrieve(gateway, node):
    ln, _, uid, home = gateway
    url, repo = ln.http + "/xca/retrieve", node.settings.repository_unique_id
    action = "urn:ihe:iti:2007:CrossGatewayRetrieve"
    reply = send(url, action, retrieve_request(repo, (uid, home)))
    assert reply.action == "urn:ihe:iti:2007:CrossGatewayRetrieveResponse"
    assert S.registry_status(reply.body) == ("Success", [])
    [dr] = reply.body.findall(f"{{{S.XDSB}}}DocumentResponse")
    assert dr.findtext(f"{{{S.XDSB}}}HomeCommunityId") == home
    inc = dr.find(f"{{{S.XDSB}}}Document/{{{S.XOP}}}Include")
    assert reply.attachments[inc.get("href").removeprefix("cid:")] == TEXT
    mixed = send(url, action, retrieve_request(repo, (uid, home), ("1.2.3.4", OTHER)))
    status, errors = S.registry_status(mixed.body)
    assert status == "PartialSuccess" and [e.code for e in errors] == ["XDSUnknownCommunity"]
    assert len(mixed.body.findall(f"{{{S.XDSB}}}DocumentResponse")) == 1
    none = send(url, action, retrieve_request(repo, (uid, None)))
    status, errors = S.registry_status(none.body)
    assert status == "Failure" and [e.code for e in errors] == ["XDSMissingHomeCommunityId"]
    assert not none.body.findall(f"{{{S.XDSB}}}DocumentResponse")
    node.audit.stop()                       # flushes the batched audit writer (joins it)
    with node.db.read() as c:
        seen = c.execute(sa.select(t_audit.c.transaction).where(
            t_audit.c.transaction.in_(["ITI-38", "ITI-39", "ITI-43"]))).scalars().all()
    assert seen == ["ITI-39"] * 3            # audited as the gateway's transaction

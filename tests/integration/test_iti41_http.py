"""ITI-41 then ITI-43 over real HTTP on a live node (``POST /xds/repository``, SOAP 1.2 + MTOM/XOP,
ITI TF-2b 3.41.5 / 3.43.5, ITI TF-2x Appendix V): the repository's operations wired into the SOAP
transport, documents streamed both ways, repository refusals answered as a RegistryResponse."""
from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from lxml import etree

from hie.errors import STATUS_FAILURE, STATUS_SUCCESS
from hie.mtom import MtomParser, mtom_stream, new_content_id, xop_include
from hie.soap import Attachment, build_envelope, parse_envelope
from hie.transactions import ITI_41, ITI_43
from hie.xmlsafe import to_bytes
from tests import xdsdata as X
from tests.integration.test_iti41 import PDF, TEXT, known, repo_rows
from tests.live import live_node
from tests.schemas import assert_valid

__all__ = ["known"]

XDSB = "urn:ihe:iti:xds-b:2007"
NS = {"xdsb": XDSB, "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0",
      "xop": "http://www.w3.org/2004/08/xop/include"}


@pytest.fixture
def live(known):
    with live_node(known.settings, known) as ln:
        yield ln


def post_mtom(url: str, action: str, body: etree._Element, atts: list[Attachment]):
    env = build_envelope(action, body, message_id=f"urn:uuid:{uuid.uuid4()}")
    ctype, chunks = mtom_stream(env, atts, action=action)
    with httpx.Client(timeout=120) as c:
        return c.post(url, content=chunks, headers={"content-type": ctype})


def read_mtom(resp, tmp_path):
    parser = MtomParser(resp.headers["content-type"], tmp_path / "client-spool")
    parser.feed(resp.content)
    root, parts = parser.close()
    return parse_envelope(root, parts, mtom=True)


def test_provide_then_retrieve_over_http(live, tmp_path):
    url = live.http + "/xds/repository"
    big = b"".join(i.to_bytes(4, "big") + PDF for i in range(3000))  # ~2 MB: spooled part
    sub = X.Submission()
    sub.document(title="出院小结")
    sub.document(title="出院小结（扫描件）", content=big, mime_type="application/pdf")
    sub.document(title="出院医嘱", content=TEXT, mime_type="text/plain; charset=UTF-8")
    body = sub.provide_and_register(inline=False)
    atts = []
    for d in body.iterfind("xdsb:Document", NS):
        cid = new_content_id()
        d.append(xop_include(cid))
        atts.append(Attachment(cid, "application/octet-stream", data=sub.contents[d.get("id")]))

    r = post_mtom(url, ITI_41.action, body, atts)
    assert r.status_code == 200, r.text
    resp = read_mtom(r, tmp_path) if r.headers["content-type"].startswith("multipart/") \
        else parse_envelope(r.content)
    assert resp.action == ITI_41.response_action
    assert resp.body.get("status") == STATUS_SUCCESS, to_bytes(resp.body)
    assert_valid(resp.body)
    assert len(repo_rows(live.node)) == 3

    req = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB})
    uids = [sub.unique_ids[d] for d in sub.documents] + ["1.2.156.112604.1.1.101.20.404"]
    for uid in uids:
        dr = etree.SubElement(req, f"{{{XDSB}}}DocumentRequest")
        etree.SubElement(dr, f"{{{XDSB}}}RepositoryUniqueId").text = \
            live.settings.repository_unique_id
        etree.SubElement(dr, f"{{{XDSB}}}DocumentUniqueId").text = uid
    r = post_mtom(url, ITI_43.action, req, [])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("multipart/related")
    resp = read_mtom(r, tmp_path)
    assert resp.action == ITI_43.response_action
    rr = resp.body.find("rs:RegistryResponse", NS)
    assert rr.get("status") == "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
    assert [e.get("errorCode") for e in rr.iter(f"{{{NS['rs']}}}RegistryError")] == [
        "XDSDocumentUniqueIdError"]
    got = {}
    for dr in resp.body.iterfind("xdsb:DocumentResponse", NS):
        href = dr.find("xdsb:Document/xop:Include", NS).get("href")
        att = resp.attachments[href[4:]]
        got[dr.findtext("xdsb:DocumentUniqueId", namespaces=NS)] = att.read()
    assert got == {sub.unique_ids[d]: sub.contents[d] for d in sub.documents}
    assert hashlib.sha1(got[sub.unique_ids[sub.documents[1]]]).hexdigest() == X.sha1(big)


def test_repository_refusal_over_http(live):
    url = live.http + "/xds/repository"
    sub = X.submission(1)
    body = sub.provide_and_register()
    body.remove(body.find("xdsb:Document", NS))  # metadata without its document
    env = build_envelope(ITI_41.action, body, message_id=f"urn:uuid:{uuid.uuid4()}")
    with httpx.Client(timeout=60) as c:
        r = c.post(url, content=to_bytes(env),
                   headers={"content-type": "application/soap+xml; charset=UTF-8"})
    assert r.status_code == 200
    resp = parse_envelope(r.content)
    assert resp.body.get("status") == STATUS_FAILURE
    assert [e.get("errorCode") for e in resp.body.iter(f"{{{NS['rs']}}}RegistryError")] == [
        "XDSMissingDocument"]
    assert_valid(resp.body)
    assert repo_rows(live.node) == []

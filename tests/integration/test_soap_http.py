"""SoapService under a real uvicorn server on loopback: plain SOAP, MTOM in and out (5 MB),
faults with the SOAP 1.2 HTTP binding's status codes and no stack traces, RegistryErrors as the
transaction's failure response, audit and metrics for every call, ?wsdl, and zeep as a real
SOAP 1.2 client."""
from __future__ import annotations

import base64
import copy
import logging
import os
import threading
import time
import uuid

import httpx
import pytest
import zeep
from lxml import etree
from starlette.applications import Starlette

from hie.context import MAJOR_FAILURE, SERIOUS_FAILURE, SUCCESS
from hie.errors import SEVERITY_ERROR, STATUS_FAILURE, XDS, RegistryErrors
from hie.mtom import MtomParser, mtom_stream, new_content_id, xop_include
from hie.settings import load_settings
from hie.soap import (SOAP11_NS, SOAP12_NS, WSA_NS, XDSB_NS, XOP_NS, Attachment, SoapResponse,
                      build_envelope, parse_envelope)
from hie.soap_http import SoapService
from hie.transactions import ITI_42, Transaction
from hie.xmlsafe import parse_xml, to_bytes
from tests.serve import serve

ECHO = Transaction("TEST-1", "Echo", "Test Service", "urn:test:Echo", "urn:test:EchoResponse")
BOOM = Transaction("TEST-2", "Boom", "Test Service", "urn:test:Boom", "urn:test:BoomResponse")
INLINE = Transaction("TEST-3", "Inline", "Test Service", "urn:test:Inline",
                     "urn:test:InlineResponse")
TNS = "urn:hie-node:wsdl:echo"
NS = {"s": SOAP12_NS, "a": WSA_NS, "xdsb": XDSB_NS, "xop": XOP_NS,
      "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"}
SECRET = "SECRET-db-password-in-exception"
SPOOLED: list[bool] = []  # per document the echo handler saw: was it a spooled file?


class FakeAudit:
    def __init__(self):
        self.events = []
        self.fail = False

    def record(self, ctx, duration_ms=None):
        if self.fail:
            raise RuntimeError("audit sink down")
        self.events.append((ctx.transaction.id, ctx.outcome, ctx.message_id, ctx.remote_addr,
                            ctx.detail))


class FakeMetrics:
    def __init__(self):
        self.seen = []

    def observe(self, transaction, seconds, outcome=0):
        self.seen.append((transaction, outcome, seconds))


class FakeNode:
    def __init__(self, settings):
        self.settings = settings
        self.audit = FakeAudit()
        self.metrics = FakeMetrics()


def echo(ctx, req):
    """Returns the request body inside TestService_EchoResponse; every xdsb:Document (inline or
    XOP) comes back as an MTOM attachment, read from the request's (possibly spooled) part."""
    out = etree.Element(f"{{{TNS}}}TestService_EchoResponse")
    atts = []
    for doc in req.body.iter(f"{{{XDSB_NS}}}Document"):
        src = req.document(doc)
        SPOOLED.append(src.path is not None and src.path.exists())
        cid = new_content_id()
        if src.path is not None:
            atts.append(Attachment(cid, src.content_type, path=src.path))
        else:
            atts.append(Attachment(cid, src.content_type, data=src.read()))
        ret = etree.SubElement(out, f"{{{XDSB_NS}}}Document", id=doc.get("id", ""))
        ret.append(xop_include(cid))
    ctx.note("110101199003077777^^^&1.2.156.112604.1.2.1&ISO", ["urn:uuid:obj"])
    copy_ = copy.deepcopy(req.body)
    for d in copy_.iter(f"{{{XDSB_NS}}}Document"):
        d.text = None
        for c in list(d):
            d.remove(c)
    out.append(copy_)
    return SoapResponse(out, atts)


def inline(ctx, req):
    resp = echo(ctx, req)
    resp.mtom = False
    return resp


def boom(ctx, req):
    raise RuntimeError(SECRET)


def registry_errors(ctx, req):
    raise RegistryErrors.one(XDS.UnknownPatientId, "患者 张三 unknown", "PID")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("soaphttp")
    settings = load_settings(env={}, data_dir=data, persist_ids=False,
                             spool_threshold=1024 * 1024, max_xml_bytes=8 * 1024 * 1024)
    node = FakeNode(settings)
    svc = SoapService(node, "/echo", "echo", {
        ECHO.action: (ECHO, echo), BOOM.action: (BOOM, boom), INLINE.action: (INLINE, inline),
        ITI_42.action: (ITI_42, registry_errors)})
    app = Starlette(routes=svc.routes())
    with serve(app) as base:
        yield base + "/echo", node


@pytest.fixture
def srv(server):
    url, node = server
    node.audit.events.clear()
    node.audit.fail = False
    node.metrics.seen.clear()
    return url, node


def request_bytes(action=ECHO.action, body=None, message_id=None):
    if body is None:
        body = etree.Element("{urn:test}Hello")
        body.text = "你好 张三"
    return to_bytes(build_envelope(action, body, message_id=message_id or f"urn:uuid:{uuid.uuid4()}"))


def post(url, content, ctype="application/soap+xml; charset=UTF-8", **kw):
    with httpx.Client(timeout=60) as c:
        return c.post(url, content=content, headers={"content-type": ctype}, **kw)


def fault_parts(resp):
    root = parse_xml(resp.content)
    f = root.find("s:Body/s:Fault", NS)
    sub = f.find("s:Code/s:Subcode/s:Value", NS)
    return (f.findtext("s:Code/s:Value", namespaces=NS),
            sub.text if sub is not None else None,
            f.findtext("s:Reason/s:Text", namespaces=NS), root)


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def spool_files(node):
    d = node.settings.data_dir / "spool"
    return list(d.iterdir()) if d.exists() else []


# -- success ---------------------------------------------------------------------------------------

def test_plain_request_response(srv):
    url, node = srv
    mid = "urn:uuid:11111111-2222-3333-4444-555555555555"
    r = post(url, request_bytes(message_id=mid))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/soap+xml")
    resp = parse_envelope(r.content)
    assert resp.action == ECHO.response_action
    root = parse_xml(r.content)
    assert root.findtext("s:Header/a:RelatesTo", namespaces=NS) == mid
    assert resp.body.tag == f"{{{TNS}}}TestService_EchoResponse"
    assert resp.body.findtext("{urn:test}Hello") == "你好 张三"
    assert node.audit.events == [("TEST-1", SUCCESS, mid, "127.0.0.1", "")]
    assert [(t, o) for t, o, _ in node.metrics.seen] == [("TEST-1", SUCCESS)]


def test_gbk_request_without_declaration(srv):
    url, _ = srv
    doc = request_bytes().decode("utf-8").split("?>", 1)[1].encode("gbk")
    r = post(url, doc, ctype="application/soap+xml; charset=GBK")
    assert r.status_code == 200
    assert parse_envelope(r.content).body.findtext("{urn:test}Hello") == "你好 张三"


def _pnr_body(*cids_or_b64):
    body = etree.Element(f"{{{XDSB_NS}}}ProvideAndRegisterDocumentSetRequest")
    for i, v in enumerate(cids_or_b64):
        d = etree.SubElement(body, f"{{{XDSB_NS}}}Document", id=f"Doc{i}")
        if isinstance(v, bytes):
            d.text = base64.b64encode(v).decode()
        else:
            d.append(xop_include(v))
    return body


def _read_mtom(resp, tmp_path):
    p = MtomParser(resp.headers["content-type"], tmp_path, spool_threshold=1 << 30)
    for chunk in resp.iter_bytes():
        p.feed(chunk)
    root, atts = p.close()
    return parse_envelope(root, atts), atts


def test_mtom_in_and_out_5mb(srv, tmp_path):
    url, node = srv
    big = os.urandom(5 * 1024 * 1024)
    small = "<ClinicalDocument>张三</ClinicalDocument>".encode()
    atts = [Attachment("big@test", "application/pdf", data=big),
            Attachment("small@test", "text/xml", data=small)]
    env = build_envelope(ECHO.action, _pnr_body("big@test", "small@test"),
                         message_id="urn:uuid:mtom-1")
    ctype, chunks = mtom_stream(env, atts)
    SPOOLED.clear()
    with httpx.Client(timeout=60) as c:
        # a generator body: httpx sends it chunked, so the server really streams it
        with c.stream("POST", url, content=chunks, headers={"content-type": ctype}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("multipart/related")
            resp, got = _read_mtom(r, tmp_path)
    assert resp.action == ECHO.response_action
    docs = resp.body.findall(f"{{{XDSB_NS}}}Document")
    assert [resp.document(d).read() for d in docs] == [big, small]
    assert resp.document(docs[0]).content_type == "application/pdf"
    # the 5 MB part was spooled, and the spool file is gone once the response went out
    assert SPOOLED == [True, False]
    assert wait_for(lambda: not spool_files(node))
    assert node.audit.events[0][:3] == ("TEST-1", SUCCESS, "urn:uuid:mtom-1")


def test_plain_request_with_inline_document_gets_mtom_response(srv, tmp_path):
    url, node = srv
    data = "出院小结".encode() * 1000
    with httpx.Client(timeout=60) as c:
        with c.stream("POST", url, content=request_bytes(body=_pnr_body(data)),
                      headers={"content-type": "application/soap+xml"}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/")
            resp, _ = _read_mtom(r, tmp_path)
    assert resp.document(resp.body.find(f"{{{XDSB_NS}}}Document")).read() == data


def test_handler_may_force_inline_response(srv):
    url, _ = srv
    r = post(url, request_bytes(action=INLINE.action, body=_pnr_body(b"\x00\x01abc")))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/soap+xml")
    resp = parse_envelope(r.content)
    doc = resp.body.find(f"{{{XDSB_NS}}}Document")
    assert doc.find(f"{{{XOP_NS}}}Include") is None
    assert resp.document(doc).read() == b"\x00\x01abc"


def test_mtom_request_without_attachments_gets_mtom_response(srv, tmp_path):
    url, _ = srv
    ctype, chunks = mtom_stream(build_envelope(ECHO.action, etree.Element("{urn:test}X")), [])
    with httpx.Client(timeout=60) as c:
        with c.stream("POST", url, content=b"".join(chunks), headers={"content-type": ctype}) as r:
            assert r.headers["content-type"].startswith("multipart/related")
            resp, _ = _read_mtom(r, tmp_path)
    assert resp.action == ECHO.response_action


# -- faults ----------------------------------------------------------------------------------------

def test_unknown_action(srv):
    url, node = srv
    r = post(url, request_bytes(action="urn:nobody:Knows", message_id="urn:uuid:u1"))
    assert r.status_code == 400
    code, sub, reason, root = fault_parts(r)
    assert code == "soap:Sender" and sub == "wsa:ActionNotSupported"
    assert root.findtext("s:Header/a:RelatesTo", namespaces=NS) == "urn:uuid:u1"
    assert root.findtext("s:Header/a:Action", namespaces=NS) == WSA_NS + "/fault"
    assert node.audit.events[0][:3] == ("SOAP", SERIOUS_FAILURE, "urn:uuid:u1")
    assert node.metrics.seen[0][:2] == ("SOAP", SERIOUS_FAILURE)


@pytest.mark.parametrize("content", [b"<s:Envelope", b"", b"\xff\xfe\x00garbage",
                                     b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'])
def test_malformed_xml(srv, content):
    url, node = srv
    r = post(url, content)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/soap+xml")
    code, _, reason, _ = fault_parts(r)
    assert code == "soap:Sender"
    assert "Traceback" not in r.text and 'File "' not in r.text and "root:" not in r.text
    assert node.audit.events and node.audit.events[0][1] == SERIOUS_FAILURE


def test_internal_error_is_receiver_fault_without_traceback(srv, caplog):
    url, node = srv
    with caplog.at_level(logging.ERROR, logger="hie.soap"):
        r = post(url, request_bytes(action=BOOM.action))
    assert r.status_code == 500
    code, sub, reason, _ = fault_parts(r)
    assert code == "soap:Receiver" and sub is None
    assert SECRET not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert any(SECRET in (rec.exc_text or "") + str(rec.exc_info) for rec in caplog.records)
    assert node.audit.events[0][:2] == ("TEST-2", MAJOR_FAILURE)


def test_registry_errors_become_registry_response(srv):
    url, node = srv
    r = post(url, request_bytes(action=ITI_42.action))
    assert r.status_code == 200
    resp = parse_envelope(r.content)
    assert resp.action == ITI_42.response_action
    assert resp.body.tag == "{urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0}RegistryResponse"
    assert resp.body.get("status") == STATUS_FAILURE
    err = resp.body.find("rs:RegistryErrorList/rs:RegistryError", NS)
    assert err.get("errorCode") == XDS.UnknownPatientId and err.get("severity") == SEVERITY_ERROR
    assert err.get("codeContext") == "患者 张三 unknown" and err.get("location") == "PID"
    assert node.audit.events[0][:2] == ("ITI-42", SERIOUS_FAILURE)


def test_soap11_gets_version_mismatch(srv):
    url, _ = srv
    doc = f'<e:Envelope xmlns:e="{SOAP11_NS}"><e:Body><x/></e:Body></e:Envelope>'.encode()
    r = post(url, doc, ctype='text/xml; charset=UTF-8')
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/xml")
    assert b"VersionMismatch" in r.content


def test_must_understand(srv):
    url, _ = srv
    env = build_envelope(ECHO.action, etree.Element("{urn:test}X"),
                         headers=[etree.fromstring(
                             f'<x:Q xmlns:x="urn:other" xmlns:s="{SOAP12_NS}" s:mustUnderstand="1"/>')])
    r = post(url, to_bytes(env))
    assert r.status_code == 500
    assert fault_parts(r)[0] == "soap:MustUnderstand"


def test_action_mismatch_with_http_action_parameter(srv):
    url, _ = srv
    r = post(url, request_bytes(), ctype='application/soap+xml; charset=UTF-8; action="urn:other"')
    assert r.status_code == 400 and fault_parts(r)[1] == "wsa:ActionMismatch"
    r = post(url, request_bytes(), ctype=f'application/soap+xml; action="{ECHO.action}"')
    assert r.status_code == 200


def test_request_too_large(srv):
    url, _ = srv
    body = etree.Element("{urn:test}Big")
    body.text = "x" * (9 * 1024 * 1024)
    r = post(url, request_bytes(body=body))
    assert r.status_code == 413 and fault_parts(r)[0] == "soap:Sender"


def test_malformed_mtom(srv):
    url, node = srv
    ct = 'multipart/related; boundary="b"; type="application/xop+xml"'
    r = post(url, b"--b\r\nContent-ID: <r>\r\n\r\n<x/>\r\n--b\r\nContent-ID: <a>\r\n\r\n"
             + b"z" * (2 * 1024 * 1024), ctype=ct)  # no closing boundary; part spooled
    assert r.status_code == 400 and "MTOM" in fault_parts(r)[2]
    assert not spool_files(node)
    r = post(url, b"whatever", ctype="multipart/related")
    assert r.status_code == 400
    r = post(url, b"whatever", ctype="multipart/form-data; boundary=x")
    assert r.status_code == 400


def test_mtom_dangling_xop_include(srv):
    url, _ = srv
    ctype, chunks = mtom_stream(build_envelope(ECHO.action, _pnr_body("missing@x")), [])
    r = post(url, b"".join(chunks), ctype=ctype)
    assert r.status_code == 400 and "not in the message" in fault_parts(r)[2]


def test_audit_failure_does_not_break_the_call(srv):
    url, node = srv
    node.audit.fail = True
    r = post(url, request_bytes())
    assert r.status_code == 200
    assert node.metrics.seen[0][:2] == ("TEST-1", SUCCESS)


def test_concurrent_calls(srv):
    url, node = srv
    results = []

    def worker():
        results.append(post(url, request_bytes()).status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8 and len(node.audit.events) == 8


# -- WSDL and a real SOAP client -------------------------------------------------------------------

def test_wsdl(srv):
    url, _ = srv
    r = httpx.get(url + "?wsdl")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    root = parse_xml(r.content)
    assert root.tag == "{http://schemas.xmlsoap.org/wsdl/}definitions"
    loc = root.find(".//{http://schemas.xmlsoap.org/wsdl/soap12/}address").get("location")
    assert loc == url
    assert httpx.get(url + "?WSDL").status_code == 200
    assert httpx.get(url).status_code == 405
    assert httpx.head(url + "?wsdl").status_code == 200


def test_zeep_client_calls_the_service(srv):
    url, node = srv
    client = zeep.Client(url + "?wsdl")
    hello = etree.Element("{urn:test}Hello")
    hello.text = "李四"
    result = client.service.TestService_Echo(_value_1=[hello])
    inner = result["_value_1"][0]["_value_1"][0]
    assert inner.tag == "{urn:test}Hello" and inner.text == "李四"
    assert node.audit.events[0][0] == "TEST-1" and node.audit.events[0][2].startswith("urn:uuid:")

"""ITI-41 with a remote Document Registry (``HIE_REGISTRY_URL``): the repository registers over
SOAP 1.2 with ITI-42 (ITI TF-2b 3.41.4.1.3, 3.42.5) to a real HTTP server on loopback that runs the
node's registry code, and reports XDSRegistryNotAvailable / XDSRegistryError when the exchange
itself fails.  When the registry refuses, nothing stays stored."""
from __future__ import annotations

import dataclasses
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hie.errors import STATUS_FAILURE, STATUS_SUCCESS, RegistryErrors
from hie.mtom import mtom_stream
from hie.soap import build_envelope, build_fault, parse_envelope
from hie.errors import SoapFault
from hie.transactions import ITI_42
from hie.xmlsafe import to_bytes
from tests import xdsdata as X
from tests.integration.test_iti41 import (PDF, TEXT, assert_nothing_stored, blob_files,
                                          inline_request, known, provide, repo_rows, retrieve)
from xds_registry import iti42
from xds_registry import client as registry_client

__all__ = ["known"]  # the fixture, re-used


class FakeRegistry:
    """A registry on 127.0.0.1: ``mode`` decides the answer — ``registry`` (the node's real
    ITI-42 code on the test database), ``mtom`` (same, answered as MTOM), ``fault``, ``503``,
    ``html``."""

    def __init__(self, node):
        self.node = node
        self.mode = "registry"
        self.requests: list = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), data))
                status, ctype, body = outer.answer(self.headers.get("Content-Type", ""), data)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/xds/registry"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, ctype: str, data: bytes) -> tuple[int, str, bytes]:
        if self.mode == "503":
            return 503, "text/plain", "服务暂不可用".encode()
        if self.mode == "html":
            return 200, "text/html", b"<html><body>login</body></html>"
        req = parse_envelope(data)
        if self.mode == "fault":
            return 500, "application/soap+xml", build_fault(SoapFault.receiver("数据库异常"),
                                                            req.message_id)
        ctx = X.registry_context(X.StubNode(self.node.db, self.node.settings), ITI_42)
        resp = iti42.handle(ctx, req)
        env = build_envelope(ITI_42.response_action, resp.body, relates_to=req.message_id)
        if self.mode == "mtom":
            ctype, chunks = mtom_stream(env, [], action=ITI_42.response_action)
            return 200, ctype, b"".join(chunks)
        return 200, "application/soap+xml; charset=UTF-8", to_bytes(env)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def remote(known):
    reg = FakeRegistry(known)
    known.settings = dataclasses.replace(known.settings, registry_url=reg.url)
    yield reg
    reg.close()


def test_remote_registration_success(known, remote):
    node = known
    sub = X.Submission()
    sub.document(content=TEXT, mime_type="text/plain; charset=UTF-8", hash=None, size=None)
    sub.document(content=PDF, mime_type="application/pdf")
    ctx, resp = provide(node, inline_request(sub.provide_and_register()))
    assert resp.status == STATUS_SUCCESS, resp.errors
    [(headers, data)] = remote.requests
    assert headers["Content-Type"].startswith("application/soap+xml")
    assert ITI_42.action in headers["Content-Type"]
    sent = parse_envelope(data)
    assert sent.action == ITI_42.action and sent.to == remote.url
    # the metadata the registry got carries the repository's slots
    values = {s.get("name"): s.findtext(".//{*}Value") for s in sent.body.iter("{*}Slot")}
    assert values["repositoryUniqueId"] == node.settings.repository_unique_id
    assert len(repo_rows(node)) == 2
    uids = [sub.unique_ids[d] for d in sub.documents]
    assert retrieve(node, uids) == {sub.unique_ids[d]: sub.contents[d] for d in sub.documents}


def test_remote_registry_answering_mtom(known, remote):
    remote.mode = "mtom"
    ctx, resp = provide(known, inline_request(X.submission(1).provide_and_register()))
    assert resp.status == STATUS_SUCCESS, resp.errors
    assert len(repo_rows(known)) == 1


def test_remote_registry_refusal_is_passed_through_and_nothing_stays(known, remote):
    sub = X.submission(2, patient_id=X.new_patient())
    ctx, resp = provide(known, inline_request(sub.provide_and_register()))
    assert resp.status == STATUS_FAILURE
    assert "XDSUnknownPatientId" in [e.error_code for e in resp.errors]
    assert_nothing_stored(known)


@pytest.mark.parametrize("mode, code", [("fault", "XDSRegistryError"),
                                        ("html", "XDSRegistryError"),
                                        ("503", "XDSRegistryNotAvailable")])
def test_remote_registry_misbehaving(known, remote, mode, code):
    remote.mode = mode
    ctx, resp = provide(known, inline_request(X.submission(1).provide_and_register()))
    assert [e.error_code for e in resp.errors] == [code]
    assert_nothing_stored(known)


def test_remote_registry_unreachable(known):
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    known.settings = dataclasses.replace(known.settings,
                                         registry_url=f"http://127.0.0.1:{port}/xds/registry")
    before = blob_files(known)
    ctx, resp = provide(known, inline_request(X.submission(1).provide_and_register()))
    assert resp.status == STATUS_FAILURE
    assert [e.error_code for e in resp.errors] == ["XDSRegistryNotAvailable"]
    assert_nothing_stored(known, before)


def test_client_parses_registry_responses():
    ok = build_envelope(ITI_42.response_action, X.etree.fromstring(
        b'<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" '
        b'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/>'))
    resp = registry_client.parse_response(200, "application/soap+xml", to_bytes(ok))
    assert resp.status == STATUS_SUCCESS
    with pytest.raises(RegistryErrors) as exc:
        registry_client.parse_response(200, "application/soap+xml", b"not xml")
    assert exc.value.errors[0].error_code == "XDSRegistryError"
    with pytest.raises(RegistryErrors) as exc:
        registry_client.parse_response(504, "text/html", b"")
    assert exc.value.errors[0].error_code == "XDSRegistryNotAvailable"
    bad_status = build_envelope(ITI_42.response_action, X.etree.fromstring(
        b'<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" '
        b'status="maybe"/>'))
    with pytest.raises(RegistryErrors) as exc:
        registry_client.parse_response(200, "application/soap+xml", to_bytes(bad_status))
    assert exc.value.errors[0].error_code == "XDSRegistryError"

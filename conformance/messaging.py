"""Runs a data suite (:mod:`conformance.suite`) against a target over the wire: HL7 v2 over
MLLP (ITI TF-2x C.2.1), HL7 v3 over SOAP 1.2 (ITI TF-2x V), FHIR over HTTP, and notifications
the target sends back (ITI-10 ADT^A31) received at the runner's own MLLP listener.

Each test runs its steps in order; a step's messages get the run's values (``${...}``) and the
values earlier steps saved; its expectations (:mod:`conformance.expect`) become the verdicts
of the same results the NIST runner reports (:class:`conformance.engine.TestResult`), so the
console, JUnit and HTML reports are the same.  The first failed step ends its test.  The runner
imports nothing of the node.
"""
from __future__ import annotations

import json
import queue
import socketserver
import threading
import time
from dataclasses import dataclass, field
from uuid import uuid4
from typing import Any, Callable

from conformance import expect, hl7feed, soap_client, xmlin
from conformance.checks import Verdict
from conformance.engine import (Endpoints, RunResult, SectionResult, StepResult, TestResult,
                                clip, step_error)
from conformance.suite import Step, Suite, SuiteError, SuiteTest, Values

ACK_TIMEOUT = 30.0


class _Inbox:
    """What a listener received, for the steps that wait for it."""

    messages: queue.Queue
    kept: list

    def wait(self, accept: Callable[[Any], bool], seconds: float) -> Any | None:
        """The first message (kept earlier or arriving within ``seconds``) ``accept`` takes;
        those it does not take are kept for later steps."""
        for i, m in enumerate(self.kept):
            if accept(m):
                return self.kept.pop(i)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                m = self.messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if accept(m):
                return m
            self.kept.append(m)
        return None


class _ReusableTCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True      # a rerun binds the same --listen port at once


class Listener(_Inbox):
    """An MLLP receiver (a PIX Consumer for ITI-10): keeps each message, answers ACK AA."""

    def __init__(self, host: str, port: int):
        self.messages: "queue.Queue[str]" = queue.Queue()
        received = self.messages

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = b""
                self.request.settimeout(60)
                while True:
                    try:
                        chunk = self.request.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    data += chunk
                    while hl7feed.END in data:
                        block, _, data = data.partition(hl7feed.END)
                        text = block.lstrip(hl7feed.START).decode("utf-8", errors="replace")
                        received.put(text)
                        self.request.sendall(hl7feed.frame(ack_for(text)))

        self.server = _ReusableTCPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.kept: list[str] = []

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HttpListener(_Inbox):
    """A SOAP 1.2 receiver (an HL7 v3 PIX Consumer for ITI-46): keeps each envelope, answers
    MCCI_IN000002UV01 ``AA`` naming the message received (ITI TF-2b 3.46.4.2)."""

    def __init__(self, host: str, port: int):
        import http.server
        self.messages: "queue.Queue[bytes]" = queue.Queue()
        received = self.messages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:   # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                received.put(body)
                out = v3_ack_for(body)
                self.send_response(200)
                self.send_header("content-type", "application/soap+xml; charset=UTF-8")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args) -> None:
                return

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.kept: list[bytes] = []

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def v3_ack_for(envelope_bytes: bytes) -> bytes:
    """A SOAP envelope holding MCCI_IN000002UV01 AA for the HL7 v3 message in ``envelope``."""
    from lxml import etree
    v3 = expect.NS["hl7"]
    target = ("", "")
    try:
        body = soap_client.read_reply("application/soap+xml", envelope_bytes).body
        mid = body.find(f"{{{v3}}}id") if body is not None else None
        if mid is not None:
            target = (mid.get("root", ""), mid.get("extension", ""))
    except (soap_client.ReplyError, ValueError):
        pass
    ack = etree.Element(f"{{{v3}}}MCCI_IN000002UV01", nsmap={None: v3}, ITSVersion="XML_1.0")
    etree.SubElement(ack, f"{{{v3}}}id", root="1.2.156.112604.1.98", extension=str(uuid4()))
    etree.SubElement(ack, f"{{{v3}}}creationTime",
                     value=time.strftime("%Y%m%d%H%M%S", time.gmtime()))
    etree.SubElement(ack, f"{{{v3}}}interactionId", root="2.16.840.1.113883.1.6",
                     extension="MCCI_IN000002UV01")
    etree.SubElement(ack, f"{{{v3}}}processingCode", code="P")
    etree.SubElement(ack, f"{{{v3}}}processingModeCode", code="T")
    etree.SubElement(ack, f"{{{v3}}}acceptAckCode", code="NE")
    for role, type_code in (("receiver", "RCV"), ("sender", "SND")):
        dev = etree.SubElement(etree.SubElement(ack, f"{{{v3}}}{role}", typeCode=type_code),
                               f"{{{v3}}}device", classCode="DEV", determinerCode="INSTANCE")
        etree.SubElement(dev, f"{{{v3}}}id", root="1.2.156.112604.1.98")
    a = etree.SubElement(ack, f"{{{v3}}}acknowledgement")
    etree.SubElement(a, f"{{{v3}}}typeCode", code="AA")
    tm = etree.SubElement(a, f"{{{v3}}}targetMessage")
    etree.SubElement(tm, f"{{{v3}}}id", root=target[0], extension=target[1])
    env, _ = soap_client.envelope("urn:hl7-org:v3:MCCI_IN000002UV01", ack, soap_client.ANONYMOUS)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def ack_for(message: str) -> str:
    """ACK^<event> AA for a received HL7 v2 message (MSA-2 its control id)."""
    msh = next((s for s in message.split("\r") if s.startswith("MSH")), "MSH|^~\\&")
    f = msh.split("|") + [""] * 12
    event = f[8].split("^")[1] if "^" in f[8] else ""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    return (f"MSH|^~\\&|{f[4]}|{f[5]}|{f[2]}|{f[3]}|{stamp}||ACK^{event}^ACK|A{f[9]}|P|"
            f"{f[11] or '2.5'}\rMSA|AA|{f[9]}\r")


@dataclass
class Context:
    """One run of a suite: where to send, the values, the listener."""

    suite: Suite
    values: Values
    endpoints: dict[str, str]
    mllp: tuple[str, int] | None = None
    listener: Listener | None = None
    timeout: float = 60.0
    http_listener: HttpListener | None = None
    saved: dict[str, str] = field(default_factory=dict)


class SuiteRunner:
    def __init__(self, ctx: Context, progress: Callable[[TestResult, int, int], None] | None
                 = None):
        import httpx
        self.ctx = ctx
        self.progress = progress
        self.http = httpx.Client(timeout=ctx.timeout)

    def close(self) -> None:
        self.http.close()

    def run(self, only: list[str] | None = None) -> RunResult:
        tests = self.ctx.suite.tests
        if only:
            unknown = set(only) - {t.id for t in tests}
            if unknown:
                raise SuiteError(f"not in suite {self.ctx.suite.name}: "
                                 + ", ".join(sorted(unknown)))
            tests = [t for t in tests if t.id in only]
        result = RunResult(self.ctx.suite.name, Endpoints(mllp=self.ctx.mllp))
        result.where = "; ".join([f"{k} {self._expand(v)}" for k, v in
                                  self.ctx.endpoints.items()] +
                                 ([f"MLLP {self.ctx.mllp[0]}:{self.ctx.mllp[1]}"]
                                  if self.ctx.mllp else []) +
                                 [f"listening {x.address[0]}:{x.address[1]}"
                                  for x in (self.ctx.listener, self.ctx.http_listener) if x])
        start = time.monotonic()
        for n, test in enumerate(tests, 1):
            tr = self.run_test(test)
            result.tests.append(tr)
            if self.progress:
                self.progress(tr, n, len(tests))
        result.seconds = time.monotonic() - start
        return result

    def run_test(self, test: SuiteTest) -> TestResult:
        start = time.monotonic()
        section = SectionResult(test.tf or "steps")
        tr = TestResult(test.id, test.title, self.ctx.suite.name, [section])
        for step in test.steps:
            res = self.run_step(step)
            section.steps.append(res)
            if not res.passed:
                break
        tr.seconds = time.monotonic() - start
        return tr

    def run_step(self, step: Step) -> StepResult:
        res = StepResult(step.id, step.kind, "", step.goal)
        start = time.monotonic()
        try:
            response = getattr(self, f"_{step.kind}")(step, res)
            for line in step.expect:
                res.verdicts.append(expect.check(self._expand(line), response))
            for name, path in step.save.items():
                values = [v for v in expect.values_at(path, response) if v]
                if values:
                    self.ctx.saved[name] = values[0]
                else:
                    res.notes.append(f"nothing to save as {name} at {path}")
        except SuiteError as exc:
            res.error = f"the suite: {exc}"
        except Exception as exc:  # noqa: BLE001 - transport and the like: the step fails
            res.error = step_error(exc, res.url)
        res.seconds = time.monotonic() - start
        return res

    # -- the kinds of step -------------------------------------------------------------------
    def _expand(self, text: str) -> str:
        return self.ctx.values.expand(text, self.ctx.saved)

    def _endpoint(self, name: str) -> str:
        if name not in self.ctx.endpoints:
            raise SuiteError(f"no endpoint {name!r} (give --endpoint {name}=URL)")
        return self._expand(self.ctx.endpoints[name])

    def _mllp(self, step: Step, res: StepResult) -> expect.Response:
        if self.ctx.mllp is None:
            raise SuiteError("an HL7 v2 step needs --mllp host:port")
        message = "\r".join(line.strip() for line in self._expand(str(step.spec)).splitlines()
                            if line.strip()) + "\r"
        host, port = self.ctx.mllp
        res.url = f"mllp://{host}:{port}"
        res.sent = message.encode("utf-8")
        reply = hl7feed.exchange(host, port, message, ACK_TIMEOUT)
        res.received = clip(reply.encode("utf-8"))
        return expect.Response(hl7=reply)

    def _soap(self, step: Step, res: StepResult) -> expect.Response:
        spec = step.spec if isinstance(step.spec, dict) else {}
        for key in ("endpoint", "action", "body"):
            if key not in spec:
                raise SuiteError(f"a soap step has {key}")
        url = self._endpoint(spec["endpoint"])
        body = xmlin.parse(self._expand(spec["body"]).strip().encode("utf-8"))
        request = soap_client.plain(self._expand(spec["action"]), body, url)
        res.url, res.sent = url, clip(request.body)
        r = self.http.post(url, content=request.body,
                           headers={"content-type": request.content_type})
        res.received = clip(r.content)
        reply = soap_client.read_reply(r.headers.get("content-type", ""), r.content)
        env = reply.body.getroottree().getroot() if reply.body is not None else None
        return expect.Response(xml=env, status=r.status_code,
                               headers={k.lower(): v for k, v in r.headers.items()})

    def _http(self, step: Step, res: StepResult) -> expect.Response:
        spec = step.spec if isinstance(step.spec, dict) else {}
        url = self._endpoint(spec.get("endpoint", "")) + self._expand(spec.get("path", ""))
        method = spec.get("method", "GET").upper()
        headers = {"accept": spec.get("accept", "application/fhir+json")}
        content = None
        if "body" in spec:
            content = self._expand(spec["body"]).encode("utf-8")
            headers["content-type"] = spec.get("content_type", "application/fhir+json")
        res.url = f"{method} {url}"
        res.sent = clip(f"{method} {url}\n".encode() + (content or b""))
        r = self.http.request(method, url, content=content, headers=headers)
        res.received = clip(f"HTTP {r.status_code}\n".encode() + r.content)
        doc = None
        if "json" in r.headers.get("content-type", ""):
            try:
                doc = json.loads(r.content)
            except ValueError:
                doc = None
        return expect.Response(status=r.status_code, json=doc,
                               headers={k.lower(): v for k, v in r.headers.items()})

    def _await(self, step: Step, res: StepResult) -> expect.Response:
        spec = step.spec if isinstance(step.spec, dict) else {}
        seconds = float(spec.get("seconds", 30))
        if "soap" in spec:
            return self._await_soap(self._expand(str(spec["soap"])), seconds, res)
        if self.ctx.listener is None:
            raise SuiteError("this step waits for a message the target sends: give --listen "
                             "host:port and configure the target to send there")
        line = self._expand(str(spec.get("mllp", "MSH present")))
        res.url = "mllp://{}:{} (listening)".format(*self.ctx.listener.address[:2])
        res.sent = f"waiting up to {seconds:.0f} s for a message where {line}".encode()
        message = self.ctx.listener.wait(
            lambda m: expect.check(line, expect.Response(hl7=m)).passed, seconds)
        if message is None:
            res.verdicts.append(Verdict(f"a message where {line}", False,
                                        f"none arrived within {seconds:.0f} s"))
            return expect.Response()
        res.received = message.encode("utf-8")
        return expect.Response(hl7=message)

    def _await_soap(self, line: str, seconds: float, res: StepResult) -> expect.Response:
        if self.ctx.http_listener is None:
            raise SuiteError("this step waits for a SOAP message the target sends: give "
                             "--listen-http host:port and configure the target to send there")
        res.url = "http://{}:{} (listening)".format(*self.ctx.http_listener.address[:2])
        res.sent = f"waiting up to {seconds:.0f} s for a SOAP message where {line}".encode()

        def envelope(data: bytes):
            try:
                return xmlin.parse(data)
            except Exception:  # noqa: BLE001 - not XML: not the message waited for
                return None
        message = self.ctx.http_listener.wait(
            lambda m: expect.check(line, expect.Response(xml=envelope(m))).passed, seconds)
        if message is None:
            res.verdicts.append(Verdict(f"a SOAP message where {line}", False,
                                        f"none arrived within {seconds:.0f} s"))
            return expect.Response()
        res.received = message
        return expect.Response(xml=envelope(message))


__all__ = ["Listener", "HttpListener", "ack_for", "v3_ack_for", "Context", "SuiteRunner"]

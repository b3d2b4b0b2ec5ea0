"""The SOAP 1.2 HTTP transport: an ASGI (Starlette) endpoint per SOAP service (SOAP 1.2 Part 2 §7
"SOAP HTTP Binding", WS-Addressing 1.0 SOAP Binding §3-§6, SOAP MTOM §4 / XOP 1.0, ITI TF-2x
Appendix V.3).

``POST <path>`` takes a plain ``application/soap+xml`` message (buffered, at most
``settings.max_xml_bytes``) or an MTOM ``multipart/related`` package (streamed through
:class:`hie.mtom.MtomParser`; large attachments are spooled to ``<data dir>/spool`` and deleted
once the response has been sent, so a handler that wants to keep one moves or copies its file).
The message is decoded with :func:`hie.soap.parse_envelope` (the ``charset`` parameter of the
Content-Type, or of the MTOM root part, applies when the XML does not declare its encoding,
XML 1.0 Appendix F / RFC 7303 §3.2), dispatched on ``wsa:Action`` to the operation's handler
(run in a worker thread), and the handler's :class:`SoapResponse` is sent with
the transaction's response action and ``wsa:RelatesTo`` = the request's ``wsa:MessageID``, as
MTOM when the response has attachments or the request came as MTOM (streamed), else as plain
SOAP.  ``GET <path>?wsdl`` returns the WSDL (:mod:`hie.wsdl`).

Faults (Part 2 §7.5.1.2, Table 20): ``env:Sender`` -> HTTP 400, every other fault -> HTTP 500;
a request body over the size bound gets a Sender fault with HTTP 413.  A handler's
:class:`~hie.errors.RegistryErrors` becomes the transaction's own failure response
(``rs:RegistryResponse`` status Failure with a RegistryErrorList, wrapped as the transaction's
response element requires, ITI TF-3 4.2.4).  Any other exception is logged with its traceback
here and answered with a Receiver fault whose reason is generic: no stack trace reaches a client.

Every call, success or fault, ends in one ``node.audit.record(ctx, duration_ms=...)`` (before
the response leaves, DESIGN.md principle 6) and one ``node.metrics.observe(transaction_id,
seconds, outcome)``; their failures are logged and never break the call (principle 10).  Requests refused before
dispatch are recorded under a synthetic transaction with id ``"SOAP"``.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from lxml import etree
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from hie.context import MAJOR_FAILURE, SERIOUS_FAILURE, Context
from hie.errors import (SEVERITY_ERROR, STATUS_FAILURE, RegistryErrors, SoapFault)
from hie.mtom import MtomError, MtomParser, inline_xop, mtom_stream, parse_content_type
from hie.soap import (WSA_NS, SoapRequest, SoapResponse, build_envelope, build_fault,
                      build_fault11, envelope11_bytes, envelope_bytes, fault_media_type,
                      parse_envelope)
from hie.transactions import Transaction
from hie.wsdl import QUERY_NS, RS_NS, XDSB_NS, message_elements, wsdl_for
from hie.xmlsafe import to_bytes

log = logging.getLogger("hie.soap")

RIM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"

Handler = Callable[[Context, SoapRequest], SoapResponse]
FEED_BATCH = 1024 * 1024
INLINE_MAX_BYTES = 64 * 1024  # plain envelopes up to this size are parsed on the event loop
SOAP_MEDIA_TYPE = "application/soap+xml; charset=UTF-8"
SOAP11_MEDIA_TYPE = "text/xml; charset=UTF-8"


class RequestTooLarge(SoapFault):
    """A Sender fault sent with HTTP 413."""

    http_status = 413

    def __init__(self, limit: int):
        super().__init__("Sender", f"request larger than {limit} bytes")


def http_status(fault: SoapFault) -> int:
    """SOAP 1.2 Part 2 §7.5.1.2: Sender faults are 400, all others 500."""
    status = getattr(fault, "http_status", None)
    if status:
        return int(status)
    return 400 if fault.code == "Sender" else 500


@dataclass
class _Call:
    started: float
    remote_addr: str
    parser: MtomParser | None = None
    req: SoapRequest | None = None
    ctx: Context | None = None
    fault: SoapFault | None = None
    soap11: bool = False               # answer in SOAP 1.1 (faults too)
    soap_action: str | None = None     # the HTTP SOAPAction, on endpoints that take SOAP 1.1


class _Finally:
    """ASGI wrapper: send ``inner``, then run ``cleanup`` whatever happened (client gone too)."""

    def __init__(self, inner: Response, cleanup: Callable[[], None]):
        self.inner = inner
        self.cleanup = cleanup

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            try:
                await run_in_threadpool(self.cleanup)
            except Exception:  # pragma: no cover - best effort
                log.exception("SOAP: cleanup after the response failed")


class SoapService:
    """One SOAP endpoint: ``operations`` maps a request ``wsa:Action`` to ``(Transaction,
    handler)``; ``handler(ctx, req) -> SoapResponse`` is synchronous and runs in a thread.

    With ``soap11`` the endpoint also takes SOAP 1.1 (``text/xml`` with ``SOAPAction``), the
    binding of the WebService clients of Chinese platforms, and answers it in SOAP 1.1 (faults
    with HTTP 500, SOAP 1.1 §6.2); an operation is then found by its action, else by the last
    segment of the SOAPAction or by the body element's name (``.../HIPMessageServer``,
    ``PRPA_IN201301UV02``).  The IHE endpoints keep SOAP 1.2 only (ITI TF-2x V.3.1)."""

    def __init__(self, node: Any, path: str, name: str,
                 operations: dict[str, tuple[Transaction, Handler]], soap11: bool = False):
        self.node = node
        self.path = path
        self.name = name
        self.soap11 = soap11
        self.operations = dict(operations)
        for action, (tx, handler) in self.operations.items():
            if not callable(handler):
                raise TypeError(f"handler for {action} is not callable")
        self._wsdl: dict[str, bytes] = {}

    def routes(self) -> list[Route]:
        return [Route(self.path, self.endpoint, methods=["GET", "POST"],
                      name=f"soap:{self.name}")]

    async def endpoint(self, request: Request):
        if request.method in ("GET", "HEAD"):
            return await self._get(request)
        return await self._post(request)

    # -- GET ?wsdl ---------------------------------------------------------------------------
    async def _get(self, request: Request) -> Response:
        if not any(k.lower() == "wsdl" for k in request.query_params.keys()):
            return PlainTextResponse(
                f"{self.name}: POST SOAP 1.2 messages here; GET {self.path}?wsdl describes them\n",
                status_code=405, headers={"Allow": "POST"})
        url = str(request.url.replace(query=""))
        doc = self._wsdl.get(url)
        if doc is None:
            doc = self._wsdl[url] = wsdl_for(self.name, url, self.operations)
        return Response(doc, media_type="text/xml; charset=UTF-8")

    # -- POST ----------------------------------------------------------------------------------
    async def _post(self, request: Request):
        call = _Call(time.perf_counter(), request.client.host if request.client else "")
        try:
            try:
                response = await self._process(request, call)
            except SoapFault as fault:
                response = self._fault(fault, call)
            except ClientDisconnect:
                log.info("SOAP %s: client %s went away", self.name, call.remote_addr)
                response = self._fault(SoapFault.sender("request body incomplete"), call)
            except Exception as exc:
                response = self._internal_error(call, exc)
            ctx = call.ctx if call.ctx is not None else self._fallback_context(call)
            ctx.finish(time.perf_counter() - call.started)  # queues only: no I/O here
        except BaseException:  # cancelled: still remove the spooled files
            if call.parser is not None:
                call.parser.cleanup()
            raise
        parser = call.parser
        if parser is None:
            return response
        return _Finally(response, parser.cleanup)

    async def _process(self, request: Request, call: _Call) -> Response:
        settings = self.node.settings
        limit = int(settings.max_xml_bytes)
        ctype = request.headers.get("content-type", "")
        try:
            mime, params = parse_content_type(ctype)
        except MtomError as exc:
            raise SoapFault.sender(exc.reason) from None
        if mime == "multipart/related":
            root, attachments = await self._read_mtom(request, ctype, call, limit)
            mtom = True
            try:
                charset = parse_content_type(call.parser.root_content_type or "")[1].get("charset")
            except MtomError:
                charset = None
        elif mime.startswith("multipart/"):
            raise SoapFault.sender(f"{mime} is not accepted: use multipart/related (MTOM/XOP)")
        else:
            call.soap11 = self.soap11 and mime == "text/xml"
            root, attachments, mtom = await self._read_plain(request, limit), {}, False
            charset = params.get("charset")
            if self.soap11:
                call.soap_action = request.headers.get("soapaction", "")
        http_action = params.get("action", "").strip() if not mtom else ""
        if not mtom and len(root) <= INLINE_MAX_BYTES:
            # a small envelope parses in well under a millisecond: route it here, and run the
            # handler here too when its transaction is a bounded read-only query (ITI-18/51) —
            # handing it to a thread would cost more than the query (HIE_INLINE_QUERIES)
            tx, handler, req = self._route(call, root, attachments, mtom, charset, limit,
                                           http_action)
            if tx.inline and getattr(self.node.settings, "inline_queries", True):
                return self._handle(call, tx, handler, req)
            return await run_in_threadpool(self._handle, call, tx, handler, req)
        # one worker-thread hop for parse, handler and rendering together
        return await run_in_threadpool(self._dispatch, call, root, attachments, mtom, charset,
                                       limit, http_action)

    def _dispatch(self, call: _Call, root: bytes, attachments: dict, mtom: bool,
                  charset: str | None, limit: int, http_action: str) -> Response:
        tx, handler, req = self._route(call, root, attachments, mtom, charset, limit,
                                       http_action)
        return self._handle(call, tx, handler, req)

    def _route(self, call: _Call, root: bytes, attachments: dict, mtom: bool,
               charset: str | None, limit: int, http_action: str):
        req = parse_envelope(root, attachments, max_bytes=limit, mtom=mtom, charset=charset,
                             soap11_action=call.soap_action)
        call.req = req
        call.soap11 = req.soap11
        if http_action and http_action != req.action and not req.soap11:  # WS-A SOAP Binding §3
            fault = SoapFault("Sender", "the HTTP action parameter differs from wsa:Action",
                              (WSA_NS, "ActionMismatch"))
            fault.detail = req.action
            raise fault
        entry = self.operations.get(req.action)
        if entry is None and req.soap11:
            entry = self._by_name(req)
        if entry is None:
            fault = SoapFault.action_not_supported(req.action)
            fault.detail = req.action
            raise fault
        tx, handler = entry
        call.ctx = Context(self.node, tx, remote_addr=call.remote_addr,
                           message_id=req.message_id)
        return tx, handler, req

    def _by_name(self, req: SoapRequest) -> tuple[Transaction, Handler] | None:
        """A SOAP 1.1 request's operation, by the last segment of its SOAPAction or else by the
        name of its body element."""
        def last(text: str) -> str:
            return re.split(r"[:/#]", text.rstrip("/"))[-1] if text else ""
        for wanted in (last(req.action), etree.QName(req.body).localname):
            for action, entry in self.operations.items():
                if wanted and last(action) == wanted:
                    return entry
        return None

    def _handle(self, call: _Call, tx: Transaction, handler: Handler,
                req: SoapRequest) -> Response:
        ctx = call.ctx
        try:
            resp = handler(ctx, req)
        except RegistryErrors as exc:
            body = registry_failure_body(tx, exc)
            if body is None:
                raise SoapFault.sender(str(exc)) from None
            ctx.fail(SERIOUS_FAILURE, str(exc))
            resp = SoapResponse(body)
        if not isinstance(resp, SoapResponse):
            raise TypeError(f"handler for {req.action} returned {type(resp).__name__}, "
                            "not SoapResponse")
        return self._render(tx, req, resp)

    async def _read_mtom(self, request: Request, ctype: str, call: _Call, limit: int):
        settings = self.node.settings
        try:
            parser = MtomParser(ctype, settings.data_dir / "spool",
                                int(settings.spool_threshold), limit)
        except MtomError as exc:
            raise SoapFault.sender(exc.reason) from None
        call.parser = parser
        batch: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                if not chunk:
                    continue
                batch.append(chunk)
                size += len(chunk)
                if size >= FEED_BATCH:  # disk writes happen in a worker thread
                    await run_in_threadpool(parser.feed, b"".join(batch))
                    batch.clear()
                    size = 0
            if batch:
                await run_in_threadpool(parser.feed, b"".join(batch))
            return await run_in_threadpool(parser.close)
        except MtomError as exc:
            raise SoapFault.sender(f"malformed MTOM package: {exc.reason}") from None
        except BaseException:
            parser.abort()
            raise

    async def _read_plain(self, request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(limit)
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise RequestTooLarge(limit)
        return bytes(buf)

    def _render(self, tx: Transaction, req: SoapRequest, resp: SoapResponse) -> Response:
        if req.soap11:
            body = resp.body_bytes if resp.body_bytes is not None else etree.tostring(
                resp.element(), encoding="UTF-8")   # no declaration: it goes inside the envelope
            return Response(envelope11_bytes(body), media_type=SOAP11_MEDIA_TYPE)
        action = tx.response_action
        mtom = resp.mtom if resp.mtom is not None else (bool(resp.attachments) or req.mtom)
        if resp.body_bytes is not None and not mtom:
            return Response(envelope_bytes(action, resp.body_bytes, relates_to=req.message_id),
                            headers={"content-type": SOAP_MEDIA_TYPE})
        env = build_envelope(action, resp.element(), relates_to=req.message_id)
        if mtom:
            ctype, chunks = mtom_stream(env, resp.attachments, action=action)
            return StreamingResponse(chunks, headers={"content-type": ctype})
        if resp.attachments:
            inline_xop(env, resp.attachments)
        return Response(to_bytes(env), headers={"content-type": SOAP_MEDIA_TYPE})

    # -- faults, audit, metrics ---------------------------------------------------------------
    def _fault(self, fault: SoapFault, call: _Call) -> Response:
        relates_to = call.req.message_id if call.req is not None else None
        outcome = SERIOUS_FAILURE if fault.code in ("Sender", "MustUnderstand",
                                                    "VersionMismatch") else MAJOR_FAILURE
        if call.ctx is not None:
            call.ctx.fail(outcome, fault.reason)
        call.fault = fault
        log.info("SOAP %s: %s fault for %s: %s", self.name, fault.code, call.remote_addr,
                 fault.reason)
        if call.soap11:
            return Response(build_fault11(fault), status_code=500, media_type=SOAP11_MEDIA_TYPE)
        return Response(build_fault(fault, relates_to), status_code=http_status(fault),
                        headers={"content-type": fault_media_type(fault)})

    def _internal_error(self, call: _Call, exc: BaseException) -> Response:
        req = call.req
        log.error("SOAP %s: internal error handling %s (MessageID %s) from %s", self.name,
                  req.action if req else "?", req.message_id if req else "?", call.remote_addr,
                  exc_info=exc)
        return self._fault(SoapFault.receiver("internal error; the node has logged the details"),
                           call)

    def _fallback_context(self, call: _Call) -> Context:
        req = call.req
        tx = Transaction("SOAP", f"{self.name}: request refused before dispatch", self.name,
                         action=req.action if req else "")
        ctx = Context(self.node, tx, remote_addr=call.remote_addr,
                      message_id=req.message_id if req else None)
        fault = call.fault
        ctx.fail(SERIOUS_FAILURE if fault is None or fault.code != "Receiver" else MAJOR_FAILURE,
                 fault.reason if fault is not None else "")
        return ctx



# --------------------------------------------------------------------------------------------
# RegistryErrors -> the transaction's failure response (ITI TF-3 4.2.4, ebRS 3.0 §2.1.6)
# --------------------------------------------------------------------------------------------

def registry_error_list(errors: RegistryErrors) -> etree._Element:
    rs = "{%s}" % RS_NS
    lst = etree.Element(rs + "RegistryErrorList", nsmap={"rs": RS_NS})
    highest = SEVERITY_ERROR if any(e.is_error for e in errors.errors) else errors.errors[0].severity
    lst.set("highestSeverity", highest)
    for e in errors.errors:
        el = etree.SubElement(lst, rs + "RegistryError")
        el.set("errorCode", e.error_code)
        el.set("codeContext", e.code_context)
        el.set("severity", e.severity)
        if e.location:
            el.set("location", e.location)
    return lst


def registry_failure_body(tx: Transaction, errors: RegistryErrors) -> etree._Element | None:
    """The response element of ``tx`` with status Failure and ``errors``, or None when the
    transaction's response is not an ebRS one."""
    _, (ns, local) = message_elements(tx, "op", "urn:none")
    if (ns, local) == (RS_NS, "RegistryResponse"):
        el = etree.Element("{%s}RegistryResponse" % RS_NS, nsmap={"rs": RS_NS})
    elif (ns, local) == (QUERY_NS, "AdhocQueryResponse"):
        el = etree.Element("{%s}AdhocQueryResponse" % QUERY_NS,
                           nsmap={"query": QUERY_NS, "rs": RS_NS})
    elif (ns, local) == (XDSB_NS, "RetrieveDocumentSetResponse"):
        el = etree.Element("{%s}RetrieveDocumentSetResponse" % XDSB_NS,
                           nsmap={"xdsb": XDSB_NS, "rs": RS_NS})
        inner = etree.SubElement(el, "{%s}RegistryResponse" % RS_NS)
        inner.set("status", STATUS_FAILURE)
        inner.append(registry_error_list(errors))
        return el
    else:
        return None
    el.set("status", STATUS_FAILURE)
    el.append(registry_error_list(errors))
    if local == "AdhocQueryResponse":  # rim:RegistryObjectList is required there (ebRS 3.0 query.xsd)
        etree.SubElement(el, "{%s}RegistryObjectList" % RIM_NS, nsmap={"rim": RIM_NS})
    return el


__all__ = ["SoapService", "http_status", "RequestTooLarge", "registry_failure_body",
           "registry_error_list", "Handler"]

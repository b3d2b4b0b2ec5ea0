"""The patient index's HL7 v3 SOAP operations (CONTRACT.md: POST /pix — ITI-44 feed and ITI-45
query, PIXV3, ITI TF-2b 3.44 / 3.45; POST /pdq — ITI-47 PDQV3, ITI TF-2b 3.47): request
wsa:Action -> (Transaction descriptor, handler), as :mod:`xds_registry.service` does for the
registry.  An endpoint with no operation yet is not mounted.

``/pix`` also carries the national interaction services (个人信息注册 PRPA_IN201311UV02, 更新
PRPA_IN201314UV02, 合并 PRPA_IN201304UV02, 查询 PRPA_IN201305UV02), and both endpoints the
single-operation WebService convention ``HIPMessageServer(action, message)`` of Chinese
integration platforms (see :mod:`pix_pdq.iti44` for what was found about it):

- request: SOAP 1.2 with wsa:Action ``urn:hl7-org:v3:HIPMessageServer``, or SOAP 1.1 (the
  binding .NET ASMX / JAX-WS clients use: ``text/xml``, any ``SOAPAction`` ending in
  ``HIPMessageServer``, answered in SOAP 1.1 — see :class:`hie.soap_http.SoapService`); the
  v3 interactions themselves may come over SOAP 1.1 too; the body is an element named
  ``HIPMessageServer`` in any namespace with the children ``action`` and ``message`` (the HL7 v3
  message as escaped text, CDATA, or as a child element);
- dispatch: on the interaction of the message; ``action`` may be the interaction id, one of the
  service codes ``S0001`` 注册 / ``S0002`` 更新 / ``S0003`` 合并 / ``S0004`` 查询, or any other
  name (then only the message decides); a service code that contradicts the message is answered
  ``AE`` (code 201);
- response: ``HIPMessageServerResponse`` in the request's namespace holding the response message
  as text, in ``HIPMessageServerResult`` (qualified, the .NET document/literal convention) when
  the request's parameters were namespace-qualified, else in an unqualified ``return`` (the
  JAX-WS convention); wsa:Action ``urn:hl7-org:v3:HIPMessageServerResponse``.  A body without
  ``message``, or whose message is not an HL7 v3 interaction, is a SOAP Sender fault.
"""
from __future__ import annotations

import dataclasses

from lxml import etree

from hie.errors import SoapFault
from hie.hl7v3 import INTERACTION_RE, AckDetail, V3Error, interaction_of
from hie.hl7v3_query import CONTINUATION, PDQ_QUERY, PIX_QUERY
from hie.soap import SoapRequest, SoapResponse
from hie.transactions import ITI_44, ITI_45, ITI_47
from hie.wsdl import HL7_NS, MESSAGE_ELEMENTS
from hie.xmlsafe import XmlError, parse_xml
from pix_pdq import iti44, iti45, iti47

HIP_ACTION = "urn:hl7-org:v3:HIPMessageServer"
HIP_RESPONSE_ACTION = "urn:hl7-org:v3:HIPMessageServerResponse"
SERVICE_CODES = {"S0001": "PRPA_IN201311UV02", "S0002": "PRPA_IN201314UV02",
                 "S0003": "PRPA_IN201304UV02", "S0004": PDQ_QUERY}


def _hip_element(req: SoapRequest) -> tuple[etree._Element, str, str, bool]:
    body = req.body
    if body is None or not isinstance(body.tag, str) or \
            etree.QName(body).localname != "HIPMessageServer":
        raise SoapFault.sender("expected a HIPMessageServer element in the SOAP Body")
    ns = etree.QName(body).namespace or ""
    params = {etree.QName(c).localname: c for c in body if isinstance(c.tag, str)}
    msg_el = params.get("message")
    if msg_el is None:
        raise SoapFault.sender("HIPMessageServer needs a message parameter")
    action_el = params.get("action")
    action = (action_el.text or "").strip() if action_el is not None else ""
    qualified = etree.QName(msg_el).namespace is not None
    inner = next((c for c in msg_el if isinstance(c.tag, str)), None)
    if inner is None:
        text = (msg_el.text or "").strip()
        if not text:
            raise SoapFault.sender("HIPMessageServer: the message parameter is empty")
        try:
            inner = parse_xml(text.encode("utf-8"), max_bytes=16 * 1024 * 1024)
        except XmlError as exc:
            raise SoapFault.sender(f"HIPMessageServer: message is not XML: {exc.reason}") \
                from None
    return inner, action, ns, qualified


def _hip(ctx, req: SoapRequest, endpoint: str) -> SoapResponse:
    inner, action, ns, qualified = _hip_element(req)
    name = interaction_of(inner)
    if name is None:
        raise SoapFault.sender("HIPMessageServer: the message is not an HL7 v3 interaction")
    wanted = SERVICE_CODES.get(action) or (action if INTERACTION_RE.match(action) else None)
    ctx.extra["hip_action"] = action[:64]
    if wanted and wanted != name:
        err = V3Error(AckDetail("201", f"action {action} names {wanted}, but the message is "
                                f"{name}", "/" + name), "AE")
        out = iti44.error_ack(ctx, inner, err, national=True)
    elif name in iti44.ACTIONS and endpoint == "pix":
        ctx.transaction = iti44.TRANSACTIONS[name]
        out = iti44.answer(ctx, inner, (name,), national=True)
    elif name == PIX_QUERY and endpoint == "pix":
        ctx.transaction = ITI_45
        out = iti45.answer(ctx, inner)
    elif name == PDQ_QUERY:
        ctx.transaction = ITI_47
        out = iti47.answer(ctx, inner, national=True)
    elif name == CONTINUATION and endpoint == "pdq":
        status = inner.find(f"{{{HL7_NS}}}controlActProcess/{{{HL7_NS}}}queryContinuation/"
                            f"{{{HL7_NS}}}statusCode")
        cancel = status is not None and status.get("code") == "aborted"
        ctx.transaction = iti47.ITI_47_CANCEL if cancel else iti47.ITI_47_CONTINUE
        out = (iti47.cancel_query if cancel else iti47.continue_query)(ctx, inner)
    else:
        err = V3Error(AckDetail("200", f"{name} is not served by HIPMessageServer on "
                                f"/{endpoint}", "/" + name), "AR")
        out = iti44.error_ack(ctx, inner, err, national=True)
    q = (lambda local: f"{{{ns}}}{local}") if ns else (lambda local: local)
    resp = etree.Element(q("HIPMessageServerResponse"), nsmap={"hip": ns} if ns else None)
    result = etree.SubElement(resp, q("HIPMessageServerResult") if qualified else "return")
    result.text = etree.tostring(out, encoding="unicode")
    return SoapResponse(resp)


def hip_pix(ctx, req: SoapRequest) -> SoapResponse:
    return _hip(ctx, req, "pix")


def hip_pdq(ctx, req: SoapRequest) -> SoapResponse:
    return _hip(ctx, req, "pdq")


PIX_OPERATIONS: dict = {action: (iti44.TRANSACTIONS[name], iti44.handle)
                        for name, action in iti44.ACTIONS.items()}
PIX_OPERATIONS[ITI_45.action] = (ITI_45, iti45.handle)
PIX_OPERATIONS[ITI_47.action] = (ITI_47, iti47.handle_national)     # 个人信息查询

PDQ_OPERATIONS: dict = {
    ITI_47.action: (ITI_47, iti47.handle),
    iti47.CONTINUE_ACTION: (iti47.ITI_47_CONTINUE, iti47.handle_continue),
    iti47.CANCEL_ACTION: (iti47.ITI_47_CANCEL, iti47.handle_cancel),
}

for _ops, _base, _handler in ((PIX_OPERATIONS, ITI_44, hip_pix), (PDQ_OPERATIONS, ITI_47,
                                                                    hip_pdq)):
    _ops[HIP_ACTION] = (dataclasses.replace(_base, action=HIP_ACTION,
                                            response_action=HIP_RESPONSE_ACTION), _handler)

# the WSDL's message elements of the actions that do not name an interaction themselves
MESSAGE_ELEMENTS.setdefault(iti47.CONTINUE_ACTION, ((HL7_NS, CONTINUATION),
                                                    (HL7_NS, "PRPA_IN201306UV02")))
MESSAGE_ELEMENTS.setdefault(iti47.CANCEL_ACTION, ((HL7_NS, CONTINUATION),
                                                  (HL7_NS, "MCCI_IN000002UV01")))
MESSAGE_ELEMENTS.setdefault(HIP_ACTION, ((HL7_NS, "HIPMessageServer"),
                                         (HL7_NS, "HIPMessageServerResponse")))

__all__ = ["PIX_OPERATIONS", "PDQ_OPERATIONS", "HIP_ACTION", "HIP_RESPONSE_ACTION",
           "SERVICE_CODES", "hip_pix", "hip_pdq"]

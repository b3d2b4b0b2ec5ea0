"""Register Document Set-b client (ITI TF-2b 3.42; SOAP 1.2 binding of ITI TF-2b 3.42.5 and ITI
TF-2x Appendix V): a Document Repository registering with a remote registry (ITI TF-2b 3.41.4.1.3,
``HIE_REGISTRY_URL``) and the registry forwarding registrations upstream
(``HIE_FORWARD_REGISTRY_URL``, :mod:`xds_registry.forward`).  :func:`register` posts the ``lcm:SubmitObjectsRequest`` as a SOAP 1.2 message with
``wsa:Action urn:ihe:iti:2007:RegisterDocumentSet-b`` and returns the registry's
``rs:RegistryResponse`` as a model.  Failures of the exchange itself are reported as the XDS error
the Document Source should see (ITI TF-3 Table 4.2.4.1-2):

- the registry cannot be reached, times out, or answers 502/503/504 -> ``XDSRegistryNotAvailable``;
- it answers with a SOAP fault or something that is not a RegistryResponse -> ``XDSRegistryError``.
"""
from __future__ import annotations

import copy
import logging
import tempfile

import httpx
from lxml import etree

from hie.errors import XDS, RegistryErrors
from hie.mtom import MtomError, MtomParser, parse_content_type
from hie.soap import SOAP11_NS, SOAP12_NS, build_envelope
from hie.transactions import ITI_42
from hie.xmlsafe import XmlError, parse_xml, to_bytes
from xds_registry.messages import RegistryResponse
from xds_registry.vocab import RS_NS

log = logging.getLogger("hie.xds_registry.client")

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_UNAVAILABLE_STATUS = (502, 503, 504)


def register(url: str, submit_objects: etree._Element, *, client: httpx.Client | None = None,
             timeout: httpx.Timeout | float = DEFAULT_TIMEOUT) -> RegistryResponse:
    """Send ``submit_objects`` (not modified) to the registry at ``url``; the registry's answer.

    Raises :class:`RegistryErrors` (XDSRegistryNotAvailable / XDSRegistryError) when no
    RegistryResponse could be obtained.
    """
    envelope = build_envelope(ITI_42.action, copy.deepcopy(submit_objects), to=url)
    body = to_bytes(envelope)
    headers = {"Content-Type": f'application/soap+xml; charset=UTF-8; action="{ITI_42.action}"',
               "Accept": "application/soap+xml, multipart/related"}
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        try:
            resp = http.post(url, content=body, headers=headers)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            log.warning("registry %s not available: %s", url, exc)
            raise RegistryErrors.one(XDS.RegistryNotAvailable,
                                     f"the document registry at {url} is not available: "
                                     f"{type(exc).__name__}") from None
    finally:
        if own:
            http.close()
    return parse_response(resp.status_code, resp.headers.get("content-type", ""), resp.content,
                          url)


def parse_response(status: int, content_type: str, content: bytes, url: str = "registry"
                   ) -> RegistryResponse:
    """The RegistryResponse in an HTTP answer of a registry (plain SOAP or MTOM)."""
    body = _soap_body_child(content_type, content)
    if body is None:
        if status in _UNAVAILABLE_STATUS:
            raise RegistryErrors.one(XDS.RegistryNotAvailable,
                                     f"the document registry at {url} answered HTTP {status}")
        raise RegistryErrors.one(XDS.RegistryError,
                                 f"the document registry at {url} answered HTTP {status} "
                                 "without a SOAP message")
    if etree.QName(body).localname == "Fault":
        reason = " ".join(t.strip() for t in body.itertext() if t.strip())[:500]
        if status in _UNAVAILABLE_STATUS:
            raise RegistryErrors.one(XDS.RegistryNotAvailable,
                                     f"the document registry at {url} is not available: {reason}")
        raise RegistryErrors.one(XDS.RegistryError,
                                 f"the document registry at {url} answered with a SOAP fault: "
                                 f"{reason}")
    if body.tag != "{%s}RegistryResponse" % RS_NS:
        raise RegistryErrors.one(XDS.RegistryError,
                                 f"the document registry at {url} answered {body.tag}, "
                                 "not rs:RegistryResponse")
    try:
        return RegistryResponse.from_ebrim(body)
    except ValueError as exc:
        raise RegistryErrors.one(XDS.RegistryError,
                                 f"the document registry at {url} sent an invalid "
                                 f"RegistryResponse: {exc}") from None


def _soap_body_child(content_type: str, content: bytes) -> etree._Element | None:
    try:
        mime, _ = parse_content_type(content_type)
    except MtomError:
        mime = ""
    root_bytes = content
    if mime == "multipart/related":
        with tempfile.TemporaryDirectory(prefix="hie-reg-") as spool:
            try:
                parser = MtomParser(content_type, spool, max_root_bytes=MAX_RESPONSE_BYTES)
                parser.feed(content)
                root_bytes, _ = parser.close()
                parser.cleanup()
            except MtomError:
                return None
    if not root_bytes or not root_bytes.strip():
        return None
    try:
        env = parse_xml(root_bytes, max_bytes=MAX_RESPONSE_BYTES)
    except XmlError:
        return None
    for ns in (SOAP12_NS, SOAP11_NS):
        if env.tag == "{%s}Envelope" % ns:
            body = env.find("{%s}Body" % ns)
            if body is None:
                return None
            children = [c for c in body if isinstance(c.tag, str)]
            return children[0] if children else None
    return None


__all__ = ["register", "parse_response"]

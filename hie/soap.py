"""SOAP 1.2 with WS-Addressing 1.0: the sans-IO envelope codec (SOAP 1.2 Part 1 §5, WS-Addressing
1.0 SOAP Binding §2-§3 and §6, XOP 1.0 §3, ITI TF-2x Appendix V "Web Services for IHE
Transactions").

Typed models shared by every SOAP transaction handler:

- :class:`Attachment` — one MIME part of an MTOM/XOP package (or an inline base64 document),
  either in memory (``data``) or spooled to a file (``path``);
- :class:`SoapRequest` — what a handler receives: the action, addressing headers, the first
  child of ``soap:Body`` as an lxml element, and the attachments keyed by Content-ID;
- :class:`SoapResponse` — what a handler returns: the body element and outgoing attachments;
  the transport adds the response action and ``wsa:RelatesTo``.

The codec (below the models):

- :func:`parse_envelope` checks the envelope (SOAP 1.2 namespace, else ``env:VersionMismatch``;
  optional Header, then Body with exactly one element, nothing after it), the header blocks and
  the WS-Addressing properties (``wsa:Action`` required, else ``wsa:MessageAddressingHeaderRequired``;
  duplicates give ``wsa:InvalidAddressingHeader``; ReplyTo/FaultTo other than anonymous/none give
  ``wsa:OnlyAnonymousAddressSupported``, since replies travel on the HTTP response), and resolves
  every ``xop:Include`` of the body against the MIME parts.  It raises :class:`SoapFault` only.
- **mustUnderstand** (Part 1 §5.2.3, §2.7): only blocks targeted at us count (no ``env:role``,
  ``.../role/next`` or ``.../role/ultimateReceiver``; ``.../role/none`` and other roles are
  ignored).  We understand every ``wsa:*`` block.  We also accept ``wsse:Security`` (WS-Security
  1.0 and 1.1 namespaces) marked mustUnderstand: the node's transport security is TLS, and the
  block is handed unchanged to the handler (``SoapRequest.header``) so that the XUA / access
  policy layer can process the assertion; this layer does not verify signatures.  Deployments
  wanting strict behaviour pass ``understood=`` without them.  Any other mustUnderstand block
  gives ``env:MustUnderstand`` with ``env:NotUnderstood`` headers (§5.4.8).
- :func:`document_attachment` returns the document of an ``xdsb:Document`` element, from its
  ``xop:Include`` or from inline base64 text.
- :func:`build_envelope` / :func:`build_fault` produce responses and faults (Code/Value, Subcode,
  Reason/Text xml:lang="en", Detail; ``wsa:Action`` ``.../addressing/fault`` for WS-Addressing
  faults and ``.../addressing/soap/fault`` for the others, WS-Addressing SOAP Binding §6).  A
  SOAP 1.1 envelope gets a SOAP 1.1 VersionMismatch fault with an ``env:Upgrade`` header
  (Part 1 Appendix A).
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import unquote

from lxml import etree

from hie.errors import SoapFault
from hie.xmlsafe import XmlError, parse_xml, to_bytes

SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
WSA_NS = "http://www.w3.org/2005/08/addressing"
XOP_NS = "http://www.w3.org/2004/08/xop/include"


@dataclass
class Attachment:
    """A document travelling with a SOAP message.  Exactly one of ``data`` / ``path`` / ``opener``
    is set.  ``size`` is known for data and path.  ``spooled`` marks ``path`` as the transport's
    private temporary file (an MTOM part spooled to disk, deleted after the response), which
    nobody writes to any more: a blob store may hard-link it instead of copying the bytes."""

    content_id: str
    content_type: str = "application/octet-stream"
    data: bytes | None = None
    path: Path | None = None
    opener: Callable[[], BinaryIO] | None = None
    size: int | None = None
    spooled: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.data, self.path, self.opener)) != 1:
            raise ValueError("Attachment needs exactly one of data, path, opener")
        if self.size is None:
            if self.data is not None:
                self.size = len(self.data)
            elif self.path is not None:
                self.size = os.path.getsize(self.path)

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.path is not None:
            return open(self.path, "rb")
        assert self.opener is not None
        return self.opener()

    def read(self) -> bytes:
        with self.open() as fh:
            return fh.read()


@dataclass
class SoapRequest:
    action: str
    body: etree._Element                  # first child element of soap:Body
    message_id: str | None = None
    to: str | None = None
    reply_to: str | None = None
    header: etree._Element | None = None  # soap:Header, for anything else (security, ...)
    attachments: dict[str, Attachment] = field(default_factory=dict)  # by Content-ID, no <>
    mtom: bool = False                    # the request came as MTOM/XOP
    soap11: bool = False                  # a SOAP 1.1 envelope (answered in SOAP 1.1)

    def document(self, element: etree._Element) -> "Attachment":
        """The document carried by ``element`` (e.g. ``xdsb:Document``): see
        :func:`document_attachment`."""
        return document_attachment(element, self.attachments)


@dataclass
class SoapResponse:
    """What a handler returns.  ``body`` is the element for ``soap:Body``; a hot path may give
    ``body_bytes`` instead — the body element already serialised as UTF-8 (no XML declaration,
    every namespace it uses declared inside it) — which the transport splices into the envelope
    without parsing it again (plain SOAP responses without attachments only)."""

    body: etree._Element | None
    attachments: list[Attachment] = field(default_factory=list)
    mtom: bool | None = None              # None: MTOM when there are attachments or request was MTOM
    body_bytes: bytes | None = None

    def __post_init__(self) -> None:
        if (self.body is None) == (self.body_bytes is None):
            raise ValueError("SoapResponse needs exactly one of body, body_bytes")
        if self.body_bytes is not None and self.attachments:
            raise ValueError("body_bytes responses carry no attachments")

    def element(self) -> etree._Element:
        """The body as an element (parsed from ``body_bytes`` when needed)."""
        if self.body is None:
            from hie.xmlsafe import parse_xml
            self.body = parse_xml(self.body_bytes, max_bytes=len(self.body_bytes) + 1,
                                  huge_tree=True)
        return self.body


# ============================================================================================
# The codec
# ============================================================================================

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSSE11_NS = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
XDSB_NS = "urn:ihe:iti:xds-b:2007"
HIE_FAULT_NS = "urn:hie-node:fault"         # env:Detail text entries of our own faults

WSA_ANONYMOUS = WSA_NS + "/anonymous"
WSA_NONE = WSA_NS + "/none"
WSA_FAULT_ACTION = WSA_NS + "/fault"            # WS-Addressing 1.0 SOAP Binding §6
SOAP_FAULT_ACTION = WSA_NS + "/soap/fault"      # idem, for faults defined by SOAP itself

ROLE_NEXT = SOAP12_NS + "/role/next"
ROLE_NONE = SOAP12_NS + "/role/none"
ROLE_ULTIMATE_RECEIVER = SOAP12_NS + "/role/ultimateReceiver"
_OUR_ROLES = frozenset({ROLE_NEXT, ROLE_ULTIMATE_RECEIVER})

#: Header blocks this node "understands" (SOAP 1.2 Part 1 §5.2.3).  ``{ns}*`` covers a namespace.
DEFAULT_UNDERSTOOD = frozenset({
    "{%s}*" % WSA_NS,
    "{%s}Security" % WSSE_NS,
    "{%s}Security" % WSSE11_NS,
})

_E = "{%s}" % SOAP12_NS
_A = "{%s}" % WSA_NS
_X = "{%s}" % XOP_NS


class MustUnderstandFault(SoapFault):
    """``env:MustUnderstand``: header blocks marked mustUnderstand that we do not process
    (SOAP 1.2 Part 1 §5.4.8); ``not_understood`` holds their Clark names for env:NotUnderstood."""

    def __init__(self, not_understood: list[str]):
        names = ", ".join(not_understood)
        super().__init__("MustUnderstand", f"header blocks not understood: {names}")
        self.not_understood = list(not_understood)


class VersionMismatchFault(SoapFault):
    """``env:VersionMismatch`` (SOAP 1.2 Part 1 §5.4.7).  With ``soap11`` the peer sent a SOAP 1.1
    envelope and gets a SOAP 1.1 fault with an Upgrade header (Part 1 Appendix A)."""

    def __init__(self, reason: str, soap11: bool = False):
        super().__init__("VersionMismatch", reason)
        self.soap11 = soap11


def _wsa_fault(local: str, reason: str, detail: str | None = None) -> SoapFault:
    fault = SoapFault("Sender", reason, (WSA_NS, local))
    fault.detail = detail
    return fault


def _is_true(value: str | None, what: str) -> bool:
    if value is None:
        return False
    v = value.strip()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise SoapFault.sender(f"{what} must be an xs:boolean, not {value!r}")


def _understood(tag: str, understood: frozenset[str] | set[str]) -> bool:
    if tag in understood:
        return True
    ns = tag[1:].split("}", 1)[0] if tag.startswith("{") else ""
    return "{%s}*" % ns in understood


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [c for c in parent if isinstance(c.tag, str)]


def _only_whitespace_text(parent: etree._Element) -> bool:
    if parent.text and parent.text.strip():
        return False
    return all(not (c.tail and c.tail.strip()) for c in parent)


def _single(blocks: dict[str, list[etree._Element]], local: str) -> etree._Element | None:
    """The one ``wsa:<local>`` header, None when absent; a repeated header is a fault
    (WS-Addressing 1.0 SOAP Binding §6.4.2 InvalidAddressingHeader)."""
    found = blocks.get(local, [])
    if len(found) > 1:
        raise _wsa_fault("InvalidAddressingHeader", f"more than one wsa:{local} header",
                         f"wsa:{local}")
    return found[0] if found else None


def _one_text(blocks: dict[str, list[etree._Element]], local: str) -> str | None:
    header = _single(blocks, local)
    if header is None:
        return None
    text = (header.text or "").strip()
    if not text:
        raise _wsa_fault("InvalidAddressingHeader", f"empty wsa:{local} header", f"wsa:{local}")
    return text


def _one_address(blocks: dict[str, list[etree._Element]], local: str) -> str | None:
    header = _single(blocks, local)
    if header is None:
        return None
    addr = header.find(_A + "Address")
    if addr is None or not (addr.text or "").strip():
        raise _wsa_fault("InvalidAddressingHeader", f"wsa:{local} without wsa:Address",
                         f"wsa:{local}")
    return addr.text.strip()


def parse_envelope(xml: "bytes | etree._Element | etree._ElementTree",
                   attachments: dict[str, Attachment] | None = None, *,
                   max_bytes: int = 64 * 1024 * 1024,
                   understood: "frozenset[str] | set[str]" = DEFAULT_UNDERSTOOD,
                   mtom: bool | None = None, charset: str | None = None,
                   soap11_action: str | None = None) -> SoapRequest:
    """Decode a SOAP 1.2 envelope with WS-Addressing headers into a :class:`SoapRequest`.

    ``soap11_action`` (the HTTP ``SOAPAction``, "" when absent): a SOAP 1.1 envelope is accepted
    too (see :func:`parse_envelope11`); None (the IHE endpoints): SOAP 1.1 is a VersionMismatch.

    ``attachments`` are the MIME parts of an MTOM package by Content-ID (without ``<>``); every
    ``xop:Include`` in the body must reference one of them.  Raises :class:`SoapFault` (never
    anything else) for a message the node cannot accept.
    """
    if isinstance(xml, (bytes, bytearray, memoryview)):
        try:
            root = parse_xml(bytes(xml), max_bytes=max_bytes, charset=charset)
        except XmlError as exc:
            raise SoapFault.sender(exc.reason) from None
    elif isinstance(xml, etree._ElementTree):
        root = xml.getroot()
    elif isinstance(xml, etree._Element):
        root = xml
    else:
        raise TypeError("parse_envelope needs bytes or an lxml element")
    attachments = dict(attachments or {})

    # -- the envelope (Part 1 §5.1) --------------------------------------------------------
    if root.tag == "{%s}Envelope" % SOAP11_NS and soap11_action is not None:
        return parse_envelope11(root, soap11_action)
    if root.tag == "{%s}Envelope" % SOAP11_NS:
        raise VersionMismatchFault("SOAP 1.1 envelope received; this endpoint speaks SOAP 1.2",
                                   soap11=True)
    if root.tag != _E + "Envelope":
        raise VersionMismatchFault("the document element is not a SOAP 1.2 env:Envelope")
    if not _only_whitespace_text(root):
        raise SoapFault.sender("character data directly inside env:Envelope")
    parts = _elements(root)
    header = None
    if parts and parts[0].tag == _E + "Header":
        header = parts.pop(0)
    if not parts or parts[0].tag != _E + "Body":
        raise SoapFault.sender("env:Envelope has no env:Body (after an optional env:Header)")
    if len(parts) > 1:
        raise SoapFault.sender("elements after env:Body are not allowed in SOAP 1.2")
    body = parts[0]

    # -- header blocks (Part 1 §5.2, §2.7) ---------------------------------------------------
    wsa: dict[str, list[etree._Element]] = {}
    not_understood: list[str] = []
    if header is not None:
        if not _only_whitespace_text(header):
            raise SoapFault.sender("character data directly inside env:Header")
        for block in _elements(header):
            if not block.tag.startswith("{"):
                raise SoapFault.sender(f"header block {block.tag!r} is not namespace qualified")
            role = (block.get(_E + "role") or ROLE_ULTIMATE_RECEIVER).strip()
            must = _is_true(block.get(_E + "mustUnderstand"), "env:mustUnderstand")
            if role not in _OUR_ROLES:
                continue  # targeted at another node (or at none): not ours to process
            if block.tag.startswith(_A):
                wsa.setdefault(block.tag[len(_A):], []).append(block)
            if must and not _understood(block.tag, understood):
                not_understood.append(block.tag)
    if not_understood:
        raise MustUnderstandFault(not_understood)

    # -- WS-Addressing 1.0 message addressing properties (SOAP Binding §2-3) -----------------
    action = _one_text(wsa, "Action")
    if action is None:
        raise _wsa_fault("MessageAddressingHeaderRequired",
                         "WS-Addressing header required: wsa:Action", "wsa:Action")
    message_id = _one_text(wsa, "MessageID")
    to = _one_text(wsa, "To")
    reply_to = _one_address(wsa, "ReplyTo")
    fault_to = _one_address(wsa, "FaultTo")
    for name, addr in (("ReplyTo", reply_to), ("FaultTo", fault_to)):
        if addr not in (None, WSA_ANONYMOUS, WSA_NONE):
            raise _wsa_fault("OnlyAnonymousAddressSupported",
                             f"wsa:{name} must be anonymous: replies go back on the HTTP response",
                             f"wsa:{name}")

    # -- the body (Part 1 §5.3) ---------------------------------------------------------------
    if not _only_whitespace_text(body):
        raise SoapFault.sender("character data directly inside env:Body")
    children = _elements(body)
    if len(children) != 1:
        raise SoapFault.sender(f"env:Body must hold exactly one element, not {len(children)}")
    payload = children[0]

    # -- XOP includes (XOP 1.0 §3.1, ITI TF-2x V.3.6) --------------------------------------
    for inc in payload.iter(_X + "Include"):
        _resolve_include(inc, attachments)

    return SoapRequest(action=action, body=payload, message_id=message_id, to=to,
                       reply_to=reply_to, header=header, attachments=attachments,
                       mtom=bool(attachments) if mtom is None else mtom)


def parse_envelope11(root: etree._Element, soap_action: str = "") -> SoapRequest:
    """A SOAP 1.1 envelope (W3C Note 2000-05-08 §4), as WebService clients of Chinese platforms
    (.NET ASMX, JAX-WS, CXF) send to the national interaction services: the action is a
    ``wsa:Action`` header when there is one, else the HTTP ``SOAPAction`` (quotes removed; the
    service may still dispatch on the body element when it names no operation); header blocks
    with ``mustUnderstand="1"`` other than WS-Addressing and WS-Security are refused."""
    s = "{%s}" % SOAP11_NS
    parts = _elements(root)
    header = parts.pop(0) if parts and parts[0].tag == s + "Header" else None
    if not parts or parts[0].tag != s + "Body":
        raise SoapFault.sender("soap:Envelope has no soap:Body (after an optional soap:Header)")
    body = parts[0]
    action, message_id = "", None
    for block in _elements(header) if header is not None else []:
        if block.tag == _A + "Action":
            action = (block.text or "").strip()
        elif block.tag == _A + "MessageID":
            message_id = (block.text or "").strip() or None
        elif (block.get(s + "mustUnderstand") or "0").strip() in ("1", "true") and \
                not _understood(block.tag, DEFAULT_UNDERSTOOD):
            raise MustUnderstandFault([block.tag])
    children = _elements(body)
    if len(children) != 1:
        raise SoapFault.sender(f"soap:Body must hold exactly one element, not {len(children)}")
    return SoapRequest(action=action or soap_action.strip().strip('"').strip(),
                       body=children[0], message_id=message_id, header=header, soap11=True)


def envelope11_bytes(body: bytes) -> bytes:
    """A SOAP 1.1 envelope around an already serialised body element (no WS-Addressing: SOAP
    1.1 clients of WebServices do not expect it)."""
    return b"".join((('<?xml version="1.0" encoding="UTF-8"?>'
                      f'<soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body>').encode(), body,
                     b"</soap:Body></soap:Envelope>"))


def build_fault11(fault: SoapFault) -> bytes:
    """The SOAP 1.1 fault (§4.4): faultcode ``Client`` for the sender's faults, ``Server`` for
    ours, the reason as faultstring, our detail text in ``detail``."""
    s = "{%s}" % SOAP11_NS
    env = etree.Element(s + "Envelope", nsmap={"soap": SOAP11_NS})
    f = etree.SubElement(etree.SubElement(env, s + "Body"), s + "Fault")
    code = {"Sender": "Client", "Receiver": "Server"}.get(fault.code, fault.code)
    etree.SubElement(f, "faultcode").text = f"soap:{code}"
    etree.SubElement(f, "faultstring").text = _clean(fault.reason)
    if fault.detail:
        etree.SubElement(etree.SubElement(f, "detail"),
                         "{%s}Message" % HIE_FAULT_NS).text = _clean(fault.detail)
    return to_bytes(env)


def _resolve_include(inc: etree._Element, attachments: dict[str, Attachment]) -> Attachment:
    href = (inc.get("href") or "").strip()
    if not href.lower().startswith("cid:"):
        raise SoapFault.sender(f"xop:Include href must be a cid: URI (RFC 2392), not {href!r}")
    raw = href[4:]
    for cid in (unquote(raw), raw):
        if cid in attachments:
            return attachments[cid]
    raise SoapFault.sender(f"xop:Include references a MIME part that is not in the message: {href}")


def document_attachment(element: etree._Element,
                        attachments: dict[str, Attachment] | None = None) -> Attachment:
    """The document carried by ``element`` (an ``xdsb:Document`` or any xs:base64Binary element):
    the MIME part its ``xop:Include`` references, or its inline base64 text decoded into an
    in-memory :class:`Attachment` (Content-ID: the element's ``id`` attribute, else generated).
    Raises a Sender :class:`SoapFault` for a dangling reference or invalid base64."""
    inc = element.find(_X + "Include")
    if inc is not None:
        return _resolve_include(inc, attachments or {})
    text = "".join(element.itertext()) if len(element) else (element.text or "")
    try:
        clean = "".join(text.split()).encode("ascii")
        data = base64.b64decode(clean, validate=True)
    except (ValueError, binascii.Error):
        raise SoapFault.sender(f"element {_short(element.tag)} does not hold valid base64") from None
    cid = element.get("id") or f"inline-{uuid.uuid4().hex}@hie"
    return Attachment(content_id=cid, data=data)


def _short(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else "?"


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def build_envelope(action: str, body: etree._Element | None, relates_to: str | None = None,
                   message_id: str | None = None, to: str | None = None,
                   headers: "list[etree._Element] | tuple[etree._Element, ...]" = ()
                   ) -> etree._Element:
    """A SOAP 1.2 envelope with the WS-Addressing headers of ITI TF-2x V.3.2.1: ``wsa:Action``
    (mustUnderstand), ``wsa:MessageID`` (generated when not given), ``wsa:RelatesTo`` and
    ``wsa:To`` when given, then ``headers``.  ``body`` is moved (not copied) into ``env:Body``."""
    env = etree.Element(_E + "Envelope", nsmap={"soap": SOAP12_NS, "wsa": WSA_NS})
    hdr = etree.SubElement(env, _E + "Header")
    act = etree.SubElement(hdr, _A + "Action")
    act.set(_E + "mustUnderstand", "true")
    act.text = action
    etree.SubElement(hdr, _A + "MessageID").text = message_id or new_message_id()
    if relates_to:
        etree.SubElement(hdr, _A + "RelatesTo").text = relates_to
    if to:
        etree.SubElement(hdr, _A + "To").text = to
    for h in headers:
        hdr.append(h)
    bod = etree.SubElement(env, _E + "Body")
    if body is not None:
        bod.append(body)
    return env


def envelope_bytes(action: str, body: bytes, relates_to: str | None = None,
                   message_id: str | None = None) -> bytes:
    """The same envelope as :func:`build_envelope`, written directly as bytes around an already
    serialised body element (the response hot path: no tree is built or serialised)."""
    from xml.sax.saxutils import escape
    head = ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP12_NS}" xmlns:wsa="{WSA_NS}"><soap:Header>'
            f'<wsa:Action soap:mustUnderstand="true">{escape(_clean(action))}</wsa:Action>'
            f'<wsa:MessageID>{escape(_clean(message_id or new_message_id()))}</wsa:MessageID>')
    if relates_to:
        head += f"<wsa:RelatesTo>{escape(_clean(relates_to))}</wsa:RelatesTo>"
    head += "</soap:Header><soap:Body>"
    return b"".join((head.encode("utf-8"), body, b"</soap:Body></soap:Envelope>"))


_XML_BAD_CHARS = {c: None for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)}


def _clean(text: str) -> str:
    return str(text).translate(_XML_BAD_CHARS).encode("utf-8", "replace").decode("utf-8")


def fault_action(fault: SoapFault) -> str:
    """WS-Addressing 1.0 SOAP Binding §6: WS-Addressing faults use ``.../addressing/fault``, all
    other faults ``.../addressing/soap/fault``."""
    if fault.subcode and fault.subcode[0] == WSA_NS:
        return WSA_FAULT_ACTION
    return SOAP_FAULT_ACTION


def fault_media_type(fault: SoapFault) -> str:
    if isinstance(fault, VersionMismatchFault) and fault.soap11:
        return "text/xml; charset=UTF-8"
    return "application/soap+xml; charset=UTF-8"


def build_fault(fault: SoapFault, relates_to: str | None = None) -> bytes:
    """The SOAP 1.2 fault message (Part 1 §5.4) for ``fault``, as UTF-8 bytes."""
    if isinstance(fault, VersionMismatchFault) and fault.soap11:
        return _soap11_version_mismatch(fault)
    env = build_envelope(fault_action(fault), None, relates_to=relates_to)
    env.find(_E + "Header/" + _A + "Action").attrib.pop(_E + "mustUnderstand", None)
    hdr = env.find(_E + "Header")
    if isinstance(fault, MustUnderstandFault):
        for i, tag in enumerate(fault.not_understood):
            ns, local = tag[1:].split("}", 1)
            nu = etree.SubElement(hdr, _E + "NotUnderstood", nsmap={f"nu{i}": ns})
            nu.set("qname", f"nu{i}:{local}")
    if fault.code == "VersionMismatch":
        _upgrade_header(hdr)
    body = env.find(_E + "Body")
    f = etree.SubElement(body, _E + "Fault")
    code = etree.SubElement(f, _E + "Code")
    etree.SubElement(code, _E + "Value").text = f"soap:{fault.code}"
    if fault.subcode:
        ns, local = fault.subcode
        sub = etree.SubElement(code, _E + "Subcode")
        if ns == WSA_NS:
            etree.SubElement(sub, _E + "Value").text = f"wsa:{local}"
        else:
            etree.SubElement(sub, _E + "Value", nsmap={"sub": ns}).text = f"sub:{local}"
    reason = etree.SubElement(f, _E + "Reason")
    text = etree.SubElement(reason, _E + "Text")
    text.set("{%s}lang" % XML_NS, "en")
    text.text = _clean(fault.reason)
    detail = _fault_detail(fault)
    if detail is not None:
        f.append(detail)
    return to_bytes(env)


def _fault_detail(fault: SoapFault) -> etree._Element | None:
    if not fault.detail:
        return None
    d = etree.Element(_E + "Detail")
    local = fault.subcode[1] if fault.subcode and fault.subcode[0] == WSA_NS else None
    if local in ("MessageAddressingHeaderRequired", "InvalidAddressingHeader",
                 "OnlyAnonymousAddressSupported") and fault.detail.startswith("wsa:"):
        etree.SubElement(d, _A + "ProblemHeaderQName").text = fault.detail
    elif local in ("ActionNotSupported", "ActionMismatch"):
        pa = etree.SubElement(d, _A + "ProblemAction")
        etree.SubElement(pa, _A + "Action").text = _clean(fault.detail)
    else:
        etree.SubElement(d, "{%s}Message" % HIE_FAULT_NS).text = _clean(fault.detail)
    return d



def _upgrade_header(hdr: etree._Element) -> None:
    up = etree.SubElement(hdr, "{%s}Upgrade" % SOAP12_NS, nsmap={"up": SOAP12_NS})
    se = etree.SubElement(up, "{%s}SupportedEnvelope" % SOAP12_NS)
    se.set("qname", "up:Envelope")


def _soap11_version_mismatch(fault: SoapFault) -> bytes:
    s = "{%s}" % SOAP11_NS
    env = etree.Element(s + "Envelope", nsmap={"soap11": SOAP11_NS})
    _upgrade_header(etree.SubElement(env, s + "Header"))
    f = etree.SubElement(etree.SubElement(env, s + "Body"), s + "Fault")
    etree.SubElement(f, "faultcode").text = "soap11:VersionMismatch"
    etree.SubElement(f, "faultstring").text = _clean(fault.reason)
    return to_bytes(env)

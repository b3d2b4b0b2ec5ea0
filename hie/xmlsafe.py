"""Safe XML parsing for everything that arrives from outside (W3C XML 1.0 §2.8, SOAP 1.2 Part 1 §5).

SOAP 1.2 Part 1 §5 forbids a Document Type Declaration in a SOAP message, and no standard the
node speaks (SOAP, ebRS 3.0, HL7 v3, CDA, FHIR XML) needs one.  So :func:`parse_xml`:

- rejects any ``<!DOCTYPE`` (checked in the prolog before parsing and on the parsed document);
- never loads a DTD, never resolves an entity other than the five predefined ones, never opens a
  network or file resource (``resolve_entities=False, no_network=True, load_dtd=False``), so
  XXE and entity-expansion ("billion laughs") attacks find nothing to expand;
- bounds the input size (``max_bytes``) and the element depth (``max_depth``; libxml2 itself stops
  at 256 without ``huge_tree``), and keeps libxml2's resource limits on (``huge_tree=False``: one
  text node may hold at most 10 000 000 characters, so documents larger than about 7 MB must travel
  as MTOM/XOP attachments, not as inline base64).

Every failure raises :class:`XmlError` (a :class:`hie.errors.HieError`); a SOAP transport turns it
into a ``env:Sender`` fault, other transports into their own error.  The message names the
problem and the position, never the parser's internals.
"""
from __future__ import annotations

import threading

from lxml import etree

from hie.errors import HieError

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_DEPTH = 256


class XmlError(HieError):
    """The input is not acceptable XML (malformed, too large, too deep, or has a DOCTYPE)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _parser(huge_tree: bool) -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=huge_tree, remove_pis=False,
                           strip_cdata=True, collect_ids=False)


_local = threading.local()  # one parser per thread: an lxml parser serialises its own use


def _thread_parser(huge_tree: bool) -> etree.XMLParser:
    attr = "huge" if huge_tree else "normal"
    parser = getattr(_local, attr, None)
    if parser is None:
        parser = _parser(huge_tree)
        setattr(_local, attr, parser)
    return parser

_DEPTH_XPATH: dict[int, str] = {}


def _prolog_text(data: bytes) -> bytes:
    """The document as an ASCII-compatible byte string, for the prolog scan (XML 1.0 App. F)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:2] in (b"<\x00", b"\x00<"):
        codec = "utf-16-le" if data[:1] in (b"\xff", b"<") else "utf-16-be"
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            data = data[2:]
        head = data[: 2 * 65536]
        return head[: len(head) // 2 * 2].decode(codec, "replace").encode("utf-8", "replace")
    if data[:3] == b"\xef\xbb\xbf":
        return data[3:]
    return data


def _has_doctype(data: bytes) -> bool:
    """True when the prolog (everything before the root start tag) holds a DOCTYPE."""
    text = _prolog_text(data)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in b" \t\r\n":
            i += 1
            continue
        if text.startswith(b"<?", i):
            end = text.find(b"?>", i + 2)
            if end < 0:
                return False
            i = end + 2
        elif text.startswith(b"<!--", i):
            end = text.find(b"-->", i + 4)
            if end < 0:
                return False
            i = end + 3
        elif text.startswith(b"<!", i):
            return text[i:i + 9].upper() == b"<!DOCTYPE"
        else:
            return False  # the root element (or garbage the parser will reject)
    return False


def _too_deep(root: etree._Element, max_depth: int, huge_tree: bool) -> bool:
    if max_depth >= 256 and not huge_tree:  # libxml2 already refuses deeper documents without huge_tree
        return False
    expr = _DEPTH_XPATH.get(max_depth)
    if expr is None:  # "is there an element at depth max_depth + 1?", evaluated in C
        expr = _DEPTH_XPATH[max_depth] = "boolean(/" + "/".join(["*"] * (max_depth + 1)) + ")"
    return bool(root.xpath(expr))


def _declared_encoding(data: bytes) -> bool:
    """True when the document fixes its own encoding: a BOM, or an XML declaration naming one."""
    if data[:3] == b"\xef\xbb\xbf" or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    if not data.startswith(b"<?xml"):
        return False
    end = data.find(b"?>", 0, 512)
    return end > 0 and b"encoding" in data[:end]


def parse_xml(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH,
              huge_tree: bool = False, charset: str | None = None) -> etree._Element:
    """Parse untrusted ``data`` into an element; raise :class:`XmlError` on anything unsafe.

    ``charset`` is the transport's charset parameter (e.g. from ``Content-Type``); it is used
    when the document does not declare its own encoding (no BOM, no ``encoding=`` in the XML
    declaration), e.g. a GBK body sent without a declaration.  ``huge_tree=True`` lifts libxml2's
    text-node and depth limits (only for callers that have bounded the size themselves and need
    inline payloads larger than 10 MB); ``max_depth`` then still applies.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise XmlError("XML input must be bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise XmlError(f"XML document larger than {max_bytes} bytes")
    if not data.strip():
        raise XmlError("empty XML document")
    if charset and charset.strip().lower() not in ("utf-8", "utf8", "us-ascii", "ascii") \
            and not _declared_encoding(data):
        try:
            data = data.decode(charset.strip()).encode("utf-8")
        except LookupError:
            raise XmlError(f"unknown charset {charset!r}") from None
        except UnicodeDecodeError:
            raise XmlError(f"document is not valid {charset}") from None
    if _has_doctype(data):
        raise XmlError("a DOCTYPE is not allowed")
    try:
        root = etree.fromstring(data, _thread_parser(huge_tree))
    except etree.XMLSyntaxError as exc:
        msg = str(exc.msg if getattr(exc, "msg", None) else exc)
        where = f" (line {exc.lineno}, column {exc.offset})" if exc.lineno else ""
        if "depth" in msg.lower():
            raise XmlError(f"XML nested deeper than {max_depth} elements{where}") from None
        raise XmlError(f"XML not well-formed: {msg.splitlines()[0] if msg else 'syntax error'}"
                       f"{where}") from None
    except (ValueError, TypeError, LookupError) as exc:  # e.g. unknown encoding declaration
        raise XmlError(f"XML not readable: {exc}") from None
    if root is None:
        raise XmlError("empty XML document")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlError("a DOCTYPE is not allowed")
    if _too_deep(root, max_depth, huge_tree):
        raise XmlError(f"XML nested deeper than {max_depth} elements")
    return root


def to_bytes(el: etree._Element, pretty: bool = False) -> bytes:
    """Serialise ``el`` as UTF-8 with an XML declaration."""
    return etree.tostring(el, xml_declaration=True, encoding="UTF-8", pretty_print=pretty)


__all__ = ["XmlError", "parse_xml", "to_bytes", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_DEPTH"]

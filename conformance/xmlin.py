"""How the conformance runner reads XML it did not write — the kit's files, which a tester may
swap for another kit, and every response of the target under test: a document with a DTD is
refused (SOAP 1.2 Part 1 §5 forbids one in a message; none of the kit's XML files has one),
so no entity of any kind reaches an XPath (libxml2's XPath reads through unexpanded entity
references); no network either.  A parser per call: lxml parsers are not to be shared between
threads."""
from __future__ import annotations

from lxml import etree


def parse(data: bytes, huge: bool = False) -> etree._Element:
    """The root element of ``data``; raises ``etree.XMLSyntaxError`` (also for a DTD).
    ``huge``: allow very large text nodes (a retrieved document inline)."""
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True,
                                                  load_dtd=False, huge_tree=huge))
    if root.getroottree().docinfo.doctype:
        raise etree.XMLSyntaxError("a document type declaration (DTD) is not accepted", 0, 1, 1)
    return root


__all__ = ["parse"]

"""Validate XML against the official ebXML RegRep 3.0 / IHE XDS.b schemas
(../shared/standards/xsd-ebrs30 beside the repository: rim, rs, lcm, query, rmd, XDS.b_DocumentRepository).

``assert_valid(element)`` validates any element whose root is a global element of one of these
namespaces (lcm:SubmitObjectsRequest, rs:RegistryResponse, query:AdhocQueryResponse,
rim:ExtrinsicObject, xdsb:RetrieveDocumentSetResponse, ...).  One combined schema is compiled once
(the XSDs import each other, so a single wrapper that imports all of them is the robust way).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from lxml import etree

STANDARDS = Path(__file__).resolve().parents[2] / "shared" / "standards"  # ../shared beside the repo
XSD_DIR = Path(os.environ.get("HIE_XSD_DIR", STANDARDS / "xsd-ebrs30"))

NAMESPACES = {
    "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0": "rim.xsd",
    "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0": "rs.xsd",
    "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0": "lcm.xsd",
    "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0": "query.xsd",
    "urn:ihe:iti:rmd:2017": "rmd.xsd",
    "urn:ihe:iti:xds-b:2007": "XDS.b_DocumentRepository.xsd",
}


@functools.lru_cache(maxsize=None)
def schema() -> etree.XMLSchema:
    imports = "".join(
        f'<xs:import namespace="{ns}" schemaLocation="{(XSD_DIR / f).as_uri()}"/>'
        for ns, f in NAMESPACES.items())
    wrapper = ('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
               f'targetNamespace="urn:hie:test:all" elementFormDefault="qualified">{imports}'
               '</xs:schema>')
    doc = etree.fromstring(wrapper.encode(), base_url=(XSD_DIR / "all.xsd").as_uri())
    return etree.XMLSchema(doc)


def errors(element: etree._Element | bytes) -> list[str]:
    """Schema errors of ``element`` (empty when valid)."""
    if isinstance(element, (bytes, str)):
        element = etree.fromstring(element)
    ns = etree.QName(element).namespace
    if ns not in NAMESPACES:
        raise ValueError(f"no schema for namespace {ns!r}")
    doc = etree.ElementTree(etree.fromstring(etree.tostring(element)))
    s = schema()
    if s.validate(doc):
        return []
    return [f"{e.line}: {e.message}" for e in s.error_log]


def assert_valid(element: etree._Element | bytes) -> None:
    errs = errors(element)
    assert not errs, "schema errors:\n" + "\n".join(errs[:20])


def assert_success(resp):
    """A registry response model (``RegistryResponse``): schema-valid and Success."""
    from hie.errors import STATUS_SUCCESS
    assert_valid(resp.to_ebrim())
    assert resp.status == STATUS_SUCCESS, resp.errors
    return resp


def assert_failure(resp, code: str):
    """A registry response model: schema-valid, Failure, and carrying error ``code``."""
    from hie.errors import STATUS_FAILURE
    assert_valid(resp.to_ebrim())
    assert resp.status == STATUS_FAILURE
    assert code in resp.codes, resp.errors
    return resp

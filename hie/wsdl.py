"""WSDL 1.1 service descriptions for the SOAP endpoints (W3C WSDL 1.1 §2-§3, WSDL 1.1 Binding
Extension for SOAP 1.2 (W3C Member Submission 2006), WS-Addressing 1.0 WSDL Binding §4
(``wsaw:Action``, ``wsaw:UsingAddressing``), and the IHE ITI WSDL conventions of ITI TF-2x
Appendix V.3.3 / V.4: document/literal, one part per message, operation names
``<Actor>_<Transaction>``).

:func:`wsdl_for` builds one WSDL document per endpoint.  Message elements come from
:data:`MESSAGE_ELEMENTS` (keyed by wsa:Action, then by transaction id; HL7 v3 interactions are
derived from the action, ``urn:hl7-org:v3:PRPA_IN201305UV02`` -> ``hl7:PRPA_IN201305UV02``);
unknown transactions get ``tns:<Operation>Request`` / ``tns:<Operation>Response``.  The types
section declares each element inline as ``xs:anyType`` rather than importing the ebRS 3.0 / IHE
schemas, so the document is self-contained (a client such as zeep needs no further fetch) and
every valid instance document is accepted.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from lxml import etree

from hie.transactions import Transaction
from hie.xmlsafe import to_bytes

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP12_BINDING_NS = "http://schemas.xmlsoap.org/wsdl/soap12/"
WSAW_NS = "http://www.w3.org/2006/05/addressing/wsdl"
XS_NS = "http://www.w3.org/2001/XMLSchema"
HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"

QUERY_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
LCM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RS_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
XDSB_NS = "urn:ihe:iti:xds-b:2007"
RMD_NS = "urn:ihe:iti:rmd:2017"
HL7_NS = "urn:hl7-org:v3"

QName = tuple[str, str]

_QUERY = ((QUERY_NS, "AdhocQueryRequest"), (QUERY_NS, "AdhocQueryResponse"))
_SUBMIT = ((LCM_NS, "SubmitObjectsRequest"), (RS_NS, "RegistryResponse"))
_RETRIEVE = ((XDSB_NS, "RetrieveDocumentSetRequest"), (XDSB_NS, "RetrieveDocumentSetResponse"))

#: (request element, response element) by wsa:Action or by transaction id.
MESSAGE_ELEMENTS: dict[str, tuple[QName, QName]] = {
    "ITI-18": _QUERY,                      # Registry Stored Query
    "ITI-51": _QUERY,                      # Multi-Patient Stored Query
    "ITI-38": _QUERY,                      # Cross Gateway Query
    "ITI-42": _SUBMIT,                     # Register Document Set-b
    "ITI-57": _SUBMIT,                     # Update Document Set
    "ITI-61": _SUBMIT,                     # Register On-Demand Document Entry
    "ITI-62": ((LCM_NS, "RemoveObjectsRequest"), (RS_NS, "RegistryResponse")),
    "ITI-41": ((XDSB_NS, "ProvideAndRegisterDocumentSetRequest"), (RS_NS, "RegistryResponse")),
    "ITI-43": _RETRIEVE,                   # Retrieve Document Set
    "ITI-39": _RETRIEVE,                   # Cross Gateway Retrieve
    "ITI-86": ((RMD_NS, "RemoveDocumentsRequest"), (RS_NS, "RegistryResponse")),
    "RAD-69": ((XDSB_NS, "RetrieveImagingDocumentSetRequest"), (XDSB_NS, "RetrieveDocumentSetResponse")),
}

_HL7_INTERACTION = re.compile(r"^[A-Z]{4}_IN\d{6}UV\d{2}$")
_NCNAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def _ncname(text: str) -> str:
    name = _NCNAME_BAD.sub("_", text) or "_"
    return name if (name[0].isalpha() or name[0] == "_") else "_" + name


def _hl7_element(action: str) -> QName | None:
    if action.startswith(HL7_NS + ":"):
        for seg in action[len(HL7_NS) + 1:].split(":"):
            if _HL7_INTERACTION.match(seg):
                return (HL7_NS, seg)
    return None


def operation_name(tx: Transaction) -> str:
    """``DocumentRegistry_RegistryStoredQuery`` style (ITI TF-2x V.3.3)."""
    last = re.split(r"[:/]", tx.action.rstrip(":/"))[-1] if tx.action else tx.id
    actor = "".join(w[:1].upper() + w[1:] for w in re.split(r"\s+", tx.actor.strip()) if w)
    return _ncname(f"{actor}_{last}" if actor else last)


def message_elements(tx: Transaction, op_name: str, tns: str) -> tuple[QName, QName]:
    """The (request, response) element QNames of ``tx``."""
    if tx.action in MESSAGE_ELEMENTS:
        return MESSAGE_ELEMENTS[tx.action]
    if tx.id in MESSAGE_ELEMENTS:
        return MESSAGE_ELEMENTS[tx.id]
    req, resp = _hl7_element(tx.action), _hl7_element(tx.response_action)
    return (req or (tns, f"{op_name}Request"), resp or (tns, f"{op_name}Response"))


def _transactions(operations: Any) -> list[Transaction]:
    if isinstance(operations, Mapping):
        items: Iterable[Any] = operations.values()
    else:
        items = operations
    out: list[Transaction] = []
    for item in items:
        tx = item[0] if isinstance(item, tuple) else item
        if not isinstance(tx, Transaction):
            raise TypeError(f"not a Transaction: {tx!r}")
        if tx not in out:
            out.append(tx)
    return out


def _W(local: str) -> str:
    return "{%s}%s" % (WSDL_NS, local)


def _S(local: str) -> str:
    return "{%s}%s" % (SOAP12_BINDING_NS, local)


def wsdl_for(service_name: str, endpoint_url: str, operations: Any) -> bytes:
    """A WSDL 1.1 document (SOAP 1.2 binding, document/literal, WS-Addressing actions) for an
    endpoint.  ``operations`` is a SoapService operations table (``{action: (Transaction,
    handler)}``) or an iterable of :class:`Transaction`."""
    svc = _ncname(service_name)
    tns = f"urn:hie-node:wsdl:{svc}"
    txs = _transactions(operations)

    ops: list[tuple[str, Transaction, QName, QName]] = []
    used: set[str] = set()
    for tx in txs:
        name = operation_name(tx)
        base, k = name, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        req, resp = message_elements(tx, name, tns)
        ops.append((name, tx, req, resp))

    prefixes: dict[str, str] = {}
    for _, _, req, resp in ops:
        for ns, _local in (req, resp):
            if ns != tns and ns not in prefixes:
                prefixes[ns] = f"ns{len(prefixes)}"
    nsmap = {"wsdl": WSDL_NS, "soap12": SOAP12_BINDING_NS, "wsaw": WSAW_NS, "xs": XS_NS,
             "tns": tns, **{p: ns for ns, p in prefixes.items()}}

    def qname(q: QName) -> str:
        ns, local = q
        return f"tns:{local}" if ns == tns else f"{prefixes[ns]}:{local}"

    root = etree.Element(_W("definitions"), nsmap=nsmap)
    root.set("name", svc)
    root.set("targetNamespace", tns)
    doc = etree.SubElement(root, _W("documentation"))
    doc.text = f"{service_name}: SOAP 1.2 / WS-Addressing 1.0 (ITI TF-2x Appendix V)"

    # types: one schema per namespace, each message element as xs:anyType
    types = etree.SubElement(root, _W("types"))
    by_ns: dict[str, list[str]] = {}
    for _, _, req, resp in ops:
        for ns, local in (req, resp):
            if local not in by_ns.setdefault(ns, []):
                by_ns[ns].append(local)
    for ns, locals_ in by_ns.items():
        schema = etree.SubElement(types, "{%s}schema" % XS_NS)
        schema.set("targetNamespace", ns)
        schema.set("elementFormDefault", "qualified")
        for local in locals_:
            el = etree.SubElement(schema, "{%s}element" % XS_NS, name=local)
            ct = etree.SubElement(el, "{%s}complexType" % XS_NS)
            seq = etree.SubElement(ct, "{%s}sequence" % XS_NS)
            etree.SubElement(seq, "{%s}any" % XS_NS, namespace="##any", processContents="lax",
                             minOccurs="0", maxOccurs="unbounded")
            etree.SubElement(ct, "{%s}anyAttribute" % XS_NS, namespace="##any",
                             processContents="lax")

    for name, _, req, resp in ops:
        for suffix, q in (("Request", req), ("Response", resp)):
            msg = etree.SubElement(root, _W("message"), name=f"{name}_{suffix}")
            etree.SubElement(msg, _W("part"), name="body", element=qname(q))

    port_type = etree.SubElement(root, _W("portType"), name=f"{svc}_PortType")
    for name, tx, _, _ in ops:
        op = etree.SubElement(port_type, _W("operation"), name=name)
        if tx.name:
            etree.SubElement(op, _W("documentation")).text = f"{tx.id} {tx.name}"
        inp = etree.SubElement(op, _W("input"), message=f"tns:{name}_Request")
        inp.set("{%s}Action" % WSAW_NS, tx.action)
        out = etree.SubElement(op, _W("output"), message=f"tns:{name}_Response")
        out.set("{%s}Action" % WSAW_NS, tx.response_action)

    binding = etree.SubElement(root, _W("binding"), name=f"{svc}_Binding_Soap12",
                               type=f"tns:{svc}_PortType")
    etree.SubElement(binding, _S("binding"), style="document", transport=HTTP_TRANSPORT)
    ua = etree.SubElement(binding, "{%s}UsingAddressing" % WSAW_NS)
    ua.set(_W("required"), "true")
    for name, tx, _, _ in ops:
        op = etree.SubElement(binding, _W("operation"), name=name)
        etree.SubElement(op, _S("operation"), soapAction=tx.action, soapActionRequired="false")
        for io in ("input", "output"):
            etree.SubElement(etree.SubElement(op, _W(io)), _S("body"), use="literal")

    service = etree.SubElement(root, _W("service"), name=svc)
    port = etree.SubElement(service, _W("port"), name=f"{svc}_Port_Soap12",
                            binding=f"tns:{svc}_Binding_Soap12")
    etree.SubElement(port, _S("address"), location=endpoint_url)
    return to_bytes(root, pretty=True)


__all__ = ["wsdl_for", "MESSAGE_ELEMENTS", "operation_name", "message_elements"]

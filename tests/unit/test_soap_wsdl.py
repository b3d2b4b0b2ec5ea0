"""hie.wsdl: WSDL 1.1 + SOAP 1.2 binding + wsaw:Action, loadable by zeep."""
import pytest
import zeep
from lxml import etree

from hie.transactions import ITI_18, ITI_41, ITI_42, ITI_43, ITI_51, ITI_57, ITI_62, Transaction
from hie.wsdl import (HL7_NS, LCM_NS, QUERY_NS, RS_NS, SOAP12_BINDING_NS, WSAW_NS, WSDL_NS,
                      XDSB_NS, message_elements, operation_name, wsdl_for)
from hie.xmlsafe import parse_xml

NS = {"w": WSDL_NS, "s12": SOAP12_BINDING_NS, "wsaw": WSAW_NS,
      "xs": "http://www.w3.org/2001/XMLSchema"}
PIX = Transaction("ITI-45", "PIXV3 Query", "Patient Identifier Cross-reference Manager",
                  "urn:hl7-org:v3:PRPA_IN201309UV02", "urn:hl7-org:v3:PRPA_IN201310UV02")
XCPD = Transaction("ITI-55", "Cross Gateway Patient Discovery", "Responding Gateway",
                   "urn:hl7-org:v3:PRPA_IN201305UV02:CrossGatewayPatientDiscovery",
                   "urn:hl7-org:v3:PRPA_IN201306UV02:CrossGatewayPatientDiscovery")
ECHO = Transaction("TEST-1", "Echo", "Test Service", "urn:test:Echo", "urn:test:EchoResponse")
REGISTRY = [ITI_18, ITI_42, ITI_57, ITI_62, ITI_51]


def _qname(el, value):
    prefix, local = value.split(":")
    return el.nsmap[prefix], local


def test_operation_names():
    assert operation_name(ITI_18) == "DocumentRegistry_RegistryStoredQuery"
    assert operation_name(ITI_41) == "DocumentRepository_ProvideAndRegisterDocumentSet-b"
    assert operation_name(XCPD) == "RespondingGateway_CrossGatewayPatientDiscovery"


def test_message_elements_table():
    assert message_elements(ITI_18, "x", "urn:t") == ((QUERY_NS, "AdhocQueryRequest"),
                                                      (QUERY_NS, "AdhocQueryResponse"))
    assert message_elements(ITI_42, "x", "urn:t") == ((LCM_NS, "SubmitObjectsRequest"),
                                                      (RS_NS, "RegistryResponse"))
    assert message_elements(ITI_62, "x", "urn:t")[0] == (LCM_NS, "RemoveObjectsRequest")
    assert message_elements(ITI_41, "x", "urn:t")[0] == (XDSB_NS,
                                                         "ProvideAndRegisterDocumentSetRequest")
    assert message_elements(ITI_43, "x", "urn:t")[1] == (XDSB_NS, "RetrieveDocumentSetResponse")
    assert message_elements(PIX, "x", "urn:t") == ((HL7_NS, "PRPA_IN201309UV02"),
                                                   (HL7_NS, "PRPA_IN201310UV02"))
    assert message_elements(XCPD, "x", "urn:t")[1] == (HL7_NS, "PRPA_IN201306UV02")
    assert message_elements(ECHO, "Op", "urn:t") == (("urn:t", "OpRequest"), ("urn:t", "OpResponse"))


def test_structure():
    doc = parse_xml(wsdl_for("xds registry", "http://127.0.0.1:8080/xds/registry",
                             {t.action: (t, None) for t in REGISTRY}))
    assert doc.tag == f"{{{WSDL_NS}}}definitions"
    ops = doc.findall("w:portType/w:operation", NS)
    assert len(ops) == 5
    op = next(o for o in ops if o.get("name") == "DocumentRegistry_RegistryStoredQuery")
    assert op.find("w:input", NS).get(f"{{{WSAW_NS}}}Action") == ITI_18.action
    assert op.find("w:output", NS).get(f"{{{WSAW_NS}}}Action") == ITI_18.response_action
    binding = doc.find("w:binding", NS)
    assert binding.find("s12:binding", NS).get("style") == "document"
    assert binding.find("wsaw:UsingAddressing", NS) is not None
    assert {o.get("soapAction") for o in binding.findall("w:operation/s12:operation", NS)} == \
        {t.action for t in REGISTRY}
    assert doc.find("w:service/w:port/s12:address", NS).get("location") == \
        "http://127.0.0.1:8080/xds/registry"
    # each message part names a declared element
    declared = {(s.get("targetNamespace"), e.get("name"))
                for s in doc.findall("w:types/xs:schema", NS) for e in s.findall("xs:element", NS)}
    for p in doc.findall("w:message/w:part", NS):
        assert _qname(p, p.get("element")) in declared
    assert (QUERY_NS, "AdhocQueryRequest") in declared and (RS_NS, "RegistryResponse") in declared


@pytest.mark.parametrize("txs", [REGISTRY, [ITI_41, ITI_43], [PIX, XCPD, ECHO], [ECHO]])
def test_zeep_loads_it(tmp_path, txs):
    path = tmp_path / "svc.wsdl"
    path.write_bytes(wsdl_for("svc", "http://127.0.0.1:1/svc", txs))
    client = zeep.Client(str(path))
    service = next(iter(client.wsdl.services.values()))
    port = next(iter(service.ports.values()))
    assert port.binding.__class__.__name__ == "Soap12Binding"
    assert set(port.binding._operations) == {operation_name(t) for t in txs}
    op = port.binding._operations[operation_name(txs[0])]
    assert op.soapaction == txs[0].action


def test_duplicate_operation_names_disambiguated():
    a = Transaction("X-1", "A", "Actor", "urn:a:Op", "urn:a:OpResponse")
    b = Transaction("X-2", "B", "Actor", "urn:b:Op", "urn:b:OpResponse")
    doc = etree.fromstring(wsdl_for("s", "http://h/", [a, b]))
    assert [o.get("name") for o in doc.findall("w:portType/w:operation", NS)] == \
        ["Actor_Op", "Actor_Op_2"]


def test_rejects_non_transactions():
    with pytest.raises(TypeError):
        wsdl_for("s", "http://h/", ["nope"])

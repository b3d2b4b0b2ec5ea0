"""hie.soap codec: SOAP 1.2 envelope checks, WS-Addressing, mustUnderstand, XOP resolution,
faults; fuzzing (random and mutated messages give a SoapRequest or a SoapFault, nothing else)."""
import base64

import pytest
from hypothesis import given, settings, strategies as st
from lxml import etree

from hie.errors import SoapFault
from hie.soap import (SOAP11_NS, SOAP12_NS, SOAP_FAULT_ACTION, WSA_FAULT_ACTION, WSA_NS, WSSE_NS,
                      XDSB_NS, XOP_NS, Attachment, MustUnderstandFault, SoapRequest,
                      VersionMismatchFault, build_envelope, build_fault, document_attachment,
                      fault_media_type, parse_envelope)
from hie.xmlsafe import to_bytes

NS = {"s": SOAP12_NS, "a": WSA_NS, "xop": XOP_NS, "xdsb": XDSB_NS}
ACTION = "urn:ihe:iti:2007:RegistryStoredQuery"


def envelope(body='<q:Query xmlns:q="urn:q">张三</q:Query>', headers=None, action=ACTION,
             extra_headers=""):
    if headers is None:
        headers = (f'<a:Action s:mustUnderstand="1">{action}</a:Action>'
                   '<a:MessageID>urn:uuid:0f3e0a8c-1111-2222-3333-444455556666</a:MessageID>'
                   '<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous'
                   '</a:Address></a:ReplyTo>'
                   '<a:To>http://127.0.0.1/xds/registry</a:To>')
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<s:Envelope xmlns:s="{SOAP12_NS}" xmlns:a="{WSA_NS}">'
            f'<s:Header>{headers}{extra_headers}</s:Header><s:Body>{body}</s:Body></s:Envelope>'
            ).encode()


def fault_of(exc_info) -> SoapFault:
    return exc_info.value


# -- happy path --------------------------------------------------------------------------------

def test_parse_valid_request():
    req = parse_envelope(envelope())
    assert isinstance(req, SoapRequest)
    assert req.action == ACTION
    assert req.message_id == "urn:uuid:0f3e0a8c-1111-2222-3333-444455556666"
    assert req.to == "http://127.0.0.1/xds/registry"
    assert req.reply_to == "http://www.w3.org/2005/08/addressing/anonymous"
    assert req.body.tag == "{urn:q}Query" and req.body.text == "张三"
    assert req.header is not None and req.mtom is False and req.attachments == {}


def test_parse_element_input_and_no_header_fields():
    root = etree.fromstring(envelope(headers=f"<a:Action>{ACTION}</a:Action>"))
    req = parse_envelope(root)
    assert req.action == ACTION and req.message_id is None and req.to is None
    req = parse_envelope(root.getroottree())
    assert req.action == ACTION


def test_whitespace_and_comments_are_fine():
    doc = envelope(body='\n  <!-- c -->\n  <q:Query xmlns:q="urn:q"/>\n  ')
    assert parse_envelope(doc).body.tag == "{urn:q}Query"


# -- envelope structure ---------------------------------------------------------------------------

def test_soap11_envelope_gives_soap11_version_mismatch():
    doc = (f'<e:Envelope xmlns:e="{SOAP11_NS}"><e:Body><x/></e:Body></e:Envelope>').encode()
    with pytest.raises(VersionMismatchFault) as exc:
        parse_envelope(doc)
    assert exc.value.soap11 and exc.value.code == "VersionMismatch"
    out = etree.fromstring(build_fault(exc.value))
    assert out.tag == f"{{{SOAP11_NS}}}Envelope"
    assert out.findtext(".//faultcode").endswith("VersionMismatch")
    upgrade = out.find(f".//{{{SOAP12_NS}}}SupportedEnvelope")
    assert upgrade is not None and upgrade.get("qname") == "up:Envelope"
    assert fault_media_type(exc.value).startswith("text/xml")


def test_foreign_root_gives_version_mismatch():
    with pytest.raises(SoapFault) as exc:
        parse_envelope(b"<Envelope><Body/></Envelope>")
    assert exc.value.code == "VersionMismatch"
    out = etree.fromstring(build_fault(exc.value))
    assert out.find("s:Header/s:Upgrade/s:SupportedEnvelope", NS) is not None


@pytest.mark.parametrize("doc,match", [
    (f'<s:Envelope xmlns:s="{SOAP12_NS}"/>', "no env:Body"),
    (f'<s:Envelope xmlns:s="{SOAP12_NS}"><s:Header/></s:Envelope>', "no env:Body"),
    (f'<s:Envelope xmlns:s="{SOAP12_NS}"><s:Body/><s:Header/></s:Envelope>', "after env:Body"),
    (f'<s:Envelope xmlns:s="{SOAP12_NS}"><s:Body><x/></s:Body><y/></s:Envelope>', "after env:Body"),
    (f'<s:Envelope xmlns:s="{SOAP12_NS}">text<s:Body><x/></s:Body></s:Envelope>', "character data"),
])
def test_bad_structure(doc, match):
    with pytest.raises(SoapFault, match=match) as exc:
        parse_envelope(doc.encode())
    assert exc.value.code == "Sender"


@pytest.mark.parametrize("body,n", [("", 0), ("<x/><y/>", 2), ("   ", 0)])
def test_body_needs_exactly_one_element(body, n):
    with pytest.raises(SoapFault, match=f"exactly one element, not {n}"):
        parse_envelope(envelope(body=body))


def test_text_in_body_rejected():
    with pytest.raises(SoapFault, match="character data"):
        parse_envelope(envelope(body="<x/>junk"))


def test_malformed_xml_is_sender_fault():
    with pytest.raises(SoapFault) as exc:
        parse_envelope(b"<s:Envelope")
    assert exc.value.code == "Sender"


def test_doctype_is_sender_fault():
    doc = b'<!DOCTYPE s [<!ENTITY x "y">]>' + envelope().split(b"?>", 1)[1]
    with pytest.raises(SoapFault, match="DOCTYPE") as exc:
        parse_envelope(doc)
    assert exc.value.code == "Sender"


def test_size_bound():
    doc = envelope()
    with pytest.raises(SoapFault, match="larger than"):
        parse_envelope(doc, max_bytes=len(doc) - 1)


# -- WS-Addressing -------------------------------------------------------------------------------

def test_missing_action():
    with pytest.raises(SoapFault) as exc:
        parse_envelope(envelope(headers="<a:MessageID>urn:uuid:1</a:MessageID>"))
    f = exc.value
    assert f.code == "Sender" and f.subcode == (WSA_NS, "MessageAddressingHeaderRequired")
    out = etree.fromstring(build_fault(f))
    assert out.findtext("s:Header/a:Action", namespaces=NS) == WSA_FAULT_ACTION
    assert out.findtext(".//s:Detail/a:ProblemHeaderQName", namespaces=NS) == "wsa:Action"


def test_no_header_at_all():
    doc = f'<s:Envelope xmlns:s="{SOAP12_NS}"><s:Body><x/></s:Body></s:Envelope>'.encode()
    with pytest.raises(SoapFault, match="wsa:Action"):
        parse_envelope(doc)


def test_duplicate_action():
    with pytest.raises(SoapFault) as exc:
        parse_envelope(envelope(headers=f"<a:Action>{ACTION}</a:Action><a:Action>x</a:Action>"))
    assert exc.value.subcode == (WSA_NS, "InvalidAddressingHeader")


def test_empty_action():
    with pytest.raises(SoapFault) as exc:
        parse_envelope(envelope(headers="<a:Action>  </a:Action>"))
    assert exc.value.subcode == (WSA_NS, "InvalidAddressingHeader")


def test_non_anonymous_reply_to():
    hdr = (f"<a:Action>{ACTION}</a:Action><a:ReplyTo><a:Address>http://10.1.1.1/cb</a:Address>"
           "</a:ReplyTo>")
    with pytest.raises(SoapFault) as exc:
        parse_envelope(envelope(headers=hdr))
    assert exc.value.subcode == (WSA_NS, "OnlyAnonymousAddressSupported")


def test_reply_to_none_and_fault_to_anonymous_ok():
    hdr = (f"<a:Action>{ACTION}</a:Action><a:ReplyTo><a:Address>{WSA_NS}/none</a:Address>"
           f"</a:ReplyTo><a:FaultTo><a:Address>{WSA_NS}/anonymous</a:Address></a:FaultTo>")
    assert parse_envelope(envelope(headers=hdr)).reply_to == WSA_NS + "/none"


def test_reply_to_without_address():
    hdr = f"<a:Action>{ACTION}</a:Action><a:ReplyTo/>"
    with pytest.raises(SoapFault, match="without wsa:Address"):
        parse_envelope(envelope(headers=hdr))


# -- mustUnderstand ------------------------------------------------------------------------------

def test_must_understand_unknown_header():
    extra = '<x:Secret xmlns:x="urn:other" s:mustUnderstand="true"/>'
    with pytest.raises(MustUnderstandFault) as exc:
        parse_envelope(envelope(extra_headers=extra))
    f = exc.value
    assert f.code == "MustUnderstand" and f.not_understood == ["{urn:other}Secret"]
    out = etree.fromstring(build_fault(f, relates_to="urn:uuid:9"))
    nu = out.find("s:Header/s:NotUnderstood", NS)
    prefix, local = nu.get("qname").split(":")
    assert nu.nsmap[prefix] == "urn:other" and local == "Secret"
    assert out.findtext("s:Header/a:Action", namespaces=NS) == SOAP_FAULT_ACTION
    assert out.findtext("s:Header/a:RelatesTo", namespaces=NS) == "urn:uuid:9"
    assert out.findtext("s:Body/s:Fault/s:Code/s:Value", namespaces=NS) == "soap:MustUnderstand"


@pytest.mark.parametrize("attrs", [
    's:mustUnderstand="false"', 's:mustUnderstand="0"',
    's:mustUnderstand="1" s:role="http://www.w3.org/2003/05/soap-envelope/role/none"',
    's:mustUnderstand="1" s:role="urn:some:other:node"', ""])
def test_headers_we_may_ignore(attrs):
    extra = f'<x:Secret xmlns:x="urn:other" {attrs}/>'
    assert parse_envelope(envelope(extra_headers=extra)).action == ACTION


def test_must_understand_targeted_at_next():
    extra = ('<x:Secret xmlns:x="urn:other" s:mustUnderstand="1" '
             's:role="http://www.w3.org/2003/05/soap-envelope/role/next"/>')
    with pytest.raises(MustUnderstandFault):
        parse_envelope(envelope(extra_headers=extra))


def test_bad_must_understand_value():
    extra = '<x:Secret xmlns:x="urn:other" s:mustUnderstand="yes"/>'
    with pytest.raises(SoapFault, match="xs:boolean"):
        parse_envelope(envelope(extra_headers=extra))


def test_unqualified_header_block():
    with pytest.raises(SoapFault, match="namespace qualified"):
        parse_envelope(envelope(extra_headers="<plain/>"))


def test_ws_security_accepted_unless_strict():
    extra = (f'<wsse:Security xmlns:wsse="{WSSE_NS}" s:mustUnderstand="true">'
             '<Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion"/></wsse:Security>')
    req = parse_envelope(envelope(extra_headers=extra))
    assert req.header.find(f"{{{WSSE_NS}}}Security") is not None
    with pytest.raises(MustUnderstandFault):
        parse_envelope(envelope(extra_headers=extra), understood={"{%s}*" % WSA_NS})


# -- XOP / documents -------------------------------------------------------------------------------

def _pnr(doc_content: str) -> str:
    return (f'<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="{XDSB_NS}" '
            f'xmlns:xop="{XOP_NS}"><xdsb:Document id="Doc1">{doc_content}</xdsb:Document>'
            '</xdsb:ProvideAndRegisterDocumentSetRequest>')


def test_xop_include_resolved():
    att = Attachment("1.urn:uuid:abc@apache.org", "application/pdf", data=b"%PDF-1.4")
    req = parse_envelope(envelope(body=_pnr('<xop:Include href="cid:1.urn%3Auuid%3Aabc@apache.org"/>')),
                         {att.content_id: att})
    assert req.mtom is True
    doc = req.body.find("xdsb:Document", NS)
    assert doc.find("xop:Include", NS) is not None  # left in place
    assert req.document(doc) is att
    assert document_attachment(doc, req.attachments).read() == b"%PDF-1.4"


def test_xop_include_missing_part():
    with pytest.raises(SoapFault, match="not in the message") as exc:
        parse_envelope(envelope(body=_pnr('<xop:Include href="cid:nothere@x"/>')), {})
    assert exc.value.code == "Sender"


def test_xop_include_not_cid():
    with pytest.raises(SoapFault, match="cid:"):
        parse_envelope(envelope(body=_pnr('<xop:Include href="http://x/y"/>')),
                       {"a": Attachment("a", data=b"")})


def test_inline_base64_document():
    data = "出院小结 张三".encode() * 50
    b64 = base64.encodebytes(data).decode()  # with line breaks
    req = parse_envelope(envelope(body=_pnr(b64)))
    att = req.document(req.body.find("xdsb:Document", NS))
    assert att.read() == data and att.content_id == "Doc1" and att.size == len(data)


def test_invalid_base64_document():
    req = parse_envelope(envelope(body=_pnr("@@not base64@@")))
    with pytest.raises(SoapFault, match="base64") as exc:
        req.document(req.body.find("xdsb:Document", NS))
    assert exc.value.code == "Sender"


def test_empty_inline_document():
    req = parse_envelope(envelope(body=_pnr("")))
    assert req.document(req.body.find("xdsb:Document", NS)).read() == b""


# -- building ------------------------------------------------------------------------------------

def test_build_envelope_round_trip():
    body = etree.Element("{urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0}RegistryResponse")
    env = build_envelope("urn:ihe:iti:2007:RegisterDocumentSet-bResponse", body,
                         relates_to="urn:uuid:req", to="http://peer/x")
    hdr = env.find("s:Header", NS)
    assert hdr.find("a:Action", NS).get(f"{{{SOAP12_NS}}}mustUnderstand") == "true"
    assert hdr.findtext("a:RelatesTo", namespaces=NS) == "urn:uuid:req"
    assert hdr.findtext("a:MessageID", namespaces=NS).startswith("urn:uuid:")
    req = parse_envelope(to_bytes(env))
    assert req.action == "urn:ihe:iti:2007:RegisterDocumentSet-bResponse"
    assert req.to == "http://peer/x" and req.body.tag.endswith("RegistryResponse")


def test_build_envelope_message_id_given():
    env = build_envelope("urn:x", None, message_id="urn:uuid:mine")
    assert env.findtext("s:Header/a:MessageID", namespaces=NS) == "urn:uuid:mine"
    assert len(env.find("s:Body", NS)) == 0


def test_build_fault_sender_with_subcode():
    f = SoapFault.action_not_supported("urn:nope")
    f.detail = "urn:nope"
    out = etree.fromstring(build_fault(f, relates_to="urn:uuid:1"))
    fault = out.find("s:Body/s:Fault", NS)
    assert fault.findtext("s:Code/s:Value", namespaces=NS) == "soap:Sender"
    sub = fault.find("s:Code/s:Subcode/s:Value", NS)
    prefix, local = sub.text.split(":")
    assert sub.nsmap[prefix] == WSA_NS and local == "ActionNotSupported"
    text = fault.find("s:Reason/s:Text", NS)
    assert text.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert "urn:nope" in text.text
    assert fault.findtext("s:Detail/a:ProblemAction/a:Action", namespaces=NS) == "urn:nope"
    assert out.findtext("s:Header/a:Action", namespaces=NS) == WSA_FAULT_ACTION


def test_build_fault_receiver_and_foreign_subcode():
    out = etree.fromstring(build_fault(SoapFault.receiver()))
    assert out.findtext(".//s:Code/s:Value", namespaces=NS) == "soap:Receiver"
    assert out.findtext("s:Header/a:Action", namespaces=NS) == SOAP_FAULT_ACTION
    f = SoapFault("Sender", "bad", ("urn:ihe:iti:2007", "XDSRegistryError"), detail="more")
    out = etree.fromstring(build_fault(f))
    sub = out.find(".//s:Subcode/s:Value", NS)
    p, local = sub.text.split(":")
    assert sub.nsmap[p] == "urn:ihe:iti:2007" and local == "XDSRegistryError"
    assert "more" in "".join(out.find(".//s:Detail", NS).itertext())


def test_build_fault_cleans_control_characters():
    out = build_fault(SoapFault.sender("bad\x00\x07 char"))
    assert etree.fromstring(out).findtext(".//s:Text", namespaces=NS) == "bad char"


# -- fuzzing ---------------------------------------------------------------------------------------

def _check(data: bytes, attachments=None) -> None:
    try:
        req = parse_envelope(data, attachments)
    except SoapFault as f:
        build_fault(f)  # every fault renders
        return
    assert isinstance(req, SoapRequest) and req.action


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data):
    _check(data)


VALID = envelope(body=_pnr('<xop:Include href="cid:a@b"/>'),
                 extra_headers=f'<wsse:Security xmlns:wsse="{WSSE_NS}" s:mustUnderstand="1"/>')


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID)), st.integers(0, 8), st.binary(max_size=6)),
                min_size=1, max_size=6))
def test_fuzz_mutated_valid_message(edits):
    data = bytearray(VALID)
    for pos, cut, insert in edits:
        pos = min(pos, len(data))
        data[pos:pos + cut] = insert
    _check(bytes(data), {"a@b": Attachment("a@b", data=b"x")})


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["Envelope", "Header", "Body", "Action", "MessageID", "ReplyTo", "Address",
                        "mustUnderstand", "role", "Include", "href", "cid:a@b", SOAP12_NS,
                        WSA_NS, XOP_NS, "true", "1"]),
       st.sampled_from(["Envelope", "Header", "Body", "Action", "x", "", "false", "none",
                        SOAP11_NS, "urn:other", "cid:zz", "2"]))
def test_fuzz_token_swaps(old, new):
    _check(VALID.replace(old.encode(), new.encode(), 1), {"a@b": Attachment("a@b", data=b"")})


def test_envelope_bytes_equals_the_built_envelope():
    """The response hot path writes the envelope as bytes; it must parse to the same headers and
    body as build_envelope, with text escaped."""
    from hie.soap import envelope_bytes, parse_envelope
    from lxml import etree as ET
    body = ET.Element("{urn:x}Answer", nsmap={"x": "urn:x"})
    body.text = "张三 & <李四>"
    raw = envelope_bytes("urn:act&1", ET.tostring(body, encoding="utf-8"),
                         relates_to="urn:uuid:<rel>", message_id="urn:uuid:m1")
    req = parse_envelope(raw)
    assert req.action == "urn:act&1" and req.message_id == "urn:uuid:m1"
    assert req.body.tag == "{urn:x}Answer" and req.body.text == "张三 & <李四>"
    rel = req.header.find("{http://www.w3.org/2005/08/addressing}RelatesTo")
    assert rel.text == "urn:uuid:<rel>"

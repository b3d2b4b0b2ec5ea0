"""The FHIR R4 codec (hie.fhir) in memory: JSON <-> XML round trips of the resources the node
serves (Chinese text, extensions on primitives, repeating elements, the narrative div kept),
structure validation, malformed input of both representations, content negotiation, and the
Patient <-> index demographics mapping (pix_pdq.fhir_patient)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from lxml import etree

from hie import fhir
from hie.fhir import FhirError
from pix_pdq import fhir_patient as FP
from pix_pdq.index import Identifier, Person
from pix_pdq.resident_id import RESIDENT_ID_OID, make

RID = make("11010519900307123")
DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>张三，<b>男</b>，1990年3月7日</p></div>'


def zhang_san() -> dict:
    return {
        "resourceType": "Patient", "id": "7", "meta": {"lastUpdated": "2026-12-02T08:00:00Z"},
        "text": {"status": "generated", "div": DIV},
        "extension": [{"url": FP.EXT_ETHNIC, "valueCodeableConcept": {
            "coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.3", "code": "01",
                        "display": "汉族"}], "text": "汉族"}}],
        "identifier": [
            {"type": {"coding": [{"system": FP.V2_0203, "code": "NI"}]},
             "system": "urn:oid:" + RESIDENT_ID_OID, "value": RID},
            {"system": "urn:oid:1.2.156.112604.1.1.101.2", "value": "MR0001"}],
        "active": True,
        "name": [{"use": "official", "text": "张三", "family": "张", "given": ["三"],
                  "_given": [{"extension": [{"url": "urn:x-pinyin", "valueString": "San"}]}]}],
        "telecom": [{"system": "phone", "value": "13800138000", "use": "mobile"}],
        "gender": "male", "birthDate": "1990-03-07",
        "_birthDate": {"extension": [{"url": FP.EXT_BIRTH_TIME,
                                      "valueDateTime": "1990-03-07T08:30:00+08:00"}]},
        "address": [{"use": "home", "text": "北京市东城区东华门街道1号",
                     "line": ["东华门街道1号", "3单元"], "city": "北京市", "district": "东城区",
                     "state": "北京市", "postalCode": "100010", "country": "CHN"}],
        "maritalStatus": {"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.5",
                                      "code": "20", "display": "已婚"}], "text": "已婚"},
        "multipleBirthInteger": 2,
        "link": [{"other": {"reference": "Patient/3"}, "type": "replaces"}]}


def test_patient_json_xml_round_trip_keeps_everything():
    p = zhang_san()
    fhir.validate(p, "Patient")
    xml = fhir.to_xml(p)
    root = etree.fromstring(xml)
    ns = {"f": fhir.FHIR_NS, "h": fhir.XHTML_NS}
    assert root.tag == "{%s}Patient" % fhir.FHIR_NS
    assert root.xpath("f:name/f:family/@value", namespaces=ns) == ["张"]
    assert root.xpath("f:address/f:line/@value", namespaces=ns) == ["东华门街道1号", "3单元"]
    assert root.xpath("f:multipleBirthInteger/@value", namespaces=ns) == ["2"]
    assert root.xpath("f:extension/@url", namespaces=ns) == [FP.EXT_ETHNIC]
    assert root.xpath("f:birthDate/f:extension/f:valueDateTime/@value", namespaces=ns) == \
        ["1990-03-07T08:30:00+08:00"]
    assert root.xpath("string(f:text/h:div/h:p/h:b)", namespaces=ns) == "男"
    # element order of the R4 Patient: identifier before active before name ... link last
    order = [etree.QName(c).localname for c in root]
    assert order.index("identifier") < order.index("active") < order.index("name") \
        < order.index("gender") < order.index("address") < order.index("link")
    assert fhir.parse_xml_resource(xml) == p
    assert fhir.parse_json(fhir.to_json(p)) == p
    assert fhir.parse_xml_resource(fhir.to_xml(p, pretty=True)) == p  # div whitespace kept


def test_bundle_parameters_outcome_capabilities_round_trip():
    outcome = fhir.operation_outcome([fhir.Issue("warning", "not-supported", "_sort 被忽略",
                                                 ("_sort",))])
    bundle = fhir.searchset([zhang_san()], "http://h/fhir", 41,
                            {"self": "http://h/fhir/Patient?family=%E5%BC%A0",
                             "next": "http://h/fhir/Patient?family=%E5%BC%A0&_after=7"}, outcome)
    assert bundle["entry"][0]["fullUrl"] == "http://h/fhir/Patient/7"
    assert bundle["entry"][-1]["search"]["mode"] == "outcome"
    params = fhir.parameters([
        ("targetIdentifier", "valueIdentifier", {"system": "urn:oid:1.2", "value": "甲1"}),
        ("targetId", "valueReference", {"reference": "Patient/7"})])
    caps = fhir.Capabilities()
    caps.add_resource("Patient", ["read", "search-type"], [("family", "string", "姓")],
                      [("ihe-pix", "https://x/op")], conditionalUpdate=True)
    caps.add_resource("Patient", ["read", "update"], [("family", "string", "")])
    statement = caps.statement("http://h/fhir", "2026-12-02")
    assert [i["code"] for i in statement["rest"][0]["resource"][0]["interaction"]] == \
        ["read", "search-type", "update"]
    for resource in (outcome, bundle, params, statement):
        fhir.validate(resource)
        assert fhir.parse_xml_resource(fhir.to_xml(resource)) == resource
        assert fhir.parse_json(fhir.to_json(resource)) == resource
    xml = fhir.to_xml(bundle)
    assert b"<resource><Patient>" in xml and b"<total value=\"41\"/>" in xml


@pytest.mark.parametrize("body, fragment", [
    ({"resourceType": "Patient", "gender": 1}, "gender"),
    ({"resourceType": "Patient", "name": {"family": "张"}}, "Patient.name"),
    ({"resourceType": "Patient", "name": []}, "Patient.name"),
    ({"resourceType": "Patient", "birthDate": "1990-13-01"}, "birthDate"),
    ({"resourceType": "Patient", "birthDate": "19900307"}, "birthDate"),
    ({"resourceType": "Patient", "active": "yes"}, "active"),
    ({"resourceType": "Patient", "multipleBirthInteger": 1.5}, "multipleBirthInteger"),
    ({"resourceType": "Patient", "名字": "张三"}, "unknown element"),
    ({"resourceType": "Patient", "name": [{"family": ["张"]}]}, "family"),
    ({"resourceType": "Patient", "name": [{}]}, "name"),
    ({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1", "value": ""}]}, "value"),
    ({"resourceType": "Dinosaur"}, "Dinosaur"),
])
def test_invalid_resources_are_400(body, fragment):
    with pytest.raises(FhirError) as err:
        fhir.validate(body)
    assert err.value.status == 400 and fragment in err.value.diagnostics


def test_expected_resource_type():
    with pytest.raises(FhirError) as err:
        fhir.validate({"resourceType": "Bundle", "type": "collection"}, "Patient")
    assert err.value.status == 400 and "expected a Patient" in err.value.diagnostics


@pytest.mark.parametrize("data", [
    b"", b"   ", b"{", b"[]", b'"x"', b'{"name": 1}', b'{"resourceType":"Patient","id":"1","id":"2"}',
    b'{"resourceType":"Patient","x":NaN}', b"\xff\xfe\x00{",
])
def test_malformed_json_is_400(data):
    with pytest.raises(FhirError) as err:
        fhir.parse_body(data, "application/fhir+json")
    assert err.value.status == 400


@pytest.mark.parametrize("data, fragment", [
    (b"<Patient", "malformed XML"),
    (b'<!DOCTYPE p [<!ENTITY x "y">]><Patient xmlns="http://hl7.org/fhir"/>', "DOCTYPE"),
    (b"<Patient><id value='1'/></Patient>", "FHIR namespace"),
    ('<Patient xmlns="http://hl7.org/fhir"><nickname value="三"/></Patient>'.encode(),
     "unknown element"),
    (b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="male"/>'
     b"</Patient>", "more than once"),
    (b'<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>', "boolean"),
    ('<Patient xmlns="http://hl7.org/fhir"><name>张三</name></Patient>'.encode(), "text content"),
    (b'<Patient xmlns="http://hl7.org/fhir"><gender/></Patient>', "neither a value"),
    (b'<Dinosaur xmlns="http://hl7.org/fhir"/>', "unknown resource type"),
])
def test_malformed_xml_is_400(data, fragment):
    with pytest.raises(FhirError) as err:
        fhir.parse_body(data, "application/fhir+xml")
    assert err.value.status == 400 and fragment in err.value.diagnostics


def test_xml_reads_gb18030_and_repeating_primitive_extensions():
    xml = ('<?xml version="1.0" encoding="GB18030"?><Patient xmlns="http://hl7.org/fhir">'
           '<name><family value="欧阳"/><given value="娜"/><given><extension url="urn:e">'
           '<valueString value="娜娜"/></extension></given></name></Patient>').encode("gb18030")
    p = fhir.parse_body(xml, "application/xml")
    assert p["name"][0]["family"] == "欧阳"
    assert p["name"][0]["given"] == ["娜", None]
    assert p["name"][0]["_given"] == [None, {"extension": [{"url": "urn:e",
                                                            "valueString": "娜娜"}]}]
    fhir.validate(p)
    assert fhir.parse_xml_resource(fhir.to_xml(p)) == p


@pytest.mark.parametrize("fmt, accept, expected", [
    (None, None, "json"), (None, "*/*", "json"), ("xml", "application/fhir+json", "xml"),
    ("application/fhir+xml", None, "xml"), ("application/fhir xml", None, "xml"),
    ("json", None, "json"), (None, "application/fhir+xml;q=0.9, application/json;q=0.5", "xml"),
    (None, "text/html, application/xml;q=0.9, */*;q=0.8", "xml"),
    (None, "text/html, */*;q=0.8", "json"),
])
def test_negotiation(fmt, accept, expected):
    assert fhir.response_format(fmt, accept) == expected


@pytest.mark.parametrize("fmt, accept", [("turtle", None), (None, "text/html"),
                                         (None, "application/fhir+json;q=0")])
def test_negotiation_refusals_are_406(fmt, accept):
    with pytest.raises(FhirError) as err:
        fhir.response_format(fmt, accept)
    assert err.value.status == 406


def test_unsupported_content_type_is_415_and_missing_one_is_sniffed():
    with pytest.raises(FhirError) as err:
        fhir.parse_body(b"MSH|^~\\&|", "application/hl7-v2")
    assert err.value.status == 415
    assert fhir.parse_body(b'<Patient xmlns="http://hl7.org/fhir"/>', None) == \
        {"resourceType": "Patient"}
    assert fhir.parse_body('{"resourceType":"Patient","name":[{"text":"李四"}]}'
                           .encode("gbk"), "application/json; charset=GBK")["name"][0]["text"] \
        == "李四"


@settings(max_examples=60, deadline=None)
@given(family=st.text(min_size=1, max_size=8).filter(lambda s: s.strip() and all(
    c.isprintable() and not ("\ud800" <= c <= "\udfff") for c in s)),
       given=st.lists(st.sampled_from(["三", "小明", "Ann", "丽 娜", "&<>\"'"]), min_size=1,
                      max_size=3))
def test_round_trip_property(family, given):
    p = {"resourceType": "Patient", "name": [{"family": family, "given": given}],
         "active": False, "multipleBirthBoolean": True}
    fhir.validate(p)
    assert fhir.parse_xml_resource(fhir.to_xml(p)) == p


# --------------------------------------------------------------------------------------------
# Patient <-> index
# --------------------------------------------------------------------------------------------

def test_patient_to_index_demographics():
    p = zhang_san()
    d = FP.demographics_from_patient(p)
    assert d["names"] == [{"family": "张", "given": "三", "type": "L"}]
    assert (d["sex"], d["birth_time"]) == ("M", "199003070830")
    assert d["addresses"] == [{"street": "东华门街道1号", "other": "3单元", "city": "北京市",
                               "state": "北京市", "zip": "100010", "country": "CHN",
                               "type": "H", "county": "东城区"}]
    assert d["home_phones"] == [{"number": "13800138000", "use": "PRN", "equipment": "CP"}]
    assert d["business_phones"] is None and d["religion"] is None   # a FHIR update replaces
    assert d["marital_status"] == {"code": "20", "text": "已婚",
                                   "system": "2.16.156.10011.2.3.3.5"}
    assert d["ethnic_group"] == [{"code": "01", "text": "汉族",
                                  "system": "2.16.156.10011.2.3.3.3"}]
    assert (d["multiple_birth"], d["birth_order"]) == ("Y", "2")
    ids = FP.feed_identifiers(p)
    assert ids[0] == Identifier(RID, RESIDENT_ID_OID, "", "ISO", "NI")
    assert FP.demographics_from_patient({"resourceType": "Patient",
                                         "name": [{"text": "欧阳娜娜"}]})["names"] == \
        [{"family": "欧阳娜娜"}]


def test_index_person_to_patient():
    demo = {"names": [{"family": "欧阳娜娜", "type": "L"}], "sex": "F",
            "birth_time": "20000102", "addresses": [{"street": "中山路1号", "city": "厦门市",
                                                     "state": "福建省", "type": "H"}],
            "business_phones": [{"number": "0592-1234567", "use": "WPN"}],
            "ethnic_group": [{"code": "01", "text": "汉族", "system": "GB3304"}],
            "ssn": RID}
    person = Person(5, None, "merged", "欧阳娜娜", "欧阳", "娜娜", "20000102", "F", demo,
                    (Identifier("XM1", "1.2.156.9.1", "", "ISO", "MR"),))
    p = FP.patient_resource(person, merged_into=9, old_identifiers=[Identifier("OLD", "1.2.3")])
    fhir.validate(p, "Patient")
    assert p["name"] == [{"use": "official", "text": "欧阳娜娜", "family": "欧阳",
                          "given": ["娜娜"]}]
    assert (p["gender"], p["birthDate"], p["active"]) == ("female", "2000-01-02", False)
    assert p["link"] == [{"other": {"reference": "Patient/9"}, "type": "replaced-by"}]
    assert p["identifier"][0] == {"type": {"coding": [{"system": FP.V2_0203, "code": "MR"}]},
                                  "system": "urn:oid:1.2.156.9.1", "value": "XM1"}
    assert p["identifier"][1] == {"use": "old", "system": "urn:oid:1.2.3", "value": "OLD"}
    assert p["identifier"][2]["value"] == RID   # PID-19 as the resident ID number
    assert p["address"][0]["text"] == "福建省厦门市中山路1号"
    assert p["telecom"] == [{"system": "phone", "value": "0592-1234567", "use": "work"}]
    # fed back, the index sees the same demographics it holds (a lossless round trip)
    again = FP.demographics_from_patient(p)
    assert again["names"] == [{"family": "欧阳", "given": "娜娜", "type": "L"}]
    assert again["addresses"][0] | {"type": "H"} == {"street": "中山路1号", "city": "厦门市",
                                                     "state": "福建省", "type": "H"}
    assert again["ethnic_group"] == demo["ethnic_group"]


def test_identifier_rules():
    assert FP.identifier_from_token(f"urn:oid:{RESIDENT_ID_OID}|{RID}", "x").oid == \
        RESIDENT_ID_OID
    assert FP.split_token("a\\|b") == (None, "a|b")
    for bad in ("MR001", "urn:oid:1.2|", "|MR001", "urn:oid:abc|1"):
        with pytest.raises(FhirError) as err:
            FP.identifier_from_token(bad, "sourceIdentifier")
        assert err.value.status == 400
    with pytest.raises(FhirError) as err:
        FP.identifier_from_fhir({"value": "MR1"}, "Patient.identifier[0]")
    assert err.value.status == 422
    url = FP.identifier_from_fhir({"system": "http://hospital.cn/mrn", "value": "1"}, "x")
    assert (url.domain, FP.system_of(url)) == ("http://hospital.cn/mrn", "http://hospital.cn/mrn")

"""hie.hl7v3 / hl7v3_patient / hl7v3_query: the HL7 v3 codec in memory — transmission wrapper
and acknowledgement round-trips (IHE and national forms), patient registrations with Chinese
names, addresses and GB 11643 numbers, the national R2 collection datatypes, PIX / PDQ queries
and continuations, the ITI-46 update notification, and every refusal of bad input."""
from __future__ import annotations

import datetime as dt

import pytest
from lxml import etree

from hie.hl7v3 import (II, Acknowledgement, AckDetail, NotV3, QueryAck, V3Error, build_ack,
                       parse_message, peek_transmission)
from hie.hl7v3_patient import (PatientRecord, build_registration, build_update_notification,
                               parse_registration)
from hie.hl7v3_query import (build_continuation, build_pdq_query, build_pix_query,
                             build_query_response, parse_continuation, parse_pdq_query,
                             parse_pix_query)
from pix_pdq.resident_id import RESIDENT_ID_OID, make

HIS = II("1.2.156.112604.1.2.3")           # the hospital HIS device
HIE = II("1.2.156.9999.1")                 # the platform
HIS_OID = "1.2.156.112604.1.1.101.2"       # the HIS patient-id domain
ID = make("11010519900307123")
NOW = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
ZHANG_SAN = {
    "names": [{"family": "张", "given": "三", "type": "L"}], "sex": "M", "birth_time": "19900307",
    "addresses": [{"street": "东华门街道1号", "city": "北京市", "state": "北京市", "zip": "100010",
                   "county": "东城区", "type": "H"}],
    "home_phones": [{"number": "13800001111", "use": "PRN", "equipment": "CP"}],
    "business_phones": [{"number": "010-65295114", "use": "WPN", "equipment": "PH"}],
    "marital_status": {"code": "20", "text": "已婚", "system": "2.16.156.10011.2.3.3.5"},
    "ethnic_group": [{"code": "01", "text": "汉族", "system": "2.16.156.10011.2.3.3.3"}],
}


def roundtrip(el: etree._Element):
    return parse_message(etree.tostring(el, encoding="UTF-8"))


def test_registration_roundtrip_keeps_identifiers_and_chinese_demographics():
    rec = PatientRecord(ids=[II(HIS_OID, "H0001")], person_ids=[II(RESIDENT_ID_OID, ID)],
                        other_ids=[(II("2.16.156.10011.1.19", "健康卡001"),
                                    II("2.16.156.10011.1.5", "ORG1"))],
                        demographics=ZHANG_SAN)
    el = build_registration("PRPA_IN201301UV02", rec, sender=HIS, receiver=HIE,
                            message_id=II("1.2.3", "M1"), now=NOW)
    msg = roundtrip(el)
    t = msg.transmission
    assert (t.interaction, t.id, t.creation_time) == ("PRPA_IN201301UV02", II("1.2.3", "M1"),
                                                      "20261202093000+0800")
    assert (t.processing_code, t.accept_ack, t.senders, t.receivers) == ("P", "AL", (HIS,),
                                                                         (HIE,))
    reg = parse_registration(msg)
    assert reg.patient.identifiers() == [II(HIS_OID, "H0001"), II(RESIDENT_ID_OID, ID),
                                         II("2.16.156.10011.1.19", "健康卡001")]
    assert reg.patient.demographics == ZHANG_SAN
    assert reg.patient.locations[II(RESIDENT_ID_OID, ID)].endswith("/patientPerson/id[1]")
    assert not reg.prior and not msg.national


def test_merge_carries_the_subsumed_identity():
    rec = PatientRecord(ids=[II(HIS_OID, "H0001")], demographics={})
    el = build_registration("PRPA_IN201304UV02", rec, [II(HIS_OID, "H0009")], sender=HIS,
                            receiver=HIE)
    reg = parse_registration(roundtrip(el))
    assert reg.is_merge and reg.prior == [II(HIS_OID, "H0009")]
    assert "replacementOf[1]/priorRegistration" in reg.prior_locations[II(HIS_OID, "H0009")]
    text = etree.tostring(el).decode()
    assert "<name nullFlavor=\"NA\"/>" in text    # no demographics: Person.name is NA


NATIONAL = f"""<PRPA_IN201311UV02 xmlns="urn:hl7-org:v3" ITSVersion="XML_1.0"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <id root="2.16.156.10011.2.5.1.1" extension="N0001"/><creationTime value="20261202093000"/>
 <interactionId root="2.16.156.10011.2.5.1.2" extension="PRPA_IN201311UV02"/>
 <processingCode code="P"/><processingModeCode/><acceptAckCode code="AL"/>
 <receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE">
   <id><item root="2.16.156.10011.2.5.1.3" extension="HIE"/></id></device></receiver>
 <sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE">
   <id><item root="2.16.156.10011.2.5.1.3" extension="HIS"/></id></device></sender>
 <controlActProcess classCode="CACT" moodCode="EVN"><subject typeCode="SUBJ">
  <registrationRequest classCode="REG" moodCode="RQO"><statusCode code="active"/>
   <subject1 typeCode="SBJ"><patient classCode="PAT">
    <id><item root="{HIS_OID}" extension="H0002"/></id><statusCode code="active"/>
    <patientPerson>
     <id><item root="2.16.156.10011.1.3" extension="{ID}"/></id>
     <name xsi:type="LIST_EN"><item><part value="欧阳修"/></item></name>
     <telecom xsi:type="DSET_TEL"><item value="028-2222444"/></telecom>
     <administrativeGenderCode code="2" codeSystem="2.16.156.10011.2.3.3.4">
       <displayName value="女性"/></administrativeGenderCode>
     <birthTime value="19570323"/>
     <addr xsi:type="LIST_AD"><item>
       <part type="STA" value="四川省"/><part type="CTY" value="成都市"/>
       <part type="CNT" value="双流区"/><part type="STB" value="东升街道"/>
       <part type="STR" value="红沙村"/><part type="BNR" value="3号"/>
       <part type="ZIP" value="610200"/></item></addr>
     <ethnicGroupCode><item code="01" codeSystem="2.16.156.10011.2.3.3.3">
       <displayName value="汉族"/></item></ethnicGroupCode>
    </patientPerson></patient></subject1>
  </registrationRequest></subject></controlActProcess>
</PRPA_IN201311UV02>""".encode()


def test_national_r2_message_is_read():
    msg = parse_message(NATIONAL)
    assert msg.national and msg.transmission.r2
    assert msg.transmission.sender == II("2.16.156.10011.2.5.1.3", "HIS")
    reg = parse_registration(msg)
    p = reg.patient
    assert p.identifiers() == [II(HIS_OID, "H0002"), II(RESIDENT_ID_OID, ID)]
    d = p.demographics
    assert d["names"] == [{"family": "欧阳修"}] and d["sex"] == "F"
    assert d["birth_time"] == "19570323"
    assert d["addresses"] == [{"street": "东升街道红沙村3号", "city": "成都市", "state": "四川省",
                               "zip": "610200", "county": "双流区"}]
    assert d["home_phones"] == [{"number": "028-2222444", "use": "PRN", "equipment": "PH"}]
    assert d["ethnic_group"] == [{"code": "01", "text": "汉族",
                                  "system": "2.16.156.10011.2.3.3.3"}]


def test_national_ack_form_and_ihe_ack_form():
    msg = parse_message(NATIONAL)
    detail = AckDetail("205", "已登记于他人", "/PRPA_IN201311UV02/x", "W")
    nat = build_ack(Acknowledgement("AA", msg.transmission.id, (detail,)), msg.transmission,
                    node_device=HIE, national=True)
    text = etree.tostring(nat, encoding="unicode")
    assert '<acknowledgement typeCode="AA">' in text and '<text value="已登记于他人"/>' in text
    assert '<item root="2.16.156.10011.2.5.1.3" extension="HIS"/>' in text   # back to sender
    back = roundtrip(nat)
    assert back.interaction == "MCCI_IN000002UV01"
    assert back.acknowledgement == Acknowledgement("AA", II("2.16.156.10011.2.5.1.1", "N0001"),
                                                   (detail,))
    req = parse_message(_feed())
    ihe = build_ack(Acknowledgement("AE", II("1.2.3", "M1"), (AckDetail("204", "x", "/a"),)),
                    req.transmission, node_device=HIE)
    assert ihe.find("{urn:hl7-org:v3}acknowledgement/{urn:hl7-org:v3}typeCode").get("code") \
        == "AE"
    assert roundtrip(ihe).acknowledgement.details[0].location == "/a"


def test_update_notification_iti46_roundtrip():
    el = build_update_notification([II("1.2.156.9999.2", "E0001"), II(HIS_OID, "H0001")],
                                   ZHANG_SAN, sender=HIE, receiver=II("1.2.156.7.7"),
                                   custodian=II("1.2.156.9999.2"), now=NOW)
    msg = roundtrip(el)
    assert msg.interaction == "PRPA_IN201302UV02"
    assert msg.transmission.senders == (HIE,) and msg.transmission.receivers == \
        (II("1.2.156.7.7"),)
    reg = parse_registration(msg)
    assert reg.patient.ids == [II("1.2.156.9999.2", "E0001"), II(HIS_OID, "H0001")]
    assert reg.patient.demographics["names"] == [{"family": "张", "given": "三", "type": "L"}]
    assert el.find(".//{urn:hl7-org:v3}custodian//{urn:hl7-org:v3}id").get("root") == \
        "1.2.156.9999.2"
    bare = build_update_notification([II(HIS_OID, "H0001")], sender=HIE, receiver=HIS)
    assert parse_registration(roundtrip(bare)).patient.demographics == {"names": None}
    with pytest.raises(ValueError):
        build_update_notification([], sender=HIE, receiver=HIS)


def test_pix_query_roundtrip_and_response():
    el = build_pix_query(II(HIS_OID, "H0001"), ["1.2.156.9999.2", RESIDENT_ID_OID],
                         sender=HIS, receiver=HIE, query_id=II("1.2.3", "Q1"))
    msg = roundtrip(el)
    q = parse_pix_query(msg)
    assert q.query_id == II("1.2.3", "Q1") and q.patient == II(HIS_OID, "H0001")
    assert [d for d, _ in q.data_sources] == ["1.2.156.9999.2", RESIDENT_ID_OID]
    assert q.data_sources[1][1].endswith("/parameterList/dataSource[2]/value")
    resp = build_query_response("PRPA_IN201310UV02", msg,
                                Acknowledgement("AA", msg.transmission.id),
                                QueryAck(q.query_id, "OK", 1, 1, 0),
                                [PatientRecord(ids=[II(RESIDENT_ID_OID, ID)])],
                                node_device=HIE, custodian=II("1.2.156.9999.2"),
                                query_by_parameter=q.query_by_parameter)
    back = roundtrip(resp)
    assert back.query_ack == QueryAck(II("1.2.3", "Q1"), "OK", 1, 1, 0)
    assert back.transmission.receivers == (HIS,)
    assert back.control_act.find("{urn:hl7-org:v3}queryByParameter") is not None


@pytest.mark.parametrize("kw, expected", [
    (dict(name={"family": "张*"}), {"family": "张*"}),
    (dict(name="张三"), {"name": "张三"}),
    (dict(gender="F", birth="19920304"), {"sex": "F", "birth": "19920304"}),
    (dict(gender="2"), {"sex": "F"}),
    (dict(ids=[II(RESIDENT_ID_OID, ID), II(HIS_OID, "H0003")]),
     {"resident_id": ID, "id": "H0003", "id_oid": HIS_OID}),
    (dict(address={"city": "北京市丰台区", "county": "丰台区"}),
     {"city": "北京市丰台区", "county": "丰台区"}),
    (dict(telecom="tel:13800001111"), {"phone": "13800001111"}),
])
def test_pdq_query_parameters(kw, expected):
    el = build_pdq_query(sender=HIS, receiver=HIE, initial_quantity=2, scoping=["1.2.3"], **kw)
    q = parse_pdq_query(roundtrip(el))
    assert q.params == expected and q.initial_quantity == 2
    assert [d for d, _ in q.scoping] == ["1.2.3"]


def test_pdq_query_r2_name_parts():
    el = build_pdq_query(sender=HIS, receiver=HIE, name={"family": "张", "given": "小*"}, r2=True)
    assert parse_pdq_query(roundtrip(el)).params == {"family": "张", "given": "小*"}


def test_continuation_and_cancel_roundtrip():
    c = parse_continuation(roundtrip(build_continuation(II("1.2.3", "Q1"), 5, sender=HIS,
                                                        receiver=HIE)))
    assert (c.query_id, c.status, c.quantity) == (II("1.2.3", "Q1"),
                                                  "waitContinuedQueryResponse", 5)
    c = parse_continuation(roundtrip(build_continuation(II("1.2.3", "Q1"), cancel=True,
                                                        sender=HIS, receiver=HIE)))
    assert c.status == "aborted" and c.quantity is None


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"not xml", b"<a/>", b'<x xmlns="urn:hl7-org:v3"/>',
                                  b"<!DOCTYPE x [<!ENTITY e 'e'>]><x>&e;</x>"])
def test_not_v3(data):
    with pytest.raises(NotV3):
        parse_message(data)


def _feed(**drop) -> bytes:
    el = build_registration("PRPA_IN201301UV02", PatientRecord(ids=[II(HIS_OID, "H1")]),
                            sender=HIS, receiver=HIE)
    for path in drop.values():
        for x in el.findall(path, {"h": "urn:hl7-org:v3"}):
            x.getparent().remove(x)
    return etree.tostring(el)


@pytest.mark.parametrize("path, type_code, code, where", [
    ("h:id", "AE", "101", "/PRPA_IN201301UV02/id"),
    ("h:creationTime", "AE", "101", "/PRPA_IN201301UV02/creationTime"),
    ("h:sender", "AE", "101", "/PRPA_IN201301UV02/sender/device/id"),
    ("h:receiver", "AE", "101", "/PRPA_IN201301UV02/receiver/device/id"),
    ("h:interactionId", "AE", "101", "/PRPA_IN201301UV02/interactionId"),
])
def test_wrapper_refusals(path, type_code, code, where):
    with pytest.raises(V3Error) as e:
        parse_message(_feed(x=path))
    d = e.value.details[0]
    assert (e.value.type_code, d.code, d.location) == (type_code, code, where)


def test_wrong_interaction_processing_code_and_bad_time_are_refused():
    with pytest.raises(V3Error) as e:
        parse_message(_feed(), expected=["PRPA_IN201302UV02"])
    assert e.value.type_code == "AR" and e.value.details[0].code == "201"
    text = _feed().replace(b'processingCode code="P"', b'processingCode code="X"')
    with pytest.raises(V3Error) as e:
        parse_message(text)
    assert e.value.type_code == "AR" and e.value.details[0].code == "202"
    text = _feed().replace(b'extension="PRPA_IN201301UV02"', b'extension="PRPA_IN201302UV02"')
    with pytest.raises(V3Error) as e:
        parse_message(text)
    assert e.value.details[0].code == "200"
    el = etree.fromstring(_feed())
    el.find("{urn:hl7-org:v3}creationTime").set("value", "yesterday")
    with pytest.raises(V3Error) as e:
        parse_message(el)
    assert e.value.details[0].location == "/PRPA_IN201301UV02/creationTime/@value"
    peek = peek_transmission(el)
    assert peek.senders == (HIS,) and peek.interaction == "PRPA_IN201301UV02"


@pytest.mark.parametrize("path, where", [
    ("h:controlActProcess", "/controlActProcess"),
    ("h:controlActProcess/h:subject/h:registrationEvent/h:subject1", "/subject1/patient"),
    ("h:controlActProcess/h:subject/h:registrationEvent/h:subject1/h:patient/h:id",
     "/patient/id"),
])
def test_registration_refusals(path, where):
    with pytest.raises(V3Error) as e:
        parse_registration(parse_message(_feed(x=path)))
    assert e.value.details[0].code == "101" and e.value.details[0].location.endswith(where)


def test_identifier_without_extension_and_merge_without_prior():
    el = etree.fromstring(_feed())
    pid = el.find(".//{urn:hl7-org:v3}patient/{urn:hl7-org:v3}id")
    del pid.attrib["extension"]
    with pytest.raises(V3Error) as e:
        parse_registration(parse_message(el))
    assert e.value.details[0].code == "102"
    merge = build_registration("PRPA_IN201304UV02", PatientRecord(ids=[II(HIS_OID, "H1")]),
                               sender=HIS, receiver=HIE)
    with pytest.raises(V3Error) as e:
        parse_registration(roundtrip(merge))
    assert "priorRegisteredRole" in e.value.details[0].location


@pytest.mark.parametrize("mutate, code", [
    (lambda q: q.remove(q.find("{urn:hl7-org:v3}parameterList")), "101"),
    (lambda q: q.find("{urn:hl7-org:v3}initialQuantity").set("value", "-1"), "102"),
    (lambda q: etree.SubElement(etree.SubElement(q.find("{urn:hl7-org:v3}parameterList"),
                                                 "{urn:hl7-org:v3}mothersMaidenName"),
                                "{urn:hl7-org:v3}value"), "103"),
    (lambda q: q.find(".//{urn:hl7-org:v3}livingSubjectBirthTime/{urn:hl7-org:v3}value")
     .set("value", "1990-01-01"), "102"),
])
def test_pdq_query_refusals_are_qe(mutate, code):
    el = build_pdq_query(sender=HIS, receiver=HIE, birth="19900101", initial_quantity=5)
    mutate(el.find(".//{urn:hl7-org:v3}queryByParameter"))
    with pytest.raises(V3Error) as e:
        parse_pdq_query(roundtrip(el))
    assert (e.value.type_code, e.value.query_code, e.value.details[0].code) == ("AE", "QE", code)
    assert e.value.details[0].location.startswith("/PRPA_IN201305UV02/controlActProcess/")


def test_pix_query_without_identifier_is_qe():
    el = build_pix_query(II(HIS_OID, "H1"), sender=HIS, receiver=HIE)
    pi = el.find(".//{urn:hl7-org:v3}patientIdentifier")
    pi.getparent().remove(pi)
    with pytest.raises(V3Error) as e:
        parse_pix_query(roundtrip(el))
    assert e.value.query_code == "QE" and e.value.details[0].location.endswith(
        "/parameterList/patientIdentifier/value")

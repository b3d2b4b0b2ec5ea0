"""The national interaction services (国家医疗健康信息互联互通标准化成熟度测评: 个人信息注册
PRPA_IN201311UV02, 更新 PRPA_IN201314UV02, 合并 PRPA_IN201304UV02, 查询 PRPA_IN201305UV02) on
POST /pix over real HTTP, on SQLite and PostgreSQL — in the national message form (R2 collection
datatypes, registrationRequest, GB/T 2261.1 gender codes) and answered in it — and the
single-operation WebService convention HIPMessageServer(action, message) on /pix and /pdq."""
from __future__ import annotations

from lxml import etree

from hie.hl7v3 import II, parse_message
from hie.hl7v3_patient import PatientRecord, build_registration
from hie.hl7v3_query import build_pdq_query
from pix_pdq.resident_id import RESIDENT_ID_OID, make
from tests.integration.test_iti44 import (HIE, HIS, HIS_OID, V3, base, person,  # noqa: F401
                                          post)
from tests.unit.test_hl7v3 import NATIONAL

OUYANG_ID = make("11010519900307123")       # the number NATIONAL carries


def national(interaction="PRPA_IN201311UV02", msg_id="N0001", name="欧阳修", mrn="H0002"):
    text = NATIONAL.decode().replace("PRPA_IN201311UV02", interaction) \
        .replace('extension="N0001"', f'extension="{msg_id}"') \
        .replace("欧阳修", name).replace('extension="H0002"', f'extension="{mrn}"')
    return etree.fromstring(text.encode())


def test_register_update_and_answer_in_the_national_form(base, database):
    status, action, body = post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201311UV02", national())
    assert status == 200 and action == "urn:hl7-org:v3:MCCI_IN000002UV01"
    ack = body.find(f"{{{V3}}}acknowledgement")
    assert ack.get("typeCode") == "AA"                           # the national form
    assert body.find(f".//{{{V3}}}receiver//{{{V3}}}item").get("extension") == "HIS"
    p = person(database, HIS_OID, "H0002")
    assert p.name == "欧阳修" and (p.family_name, p.given_name) == ("欧阳", "修")
    assert p.sex == "F" and p.birth_date == "19570323"
    assert p.demographics["addresses"][0]["county"] == "双流区"
    assert person(database, RESIDENT_ID_OID, OUYANG_ID).id == p.id
    status, _, body = post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201314UV02",
                           national("PRPA_IN201314UV02", "N0002", name="欧阳秀"))
    assert parse_message(body).acknowledgement.type_code == "AA"
    assert person(database, HIS_OID, "H0002").name == "欧阳秀"


def test_national_merge(base, database):
    post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201311UV02", national(mrn="H0002"))
    other = make("11010519850412157")
    el = national(msg_id="N0003", mrn="H0003")
    el.find(f".//{{{V3}}}patientPerson/{{{V3}}}id/{{{V3}}}item").set("extension", other)
    post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201311UV02", el)
    assert person(database, HIS_OID, "H0002").id != person(database, HIS_OID, "H0003").id
    merge = build_registration("PRPA_IN201304UV02", PatientRecord(ids=[II(HIS_OID, "H0002")]),
                               [II(HIS_OID, "H0003")], sender=HIS, receiver=HIE, r2=True)
    status, _, body = post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201304UV02", merge)
    assert parse_message(body).acknowledgement.type_code == "AA"
    assert person(database, HIS_OID, "H0003").id == person(database, HIS_OID, "H0002").id


def test_national_query_on_pix(base):
    post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201311UV02", national())
    el = build_pdq_query(sender=HIS, receiver=HIE, ids=[II(RESIDENT_ID_OID, OUYANG_ID)])
    status, action, body = post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201305UV02", el)
    assert action == "urn:hl7-org:v3:PRPA_IN201306UV02"
    assert body.find(f"{{{V3}}}acknowledgement").get("typeCode") == "AA"
    gender = body.find(f".//{{{V3}}}patientPerson/{{{V3}}}administrativeGenderCode")
    assert (gender.get("code"), gender.get("codeSystem")) == ("2", "2.16.156.10011.2.3.3.4")
    assert parse_message(body).query_ack.response_code == "OK"


def hip(base, path, action, message: bytes, ns="urn:hl7-org:v3", qualified=False):
    wrapper = etree.Element(f"{{{ns}}}HIPMessageServer", nsmap={"hip": ns})
    q = (lambda n: f"{{{ns}}}{n}") if qualified else (lambda n: n)
    etree.SubElement(wrapper, q("action")).text = action
    etree.SubElement(wrapper, q("message")).text = message.decode()
    status, resp_action, body = post(base, path, "urn:hl7-org:v3:HIPMessageServer", wrapper)
    return status, resp_action, body


def test_hip_message_server_register_and_query(base, database):
    status, action, body = hip(base, "/pix", "S0001", NATIONAL)
    assert status == 200 and action == "urn:hl7-org:v3:HIPMessageServerResponse"
    assert etree.QName(body).localname == "HIPMessageServerResponse"
    [result] = body
    assert result.tag == "return"                                  # the JAX-WS convention
    answer = parse_message(result.text.encode())
    assert answer.interaction == "MCCI_IN000002UV01"
    assert answer.acknowledgement.type_code == "AA"
    assert person(database, HIS_OID, "H0002").name == "欧阳修"
    query = etree.tostring(build_pdq_query(sender=HIS, receiver=HIE, name="欧阳修"))
    status, _, body = hip(base, "/pdq", "S0004", query, ns="http://tempuri.org/",
                          qualified=True)
    [result] = body
    assert result.tag == "{http://tempuri.org/}HIPMessageServerResult"   # .NET convention
    answer = parse_message(result.text.encode())
    assert answer.interaction == "PRPA_IN201306UV02" and answer.query_ack.response_code == "OK"


def test_hip_message_server_refusals(base):
    status, _, body = hip(base, "/pix", "S0004", NATIONAL)        # the action contradicts
    ack = parse_message(body[0].text.encode()).acknowledgement
    assert ack.type_code == "AE" and ack.details[0].code == "201"
    status, _, body = hip(base, "/pix", "S0001", b"<oops")
    assert status == 400 and etree.QName(body).localname == "Fault"
    wrapper = etree.Element(f"{{{V3}}}HIPMessageServer")
    etree.SubElement(wrapper, "action").text = "S0001"
    status, _, body = post(base, "/pix", "urn:hl7-org:v3:HIPMessageServer", wrapper)
    assert status == 400 and "message parameter" in etree.tostring(body).decode()
    status, _, body = hip(base, "/pdq", "S0001", NATIONAL)        # no registration on /pdq
    assert parse_message(body[0].text.encode()).acknowledgement.type_code == "AR"


# -- SOAP 1.1 (the WebService binding of .NET ASMX / JAX-WS clients) -------------------------

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def post11(base, path, soap_action: str | None, body: etree._Element):
    env = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"soap": SOAP11})
    etree.SubElement(env, f"{{{SOAP11}}}Body").append(body)
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if soap_action is not None:
        headers["SOAPAction"] = f'"{soap_action}"'
    import httpx
    r = httpx.post(base + path, content=etree.tostring(env, xml_declaration=True,
                                                       encoding="UTF-8"), headers=headers,
                   timeout=30)
    return r, etree.fromstring(r.content)


def test_hip_message_server_over_soap11(base, database):
    """A .NET client: SOAP 1.1, SOAPAction ``urn:hl7-org:v3/HIPMessageServer`` (namespace and
    method joined by a slash), qualified parameters; answered in SOAP 1.1 with the result."""
    wrapper = etree.Element(f"{{{V3}}}HIPMessageServer")
    etree.SubElement(wrapper, f"{{{V3}}}action").text = "S0001"
    etree.SubElement(wrapper, f"{{{V3}}}message").text = NATIONAL.decode()
    r, env = post11(base, "/pix", "urn:hl7-org:v3/HIPMessageServer", wrapper)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert env.tag == f"{{{SOAP11}}}Envelope" and env.find(f"{{{SOAP11}}}Header") is None
    [resp] = env.find(f"{{{SOAP11}}}Body")
    assert etree.QName(resp).localname == "HIPMessageServerResponse"
    answer = parse_message(resp[0].text.encode())
    assert answer.acknowledgement.type_code == "AA"
    assert person(database, HIS_OID, "H0002").name == "欧阳修"


def test_a_v3_message_over_soap11_without_soapaction(base, database):
    """No SOAPAction at all: the operation is the body element's (PRPA_IN201311UV02)."""
    r, env = post11(base, "/pix", None, national(msg_id="N0101", mrn="H0101"))
    assert r.status_code == 200
    [ack] = env.find(f"{{{SOAP11}}}Body")
    assert etree.QName(ack).localname == "MCCI_IN000002UV01"
    assert parse_message(ack).acknowledgement.type_code == "AA"
    assert person(database, HIS_OID, "H0101") is not None


def test_soap11_faults_are_soap11(base, database):
    r, env = post11(base, "/pix", "urn:hl7-org:v3/HIPMessageServer",
                    etree.Element(f"{{{V3}}}HIPMessageServer"))          # no message
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/xml")
    fault = env.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault.findtext("faultcode") == "soap:Client" and "message" in fault.findtext(
        "faultstring")
    r, env = post11(base, "/pix", "urn:example:Nothing", etree.Element("Unknown"))
    assert r.status_code == 500 and env.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault") is not None
    import httpx
    r = httpx.post(base + "/pix", content=b"<not xml", headers={
        "Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}, timeout=30)
    assert r.status_code == 500 and b"faultcode" in r.content and b"Traceback" not in r.content
    # the IHE registry keeps SOAP 1.2 only
    r, env = post11(base, "/xds/registry", "urn:ihe:iti:2007:RegistryStoredQuery",
                    etree.Element("AdhocQueryRequest"))
    assert b"VersionMismatch" in r.content

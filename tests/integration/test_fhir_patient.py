"""ITI-104 Patient Identity Feed FHIR and Patient read over real HTTP (httpx against uvicorn), on
SQLite and PostgreSQL: conditional update (create 201, then update 200), create, update by id,
JSON and XML bodies and answers, Resolve Duplicate Patient (replaced-by) and the merged read,
every refusal as an OperationOutcome that leaves the index as it was, one index with HL7 v2
(a FHIR-fed patient answers an ITI-9 PIX query over MLLP), and the audit trail."""
from __future__ import annotations

import dataclasses

import httpx
import pytest
import sqlalchemy as sa
from lxml import etree

from hie.app import create_app
from hie.fhir import FHIR_NS, parse_xml_resource, to_xml
from hie.node import Node
from hie.tables import audit_event as t_audit
from pix_pdq.resident_id import RESIDENT_ID_OID, make
from pix_pdq.tables import identifier as t_id, person as t_person
from tests.serve import serve

XIEHE = "1.2.156.112604.1.1.101.2"     # 协和医院 patient-ID domain (test value)
TIANTAN = "1.2.156.112604.1.1.102.2"   # 天坛医院
ZHANG_SAN_ID = make("11010519900307123")
LI_SI_ID = make("31010419851120456")
JSON = {"Content-Type": "application/fhir+json"}
XML = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"}


def patient(mrn: str = "MR0001", domain: str = XIEHE, family: str = "张", given: str = "三",
            rid: str | None = ZHANG_SAN_ID, birth: str = "1990-03-07", gender: str = "male",
            city: str = "北京市", phone: str | None = "13800138000", **extra) -> dict:
    ids = [{"system": f"urn:oid:{domain}", "value": mrn}] if mrn else []
    if rid:
        ids.append({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                   "v2-0203", "code": "NI"}]},
                    "system": f"urn:oid:{RESIDENT_ID_OID}", "value": rid})
    p = {"resourceType": "Patient", "identifier": ids,
         "name": [{"use": "official", "text": family + given, "family": family,
                   "given": [given]}],
         "gender": gender, "birthDate": birth,
         "address": [{"use": "home", "line": ["东华门街道1号"], "city": city,
                      "district": "东城区", "state": "北京市", "postalCode": "100010",
                      "country": "CHN"}]}
    if phone:
        p["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
    if not ids:
        del p["identifier"]
    p.update(extra)
    return p


def put(client, p: dict, domain: str = XIEHE, mrn: str | None = None, **kw) -> httpx.Response:
    mrn = mrn or p["identifier"][0]["value"]
    return client.put("/Patient", params={"identifier": f"urn:oid:{domain}|{mrn}"}, json=p,
                      headers=JSON, **kw)


@pytest.fixture
def fhir_client(node):
    with serve(create_app(node)) as base:
        with httpx.Client(base_url=base + "/fhir", timeout=20) as client:
            yield client


def persons(node) -> int:
    with node.db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t_person)).scalar_one()


def outcome(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json() if "json" in r.headers["content-type"] else parse_xml_resource(r.content)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] in ("error", "fatal")
    assert body["issue"][0]["code"] == code, body
    return body


def test_conditional_update_creates_then_updates(fhir_client, node):
    r = put(fhir_client, patient())
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    created = r.json()
    pid = created["id"]
    assert r.headers["location"].endswith(f"/fhir/Patient/{pid}")
    assert created["name"] == [{"use": "official", "text": "张三", "family": "张",
                                "given": ["三"]}]
    assert {(i["system"], i["value"]) for i in created["identifier"]} == {
        (f"urn:oid:{XIEHE}", "MR0001"), (f"urn:oid:{RESIDENT_ID_OID}", ZHANG_SAN_ID)}
    # the same identity again, with a new phone and no address: updated in place (replaced)
    changed = patient(phone="13911112222")
    del changed["address"]
    r = put(fhir_client, changed)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == pid
    read = fhir_client.get(f"/Patient/{pid}").json()
    assert read["telecom"] == [{"system": "phone", "value": "13911112222", "use": "mobile"}]
    assert "address" not in read
    assert (read["gender"], read["birthDate"], read["active"]) == ("male", "1990-03-07", True)
    assert persons(node) == 1


def test_url_identifier_is_part_of_the_identity(fhir_client):
    body = patient(mrn="", rid=None)   # the identity is only in the URL
    r = fhir_client.put("/Patient", params={"identifier": f"urn:oid:{TIANTAN}|TT0001"},
                        json=body, headers=JSON)
    assert r.status_code == 201, r.text
    assert r.json()["identifier"] == [{"system": f"urn:oid:{TIANTAN}", "value": "TT0001"}]


def test_xml_create_read_and_negotiation(fhir_client):
    xml = to_xml(patient(mrn="MR0002", family="欧阳", given="娜娜", gender="female",
                         rid=LI_SI_ID, birth="1985-11-20"))
    r = fhir_client.post("/Patient", content=xml, headers=XML)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/fhir+xml")
    root = etree.fromstring(r.content)
    ns = {"f": FHIR_NS}
    assert root.xpath("f:name/f:family/@value", namespaces=ns) == ["欧阳"]
    pid = root.xpath("f:id/@value", namespaces=ns)[0]
    for how in ({"params": {"_format": "xml"}}, {"headers": {"Accept": "application/xml"}}):
        again = fhir_client.get(f"/Patient/{pid}", **how)
        assert again.headers["content-type"].startswith("application/fhir+xml")
        assert parse_xml_resource(again.content)["name"][0]["given"] == ["娜娜"]
    js = fhir_client.get(f"/Patient/{pid}", params={"_format": "json"}).json()
    assert js["gender"] == "female" and js["name"][0]["text"] == "欧阳娜娜"
    pretty = fhir_client.get(f"/Patient/{pid}", params={"_pretty": "true"})
    assert b"\n  " in pretty.content and pretty.json() == js


def test_update_by_id(fhir_client, node):
    pid = put(fhir_client, patient()).json()["id"]
    body = patient(family="张", given="叁", phone=None)
    body["id"] = pid
    r = fhir_client.put(f"/Patient/{pid}", json=body, headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json()["name"][0]["text"] == "张叁" and "telecom" not in r.json()
    # the id in the body must be the one in the URL
    body["id"] = str(int(pid) + 1)
    outcome(fhir_client.put(f"/Patient/{pid}", json=body, headers=JSON), 400, "invalid")
    # no update-as-create: the index assigns the ids
    body["id"] = "999999"
    outcome(fhir_client.put("/Patient/999999", json=body, headers=JSON), 405, "not-supported")
    # identifiers that belong to another patient: refused, nothing changed
    other = put(fhir_client, patient(mrn="MR0009", rid=LI_SI_ID, family="李", given="四"))
    body = patient(mrn="MR0009", rid=None, family="王", given="五")
    body["id"] = pid
    outcome(fhir_client.put(f"/Patient/{pid}", json=body, headers=JSON), 409, "conflict")
    assert fhir_client.get(f"/Patient/{other.json()['id']}").json()["name"][0]["text"] == "李四"
    assert fhir_client.get(f"/Patient/{pid}").json()["name"][0]["text"] == "张叁"
    assert persons(node) == 2


def test_create_if_none_exist_and_prefer_minimal(fhir_client, node):
    first = fhir_client.post("/Patient", json=patient(), headers=JSON)
    assert first.status_code == 201
    again = fhir_client.post("/Patient", json=patient(given="叁"), headers={
        **JSON, "If-None-Exist": f"identifier=urn:oid:{XIEHE}|MR0001"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.json()["name"][0]["given"] == ["三"]    # existing: left unchanged
    minimal = fhir_client.post("/Patient", json=patient(mrn="MR0003", rid=None, given="丰"),
                               headers={**JSON, "Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"]
    assert persons(node) == 2


def test_resolve_duplicate_merges_and_read_shows_replaced_by(fhir_client, node):
    survivor = put(fhir_client, patient()).json()["id"]
    # a duplicate at another hospital, too different for the index to link by itself
    dup = put(fhir_client, patient(mrn="TT0007", domain=TIANTAN, rid=None, given="叁",
                                   birth="1991-04-08", phone=None, city="天津市"),
              domain=TIANTAN).json()["id"]
    assert dup != survivor
    merge = patient(mrn="TT0007", domain=TIANTAN, rid=None, given="叁", active=False,
                    link=[{"other": {"reference": f"Patient/{survivor}"},
                           "type": "replaced-by"}])
    r = put(fhir_client, merge, domain=TIANTAN)
    assert r.status_code == 200, r.text
    gone = fhir_client.get(f"/Patient/{dup}").json()
    assert gone["active"] is False
    assert gone["link"] == [{"other": {"reference": f"Patient/{survivor}"},
                             "type": "replaced-by"}]
    kept = fhir_client.get(f"/Patient/{survivor}").json()
    assert kept["active"] is True
    assert {"other": {"reference": f"Patient/{dup}"}, "type": "replaces"} in kept["link"]
    assert {"use": "old", "system": f"urn:oid:{TIANTAN}", "value": "TT0007"} in \
        kept["identifier"]
    # the merged-away patient takes no more updates
    body = patient(mrn="TT0007", domain=TIANTAN, rid=None)
    body["id"] = dup
    outcome(fhir_client.put(f"/Patient/{dup}", json=body, headers=JSON), 422, "business-rule")
    # a merge of a patient the index does not know
    unknown = dict(merge)
    outcome(put(fhir_client, unknown, domain=TIANTAN, mrn="TT9999"), 404, "not-found")
    with node.db.read() as conn:
        assert conn.execute(sa.select(t_id.c.value).where(
            t_id.c.value == "TT9999")).first() is None


@pytest.mark.parametrize("body, headers, status, code", [
    (b'{"resourceType": "Patient", ', JSON, 400, "structure"),
    (b"<Patient xmlns='http://hl7.org/fhir'><name>", XML, 400, "structure"),
    (b'{"resourceType": "Observation"}', JSON, 400, "invalid"),
    (b'{"resourceType": "Patient", "gender": "\xe7\x94\xb7"}', JSON, 400, "code-invalid"),
    (b'{"resourceType": "Patient", "birthDate": "1990/03/07"}', JSON, 400, "value"),
    (b'{"resourceType": "Patient", "name": [{"text": "\xe5\xbc\xa0\xe4\xb8\x89"}]}', JSON, 422,
     "required"),
    (b'{"resourceType": "Patient", "identifier": [{"value": "MR1"}]}', JSON, 422, "required"),
    (('{"resourceType": "Patient", "identifier": [{"system": "urn:oid:%s", "value": '
      '"110105199003071230"}]}' % RESIDENT_ID_OID).encode(), JSON, 422, "business-rule"),
    (b"MSH|^~\\&|HIS", {"Content-Type": "application/hl7-v2"}, 415, "not-supported"),
    (b"", JSON, 400, "required"),
])
def test_refused_feeds_leave_the_index_as_it_was(fhir_client, node, body, headers, status,
                                                 code):
    before = persons(node)
    outcome(fhir_client.post("/Patient", content=body, headers=headers), status, code)
    assert persons(node) == before


def test_conditional_update_errors(fhir_client, node):
    a = put(fhir_client, patient()).json()["id"]
    b = put(fhir_client, patient(mrn="MR0002", rid=LI_SI_ID, given="四")).json()["id"]
    assert a != b
    both = f"urn:oid:{XIEHE}|MR0001,urn:oid:{XIEHE}|MR0002"
    outcome(fhir_client.put("/Patient", params={"identifier": both}, json=patient(),
                            headers=JSON), 412, "multiple-matches")
    outcome(fhir_client.put("/Patient", params={"family": "张"}, json=patient(), headers=JSON),
            400, "not-supported")
    outcome(fhir_client.put("/Patient", params={"identifier": "MR0001"}, json=patient(),
                            headers=JSON), 400, "invalid")
    outcome(fhir_client.put("/Patient", json=patient(), headers=JSON), 400, "required")
    wrong_id = patient()
    wrong_id["id"] = b
    outcome(put(fhir_client, wrong_id), 400, "invalid")
    assert persons(node) == 2


def test_read_errors_and_methods(fhir_client):
    outcome(fhir_client.get("/Patient/424242"), 404, "not-found")
    outcome(fhir_client.get("/Patient/abc"), 404, "not-found")
    r = fhir_client.delete("/Patient/1")
    outcome(r, 405, "not-supported")
    assert r.headers["allow"] == "GET, PUT"
    outcome(fhir_client.patch("/Patient", json={}), 405, "not-supported")
    outcome(fhir_client.get("/Patient/1", headers={"Accept": "text/html"}), 406, "not-supported")
    outcome(fhir_client.get("/Patient/1", params={"_format": "turtle"}), 406, "not-supported")
    xml_error = fhir_client.get("/Patient/424242", params={"_format": "xml"})
    assert xml_error.headers["content-type"].startswith("application/fhir+xml")
    outcome(xml_error, 404, "not-found")


def test_auto_domains_off_refuses_unknown_authorities(settings):
    strict = Node(dataclasses.replace(settings, pix_auto_domains=False), create_schema=False)
    try:
        with serve(create_app(strict)) as base, httpx.Client(base_url=base + "/fhir") as c:
            outcome(put(c, patient()), 422, "business-rule")
            assert persons(strict) == 0
            # the national resident-ID domain is always known
            r = put(c, patient(mrn="", rid=ZHANG_SAN_ID), domain=RESIDENT_ID_OID,
                    mrn=ZHANG_SAN_ID)
            assert r.status_code == 201, r.text
    finally:
        strict.close()


def test_metadata_describes_patient(fhir_client):
    caps = fhir_client.get("/metadata").json()
    assert caps["resourceType"] == "CapabilityStatement" and caps["fhirVersion"] == "4.0.1"
    (patient_caps,) = [r for r in caps["rest"][0]["resource"] if r["type"] == "Patient"]
    assert {i["code"] for i in patient_caps["interaction"]} == {"read", "search-type", "create",
                                                                 "update"}
    assert patient_caps["conditionalUpdate"] is True and patient_caps["updateCreate"] is False
    assert {"family", "given", "birthdate", "identifier", "address-city", "telecom"} <= \
        {p["name"] for p in patient_caps["searchParam"]}
    assert patient_caps["operation"][0]["name"] == "ihe-pix"
    xml = fhir_client.get("/metadata", params={"_format": "xml"})
    assert parse_xml_resource(xml.content) == caps | {"date": caps["date"]}


def test_every_request_is_audited_and_measured(fhir_client, node):
    put(fhir_client, patient())
    fhir_client.get("/Patient/424242")
    node.audit.sinks[0].flush()
    with node.db.read() as conn:
        rows = conn.execute(sa.select(t_audit.c.transaction, t_audit.c.outcome,
                                      t_audit.c.patient_id)
                            .order_by(t_audit.c.id)).all()
    assert [(r.transaction, r.outcome) for r in rows] == [("ITI-104", 0), ("ITI-78", 8)]
    assert node.settings.affinity_domain not in (rows[0].patient_id or "x")
    assert "MR0001" in rows[0].patient_id
    text = node.metrics.render()
    assert 'hie_requests_total{transaction="ITI-104",outcome="0"} 1' in text
    assert 'hie_requests_total{transaction="ITI-78",outcome="8"} 1' in text


def test_fhir_fed_patient_answers_iti9_over_mllp(fhir_client, node):
    """One index: identities fed by FHIR are cross-referenced by the HL7 v2 PIX query."""
    from tests.integration.test_iti9 import pid3, qbp
    from tests.integration.test_iti8 import send
    from tests.mllp_support import running
    from pix_pdq.mllp_service import start_mllp
    put(fhir_client, patient())
    put(fhir_client, patient(mrn="TT0001", domain=TIANTAN), domain=TIANTAN)  # same ID number
    with running(lambda: start_mllp(node, "127.0.0.1", 0, idle_timeout=30)) as server:
        rsp = send(server.address, qbp(f"TT0001^^^&{TIANTAN}&ISO"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AA", "OK")
    assert pid3(rsp) == {("MR0001", XIEHE), (ZHANG_SAN_ID, RESIDENT_ID_OID)}

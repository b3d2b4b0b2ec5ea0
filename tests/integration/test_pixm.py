"""ITI-83 PIXm ``$ihe-pix`` over real HTTP, on SQLite and PostgreSQL (PIXm 3.0, ITI TF-2
3.83.4.2): cross-references of identities fed by ITI-104 at two hospitals and linked through the
resident ID number; targetSystem filtering; the three error cases (400 unknown source domain,
404 unknown identifier, 403 unknown targetSystem) as OperationOutcomes; JSON, XML and POST."""
from __future__ import annotations

import pytest

from hie.fhir import parse_xml_resource, to_json
from pix_pdq.resident_id import RESIDENT_ID_OID
from tests.integration.test_fhir_patient import (TIANTAN, XIEHE, ZHANG_SAN_ID, fhir_client,  # noqa: F401
                                                 outcome, patient, put)

PIX = "/Patient/$ihe-pix"


@pytest.fixture
def linked(fhir_client, node):
    """张三 at 协和 (MR0001) and at 天坛 (TT0001), both with his resident ID number."""
    a = put(fhir_client, patient()).json()["id"]
    b = put(fhir_client, patient(mrn="TT0001", domain=TIANTAN), domain=TIANTAN).json()["id"]
    assert a == b
    return fhir_client, a


def targets(body: dict) -> tuple[set[tuple[str, str]], list[str]]:
    ids = {(p["valueIdentifier"]["system"], p["valueIdentifier"]["value"])
           for p in body.get("parameter", []) if p["name"] == "targetIdentifier"}
    refs = [p["valueReference"]["reference"] for p in body.get("parameter", [])
            if p["name"] == "targetId"]
    return ids, refs


def test_all_cross_references(linked):
    client, pid = linked
    r = client.get(PIX, params={"sourceIdentifier": f"urn:oid:{XIEHE}|MR0001"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    assert r.json()["resourceType"] == "Parameters"
    assert targets(r.json()) == ({(f"urn:oid:{TIANTAN}", "TT0001"),
                                  (f"urn:oid:{RESIDENT_ID_OID}", ZHANG_SAN_ID)},
                                 [f"Patient/{pid}"])


def test_target_system_filters(linked):
    client, pid = linked
    r = client.get(PIX, params={"sourceIdentifier": f"urn:oid:{XIEHE}|MR0001",
                                "targetSystem": f"urn:oid:{TIANTAN}"})
    assert targets(r.json()) == ({(f"urn:oid:{TIANTAN}", "TT0001")}, [f"Patient/{pid}"])
    two = client.get(PIX, params=[("sourceIdentifier", f"urn:oid:{TIANTAN}|TT0001"),
                                  ("targetSystem", f"urn:oid:{XIEHE}"),
                                  ("targetSystem", f"urn:oid:{RESIDENT_ID_OID}")])
    assert targets(two.json())[0] == {(f"urn:oid:{XIEHE}", "MR0001"),
                                      (f"urn:oid:{RESIDENT_ID_OID}", ZHANG_SAN_ID)}


def test_by_resident_id_number_in_its_15_digit_form(linked):
    client, pid = linked
    legacy = ZHANG_SAN_ID[:6] + ZHANG_SAN_ID[8:17]
    r = client.get(PIX, params={"sourceIdentifier": f"urn:oid:{RESIDENT_ID_OID}|{legacy}",
                                "targetSystem": f"urn:oid:{XIEHE}"})
    assert targets(r.json()) == ({(f"urn:oid:{XIEHE}", "MR0001")}, [f"Patient/{pid}"])


def test_known_but_nothing_in_the_target_domain(fhir_client, node):
    put(fhir_client, patient(mrn="MR0005", rid=None, given="五"))
    put(fhir_client, patient(mrn="TT0002", domain=TIANTAN, rid=None, family="李", given="四",
                             birth="1970-01-01", phone=None, city="天津市"), domain=TIANTAN)
    r = fhir_client.get(PIX, params={"sourceIdentifier": f"urn:oid:{XIEHE}|MR0005",
                                     "targetSystem": f"urn:oid:{TIANTAN}"})
    assert r.status_code == 200 and r.json() == {"resourceType": "Parameters"}


def test_xml_and_post(linked):
    client, pid = linked
    r = client.get(PIX, params={"sourceIdentifier": f"urn:oid:{XIEHE}|MR0001",
                                "_format": "xml"})
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert targets(parse_xml_resource(r.content))[1] == [f"Patient/{pid}"]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "sourceIdentifier", "valueIdentifier": {"system": f"urn:oid:{XIEHE}",
                                                         "value": "MR0001"}},
        {"name": "targetSystem", "valueUri": f"urn:oid:{TIANTAN}"}]}
    posted = client.post(PIX, content=to_json(body),
                         headers={"Content-Type": "application/fhir+json"})
    assert targets(posted.json()) == ({(f"urn:oid:{TIANTAN}", "TT0001")}, [f"Patient/{pid}"])
    form = client.post(PIX, data={"sourceIdentifier": f"urn:oid:{TIANTAN}|TT0001",
                                  "targetSystem": f"urn:oid:{XIEHE}"})
    assert targets(form.json())[0] == {(f"urn:oid:{XIEHE}", "MR0001")}


def test_errors(linked):
    client, _ = linked
    unknown_domain = outcome(client.get(PIX, params={
        "sourceIdentifier": "urn:oid:1.2.156.999.999|MR0001"}), 400, "code-invalid")
    assert unknown_domain["issue"][0]["diagnostics"] == \
        "sourceIdentifier Assigning Authority not found"
    not_found = outcome(client.get(PIX, params={
        "sourceIdentifier": f"urn:oid:{XIEHE}|MR9999"}), 404, "not-found")
    assert not_found["issue"][0]["diagnostics"] == "sourceIdentifier Patient Identifier not found"
    target = outcome(client.get(PIX, params={
        "sourceIdentifier": f"urn:oid:{XIEHE}|MR0001",
        "targetSystem": "urn:oid:1.2.156.999.888"}), 403, "code-invalid")
    assert target["issue"][0]["diagnostics"] == "targetSystem not found"
    outcome(client.get(PIX), 400, "required")
    outcome(client.get(PIX, params={"sourceIdentifier": "MR0001"}), 400, "invalid")
    outcome(client.get(PIX, params=[("sourceIdentifier", f"urn:oid:{XIEHE}|MR0001"),
                                    ("sourceIdentifier", f"urn:oid:{TIANTAN}|TT0001")]),
            400, "invalid")
    outcome(client.delete(PIX), 405, "not-supported")
    xml = client.get(PIX, params={"sourceIdentifier": f"urn:oid:{XIEHE}|MR9999",
                                  "_format": "xml"})
    assert parse_xml_resource(xml.content)["issue"][0]["code"] == "not-found"

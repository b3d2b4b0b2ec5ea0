"""ITI-78 PDQm search over real HTTP, on SQLite and PostgreSQL (PDQm 3.x, ITI TF-2 3.78.4.1;
FHIR R4 search): patients fed by ITI-104 with Chinese names and addresses found by every
supported parameter (family prefix 张 — never 章 —, variant 張, given, name, birthdate ranges,
gender, identifier and the resident ID number, address parts, telecom, _id), stateless paging
followed across two separate HTTP servers (as several workers would serve it), _count and
total, POST _search, XML bundles, and the FHIR answers to unknown or unsupported parameters."""
from __future__ import annotations

import httpx
import pytest

from hie.app import create_app
from hie.fhir import parse_xml_resource
from hie.node import Node
from pix_pdq.resident_id import RESIDENT_ID_OID, make
from tests.integration.test_fhir_patient import (TIANTAN, XIEHE, fhir_client,  # noqa: F401
                                                 outcome, patient, put)
from tests.serve import serve

PEOPLE = [  # mrn, family, given, birth, gender, city, phone
    ("P01", "张", "三", "1990-03-07", "male", "北京市", "13800138001"),
    ("P02", "张", "伟", "1985-11-20", "male", "上海市", "13800138002"),
    ("P03", "章", "三", "1990-03-08", "male", "广州市", "13800138003"),
    ("P04", "王", "芳", "1992-06-15", "female", "北京市", "13800138004"),
    ("P05", "欧阳", "娜娜", "2000-01-02", "female", "厦门市", "13800138005"),
    ("P06", "张", "小明", "2010-12-31", "male", "北京市", "13800138006"),
    ("P07", "李", "四", "1975-07-01", "other", "天津市", "13800138007"),
]


def rid(n: int, birth: str) -> str:
    return make("110101" + birth.replace("-", "") + f"{n:02d}1")


@pytest.fixture
def people(fhir_client):
    ids = {}
    for n, (mrn, family, given, birth, gender, city, phone) in enumerate(PEOPLE, start=1):
        r = put(fhir_client, patient(mrn=mrn, family=family, given=given, birth=birth,
                                     gender=gender, city=city, phone=phone,
                                     rid=rid(n, birth)))
        assert r.status_code == 201, r.text
        ids[mrn] = r.json()["id"]
    return fhir_client, ids


def found(client, **params) -> list[str]:
    r = client.get("/Patient", params=params)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    mrns = sorted(next(i["value"] for i in e["resource"]["identifier"]
                       if i["system"] == f"urn:oid:{XIEHE}")
                  for e in bundle.get("entry", []) if e["search"]["mode"] == "match")
    assert bundle["total"] == len(mrns)
    return mrns


@pytest.mark.parametrize("params, expected", [
    ({"family": "张"}, ["P01", "P02", "P06"]),
    ({"family": "張"}, ["P01", "P02", "P06"]),          # traditional form folded
    ({"family": "章"}, ["P03"]),                          # a homophone is not a match
    ({"family": "欧"}, ["P05"]),                          # prefix of a compound surname
    ({"family:exact": "欧"}, []),
    ({"family:exact": "欧阳"}, ["P05"]),
    ({"given": "三"}, ["P01", "P03"]),
    ({"family": "张", "given": "小"}, ["P06"]),
    ({"name": "张三"}, ["P01"]),
    ({"name": "娜"}, ["P05"]),
    ({"birthdate": "1990-03-07"}, ["P01"]),
    ({"birthdate": "1990"}, ["P01", "P03"]),
    ({"birthdate": "1990-03"}, ["P01", "P03"]),
    ({"birthdate": "ge2000-01-02"}, ["P05", "P06"]),
    ({"birthdate": "gt2000-01-02"}, ["P06"]),
    ({"birthdate": "lt1985-11-20"}, ["P07"]),
    ({"birthdate": "le1985"}, ["P02", "P07"]),
    ({"gender": "female"}, ["P04", "P05"]),
    ({"gender": "other"}, ["P07"]),
    ({"identifier": f"urn:oid:{XIEHE}|P04"}, ["P04"]),
    ({"identifier": "P04"}, ["P04"]),
    ({"identifier": f"urn:oid:{TIANTAN}|P04"}, []),
    ({"address-city": "北京"}, ["P01", "P04", "P06"]),
    ({"address-city:exact": "北京"}, []),
    ({"address": "厦门"}, ["P05"]),
    ({"address-state": "北京", "gender": "female"}, ["P04", "P05"]),
    ({"address-postalcode": "100010", "family": "李"}, ["P07"]),
    ({"address-country": "CHN", "given": "伟"}, ["P02"]),
    ({"telecom": "13800138005"}, ["P05"]),
    ({"telecom": "phone|+86 138-0013-8007"}, ["P07"]),
    ({"active": "true", "family": "王"}, ["P04"]),
    ({"active": "false"}, []),
])
def test_search_by_each_parameter(people, params, expected):
    client, _ = people
    assert found(client, **params) == expected


def test_id_and_resident_id_number(people):
    client, ids = people
    assert found(client, _id=ids["P03"]) == ["P03"]
    number = rid(2, "1985-11-20")
    assert found(client, identifier=f"urn:oid:{RESIDENT_ID_OID}|{number}") == ["P02"]
    legacy = number[:6] + number[8:17]     # the 15-digit form of the same number
    assert found(client, identifier=f"urn:oid:{RESIDENT_ID_OID}|{legacy}") == ["P02"]
    assert found(client, identifier=f"urn:oid:{RESIDENT_ID_OID}|{number.lower()}") == ["P02"]


def test_paging_is_stateless_across_servers(people, node, settings):
    client, _ = people
    other = Node(settings, create_schema=False)        # a second worker on the same database
    try:
        with serve(create_app(other)) as base2, httpx.Client(timeout=20) as plain:
            first = client.get("/Patient", params={"_count": "2", "gender": "male"}).json()
            assert first["total"] == 4 and len(first["entry"]) == 2
            links = {link["relation"]: link["url"] for link in first["link"]}
            assert "previous" not in links and "_count=2" in links["self"]
            seen = [e["resource"]["id"] for e in first["entry"]]
            pages = [first]
            url = links["next"]
            while url:
                # follow each next link on the other server
                host = url.split("/fhir/")[0]
                page = plain.get(url.replace(host, base2)).json()
                pages.append(page)
                seen += [e["resource"]["id"] for e in page["entry"]]
                url = {lk["relation"]: lk["url"] for lk in page["link"]}.get("next")
            assert len(pages) == 2 and len(seen) == 4 and len(set(seen)) == 4
            assert seen == sorted(seen, key=int)
            back = {lk["relation"]: lk["url"] for lk in pages[-1]["link"]}["previous"]
            host = back.split("/fhir/")[0]
            previous = plain.get(back.replace(host, base2)).json()
            assert [e["resource"]["id"] for e in previous["entry"]] == seen[:2]
            assert "previous" not in {lk["relation"] for lk in previous["link"]}
    finally:
        other.close()


def test_count_zero_and_limits(people):
    client, _ = people
    zero = client.get("/Patient", params={"family": "张", "_count": "0"}).json()
    assert zero["total"] == 3 and "entry" not in zero
    outcome(client.get("/Patient", params={"_count": "many"}), 400, "value")


def test_post_search_and_xml(people):
    client, _ = people
    r = client.post("/Patient/_search", data={"family": "张", "given": "伟"})
    assert r.status_code == 200 and r.json()["total"] == 1
    xml = client.get("/Patient", params={"family": "欧阳", "_format": "xml"})
    assert xml.headers["content-type"].startswith("application/fhir+xml")
    bundle = parse_xml_resource(xml.content)
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["name"][0]["text"] == "欧阳娜娜"
    outcome(client.post("/Patient/_search", json={"family": "张"}), 415, "not-supported")


def test_merged_patients_are_not_found(people):
    client, ids = people
    merge = patient(mrn="P03", family="章", given="三", birth="1990-03-08", active=False,
                    rid=None, link=[{"other": {"reference": f"Patient/{ids['P01']}"},
                                     "type": "replaced-by"}])
    assert put(client, merge).status_code == 200
    assert found(client, family="章") == []
    assert found(client, given="三") == ["P01"]


def test_unknown_and_unsupported_parameters(people):
    client, _ = people
    r = client.get("/Patient", params={"family": "王", "_sort": "birthdate", "shoeSize": "42"})
    bundle = r.json()
    assert r.status_code == 200 and bundle["total"] == 1
    self_link = bundle["link"][0]["url"]
    assert "_sort" not in self_link and "shoeSize" not in self_link and "family=" in self_link
    warning = bundle["entry"][-1]
    assert warning["search"]["mode"] == "outcome"
    assert "shoeSize" in warning["resource"]["issue"][0]["diagnostics"]
    strict = client.get("/Patient", params={"family": "王", "shoeSize": "42"},
                        headers={"Prefer": "handling=strict"})
    outcome(strict, 400, "not-supported")
    outcome(client.get("/Patient", params={"family:contains": "三"}), 400, "not-supported")
    outcome(client.get("/Patient", params={"birthdate": "1990-02-30"}), 400, "value")
    outcome(client.get("/Patient", params={"birthdate": "ne1990"}), 400, "not-supported")
    outcome(client.get("/Patient", params={"birthdate": "yesterday"}), 400, "value")
    outcome(client.get("/Patient", params={"gender": "男"}), 400, "code-invalid")
    outcome(client.get("/Patient", params={"telecom": "email|a@b.cn"}), 400, "not-supported")
    outcome(client.get("/Patient", params={"family": "张,王"}), 400, "not-supported")
    outcome(client.get("/Patient", params={"_after": "x"}), 400, "value")

"""The patient index's JSON administration API over real HTTP (httpx against uvicorn), on SQLite
and PostgreSQL: search by name, name prefix, resident ID number and hospital number; a person's
identifiers with the history of its matching decisions; the review queue — link (the two become
one person) and reject — and the refusals (404, 400, 409) that leave everything as it was."""
from __future__ import annotations

import datetime as dt

import httpx
import pytest

from hie.app import create_app
from pix_pdq.index import Identifier, record_identity
from pix_pdq.resident_id import RESIDENT_ID_OID, make
from tests.integration.test_linking import TIANTAN, XIEHE, demo
from tests.serve import serve

ZHANG_SAN_ID = make("11010519900307123")
NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.timezone.utc)


def feed(node, identifiers, demographics, source="ITI-8 HIS|协和医院"):
    with node.db.begin() as conn:
        return record_identity(conn, identifiers, demographics, now=NOW, source=source)


@pytest.fixture
def api(node):
    with serve(create_app(node)) as base:
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client


@pytest.fixture
def queued(node):
    """张三 at 协和 and an uncertain 章三 at 天坛 (no ID number, birth date one day off)."""
    first = feed(node, [Identifier("MR0001", XIEHE), Identifier(ZHANG_SAN_ID, RESIDENT_ID_OID)],
                 demo(phone="", address=None))
    second = feed(node, [Identifier("TT0001", TIANTAN)],
                  demo(family="章三", birth="19900308", phone="", address=None),
                  source="ITI-8 HIS|天坛医院")
    assert second.created
    return first.person_id, second.person_id


def test_search_by_name_prefix_id_number_and_hospital_number(api, queued):
    first, second = queued
    assert [p["id"] for p in api.get("/api/mpi/persons", params={"q": "张三"}).json()["persons"]] \
        == [first]
    assert [p["id"] for p in api.get("/api/mpi/persons", params={"q": "張三"}).json()["persons"]] \
        == [first]  # the traditional form finds the same name
    assert [p["id"] for p in api.get("/api/mpi/persons", params={"q": "章*"}).json()["persons"]] \
        == [second]
    by_id = api.get("/api/mpi/persons", params={"q": ZHANG_SAN_ID.lower()}).json()["persons"]
    assert [p["id"] for p in by_id] == [first]
    legacy = ZHANG_SAN_ID[:6] + ZHANG_SAN_ID[8:17]
    assert [p["id"] for p in api.get("/api/mpi/persons", params={"q": legacy}).json()
            ["persons"]] == [first]
    assert [p["id"] for p in api.get("/api/mpi/persons", params={"q": "TT0001"}).json()
            ["persons"]] == [second]
    assert api.get("/api/mpi/persons", params={"q": "李四"}).json() == {"persons": []}
    r = api.get("/api/mpi/persons")
    assert r.status_code == 400 and "q is required" in r.json()["error"]


def test_person_shows_identifiers_history_and_pending_review(api, queued):
    first, second = queued
    body = api.get(f"/api/mpi/persons/{second}").json()
    assert {(i["domain"], i["value"]) for i in body["identifiers"]} == {(TIANTAN, "TT0001")}
    assert [h["outcome"] for h in body["history"]] == ["new", "review"]
    review = body["reviews"][0]
    assert (review["person_id"], review["candidate_id"]) == (second, first)
    assert review["evidence"]["fields"]["name"]["level"] == "homophone"
    assert api.get("/api/mpi/persons/999999").status_code == 404
    assert api.get("/api/mpi/persons/abc").status_code == 404


def test_linking_a_review_merges_the_two_persons(api, queued):
    first, second = queued
    (review,) = api.get("/api/mpi/reviews").json()["reviews"]
    r = api.post(f"/api/mpi/reviews/{review['id']}/link", headers={"X-HIE-User": "档案科王老师".encode()})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["decided_by"]) == ("linked", "档案科王老师")
    survivor = api.get(f"/api/mpi/persons/{first}").json()
    assert {(i["domain"], i["value"]) for i in survivor["identifiers"]} == {
        (XIEHE, "MR0001"), (RESIDENT_ID_OID, ZHANG_SAN_ID), (TIANTAN, "TT0001")}
    assert survivor["history"][-1]["outcome"] == "merge"
    merged = api.get(f"/api/mpi/persons/{second}").json()
    assert (merged["status"], merged["merged_into"]) == ("merged", first)
    assert api.get("/api/mpi/reviews").json() == {"reviews": []}
    again = api.post(f"/api/mpi/reviews/{review['id']}/link")
    assert again.status_code == 409 and "already decided" in again.json()["error"]


def test_rejecting_a_review_keeps_two_persons(api, queued):
    first, second = queued
    (review,) = api.get("/api/mpi/reviews").json()["reviews"]
    r = api.post(f"/api/mpi/reviews/{review['id']}/reject")
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert api.get(f"/api/mpi/persons/{second}").json()["status"] == "active"
    assert [x["id"] for x in api.get("/api/mpi/reviews", params={"status": "rejected"})
            .json()["reviews"]] == [review["id"]]


def test_link_refused_when_both_hold_numbers_of_one_hospital(api, node):
    first = feed(node, [Identifier("MR0004", XIEHE)], demo())
    second = feed(node, [Identifier("MR0005", XIEHE)], demo())
    (review,) = api.get("/api/mpi/reviews").json()["reviews"]
    r = api.post(f"/api/mpi/reviews/{review['id']}/link")
    assert r.status_code == 409 and XIEHE in r.json()["error"]
    assert api.get(f"/api/mpi/persons/{second.person_id}").json()["status"] == "active"
    assert api.get("/api/mpi/reviews").json()["reviews"][0]["status"] == "pending"
    assert api.post("/api/mpi/reviews/999999/reject").status_code == 404
    assert first.person_id != second.person_id


def test_unlink_undoes_a_link_with_history(api, node):
    """The 天坛 number that matching joined to 张三 is taken out again: it becomes a person of
    its own, both are filed again, and the history says who did it."""
    first = feed(node, [Identifier("MR0008", XIEHE), Identifier(ZHANG_SAN_ID, RESIDENT_ID_OID)],
                 demo())
    linked = feed(node, [Identifier("TT0008", TIANTAN)],
                  demo(family="章三", ssn="110105900307123"), source="ITI-8 HIS|天坛医院")
    assert linked.linked and linked.person_id == first.person_id
    r = api.post(f"/api/mpi/persons/{first.person_id}/unlink",
                 params={"domain": TIANTAN, "value": "TT0008"},
                 headers={"X-HIE-User": "档案科".encode()})
    assert r.status_code == 200, r.text
    new = r.json()["new_person_id"]
    assert new != first.person_id
    moved = api.get(f"/api/mpi/persons/{new}").json()
    assert [(i["domain"], i["value"]) for i in moved["identifiers"]] == [(TIANTAN, "TT0008")]
    kept = api.get(f"/api/mpi/persons/{first.person_id}").json()
    assert (TIANTAN, "TT0008") not in {(i["domain"], i["value"]) for i in kept["identifiers"]}
    assert [h["outcome"] for h in kept["history"]][-2:] == ["link", "unlink"]
    assert kept["history"][-1]["evidence"]["by"] == "档案科"
    assert api.get("/api/mpi/persons", params={"q": "TT0008"}).json()["persons"][0]["id"] == new
    # refusals leave everything as it was
    assert api.post(f"/api/mpi/persons/{new}/unlink",
                    params={"domain": TIANTAN, "value": "TT0008"}).status_code == 409
    assert api.post(f"/api/mpi/persons/{first.person_id}/unlink",
                    params={"domain": TIANTAN, "value": "TT0008"}).status_code == 404
    assert api.post(f"/api/mpi/persons/{first.person_id}/unlink").status_code == 400


def test_unlink_of_a_merged_identifier_undoes_the_merge(api, node):
    """An A40 merge retired 王芳's second enterprise ID under the first; the operator finds it
    was wrong: unlinking the retired identifier makes it an active person of its own again, the
    registry knows it again, and the survivor no longer answers for it."""
    from pix_pdq.index import is_known, merge_identifiers, patient_aliases
    aff = node.settings.affinity_domain
    one = feed(node, [Identifier("WF0001", aff), Identifier("MR0101", XIEHE)],
               demo(family="王芳", sex="F"))
    two = feed(node, [Identifier("WF0002", aff), Identifier("TT0101", TIANTAN)],
               demo(family="王芳", sex="F", birth="19850101", phone="", address=None))
    assert one.person_id != two.person_id
    with node.db.begin() as conn:
        assert merge_identifiers(conn, one.person_id, [Identifier("WF0002", aff)], NOW) == []
    second = f"WF0002^^^&{aff}&ISO"
    with node.db.read() as conn:
        assert not is_known(conn, second, aff)
    merged = api.get(f"/api/mpi/persons/{one.person_id}").json()
    assert {"value": "WF0002", "status": "merged"}.items() <= next(
        i for i in merged["identifiers"] if i["value"] == "WF0002").items()

    r = api.post(f"/api/mpi/persons/{one.person_id}/unlink",
                 params={"domain": aff, "value": "WF0002"})
    assert r.status_code == 200, r.text
    new = r.json()["new_person_id"]
    with node.db.read() as conn:
        assert is_known(conn, second, aff)
        assert second not in patient_aliases(conn, f"WF0001^^^&{aff}&ISO")
    moved = api.get(f"/api/mpi/persons/{new}").json()
    assert [(i["value"], i["status"]) for i in moved["identifiers"]] == [("WF0002", "active")]
    kept = api.get(f"/api/mpi/persons/{one.person_id}").json()
    assert kept["history"][-1]["outcome"] == "unmerge"
    assert "WF0002" not in {i["value"] for i in kept["identifiers"]}

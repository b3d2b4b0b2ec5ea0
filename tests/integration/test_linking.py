"""Matching identities into the patient index, on SQLite and PostgreSQL: a person registered at
two hospitals (homophone name, legacy 15-digit ID number in PID-19) becomes one person with both
hospitals' numbers; a namesake born the same day with another ID number stays a stranger; an
uncertain pair is a new person queued for review; a second number from the same hospital is
never linked automatically; every decision is logged with its evidence."""
from __future__ import annotations

import datetime as dt


from pix_pdq import tables as T
from pix_pdq.index import Identifier, get_person, record_identity
from pix_pdq.resident_id import RESIDENT_ID_OID, make
from tests.integration.test_iti42 import rows

XIEHE = "1.2.156.112604.1.5.1"      # 协和医院 patient numbers
TIANTAN = "1.2.156.112604.1.5.2"    # 天坛医院 patient numbers
ZHANG_SAN_ID = make("11010519900307123")
NOW = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.timezone.utc)


def demo(family="张三", given="", birth="19900307", sex="M", phone="13801234567",
         address=("北京市", "朝阳区", "建国路88号"), ssn=None) -> dict:
    out = {"names": [{"family": family, "given": given}] if given else [{"family": family}],
           "birth_time": birth, "sex": sex}
    if phone:
        out["home_phones"] = [{"number": phone}]
    if address:
        out["addresses"] = [{"state": address[0], "county": address[1], "street": address[2]}]
    if ssn:
        out["ssn"] = ssn
    return out


def feed(db, identifiers, demographics, source="ITI-8 HIS|协和医院"):
    with db.begin() as conn:
        return record_identity(conn, identifiers, demographics, now=NOW, source=source)


def test_one_person_registered_at_two_hospitals_is_linked(database):
    first = feed(database, [Identifier("MR0001", XIEHE), Identifier(ZHANG_SAN_ID, RESIDENT_ID_OID)],
                 demo())
    assert first.created and not first.linked
    second = feed(database, [Identifier("TT778899", TIANTAN)],
                  demo(family="章三", phone="+86 138 0123 4567",
                       address=("", "朝阳区", "建国路88号"), ssn="110105900307123"),
                  source="ITI-8 HIS|天坛医院")
    assert second.linked and not second.created and second.person_id == first.person_id
    with database.read() as conn:
        person = get_person(conn, first.person_id)
    assert {(i.domain, i.value) for i in person.identifiers} >= {(XIEHE, "MR0001"),
                                                                 (TIANTAN, "TT778899")}
    link = rows(database, T.match, outcome="link")
    assert len(link) == 1 and link[0].candidate_id == first.person_id
    evidence = link[0].evidence
    assert evidence["fields"]["name"]["level"] == "homophone"
    assert evidence["fields"]["resident_id"]["level"] == "exact"  # the legacy number upgraded
    assert evidence["thresholds"]["upper"] > evidence["thresholds"]["lower"]
    assert link[0].source == "ITI-8 HIS|天坛医院"


def test_namesake_born_the_same_day_is_another_person(database):
    zhang_wei = feed(database, [Identifier("MR0002", XIEHE),
                                Identifier(make("11010519900307151"), RESIDENT_ID_OID)],
                     demo(family="张伟"))
    other = feed(database, [Identifier("TT000315", TIANTAN)],
                 demo(family="张伟", phone="13705556666", address=("江苏省", "南京市鼓楼区", "中山路1号"),
                      ssn=make("32010219900307173")))
    assert other.created and other.person_id != zhang_wei.person_id
    assert not rows(database, T.review)
    (decision,) = rows(database, T.match, person_id=other.person_id)
    # filed under the same name and birth date, but another valid number: never even read
    assert decision.outcome == "new" and decision.evidence["compared"] == 0


def test_uncertain_pair_becomes_a_new_person_queued_for_review(database):
    known = feed(database, [Identifier("MR0003", XIEHE)], demo(phone="", address=None))
    maybe = feed(database, [Identifier("TT000001", TIANTAN)],
                 demo(family="章三", birth="19900308", phone="", address=None))
    assert maybe.created and maybe.person_id != known.person_id
    (queued,) = rows(database, T.review)
    assert (queued.person_id, queued.candidate_id, queued.status) == (
        maybe.person_id, known.person_id, "pending")
    assert queued.evidence["fields"]["birth_date"]["level"] == "close"
    assert [r.outcome for r in rows(database, T.match, person_id=maybe.person_id)] \
        == ["new", "review"]


def test_a_hospital_number_never_joins_a_person_of_that_hospital(database):
    """One identity per source domain per person: a second 协和 number for the same
    demographics is a potential duplicate for review, not a link (that is a merge's job)."""
    first = feed(database, [Identifier("MR0004", XIEHE)], demo())
    again = feed(database, [Identifier("MR0005", XIEHE)], demo())
    assert again.created and again.person_id != first.person_id
    (queued,) = rows(database, T.review)
    assert queued.candidate_id == first.person_id and queued.evidence["outcome"] == "link"


def test_persons_are_filed_under_their_blocking_keys(database):
    person = feed(database, [Identifier("MR0006", XIEHE),
                             Identifier(ZHANG_SAN_ID, RESIDENT_ID_OID)], demo())
    keys = {r.key for r in rows(database, T.block, person_id=person.person_id)}
    assert f"id:{ZHANG_SAN_ID}" in keys and "n:张三" in keys
    assert {"bd:19900307:z", "bd:19900307:s"} <= keys   # 张 zhang, 三 san
    # an update that changes the birth date re-files the person
    feed(database, [Identifier("MR0006", XIEHE)], {"birth_time": "19900308"})
    keys = {r.key for r in rows(database, T.block, person_id=person.person_id)}
    assert "bd:19900308:z" in keys and not any(k.startswith("bd:19900307") for k in keys)
    assert f"id:{ZHANG_SAN_ID}" in keys  # the national identifier is still the person's


def test_matching_can_be_turned_off(database):
    feed(database, [Identifier("MR0007", XIEHE)], demo())
    with database.begin() as conn:
        again = record_identity(conn, [Identifier("TT000007", TIANTAN)], demo(), now=NOW,
                                matching=False)
    assert again.created and not again.linked


def test_pid19_of_another_scheme_is_a_foreign_number(database):
    """PID-19 with a number that is not GB 11643-shaped (a social-security number) is compared
    as another scheme's number: equal numbers agree, and different ones never veto."""
    from pix_pdq.linking import resident_id_of
    rid = resident_id_of([], {"ssn": "5304218"})
    assert rid.valid and not rid.checked and rid.number == "5304218"
    gb = resident_id_of([], {"ssn": ZHANG_SAN_ID})
    assert gb.valid and gb.checked
    mistyped = resident_id_of([], {"ssn": ZHANG_SAN_ID[:17] + "0"})
    assert not mistyped.valid and mistyped.checked  # a GB number with a wrong check character


def test_reindex_files_persons_under_the_current_keys(database):
    """``hie mpi reindex``: persons filed under keys of an older version (here a bare birth
    date) are filed again under the current ones; merged persons are left alone."""
    from pix_pdq.linking import reindex
    person = feed(database, [Identifier("MR0099", XIEHE),
                             Identifier(ZHANG_SAN_ID, RESIDENT_ID_OID)], demo())
    with database.begin() as c:
        c.execute(T.block.delete())
        c.execute(T.block.insert(), [{"key": "bd:19900307", "person_id": person.person_id}])
    assert reindex(database, batch=1) == 1
    keys = {r.key for r in rows(database, T.block, person_id=person.person_id)}
    assert "bd:19900307" not in keys
    assert {f"id:{ZHANG_SAN_ID}", "bd:19900307:z", "n:张三"} <= keys


def test_a_feed_with_many_identifiers_finds_its_person_by_each(database):
    """More identifiers than one look-up statement holds (they are looked up in groups)."""
    hospitals = [f"1.2.156.112604.1.5.{n}" for n in range(10, 16)]
    first = feed(database, [Identifier(f"MR{n}", oid) for n, oid in enumerate(hospitals)],
                 demo(family="欧阳", given="娜娜", birth="19850505", phone="", address=None))
    again = feed(database, [Identifier(f"MR{n}", oid) for n, oid in enumerate(hospitals)]
                 + [Identifier("NEW1", "1.2.156.112604.1.5.99")], {"sex": "F"})
    assert again.person_id == first.person_id and not again.created
    assert [i.value for i in again.added] == ["NEW1"] and not again.conflicts
    last = feed(database, [Identifier("MR5", hospitals[5])], {"birth_time": "19850506"})
    assert last.person_id == first.person_id and not last.added


def test_blocks_carry_the_persons_one_resident_id_number(database):
    """``pix_block.number`` follows the person's national identifiers through feeds, unlinks
    and merges: its one number, none once it holds two."""
    from pix_pdq import admin
    from pix_pdq.index import merge_identifiers
    first, second, third = (make(f"1101051990030712{n}") for n in (3, 4, 5))

    def numbers(pid):
        return {r.number for r in rows(database, T.block, person_id=pid)}
    p = feed(database, [Identifier("MR0100", XIEHE), Identifier(first, RESIDENT_ID_OID)], demo())
    assert numbers(p.person_id) == {first}
    feed(database, [Identifier("MR0100", XIEHE), Identifier(second, RESIDENT_ID_OID)], {})
    assert numbers(p.person_id) == {None}     # two numbers: none trusted alone
    with database.begin() as conn:
        out = admin.unlink(conn, p.person_id, RESIDENT_ID_OID, second, "审核员", NOW)
    assert numbers(p.person_id) == {first} and numbers(out["new_person_id"]) == {second}
    q = feed(database, [Identifier("TT0100", TIANTAN), Identifier(third, RESIDENT_ID_OID)],
             demo(family="李四", birth="19700101"))
    with database.begin() as conn:   # ADT^A40: 天坛's number merged into the 协和 person
        merge_identifiers(conn, p.person_id, [Identifier("TT0100", TIANTAN)], NOW)
    assert numbers(p.person_id) == {None} and not numbers(q.person_id)


def test_a_number_retired_by_a_merge_is_no_longer_carried(database):
    """ADT^A40 retiring the person's own resident ID number (a wrong number merged into the
    right one's person): its blocks stop carrying it, so it drops no candidate any more."""
    from pix_pdq.index import merge_identifiers
    wrong = make("11010519900307126")
    p = feed(database, [Identifier("MR0200", XIEHE), Identifier(wrong, RESIDENT_ID_OID)], demo())
    with database.begin() as conn:
        merge_identifiers(conn, p.person_id, [Identifier(wrong, RESIDENT_ID_OID)], NOW)
    assert {r.number for r in rows(database, T.block, person_id=p.person_id)} == {None}

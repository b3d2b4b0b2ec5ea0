"""ITI-9 PIX Query over a real MLLP socket (ITI TF-2a 3.9.4.2.2.6, the four cases), on SQLite
and PostgreSQL: identities fed with ITI-8 by two hospitals — linked by an identifier they share
or by matching — are cross-referenced; NF for a person without identifiers in the wanted domain;
AE with ERR 204 at QPD^1^3^1^1, QPD^1^3^1^4 or QPD^1^4^n for what the PIX Manager does not
know; AE / AR for malformed queries; sent with python-hl7's MLLP client."""
from __future__ import annotations

import pytest

from hie.hl7v2 import parse
from pix_pdq.resident_id import RESIDENT_ID_OID, make
from tests.integration.test_iti8 import HIS_OID, adt, aff, mllp, send  # noqa: F401 - fixtures

TIANTAN_OID = "1.2.156.112604.1.1.102.2"   # a second hospital's patient-ID domain
ZHANG_SAN_ID = make("11010519800101123")


def qbp(asked: str, *wanted: str, tag: str = "Q0001", name: str = "IHE PIX Query",
        trigger: str = "Q23", version: str = "2.5", with_qpd: bool = True) -> str:
    segs = [f"MSH|^~\\&|PIXCONSUMER|天坛医院|HIE|REGION|20261202093000+0800||QBP^{trigger}^QBP_Q21"
            f"|{tag}-MSG|P|{version}||||||UNICODE UTF-8"]
    if with_qpd:
        segs.append(f"QPD|{name}|{tag}|{asked}|" + "~".join(f"^^^{w}" for w in wanted))
    segs.append("RCP|I")
    return "\r".join(segs) + "\r"


def tiantan_feed(aff_oid: str, **kw) -> str:
    text = adt(aff_oid, sender="HIS^1.2.156.112604.2^ISO", **kw)
    return text.replace("北京协和医院", "天坛医院")


def pid3(rsp) -> set[tuple[str, str]]:
    pid = rsp.segment("PID")
    assert pid is not None
    return {(pid[3].value(r, 1), pid[3].value(r, 4, 2)) for r in range(1, len(pid[3].reps) + 1)}


@pytest.fixture
def fed(mllp, aff):
    """张三 at 协和 (MRN, enterprise id, resident ID) and at 天坛 (own MRN, the same resident ID
    number as an identifier: linked through it)."""
    r1 = send(mllp, adt(aff, mrn="XH0001", eid="E0001", pid3=None)
              .replace(f"XH0001^^^HIS&{HIS_OID}&ISO^MR",
                       f"XH0001^^^HIS&{HIS_OID}&ISO^MR~{ZHANG_SAN_ID}^^^&{RESIDENT_ID_OID}&ISO^NI"))
    r2 = send(mllp, tiantan_feed(aff, control_id="T0001", eid=None, mrn="",
                                 pid3=f"TT0001^^^TT&{TIANTAN_OID}&ISO^MR~"
                                      f"{ZHANG_SAN_ID}^^^&{RESIDENT_ID_OID}&ISO^NI"))
    assert r1.get("MSA-1") == "AA" and r2.get("MSA-1") == "AA"
    return mllp


def test_case_1_identifiers_in_every_domain(fed, aff):
    rsp = send(fed, qbp(f"XH0001^^^HIS&{HIS_OID}&ISO"))
    assert rsp.message_type == "RSP" and rsp.trigger_event == "K23"
    assert (rsp.get("MSA-1"), rsp.get("QAK-2"), rsp.get("QAK-1")) == ("AA", "OK", "Q0001")
    assert rsp.get("MSA-2") == "Q0001-MSG"
    assert rsp.segment("QPD").value(2) == "Q0001"   # the query echoed
    assert pid3(rsp) == {("E0001", aff), (ZHANG_SAN_ID, RESIDENT_ID_OID), ("TT0001", TIANTAN_OID)}
    assert rsp.segment("PID").value(5) == " "


def test_case_1_only_the_wanted_domain(fed, aff):
    rsp = send(fed, qbp(f"TT0001^^^TT&{TIANTAN_OID}&ISO", f"&{aff}&ISO"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AA", "OK")
    assert pid3(rsp) == {("E0001", aff)}


def test_case_2_known_but_nothing_in_the_wanted_domain(mllp, aff):
    send(mllp, adt(aff, mrn="XH0002", eid=None))
    rsp = send(mllp, qbp(f"XH0002^^^HIS&{HIS_OID}&ISO", f"&{RESIDENT_ID_OID}&ISO"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AA", "NF")
    assert rsp.segment("PID") is None


def test_case_3_unknown_identifier_in_a_known_domain(fed):
    rsp = send(fed, qbp(f"XH9999^^^HIS&{HIS_OID}&ISO"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AE", "AE")
    err = rsp.segment("ERR")
    assert err.value(3) == "204" and err[2].encode() == "QPD^1^3^1^1"
    assert rsp.segment("PID") is None


def test_case_3_unknown_assigning_authority(fed):
    rsp = send(fed, qbp("XH0001^^^&1.2.156.999.9&ISO"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AE", "AE")
    err = rsp.segment("ERR")
    assert err.value(3) == "204" and err[2].encode() == "QPD^1^3^1^4"


def test_case_4_unknown_what_domain_names_its_repetition(fed, aff):
    rsp = send(fed, qbp(f"XH0001^^^HIS&{HIS_OID}&ISO", f"&{aff}&ISO", "&1.2.156.999.8&ISO"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AE", "AE")
    err = rsp.segment("ERR")
    assert err.value(3) == "204" and err[2].encode() == "QPD^1^4^2"


def test_identities_linked_by_matching_are_cross_referenced(mllp, aff):
    """天坛 sends no identifier 协和 knows: the demographics (homophone name, legacy number in
    PID-19) link the two, and the PIX Query shows it."""
    send(mllp, adt(aff, mrn="XH0003", eid=None, name="张^伟^^^^^L", birth="19850412",
                   pid3=f"XH0003^^^HIS&{HIS_OID}&ISO^MR~"
                        f"{make('11010519850412157')}^^^&{RESIDENT_ID_OID}&ISO^NI"))
    feed = tiantan_feed(aff, control_id="T0003", eid=None, mrn="", name="章^伟^^^^^L",
                        birth="19850412", pid3=f"TT0003^^^TT&{TIANTAN_OID}&ISO^MR",
                        address="天坛街道^^北京市东城区^北京市^100050^CHN^H")
    feed = feed.replace("|" * 11 + "01^汉族^GB3304", "|" * 8 + "110105850412157|||01^汉族^GB3304")
    assert parse(feed.encode()).segment("PID").value(19) == "110105850412157"  # the legacy number
    assert send(mllp, feed).get("MSA-1") == "AA"
    rsp = send(mllp, qbp(f"TT0003^^^TT&{TIANTAN_OID}&ISO", f"&{HIS_OID}&ISO"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AA", "OK")
    assert pid3(rsp) == {("XH0003", HIS_OID)}


@pytest.mark.parametrize("text, ack, code", [
    (qbp("X^^^&1.2&ISO", with_qpd=False), "AE", "100"),
    (qbp("X^^^&1.2&ISO", name="IHE PDQ Query"), "AE", "103"),
    (qbp("^^^&1.2&ISO"), "AE", "101"),
    (qbp("X^^^&1.2&ISO", trigger="Q99"), "AE", "201"),
    (qbp("X^^^&1.2&ISO", version="2.1"), "AR", "203"),
])
def test_malformed_queries_get_their_error(mllp, text, ack, code):
    rsp = send(mllp, text)
    assert rsp.get("MSA-1") == ack and rsp.segment("ERR").value(3) == code
    assert rsp.message_type == "RSP" and rsp.get("QAK-2") == ack


def test_legacy_and_18_character_numbers_are_one_identifier(mllp, aff):
    """A resident ID sent as a PID-3 identifier is kept in its 18-character form: the legacy
    15-digit number from another hospital names the same identifier, hence the same person."""
    number = make("11010519800101147")
    send(mllp, adt(aff, mrn="XH0010", eid=None,
                   pid3=f"XH0010^^^HIS&{HIS_OID}&ISO^MR~{number}^^^&{RESIDENT_ID_OID}&ISO^NI"))
    legacy = number[:6] + number[8:17]
    ack = send(mllp, tiantan_feed(aff, control_id="T0010", eid=None, mrn="", name="李^四",
                                  pid3=f"TT0010^^^TT&{TIANTAN_OID}&ISO^MR~"
                                       f"{legacy}^^^&{RESIDENT_ID_OID}&ISO^NI"))
    assert ack.get("MSA-1") == "AA"
    rsp = send(mllp, qbp(f"{legacy}^^^&{RESIDENT_ID_OID}&ISO"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AE", "AE")  # not kept in that form
    rsp = send(mllp, qbp(f"{number}^^^&{RESIDENT_ID_OID}&ISO"))
    assert pid3(rsp) == {("XH0010", HIS_OID), ("TT0010", TIANTAN_OID)}


def test_a_mistyped_resident_id_is_no_identifier(mllp, aff):
    bad = make("11010519800101163")[:17] + "0"
    if bad == make("11010519800101163"):
        bad = bad[:17] + "1"
    ack = send(mllp, adt(aff, mrn="", eid=None, pid3=f"{bad}^^^&{RESIDENT_ID_OID}&ISO^NI"))
    assert ack.get("MSA-1") == "AE" and ack.segment("ERR").value(3) == "102"
    ack = send(mllp, adt(aff, control_id="C0011", mrn="XH0011", eid=None,
                         pid3=f"XH0011^^^HIS&{HIS_OID}&ISO^MR~{bad}^^^&{RESIDENT_ID_OID}&ISO^NI"))
    assert ack.get("MSA-1") == "AA"   # recorded under the hospital number only
    rsp = send(mllp, qbp(f"XH0011^^^HIS&{HIS_OID}&ISO"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AA", "NF")

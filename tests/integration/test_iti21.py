"""ITI-21 Patient Demographics Query over a real MLLP socket (ITI TF-2a 3.21), on SQLite and
PostgreSQL: Chinese family-name wildcards that fold traditional characters but never homophones,
given name, birth date, sex, hospital number, resident ID number (legacy form too), address and
phone; QPD-8 what-domains; RCP-2 increments with DSC continuation and QCN cancel; NF; and the AE
answers for unknown domains and parameters."""
from __future__ import annotations

import pytest

from hie.hl7v2 import parse
from pix_pdq.resident_id import RESIDENT_ID_OID, make
from tests.integration.test_iti8 import HIS_OID, adt, aff, mllp, send  # noqa: F401 - fixtures

ZHANG_WEI_ID = make("11010519850412157")


def pdq(*params: str, tag: str = "P0001", limit: str = "", what: str = "",
        pointer: str = "", name: str = "IHE PDQ Query") -> str:
    segs = [f"MSH|^~\\&|PDQCONSUMER|天坛医院|HIE|REGION|20261202093000+0800||QBP^Q22^QBP_Q21|"
            f"{tag}-{pointer or 0}|P|2.5||||||UNICODE UTF-8",
            f"QPD|{name}|{tag}|" + "~".join(params) + "|||||" + what,
            f"RCP|I|{limit + '^RD' if limit else ''}"]
    if pointer:
        segs.append(f"DSC|{pointer}|I")
    return "\r".join(segs) + "\r"


def names(rsp) -> list[str]:
    return [p.value(5, comp=1) + p.value(5, comp=2) for p in rsp.all("PID")]


@pytest.fixture
def people(mllp, aff):
    feeds = [
        dict(control_id="F1", mrn="H0001", eid="E0001", name="张^三^^^^^L", birth="19800101",
             sex="M"),
        dict(control_id="F2", mrn="H0002", eid="E0002", name="张^伟^^^^^L", birth="19850412",
             sex="M", pid3=f"H0002^^^HIS&{HIS_OID}&ISO^MR~{ZHANG_WEI_ID}^^^&{RESIDENT_ID_OID}"
                           "&ISO^NI"),
        dict(control_id="F3", mrn="H0003", eid="E0003", name="章^三^^^^^L", birth="19800101",
             sex="M", address="天坛街道^^北京市丰台区^北京市^100050^CHN^H"),
        dict(control_id="F4", mrn="H0004", eid="E0004", name="張^小紅^^^^^L", birth="19920304",
             sex="F"),
        dict(control_id="F5", mrn="H0005", eid="E0005", name="王^芳^^^^^L", birth="19750612",
             sex="F"),
    ]
    for f in feeds:
        text = adt(aff, **f)
        if f["control_id"] == "F5":
            text = text.replace("|||||||||||01^汉族", "||13800001111|||||||||01^汉族")
        assert send(mllp, text).get("MSA-1") == "AA"
    return mllp


def test_family_name_wildcard_folds_variants_but_not_homophones(people):
    rsp = send(people, pdq("@PID.5.1^张*"))
    assert rsp.message_type == "RSP" and rsp.trigger_event == "K22"
    assert (rsp.get("MSA-1"), rsp.get("QAK-2"), rsp.get("QAK-1")) == ("AA", "OK", "P0001")
    assert sorted(names(rsp)) == sorted(["张三", "张伟", "張小紅"])   # as each hospital sent it


@pytest.mark.parametrize("params, expected", [
    (("@PID.5.1^张", "@PID.5.2^三"), ["张三"]),
    (("@PID.7^19850412",), ["张伟"]),
    (("@PID.5.1^張*", "@PID.8^F"), ["張小紅"]),
    ((f"@PID.19^{ZHANG_WEI_ID[:6] + ZHANG_WEI_ID[8:17]}",), ["张伟"]),   # the legacy number
    (("@PID.3.1^H0003", f"@PID.3.4.2^{HIS_OID}"), ["章三"]),
    (("@PID.3.1^H0003", f"@PID.3.4.2^{HIS_OID}", "@PID.3.4.3^ISO"), ["章三"]),
    (("@PID.11.3^北京市丰台区",), ["章三"]),
    (("@PID.13^13800001111",), ["王芳"]),
])
def test_each_parameter(people, params, expected):
    rsp = send(people, pdq(*params))
    assert rsp.get("QAK-2") == "OK" and sorted(names(rsp)) == sorted(expected)


def test_resident_id_number_fed_in_pid19_is_found(people):
    """Chinese sites carry the resident ID number in PID-19 (not as a PID-3 identifier): a
    query @PID.19 finds the person all the same (found by the conformance suite pdq)."""
    number = make("11010519660708123")
    feed = ("MSH|^~\\&|HIS|天坛医院|HIE|REGION|20261202093000+0800||ADT^A01^ADT_A01|F19|P|"
            f"2.3.1\rEVN|A01|20261202093000\rPID|||H0019^^^&{HIS_OID}&ISO^PI||赵^六||19660708|M"
            f"|||||||||||{number}\rPV1||I\r")
    assert send(people, feed).get("MSA-1") == "AA"
    rsp = send(people, pdq(f"@PID.19^{number}"))
    assert rsp.get("QAK-2") == "OK" and names(rsp) == ["赵六"]
    assert rsp.segment("PID").value(19) == number
    assert send(people, pdq(f"@PID.19^{make('11010519660708125')}")).get("QAK-2") == "NF"


def test_phone_sent_as_local_number_is_found(people):
    """XTN-7 (local number) with XTN-6 (area code), HL7 v2.5's structured form, is a phone
    number like XTN-1 (found by the conformance suite pdq)."""
    feed = ("MSH|^~\\&|HIS|天坛医院|HIE|REGION|20261202093000+0800||ADT^A01^ADT_A01|F20|P|"
            f"2.5\rEVN|A01|20261202093000\rPID|||H0020^^^&{HIS_OID}&ISO^PI||钱^七||19700101|F"
            "|||||^PRN^PH^^86^10^67098888\rPV1||I\r")
    assert send(people, feed).get("MSA-1") == "AA"
    rsp = send(people, pdq("@PID.13.1^67098888"))
    assert rsp.get("QAK-2") == "OK" and names(rsp) == ["钱七"]


def test_what_domains_limit_pid3(people, aff):
    rsp = send(people, pdq("@PID.7^19850412", what=f"^^^HIS&{HIS_OID}&ISO"))
    pid = rsp.segment("PID")
    assert [(pid[3].value(r, 1), pid[3].value(r, 4, 2)) for r in range(1, len(pid[3].reps) + 1)] \
        == [("H0002", HIS_OID)]
    everything = send(people, pdq("@PID.7^19850412")).segment("PID")
    assert {everything[3].value(r, 4, 2) for r in range(1, len(everything[3].reps) + 1)} \
        == {HIS_OID, RESIDENT_ID_OID}
    assert everything.value(19) == ZHANG_WEI_ID
    bad = send(people, pdq("@PID.7^19850412", what="^^^&1.2.156.999.7&ISO"))
    assert (bad.get("MSA-1"), bad.get("QAK-2")) == ("AE", "AE")
    assert bad.segment("ERR").value(3) == "204" and bad.segment("ERR")[2].encode() == "QPD^1^8^1"


def test_increments_with_continuation_pointer_and_cancel(people):
    first = send(people, pdq("@PID.5.1^张*", limit="2"))
    assert len(first.all("PID")) == 2 and first.segment("DSC") is not None
    pointer = first.segment("DSC").value(1)
    rest = send(people, pdq("@PID.5.1^张*", limit="2", pointer=pointer))
    assert len(rest.all("PID")) == 1 and rest.segment("DSC") is None
    assert sorted(names(first) + names(rest)) == sorted(["张三", "张伟", "張小紅"])
    cancel = send(people, "MSH|^~\\&|PDQCONSUMER|天坛医院|HIE|REGION|20261202093000+0800||"
                          "QCN^J01^QCN_J01|C1|P|2.5\rQID|P0001|IHE PDQ Query\r")
    assert cancel.get("MSA-1") == "AA"


def test_no_match_is_nf(people):
    rsp = send(people, pdq("@PID.5.1^欧阳*"))
    assert (rsp.get("MSA-1"), rsp.get("QAK-2")) == ("AA", "NF") and rsp.segment("PID") is None


@pytest.mark.parametrize("text, code", [
    (pdq("@PID.99^x"), "103"),
    (pdq("@PID.5.1^"), "101"),
    (pdq("@PID.5.1^张*", name="IHE PIX Query"), "103"),
    (pdq("@PID.5.1^张*", limit="zero"), "102"),
])
def test_bad_queries_are_ae(mllp, text, code):
    rsp = send(mllp, text)
    assert rsp.get("MSA-1") == "AE" and rsp.segment("ERR").value(3) == code
    assert rsp.get("QAK-2") == "AE"
    assert parse(rsp.encode()).message_type == "RSP"


def test_increments_stay_full_when_address_filters_apply(people, aff):
    """Address and phone are checked outside SQL: an increment still holds RCP-2 persons and the
    pointer only appears while more match."""
    for n in range(3):
        send(people, adt(aff, control_id=f"G{n}", mrn=f"H01{n}", eid=f"E01{n}",
                         name=f"李^{'一二三'[n]}^^^^^L",
                         address="天坛街道^^北京市丰台区^北京市^100050^CHN^H"))
    seen, pointer = [], ""
    for _ in range(5):
        rsp = send(people, pdq("@PID.11.3^北京市丰台区", limit="2", pointer=pointer))
        seen += names(rsp)
        dsc = rsp.segment("DSC")
        if dsc is None:
            break
        assert len(rsp.all("PID")) == 2
        pointer = dsc.value(1)
    assert sorted(seen) == sorted(["章三", "李一", "李二", "李三"])

"""ITI-8 Patient Identity Feed over a real MLLP socket (ITI TF-2a 3.8, HL7 v2.5 2.9.2 original
acknowledgement mode), on SQLite and PostgreSQL: every acknowledgement path (AA, AE, AR, the
stored ACK of a duplicate), GB 18030 messages with Chinese names, malformed frames that leave the
listener serving, and the recorded identities as the XDS registry sees them through is_known.
Sent with python-hl7's MLLPClient (a real HL7 client) and, for what it cannot send, a plain
socket.  Every test runs against a young index (each feed one transaction, statements planned
with their values) and a grown one (on PostgreSQL an ordinary feed is one statement outside a
transaction block; see hie.db.Database.begin)."""
import os
import re
import threading

import hl7
import hl7.client
import pytest
import sqlalchemy as sa

from hie.hl7v2 import parse
from hie.tables import audit_event as t_audit
from hie.mllp import frame
from pix_pdq import feed as pix_feed, iti8
from pix_pdq.index import Identifier, find_person, get_person, is_known, record_identity, register_domains
from pix_pdq.mllp_service import start_mllp
from pix_pdq.resident_id import RESIDENT_ID_OID
from pix_pdq.tables import feed_log, person as t_person
from tests.mllp_support import MllpClient, resident_id, running

pytestmark = pytest.mark.usefixtures("index_age")

HIS_OID = "1.2.156.112604.1.1.101.2"     # the hospital HIS's patient-ID domain (test value)
IDCARD_OID = "2.16.156.10011.1.5"        # resident identity numbers' domain in these tests
ADDRESS = "东华门街道^^北京市东城区^北京市^100010^CHN^H"


def adt(aff: str, *, event: str = "A01", control_id: str = "C0001", mrn: str = "H0001",
        eid: str | None = "E0001", idcard: str | None = None, name: str = "张^三^^^^^L",
        birth: str = "19800101", sex: str = "M", version: str = "2.5", processing: str = "P",
        charset: str = "UNICODE UTF-8", msg_type: str | None = None, pid3: str | None = None,
        sender: str = "HIS^1.2.156.112604.1^ISO", address: str = ADDRESS,
        with_pid: bool = True) -> str:
    ids = []
    if eid:
        ids.append(f"{eid}^^^&{aff}&ISO^PI")
    if mrn:
        ids.append(f"{mrn}^^^HIS&{HIS_OID}&ISO^MR")
    if idcard:
        ids.append(f"{idcard}^^^&{IDCARD_OID}&ISO^NI")
    pid3 = "~".join(ids) if pid3 is None else pid3
    msg_type = msg_type if msg_type is not None else f"ADT^{event}^ADT_A01"
    segs = [f"MSH|^~\\&|{sender}|北京协和医院|HIE|REGION|20240501083000+0800||{msg_type}|"
            f"{control_id}|{processing}|{version}||||||{charset}",
            f"EVN|{event}|20240501083000"]
    if with_pid:
        segs.append(f"PID|1||{pid3}||{name}||{birth}|{sex}|||{address}|||||||||||01^汉族^GB3304")
    segs.append("PV1|1|O")
    return "\r".join(segs) + "\r"


@pytest.fixture
def mllp(node):
    with running(lambda: start_mllp(node, "127.0.0.1", 0, max_frame_size=256 * 1024,
                                    idle_timeout=30)) as server:
        yield server.address


@pytest.fixture
def aff(node):
    return node.settings.affinity_domain


def send(addr, text: str, encoding: str = "utf-8"):
    """Send with python-hl7's client; the ACK parsed with our codec."""
    with hl7.client.MLLPClient(addr[0], addr[1], encoding=encoding) as client:
        raw = client.send_message(text.encode(encoding))
    assert raw.startswith(b"\x0b") and raw.endswith(b"\x1c\r")
    return parse(raw[1:-2])


def known(database, cx: str) -> bool:
    with database.read() as c:
        return is_known(c, cx)


def person_of(database, cx: str):
    with database.read() as c:
        pid = find_person(c, Identifier.parse(cx))
        return get_person(c, pid) if pid is not None else None


def errs(ack):
    return [(e.value(3), e[2].encode(), e.value(4)) for e in ack.all("ERR")]


# -- AA ------------------------------------------------------------------------------------

def test_a01_accepted_and_patient_known(mllp, aff, database, node):
    idcard = resident_id("110101", "19800101", "001")
    ack = send(mllp, adt(aff, idcard=idcard))
    assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "C0001"
    assert ack.get("MSH-9") == "ACK" and ack.get("MSH-9.2") == "A01"
    assert ack.get("MSH-5") == "HIS" and ack.get("MSH-6") == "北京协和医院"
    assert ack.all("ERR") == []
    cx = f"E0001^^^&{aff}&ISO"
    assert known(database, cx)
    assert known(database, f"H0001^^^&{HIS_OID}&ISO")  # kept for linking later
    assert known(database, f"{idcard}^^^&{IDCARD_OID}&ISO")
    assert not known(database, f"E0002^^^&{aff}&ISO")
    assert not known(database, "E0001^^^&1.2.3&ISO")
    p = person_of(database, cx)
    assert p.enterprise_id == "E0001" and p.name == "张三" and p.birth_date == "19800101"
    assert p.sex == "M" and p.family_name == "张" and p.given_name == "三"
    assert p.demographics["addresses"][0]["city"] == "北京市东城区"
    assert p.demographics["ethnic_group"] == [{"code": "01", "text": "汉族", "system": "GB3304"}]
    assert {i.domain for i in p.identifiers} == {aff, HIS_OID, IDCARD_OID}
    with database.read() as c:
        audit = c.execute(sa.select(t_audit.c.transaction, t_audit.c.patient_id,
                                    t_audit.c.outcome, t_audit.c.message_id,
                                    t_audit.c.remote_addr)).all()
    assert [tuple(a) for a in audit] == [("ITI-8", cx, 0, "C0001", "127.0.0.1")]
    assert 'hie_requests_total{transaction="ITI-8",outcome="0"} 1' in node.metrics.render()


def test_a04_a05_and_a08_update_with_hl7_null(mllp, aff, database):
    assert send(mllp, adt(aff, event="A04", control_id="C1", eid="E10", mrn="M10",
                          name="李^四")).get("MSA-1") == "AA"
    assert send(mllp, adt(aff, event="A05", control_id="C2", eid="E11", mrn="M11",
                          name="王^五")).get("MSA-1") == "AA"
    ack = send(mllp, adt(aff, event="A08", control_id="C3", eid="E10", mrn="", name="李^思",
                         sex='""', birth="", address=""))
    assert ack.get("MSA-1") == "AA" and ack.get("MSH-9.2") == "A08"
    p = person_of(database, f"E10^^^&{aff}&ISO")
    assert p.name == "李思" and p.sex is None  # "" deletes
    assert p.birth_date == "19800101"  # not sent: kept
    assert p.demographics["addresses"][0]["street"] == "东华门街道"
    assert person_of(database, f"E11^^^&{aff}&ISO").name == "王五"


def test_v231_feed_as_iti8_specifies(mllp, aff, database):
    ack = send(mllp, adt(aff, control_id="V1", eid="E15", version="2.3.1"))
    assert ack.get("MSA-1") == "AA" and ack.get("MSH-12") == "2.3.1"
    assert known(database, f"E15^^^&{aff}&ISO")
    ack = send(mllp, adt(aff, control_id="V2", version="2.3.1", pid3=""))
    assert ack.get("MSA-1") == "AE" and ack.get("ERR-1.4.1") == "101"  # ERR-1 for v2.3.1


def test_an_ack_sent_to_the_listener_is_not_answered(mllp, aff):
    with MllpClient(mllp) as c:
        c.send_raw(frame(b"MSH|^~\\&|X|Y|HIE|R|20240101||ACK^A01^ACK|Z1|P|2.5\rMSA|AA|1\r"))
        assert parse(c.request(adt(aff, control_id="V3").encode())).get("MSA-2") == "V3"


def test_a08_for_an_unknown_patient_creates_it(mllp, aff, database):
    ack = send(mllp, adt(aff, event="A08", control_id="U1", eid="E20", mrn="M20"))
    assert ack.get("MSA-1") == "AA"
    assert known(database, f"E20^^^&{aff}&ISO")


def test_identifiers_of_another_person_are_reported_not_moved(mllp, aff, database):
    send(mllp, adt(aff, control_id="K1", eid="E30", mrn="M30"))
    ack = send(mllp, adt(aff, control_id="K2", eid="E31", mrn="M30", name="李^四"))
    assert ack.get("MSA-1") == "AA"
    assert errs(ack) == [("205", "PID^1^3^2", "W")]
    assert person_of(database, f"M30^^^&{HIS_OID}&ISO").enterprise_id == "E30"
    assert person_of(database, f"E31^^^&{aff}&ISO").name == "李四"


def test_feed_without_affinity_identifier_is_kept(mllp, aff, database):
    ack = send(mllp, adt(aff, control_id="N1", eid=None, mrn="M40"))
    assert ack.get("MSA-1") == "AA"
    p = person_of(database, f"M40^^^HIS&{HIS_OID}&ISO")
    assert p.enterprise_id is None and p.name == "张三"


# -- AE ------------------------------------------------------------------------------------

def test_missing_pid3_is_ae_101(mllp, aff, database):
    ack = send(mllp, adt(aff, control_id="A1", pid3=""))
    assert ack.get("MSA-1") == "AE" and ack.get("MSA-2") == "A1"
    assert errs(ack) == [("101", "PID^1^3", "E")]
    assert ack.get("ERR-3.3") == "HL70357" and ack.get("ERR-3.2") == "Required field missing"
    with database.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(t_person)).scalar() == 0
        assert c.execute(sa.select(feed_log.c.ack_code)).scalars().all() == ["AE"]
        audit = c.execute(sa.select(t_audit.c.outcome)).scalars().all()
    assert audit == [8]


@pytest.mark.parametrize("kw,code,location", [
    ({"pid3": "X1"}, "101", "PID^1^3^1^4"),                 # no assigning authority
    ({"pid3": "^^^&1.2.3&ISO"}, "101", "PID^1^3^1^1"),      # no ID number
    ({"with_pid": False}, "100", "PID"),
    ({"event": "A03"}, "201", "MSH^1^9^1^2"),
    ({"msg_type": "ORU^R01^ORU_R01"}, "200", "MSH^1^9^1^1"),
    ({"msg_type": ""}, "101", "MSH^1^9"),
    ({"control_id": ""}, "101", "MSH^1^10"),
])
def test_application_errors_are_ae(mllp, aff, database, kw, code, location):
    ack = send(mllp, adt(aff, **kw))
    assert ack.get("MSA-1") == "AE"
    assert errs(ack) == [(code, location, "E")]
    assert ack.get("ERR-8")  # a user message
    assert not known(database, f"E0001^^^&{aff}&ISO")


# -- AR ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,code,location", [
    ({"version": "2.2"}, "203", "MSH^1^12"),
    ({"version": "3.0"}, "203", "MSH^1^12"),
    ({"processing": "X"}, "202", "MSH^1^11"),
])
def test_unsupported_version_or_processing_id_is_ar(mllp, aff, database, kw, code, location):
    ack = send(mllp, adt(aff, control_id="R1", **kw))
    assert ack.get("MSA-1") == "AR" and ack.get("MSA-2") == "R1"
    assert errs(ack) == [(code, location, "E")]
    assert not known(database, f"E0001^^^&{aff}&ISO")


def test_unparseable_messages_are_ar(mllp, aff):
    with MllpClient(mllp) as c:
        ack = parse(c.request(b"hello, this is not HL7"))
        assert ack.get("MSA-1") == "AR" and ack.get("MSA-2") == "" and ack.get("ERR-3") == "100"
        ack = parse(c.request(adt(aff, control_id="P7").encode() + b"bad segment\r"))
        assert ack.get("MSA-1") == "AR" and ack.get("MSA-2") == "P7"
        ack = parse(c.request(adt(aff, control_id="P8", charset="ISO IR87").encode()))
        assert ack.get("MSA-1") == "AR" and ack.get("MSA-2") == "P8"
        assert errs(ack) == [("103", "MSH^1^18", "E")]
        assert b"Traceback" not in c.request(b"\x00\x01\x02")


def test_internal_error_is_ar_207_without_stack_trace(mllp, aff, database, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("database on fire")
    monkeypatch.setattr(pix_feed, "record_identity", broken)
    with MllpClient(mllp) as c:
        raw = c.request(adt(aff, control_id="I1").encode())
    ack = parse(raw)
    assert ack.get("MSA-1") == "AR" and ack.get("MSA-2") == "I1"
    assert errs(ack) == [("207", "", "E")]
    assert b"fire" not in raw and b"Traceback" not in raw
    with database.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(feed_log)).scalar() == 0
        assert c.execute(sa.select(t_audit.c.outcome)).scalars().all() == [12]
    monkeypatch.undo()  # the sender retries: now applied
    assert send(mllp, adt(aff, control_id="I1")).get("MSA-1") == "AA"


# -- duplicates ------------------------------------------------------------------------------

def _statements_of(node, work):
    """(autocommit, SQL) of every statement the MLLP handler threads run during ``work()``."""
    seen = []

    def note(conn, _cursor, statement, _params, _context, _many):
        if threading.current_thread().name.startswith("mllp"):
            dbapi = conn.connection.dbapi_connection
            seen.append((getattr(dbapi, "autocommit", None), " ".join(statement.split())))
    sa.event.listen(node.db.engine, "before_cursor_execute", note)
    try:
        work()
    finally:
        sa.event.remove(node.db.engine, "before_cursor_execute", note)
    return seen


def _writes(statements):
    return [sql for _auto, sql in statements
            if re.search(r"\b(INSERT|UPDATE|DELETE)\b", sql, re.IGNORECASE)]


def test_the_unit_of_work_of_a_feed(mllp, aff, database, node, index_age):
    """On PostgreSQL with a grown index, an ordinary feed (a new person, then an update) reads
    and then writes everything — person, identifiers, keys, decisions and the feed log row — in
    one statement outside a transaction block; a young index and SQLite use one transaction;
    a merge always does."""
    pg = database.dialect == "postgresql"
    one = pg and index_age == "grown"
    idcard = resident_id("110101", "19800101", "001")
    # the first feed registers its identifiers' domains: a write before the last statement
    seen = _statements_of(node, lambda: send(mllp, adt(
        aff, control_id="U0", eid="E0900", mrn="H0900", name="李^四^^^^^L", birth="19700304",
        idcard=resident_id("110101", "19700304", "002"))))
    assert any("INSERT INTO pix_domain" in w and auto is not True
               for auto, w in seen if w in _writes(seen))
    for control_id, name in (("U1", "张^三^^^^^L"), ("U2", "张^叁^^^^^L")):
        seen = _statements_of(node, lambda: send(mllp, adt(aff, control_id=control_id, name=name,
                                                          idcard=idcard)))
        assert seen, "no statement seen"
        writes = _writes(seen)
        if one:
            assert all(auto is True for auto, _sql in seen)
            assert len(writes) == 1 and writes[0] == seen[-1][1]
            assert "pix_feed_log" in writes[0] and "pix_block" in writes[0]
        else:   # the unit (after the reads of a first try, on PostgreSQL) is a transaction
            start = next(n for n, (auto, _sql) in enumerate(seen) if auto is not True)
            assert not any(auto is True for auto, _sql in seen[start:])
            assert all(sql not in writes for _auto, sql in seen[:start])
            assert any(sql.startswith("SET LOCAL plan_cache_mode" if pg else "BEGIN IMMEDIATE")
                       for _auto, sql in seen[start:])
            assert any("pix_feed_log" in w for w in writes)
    p = person_of(database, f"E0001^^^&{aff}&ISO")
    assert p.name == "张叁" and len(p.identifiers) == 3
    with database.read() as c:
        rows = c.execute(sa.select(feed_log.c.control_id, feed_log.c.person_id, feed_log.c.ack_code)
                         .order_by(feed_log.c.id)).all()
    assert [tuple(r) for r in rows][1:] == [("U1", p.id, "AA"), ("U2", p.id, "AA")]
    merge = ("MSH|^~\\&|HIS|北京协和医院|HIE|REGION|20240501083000+0800||ADT^A40^ADT_A39|U3|P|2.5"
             f"\rEVN|A40|20240501083000\rPID|1||E0001^^^&{aff}&ISO^PI||张^叁\r"
             f"MRG|H0001^^^HIS&{HIS_OID}&ISO^MR\r")
    seen = _statements_of(node, lambda: send(mllp, merge))
    assert not any(auto is True for auto, _sql in seen)   # a transaction: several writes
    assert len(_writes(seen)) > 1
    with database.read() as c:
        assert c.execute(sa.select(feed_log.c.person_id).where(
            feed_log.c.control_id == "U3")).scalar() == p.id


def test_duplicate_control_id_returns_the_stored_ack(mllp, aff, database):
    first = send(mllp, adt(aff, control_id="D1"))
    again = send(mllp, adt(aff, control_id="D1"))
    assert again.encode() == first.encode()
    changed = send(mllp, adt(aff, control_id="D1", name="李^四"))  # same id: not re-applied
    assert changed.encode() == first.encode()
    assert person_of(database, f"E0001^^^&{aff}&ISO").name == "张三"
    other = send(mllp, adt(aff, control_id="D1", name="李^四", sender="LIS^1.2.3^ISO"))
    assert other.get("MSA-1") == "AA" and other.get("MSH-10") != first.get("MSH-10")
    assert person_of(database, f"E0001^^^&{aff}&ISO").name == "李四"
    with database.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(feed_log)).scalar() == 2
        patients = c.execute(sa.select(t_audit.c.patient_id).order_by(t_audit.c.id)).all()
    assert len(patients) == 4 and all(p[0] == f"E0001^^^&{aff}&ISO" for p in patients)


def test_duplicate_of_an_ae_returns_the_stored_ae(mllp, aff):
    first = send(mllp, adt(aff, control_id="D2", pid3=""))
    assert first.get("MSA-1") == "AE"
    assert send(mllp, adt(aff, control_id="D2", pid3="")).encode() == first.encode()


# -- character sets ---------------------------------------------------------------------------

def test_gb18030_message_with_chinese_name(mllp, aff, database):
    text = adt(aff, control_id="G1", eid="E50", name="张^三", charset="GB 18030-2000",
               address="东华门街道^^北京市东城区东华门街道^北京市")
    ack = send(mllp, text, encoding="gb18030")
    assert ack.encoding == "gb18030" and ack.charset == "GB 18030-2000"
    assert ack.get("MSA-1") == "AA" and ack.get("MSH-6") == "北京协和医院"
    p = person_of(database, f"E50^^^&{aff}&ISO")
    assert p.name == "张三"
    assert p.demographics["addresses"][0]["city"] == "北京市东城区东华门街道"
    with database.read() as c:
        raw = c.execute(sa.select(feed_log.c.message)).scalar()
    assert raw == text.encode("gb18030")


def test_a_gb18030_feed_is_matched_with_a_utf8_one(mllp, aff, database):
    """One person registered at two hospitals, one HIS sending UTF-8 and the other GB 18030 with
    the traditional form of the name (張三豐 for 张三丰) and the ID card number mistyped by one
    digit (so not a key): matching links them by the demographics decoded from GB 18030; a
    namesake with another birth date and ID card is not linked."""
    card = resident_id("110101", "19800101", "015")
    typo = card[:10] + ("2" if card[10] != "2" else "3") + card[11:]
    utf8 = adt(aff, control_id="GM1", eid=None, mrn="",
               pid3=f"XH9001^^^HIS&{HIS_OID}&ISO^MR~{card}^^^&{RESIDENT_ID_OID}&ISO^NI",
               name="张^三丰", birth="19800101")
    assert send(mllp, utf8).get("MSA-1") == "AA"
    gb = adt(aff, control_id="GM2", eid=None, mrn="", charset="GB 18030-2000",
             pid3=f"TT9001^^^天坛&1.2.156.112604.1.9&ISO^MR~{typo}^^^&{RESIDENT_ID_OID}&ISO^NI",
             name="張^三豐", birth="19800101", sender="TTHIS^1.2.156.112604.9^ISO")
    assert send(mllp, gb, encoding="gb18030").get("MSA-1") == "AA"
    other_card = resident_id("110101", "19811111", "017")
    namesake = adt(aff, control_id="GM3", eid=None, mrn="", charset="GB18030",
                   pid3=f"TT9002^^^天坛&1.2.156.112604.1.9&ISO^MR~"
                        f"{other_card}^^^&{RESIDENT_ID_OID}&ISO^NI",
                   name="張^三豐", birth="19811111", sender="TTHIS^1.2.156.112604.9^ISO")
    assert send(mllp, namesake, encoding="gb18030").get("MSA-1") == "AA"
    first = person_of(database, f"XH9001^^^HIS&{HIS_OID}&ISO")
    second = person_of(database, "TT9001^^^天坛&1.2.156.112604.1.9&ISO")
    third = person_of(database, "TT9002^^^天坛&1.2.156.112604.1.9&ISO")
    assert first.id == second.id and third.id != first.id
    assert {i.value for i in first.identifiers} >= {"XH9001", "TT9001", card}
    assert typo not in {i.value for i in first.identifiers}  # kept as data, not as a key
    assert third.demographics["names"][0]["family"] == "張"  # kept as sent


def test_gbk_without_msh18_is_read_as_gb18030(mllp, aff, database):
    ack = send(mllp, adt(aff, control_id="G2", eid="E51", name="李^四", charset=""),
               encoding="gbk")
    assert ack.get("MSA-1") == "AA"
    assert person_of(database, f"E51^^^&{aff}&ISO").name == "李四"


# -- framing ----------------------------------------------------------------------------------

def test_malformed_frames_keep_the_listener_serving(mllp, aff, database):
    with MllpClient(mllp) as c:
        # no MSH at all
        assert parse(c.request(b"PID|1||X^^^&1.2&ISO\r")).get("MSA-1") == "AR"
        # wrong delimiters
        ack = parse(c.request(b"MSHA^~\\&AHISAH\rPID|1\r"))
        assert ack.get("MSA-1") == "AR" and ack.get("ERR-3") == "102"
        # truncated frame, then a whole one: only the whole one is answered
        c.send_raw(b"\x0b" + adt(aff, control_id="T1").encode()[:40])
        ack = parse(c.request(adt(aff, control_id="T2", eid="E60").encode()))
        assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "T2"
        # binary garbage outside frames is skipped
        garbage = bytes(b for b in os.urandom(512) if b not in (0x0B, 0x1C))
        c.send_raw(garbage)
        ack = parse(c.request(adt(aff, control_id="T3", eid="E61").encode()))
        assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "T3"
        # binary garbage inside a frame
        assert parse(c.request(b"\xff\xfe" + garbage)).get("MSA-1") == "AR"
        # an end block without <CR>: the block is dropped, the next one answered
        c.send_raw(b"\x0b" + adt(aff, control_id="T4").encode() + b"\x1cX")
        assert parse(c.request(adt(aff, control_id="T5", eid="E62").encode())).get(
            "MSA-2") == "T5"
    assert known(database, f"E60^^^&{aff}&ISO") and known(database, f"E62^^^&{aff}&ISO")
    with database.read() as c:
        ids = set(c.execute(sa.select(feed_log.c.control_id)).scalars())
    assert "T1" not in ids and "T4" not in ids

    # an oversized frame closes that connection; the listener keeps serving others
    with MllpClient(mllp) as c:
        c.send_raw(b"\x0b" + b"A" * (300 * 1024))
        assert c.receive() is None
    # a client vanishing mid-frame
    with MllpClient(mllp) as c:
        c.send_raw(b"\x0bMSH|^~\\&|")
    assert send(mllp, adt(aff, control_id="T6", eid="E63")).get("MSA-1") == "AA"


def test_pipelined_messages_are_answered_in_order(mllp, aff):
    with MllpClient(mllp) as c:
        c.send_raw(b"".join(frame(adt(aff, control_id=f"Q{i}", eid=f"E7{i}").encode())
                            for i in range(5)))
        acks = [parse(c.receive()) for _ in range(5)]
    assert [a.get("MSA-2") for a in acks] == [f"Q{i}" for i in range(5)]
    assert {a.get("MSA-1") for a in acks} == {"AA"}


def test_concurrent_feeds_of_one_new_patient_make_one_person(mllp, aff, database):
    results, errors = [], []

    def feed(i: int) -> None:
        try:
            with MllpClient(mllp) as c:
                results.append(parse(c.request(adt(aff, control_id=f"X{i}", eid="E80",
                                                   mrn=f"M8{i}").encode())))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(a.get("MSA-1") for a in results) == ["AA"] * 8
    with database.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(t_person)).scalar() == 1
    p = person_of(database, f"E80^^^&{aff}&ISO")
    assert len(p.identifiers) == 9


# -- the index on its own ---------------------------------------------------------------------

def test_record_identity_and_is_known(database):
    aff = "1.2.3.4"
    e = Identifier("E1", oid=aff, oid_type="ISO", id_type="PI")
    local = Identifier("M1", namespace="HIS")
    with database.begin() as c:
        r = record_identity(c, [e, local, e], {"names": [{"family": "张", "given": "三"}],
                                               "sex": "M"}, affinity_domain=aff)
    assert r.created and len(r.added) == 2 and not r.conflicts
    with database.begin() as c:
        r2 = record_identity(c, [local], {"sex": None, "birth_time": "19800101120000"},
                             affinity_domain=aff)
    assert not r2.created and r2.person_id == r.person_id and not r2.added
    with database.read() as c:
        assert is_known(c, "E1^^^&1.2.3.4&ISO") and is_known(c, "M1^^^HIS")
        assert not is_known(c, "E1^^^HIS") and not is_known(c, "E1")
        assert is_known(c, "E1^^^&1.2.3.4&ISO", domain=aff)
        assert not is_known(c, "M1^^^HIS", domain=aff)
        assert not is_known(c, "") and not is_known(c, "^^^&1.2.3.4&ISO")
        p = get_person(c, r.person_id)
        assert p.sex is None and p.birth_date == "19800101" and p.name == "张三"
        assert {i.cx for i in p.identifiers} == {"E1^^^&1.2.3.4&ISO", "M1^^^HIS"}
        assert get_person(c, 999999) is None
    with database.begin() as c:
        c.execute(t_person.update().values(status="inactive"))
    with database.read() as c:
        assert not is_known(c, "E1^^^&1.2.3.4&ISO")
    with pytest.raises(ValueError):
        with database.begin() as c:
            record_identity(c, [Identifier("X")])
    with pytest.raises(ValueError):
        with database.begin() as c:
            record_identity(c, [])


def test_resident_id_helper():
    assert resident_id("110105", "19491231", "002") == "11010519491231002X"


# -- identity domains (HIE_PIX_AUTO_DOMAINS) -----------------------------------------------------

NEW_HOSPITAL_OID = "1.2.156.112604.1.1.199.2"


def test_unknown_domain_is_registered_by_default(mllp, aff, database):
    from pix_pdq.index import known_domains
    ack = send(mllp, adt(aff, control_id="D0001", eid=None, mrn="",
                         pid3=f"NH0001^^^NEWH&{NEW_HOSPITAL_OID}&ISO^MR"))
    assert ack.get("MSA-1") == "AA"
    with database.read() as c:
        assert known_domains(c, [NEW_HOSPITAL_OID, "1.2.3.4.5"]) == {NEW_HOSPITAL_OID}


@pytest.fixture
def strict_mllp(database, tmp_path):
    """A node with HIE_PIX_AUTO_DOMAINS=false that knows only HIS_OID."""
    from hie.node import Node
    from hie.settings import load_settings
    from pix_pdq.index import register_domains
    from tests.xdsdata import AFFINITY_DOMAIN
    settings = load_settings(env={"HIE_PIX_AUTO_DOMAINS": "false"}, data_dir=tmp_path / "s",
                             database_url=database.url, affinity_domain=AFFINITY_DOMAIN)
    assert settings.pix_auto_domains is False
    with database.begin() as c:
        register_domains(c, [Identifier("x", HIS_OID)], auto=True)
    node = Node(settings, create_schema=False)
    try:
        with running(lambda: start_mllp(node, "127.0.0.1", 0)) as server:
            yield server.address, settings.affinity_domain
    finally:
        node.close()


def test_unknown_domain_is_refused_when_auto_domains_is_off(strict_mllp, database):
    addr, aff_oid = strict_mllp
    ack = send(addr, adt(aff_oid, control_id="D0002", eid=None, mrn="H0002",
                         pid3=f"H0002^^^HIS&{HIS_OID}&ISO^MR~NH0002^^^NEWH&{NEW_HOSPITAL_OID}&ISO^MR"))
    assert ack.get("MSA-1") == "AE"
    err = ack.segment("ERR")
    assert err.value(3) == "204" and err[2].encode() == "PID^1^3^2^4"
    assert not known(database, f"H0002^^^HIS&{HIS_OID}&ISO")   # nothing half-written
    ok = send(addr, adt(aff_oid, control_id="D0003", eid="E0003", mrn="H0003"))
    assert ok.get("MSA-1") == "AA"   # the affinity domain and known domains are accepted
    assert send(addr, adt(aff_oid, control_id="D0002", eid=None, mrn="H0002",
                          pid3=f"H0002^^^HIS&{HIS_OID}&ISO^MR~NH0002^^^NEWH&{NEW_HOSPITAL_OID}"
                               "&ISO^MR")).get("MSA-1") == "AE"   # the stored ACK, again
    # the domain registered since: the same message (same control id) is still the one refused,
    # answered with its stored AE and not applied now
    with database.begin() as c:
        register_domains(c, [Identifier("x", NEW_HOSPITAL_OID)], auto=True)
    again = send(addr, adt(aff_oid, control_id="D0002", eid=None, mrn="H0002",
                           pid3=f"H0002^^^HIS&{HIS_OID}&ISO^MR~NH0002^^^NEWH&{NEW_HOSPITAL_OID}"
                                "&ISO^MR"))
    assert again.encode() == ack.encode()
    assert not known(database, f"H0002^^^HIS&{HIS_OID}&ISO")
    with database.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(feed_log).where(
            feed_log.c.control_id == "D0002")).scalar() == 1

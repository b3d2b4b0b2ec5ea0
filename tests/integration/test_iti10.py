"""PIX Update Notification [ITI-10] (ITI TF-2a 3.10) over real MLLP sockets, on SQLite and
PostgreSQL: ITI-8 feeds to the node, a PIX Consumer (an MLLP listener of the test) subscribed
with ``HIE_PIX_CONSUMERS`` receives ADT^A31 through the durable outbox — on a new person, on a
link, on a merge and on an operator's unlink, restricted to its domains of interest, never on a
demographics-only update; a consumer that is down or answers AE gets the notification again
later, rendered from the index as it is then."""
from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import httpx
import pytest
import sqlalchemy as sa

from hie.app import create_app
from hie.hl7v2 import build_ack, parse
from hie.mllp import MllpServer
from hie.node import Node
from hie.tables import audit_event as t_audit, outbox as t_outbox
from pix_pdq import notify
from pix_pdq.mllp_service import start_mllp
from tests.integration.test_iti8 import HIS_OID, IDCARD_OID, adt, send
from tests.integration.test_merge import a40
from tests.mllp_support import resident_id, running
from tests.serve import serve

pytestmark = pytest.mark.usefixtures("index_age")

OTHER_HIS = "1.2.156.112604.1.9"  # 天坛医院's patient numbers


class Consumer:
    """A PIX Consumer: records what it receives, answers with ``self.answer``."""

    def __init__(self):
        self.received: list[bytes] = []
        self.answer = "AA"
        self.lock = threading.Lock()

    def handle(self, _ctx_factory, payload: bytes) -> bytes:
        with self.lock:
            self.received.append(payload)
        return build_ack(parse(payload), self.answer).encode()

    def messages(self):
        with self.lock:
            return [parse(p) for p in self.received]


@pytest.fixture
def consumer():
    c = Consumer()
    with running(lambda: MllpServer("127.0.0.1", 0, c.handle).start()) as server:
        c.address = server.address
        yield c


def _node(settings, consumers: str) -> Node:
    return Node(dataclasses.replace(settings, pix_consumers=consumers), create_schema=False)


@pytest.fixture
def subscribed(settings, consumer):
    """(node, MLLP address) with the test consumer subscribed to the HIS and 天坛 domains."""
    url = (f"mllp://127.0.0.1:{consumer.address[1]}?domains={HIS_OID}|{OTHER_HIS}"
           "&application=PIXCONSUMER&facility=EMR")
    node = _node(settings, url)
    create_app(node)  # installs the deliverers
    with running(lambda: start_mllp(node, "127.0.0.1", 0)) as server:
        yield node, server.address
    node.close()


def _deliver(node) -> int:
    return node.outbox.run_once()


def _pid3(msg) -> set[tuple[str, str]]:
    pid = msg.segment("PID")
    return {(pid[3].value(r, 1), pid[3].value(r, 4, 2)) for r in range(1, len(pid[3].reps) + 1)}


def _rows(node):
    with node.db.read() as c:
        return c.execute(sa.select(t_outbox).order_by(t_outbox.c.id)).all()


def test_a_new_person_is_notified_as_adt_a31(subscribed, consumer):
    node, mllp = subscribed
    card = resident_id("110105", "19900307", "123")
    ack = send(mllp, adt(node.settings.affinity_domain, control_id="N1", mrn="XH0001",
                         idcard=card, name="张^三^^^^^L"))
    assert ack.get("MSA-1") == "AA"
    assert _deliver(node) == 1
    [msg] = consumer.messages()
    assert (msg.message_type, msg.trigger_event, msg.get("MSH-9.3")) == ("ADT", "A31", "ADT_A05")
    assert msg.version == "2.5"
    assert msg.get("MSH-5") == "PIXCONSUMER" and msg.get("MSH-6") == "EMR"
    assert msg.get("EVN-2")  # recorded date/time
    # only the domains of interest: the hospital number, not the enterprise ID or the ID card
    assert _pid3(msg) == {("XH0001", HIS_OID)}
    assert msg.get("PID-5") == " " and msg.get("PV1-2") == "N"
    [row] = _rows(node)
    assert row.status == "delivered" and row.kind == notify.ITI_10_KIND
    node.audit.stop()  # flushes the batched audit writer
    with node.db.read() as c:
        events = c.execute(sa.select(t_audit.c.transaction, t_audit.c.outcome).where(
            t_audit.c.transaction == "ITI-10")).all()
    assert events == [("ITI-10", 0)]


def test_a_link_sends_the_whole_cross_reference(subscribed, consumer):
    node, mllp = subscribed
    aff = node.settings.affinity_domain
    card = resident_id("110105", "19900307", "123")
    send(mllp, adt(aff, control_id="L1", eid=None, mrn="XH0001", idcard=card))
    assert _deliver(node) == 1
    other = adt(aff, control_id="L2", eid=None, mrn="", idcard=card,
                pid3=f"TT0042^^^天坛&{OTHER_HIS}&ISO^MR~{card}^^^&{IDCARD_OID}&ISO^NI")
    assert send(mllp, other).get("MSA-1") == "AA"
    assert _deliver(node) == 1
    first, second = consumer.messages()
    assert _pid3(first) == {("XH0001", HIS_OID)}
    assert _pid3(second) == {("XH0001", HIS_OID), ("TT0042", OTHER_HIS)}
    assert second.get("PID-3[2].4.1") == "天坛" or second.get("PID-3[1].4.1") == "天坛"


def test_a_demographics_update_notifies_nobody(subscribed, consumer):
    node, mllp = subscribed
    aff = node.settings.affinity_domain
    send(mllp, adt(aff, control_id="U1", mrn="XH0002"))
    send(mllp, adt(aff, event="A08", control_id="U2", mrn="XH0002", name="张^叁^^^^^L",
                   address="建国路99号^^北京市^北京市^100022^CHN^H"))
    assert _deliver(node) == 1
    assert len(consumer.messages()) == 1


def test_a_merge_notifies_the_survivor(subscribed, consumer):
    node, mllp = subscribed
    aff = node.settings.affinity_domain
    send(mllp, adt(aff, control_id="M1", eid="WF0001", mrn="XH0010", name="王^芳^^^^^L"))
    send(mllp, adt(aff, control_id="M2", eid="WF0002", mrn="",
                   pid3=f"WF0002^^^&{aff}&ISO^PI~TT0010^^^&{OTHER_HIS}&ISO^MR",
                   name="王^芳^^^^^L"))
    assert _deliver(node) == 2
    assert send(mllp, a40(aff, "WF0001", "WF0002", control_id="M3")).get("MSA-1") == "AA"
    assert _deliver(node) == 1
    merged = consumer.messages()[-1]
    assert _pid3(merged) == {("XH0010", HIS_OID), ("TT0010", OTHER_HIS)}


def test_a_consumer_that_is_down_or_refuses_gets_it_again(settings, consumer):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()  # nothing listens there now
    node = _node(settings, f"mllp://127.0.0.1:{dead_port},mllp://127.0.0.1:{consumer.address[1]}")
    create_app(node)
    consumer.answer = "AE"
    try:
        with running(lambda: start_mllp(node, "127.0.0.1", 0)) as server:
            send(server.address, adt(node.settings.affinity_domain, control_id="R1",
                                     mrn="XH0020"))
            assert _deliver(node) == 2
            rows = _rows(node)
            assert [r.status for r in rows] == ["pending", "pending"]
            assert all(r.attempts == 1 and r.last_error for r in rows)
            assert "AE" in rows[1].last_error
            # the second feed of the same patient adds an identifier meanwhile
            send(server.address, adt(node.settings.affinity_domain, control_id="R2",
                                     mrn="", pid3=f"E0001^^^&{node.settings.affinity_domain}"
                                     f"&ISO^PI~TT0020^^^&{OTHER_HIS}&ISO^MR"))
            consumer.answer = "AA"
            with node.db.begin() as c:  # the back-off has passed
                c.execute(t_outbox.update().values(
                    next_attempt_at=dt.datetime.now(dt.timezone.utc)))
            node.outbox.run_once()
            rows = _rows(node)
            to_live = [r for r in rows if str(consumer.address[1]) in r.destination]
            assert [r.status for r in to_live] == ["delivered", "delivered"]
            assert [r.status for r in rows if r not in to_live] == ["pending", "pending"]
            # the retried one is rendered as the index is now: both hospital numbers
            for msg in consumer.messages()[-2:]:
                assert ("TT0020", OTHER_HIS) in _pid3(msg) and ("XH0020", HIS_OID) in _pid3(msg)
    finally:
        node.close()


def test_unlink_notifies_both_persons(subscribed, consumer):
    node, mllp = subscribed
    aff = node.settings.affinity_domain
    send(mllp, adt(aff, control_id="K1", eid="E0100", mrn="",
                   pid3=f"E0100^^^&{aff}&ISO^PI~XH0100^^^&{HIS_OID}&ISO^MR~"
                        f"TT0100^^^&{OTHER_HIS}&ISO^MR"))
    _deliver(node)
    with node.db.read() as c:
        from pix_pdq.tables import identifier as t_id
        person = c.execute(sa.select(t_id.c.person_id).where(t_id.c.value == "TT0100")).scalar()
    with serve(create_app(node)) as base:
        r = httpx.post(f"{base}/api/mpi/persons/{person}/unlink",
                       params={"domain": OTHER_HIS, "value": "TT0100"}, timeout=10)
    assert r.status_code == 200, r.text
    assert _deliver(node) == 2
    lists = [_pid3(m) for m in consumer.messages()[-2:]]
    assert {("XH0100", HIS_OID)} in lists and {("TT0100", OTHER_HIS)} in lists


def test_gb18030_consumer_and_nothing_of_interest(settings, consumer):
    url = (f"mllp://127.0.0.1:{consumer.address[1]}?charset=GB18030&domains={OTHER_HIS}")
    node = _node(settings, url)
    create_app(node)
    try:
        with running(lambda: start_mllp(node, "127.0.0.1", 0)) as server:
            aff = node.settings.affinity_domain
            send(server.address, adt(aff, control_id="G1", mrn="XH0200"))  # no 天坛 number
            send(server.address, adt(aff, control_id="G2", eid=None, mrn="",
                                     pid3=f"TT0200^^^天坛医院&{OTHER_HIS}&ISO^MR"))
            assert _deliver(node) == 2
        assert [r.status for r in _rows(node)] == ["delivered", "delivered"]
        [raw] = consumer.received  # the first person has nothing of interest: not sent
        assert "天坛医院".encode("gb18030") in raw and b"GB18030" in raw
        assert parse(raw).get("PID-3.4.1") == "天坛医院"
    finally:
        node.close()


@pytest.mark.parametrize("spec", ["mllp://host-without-port", "ftp://x:1",
                                  "mllp://127.0.0.1:2575?charset=EBCDIC", "http://"])
def test_a_malformed_consumer_is_refused(spec):
    with pytest.raises(ValueError):
        notify.Consumer.parse(spec)


def test_consumer_options():
    c = notify.Consumer.parse("mllp://10.1.2.3:3700?domains=1.2.3|1.2.4&application=EMR")
    assert (c.kind, c.host, c.port, c.application) == (notify.ITI_10_KIND, "10.1.2.3", 3700,
                                                       "EMR")
    assert c.domains == frozenset({"1.2.3", "1.2.4"})
    v3 = notify.Consumer.parse("https://pix.example.cn/consumer?device=1.2.9")
    assert (v3.kind, v3.url, v3.device) == (notify.ITI_46_KIND, "https://pix.example.cn/consumer",
                                            "1.2.9")

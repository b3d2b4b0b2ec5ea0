"""PIXV3 Update Notification [ITI-46] (ITI TF-2b 3.46) over real HTTP, on SQLite and PostgreSQL:
identities fed to the node (ITI-8 over MLLP) are notified through the durable outbox to a PIX
Consumer — an HTTP endpoint of the test — subscribed with ``HIE_PIX_CONSUMERS=http://...``, as
a SOAP 1.2 PRPA_IN201302UV02 holding the person's identifiers in its domains of interest; an
answer AE, a SOAP Fault or a dead endpoint leaves the notification queued for a retry."""
from __future__ import annotations

import dataclasses
import threading

import pytest
import sqlalchemy as sa
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hie.app import create_app
from hie.hl7v3 import parse_message
from hie.hl7v3_patient import parse_registration
from hie.node import Node
from hie.soap import SOAP12_NS, WSA_NS
from hie.tables import audit_event as t_audit, outbox as t_outbox
from pix_pdq import iti46
from pix_pdq.mllp_service import start_mllp
from tests.integration.test_iti8 import HIS_OID, adt, send
from tests.mllp_support import running
from tests.serve import serve

OTHER_HIS = "1.2.156.112604.1.9"

MCCI = """<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">
<env:Header/><env:Body><MCCI_IN000002UV01 xmlns="urn:hl7-org:v3" ITSVersion="XML_1.0">
<id root="1.2.3.4" extension="ack-1"/><creationTime value="20261202100000"/>
<interactionId root="2.16.840.1.113883.1.6" extension="MCCI_IN000002UV01"/>
<processingCode code="P"/><processingModeCode code="T"/><acceptAckCode code="NE"/>
<acknowledgement typeCode="{code}"><targetMessage><id root="1.2"/></targetMessage></acknowledgement>
</MCCI_IN000002UV01></env:Body></env:Envelope>"""
FAULT = """<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>
<env:Fault><env:Code><env:Value>env:Receiver</env:Value></env:Code>
<env:Reason><env:Text xml:lang="en">consumer database down</env:Text></env:Reason></env:Fault>
</env:Body></env:Envelope>"""


class Consumer:
    """A PIXV3 consumer: keeps the requests, answers ``self.answer`` (an ack code or FAULT)."""

    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        self.answer = "AA"
        self.lock = threading.Lock()

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.requests.append((dict(request.headers), body))
        text = FAULT if self.answer == "FAULT" else MCCI.format(code=self.answer)
        return Response(text, status_code=500 if self.answer == "FAULT" else 200,
                        media_type="application/soap+xml")


@pytest.fixture
def consumer():
    c = Consumer()
    with serve(Starlette(routes=[Route("/pixv3", c.endpoint, methods=["POST"])])) as base:
        c.url = f"{base}/pixv3"
        yield c


@pytest.fixture
def subscribed(settings, consumer):
    url = f"{consumer.url}?domains={HIS_OID}|{OTHER_HIS}&device=1.2.156.112604.77"
    node = Node(dataclasses.replace(settings, pix_consumers=url), create_schema=False)
    create_app(node)
    with running(lambda: start_mllp(node, "127.0.0.1", 0)) as server:
        yield node, server.address
    node.close()


def _patient_ids(body: bytes) -> set[tuple[str, str]]:
    env = etree.fromstring(body)
    msg = parse_message(env.find(f"{{{SOAP12_NS}}}Body")[0])
    reg = parse_registration(msg)
    return {(ii.root, ii.extension) for ii in reg.patient.ids}


def _rows(node):
    with node.db.read() as c:
        return c.execute(sa.select(t_outbox).order_by(t_outbox.c.id)).all()


def test_a_link_is_notified_as_prpa_in201302uv02(subscribed, consumer):
    node, mllp = subscribed
    aff = node.settings.affinity_domain
    send(mllp, adt(aff, control_id="V1", eid="E0300", mrn="XH0300"))
    send(mllp, adt(aff, control_id="V2", eid="E0300", mrn="",
                   pid3=f"E0300^^^&{aff}&ISO^PI~TT0300^^^天坛&{OTHER_HIS}&ISO^MR"))
    assert node.outbox.run_once() == 2
    assert [r.status for r in _rows(node)] == ["delivered", "delivered"]
    headers, body = consumer.requests[-1]
    assert "application/soap+xml" in headers["content-type"]
    env = etree.fromstring(body)
    action = env.find(f"{{{SOAP12_NS}}}Header/{{{WSA_NS}}}Action").text
    assert action == "urn:hl7-org:v3:PRPA_IN201302UV02"
    msg = parse_message(env.find(f"{{{SOAP12_NS}}}Body")[0])
    assert msg.interaction == "PRPA_IN201302UV02"
    assert [str(r) for r in msg.transmission.receivers] == ["1.2.156.112604.77"]
    # only the domains of interest: not the enterprise ID
    assert _patient_ids(body) == {(HIS_OID, "XH0300"), (OTHER_HIS, "TT0300")}
    node.audit.stop()
    with node.db.read() as c:
        events = c.execute(sa.select(t_audit.c.outcome).where(
            t_audit.c.transaction == "ITI-46")).scalars().all()
    assert events == [0, 0]


@pytest.mark.parametrize("answer", ["AE", "AR", "FAULT"])
def test_a_refusing_consumer_gets_it_again(subscribed, consumer, answer):
    node, mllp = subscribed
    consumer.answer = answer
    send(mllp, adt(node.settings.affinity_domain, control_id="V3", mrn="XH0301"))
    assert node.outbox.run_once() == 1
    [row] = _rows(node)
    assert row.status == "pending" and row.attempts == 1
    assert (answer if answer != "FAULT" else "consumer database down") in row.last_error


def test_a_dead_consumer_and_a_harmless_one(settings, consumer):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    node = Node(dataclasses.replace(settings, pix_consumers=(
        f"http://127.0.0.1:{port}/pixv3,{consumer.url}?domains=9.9.9")), create_schema=False)
    create_app(node)
    try:
        with running(lambda: start_mllp(node, "127.0.0.1", 0)) as server:
            send(server.address, adt(node.settings.affinity_domain, control_id="V4",
                                     mrn="XH0302"))
            assert node.outbox.run_once() == 2
        dead, harmless = _rows(node)
        assert dead.status == "pending" and "ConnectError" in dead.last_error
        # nothing in 9.9.9: delivered without a message
        assert harmless.status == "delivered" and consumer.requests == []
    finally:
        node.close()


def test_acknowledgement_code_refuses_what_is_not_an_ack():
    from hie.outbox import DeliveryError
    assert iti46.acknowledgement_code(MCCI.format(code="CA").encode()) == "CA"
    for bad in (b"not xml", b"<a/>", b'<e:Envelope xmlns:e="%s"><e:Body><x/></e:Body>'
                b"</e:Envelope>" % SOAP12_NS.encode()):
        with pytest.raises(DeliveryError):
            iti46.acknowledgement_code(bad)

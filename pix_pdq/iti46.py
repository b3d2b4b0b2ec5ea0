"""PIXV3 Update Notification [ITI-46], PIX Manager side (ITI TF-2b 3.46): the sending end of
the notifications :mod:`pix_pdq.notify` queues for the ``http(s)://`` consumers of
``HIE_PIX_CONSUMERS``.

When the outbox delivers a notification, the person's cross-reference is rendered as it is then
(the survivor of any merge; its active identifiers in the consumer's domains of interest) into a
PRPA_IN201302UV02 Patient Registry Record Revised (3.46.4.1.2: every identifier in
``patient/id``, the person's name with nullFlavor NA — demographics are not what this
transaction carries), sender device this node's home community, receiver device the consumer's
``device=`` option (else the consumer's host under this node's root), custodian the affinity
domain.  It travels in a SOAP 1.2 envelope with WS-Addressing (ITI TF-2x V.3.2.1), action
``urn:hl7-org:v3:PRPA_IN201302UV02``.  The consumer answers MCCI_IN000002UV01 (3.46.4.2):
``AA`` / ``CA`` settles the delivery; ``AE`` / ``AR``, a SOAP Fault, an HTTP error or no answer
is retried by the outbox with back-off.  Each notification sent is audited ("Patient Record").
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

import httpx
from lxml import etree

from hie.context import Context
from hie.hl7v3 import II, child, parse_acknowledgement
from hie.hl7v3_patient import build_update_notification
from hie.outbox import DeliveryError, Message as OutboxMessage
from hie.soap import SOAP12_NS, build_envelope
from hie.transactions import ITI_46
from hie.xmlsafe import XmlError, parse_xml, to_bytes
from pix_pdq import notify
from pix_pdq.iti44 import custodian, node_device

log = logging.getLogger("pix_pdq.iti46")

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_ANSWER = 4 * 1024 * 1024


def render(conn, ctx: Context, consumer: notify.Consumer, person_id: int,
           now: dt.datetime) -> etree._Element | None:
    """The PRPA_IN201302UV02 for ``consumer`` about ``person_id`` (None: nothing of interest)."""
    wanted = notify.of_interest(conn, consumer, person_id)
    if not wanted:
        return None
    me = node_device(ctx)
    receiver = II(consumer.device) if consumer.device else II(me.root, consumer.host)
    return build_update_notification([II(i.domain, i.value, i.namespace) for i in wanted],
                                     sender=me, receiver=receiver, custodian=custodian(ctx),
                                     now=now)


def acknowledgement_code(content: bytes) -> str:
    """The typeCode of the MCCI_IN000002UV01 in a consumer's SOAP answer; raises
    :class:`DeliveryError` when the answer is not one."""
    try:
        env = parse_xml(content, max_bytes=MAX_ANSWER)
    except XmlError as exc:
        raise DeliveryError(f"ITI-46: the answer is not XML: {exc}") from None
    body = env.find(f"{{{SOAP12_NS}}}Body")
    first = body[0] if body is not None and len(body) else None
    if first is None:
        raise DeliveryError("ITI-46: the answer is not a SOAP 1.2 message")
    if etree.QName(first).localname == "Fault":
        reason = " ".join(t.strip() for t in first.itertext() if t.strip())[:300]
        raise DeliveryError(f"ITI-46: the consumer answered a SOAP Fault: {reason}")
    ack = child(first, "acknowledgement")
    if ack is None:
        raise DeliveryError(f"ITI-46: the consumer answered {etree.QName(first).localname} "
                            "without an acknowledgement")
    return parse_acknowledgement(ack).type_code


def deliver(node: Any, msg: OutboxMessage) -> None:
    started = time.perf_counter()
    consumer = notify.consumer_for(node, msg)
    person_id = int(json.loads(msg.payload)["person"])
    ctx = Context(node, ITI_46, remote_addr=consumer.host)
    now = dt.datetime.now(dt.timezone.utc)
    with node.db.read() as conn:
        message = render(conn, ctx, consumer, person_id, now)
    if message is None:
        log.info("ITI-46 to %s: person %s holds no identifier of interest; nothing sent",
                 consumer.url, person_id)
        return
    mid = child(message, "id")
    message_id = f"{mid.get('root', '')}^{mid.get('extension', '')}" if mid is not None else ""
    envelope = build_envelope(ITI_46.action, message, to=consumer.url)
    headers = {"Content-Type": f'application/soap+xml; charset=UTF-8; action="{ITI_46.action}"'}
    try:
        with httpx.Client(timeout=TIMEOUT) as http:
            resp = http.post(consumer.url, content=to_bytes(envelope), headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"ITI-46 to {consumer.url}: {type(exc).__name__}: {exc}") from None
    code = acknowledgement_code(resp.content)
    if code not in ("AA", "CA"):
        raise DeliveryError(f"ITI-46 to {consumer.url}: acknowledged {code or '(none)'} "
                            f"(HTTP {resp.status_code})")
    notify.sent(ctx, consumer, person_id, message_id, started)


__all__ = ["acknowledgement_code", "deliver", "render"]

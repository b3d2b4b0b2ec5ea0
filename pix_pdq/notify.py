"""PIX Update Notification to subscribed PIX Consumers: ITI-10 (HL7 v2.5 ADT^A31 over MLLP,
ITI TF-2a 3.10) and ITI-46 (HL7 v3 PRPA_IN201302UV02 over SOAP 1.2, ITI TF-2b 3.46).

ITI TF-2a 3.10.4.1.1: the PIX Manager notifies a consumer "when there is a change in a set of
cross-referenced patient identifiers for any of the patient identifiers belonging to Patient
Identifier Domains of interest to the consumer".  Here that is every change of a person's set of
identifiers: a feed that creates a person or adds an identifier to one (ITI-8, ITI-44, ITI-104),
a merge (ADT^A40, PRPA_IN201304UV02), and the operator's link / unlink and ``hie mpi estimate
--relink``.  Demographic-only updates change no cross-reference and notify nobody.

Consumers are configured with ``HIE_PIX_CONSUMERS``, a comma-separated list of URLs:

- ``mllp://host:port`` — ITI-10.  Options: ``domains=oid|oid`` (the domains of interest; none:
  all), ``application=`` / ``facility=`` (MSH-5 / MSH-6), ``charset=`` (an MSH-18 value such as
  ``GB18030``; default ``UNICODE UTF-8``).
- ``http(s)://host:port/path`` — ITI-46, the same ``domains=`` option and ``device=`` (the
  receiver device id root, default: none).

A notification is a row of the durable outbox (:mod:`hie.outbox`) written in the unit of work of
the change, naming the person; the message is rendered when it is delivered, from the index as it
is then, so that a retried delivery never sends an outdated cross-reference.  The message (3.10.4.1.2):
MSH (ADT^A31^ADT_A05, v2.5), EVN (EVN-2 recorded time), PID with PID-3 listing the person's active
identifiers in the consumer's domains of interest and PID-5 a single space (names differ between
domains; the consumer ignores it), PV1 with PV1-2 ``N`` (not applicable).  A person merged away
since is rendered as the survivor.  Nothing is sent when the person holds no identifier in the
consumer's domains.  An ACK ``AA`` / ``CA`` settles the delivery; anything else (``AE``, ``AR``,
no answer, refused connection) is retried by the outbox with back-off and parked as ``dead``
after the last attempt.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hie.context import Context
from hie.hl7v2 import Repeat, Segment, build_message, build_msh, codec_for, parse
from hie.outbox import DeliveryError, Message as OutboxMessage
from hie.transactions import ITI_10
from pix_pdq.index import Identifier
from pix_pdq.tables import ACTIVE, identifier as t_id, person as t_person

log = logging.getLogger("pix_pdq.notify")

ITI_10_KIND = "pix.iti10"
ITI_46_KIND = "pix.iti46"
TIMEOUT = 30.0
MAX_HOPS = 32  # merged_into chain followed when rendering


@dataclass(frozen=True)
class Consumer:
    """One subscribed PIX Consumer (an entry of ``HIE_PIX_CONSUMERS``)."""

    url: str
    kind: str
    host: str = ""
    port: int = 0
    domains: frozenset[str] = frozenset()
    application: str = ""
    facility: str = ""
    charset: str = "UNICODE UTF-8"
    device: str = ""

    def wants(self, identifier: Identifier) -> bool:
        return not self.domains or identifier.domain in self.domains

    @classmethod
    def parse(cls, text: str) -> "Consumer":
        url = text.strip()
        parts = urlsplit(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        domains = frozenset(d.strip() for d in options.get("domains", "").split("|") if d.strip())
        if parts.scheme == "mllp":
            if not parts.hostname or not parts.port:
                raise ValueError(f"PIX consumer {url!r}: mllp://host:port expected")
            charset = options.get("charset", "UNICODE UTF-8")
            if codec_for(charset) is None:
                raise ValueError(f"PIX consumer {url!r}: unknown MSH-18 character set {charset!r}")
            return cls(url, ITI_10_KIND, parts.hostname, parts.port, domains,
                       options.get("application", ""), options.get("facility", ""), charset)
        if parts.scheme in ("http", "https") and parts.hostname:
            endpoint = parts._replace(query="").geturl()
            return cls(endpoint, ITI_46_KIND, parts.hostname, parts.port or 0, domains,
                       device=options.get("device", ""))
        raise ValueError(f"PIX consumer {url!r}: mllp://host:port or http(s)://... expected")


@functools.lru_cache(maxsize=16)
def _consumers(spec: str) -> tuple[Consumer, ...]:
    return tuple(Consumer.parse(p) for p in spec.split(",") if p.strip())


def consumers(settings: Any) -> tuple[Consumer, ...]:
    return _consumers(getattr(settings, "pix_consumers", "") or "")


def changed(node: Any, conn: Connection, person_ids: Iterable[int]) -> int:
    """Queue a notification of each person's new cross-reference for every consumer, in the
    caller's unit of work; returns how many were queued."""
    subscribed = consumers(node.settings)
    outbox = getattr(node, "outbox", None)
    if not subscribed or outbox is None:
        return 0
    n = 0
    for person_id in dict.fromkeys(person_ids):
        payload = json.dumps({"person": int(person_id)}).encode()
        for c in subscribed:
            outbox.enqueue(conn, c.kind, c.url, payload,
                           {"transaction": "ITI-10" if c.kind == ITI_10_KIND else "ITI-46",
                            "person": int(person_id)})
            n += 1
    return n


# --------------------------------------------------------------------------------------------
# rendering (at delivery time)
# --------------------------------------------------------------------------------------------

def current_identifiers(conn: Connection, person_id: int) -> tuple[int, list[Identifier]]:
    """(the person now standing for ``person_id`` — the survivor of any merges —, its active
    identifiers)."""
    for _ in range(MAX_HOPS):
        row = conn.execute(sa.select(t_person.c.status, t_person.c.merged_into)
                           .where(t_person.c.id == person_id)).first()
        if row is None or row.status == ACTIVE or row.merged_into is None:
            break
        person_id = row.merged_into
    rows = conn.execute(sa.select(t_id.c.value, t_id.c.domain_oid, t_id.c.domain_namespace,
                                  t_id.c.domain_type, t_id.c.id_type)
                        .where(t_id.c.person_id == person_id, t_id.c.status == ACTIVE)
                        .order_by(t_id.c.id)).all()
    out = []
    for r in rows:
        namespace_only = not r.domain_type and r.domain_oid == r.domain_namespace
        out.append(Identifier(r.value, "" if namespace_only else r.domain_oid,
                              r.domain_namespace or "", r.domain_type or "", r.id_type or ""))
    return person_id, out


def _cx(i: Identifier) -> tuple:
    return (i.value, None, None, (i.namespace, i.oid, i.oid_type) if i.domain else None,
            i.id_type or None)


def build_a31(consumer: Consumer, identifiers: Sequence[Identifier], *, sender: str,
              now: dt.datetime, control_id: str | None = None):
    """The ADT^A31 of ITI TF-2a 3.10.4.1.2 (see the module docstring)."""
    msh = build_msh(sending_application=("HIE", sender, "ISO") if sender else "HIE",
                    receiving_application=consumer.application or None,
                    receiving_facility=consumer.facility or None,
                    message_type=("ADT", "A31", "ADT_A05"), control_id=control_id,
                    version="2.5", charset=consumer.charset, timestamp=now)
    stamp = msh.value(7)
    return build_message([
        msh,
        Segment.of("EVN", {1: "A31", 2: stamp}),
        Segment.of("PID", {3: Repeat([_cx(i) for i in identifiers]), 5: " "}),
        Segment.of("PV1", {2: "N"}),
    ])


def of_interest(conn: Connection, consumer: Consumer, person_id: int) -> list[Identifier]:
    """The person's identifiers now, in the consumer's domains of interest (ITI-10 / ITI-46)."""
    return [i for i in current_identifiers(conn, person_id)[1] if consumer.wants(i)]


def render(conn: Connection, consumer: Consumer, person_id: int, *, sender: str,
           now: dt.datetime):
    """The notification for ``consumer`` about ``person_id`` (None: nothing of interest)."""
    wanted = of_interest(conn, consumer, person_id)
    return build_a31(consumer, wanted, sender=sender, now=now) if wanted else None


# --------------------------------------------------------------------------------------------
# delivery
# --------------------------------------------------------------------------------------------

def consumer_for(node: Any, msg: OutboxMessage) -> Consumer:
    """The configured consumer a queued notification is addressed to."""
    for c in consumers(node.settings):
        if c.url == msg.destination and c.kind == msg.kind:
            return c
    # the consumer was removed from the configuration since: keep the notification's address
    return Consumer.parse(msg.destination) if msg.kind == ITI_10_KIND else Consumer(
        msg.destination, msg.kind)


def deliver_iti10(node: Any, msg: OutboxMessage) -> None:
    from hie.mllp import request
    started = time.perf_counter()
    consumer = consumer_for(node, msg)
    person_id = int(json.loads(msg.payload)["person"])
    now = dt.datetime.now(dt.timezone.utc)
    with node.db.read() as conn:
        a31 = render(conn, consumer, person_id, sender=node.settings.affinity_domain, now=now)
    if a31 is None:
        log.info("ITI-10 to %s: person %s holds no identifier of interest; nothing sent",
                 consumer.url, person_id)
        return
    try:
        answer = request(consumer.host, consumer.port, a31.encode(), timeout=TIMEOUT)
    except Exception as exc:  # refused, reset, timed out, or a framing error of the answer
        raise DeliveryError(f"ITI-10 to {consumer.host}:{consumer.port}: {exc}") from None
    try:
        ack = parse(answer)
        code = ack.get("MSA-1")
    except Exception:
        raise DeliveryError(f"ITI-10 to {consumer.url}: the answer is not an HL7 ACK") from None
    if code not in ("AA", "CA"):
        raise DeliveryError(f"ITI-10 to {consumer.url}: acknowledged {code or '(no MSA-1)'}: "
                            f"{ack.get('ERR-8') or ack.get('MSA-3') or ack.get('ERR-1')}")
    sent(Context(node, ITI_10, remote_addr=consumer.host), consumer, person_id,
         a31.control_id, started)


def sent(ctx: Context, consumer: Consumer, person_id: int, message_id: str,
         started: float) -> None:
    """A notification was accepted: one ATNA "Patient Record" event and one metrics observation
    (ITI TF-2a 3.10.5.1, ITI TF-2b 3.46.5.1)."""
    ctx.message_id = message_id
    ctx.extra["destination"] = consumer.url
    ctx.extra["person_id"] = person_id
    ctx.finish(time.perf_counter() - started)


def install(node: Any) -> None:
    from pix_pdq import iti46
    node.outbox.register(ITI_10_KIND, functools.partial(deliver_iti10, node))
    node.outbox.register(ITI_46_KIND, functools.partial(iti46.deliver, node))


__all__ = ["Consumer", "ITI_10_KIND", "ITI_46_KIND", "build_a31", "changed", "consumer_for",
           "consumers", "current_identifiers", "deliver_iti10", "install", "of_interest",
           "render", "sent"]

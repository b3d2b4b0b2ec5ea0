"""Forwarding rules: instances the node receives are sent on by C-STORE (DICOM PS3.4 Annex B, the
node as Storage SCU) to configured destinations — the municipal front-end machine of
requirement 002, a long-term archive — through the node's durable outbox (DESIGN.md
principle 5), so nothing is lost while a destination is down.

``HIE_DICOM_FORWARD`` lists rules separated by commas; a rule is a destination AE title (a
peer of ``HIE_DICOM_PEERS``) and optional conditions after ``?``, joined by ``&``, each a key
and ``|``-separated values::

    HIE_DICOM_FORWARD=MUNICIPAL?modality=CT|MR|DX&source=CT_XH,ARCHIVE

- ``source``: the calling AE title that sent the instance;
- ``modality``: the series' Modality;
- ``domain``: the patient's identity domain (:mod:`dicom_qr.patients`: the OID, or the
  IssuerOfPatientID as sent).

An instance matching a rule is queued for its destination in the unit of work that indexes
it (never for the AE that sent it: no loops).  The deliverer reads what the index holds when
it runs and sends the stored bytes as they are (the file, not a re-encoding) when the
destination accepts the transfer syntax they were received in, else the decoded data set in
an uncompressed syntax the destination took.  Instances to one destination that follow one
another in the queue share an association (:class:`Sessions`), released once it has been
idle for :data:`LINGER` seconds.  A success or warning status (0x0000, 0xB000,
0xB006, 0xB007) delivers; anything else is retried with the outbox's back-off.  An instance
no longer held is a permanent failure.  Each sending is audited (PS3.15 A.5 110106 Export).
"""
from __future__ import annotations

import functools
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pydicom
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dicom_qr.association import sending_contexts
from dicom_qr.tables import dicom_instance as I, dicom_patient as P
from dicom_qr.tables import dicom_series as SE, dicom_study as ST
from hie.blobs import BlobNotFound
from hie.context import SERIOUS_FAILURE, Context
from hie.outbox import DeliveryError, Message
from hie.settings import Peer
from hie.transactions import DICOM_FORWARD

log = logging.getLogger("dicom_qr.forward")

KIND = "dicom-forward"
DELIVERED = {0x0000, 0xB000, 0xB006, 0xB007}
LINGER = 1.0      # seconds an association to a destination stays open after its last C-STORE


@dataclass(frozen=True)
class Rule:
    destination: str
    conditions: dict[str, frozenset[str]] = field(default_factory=dict)

    def matches(self, facts: dict[str, set[str]]) -> bool:
        return all(facts.get(k, set()) & wanted for k, wanted in self.conditions.items())


KEYS = ("source", "modality", "domain")


@functools.lru_cache(maxsize=8)
def parse_rules(setting: str) -> tuple[Rule, ...]:
    """The rules of ``HIE_DICOM_FORWARD``; ValueError names what is wrong (the listener checks
    them when it starts)."""
    rules = []
    for text in (setting or "").split(","):
        text = text.strip()
        if not text:
            continue
        dest, _, conds = text.partition("?")
        conditions: dict[str, frozenset[str]] = {}
        for cond in filter(None, conds.split("&")):
            key, sep, values = cond.partition("=")
            if not sep or key.strip() not in KEYS:
                raise ValueError(f"forwarding rule {text!r}: {cond!r} is not one of "
                                 f"{'|'.join(KEYS)}=value")
            conditions[key.strip()] = frozenset(v.strip() for v in values.split("|")
                                                if v.strip())
        rules.append(Rule(dest.strip(), conditions))
    return tuple(rules)


def check(settings: Any) -> None:
    """ValueError when a rule cannot be read or names a destination that is not a peer of
    ``HIE_DICOM_PEERS`` (the listener checks this when it starts)."""
    peers = {p.ae_title for p in settings.dicom_peers}
    for rule in parse_rules(settings.dicom_forward):
        if rule.destination not in peers:
            raise ValueError(f"forwarding rule to {rule.destination}: not a peer of "
                             "HIE_DICOM_PEERS")


def destinations(settings: Any, *, source: str, modality: str, domains: set[str]) -> list[Peer]:
    """The peers an instance with these facts is forwarded to (not its sender)."""
    if not settings.dicom_forward:
        return []
    peers = {p.ae_title: p for p in settings.dicom_peers}
    facts = {"source": {source}, "modality": {modality}, "domain": domains - {""}}
    out = []
    for rule in parse_rules(settings.dicom_forward):
        peer = peers.get(rule.destination)          # every one is, once check() passed
        if peer is not None and peer.ae_title != source and peer not in out and \
                rule.matches(facts):
            out.append(peer)
    return out


def enqueue(outbox: Any, conn: Connection, peers: list[Peer], sop_uid: str) -> None:
    """Queue ``sop_uid`` for each of ``peers`` in the caller's unit of work."""
    for peer in peers:
        outbox.enqueue(conn, KIND, str(peer),
                       json.dumps({"sop_uid": sop_uid}).encode())


def _held(conn: Connection, sop_uid: str):
    return conn.execute(
        sa.select(I.c.sop_class, I.c.transfer_syntax, I.c.blob_key, P.c.patient_id, P.c.issuer)
        .select_from(I.join(SE, I.c.series_pk == SE.c.id).join(ST, SE.c.study_pk == ST.c.id)
                     .join(P, ST.c.patient_pk == P.c.id))
        .where(I.c.sop_uid == sop_uid)).first()


def send(node: Any, peer: Peer, sop_uid: str, sessions: "Sessions",
         ctx: Context | None = None) -> int:
    """C-STORE one held instance to ``peer`` on the association ``sessions`` keep open to it
    (or one they open); the status."""
    with node.db.read() as conn:
        row = _held(conn, sop_uid)
    if row is None:
        raise DeliveryError(f"{sop_uid} is no longer held", permanent=True)
    if ctx is not None:
        ctx.note(f"{row.patient_id}^^^{row.issuer}" if row.issuer else row.patient_id)
    try:
        path = node.blobs.path(row.blob_key)
    except BlobNotFound:
        raise DeliveryError(f"the bytes of {sop_uid} are lost", permanent=True) from None
    return sessions.store(peer, row.sop_class, row.transfer_syntax, path)


class Sessions:
    """Associations kept open to forwarding destinations while deliveries to them follow one
    another: the instances of a study forwarded together travel on one association (PS3.4
    B.4: an SCP attaches no meaning to which association carries an instance), not one each.
    An association is proposed for one (SOP Class, transfer syntax) pair
    (:func:`dicom_qr.association.sending_contexts`); an instance of another pair closes it and
    opens the next.  The outbox tells :meth:`idle` whenever nothing more is due: an
    association unused for :data:`LINGER` seconds is released then (a destination never waits
    long on an idle one), and all of them when the outbox stops.  One sender at a time."""

    def __init__(self, ae_title: str):
        self.ae_title = ae_title
        self._lock = threading.RLock()
        self._open: dict[Peer, tuple[tuple[str, str], Any]] = {}
        self._used: dict[Peer, float] = {}

    def store(self, peer: Peer, sop_class: str, syntax: str, path: Any) -> int:
        """C-STORE the file at ``path`` (an instance of ``sop_class`` kept in ``syntax``) on
        the association kept open to ``peer`` — a new one if there is none, if it was for
        another pair, or if the destination has closed it meanwhile."""
        with self._lock:
            assoc = self._association(peer, (sop_class, syntax))
            try:
                taken = {str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
                         if cx.abstract_syntax == sop_class}
                if not taken:
                    raise DeliveryError(f"{peer.ae_title} takes no {sop_class}")
                # the file as stored when the syntax it came in is taken; else pynetdicom
                # encodes the decoded data set in an uncompressed syntax the peer took
                what = path if syntax in taken else pydicom.dcmread(path)
                status = assoc.send_c_store(what)
            except BaseException:
                self._drop(peer, abort=True)
                raise
            self._used[peer] = time.monotonic()
            if not status or not assoc.is_established:   # no answer, or the association ended
                self._drop(peer, abort=True)
            return int(getattr(status, "Status", -1)) if status else -1

    def _association(self, peer: Peer, pair: tuple[str, str]) -> Any:
        from dicom_qr.association import NodeAE

        held = self._open.get(peer)
        if held is not None:
            if held[0] == pair and held[1].is_established:
                return held[1]
            self._drop(peer, abort=False)
        ae = NodeAE(ae_title=self.ae_title)
        ae.requested_contexts = sending_contexts([pair])
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
        if not assoc.is_established:
            raise DeliveryError(f"no association with {peer}")
        self._open[peer] = (pair, assoc)
        return assoc

    def _drop(self, peer: Peer, abort: bool) -> None:
        held = self._open.pop(peer, None)
        if held is not None:
            _end(held[1], abort)

    def idle(self, stopping: bool = False) -> None:
        """Release the associations unused for :data:`LINGER` seconds (all, ``stopping``)."""
        now = time.monotonic()
        with self._lock:
            done = [peer for peer in self._open
                    if stopping or now - self._used.get(peer, 0.0) >= LINGER]
            held = [self._open.pop(peer) for peer in done]
        for _pair, assoc in held:
            _end(assoc, abort=False)


def _end(assoc: Any, abort: bool) -> None:
    try:
        if not assoc.is_established:
            return
        assoc.abort() if abort else assoc.release()
    except Exception:  # noqa: BLE001 - a peer gone already: nothing left to end
        log.debug("ending an association failed", exc_info=True)


def deliver(node: Any, sessions: Sessions, msg: Message) -> None:
    """The outbox deliverer of :data:`KIND`, audited as an export (110106)."""
    job = json.loads(msg.payload)
    peer = Peer.parse(msg.destination)
    ctx, started = Context(node, DICOM_FORWARD, principal=node.settings.dicom_ae_title), \
        time.perf_counter()
    ctx.extra["destination"] = msg.destination
    ctx.note(None, [job["sop_uid"]])
    try:
        code = send(node, peer, job["sop_uid"], sessions, ctx)
        if code not in DELIVERED:
            raise DeliveryError(f"C-STORE to {msg.destination}: "
                                + (f"status 0x{code:04X}" if code >= 0 else "no answer"))
    except Exception as exc:
        ctx.fail(SERIOUS_FAILURE, str(exc)[:200])
        raise
    finally:
        ctx.finish(time.perf_counter() - started)


def install(node: Any) -> None:
    sessions = Sessions(node.settings.dicom_ae_title)
    node.outbox.register(KIND, functools.partial(deliver, node, sessions), idle=sessions.idle)


__all__ = ["KIND", "Rule", "parse_rules", "check", "destinations", "enqueue", "send", "Sessions",
           "deliver", "install"]

"""The durable outbox (DESIGN.md principle 5): anything the node sends to another system later —
forwarding a registration to an upstream registry, pushes to a municipal platform, DICOM
forwarding, notifications — is written as an ``outbox`` row inside the same database transaction
as the change that caused it, then delivered by a worker with retry and exponential back-off.

Nothing is lost when a peer is down: a row stays ``pending`` until a deliverer succeeds, and
becomes ``dead`` (kept, visible to operators, re-queueable) after ``max_attempts`` failures.
Claiming a row leases it (``next_attempt_at`` moved forward) so two workers — two node processes
on one PostgreSQL — never deliver the same row at once; PostgreSQL uses ``FOR UPDATE SKIP
LOCKED``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hie.db import Database
from hie.tables import outbox as outbox_table

log = logging.getLogger("hie.outbox")

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
LEASE = dt.timedelta(minutes=5)


class DeliveryError(Exception):
    """A deliverer's failure.  ``permanent`` failures go straight to ``dead``."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Message:
    id: int
    kind: str
    destination: str
    payload: bytes
    headers: dict
    attempts: int


Deliverer = Callable[[Message], None]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def backoff(attempts: int, base: float = 2.0, cap: float = 3600.0) -> float:
    """Seconds to wait after the ``attempts``-th failure: exponential with full jitter."""
    return random.uniform(0.5, 1.0) * min(cap, base * (2 ** max(0, attempts - 1)))


class Outbox:
    def __init__(self, db: Database, max_attempts: int = 12, poll_interval: float = 1.0):
        self.db = db
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self.deliverers: dict[str, Deliverer] = {}
        self._idle: dict[str, Callable[[bool], None]] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- producing -------------------------------------------------------------------------
    def register(self, kind: str, deliverer: Deliverer,
                 idle: Callable[[bool], None] | None = None) -> None:
        """``deliverer`` delivers the messages of ``kind``; ``idle``, if given, is called
        whenever nothing more is due (after a batch that did not fill its limit, and on each
        poll of an empty queue) with False, and with True when the worker stops: the
        deliverer then closes what it kept open between messages (an association to a
        destination) — what has been idle a while, or everything when stopping."""
        self.deliverers[kind] = deliverer
        if idle is not None:
            self._idle[kind] = idle

    def enqueue(self, conn: Connection, kind: str, destination: str, payload: bytes,
                headers: dict | None = None) -> None:
        """Add a message inside the caller's unit of work (so it exists iff the change does)."""
        now = _now()
        conn.execute(outbox_table.insert().values(
            kind=kind, destination=destination, payload=payload,
            headers=json.dumps(headers or {}, ensure_ascii=False), status=PENDING, attempts=0,
            next_attempt_at=now, created_at=now))
        self._wake.set()

    # -- delivering ------------------------------------------------------------------------
    def _claim(self, limit: int) -> list[Message]:
        now = _now()
        t = outbox_table
        with self.db.begin() as conn:
            q = (sa.select(t.c.id, t.c.kind, t.c.destination, t.c.payload, t.c.headers,
                           t.c.attempts)
                 .where(t.c.status == PENDING, t.c.next_attempt_at <= now)
                 .order_by(t.c.next_attempt_at, t.c.id).limit(limit))
            if self.db.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows = conn.execute(q).all()
            if rows:
                conn.execute(t.update().where(t.c.id.in_([r.id for r in rows]))
                             .values(next_attempt_at=now + LEASE))
        return [Message(r.id, r.kind, r.destination, bytes(r.payload),
                        json.loads(r.headers or "{}"), r.attempts) for r in rows]

    def _settle(self, msg: Message, error: Exception | None) -> None:
        t = outbox_table
        now = _now()
        if error is None:
            values = dict(status=DELIVERED, delivered_at=now, attempts=msg.attempts + 1,
                          last_error=None)
        else:
            attempts = msg.attempts + 1
            dead = attempts >= self.max_attempts or getattr(error, "permanent", False)
            values = dict(status=DEAD if dead else PENDING, attempts=attempts,
                          last_error=str(error)[:2000],
                          next_attempt_at=now + dt.timedelta(seconds=backoff(attempts)))
        with self.db.begin() as conn:
            conn.execute(t.update().where(t.c.id == msg.id).values(**values))

    def run_once(self, limit: int = 50) -> int:
        """Deliver what is due now; returns how many messages were attempted."""
        msgs = self._claim(limit)
        for msg in msgs:
            deliverer = self.deliverers.get(msg.kind)
            error: Exception | None
            if deliverer is None:
                error = DeliveryError(f"no deliverer for kind {msg.kind!r}")
            else:
                try:
                    deliverer(msg)
                    error = None
                except Exception as exc:  # every failure is retried or parked, never raised
                    error = exc
                    log.warning("outbox delivery %s to %s failed (attempt %d): %s", msg.kind,
                                msg.destination, msg.attempts + 1, exc)
            self._settle(msg, error)
        if len(msgs) < limit:
            self.idle()
        return len(msgs)

    def idle(self, stopping: bool = False) -> None:
        """Tell every deliverer that nothing more is due now (or that the worker stops)."""
        for kind, hook in list(self._idle.items()):
            try:
                hook(stopping)
            except Exception:  # noqa: BLE001 - closing what a deliverer kept is best effort
                log.exception("outbox deliverer %s could not go idle", kind)

    def retry_dead(self, ids: list[int] | None = None) -> int:
        """Put dead messages back in the queue (operator action)."""
        t = outbox_table
        q = t.update().where(t.c.status == DEAD)
        if ids:
            q = q.where(t.c.id.in_(ids))
        with self.db.begin() as conn:
            n = conn.execute(q.values(status=PENDING, attempts=0, next_attempt_at=_now())).rowcount
        self._wake.set()
        return n

    def depth(self) -> int:
        t = outbox_table
        with self.db.read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t)
                                .where(t.c.status == PENDING)).scalar_one()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="hie-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("outbox worker iteration failed")
                busy = 0
            if not busy:
                self._wake.wait(self.poll_interval)
                self._wake.clear()
        self.idle(stopping=True)

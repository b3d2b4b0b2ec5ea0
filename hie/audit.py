"""The one audit interface (DESIGN.md principle 6): every transaction, successful or not, is
recorded as one event — who (remote address, principal), what (transaction, ATNA event id,
objects, patient), when, and the outcome (ATNA EventOutcomeIndicator, DICOM PS3.15 A.5.3).

Sinks are notification points: a failing sink is logged and never breaks the transaction.  The
database sink feeds statistics and the UI; later issues add ATNA syslog and the evidence log by
appending to :attr:`Audit.sinks`.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from hie.db import Database
from hie.tables import audit_event

log = logging.getLogger("hie.audit")


@dataclass(frozen=True)
class AuditEvent:
    time: dt.datetime
    transaction: str
    event: str
    actor: str
    remote_addr: str
    principal: str | None
    patient_id: str | None
    object_ids: tuple[str, ...]
    outcome: int
    message_id: str | None = None
    duration_ms: float | None = None
    detail: str = ""

    @classmethod
    def from_context(cls, ctx, duration_ms: float | None = None) -> "AuditEvent":
        t = ctx.transaction
        return cls(time=dt.datetime.now(dt.timezone.utc), transaction=t.id, event=t.audit_event,
                   actor=t.actor, remote_addr=ctx.remote_addr, principal=ctx.principal,
                   patient_id=",".join(ctx.patient_ids) or None,
                   object_ids=tuple(ctx.object_ids[:1000]), outcome=ctx.outcome,
                   message_id=ctx.message_id, duration_ms=duration_ms, detail=ctx.detail[:4000])


_COLUMNS = ("time", "transaction", "event", "actor", "remote_addr", "principal", "patient_id",
            "object_ids", "outcome", "message_id", "duration_ms", "detail")
_COPY = f"COPY audit_event ({', '.join(_COLUMNS)}) FROM STDIN"


class DatabaseSink:
    """Writes audit events to the ``audit_event`` table in batches.

    ``__call__`` only queues the event (the transaction is not slowed by an extra commit); a
    writer thread inserts what has queued, at least every ``interval`` seconds, in one statement
    (``COPY`` on PostgreSQL).
    ``flush()`` writes everything queued so far and is called on shutdown, so a clean stop loses
    nothing.  Without a running writer (``start()`` not called) every event is written at once.
    """

    def __init__(self, db: Database, interval: float = 0.2, max_batch: int = 2000):
        self.db = db
        self.interval = interval
        self.max_batch = max_batch
        self._queue: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _row(event: AuditEvent) -> dict:
        return dict(time=event.time, transaction=event.transaction, event=event.event,
                    actor=event.actor, remote_addr=event.remote_addr, principal=event.principal,
                    patient_id=(event.patient_id or "")[:256] or None,
                    object_ids=json.dumps(list(event.object_ids), ensure_ascii=False),
                    outcome=event.outcome, message_id=event.message_id,
                    duration_ms=event.duration_ms, detail=event.detail or None)

    def __call__(self, event: AuditEvent) -> None:
        row = self._row(event)
        if self._thread is None:
            self._write([row])
            return
        with self._lock:
            self._queue.append(row)
            full = len(self._queue) >= self.max_batch
        if full:
            self._wake.set()

    def _write(self, rows: list[dict]) -> None:
        with self.db.begin() as conn:
            if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
                # COPY costs a fraction of an INSERT per row, in the same transaction
                cur = conn.connection.driver_connection.cursor()
                with cur.copy(_COPY) as copy:
                    for row in rows:
                        copy.write_row(tuple(row[c] for c in _COLUMNS))
            else:
                conn.execute(audit_event.insert(), rows)

    def flush(self) -> None:
        while True:
            with self._lock:
                rows, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            if not rows:
                return
            try:
                self._write(rows)
            except Exception:
                log.exception("audit: could not write %d event(s); kept for the next try",
                              len(rows))
                with self._lock:
                    self._queue[:0] = rows
                return

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="hie-audit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(10)
            self._thread = None
        self.flush()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()


@dataclass
class Audit:
    db: Database
    sinks: list[Callable[[AuditEvent], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sinks:
            self.sinks.append(DatabaseSink(self.db))

    def record(self, ctx, duration_ms: float | None = None) -> AuditEvent:
        event = AuditEvent.from_context(ctx, duration_ms)
        self.emit(event)
        return event

    def start(self) -> None:
        for sink in self.sinks:
            if hasattr(sink, "start"):
                sink.start()

    def stop(self) -> None:
        """Stop background writers and flush what they hold (called on shutdown)."""
        for sink in self.sinks:
            if hasattr(sink, "stop"):
                try:
                    sink.stop()
                except Exception:
                    log.exception("audit sink %r failed to stop", sink)

    def emit(self, event: AuditEvent) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a notification point never breaks the transaction
                log.exception("audit sink %r failed for %s", sink, event.transaction)

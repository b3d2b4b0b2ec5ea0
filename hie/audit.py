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


class DatabaseSink:
    def __init__(self, db: Database):
        self.db = db

    def __call__(self, event: AuditEvent) -> None:
        with self.db.begin() as conn:
            conn.execute(audit_event.insert().values(
                time=event.time, transaction=event.transaction, event=event.event,
                actor=event.actor, remote_addr=event.remote_addr, principal=event.principal,
                patient_id=(event.patient_id or "")[:256] or None,
                object_ids=json.dumps(list(event.object_ids), ensure_ascii=False),
                outcome=event.outcome, message_id=event.message_id,
                duration_ms=event.duration_ms, detail=event.detail or None))


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

    def emit(self, event: AuditEvent) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a notification point never breaks the transaction
                log.exception("audit sink %r failed for %s", sink, event.transaction)

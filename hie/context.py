"""The context a transaction handler runs in (DESIGN.md principle 2): the node's services
(settings, database, blob store, outbox), who is asking and from where, and what the handler
touched, which the transport records as the transaction's one audit event (principle 6).

Outcomes are ATNA EventOutcomeIndicator values (DICOM PS3.15 A.5.3 / RFC 3881): 0 success,
4 minor failure (e.g. PartialSuccess), 8 serious failure (request refused), 12 major failure.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from hie.transactions import Transaction

if TYPE_CHECKING:  # pragma: no cover
    from hie.node import Node

log = logging.getLogger("hie.context")

SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12


@dataclass
class Context:
    node: "Node"
    transaction: Transaction
    remote_addr: str = ""
    principal: str | None = None
    message_id: str | None = None
    patient_ids: list[str] = field(default_factory=list)
    object_ids: list[str] = field(default_factory=list)
    outcome: int = SUCCESS
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    # shortcuts to the node's services
    @property
    def settings(self):
        return self.node.settings

    @property
    def db(self):
        return self.node.db

    @property
    def blobs(self):
        return self.node.blobs

    @property
    def outbox(self):
        return self.node.outbox

    @staticmethod
    def now() -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def note(self, patient_id: str | None = None, object_ids: Iterable[str] = ()) -> None:
        """Tell the audit event which patient and objects this transaction concerned."""
        if patient_id and patient_id not in self.patient_ids:
            self.patient_ids.append(patient_id)
        self.object_ids.extend(object_ids)

    def finish(self, seconds: float) -> None:
        """The end of every transaction, whatever its transport: one audit event (DESIGN.md
        principle 6) and one metrics observation.  Both only queue; a failure of either is
        logged, never raised into the response."""
        try:
            self.node.audit.record(self, duration_ms=seconds * 1000.0)
        except Exception:  # noqa: BLE001 - auditing never breaks an answer
            log.exception("audit of %s failed", self.transaction.id)
        try:
            self.node.metrics.observe(self.transaction.id, seconds, self.outcome)
        except Exception:  # noqa: BLE001
            log.exception("metrics of %s failed", self.transaction.id)

    def fail(self, outcome: int = SERIOUS_FAILURE, detail: str = "") -> None:
        self.outcome = max(self.outcome, outcome)
        if detail:
            self.detail = detail

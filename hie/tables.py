"""Kernel tables: the audit trail (one row per transaction, DESIGN.md principle 6; fields after
ATNA / DICOM PS3.15 A.5 and requirement 000's access log) and the durable outbox (principle 5)."""
from __future__ import annotations

import sqlalchemy as sa

from hie.db import metadata

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")

audit_event = sa.Table(
    "audit_event", metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("transaction", sa.String(16), nullable=False),   # ITI-18
    sa.Column("event", sa.String(64)),                         # 110112^DCM^Query
    sa.Column("actor", sa.String(64)),                         # Document Registry
    sa.Column("remote_addr", sa.String(64)),
    sa.Column("principal", sa.String(256)),
    sa.Column("patient_id", sa.String(256), index=True),
    sa.Column("object_ids", sa.Text),                          # JSON list
    sa.Column("outcome", sa.Integer, nullable=False),          # 0 / 4 / 8 / 12
    sa.Column("message_id", sa.String(256)),
    sa.Column("duration_ms", sa.Float),
    sa.Column("detail", sa.Text),
    sa.Index("ix_audit_event_transaction_time", "transaction", "time"),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(64), nullable=False),          # which deliverer sends it
    sa.Column("destination", sa.String(512), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("headers", sa.Text),                             # JSON object
    sa.Column("status", sa.String(16), nullable=False),        # pending | delivered | dead
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),
)

"""The audit trail on SQLite and PostgreSQL: one row per transaction with who/what/when/outcome,
batched writing that loses nothing on a clean stop, and a failing sink never breaks a
transaction."""
import json

import sqlalchemy as sa

from hie.audit import Audit, DatabaseSink
from hie.context import MINOR_FAILURE, Context
from hie.metrics import Metrics
from hie.tables import audit_event
from hie.transactions import ITI_18, ITI_43


class _Node:
    def __init__(self, db):
        self.db = db


def _events(db):
    with db.read() as c:
        return c.execute(sa.select(audit_event).order_by(audit_event.c.id)).all()


def test_event_fields(database):
    audit = Audit(database)
    ctx = Context(_Node(database), ITI_43, remote_addr="127.0.0.9", principal="档案室/王芳",
                  message_id="urn:uuid:1")
    ctx.note("340524198001010013^^^&1.2.3&ISO", ["1.2.3.4.5", "1.2.3.4.6"])
    ctx.fail(MINOR_FAILURE, "1 of 2 documents missing")
    audit.record(ctx, duration_ms=3.5)
    (row,) = _events(database)
    assert row.transaction == "ITI-43" and row.event == "110106^DCM^Export"
    assert row.actor == "Document Repository" and row.remote_addr == "127.0.0.9"
    assert row.principal == "档案室/王芳" and row.outcome == 4 and row.duration_ms == 3.5
    assert row.patient_id == "340524198001010013^^^&1.2.3&ISO"
    assert json.loads(row.object_ids) == ["1.2.3.4.5", "1.2.3.4.6"]
    assert row.detail == "1 of 2 documents missing"


def test_batched_writer_flushes_on_stop(database):
    audit = Audit(database)
    audit.start()
    for i in range(300):
        audit.record(Context(_Node(database), ITI_18, remote_addr=f"127.0.0.{i % 200 + 1}"))
    audit.stop()
    assert len(_events(database)) == 300


def test_failing_sink_does_not_break(database):
    def broken(event):
        raise RuntimeError("syslog down")

    audit = Audit(database, sinks=[broken, DatabaseSink(database)])
    audit.record(Context(_Node(database), ITI_18))
    assert len(_events(database)) == 1


def test_metrics_render():
    m = Metrics()
    m.observe("ITI-18", 0.003)
    m.observe("ITI-18", 0.2, outcome=8)
    m.gauge("hie_outbox_pending", "pending", lambda: 7)
    text = m.render()
    assert 'hie_requests_total{transaction="ITI-18",outcome="0"} 1' in text
    assert 'hie_requests_total{transaction="ITI-18",outcome="8"} 1' in text
    assert 'hie_request_duration_seconds_bucket{transaction="ITI-18",le="0.005"} 1' in text
    assert 'hie_request_duration_seconds_bucket{transaction="ITI-18",le="+Inf"} 2' in text
    assert "hie_outbox_pending 7.0" in text

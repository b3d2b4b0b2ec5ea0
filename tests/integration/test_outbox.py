"""The durable outbox on SQLite and PostgreSQL: delivery, retry with back-off, dead letters,
enqueue inside the caller's unit of work (rolled back with it), and the background worker."""
import datetime as dt
import threading
import time

import sqlalchemy as sa

from hie.outbox import DEAD, DELIVERED, PENDING, DeliveryError, Outbox, backoff
from hie.tables import outbox as t


def _rows(db):
    with db.read() as c:
        return c.execute(sa.select(t).order_by(t.c.id)).all()


def test_delivered_once(database):
    ob = Outbox(database)
    seen = []
    ob.register("echo", lambda m: seen.append((m.destination, m.payload, m.headers)))
    with database.begin() as c:
        ob.enqueue(c, "echo", "http://127.0.0.1:1/x", "出院小结".encode(), {"a": 1})
    assert ob.run_once() == 1
    assert seen == [("http://127.0.0.1:1/x", "出院小结".encode(), {"a": 1})]
    assert ob.run_once() == 0
    assert _rows(database)[0].status == DELIVERED


def test_rolled_back_unit_of_work_leaves_no_message(database):
    ob = Outbox(database)
    try:
        with database.begin() as c:
            ob.enqueue(c, "echo", "d", b"x")
            raise RuntimeError("submission failed")
    except RuntimeError:
        pass
    assert _rows(database) == []


def test_retry_backoff_then_dead_then_requeue(database):
    ob = Outbox(database, max_attempts=3)
    calls = []

    def flaky(m):
        calls.append(m.attempts)
        raise ConnectionError("peer down")

    ob.register("flaky", flaky)
    with database.begin() as c:
        ob.enqueue(c, "flaky", "d", b"x")
    for _ in range(3):
        assert ob.run_once() == 1
        row = _rows(database)[0]
        if row.status == PENDING:
            assert row.last_error == "peer down"
            # not due again until the back-off has passed
            assert ob.run_once() == 0
            with database.begin() as c:
                c.execute(t.update().values(next_attempt_at=dt.datetime.now(dt.timezone.utc)))
    row = _rows(database)[0]
    assert row.status == DEAD and row.attempts == 3 and calls == [0, 1, 2]
    assert ob.retry_dead() == 1
    ob.register("flaky", lambda m: None)
    assert ob.run_once() == 1 and _rows(database)[0].status == DELIVERED


def test_permanent_failure_and_unknown_kind_are_dead(database):
    ob = Outbox(database)

    def refuse(m):
        raise DeliveryError("rejected by peer", permanent=True)

    ob.register("refuse", refuse)
    with database.begin() as c:
        ob.enqueue(c, "refuse", "d", b"x")
        ob.enqueue(c, "nobody", "d", b"y")
    ob.run_once()
    assert [r.status for r in _rows(database)] == [DEAD, PENDING]
    assert "no deliverer" in _rows(database)[1].last_error


def test_background_worker_delivers(database):
    ob = Outbox(database, poll_interval=0.05)
    done = threading.Event()
    ob.register("echo", lambda m: done.set())
    ob.start()
    try:
        with database.begin() as c:
            ob.enqueue(c, "echo", "d", b"x")
        assert done.wait(10)
    finally:
        ob.stop()
    deadline = time.time() + 5
    while _rows(database)[0].status != DELIVERED and time.time() < deadline:
        time.sleep(0.05)
    assert _rows(database)[0].status == DELIVERED
    assert ob.depth() == 0


def test_backoff_grows_and_is_capped():
    assert backoff(1) <= 2.0 and backoff(5) >= 8.0 and backoff(40) <= 3600.0

"""Forwarding to an upstream registry through the durable outbox, between two real nodes: a
registration accepted by the hospital node reaches the regional node, also when the regional node
was down at first (retry with back-off), and it carries the same entryUUIDs."""
import socket
import time

import httpx
import sqlalchemy as sa

from hie.settings import load_settings
from hie.soap import build_envelope
from hie.tables import outbox
from hie.transactions import ITI_42
from hie.xmlsafe import to_bytes
from tests.live import live_node
from tests.xdsdata import AFFINITY_DOMAIN, register_patient, submission
from xds_registry.tables import document_entry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(tmp_path, name, **kw):
    return load_settings(env={}, data_dir=tmp_path / name, http_port=kw.pop("http_port", 0),
                         mllp_port=0, dicom_port=0, affinity_domain=AFFINITY_DOMAIN, **kw)


def _register(base: str, sub) -> httpx.Response:
    env = build_envelope(ITI_42.action, sub.build(), message_id="urn:uuid:" + "1" * 32)
    return httpx.post(base + "/xds/registry", content=to_bytes(env), timeout=30, headers={
        "Content-Type": f'application/soap+xml; charset=UTF-8; action="{ITI_42.action}"'})


def _wait(predicate, seconds=30.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _entry_ids(db):
    with db.read() as c:
        return {r.id for r in c.execute(sa.select(document_entry.c.id))}


def test_forwarded_to_upstream_even_after_it_was_down(tmp_path):
    port = _free_port()
    upstream_url = f"http://127.0.0.1:{port}/xds/registry"
    with live_node(_settings(tmp_path, "hospital", forward_registry_url=upstream_url)) as hosp:
        register_patient(hosp.node.db)
        sub = submission(docs=2, symbolic=True)
        r = _register(hosp.http, sub)
        assert r.status_code == 200 and b"ResponseStatusType:Success" in r.content
        local_ids = _entry_ids(hosp.node.db)
        assert len(local_ids) == 2
        # the regional node is not up yet: the message waits, with the error recorded
        assert _wait(lambda: _outbox(hosp.node.db)[0].attempts >= 1)
        row = _outbox(hosp.node.db)[0]
        assert row.status == "pending" and "not available" in row.last_error
        with live_node(_settings(tmp_path, "region", http_port=port)) as region:
            register_patient(region.node.db)
            with hosp.node.db.begin() as c:  # do not wait for the back-off in a test
                c.execute(outbox.update().values(next_attempt_at=sa.func.now()))
            assert _wait(lambda: _outbox(hosp.node.db)[0].status == "delivered")
            assert _entry_ids(region.node.db) == local_ids


def test_unknown_patient_upstream_is_retried_not_lost(tmp_path):
    with live_node(_settings(tmp_path, "region")) as region:
        url = region.http + "/xds/registry"
        with live_node(_settings(tmp_path, "hospital", forward_registry_url=url,
                                 outbox_max_attempts=2)) as hosp:
            register_patient(hosp.node.db)
            assert b"Success" in _register(hosp.http, submission(docs=1)).content
            assert _wait(lambda: _outbox(hosp.node.db)[0].attempts >= 1)
            row = _outbox(hosp.node.db)[0]
            assert "XDSUnknownPatientId" in row.last_error
            assert _entry_ids(region.node.db) == set()


def _outbox(db):
    with db.read() as c:
        return c.execute(sa.select(outbox).order_by(outbox.c.id)).all()

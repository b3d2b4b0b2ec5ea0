"""Forwarding rules (dicom_qr.forward), on SQLite and PostgreSQL, with DCMTK on both sides: storescu
sends to the node, a storescp plays the municipal front-end machine.  What a rule selects
arrives there byte for byte (the data set as first received), what it does not select stays,
nothing goes back to its sender, a destination that is down gets it once it is up (the outbox),
the instances of a series forwarded together share an association released once idle, and each
sending is audited."""
from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.uid import generate_uid

from dicom_qr import forward
from dicom_qr.scp import DicomListener
from hie.node import Node
from hie.settings import Peer
from hie.tables import audit_event as t_audit, outbox as t_outbox
from tests.dicom_support import DCMTK, free_port, instance, run
from tests.live import live_with


class StoreSCP:
    """DCMTK's storescp as the destination, writing what it receives to ``folder``."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        folder.mkdir(exist_ok=True)
        self.log = folder.parent / f"{folder.name}.log"      # -v: one line per association event
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(DCMTK / "storescp"), "-v", "-aet", "MUNICIPAL",
                                          "-od", str(folder), str(port)],
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 20
        while run("echoscu", "-aec", "MUNICIPAL", "127.0.0.1", str(port)).returncode != 0:
            assert time.time() < deadline, "storescp did not start"
            time.sleep(0.1)

    def files(self, n: int, seconds: float = 30) -> list[Path]:
        deadline = time.time() + seconds
        while len(list(self.folder.iterdir())) < n and time.time() < deadline:
            time.sleep(0.1)
        return sorted(self.folder.iterdir())

    def events(self, what: str) -> int:
        """How many times storescp logged ``what`` ("Association Received", "… Release")."""
        return self.log.read_text(errors="replace").count(what)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def live(node, port):
    peers = (Peer("MUNICIPAL", "127.0.0.1", port),)
    with live_with(node, dicom_peers=peers, dicom_forward="MUNICIPAL?modality=CT|DX") as ln:
        yield ln


def send(live, *paths: Path, aet: str = "STORESCU") -> None:
    host, p = live.node.listeners["dicom"]
    done = run("storescu", "-aet", aet, "-aec", live.settings.dicom_ae_title, host, str(p),
               *map(str, paths))
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def two(tmp_path) -> tuple[Path, Path]:
    study = generate_uid()
    ct = instance(tmp_path, "ct.dcm", patient_id="P500", patient_name="黄^河",
                  charset="ISO_IR 192", study=study, series=generate_uid(), modality="CT")
    mr = instance(tmp_path, "mr.dcm", patient_id="P500", patient_name="黄^河",
                  charset="ISO_IR 192", study=study, series=generate_uid(), modality="MR")
    return ct, mr


def _data_set(path: Path) -> bytes:
    """The bytes of a PS3.10 file after its File Meta Information."""
    ds = pydicom.dcmread(path, stop_before_pixels=False)
    raw = path.read_bytes()
    end = 132 + 12 + int(ds.file_meta[0x00020000].value)
    return raw[end:]


def test_what_a_rule_selects_arrives_byte_for_byte(live, tmp_path, port):
    ct, mr = two(tmp_path)
    scp = StoreSCP(tmp_path / "municipal", port)
    try:
        send(live, ct, mr)
        got = scp.files(1)
        time.sleep(0.5)                         # the MR, were it queued, would be there too
        got = scp.files(1)
    finally:
        scp.stop()
    assert len(got) == 1
    assert pydicom.dcmread(got[0]).SOPInstanceUID == pydicom.dcmread(ct).SOPInstanceUID
    assert _data_set(got[0]) == _data_set(ct)
    with live.node.db.read() as c:
        kinds = c.execute(sa.select(t_outbox.c.status).where(
            t_outbox.c.kind == forward.KIND)).scalars().all()
    assert kinds == ["delivered"]
    live.node.audit.stop()
    with live.node.db.read() as c:
        events = c.execute(sa.select(t_audit).where(
            t_audit.c.transaction == "C-STORE-FWD")).mappings().all()
    assert len(events) == 1 and events[0]["outcome"] == 0
    assert "P500" in events[0]["patient_id"]


def test_nothing_goes_back_to_its_sender(live, tmp_path):
    ct, _ = two(tmp_path)
    send(live, ct, aet="MUNICIPAL")
    with live.node.db.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(t_outbox)).scalar() == 0


def test_a_destination_that_is_down_gets_it_once_it_is_up(live, tmp_path, port):
    ct, _ = two(tmp_path)
    send(live, ct)
    deadline, row = time.time() + 20, None
    while time.time() < deadline:
        with live.node.db.read() as c:
            row = c.execute(sa.select(t_outbox).where(
                t_outbox.c.kind == forward.KIND)).mappings().one()
        if row["attempts"] >= 1:
            break
        time.sleep(0.1)
    assert row["status"] == "pending" and row["attempts"] >= 1 and row["last_error"]
    scp = StoreSCP(tmp_path / "municipal", port)
    try:
        got = scp.files(1, seconds=40)
    finally:
        scp.stop()
    assert len(got) == 1 and _data_set(got[0]) == _data_set(ct)


def test_a_series_forwarded_together_shares_one_association(live, tmp_path, port, monkeypatch):
    monkeypatch.setattr(forward, "LINGER", 3.0)       # room for a slow machine between two
    study, series = generate_uid(), generate_uid()
    paths = [instance(tmp_path, f"ct{n}.dcm", patient_id="P501", patient_name="黄^河",
                      charset="ISO_IR 192", study=study, series=series, modality="CT")
             for n in range(6)]
    scp = StoreSCP(tmp_path / "municipal", port)
    try:
        send(live, *paths)                            # one storescu association, six C-STOREs
        got = scp.files(6)
        opened = scp.events("Association Received")
        deadline = time.time() + 20                   # released once idle (LINGER + a poll)
        while scp.events("Association Release") < opened and time.time() < deadline:
            time.sleep(0.1)
        released = scp.events("Association Release")
    finally:
        scp.stop()
    assert sorted(_data_set(g) for g in got) == sorted(_data_set(p) for p in paths)
    assert 1 <= opened <= 2 < len(paths)              # not one association per instance
    assert released == opened                         # none left open (nor aborted)


def test_an_association_the_destination_closed_meanwhile_is_opened_anew(live, tmp_path, port,
                                                                        monkeypatch):
    monkeypatch.setattr(forward, "LINGER", 60.0)     # kept open for the whole test
    study, series = generate_uid(), generate_uid()
    first, second = (instance(tmp_path, f"ct{n}.dcm", patient_id="P502", patient_name="黄^河",
                              charset="ISO_IR 192", study=study, series=series,
                              modality="CT") for n in range(2))
    scp = StoreSCP(tmp_path / "before", port)
    try:
        send(live, first)
        assert len(scp.files(1)) == 1
    finally:
        scp.stop()                                   # the kept association dies with it
    scp = StoreSCP(tmp_path / "after", port)
    try:
        send(live, second)
        got = scp.files(1)
    finally:
        scp.stop()
    assert [_data_set(g) for g in got] == [_data_set(second)]
    with live.node.db.read() as c:
        rows = c.execute(sa.select(t_outbox.c.status, t_outbox.c.attempts)
                         .where(t_outbox.c.kind == forward.KIND)).all()
    assert [tuple(r) for r in rows] == [("delivered", 1)] * 2      # no failed attempt


def test_rules_by_source_and_domain(node, tmp_path, port):
    peers = (Peer("MUNICIPAL", "127.0.0.1", port),)
    rules = "MUNICIPAL?source=CT_XH&domain=BJXH|1.2.156.1"
    with live_with(node, dicom_peers=peers, dicom_forward=rules) as ln:
        ct, mr = two(tmp_path)
        send(ln, ct, aet="CT_OTHER")             # another source: not forwarded
        send(ln, mr, aet="CT_XH")                # the source, issuer BJXH: forwarded
        with ln.node.db.read() as c:
            rows = c.execute(sa.select(t_outbox.c.payload).where(
                t_outbox.c.kind == forward.KIND)).scalars().all()
    assert [pydicom.dcmread(mr).SOPInstanceUID in bytes(r).decode() for r in rows] == [True]


@pytest.mark.parametrize("rule", ["MUNICIPAL?colour=red", "MUNICIPAL?modality"])
def test_a_wrong_rule_stops_the_listener_from_starting(rule):
    with pytest.raises(ValueError, match="forwarding rule"):
        forward.parse_rules(rule)


def test_a_rule_to_a_destination_that_is_not_a_peer_stops_the_listener(node):
    settings = dataclasses.replace(node.settings, dicom_forward="NOWHERE?modality=CT")
    with pytest.raises(ValueError, match="NOWHERE: not a peer"):
        forward.check(settings)
    other = Node(settings, create_schema=False)
    try:
        with pytest.raises(ValueError, match="not a peer"):
            DicomListener(other).start("127.0.0.1", 0)
    finally:
        other.close()


def test_rule_matching():
    rule, = forward.parse_rules("A?modality=CT|MR&source=X")
    assert rule.matches({"modality": {"CT"}, "source": {"X"}})
    assert not rule.matches({"modality": {"US"}, "source": {"X"}})
    assert not rule.matches({"modality": {"CT"}, "source": {"Y"}})
    assert forward.parse_rules("A, B") == (forward.Rule("A"), forward.Rule("B"))

"""Back-fill from a source PACS (dicom_qr.sync, ``hie dicom sync``), on SQLite and PostgreSQL, with
DCMTK's dcmqrscp as the hospital PACS: what the node lacks — a whole study, some instances of
another — is found by hierarchical C-FIND and C-MOVEd to the node's listener; a study the node
holds entirely is left alone; the command prints a summary and exits 0 / 1 / 2."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from dicom_qr import sync
from hie.settings import Peer
from tests.dicom_support import DCMTK, free_port, instance, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pacs(live, tmp_path):
    """dcmqrscp as AE PACS, knowing the node (HIE) as a Move Destination."""
    folder = tmp_path / "pacs"
    (folder / "db").mkdir(parents=True)
    host, port = live.node.listeners["dicom"]
    pacs_port = free_port()
    cfg = folder / "dcmqrscp.cfg"
    cfg.write_text(f"""NetworkTCPPort  = {pacs_port}
MaxPDUSize      = 16384
MaxAssociations = 16
HostTable BEGIN
node = ({live.settings.dicom_ae_title}, {host}, {port})
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
PACS {folder / 'db'} RW (200, 1024mb) ANY
AETable END
""")
    proc = subprocess.Popen([str(DCMTK / "dcmqrscp"), "-c", str(cfg), "-dhl", str(pacs_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while run("echoscu", "-aec", "PACS", "127.0.0.1", str(pacs_port)).returncode != 0:
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
        assert time.time() < deadline, "dcmqrscp did not start"
        time.sleep(0.1)
    yield Peer("PACS", "127.0.0.1", pacs_port)
    proc.terminate()
    proc.wait(10)


def studies(folder: Path) -> dict[str, list[Path]]:
    """Three studies of two patients: A (3 instances), B (2), C (2)."""
    folder.mkdir(exist_ok=True)
    out = {}
    for name, pid, pname, n in (("A", "P601", "吴^刚", 3), ("B", "P601", "吴^刚", 2),
                                ("C", "P602", "郑^芳", 2)):
        study, series = generate_uid(), generate_uid()
        out[name] = [instance(folder, f"{name}{k}.dcm", patient_id=pid, patient_name=pname,
                              charset="ISO_IR 192", study=study, series=series, number=k)
                     for k in range(n)]
    return out


def store(ae: str, host: str, port: int, paths) -> None:
    done = run("storescu", "-aec", ae, host, str(port), *map(str, paths))
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def uid(path: Path, keyword: str = "StudyInstanceUID") -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).get(keyword))


@pytest.fixture
def prepared(live, pacs, tmp_path):
    """The PACS holds everything; the node holds A's first instance and all of C."""
    sets = studies(tmp_path / "files")
    store("PACS", pacs.host, pacs.port, [p for v in sets.values() for p in v])
    host, port = live.node.listeners["dicom"]
    store(live.settings.dicom_ae_title, host, port, sets["A"][:1] + sets["C"])
    return sets


def test_what_the_node_lacks_is_moved_and_the_rest_left_alone(live, pacs, prepared):
    seen = []
    summary = sync.run(live.node, pacs, progress=lambda n, total, s: seen.append((n, total)))
    by = {s.uid: s for s in summary.studies}
    a, b, c = (by[uid(prepared[k][0])] for k in "ABC")
    assert (a.missing, a.moved, a.failed, a.held_after) == (2, 2, 0, 3)
    assert (b.moved, b.failed, b.held_after) == (2, 0, 2) and b.local_count == 0
    assert (c.missing, c.moved, c.held_after) == (0, 0, 2)
    assert summary.failed == 0 and summary.up_to_date == 1
    assert seen == [(1, 3), (2, 3), (3, 3)]
    with live.node.db.read() as conn:       # the very instances, not copies under new UIDs
        assert sync.held(conn, a.uid) == {uid(p, "SOPInstanceUID") for p in prepared["A"]}
    again = sync.run(live.node, pacs)        # nothing left to do
    assert again.up_to_date == 3 and sum(s.moved for s in again.studies) == 0


def test_one_patient_or_one_study(live, pacs, prepared):
    summary = sync.run(live.node, pacs, patient="P602")
    assert [s.uid for s in summary.studies] == [uid(prepared["C"][0])]
    one = sync.run(live.node, pacs, study=uid(prepared["B"][0]))
    assert [(s.uid, s.moved) for s in one.studies] == [(uid(prepared["B"][0]), 2)]


def _cli(live, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HIE_DATA_DIR=str(live.settings.data_dir),
               HIE_DATABASE_URL=live.settings.database,
               HIE_DICOM_AE_TITLE=live.settings.dicom_ae_title)
    return subprocess.run([sys.executable, "-m", "hie.cli", "dicom", "sync", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_the_command_prints_a_summary(live, pacs, prepared):
    done = _cli(live, "--from", f"PACS@{pacs.host}:{pacs.port}", "--since", "2026-01-01",
                "--progress")
    assert done.returncode == 0, done.stderr
    assert "3 studies at the source, 1 up to date" in done.stdout
    assert "moved 4 instance(s), 0 failure(s)" in done.stdout
    assert "[" in done.stderr and "3/3" in done.stderr


def test_a_destination_the_pacs_does_not_know_is_a_failure(live, pacs, prepared):
    done = _cli(live, "--from", f"PACS@{pacs.host}:{pacs.port}", "--dest", "NOBODY")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failure(s)" in done.stdout and "Traceback" not in done.stderr


def test_a_source_that_cannot_be_reached(live):
    done = _cli(live, "--from", f"PACS@127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert "no association with PACS" in done.stderr and "Traceback" not in done.stderr
    bad = _cli(live, "--from", "PACS-without-address")
    assert bad.returncode == 2 and "AE@host:port" in bad.stderr

"""``hie serve`` as a real process: port 0 picks free ports and prints ``listening <name>
<host>:<port>``, /healthz answers 200 once every listener accepts connections, /metrics speaks
the Prometheus text format, the generated OIDs persist in the data folder, and SIGTERM stops the
process cleanly with exit code 0."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx


def _start(tmp_path, **env):
    full = dict(os.environ, HIE_DATA_DIR=str(tmp_path / "data"), HIE_HTTP_PORT="0",
                HIE_MLLP_PORT="0", HIE_DICOM_PORT="0", PYTHONUNBUFFERED="1", **env)
    proc = subprocess.Popen([sys.executable, "-m", "hie.cli", "serve"], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listening = {}
    deadline = time.time() + 60
    while len(listening) < 3 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.fullmatch(r"listening (\w+) ([\d.]+):(\d+)\n", line)
        if m:
            listening[m.group(1)] = (m.group(2), int(m.group(3)))
    return proc, listening


def test_serve_port_zero_health_metrics_and_sigterm(tmp_path):
    proc, listening = _start(tmp_path)
    try:
        assert set(listening) == {"http", "mllp", "dicom"}, \
            proc.stderr.read() if proc.poll() else listening
        host, port = listening["http"]
        assert port != 0 and listening["mllp"][1] != 0 and listening["dicom"][1] != 0
        r = httpx.get(f"http://{host}:{port}/healthz", timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert r.json()["home_community_id"].startswith("urn:oid:")
        socket.create_connection(listening["mllp"], timeout=5).close()
        echo = subprocess.run(["/usr/bin/echoscu", "-aec", "HIE", *map(str, listening["dicom"])],
                              capture_output=True, timeout=30)
        assert echo.returncode == 0, echo.stderr           # C-ECHO on HIE_DICOM_PORT
        m = httpx.get(f"http://{host}:{port}/metrics", timeout=10)
        assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
        assert "# TYPE hie_request_duration_seconds histogram" in m.text
        assert (tmp_path / "data" / "node-ids.toml").exists()
        assert (tmp_path / "data" / "hie.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0
    err = proc.stderr.read()
    assert "Traceback" not in err
    assert '"HIE node stopped"' in err or "HIE node stopped" in err


def test_serve_refuses_a_taken_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "hie.cli", "serve"], capture_output=True,
                              text=True, timeout=60,
                              env=dict(os.environ, HIE_DATA_DIR=str(tmp_path / "d"),
                                       HIE_HTTP_PORT=str(port), HIE_MLLP_PORT="0"))
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr and "Traceback" not in proc.stderr


def _answering_processes(host: str, port: int, connections: int) -> set[int]:
    pids = set()
    for _ in range(connections):  # a new connection each time
        r = httpx.get(f"http://{host}:{port}/healthz", timeout=10,
                      headers={"Connection": "close"})
        assert r.status_code == 200
        pids.add(r.json()["process"])
    return pids


def test_serve_with_two_http_workers(tmp_path):
    """HIE_HTTP_WORKERS=2: forked HTTP workers on one port and one database, new connections
    spread over both; all of them stop on SIGTERM (the port is closed afterwards)."""
    proc, listening = _start(tmp_path, HIE_HTTP_WORKERS="2")
    try:
        host, port = listening["http"]
        # 40 connections all landing on one worker: about 2**-39 with the kernel's spreading
        assert len(_answering_processes(host, port, 40)) == 2
        m = httpx.get(f"http://{host}:{port}/metrics", timeout=10)
        assert m.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0
    with socket.socket() as s:
        assert s.connect_ex((host, port)) != 0


def test_a_dead_http_worker_leaves_no_unanswered_connections(tmp_path):
    """Each worker listens on its own socket of the port: when one dies its socket goes with it
    (no other process holds it), so every later connection reaches the surviving worker."""
    proc, listening = _start(tmp_path, HIE_HTTP_WORKERS="2")
    try:
        host, port = listening["http"]
        pids = _answering_processes(host, port, 40)
        assert proc.pid in pids and len(pids) == 2
        child = (pids - {proc.pid}).pop()
        os.kill(child, signal.SIGKILL)
        time.sleep(0.5)
        assert _answering_processes(host, port, 30) == {proc.pid}
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0


def _feed(addr, n: int) -> bytes:
    """One ITI-8 ADT^A04 on a new MLLP connection; the acknowledgement's MSA segment."""
    msg = (f"MSH|^~\\&|HIS|协和医院|HIE|REGION|20261202080000+0800||ADT^A04^ADT_A01|W{n}|P|2.5"
           f"||||||UNICODE UTF-8\rEVN|A04|20261202080000\rPID|1||W{n:05d}^^^HIS&1.2.156.1.5&ISO"
           f"||王^芳||19750612|F\r")
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(b"\x0b" + msg.encode() + b"\x1c\r")
        buf = b""
        while b"\x1c\r" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return next((seg for seg in buf.split(b"\r") if seg.startswith(b"MSA")), b"")


def test_every_worker_serves_mllp_and_a_dead_one_strands_nothing(tmp_path):
    proc, listening = _start(tmp_path, HIE_HTTP_WORKERS="2")
    try:
        addr = listening["mllp"]
        assert all(_feed(addr, n).startswith(b"MSA|AA") for n in range(20))
        host, port = listening["http"]
        pids = _answering_processes(host, port, 40)
        os.kill((pids - {proc.pid}).pop(), signal.SIGKILL)
        time.sleep(0.5)
        assert all(_feed(addr, n).startswith(b"MSA|AA") for n in range(20, 50))
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0

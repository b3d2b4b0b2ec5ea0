"""Shared pieces of the benchmarks: JSON-line output with the machine's core count, a throwaway
PostgreSQL, a node started as a real ``hie serve`` process, resident-memory readings, and the
``wrk`` load generator (Debian package ``wrk``) with its latency percentiles parsed."""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def emit(**fields) -> None:
    fields.setdefault("cores", os.cpu_count())
    fields.setdefault("python", platform.python_version())
    print(json.dumps(fields, ensure_ascii=False), flush=True)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return shutil.which("wrk") or "/usr/bin/wrk"


def _family(pid: int) -> list[int]:
    pids = [pid]
    try:
        pids += [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    return pids


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process and its children, in KiB."""
    out = {"rss": 0, "hwm": 0}
    for p in _family(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out["rss"] += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    out["hwm"] += int(line.split()[1])
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process and its children (threads included;
    children that already exited are not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def reset_peak(pid: int) -> None:
    """Reset VmHWM of a process and its children (Linux >= 4.0: write 5 to clear_refs)."""
    for p in _family(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            pass


class NodeProcess:
    """``hie serve`` in a subprocess on free ports; ``stop()`` sends SIGTERM."""

    def __init__(self, data_dir: Path, database_url: str = "", **env: str):
        full = dict(os.environ, HIE_DATA_DIR=str(data_dir), HIE_HTTP_PORT="0", HIE_MLLP_PORT="0",
                    HIE_DICOM_PORT="0", HIE_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **env)
        if database_url:
            full["HIE_DATABASE_URL"] = database_url
        self.env = full
        self.log = open(data_dir.parent / f"{data_dir.name}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "hie.cli", "serve"], env=full,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     cwd=str(ROOT))
        self.listeners: dict[str, tuple[str, int]] = {}
        deadline = time.time() + 120
        while len(self.listeners) < 3 and time.time() < deadline:   # http, mllp, dicom
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"node exited: see {self.log.name}")
            m = re.fullmatch(r"listening (\w+) ([\d.]+):(\d+)\n", line)
            if m:
                self.listeners[m.group(1)] = (m.group(2), int(m.group(3)))
        host, port = self.listeners["http"]
        self.url = f"http://{host}:{port}"
        for _ in range(200):
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNIT[m.group(2)]


def run_wrk(url: str, script: str, connections: int, seconds: int, threads: int = 2,
            timeout_s: int = 10) -> dict:
    """Run wrk with a Lua script; returns requests/s, transfer/s, p50/p90/p99 (ms), errors."""
    wrk = ensure_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        lua = fh.name
    try:
        out = subprocess.run([wrk, f"-t{min(threads, connections)}", f"-c{connections}",
                              f"-d{seconds}s", f"--timeout={timeout_s}s", "--latency", "-s", lua,
                              url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(lua)
    res: dict = {"raw_tail": out.strip().splitlines()[-1] if out.strip() else ""}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = round(_ms(m.group(1)), 3) if m else None
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    res["errors"] = errors
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    if m:
        mult = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}.get(m.group(2), 1)
        res["transfer_bytes_s"] = float(m.group(1)) * mult
    return res

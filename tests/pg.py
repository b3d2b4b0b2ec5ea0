"""A throwaway PostgreSQL cluster for the test run: ``initdb`` into a temporary folder, ``pg_ctl``
start on a free loopback port, dropped at exit.  Runs the server as the ``postgres`` system user
when the tests run as root (PostgreSQL refuses to run as root)."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not hits:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (make test installs it)")
    return hits[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    def __init__(self, *settings: str) -> None:
        """``settings`` are extra ``name=value`` server settings (e.g. ``shared_buffers=2GB``)."""
        self.settings = settings
        self.dir = tempfile.mkdtemp(prefix="hie-pg-")
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.owner = "hie"

    def _run(self, *cmd: str) -> None:
        full = list(cmd)
        if self.user:
            full = ["runuser", "-u", self.user, "--"] + full
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> "TempPostgres":
        data = os.path.join(self.dir, "data")
        if self.user:
            shutil.chown(self.dir, self.user)
        self._run(_bin("initdb"), "-D", data, "-U", self.owner, "-E", "UTF8", "--locale=C.UTF-8",
                  "-A", "trust")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=300" + "".join(f" -c {kv}" for kv in self.settings))
        self._run(_bin("pg_ctl"), "-D", data, "-o", opts, "-l", os.path.join(self.dir, "log"),
                  "-w", "start")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        return self

    @property
    def pid(self) -> int:
        """The postmaster's process id (its children are the server processes)."""
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            return int(f.readline())

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.owner}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", os.path.join(self.dir, "data"), "-m", "immediate",
                      "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

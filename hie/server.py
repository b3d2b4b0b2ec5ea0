"""``hie serve``: every listener of CONTRACT.md in one process and one asyncio loop — HTTP (SOAP,
health, metrics) under uvicorn, HL7 v2 over MLLP — plus the outbox worker.  Port 0 picks a free
port; each bound listener prints ``listening <name> <host>:<port>``.  SIGINT / SIGTERM stop it
cleanly: listeners close, in-flight requests finish, the outbox worker stops, the database pool is
released.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys

import uvicorn

from hie.node import Node
from hie.settings import Settings

log = logging.getLogger("hie.server")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def announce(name: str, sock_or_addr) -> tuple[str, int]:
    addr = sock_or_addr.getsockname() if hasattr(sock_or_addr, "getsockname") else sock_or_addr
    host, port = addr[0], addr[1]
    print(f"listening {name} {host}:{port}", flush=True)
    return host, port


class NodeServer:
    """Runs a :class:`Node`'s listeners until stopped."""

    def __init__(self, settings: Settings, node: Node | None = None):
        self.settings = settings
        self.node = node or Node(settings)
        self._stopping = asyncio.Event()
        self.http: uvicorn.Server | None = None
        self.mllp = None

    def request_stop(self) -> None:
        self._stopping.set()
        if self.http is not None:
            self.http.should_exit = True

    async def serve(self) -> None:
        from hie.app import create_app
        from pix_pdq.mllp_service import start_mllp

        s, node = self.settings, self.node
        app = create_app(node)
        http_sock = _bind(s.http_host, s.http_port)
        config = uvicorn.Config(app, log_level=s.log_level.lower(), access_log=False,
                                lifespan="off", timeout_graceful_shutdown=10, log_config=None,
                                limit_concurrency=None, backlog=2048, server_header=False)
        self.http = uvicorn.Server(config)
        self.http.install_signal_handlers = lambda: None  # we handle signals ourselves
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        http_task = asyncio.create_task(self.http.serve(sockets=[http_sock]))
        while not self.http.started and not http_task.done():
            await asyncio.sleep(0.01)
        if http_task.done():
            await http_task  # re-raises a start-up failure
            return
        node.listeners["http"] = announce("http", http_sock)
        self.mllp = await start_mllp(node, s.mllp_bind, s.mllp_port)
        node.listeners["mllp"] = announce("mllp", self.mllp.address)
        node.start()
        log.info("HIE node ready: home community %s, repository %s, affinity domain %s",
                 s.home_community_id, s.repository_unique_id, s.affinity_domain)
        stop_task = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        self.request_stop()
        await self.mllp.stop()
        await http_task
        stop_task.cancel()
        node.close()
        log.info("HIE node stopped")


def run(settings: Settings) -> int:
    server = NodeServer(settings)
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:  # pragma: no cover - second Ctrl-C
        return 130
    except OSError as exc:
        print(f"hie: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0

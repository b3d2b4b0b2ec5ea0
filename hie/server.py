"""``hie serve``: every listener of CONTRACT.md in one process and one asyncio loop — HTTP (SOAP,
health, metrics) under uvicorn, HL7 v2 over MLLP — plus the outbox worker.  Port 0 picks a free
port; each bound listener prints ``listening <name> <host>:<port>``.  SIGINT / SIGTERM stop it
cleanly: listeners close, in-flight requests finish, the outbox worker stops, the database pool is
released.  With ``HIE_HTTP_WORKERS`` > 1, forked worker processes serve HTTP and MLLP too, each on
its own sockets of the same two ports; the outbox worker runs in the first process only.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

import uvicorn

from hie.node import Node
from hie.settings import Settings

log = logging.getLogger("hie.server")


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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

    def __init__(self, settings: Settings, node: Node | None = None,
                 http_sock: socket.socket | None = None, workers: list[int] | None = None,
                 mllp_sock: socket.socket | None = None):
        self.settings = settings
        self.node = node or Node(settings)
        self.http_sock = http_sock      # bound before forking HTTP worker processes
        self.workers = workers or []    # their pids, stopped with us
        self.mllp_sock = mllp_sock
        self._stopping = asyncio.Event()
        self.http: uvicorn.Server | None = None
        self.mllp = None
        self.dicom = None

    def request_stop(self) -> None:
        self._stopping.set()
        if self.http is not None:
            self.http.should_exit = True

    async def serve(self) -> None:
        from hie.app import create_app
        from pix_pdq.mllp_service import start_mllp

        s, node = self.settings, self.node
        app = create_app(node)
        http_sock = self.http_sock or _bind(s.http_host, s.http_port)
        self.http = _uvicorn(app, s)
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
        self.mllp = await start_mllp(node, s.mllp_bind, s.mllp_port, sock=self.mllp_sock)
        node.listeners["mllp"] = announce("mllp", self.mllp.address)
        from dicom_qr.scp import DicomListener      # one DICOM listener, in this process
        self.dicom = DicomListener(node)
        node.listeners["dicom"] = announce("dicom", await loop.run_in_executor(
            None, self.dicom.start, s.mllp_bind, s.dicom_port))
        node.start()
        log.info("HIE node ready: home community %s, repository %s, affinity domain %s",
                 s.home_community_id, s.repository_unique_id, s.affinity_domain)
        stop_task = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        self.request_stop()
        _signal_workers(self.workers, signal.SIGTERM)
        await self.mllp.stop()
        await loop.run_in_executor(None, self.dicom.stop)
        await http_task
        await asyncio.get_running_loop().run_in_executor(None, _reap, self.workers)
        stop_task.cancel()
        node.close()
        log.info("HIE node stopped")


def _uvicorn(app, s: Settings) -> uvicorn.Server:
    config = uvicorn.Config(app, log_level=s.log_level.lower(), access_log=False,
                            lifespan="off", timeout_graceful_shutdown=10, log_config=None,
                            limit_concurrency=None, backlog=2048, server_header=False)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the node handles signals itself
    return server


def _signal_workers(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _http_worker(settings: Settings, sock: socket.socket, mllp_sock: socket.socket,
                 listeners: dict[str, tuple[str, int]]) -> None:
    """A forked worker: its own node services (database pool, audit writer) on its own
    listening sockets of the HTTP and MLLP ports (see :func:`_worker_sockets`); the outbox
    worker stays in the main process."""
    from hie.app import create_app
    from pix_pdq.mllp_service import start_mllp

    async def serve() -> None:
        node = Node(settings, create_schema=False)
        node.listeners.update(listeners)
        server = _uvicorn(create_app(node), settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        node.audit.start()
        mllp = await start_mllp(node, settings.mllp_bind, settings.mllp_port, sock=mllp_sock)
        try:
            await server.serve(sockets=[sock])
        finally:
            await mllp.stop()
            node.close()

    asyncio.run(serve())


def _worker_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port, one per worker process.  Where the system
    has SO_REUSEPORT (Linux) each worker gets its own socket and the kernel spreads new
    connections evenly over them; otherwise (or when the option is refused) they all share one
    socket, which the busiest worker tends to drain (it accepts a whole backlog at a time).
    A worker that dies takes its socket with it, so the kernel stops sending it connections."""
    if hasattr(socket, "SO_REUSEPORT"):
        try:
            first = _bind(host, port, reuse_port=True)
            chosen = first.getsockname()[1]
            return [first] + [_bind(host, chosen, reuse_port=True) for _ in range(count - 1)]
        except OSError:
            pass
    sock = _bind(host, port)
    return [sock] * count


def _fork_workers(settings: Settings, socks: list[tuple[socket.socket, socket.socket]],
                  keep: list[socket.socket], listeners: dict[str, tuple[str, int]]) -> list[int]:
    """Fork one worker per (HTTP, MLLP) socket pair in ``socks``; each child closes every
    listening socket but its own (``keep``: sockets of the parent the children must not hold)."""
    pids = []
    for own in socks:
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                for other in [s for pair in socks for s in pair] + list(keep):
                    if other not in own:
                        other.close()
                _http_worker(settings, own[0], own[1], listeners)
            except BaseException:  # pragma: no cover - logged, the parent keeps serving
                log.exception("HTTP worker failed")
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    return pids


def run(settings: Settings) -> int:
    try:
        node = Node(settings)
        sock = mllp_sock = None
        workers: list[int] = []
        if settings.http_workers > 1:
            n = settings.http_workers
            http_socks = _worker_sockets(settings.http_host, settings.http_port, n)
            mllp_socks = _worker_sockets(settings.mllp_bind, settings.mllp_port, n)
            sock, mllp_sock = http_socks[0], mllp_socks[0]
            listeners = {"http": sock.getsockname()[:2], "mllp": mllp_sock.getsockname()[:2]}
            node.db.dispose()  # no pooled connection may cross the fork
            pairs = list(zip(http_socks[1:], mllp_socks[1:]))
            workers = _fork_workers(settings, pairs, [sock, mllp_sock], listeners)
            for child_sock in {s for pair in pairs for s in pair} - {sock, mllp_sock}:
                child_sock.close()  # each child holds its own; see _worker_sockets
        server = NodeServer(settings, node, sock, workers, mllp_sock)
    except OSError as exc:
        print(f"hie: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:  # pragma: no cover - second Ctrl-C
        return 130
    except OSError as exc:
        print(f"hie: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0

"""A whole node running in the test process: every listener on a free loopback port, served by
:class:`hie.server.NodeServer` in a background thread with its own event loop, exactly as
``hie serve`` runs it."""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass

from hie.node import Node
from hie.server import NodeServer
from hie.settings import Settings


@dataclass
class LiveNode:
    node: Node
    server: NodeServer
    http: str            # base URL, e.g. http://127.0.0.1:41234
    mllp: tuple[str, int]

    @property
    def settings(self) -> Settings:
        return self.node.settings


@contextlib.contextmanager
def live_node(settings: Settings, node: Node | None = None):
    server = NodeServer(settings, node)
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve())
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)

    thread = threading.Thread(target=run, name="live-node", daemon=True)
    thread.start()
    deadline = time.time() + 30
    n = server.node
    while not ({"http", "mllp", "dicom"} <= set(n.listeners)) and time.time() < deadline:
        if failure:
            raise failure[0]
        time.sleep(0.02)
    if not ({"http", "mllp", "dicom"} <= set(n.listeners)):
        raise RuntimeError(f"node did not start: {failure}")
    host, port = n.listeners["http"]
    try:
        yield LiveNode(n, server, f"http://{host}:{port}", n.listeners["mllp"])
    finally:
        loop.call_soon_threadsafe(server.request_stop)
        thread.join(30)


@contextlib.contextmanager
def live_with(node: Node, **changes):
    """A live node on ``node``'s database and data folder with some settings changed."""
    import dataclasses
    other = Node(dataclasses.replace(node.settings, **changes), create_schema=False)
    try:
        with live_node(other.settings, other) as ln:
            yield ln
    finally:
        other.close()

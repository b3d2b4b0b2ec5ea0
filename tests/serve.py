"""Run an ASGI app under a real uvicorn server on a free loopback port, in a background thread
(for integration tests that need real HTTP: a real client such as httpx or zeep talks to it)."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn


@contextmanager
def serve(app, host: str = "127.0.0.1", timeout: float = 10.0, **config) -> Iterator[str]:
    """``with serve(app) as base_url: ...`` — base_url is ``http://127.0.0.1:<port>``."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config.setdefault("log_level", "warning")
    config.setdefault("access_log", False)
    config.setdefault("lifespan", "off")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("uvicorn did not start in time")
        time.sleep(0.01)
    try:
        yield f"http://{host if ':' not in host else '[' + host + ']'}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()

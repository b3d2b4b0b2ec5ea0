"""Test helpers for HL7 v2 over MLLP: run an :class:`hie.mllp.MllpServer` in a background event
loop, a plain-socket MLLP client (for malformed frames, which python-hl7's client cannot send),
and GB 11643-1999 resident identity numbers (MOD 11-2 check digit, ISO 7064)."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Awaitable, Callable

from hie.mllp import MllpDecoder, MllpError, frame
from pix_pdq.resident_id import make


def resident_id(region: str = "110101", birth: str = "19800101", seq: str = "001") -> str:
    """A valid resident ID number (GB 11643-1999) for test data."""
    return make(region + birth + seq)


@contextlib.contextmanager
def running(start: Callable[[], Awaitable]):
    """Run ``await start()`` (returning a started server with ``stop()``) in a loop of its own
    thread; yield the server; stop it gracefully at exit."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["server"] = loop.run_until_complete(start())
        except BaseException as exc:  # surfaced below
            box["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="mllp-test-loop", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]
    server = box["server"]
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(grace=5), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def call_in_loop(server, coro_fn, timeout: float = 30):
    """Run ``coro_fn()`` in the server's loop (e.g. ``server.stop``) and wait for it."""
    loop = server._server.get_loop()  # noqa: SLF001 - test helper
    return asyncio.run_coroutine_threadsafe(coro_fn(), loop).result(timeout)


class MllpClient:
    """A minimal blocking MLLP client on a plain socket."""

    def __init__(self, address: tuple[str, int], timeout: float = 15.0):
        self.sock = socket.create_connection(address, timeout=timeout)
        self.decoder = MllpDecoder()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "MllpClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> bytes | None:
        """The next framed payload, or None when the server closed the connection."""
        while True:
            try:
                f = self.decoder.next_frame()
            except MllpError:
                continue
            if f is not None:
                return f
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.decoder.feed(data)

    def request(self, payload: bytes) -> bytes | None:
        self.send_raw(frame(payload))
        return self.receive()

    def is_closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

"""HL7 Minimal Lower Layer Protocol (HL7 v2.5 Appendix C.4 "MLLP"; IHE ITI TF-2x Appendix C.2.1).

A message travels as one block: ``<SB> payload <EB><CR>`` with SB = 0x0B (vertical tab) and
EB = 0x1C (file separator).  The receiver answers each block with a block of its own (the ACK).

Two parts:

- :class:`MllpDecoder`, sans-IO: feed it bytes in any chunks, take out complete frames.  Bytes
  outside a block are discarded (whitespace such as stray CR/LF silently); a start block inside a
  block ends the first block as truncated; an end block not followed by <CR> discards the block;
  a block larger than ``max_frame_size`` is discarded up to its end block.  Each of these raises a
  typed :class:`MllpError` *after* the decoder has resynchronised, so the caller logs and asks for
  the next frame.  Which frames come out does not depend on how the bytes were chunked.
- :class:`MllpServer`, an asyncio TCP listener: frames from a connection are handled in order, by
  a plain sync ``handler(ctx_factory, payload) -> bytes`` run in a thread pool, and the answer is
  framed back.  A connection idle for ``idle_timeout`` seconds is closed; a framing error is
  logged and the connection keeps going (an oversized block closes it); :meth:`MllpServer.stop`
  stops accepting, lets in-flight messages finish and closes the connections.
"""
from __future__ import annotations

import asyncio
import socket
import concurrent.futures
import contextlib
import functools
import logging
from typing import Any, Callable

from hie.errors import HieError

log = logging.getLogger("hie.mllp")

SB = 0x0B  # start block, <VT>
EB = 0x1C  # end block, <FS>
CR = 0x0D
START_BLOCK = bytes([SB])
END_BLOCK = bytes([EB, CR])
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
_INTERFRAME_WHITESPACE = b" \t\r\n\x00"


def frame(payload: bytes) -> bytes:
    """``payload`` wrapped in an MLLP block."""
    return START_BLOCK + payload + END_BLOCK


class MllpError(HieError):
    """A framing error; the decoder has already resynchronised when this is raised."""


class MllpGarbage(MllpError):
    """Bytes outside any block were discarded."""

    def __init__(self, discarded: int):
        super().__init__(f"{discarded} bytes outside an MLLP block discarded")
        self.discarded = discarded


class MllpTruncatedFrame(MllpError):
    """A block ended without its end block (a new start block came, or the stream ended)."""

    def __init__(self, received: int):
        super().__init__(f"MLLP block truncated after {received} bytes")
        self.received = received


class MllpBadEndBlock(MllpError):
    """<EB> not followed by <CR>: the block is discarded."""

    def __init__(self) -> None:
        super().__init__("MLLP end block <FS> not followed by <CR>; block discarded")


class MllpFrameTooLarge(MllpError):
    """A block exceeded the maximum frame size and is being discarded."""

    def __init__(self, limit: int):
        super().__init__(f"MLLP block larger than {limit} bytes discarded")
        self.limit = limit


class MllpDecoder:
    """Incremental MLLP deframer: :meth:`feed` bytes, then call :meth:`next_frame` until it
    returns None (more data needed).  It raises only :class:`MllpError` subclasses, and calling
    it again after one continues with the following bytes."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME):
        if max_frame_size < 1:
            raise ValueError("max_frame_size must be positive")
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._in_frame = False
        self._discarding = False  # inside an oversized block: bytes dropped, not buffered
        self._scan = 0  # inside a block: bytes before this offset hold no SB/EB

    @property
    def in_frame(self) -> bool:
        """True while a block has started and not ended."""
        return self._in_frame

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def frames(self):
        """Iterate over complete frames, silently skipping framing errors (a convenience for
        callers that do not report them)."""
        while True:
            try:
                f = self.next_frame()
            except MllpError:
                continue
            if f is None:
                return
            yield f

    def next_frame(self) -> bytes | None:
        buf = self._buf
        while True:
            if not self._in_frame:
                i = buf.find(SB)
                junk = bytes(buf) if i < 0 else bytes(buf[:i])
                if i < 0:
                    buf.clear()
                else:
                    del buf[:i + 1]
                    self._in_frame, self._discarding, self._scan = True, False, 0
                if junk.strip(_INTERFRAME_WHITESPACE):
                    raise MllpGarbage(len(junk))
                if i < 0:
                    return None
                continue

            t = self._terminator(buf)
            if t < 0:
                if self._discarding:
                    buf.clear()
                    self._scan = 0
                elif len(buf) > self.max_frame_size:
                    buf.clear()
                    self._scan, self._discarding = 0, True
                    raise MllpFrameTooLarge(self.max_frame_size)
                else:
                    self._scan = len(buf)
                return None
            if not self._discarding and t > self.max_frame_size:
                del buf[:t]
                self._scan, self._discarding = 0, True
                raise MllpFrameTooLarge(self.max_frame_size)
            if buf[t] == SB:  # a new block starts before this one ended
                was_discarding = self._discarding
                del buf[:t + 1]
                self._scan, self._discarding = 0, False
                if not was_discarding:
                    raise MllpTruncatedFrame(t)
                continue
            # buf[t] is EB
            if t + 1 == len(buf):  # wait for the byte after <EB>
                if self._discarding:
                    del buf[:t]
                    t = 0
                self._scan = t
                return None
            was_discarding = self._discarding
            self._in_frame, self._discarding = False, False
            if buf[t + 1] == CR:
                payload = bytes(buf[:t])
                del buf[:t + 2]
                self._scan = 0
                if was_discarding:
                    continue
                return payload
            del buf[:t + 1]
            self._scan = 0
            if not was_discarding:
                raise MllpBadEndBlock()

    def _terminator(self, buf: bytearray) -> int:
        a = buf.find(EB, self._scan)
        b = buf.find(SB, self._scan)
        if a < 0:
            return b
        if b < 0:
            return a
        return min(a, b)

    def eof(self) -> None:
        """The stream ended: :class:`MllpTruncatedFrame` if a block was left open."""
        open_frame = self._in_frame and not self._discarding
        received = len(self._buf)
        self._buf.clear()
        self._in_frame, self._discarding, self._scan = False, False, 0
        if open_frame:
            raise MllpTruncatedFrame(received)


# --------------------------------------------------------------------------------------------
# asyncio server
# --------------------------------------------------------------------------------------------

Handler = Callable[[Any, bytes], bytes | None]


class _Conn:
    __slots__ = ("task", "busy", "peer")

    def __init__(self, task: asyncio.Task | None, peer: str):
        self.task = task
        self.busy = False
        self.peer = peer


class MllpServer:
    """An MLLP listener.  ``handler(ctx_factory, payload) -> bytes`` runs in a thread pool; its
    return value (unframed) is sent back, None or b"" sends nothing.  ``ctx_factory`` is
    ``functools.partial(context_factory, remote_addr=<peer host>)`` when a ``context_factory`` was
    given (so handlers call ``ctx_factory(transaction)``), else None.  A handler that raises gets
    its connection closed (handlers are expected to render their own errors)."""

    def __init__(self, host: str, port: int, handler: Handler, *,
                 context_factory: Callable[..., Any] | None = None,
                 max_frame_size: int = DEFAULT_MAX_FRAME, idle_timeout: float = 300.0,
                 max_workers: int = 16,
                 executor: concurrent.futures.Executor | None = None,
                 sock: "socket.socket | None" = None):
        self.host, self.port = host, port
        self.sock = sock  # an already bound listening socket (then host/port are not used)
        self.handler = handler
        self.context_factory = context_factory
        self.max_frame_size = max_frame_size
        self.idle_timeout = idle_timeout
        self._own_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="mllp")
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Conn] = set()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> "MllpServer":
        if self.sock is not None:
            self._server = await asyncio.start_server(self._serve_conn, sock=self.sock,
                                                      backlog=1024)
        else:
            self._server = await asyncio.start_server(self._serve_conn, self.host, self.port,
                                                      backlog=1024)
        log.info("MLLP listening on %s:%s", *self.address)
        return self

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound; port 0 at construction means a free port was chosen."""
        if self._server is None or not self._server.sockets:
            return self.host, self.port
        name = self._server.sockets[0].getsockname()
        return name[0], name[1]

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        with contextlib.suppress(asyncio.CancelledError):
            await self._server.serve_forever()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let messages being handled finish (up to ``grace`` seconds), close
        every connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for c in list(self._conns):
            if not c.busy and c.task is not None:
                c.task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(c.busy for c in self._conns) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        tasks = [c.task for c in self._conns if c.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("MLLP listener stopped")

    # -- one connection ----------------------------------------------------------------------

    async def _serve_conn(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = peername[0] if isinstance(peername, tuple) else str(peername or "")
        conn = _Conn(asyncio.current_task(), peer)
        if self._closing:
            writer.close()
            return
        self._conns.add(conn)
        decoder = MllpDecoder(self.max_frame_size)
        factory = (functools.partial(self.context_factory, remote_addr=peer)
                   if self.context_factory is not None else None)
        loop = asyncio.get_running_loop()
        try:
            while not self._closing:
                try:   # (a timeout scope: wait_for made a task of every read)
                    async with asyncio.timeout(self.idle_timeout):
                        data = await reader.read(65536)
                except TimeoutError:
                    log.info("MLLP connection from %s idle for %ss: closed", peer,
                             self.idle_timeout)
                    break
                if not data:
                    try:
                        decoder.eof()
                    except MllpError as exc:
                        log.warning("MLLP %s: %s", peer, exc)
                    break
                decoder.feed(data)
                if not await self._drain_frames(decoder, writer, factory, loop, conn):
                    break
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("MLLP connection from %s lost: %s", peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception:  # never let one connection take the listener down
            log.exception("MLLP connection from %s failed", peer)
        finally:
            self._conns.discard(conn)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _drain_frames(self, decoder: MllpDecoder, writer: asyncio.StreamWriter,
                            factory: Any, loop: asyncio.AbstractEventLoop, conn: _Conn) -> bool:
        """Handle every complete frame buffered; False when the connection must close."""
        while True:
            try:
                payload = decoder.next_frame()
            except MllpFrameTooLarge as exc:
                log.warning("MLLP %s: %s; closing the connection", conn.peer, exc)
                return False
            except MllpError as exc:
                log.warning("MLLP %s: %s", conn.peer, exc)
                continue
            if payload is None:
                return True
            conn.busy = True
            try:
                response = await asyncio.shield(
                    loop.run_in_executor(self._executor, self.handler, factory, payload))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("MLLP handler failed for a message from %s", conn.peer)
                return False
            finally:
                conn.busy = False
            if response:
                writer.write(frame(response))
                await writer.drain()
            if self._closing:
                return False


def request(host: str, port: int, payload: bytes, timeout: float = 30.0,
            max_frame_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """Send one message over a new MLLP connection and return the first block the peer answers
    (the sending side of HL7 v2.5 Appendix C.4, used for outbound notifications).  Raises
    OSError (refused, reset, timed out) or :class:`MllpTruncatedFrame` when the peer closes
    before a whole answer arrived."""
    decoder = MllpDecoder(max_frame_size)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(frame(payload))
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                decoder.eof()
                raise MllpTruncatedFrame(0)
            decoder.feed(chunk)
            try:
                answer = decoder.next_frame()
            except MllpGarbage:
                continue
            if answer is not None:
                return answer

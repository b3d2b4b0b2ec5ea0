"""The HL7 v2 listener of the patient index: MLLP (HL7 v2.5 Appendix C; ITI TF-2x C.2.1)
bound to the ITI-8 Patient Identity Feed (ITI TF-2a 3.8), the ITI-9 PIX Query (3.9) and the
ITI-21 Patient Demographics Query (3.21).

A transport only: decode (:func:`hie.hl7v2.parse`), dispatch on MSH-9 through :data:`DISPATCH`,
call the transaction handler with a :class:`~hie.context.Context`, encode its ACK.  A message that
cannot be parsed is acknowledged AR with whatever of its MSH could be read (HL7 v2.5 2.9.2); an ACK sent to
the listener is not answered; an unexpected failure is acknowledged AR with ERR 207 (application internal error; the sender
retries), never with a stack trace.  After every message, one audit event and one metrics sample
(principles 6 and 10: their failure is logged, never breaks the answer).
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable

from hie.context import MAJOR_FAILURE, SERIOUS_FAILURE, Context
from hie.errors import HL7, Hl7Error
from hie.hl7v2 import Hl7ParseError, Message, ack_for_error, parse, parse_header
from hie.mllp import DEFAULT_MAX_FRAME, MllpServer
from hie.transactions import ITI_8, ITI_9, ITI_21, Transaction
from pix_pdq import iti8, iti9, iti21

log = logging.getLogger("pix_pdq.mllp")

HandlerFn = Callable[[Context, Message, bytes], Message]

# MSH-9.1, or (MSH-9.1, MSH-9.2) where one message type serves two transactions, -> (transaction,
# handler).  Message types not listed go to ITI-8, which answers them with ERR 200.
DISPATCH: dict[Any, tuple[Transaction, HandlerFn]] = {
    "ADT": (ITI_8, iti8.handle),
    ("QBP", "Q22"): (ITI_21, iti21.handle),
    "QBP": (ITI_9, iti9.handle),          # Q23, and the AE 201 for any other QBP event
    "QCN": (ITI_21, iti21.cancel),        # cancel query (J01)
}
DEFAULT_ROUTE = DISPATCH["ADT"]


def _internal_error_ack(data: bytes, msg: Message | None) -> bytes:
    err = Hl7Error("AR", HL7.APPLICATION_INTERNAL_ERROR,
                   "internal error; the message was not applied, please retry")
    header = msg if msg is not None else parse_header(data)
    try:
        return ack_for_error(header, err).encode()
    except Exception:  # noqa: BLE001 - e.g. the header's charset cannot carry the ACK
        return ack_for_error(None, err).encode()


def handle(ctx_factory: Callable[[Transaction], Context], data: bytes) -> bytes:
    """One MLLP payload in, the acknowledgement bytes out (the :class:`MllpServer` handler)."""
    start = time.perf_counter()
    msg: Message | None = None
    ctx: Context | None = None
    try:
        try:
            msg = parse(data)
        except Hl7ParseError as err:
            ctx = ctx_factory(DEFAULT_ROUTE[0])
            header = err.header
            ctx.message_id = (header.control_id or None) if header is not None else None
            ctx.fail(SERIOUS_FAILURE, err.text)
            return ack_for_error(None, err).encode()
        if msg.message_type == "ACK":  # never acknowledge an acknowledgement (2.9.2)
            log.info("HL7 v2 ACK %s received on the listener; not answered", msg.control_id)
            return b""
        transaction, handler = DISPATCH.get((msg.message_type, msg.trigger_event)) or \
            DISPATCH.get(msg.message_type, DEFAULT_ROUTE)
        ctx = ctx_factory(transaction)
        return handler(ctx, msg, data).encode()
    except Exception:  # noqa: BLE001 - errors are data: AR 207, no stack trace to the peer
        log.exception("HL7 v2 message handling failed")
        if ctx is None:
            ctx = ctx_factory(DEFAULT_ROUTE[0])
        ctx.fail(MAJOR_FAILURE, "internal error")
        return _internal_error_ack(data, msg)
    finally:
        if ctx is not None:
            ctx.finish(time.perf_counter() - start)


def context_factory(node) -> Callable[..., Context]:
    """``factory(transaction, remote_addr=...) -> Context`` on ``node``."""
    return functools.partial(Context, node)


def make_server(node, host: str | None = None, port: int | None = None, *,
                idle_timeout: float = 300.0,
                max_frame_size: int = DEFAULT_MAX_FRAME, sock=None) -> MllpServer:
    """The node's MLLP listener (not started); host/port default to the node's settings."""
    s = node.settings
    return MllpServer(s.mllp_bind if host is None else host,
                      s.mllp_port if port is None else port, handle,
                      context_factory=context_factory(node), idle_timeout=idle_timeout,
                      max_frame_size=max_frame_size, sock=sock)


async def start_mllp(node, host: str | None = None, port: int | None = None,
                     **kw) -> MllpServer:
    """Start the node's MLLP listener; ``await server.stop()`` stops it."""
    return await make_server(node, host, port, **kw).start()


__all__ = ["DISPATCH", "handle", "context_factory", "make_server", "start_mllp"]

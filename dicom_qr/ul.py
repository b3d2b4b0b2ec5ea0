"""The DICOM Upper Layer service provider of the node's listener (DICOM PS3.8 Sections 7 and 9:
association establishment, data transfer, release and abort over TCP), on the sans-IO codecs of
:mod:`dicom_qr.pdu`, :mod:`dicom_qr.dimse` and :mod:`dicom_qr.acse`.

One thread per association, blocking reads, no polling: a PDU is read as it arrives and the
DIMSE service it completes runs at once, in that thread; its responses leave with one send per
PDU, without Nagle's delay (TCP_NODELAY).  Per association (PS3.8 9.2, the state machine of
Table 9-10 reduced to what an acceptor sees):

- the A-ASSOCIATE-RQ must come first and within the ARTIM time (:data:`ARTIM`), else the
  connection is closed; anything that is not a PDU, or a PDU larger than the node takes, gets
  an A-ABORT (source: service provider) and the connection closes;
- an association idle longer than :data:`IDLE` gets an A-ABORT and is closed;
- A-RELEASE-RQ is answered A-RELEASE-RP once the operation in progress is done;
- a C-CANCEL-RQ reaches the operation it names (:meth:`Association.cancelled`);
- a service that fails unexpectedly answers 0x0110 "processing failure"; the listener goes on;
- a data set that grows past :data:`SPILL_AT` octets goes on into a spool file of the
  listener's (``spool``) as it arrives, not into memory; the spool is removed once its message
  has been served, or when the association ends before the message does.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator

from dicom_qr import acse, dimse, pdu

log = logging.getLogger("dicom_qr.ul")

ARTIM = 30.0                 # seconds to wait for the A-ASSOCIATE-RQ (PS3.8 9.1.5)
IDLE = 60.0                  # seconds an association may stay silent
MAX_ASSOCIATIONS = 64
WRITE = 1 << 18              # octets per write of a data set sent from its file
SPILL_AT = 32 << 20          # a data set received past this many octets goes on into a spool
ASSOCIATE_LIMIT = 1 << 20    # the largest A-ASSOCIATE-RQ taken


class Closed(Exception):
    """The association is over (released, aborted or the connection lost)."""


def _recv_exactly(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise Closed("the connection closed")
        got += k
    return buf


def read_pdu(sock: socket.socket, limit: int) -> pdu.Pdu:
    kind, length = pdu.header(_recv_exactly(sock, 6), limit)
    return pdu.decode(kind, _recv_exactly(sock, length) if length else b"")


def no_delay(sock: socket.socket | None) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class Region:
    """A data set still in a file (a :class:`dicom_qr.dimse.Source`): ``length`` octets from
    ``offset`` of the open binary file ``fh`` — a stored instance being sent, or a received one
    spooled (``path``: the spool's name; the listener removes it once its message is served)."""
    fh: BinaryIO
    offset: int
    length: int
    path: str | None = None

    def __len__(self) -> int:
        return self.length

    def read(self, at: int, size: int) -> bytes:
        """``size`` octets from ``at``; OSError when the file has fewer."""
        self.fh.seek(self.offset + at)
        got = self.fh.read(size)
        if len(got) != size:
            raise OSError(f"the file ends {size - len(got)} octets before its data set does")
        return got


class Association:
    """An accepted association as the services see it: who asked (:attr:`calling`,
    :attr:`address`), what was agreed, :meth:`send` a message, :meth:`cancelled`, and
    :meth:`request` a C-STORE sub-operation of a C-GET; :attr:`state` keeps what a service
    wants to remember across the association's messages."""

    def __init__(self, sock: socket.socket, address: str, agreed: acse.Agreement, limit: int,
                 spool: "Spooler | None" = None, spill_at: int = 0):
        self.sock, self.address, self.agreed = sock, address, agreed
        self.calling = agreed.calling
        self.state: dict[str, Any] = {}
        self._limit = limit
        self._assembler = dimse.Assembler(
            spill_at=spill_at, spool=(lambda m: spool(self, m)) if spool is not None else None)
        self._queue: deque[dimse.Message] = deque()
        self._cancels: set[int] = set()
        self._release = False
        self._next_id = 0

    def discard_partial(self) -> None:
        """Drop the spool of a data set the association's end cut short."""
        self._assembler.discard()

    def context(self, message: dimse.Message) -> acse.Context:
        return self.agreed.contexts[message.context_id]

    def send(self, *messages: dimse.Message) -> None:
        """Send ``messages`` (each in its own PDUs) in writes of about :data:`WRITE` octets —
        one write for the usual few messages; a data set still in a file (:class:`Region`) is
        read as its PDUs are made."""
        batch: list[bytes] = []
        held = 0
        for m in messages:
            for raw in dimse.pdus(m, self.agreed.peer_max_length):
                batch.append(raw)
                held += len(raw)
                if held >= WRITE:
                    self.sock.sendall(b"".join(batch))
                    batch, held = [], 0
        if batch:
            self.sock.sendall(b"".join(batch))

    # -- reading ---------------------------------------------------------------------------

    def _pump(self) -> None:
        """Read one PDU and file what it brings."""
        got = read_pdu(self.sock, self._limit)
        if isinstance(got, pdu.PData):
            for pdv in got.pdvs:
                if pdv.context_id not in self.agreed.contexts:
                    raise pdu.PduError(f"a PDV on presentation context {pdv.context_id}, "
                                       "which was not accepted", pdu.INVALID_PARAMETER)
            for msg in self._assembler.feed(got):
                if msg.field == dimse.C_CANCEL_RQ:
                    self._cancels.add(int(msg.command.get("MessageIDBeingRespondedTo", -1)))
                else:
                    self._queue.append(msg)
        elif isinstance(got, pdu.ReleaseRQ):
            self._release = True
        elif isinstance(got, pdu.Abort):
            raise Closed("aborted by the requester")
        else:
            raise pdu.PduError(f"unexpected {type(got).__name__}", pdu.UNEXPECTED_PDU)

    def receive(self) -> dimse.Message | None:
        """The next request; None once the requester has released the association (the
        A-RELEASE-RP is sent)."""
        while not self._queue:
            if self._release:
                self.sock.sendall(pdu.encode(pdu.ReleaseRP()))
                return None
            self._pump()
        return self._queue.popleft()

    def cancelled(self, message_id: int) -> bool:
        """Has the requester sent a C-CANCEL-RQ for ``message_id``?  (Reads what has arrived,
        never waits.)"""
        while not self._release and select.select([self.sock], [], [], 0)[0]:
            self._pump()
        return message_id in self._cancels

    def exchange(self, message: dimse.Message) -> Iterator[dimse.Message]:
        """The node as invoker on this association (a C-STORE sub-operation of a C-GET, a
        request of its own): send ``message`` with the next Message ID and yield its
        responses, the pending ones (0xFF00, 0xFF01) and the final one."""
        self._next_id = self._next_id % 0xFFFF + 1
        sent = message.command["MessageID"] = self._next_id
        self.send(message)
        while True:
            answer = self.response(sent)
            yield answer
            if answer.command.get("Status") not in (dimse.PENDING, dimse.PENDING_WARNING):
                return

    def request(self, message: dimse.Message) -> dimse.Message:
        """:meth:`exchange` of a request that gets one response; that response."""
        return list(self.exchange(message))[-1]

    def response(self, message_id: int) -> dimse.Message:
        """The next response to the request ``message_id`` (waits for it)."""
        while True:
            for msg in self._queue:
                if msg.field & 0x8000 and \
                        msg.command.get("MessageIDBeingRespondedTo") == message_id:
                    self._queue.remove(msg)
                    return msg
            if self._release:
                raise Closed("released with a request outstanding")
            self._pump()

    def release(self) -> None:
        """The node as requester: A-RELEASE-RQ, wait for the A-RELEASE-RP, close."""
        try:
            self.sock.sendall(pdu.encode(pdu.ReleaseRQ()))
            while not isinstance(read_pdu(self.sock, self._limit), (pdu.ReleaseRP, pdu.Abort)):
                pass
        except (OSError, Closed, pdu.PduError):
            pass
        finally:
            self.sock.close()


class Refused(Exception):
    """An association the peer did not accept (A-ASSOCIATE-RJ, an abort, or no answer)."""


def request_association(host: str, port: int, calling: str, called: str,
                        contexts: list[tuple[str, list[str]]], *, timeout: float = 30.0,
                        max_length: int = 1 << 20) -> Association:
    """The node as association requester (PS3.8 7.1.1): propose ``contexts`` (SOP class,
    transfer syntaxes; ids 1, 3, 5 …) to ``called`` at ``host``:``port``; the accepted
    association, or :class:`Refused`."""
    from dicom_qr.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
    proposed = [pdu.ProposedContext(2 * i + 1, a, list(ts)) for i, (a, ts) in enumerate(contexts)]
    rq = pdu.AssociateRQ(called, calling, pdu.APPLICATION_CONTEXT, proposed, pdu.UserInformation(
        max_length=max_length, implementation_class=IMPLEMENTATION_CLASS_UID,
        implementation_version=IMPLEMENTATION_VERSION))
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise Refused(f"{called}@{host}:{port} cannot be reached: {exc}") from None
    no_delay(sock)
    try:
        sock.sendall(pdu.encode(rq))
        answer = read_pdu(sock, ASSOCIATE_LIMIT)
    except (OSError, Closed, pdu.PduError) as exc:
        sock.close()
        raise Refused(f"{called}@{host}:{port} did not answer the association: {exc}") from None
    if not isinstance(answer, pdu.AssociateAC):
        sock.close()
        raise Refused(f"{called}@{host}:{port} refused the association: {answer}")
    agreed = acse.Agreement(calling, called, peer_max_length=answer.user.max_length)
    by_id = {cx.id: cx for cx in proposed}
    for cx in answer.contexts:
        if cx.result == pdu.ACCEPTANCE and cx.id in by_id:
            agreed.contexts[cx.id] = acse.Context(cx.id, by_id[cx.id].abstract_syntax,
                                                  cx.transfer_syntax)
    return Association(sock, host, agreed, max(max_length, ASSOCIATE_LIMIT) + 6)


Service = Callable[[Association, dimse.Message], None]
# a listener's spools: (association, message whose data set grew past SPILL_AT) -> the spool
# its data set goes on into, or None to keep it in memory
Spooler = Callable[[Association, dimse.Message], "dimse.Spool | None"]


class Listener:
    """Accepts associations on a TCP port and serves their DIMSE requests with ``services``
    (command field → service); :meth:`start`, :attr:`address`, :meth:`stop`."""

    def __init__(self, offer: acse.Offer, services: dict[int, Service], *,
                 max_associations: int = MAX_ASSOCIATIONS, spool: "Spooler | None" = None,
                 spill_at: int = SPILL_AT):
        self.offer, self.services = offer, services
        self.max_associations = max_associations
        self.spool, self.spill_at = spool, spill_at
        self.limit = max(offer.max_length or (64 << 20), ASSOCIATE_LIMIT) + 6
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, host: str, port: int) -> tuple[str, int]:
        server = socket.create_server((host, port), reuse_port=False, backlog=128)
        server.settimeout(0.5)
        self._server = server
        thread = threading.Thread(target=self._accept, name="dicom-listener", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        return self._server.getsockname()[:2]

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for sock in list(self._open):
                try:
                    sock.sendall(pdu.encode(pdu.Abort(pdu.ABORT_PROVIDER, 0)))
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(10)
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, address = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("the DICOM listener could not accept a connection")
                continue
            no_delay(sock)
            with self._lock:
                busy = len(self._open) >= self.max_associations
                self._open.add(sock)
                self._threads = [t for t in self._threads if t.is_alive()]
                thread = threading.Thread(target=self._serve, args=(sock, address[0], busy),
                                          name=f"dicom-{address[0]}:{address[1]}",
                                          daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, address: str, busy: bool) -> None:
        try:
            sock.settimeout(ARTIM)
            self._associate(sock, address, busy)
        except pdu.PduError as exc:
            log.info("association from %s aborted: %s", address, exc)
            try:
                sock.sendall(pdu.encode(pdu.Abort(pdu.ABORT_PROVIDER, exc.reason)))
            except OSError:
                pass
        except dimse.DimseError as exc:
            log.info("association from %s aborted: %s", address, exc)
            try:
                sock.sendall(pdu.encode(pdu.Abort(pdu.ABORT_PROVIDER, 0)))
            except OSError:
                pass
        except TimeoutError:
            log.info("association from %s aborted: silent too long", address)
            try:
                sock.sendall(pdu.encode(pdu.Abort(pdu.ABORT_PROVIDER, 0)))
            except OSError:
                pass
        except (Closed, OSError) as exc:
            log.debug("association from %s ended: %s", address, exc)
        except Exception:  # noqa: BLE001 - nothing of one association stops the listener
            log.exception("association from %s failed", address)
        finally:
            with self._lock:
                self._open.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _associate(self, sock: socket.socket, address: str, busy: bool) -> None:
        try:
            rq = read_pdu(sock, ASSOCIATE_LIMIT)
        except TimeoutError:            # ARTIM expired: close, no A-ABORT (PS3.8 9.2, AA-2)
            raise Closed("no A-ASSOCIATE-RQ within the ARTIM time") from None
        if not isinstance(rq, pdu.AssociateRQ):
            raise pdu.PduError(f"{type(rq).__name__} before an association",
                               pdu.UNEXPECTED_PDU)
        answer, agreed = acse.negotiate(rq, self.offer, busy=busy)
        sock.sendall(pdu.encode(answer))
        if agreed is None:
            log.info("association from %s (%s) rejected: %s", rq.calling, address, answer)
            return
        sock.settimeout(IDLE)
        assoc = Association(sock, address, agreed, self.limit, self.spool, self.spill_at)
        try:
            while (message := assoc.receive()) is not None:
                try:
                    self._dispatch(assoc, message)
                finally:
                    _remove_spool(message.data)
        finally:
            assoc.discard_partial()

    def _dispatch(self, assoc: Association, message: dimse.Message) -> None:
        service = self.services.get(message.field)
        if service is None:
            raise dimse.DimseError(f"command field 0x{message.field:04X} is not a request "
                                   "this node serves")
        try:
            service(assoc, message)
        except (Closed, OSError, pdu.PduError, dimse.DimseError):
            raise
        except Exception:  # noqa: BLE001 - a service's own failure: answer, go on
            log.exception("DIMSE 0x%04X from %s failed", message.field, assoc.calling)
            assoc.send(dimse.Message(message.context_id, dimse.response(
                message, message.field | 0x8000, dimse.PROCESSING_FAILURE)))


def _remove_spool(data: Any) -> None:
    """A spooled data set is done with once its message has been served: close and remove
    its file (what the service kept of it, it linked elsewhere)."""
    if isinstance(data, Region) and data.path:
        try:
            data.fh.close()
            os.unlink(data.path)
        except OSError:
            pass


__all__ = ["Region", "Association", "Listener", "Closed", "Refused", "request_association",
           "Service", "read_pdu", "no_delay", "ARTIM", "IDLE"]

"""The node's DICOM listener (CONTRACT.md: HIE_DICOM_PORT, AE title HIE_DICOM_AE_TITLE): what it
offers at association negotiation (:mod:`dicom_qr.acse`) and the DIMSE services it runs on the
node's own Upper Layer (:mod:`dicom_qr.ul`) — each decodes the request, calls the transaction,
encodes the responses.

Services (DICOM PS3.4):

- Verification (C-ECHO, Annex A);
- Storage (C-STORE, Annex B) for every storage SOP class of pynetdicom's list, in every
  transfer syntax it knows (implicit / explicit little endian, deflate, big endian, JPEG
  baseline / extended / lossless, JPEG-LS, JPEG 2000, RLE, …): the instance is kept
  **byte for byte as received** — a File Meta Information (PS3.10 7.1) before the data set
  exactly as it came over the association (:mod:`dicom_qr.part10`) — in the node's blob store,
  and indexed (:mod:`dicom_qr.receive`).  Status 0x0000; 0xC000 "cannot understand" for a data
  set without its UIDs or that cannot be decoded; 0xA700 "out of resources" when it cannot be
  stored.  Only the index's attributes are read from the data set
  (:mod:`dicom_qr.header`); a data set past :data:`dicom_qr.ul.SPILL_AT` octets is spooled
  to a file as it arrives and that file becomes the blob (:class:`dicom_qr.receive.Spool`).
- Query (C-FIND, Annex C) in the Patient Root and Study Root information models
  (:mod:`dicom_qr.cfind`): a pending 0xFF00 per match, 0x0000 at the end, 0xFE00 when the
  requester cancels, 0xA900 / 0xC000 for an identifier that cannot be processed.
- Retrieve (C-MOVE to a peer of HIE_DICOM_PEERS, C-GET over the requester's association;
  Annex C, :mod:`dicom_qr.retrieve`) in both models.
- Forwarding of what is stored, by rules, through the outbox (:mod:`dicom_qr.forward`).
- Storage Commitment Push Model (N-ACTION, the N-EVENT-REPORT through the outbox; Annex J,
  :mod:`dicom_qr.commitment`).

A request on a presentation context of another service is answered 0x0122 "SOP class not
supported".  Every C-STORE, C-FIND, C-MOVE and C-GET is audited like the node's other
transactions, before its final response leaves (DICOM PS3.15 A.5: 110104 DICOM Instances
Transferred, 110112 Query, 110106 Export).
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                  PatientRootQueryRetrieveInformationModelGet,
                                  PatientRootQueryRetrieveInformationModelMove,
                                  StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet,
                                  StudyRootQueryRetrieveInformationModelMove,
                                  StorageCommitmentPushModel, Verification)

from dicom_qr import acse, cfind, commitment, dimse, forward, part10, receive, retrieve, store
from dicom_qr import xdsi
from dicom_qr.association import context as _context
from dicom_qr.dimse import CANCEL, PENDING, SUCCESS, Message
from dicom_qr.ul import Association, Listener, Region
from hie.context import SERIOUS_FAILURE, Context
from hie.transactions import DICOM_C_FIND, DICOM_C_STORE

log = logging.getLogger("dicom_qr.scp")

CANNOT_UNDERSTAND = receive.CANNOT_UNDERSTAND   # C-FIND's too (PS3.4 C.4.1.1.4)
SOP_CLASS_NOT_SUPPORTED = 0x0122
ANSWERS_PER_WRITE = 32
MAX_LENGTH = 1 << 20                             # the node's Maximum Length (PS3.7 D.3.3.1)
STORAGE = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
FIND = frozenset({str(PatientRootQueryRetrieveInformationModelFind),
                  str(StudyRootQueryRetrieveInformationModelFind)})
MOVE = frozenset({str(PatientRootQueryRetrieveInformationModelMove),
                  str(StudyRootQueryRetrieveInformationModelMove)})
GET = frozenset({str(PatientRootQueryRetrieveInformationModelGet),
                 str(StudyRootQueryRetrieveInformationModelGet)})
COMMITMENT = frozenset({str(StorageCommitmentPushModel)})


def offer() -> acse.Offer:
    """What the listener accepts: every service's SOP classes in every transfer syntax
    pynetdicom knows (in its order: implicit, explicit, deflated little endian, big endian,
    then the compressed ones); the storage classes in both roles (C-GET sends on them)."""
    syntaxes = tuple(str(ts) for ts in ALL_TRANSFER_SYNTAXES)
    served = STORAGE | FIND | MOVE | GET | COMMITMENT | {str(Verification)}
    return acse.Offer({sop: syntaxes for sop in served}, STORAGE, MAX_LENGTH)


def _answer(assoc: Association, request: Message, field: int, status: int,
            data: bytes | None = None, **more: Any) -> None:
    assoc.send(Message(request.context_id, dimse.response(request, field, status, **more),
                       data))


def _serves(classes: frozenset[str], field: int):
    """A service run only on a presentation context of one of ``classes``; others get 0x0122."""
    def wrap(service):
        @functools.wraps(service)
        def guarded(assoc: Association, request: Message, *args):
            if assoc.context(request).abstract_syntax not in classes:
                _answer(assoc, request, field, SOP_CLASS_NOT_SUPPORTED,
                        ErrorComment="not a SOP class of this service")
                return
            service(assoc, request, *args)
        return guarded
    return wrap


def handle_echo(assoc: Association, request: Message) -> None:
    """C-ECHO (PS3.7 9.1.5): success."""
    _answer(assoc, request, dimse.C_ECHO_RSP, SUCCESS)


@_serves(STORAGE, dimse.C_STORE_RSP)
def handle_store(assoc: Association, request: Message, node: Any) -> None:
    """C-STORE, audited (110104 DICOM Instances Transferred)."""
    ctx, started = _context(node, assoc, DICOM_C_STORE), time.perf_counter()
    status = _store(assoc, request, node, ctx)
    if status != SUCCESS:
        ctx.fail(SERIOUS_FAILURE, f"status 0x{status:04X}")
    ctx.finish(time.perf_counter() - started)
    _answer(assoc, request, dimse.C_STORE_RSP, status)


def _store(assoc: Association, request: Message, node: Any, ctx: Context) -> int:
    """Keep the bytes as received, index them (:func:`dicom_qr.receive.accept`); the status.
    The bytes go to the store (:class:`dicom_qr.receive.EarlyWrite`) while the data set is
    read."""
    syntax, command = assoc.context(request).transfer_syntax, request.command
    sop_class, sop_uid = command.get("AffectedSOPClassUID"), command.get("AffectedSOPInstanceUID")
    if request.data is None or not sop_class or not sop_uid:
        return CANNOT_UNDERSTAND
    spooled = isinstance(request.data, Region)      # a large data set, in its file already
    kept = receive.EarlyWrite(node, request.data if spooled else part10.file_bytes(
        sop_class, sop_uid, syntax, request.data, assoc.calling))
    try:
        received = receive.Received.spooled(request.data, syntax) if spooled else \
            receive.Received.read(request.data, syntax)
    except Exception as exc:  # noqa: BLE001 - a data set that cannot be decoded
        log.warning("C-STORE from %s refused: cannot decode the data set: %s", assoc.calling,
                    exc)
        kept.discard()
        return CANNOT_UNDERSTAND
    cache = assoc.state.setdefault("levels", store.LevelCache())
    outcome = receive.accept(node, ctx, received, kept, syntax, assoc.calling, cache)
    if outcome.status == CANNOT_UNDERSTAND:
        kept.discard()
    return outcome.status


@_serves(FIND, dimse.C_FIND_RSP)
def handle_find(assoc: Association, request: Message, node: Any) -> None:
    """C-FIND: a pending answer per match, then the final status; audited (110112 Query, with
    the patients asked for).  The answers leave in writes of up to :data:`ANSWERS_PER_WRITE`,
    the final response with the last of them; a C-CANCEL-RQ is looked for before each write."""
    ctx, started = _context(node, assoc, DICOM_C_FIND), time.perf_counter()
    cx = assoc.context(request)
    found, status = _find(assoc, request, node, ctx)
    pending = [Message(request.context_id, dimse.response(request, dimse.C_FIND_RSP, PENDING),
                       part10.write(identifier, cx.transfer_syntax)) for identifier in found]
    if status is not None:
        ctx.fail(SERIOUS_FAILURE, f"status 0x{status:04X}")
    audited = False
    try:
        for at in range(0, len(pending), ANSWERS_PER_WRITE):
            if assoc.cancelled(request.message_id):
                status = CANCEL
                break
            if at + ANSWERS_PER_WRITE < len(pending):
                assoc.send(*pending[at:at + ANSWERS_PER_WRITE])
                continue
            audited = True
            ctx.finish(time.perf_counter() - started)
            assoc.send(*pending[at:], Message(request.context_id, dimse.response(
                request, dimse.C_FIND_RSP, SUCCESS)))
            return
        audited = True
        ctx.finish(time.perf_counter() - started)
        _answer(assoc, request, dimse.C_FIND_RSP, SUCCESS if status is None else status)
    finally:
        if not audited:                    # the requester aborted in the middle
            ctx.fail(SERIOUS_FAILURE, "the association was aborted")
            ctx.finish(time.perf_counter() - started)


def _find(assoc: Association, request: Message, node: Any, ctx: Context
          ) -> tuple[list[Dataset], int | None]:
    """(the answers, None) or ([], a failure status)."""
    cx = assoc.context(request)
    try:
        query = cfind.read_identifier(request.data, cx.transfer_syntax, cx.abstract_syntax)
    except cfind.QueryError as exc:
        log.info("C-FIND from %s refused: %s", assoc.calling, exc)
        return [], exc.status
    if "PatientID" in query.matching:
        ctx.note(query.matching["PatientID"])
    try:
        with node.db.read() as conn:
            return list(cfind.answers(conn, query, node.settings.dicom_ae_title)), None
    except Exception:  # noqa: BLE001 - the index cannot be read
        log.exception("C-FIND failed")
        return [], CANNOT_UNDERSTAND


class DicomListener:
    """The running listener: :meth:`start` binds, :attr:`address`, :meth:`stop`."""

    def __init__(self, node: Any):
        self.node = node
        self.server: Listener | None = None
        self.publisher = xdsi.Publisher(node)     # XDS-I.b manifests of quiet studies

    def start(self, host: str, port: int) -> tuple[str, int]:
        forward.check(self.node.settings)          # a wrong forwarding rule stops the start
        node = self.node
        services = {
            dimse.C_ECHO_RQ: handle_echo,
            dimse.C_STORE_RQ: lambda a, m: handle_store(a, m, node),
            dimse.C_FIND_RQ: lambda a, m: handle_find(a, m, node),
            dimse.C_MOVE_RQ: _serves(MOVE, dimse.C_MOVE_RSP)(
                lambda a, m: retrieve.handle_move(a, m, node)),
            dimse.C_GET_RQ: _serves(GET, dimse.C_GET_RSP)(
                lambda a, m: retrieve.handle_get(a, m, node)),
            dimse.N_ACTION_RQ: _serves(COMMITMENT, dimse.N_ACTION_RSP)(
                lambda a, m: commitment.handle_action(a, m, node)),
        }
        self.server = Listener(offer(), services,
                               spool=lambda a, m: receive.spool_for(node, a, m))
        address = self.server.start(host, port)
        self.publisher.start()
        return address

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def stop(self) -> None:
        self.publisher.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None


__all__ = ["DicomListener", "offer", "handle_echo", "handle_store", "handle_find"]

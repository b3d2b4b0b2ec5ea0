"""The node's DICOM listener (CONTRACT.md: HIE_DICOM_PORT, AE title HIE_DICOM_AE_TITLE) on
pynetdicom: the transport of the imaging transactions — it decodes, calls the handler, encodes.

Services (DICOM PS3.4):

- Verification (C-ECHO, Annex A);
- Storage (C-STORE, Annex B) for every storage SOP class pynetdicom knows, accepting every
  transfer syntax it knows (implicit / explicit little endian, deflate, big endian, JPEG
  baseline / extended / lossless, JPEG-LS, JPEG 2000, RLE, …): the instance is kept
  **byte for byte as received** — the File Meta Information (PS3.10 7.1) before the data set
  exactly as it came over the association — in the node's blob store, and indexed
  (:mod:`dicom_qr.receive`).  Status 0x0000; 0xC000 "cannot understand" for a data set without
  its UIDs or that cannot be decoded; 0xA700 "out of resources" when it cannot be stored.
- Query (C-FIND, Annex C) in the Patient Root and Study Root information models
  (:mod:`dicom_qr.cfind`): a pending 0xFF00 per match, 0x0000 at the end, 0xFE00 when the
  requester cancels, 0xA900 / 0xC000 for an identifier that cannot be processed.
- Retrieve (C-MOVE to a peer of HIE_DICOM_PEERS, C-GET over the requester's association;
  Annex C, :mod:`dicom_qr.retrieve`) in both models.
- Forwarding of what is stored, by rules, through the outbox (:mod:`dicom_qr.forward`).
- Storage Commitment Push Model (N-ACTION, the N-EVENT-REPORT through the outbox; Annex J,
  :mod:`dicom_qr.commitment`).

An association that breaks off, a malformed PDU or an oversized one is pynetdicom's to abort
(A-ABORT); the listener goes on.  Every C-STORE, C-FIND, C-MOVE and C-GET is audited like the
node's other transactions (DICOM PS3.15 A.5: 110104 DICOM Instances Transferred, 110112
Query, 110106 Export).
"""
from __future__ import annotations

import logging
import socket
import time
import weakref
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.transport import ThreadedAssociationServer
from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                  PatientRootQueryRetrieveInformationModelGet,
                                  PatientRootQueryRetrieveInformationModelMove,
                                  StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet,
                                  StudyRootQueryRetrieveInformationModelMove,
                                  StorageCommitmentPushModel, Verification)

from dicom_qr import cfind, commitment, forward, receive, retrieve, store, xdsi
from dicom_qr.association import context as _context, requestor as _requestor
from hie.context import SERIOUS_FAILURE, Context
from hie.transactions import DICOM_C_FIND, DICOM_C_STORE

log = logging.getLogger("dicom_qr.scp")

SUCCESS, PENDING, CANCEL = 0x0000, 0xFF00, 0xFE00
CANNOT_UNDERSTAND = receive.CANNOT_UNDERSTAND   # C-FIND's too (PS3.4 C.4.1.1.4)
# the level rows each open association has written (dicom_qr.store.LevelCache)
_LEVELS: "weakref.WeakKeyDictionary[Any, store.LevelCache]" = weakref.WeakKeyDictionary()


def handle_store(event, node: Any) -> int:
    """C-STORE, audited (110104 DICOM Instances Transferred)."""
    ctx, started = _context(node, event, DICOM_C_STORE), time.perf_counter()
    status = _store(event, node, ctx)
    if status != SUCCESS:
        ctx.fail(SERIOUS_FAILURE, f"status 0x{status:04X}")
    ctx.finish(time.perf_counter() - started)
    return status


def _store(event, node: Any, ctx: Context) -> int:
    """Keep the bytes as received, index them (:func:`dicom_qr.receive.accept`); the status."""
    try:
        ds = event.dataset
    except Exception as exc:  # noqa: BLE001 - a data set pydicom cannot decode
        log.warning("C-STORE from %s refused: cannot decode the data set: %s",
                    _requestor(event), exc)
        return receive.CANNOT_UNDERSTAND
    return receive.accept(node, ctx, ds, lambda: event.encoded_dataset(include_meta=True),
                          str(event.context.transfer_syntax), _requestor(event),
                          _LEVELS.setdefault(event.assoc, store.LevelCache())).status


def handle_find(event, node: Any):
    """C-FIND: pending answers, then the final status (pynetdicom sends it); audited (110112
    Query, with the patients asked for)."""
    ctx, started = _context(node, event, DICOM_C_FIND), time.perf_counter()
    try:
        found, status = _find(event, node, ctx)
        if status is not None:
            ctx.fail(SERIOUS_FAILURE, f"status 0x{status:04X}")
            yield status, None
            return
        for identifier in found:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, identifier
    finally:
        ctx.finish(time.perf_counter() - started)


def _find(event, node: Any, ctx: Context) -> tuple[list, int | None]:
    """(the answers, None) or ([], a failure status)."""
    model = str(event.request.AffectedSOPClassUID)
    try:
        query = cfind.parse(event.identifier, model)
    except cfind.QueryError as exc:
        log.info("C-FIND from %s refused: %s", _requestor(event), exc)
        return [], exc.status
    except Exception as exc:  # noqa: BLE001 - an identifier pydicom cannot decode
        log.info("C-FIND from %s: cannot decode the identifier: %s", _requestor(event), exc)
        return [], CANNOT_UNDERSTAND
    if "PatientID" in query.matching:
        ctx.note(query.matching["PatientID"])
    try:
        with node.db.read() as conn:
            return list(cfind.answers(conn, query, node.settings.dicom_ae_title)), None
    except Exception:  # noqa: BLE001 - the index cannot be read
        log.exception("C-FIND failed")
        return [], CANNOT_UNDERSTAND


def _no_delay(sock) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class _NoDelayServer(ThreadedAssociationServer):
    """Answers leave at once: a DIMSE message is a command PDU and then a data set PDU, and
    with Nagle's algorithm the second waits for the peer's delayed ACK (~40 ms a message: a
    C-FIND took 92 ms instead of 2)."""

    def get_request(self):
        sock, address = super().get_request()
        _no_delay(sock)
        return sock, address


class NodeAE(AE):
    """pynetdicom's AE with TCP_NODELAY on the associations it accepts and those it opens
    (C-MOVE sub-operations to a Move Destination)."""

    def make_server(self, *args, server_class=None, **kwargs):
        if server_class is ThreadedAssociationServer:
            server_class = _NoDelayServer
        return super().make_server(*args, server_class=server_class, **kwargs)

    def associate(self, *args, **kwargs):
        assoc = super().associate(*args, **kwargs)
        if assoc.is_established:
            _no_delay(getattr(getattr(assoc.dul, "socket", None), "socket", None))
        return assoc


def application_entity(node: Any) -> AE:
    ae = NodeAE(ae_title=node.settings.dicom_ae_title)
    ae.maximum_pdu_size = 0                 # take what the requester proposes (PS3.8 D.3.3.1)
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(StorageCommitmentPushModel, ALL_TRANSFER_SYNTAXES)
    for cx in AllStoragePresentationContexts:   # C-STORE, and the SCP role of a C-GET
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES,
                                 scu_role=True, scp_role=True)
    for model in (PatientRootQueryRetrieveInformationModelFind,
                  StudyRootQueryRetrieveInformationModelFind,
                  PatientRootQueryRetrieveInformationModelMove,
                  StudyRootQueryRetrieveInformationModelMove,
                  PatientRootQueryRetrieveInformationModelGet,
                  StudyRootQueryRetrieveInformationModelGet):
        ae.add_supported_context(model, ALL_TRANSFER_SYNTAXES)
    return ae


class DicomListener:
    """The running listener: :meth:`start` binds, :attr:`address`, :meth:`stop`."""

    def __init__(self, node: Any):
        self.node = node
        self.server = None
        self.publisher = xdsi.Publisher(node)     # XDS-I.b manifests of quiet studies

    def start(self, host: str, port: int) -> tuple[str, int]:
        forward.check(self.node.settings)          # a wrong forwarding rule stops the start
        ae = application_entity(self.node)
        handlers = [(evt.EVT_C_STORE, handle_store, [self.node]),
                    (evt.EVT_C_FIND, handle_find, [self.node]),
                    (evt.EVT_C_MOVE, retrieve.handle_move, [self.node]),
                    (evt.EVT_C_GET, retrieve.handle_get, [self.node]),
                    (evt.EVT_N_ACTION, commitment.handle_action, [self.node])]
        self.server = ae.start_server((host, port), block=False, evt_handlers=handlers)
        self.publisher.start()
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    def stop(self) -> None:
        self.publisher.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server = None


__all__ = ["DicomListener", "application_entity", "handle_store", "handle_find"]

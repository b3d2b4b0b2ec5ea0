"""Storage Commitment Push Model, SCP side (DICOM PS3.4 Annex J; SOP Class 1.2.840.10008.1.20.1,
well-known SOP Instance 1.2.840.10008.1.20.1.1): a modality asks the node to take
responsibility for instances it sent, and is told which it holds.

- **N-ACTION** (J.3.2; Action Type ID 1, "Request Storage Commitment"): the Action Information
  carries a ``TransactionUID`` and a ``ReferencedSOPSequence`` (SOP Class / Instance UID
  pairs).  The request is accepted (0x0000) when it is well formed and its requester is a peer
  of ``HIE_DICOM_PEERS`` (the node must be able to call it back), and the commitment is
  written to the node's durable outbox in the same unit of work.  Failures are the N-ACTION
  statuses of PS3.7 C.4.4: 0x0123 no such action type, 0x0112 no such SOP instance (not the
  well-known one), 0x0115 invalid argument value (no TransactionUID, nothing referenced),
  0x0110 processing failure (a requester the node cannot call back, the outbox not written).
- **N-EVENT-REPORT** (J.3.3): delivered by the outbox worker, with its retry and back-off, on
  a new association to the requester in which the node plays the SCP role of the SOP class
  (SCP/SCU Role Selection, PS3.7 D.3.3.4).  Each referenced instance is checked against the
  index and the store when the report is built: held — same SOP Class, bytes present — it
  goes to ``ReferencedSOPSequence`` (with the RetrieveAETitle); otherwise to
  ``FailedSOPSequence`` with ``FailureReason`` 0x0112 (no such object instance) or 0x0119
  (class / instance conflict).  Event Type ID 1 when every instance is committed, 2 when
  some failed (J.3.3.1).
"""
from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from pydicom.dataset import Dataset
from pynetdicom import build_role
from pynetdicom.sop_class import StorageCommitmentPushModel

from dicom_qr import dimse, part10
from dicom_qr.attrs import text_of
from dicom_qr.tables import dicom_instance as I
from hie.outbox import DeliveryError, Message

log = logging.getLogger("dicom_qr.commitment")

KIND = "dicom-storage-commitment"
WELL_KNOWN = "1.2.840.10008.1.20.1.1"
REQUEST_STORAGE_COMMITMENT = 1
ALL_COMMITTED, SOME_FAILED = 1, 2          # Event Type IDs (J.3.3.1)
PROCESSING_FAILURE, NO_SUCH_INSTANCE = 0x0110, 0x0112
INVALID_ARGUMENT, NO_SUCH_ACTION = 0x0115, 0x0123
CLASS_INSTANCE_CONFLICT = 0x0119


class Refused(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_request(action_type: int, instance_uid: str, info: Dataset | None
                  ) -> tuple[str, list[tuple[str, str]]]:
    """(TransactionUID, [(SOP Class UID, SOP Instance UID)]) of an N-ACTION request; raises
    :class:`Refused` with its status."""
    if action_type != REQUEST_STORAGE_COMMITMENT:
        raise Refused(NO_SUCH_ACTION, f"Action Type ID {action_type} is not 1")
    if instance_uid != WELL_KNOWN:
        raise Refused(NO_SUCH_INSTANCE, f"{instance_uid} is not the well-known instance")
    if info is None:
        raise Refused(INVALID_ARGUMENT, "no Action Information")
    transaction = text_of(info.get("TransactionUID", ""))
    if not transaction:
        raise Refused(INVALID_ARGUMENT, "no TransactionUID")
    refs = []
    for item in info.get("ReferencedSOPSequence", None) or []:
        cls = text_of(item.get("ReferencedSOPClassUID", ""))
        uid = text_of(item.get("ReferencedSOPInstanceUID", ""))
        if not cls or not uid:
            raise Refused(INVALID_ARGUMENT, "a ReferencedSOPSequence item lacks its UIDs")
        refs.append((cls, uid))
    if not refs:
        raise Refused(INVALID_ARGUMENT, "ReferencedSOPSequence is empty")
    return transaction, refs


def handle_action(assoc: Any, request: dimse.Message, node: Any) -> None:
    """N-ACTION: accept the request and queue its report, or a failure status; answered
    N-ACTION-RSP (PS3.7 10.1.4)."""
    status, comment = _action(assoc, request, node)
    more = {"ErrorComment": comment[:64]} if comment else {}
    assoc.send(dimse.Message(request.context_id, dimse.response(
        request, dimse.N_ACTION_RSP, status, ActionTypeID=request.command.get("ActionTypeID"),
        **more)))


def _action(assoc: Any, request: dimse.Message, node: Any) -> tuple[int, str]:
    calling = assoc.calling
    try:
        info = part10.read(request.data, assoc.context(request).transfer_syntax) \
            if request.data is not None else None
        transaction, refs = parse_request(int(request.command.get("ActionTypeID", 0)),
                                          str(request.command.get("RequestedSOPInstanceUID")),
                                          info)
    except Refused as exc:
        log.info("storage commitment from %s refused: %s", calling, exc)
        return exc.status, str(exc)
    except Exception as exc:  # noqa: BLE001 - Action Information pydicom cannot decode
        log.info("storage commitment from %s: cannot decode the request: %s", calling, exc)
        return INVALID_ARGUMENT, "the Action Information cannot be decoded"
    peer = next((p for p in node.settings.dicom_peers if p.ae_title == calling), None)
    if peer is None:
        return PROCESSING_FAILURE, (f"{calling} is not a known DICOM peer "
                                    "(HIE_DICOM_PEERS): its report cannot be sent")
    payload = json.dumps({"transaction": transaction, "refs": refs}).encode()
    try:
        with node.db.begin() as conn:
            node.outbox.enqueue(conn, KIND, str(peer),
                                payload)
    except Exception:  # noqa: BLE001 - the outbox cannot be written
        log.exception("storage commitment %s could not be queued", transaction)
        return PROCESSING_FAILURE, "the commitment could not be recorded"
    log.info("storage commitment %s from %s: %d instances", transaction, calling, len(refs))
    return 0x0000, ""


def report(conn, refs: list[tuple[str, str]], transaction: str, ae_title: str,
           blobs: Any) -> tuple[int, Dataset]:
    """(Event Type ID, Event Information) of the N-EVENT-REPORT for ``refs``, from the index
    and the store as they are now."""
    held = {r.sop_uid: r for r in conn.execute(
        sa.select(I.c.sop_uid, I.c.sop_class, I.c.blob_key).where(
            I.c.sop_uid.in_([uid for _cls, uid in refs])))}
    ok, failed = [], []
    for cls, uid in refs:
        row = held.get(uid)
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = cls, uid
        if row is None or not blobs.exists(row.blob_key):
            item.FailureReason = NO_SUCH_INSTANCE
            failed.append(item)
        elif row.sop_class != cls:
            item.FailureReason = CLASS_INSTANCE_CONFLICT
            failed.append(item)
        else:
            item.RetrieveAETitle = ae_title
            ok.append(item)
    info = Dataset()
    info.TransactionUID = transaction
    info.RetrieveAETitle = ae_title
    if ok:
        info.ReferencedSOPSequence = ok
    if failed:
        info.FailedSOPSequence = failed
    return (SOME_FAILED if failed else ALL_COMMITTED), info


def deliver(node: Any, msg: Message) -> None:
    """The outbox deliverer: build the report now, send it on a new association."""
    from dicom_qr.association import NodeAE
    from hie.settings import Peer

    job = json.loads(msg.payload)
    peer = Peer.parse(msg.destination)
    with node.db.read() as conn:
        event_type, info = report(conn, [tuple(r) for r in job["refs"]], job["transaction"],
                                  node.settings.dicom_ae_title, node.blobs)
    ae = NodeAE(ae_title=node.settings.dicom_ae_title)
    ae.add_requested_context(StorageCommitmentPushModel)
    roles = [build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)]
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, ext_neg=roles)
    if not assoc.is_established:
        raise DeliveryError(f"no association with {msg.destination}")
    try:
        status, _reply = assoc.send_n_event_report(info, event_type, StorageCommitmentPushModel,
                                                   WELL_KNOWN)
    finally:
        assoc.release()
    code = int(getattr(status, "Status", -1)) if status else -1
    if code != 0x0000:
        raise DeliveryError(f"N-EVENT-REPORT to {msg.destination}: status 0x{code & 0xFFFF:04X}"
                            if code >= 0 else f"N-EVENT-REPORT to {msg.destination}: no answer")
    log.info("storage commitment %s reported to %s (event type %d)", job["transaction"],
             msg.destination, event_type)


def install(node: Any) -> None:
    import functools
    node.outbox.register(KIND, functools.partial(deliver, node))


__all__ = ["KIND", "WELL_KNOWN", "parse_request", "handle_action", "report", "deliver",
           "install"]

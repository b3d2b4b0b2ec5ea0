"""C-MOVE and C-GET SCP (DICOM PS3.4 C.4.2, C.4.3): which instances a retrieve names, and their
C-STORE sub-operations.

The identifier names the instances as a C-FIND would, at its QueryRetrieveLevel, by the
unique keys (PatientID; StudyInstanceUID; SeriesInstanceUID; SOPInstanceUID — lists allowed,
C.4.2.2.1) and, relationally, by any other key the index holds: :func:`instances` runs the
same selection as :mod:`dicom_qr.cfind` at the IMAGE level and returns each instance's stored
bytes' key.  A retrieve that names nothing is answered 0x0000 with no sub-operation.

- **C-MOVE**: the Move Destination must be a peer of ``HIE_DICOM_PEERS`` (its AE title, host
  and port; an unknown one — or one that refuses the association — is 0xA801 "Move
  Destination unknown"); the node opens an association to it (:func:`dicom_qr.ul.
  request_association`, the contexts of :func:`contexts`) and sends each instance by C-STORE
  with the Move Originator's AE title and message ID (PS3.7 9.1.1.1).
- **C-GET**: the instances go back over the requester's own association, on the contexts of
  the storage SOP classes for which it took the SCP role (PS3.4 C.4.3.1, PS3.7 D.3.3.4).

Each instance goes as stored when its transfer syntax was accepted — one larger than
:data:`READ_WHOLE` read from its file a PDU at a time as it is sent
(:class:`dicom_qr.ul.Region`), so a retrieve of a gigabyte instance holds a PDU of it in
memory, not the gigabyte — else decoded and written in an uncompressed
syntax that was (:func:`send_stored`); one with neither, or whose stored bytes are gone, is a
failed sub-operation, not a stopped retrieve.  A pending 0xFF00 with the
sub-operation counts follows each sub-operation; the final response is 0x0000, 0xB000 (some
failed, FailedSOPInstanceUIDList in its identifier), 0xA702 (all failed) or 0xFE00 when the
requester cancels (PS3.4 C.4.2.1.5, C.4.2.3.1).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydicom.dataset import Dataset
from sqlalchemy.engine import Connection

from dicom_qr import cfind, dimse, part10, ul
from dicom_qr.association import context as _context, sending_pairs
from dicom_qr.dimse import CANCEL, PENDING, SUCCESS, Message
from dicom_qr.tables import dicom_instance as I
from hie.context import SERIOUS_FAILURE, Context
from hie.transactions import DICOM_C_GET, DICOM_C_MOVE

log = logging.getLogger("dicom_qr.retrieve")
READ_WHOLE = 4 << 20    # octets of a stored data set read at once; larger ones are streamed

MOVE_DESTINATION_UNKNOWN = 0xA801
UNABLE_TO_PERFORM = 0xA702
SOME_FAILED = 0xB000
MAX_CONTEXTS = 128
MAX_SUBOPERATIONS = 0xFFFF          # the counts are US (PS3.7 E.1-1)


@dataclass(frozen=True)
class Stored:
    sop_uid: str
    sop_class: str
    blob_key: str
    transfer_syntax: str


def instances(conn: Connection, query: cfind.Query) -> list[Stored]:
    """The stored instances ``query`` names (any level, matched as C-FIND matches)."""
    if not query.matching:
        return []
    image = cfind.through_index(conn, cfind.Query(query.model, "IMAGE", dict(query.matching),
                                                  [], query.charset))
    ids = cfind.statement(image).with_only_columns(I.c.id)
    rows = conn.execute(sa.select(I.c.sop_uid, I.c.sop_class, I.c.blob_key, I.c.transfer_syntax)
                        .where(I.c.id.in_(ids)).order_by(I.c.id)).all()
    return [Stored(*r) for r in rows]


def contexts(found: list[Stored]) -> list[tuple[str, list[str]]]:
    """The presentation contexts the association to a Move Destination proposes
    (:func:`dicom_qr.association.sending_pairs`: each SOP class in the syntax it was stored
    in, alone, and in the two uncompressed ones), at most 128 (PS3.8 9.3.2.2)."""
    return sending_pairs((s.sop_class, s.transfer_syntax) for s in found)[:MAX_CONTEXTS]


def _opened(node: Any, key: str) -> tuple[str, ul.Region]:
    """(transfer syntax, the data set in the open file) of a stored instance: only its File
    Meta Information is read here (PS3.10 7.1: its group length follows the preamble)."""
    fh = node.blobs.open(key)
    try:
        head = fh.read(144)
        if len(head) < 144 or head[128:132] != b"DICM":
            raise ValueError("not a DICOM file (no DICM prefix)")
        head += fh.read(int.from_bytes(head[140:144], "little"))
        syntax, rest = part10.data_set(head)
        offset = len(head) - len(rest)
        fh.seek(0, 2)
        return syntax, ul.Region(fh, offset, fh.tell() - offset)
    except BaseException:
        fh.close()
        raise


def send_stored(assoc: ul.Association, node: Any, s: Stored, *, usable: set[str] | None = None,
                originator: tuple[str, int] | None = None) -> int | None:
    """C-STORE the stored instance ``s`` on ``assoc`` (contexts of its SOP class; ``usable``:
    only those SOP classes); its status, or None when it cannot be sent (bytes lost, no
    context for it)."""
    cxs = [cx for cx in assoc.agreed.contexts.values() if cx.abstract_syntax == s.sop_class
           and (usable is None or s.sop_class in usable)]
    if not cxs:
        log.warning("instance %s: %s was not accepted", s.sop_uid, s.sop_class)
        return None
    try:
        syntax, region = _opened(node, s.blob_key)
    except Exception as exc:  # noqa: BLE001 - a lost blob fails its own sub-operation
        log.error("instance %s cannot be read from storage: %s", s.sop_uid, exc)
        return None
    with region.fh:
        # a large data set is sent from the file as it is read; a small one read at once
        data: bytes | ul.Region = region if region.length > READ_WHOLE else \
            region.read(0, region.length)
        cx = next((c for c in cxs if c.transfer_syntax == syntax), None)
        if cx is None:
            cx = next((c for c in cxs if c.transfer_syntax in part10.NATIVE), None)
            if cx is None or syntax not in part10.NATIVE:
                log.warning("instance %s: its syntax %s was not accepted", s.sop_uid, syntax)
                return None
            data = part10.write(part10.read(region.read(0, region.length), syntax),
                                cx.transfer_syntax)
        command = {"AffectedSOPClassUID": s.sop_class, "CommandField": dimse.C_STORE_RQ,
                   "Priority": 0, "AffectedSOPInstanceUID": s.sop_uid}
        if originator is not None:
            command["MoveOriginatorApplicationEntityTitle"] = originator[0]
            command["MoveOriginatorMessageID"] = originator[1]
        answer = assoc.request(Message(cx.id, command, data))
    return int(answer.command.get("Status", -1))


def _select(assoc: ul.Association, request: Message, node: Any
            ) -> tuple[list[Stored], int | None]:
    cx = assoc.context(request)
    try:
        query = cfind.read_identifier(request.data, cx.transfer_syntax, cx.abstract_syntax)
    except cfind.QueryError as exc:
        log.info("retrieve from %s refused: %s", assoc.calling, exc)
        return [], exc.status
    with node.db.read() as conn:
        return instances(conn, query), None


def _final(assoc: ul.Association, request: Message, field: int, status: int,
           counts: dict[str, int] | None = None, failed: list[str] = ()) -> Message:
    data = None
    if failed:
        ds = Dataset()
        ds.FailedSOPInstanceUIDList = list(failed)
        data = part10.write(ds, assoc.context(request).transfer_syntax)
    return Message(request.context_id, dimse.response(request, field, status, **(counts or {})),
                   data)


def _suboperations(assoc: ul.Association, request: Message, field: int, found: list[Stored],
                   send_one) -> tuple[Message, int]:
    """Run ``send_one`` for each of ``found`` with a pending response after each; (the final
    response, how many failed)."""
    done = warned = 0
    failed: list[str] = []
    for n, s in enumerate(found):
        if assoc.cancelled(request.message_id):
            counts = {"NumberOfRemainingSuboperations": len(found) - n,
                      "NumberOfCompletedSuboperations": done,
                      "NumberOfFailedSuboperations": len(failed),
                      "NumberOfWarningSuboperations": warned}
            return _final(assoc, request, field, CANCEL, counts, failed), len(failed)
        status = send_one(s)
        if status == SUCCESS:
            done += 1
        elif status is not None and status & 0xF000 == 0xB000:
            warned += 1
        else:
            failed.append(s.sop_uid)
        counts = {"NumberOfRemainingSuboperations": len(found) - n - 1,
                  "NumberOfCompletedSuboperations": done,
                  "NumberOfFailedSuboperations": len(failed),
                  "NumberOfWarningSuboperations": warned}
        if n + 1 < len(found):
            assoc.send(Message(request.context_id,
                               dimse.response(request, field, PENDING, **counts)))
    counts.pop("NumberOfRemainingSuboperations", None)
    status = SUCCESS if not failed and not warned else \
        UNABLE_TO_PERFORM if len(failed) == len(found) else SOME_FAILED
    return _final(assoc, request, field, status, counts, failed), len(failed)


def _retrieve(assoc: ul.Association, request: Message, node: Any, ctx: Context, field: int,
              open_destination) -> Message:
    """The sub-operations of a C-MOVE or C-GET; the final response (sent by the caller once
    the retrieve is audited)."""
    found, status = _select(assoc, request, node)
    if status is None and len(found) > MAX_SUBOPERATIONS:
        status = UNABLE_TO_PERFORM
    if status is not None:
        ctx.fail(SERIOUS_FAILURE, f"status 0x{status:04X}")
        return _final(assoc, request, field, status)
    ctx.note(None, [s.sop_uid for s in found])
    if not found:
        return _final(assoc, request, field, SUCCESS, {
            "NumberOfCompletedSuboperations": 0, "NumberOfFailedSuboperations": 0,
            "NumberOfWarningSuboperations": 0})
    sender = open_destination(found)
    if sender is None:
        ctx.fail(SERIOUS_FAILURE, "the Move Destination refused the association")
        return _final(assoc, request, field, MOVE_DESTINATION_UNKNOWN)
    try:
        final, failed = _suboperations(assoc, request, field, found, sender)
    finally:
        close = getattr(sender, "close", None)
        if close is not None:
            close()
    if failed:
        ctx.fail(SERIOUS_FAILURE, f"{failed} of {len(found)} sub-operations failed")
    return final


class _ToDestination:
    """C-STORE sub-operations of a C-MOVE on the node's association to the destination."""

    def __init__(self, dest: ul.Association, node: Any, originator: tuple[str, int]):
        self.dest, self.node, self.originator = dest, node, originator

    def __call__(self, s: Stored) -> int | None:
        return send_stored(self.dest, self.node, s, originator=self.originator)

    def close(self) -> None:
        self.dest.release()


def handle_move(assoc: ul.Association, request: Message, node: Any) -> None:
    """C-MOVE, audited (110106 Export, naming the instances sent)."""
    ctx, started = _context(node, assoc, DICOM_C_MOVE), time.perf_counter()
    try:
        final = _move(assoc, request, node, ctx)
    finally:
        ctx.finish(time.perf_counter() - started)
    assoc.send(final)


def _move(assoc: ul.Association, request: Message, node: Any, ctx: Context) -> Message:
    destination = str(request.command.get("MoveDestination", "")).strip()
    peer = next((p for p in node.settings.dicom_peers if p.ae_title == destination), None)
    if peer is None:
        log.info("C-MOVE to unknown destination %r refused", destination)
        ctx.fail(SERIOUS_FAILURE, f"unknown Move Destination {destination!r}")
        return _final(assoc, request, dimse.C_MOVE_RSP, MOVE_DESTINATION_UNKNOWN)
    ctx.extra["destination"] = str(peer)

    def open_destination(found: list[Stored]):
        try:
            dest = ul.request_association(peer.host, peer.port,
                                          node.settings.dicom_ae_title, peer.ae_title,
                                          contexts(found))
        except ul.Refused as exc:
            log.warning("C-MOVE: %s", exc)
            return None
        return _ToDestination(dest, node, (assoc.calling, request.message_id))
    return _retrieve(assoc, request, node, ctx, dimse.C_MOVE_RSP, open_destination)


def handle_get(assoc: ul.Association, request: Message, node: Any) -> None:
    """C-GET, audited like C-MOVE."""
    ctx, started = _context(node, assoc, DICOM_C_GET), time.perf_counter()
    usable = assoc.agreed.requester_scp
    try:
        final = _retrieve(assoc, request, node, ctx, dimse.C_GET_RSP,
                          lambda found: lambda s: send_stored(assoc, node, s, usable=usable))
    finally:
        ctx.finish(time.perf_counter() - started)
    assoc.send(final)


__all__ = ["Stored", "instances", "contexts", "send_stored", "handle_move", "handle_get",
           "MOVE_DESTINATION_UNKNOWN"]

"""C-MOVE and C-GET SCP (DICOM PS3.4 C.4.2, C.4.3): which instances a retrieve names, and the
handlers pynetdicom drives.

The identifier names the instances as a C-FIND would, at its QueryRetrieveLevel, by the
unique keys (PatientID; StudyInstanceUID; SeriesInstanceUID; SOPInstanceUID — lists allowed,
C.4.2.2.1) and, relationally, by any other key the index holds: :func:`instances` runs the
same selection as :mod:`dicom_qr.cfind` at the IMAGE level and returns each instance's stored
bytes' key.  A retrieve that names nothing is answered 0x0000 with no sub-operation.

- **C-MOVE**: the Move Destination must be a peer of ``HIE_DICOM_PEERS`` (its AE title, host
  and port; an unknown one is 0xA801 "Move Destination unknown"); pynetdicom opens the
  association to it and sends each instance by C-STORE, answering pending 0xFF00 with the
  sub-operation counts, then 0x0000, 0xB000 (some sub-operations failed) or 0xA702.
- **C-GET**: the instances go back over the requester's own association (it proposed the
  storage SOP classes in the SCP role, PS3.4 C.4.3.1).

An instance whose stored bytes are gone is a failed sub-operation, not a stopped retrieve.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pydicom
import sqlalchemy as sa
from pynetdicom import build_context
from pynetdicom.sop_class import Verification
from sqlalchemy.engine import Connection

from dicom_qr import cfind
from dicom_qr.association import context as _context, sending_contexts
from dicom_qr.tables import dicom_instance as I
from hie.context import SERIOUS_FAILURE, Context
from hie.transactions import DICOM_C_GET, DICOM_C_MOVE

log = logging.getLogger("dicom_qr.retrieve")

MOVE_DESTINATION_UNKNOWN = 0xA801
PENDING = 0xFF00
CANNOT_UNDERSTAND = 0xC000
MAX_CONTEXTS = 128


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


def _datasets(node: Any, found: list[Stored]) -> Iterator[tuple[int, Any]]:
    for s in found:
        try:
            path = node.blobs.path(s.blob_key)
            ds = pydicom.dcmread(path if path is not None else node.blobs.open(s.blob_key))
        except Exception as exc:  # noqa: BLE001 - a lost blob fails its own sub-operation
            log.error("instance %s cannot be read from storage: %s", s.sop_uid, exc)
            yield CANNOT_UNDERSTAND, None
            continue
        yield PENDING, ds


def _select(event, node: Any) -> tuple[list[Stored] | None, int | None]:
    try:
        query = cfind.parse(event.identifier, str(event.request.AffectedSOPClassUID))
    except cfind.QueryError as exc:
        return None, exc.status
    except Exception:  # noqa: BLE001 - an identifier pydicom cannot decode
        return None, CANNOT_UNDERSTAND
    with node.db.read() as conn:
        return instances(conn, query), None


def _subops(found: list[Stored] | None, status: int | None, node: Any, ctx: Context):
    if status is not None:                # one failed sub-operation carries the status
        ctx.fail(SERIOUS_FAILURE, f"status 0x{status:04X}")
        yield 1
        yield status, None
        return
    ctx.note(None, [s.sop_uid for s in found])
    yield len(found)
    yield from _datasets(node, found)


def contexts(found: list[Stored]) -> list:
    """The presentation contexts the association to a Move Destination proposes
    (:func:`dicom_qr.association.sending_contexts`: each SOP class in the syntax it was stored
    in, alone, and in the two uncompressed ones), at most 128 (PS3.8 9.3.2.2)."""
    return sending_contexts((s.sop_class, s.transfer_syntax) for s in found)[:MAX_CONTEXTS]


def handle_move(event, node: Any):
    """C-MOVE, audited (110106 Export, naming the instances sent)."""
    ctx, started = _context(node, event, DICOM_C_MOVE), time.perf_counter()
    try:
        destination = str(event.move_destination or "").strip()
        peer = next((p for p in node.settings.dicom_peers if p.ae_title == destination), None)
        if peer is None:
            log.info("C-MOVE to unknown destination %r refused", destination)
            ctx.fail(SERIOUS_FAILURE, f"unknown Move Destination {destination!r}")
            yield None, None
            return
        ctx.extra["destination"] = f"{peer.ae_title}@{peer.host}:{peer.port}"
        found, status = _select(event, node)
        yield peer.host, peer.port, {"ae_title": peer.ae_title,
                                     "contexts": contexts(found or []) or
                                     [build_context(Verification)]}
        yield from _subops(found, status, node, ctx)
    finally:
        ctx.finish(time.perf_counter() - started)


def handle_get(event, node: Any):
    """C-GET, audited like C-MOVE."""
    ctx, started = _context(node, event, DICOM_C_GET), time.perf_counter()
    try:
        found, status = _select(event, node)
        yield from _subops(found, status, node, ctx)
    finally:
        ctx.finish(time.perf_counter() - started)


__all__ = ["Stored", "instances", "contexts", "handle_move", "handle_get",
           "MOVE_DESTINATION_UNKNOWN"]

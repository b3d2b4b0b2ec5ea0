"""One instance received, whatever carried it — a C-STORE (DICOM PS3.4 Annex B) or a STOW-RS part
(PS3.18 10.5): the checks, the patient's tie to the patient index (:mod:`dicom_qr.patients`),
the bytes kept as received in the node's store, the index rows (:mod:`dicom_qr.store`) and the
forwarding rows of the outbox (:mod:`dicom_qr.forward`) in one unit of work.

The bytes may already be on their way to the store when the data set is checked
(:class:`EarlyWrite`: a C-STORE's File Meta Information needs only its command, so the write and
its fsync — which hold no lock Python needs — run in a helper thread while the data set is read
and the rows prepared; a refused instance's new blob is removed again).

A received data set is read only as far as the index needs (:class:`Received`): its elements
of :data:`dicom_qr.attrs.INDEXED_TAGS` are taken from its bytes by :mod:`dicom_qr.header`,
and pydicom reads it whole (before the pixel data) only for what needs a Dataset — the patient's
tie, once per patient and association — or when the walk fails.

The outcome is a DICOM status with a reason: 0x0000; 0xC000 "cannot understand" for a data
set without its SOP Class / SOP Instance / Study / Series UIDs or that cannot be decoded;
0xA700 "out of resources" when the bytes or the rows cannot be written (nothing half-written:
the rows are one unit of work, and a blob no row names is content-addressed, harmless).
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from pydicom.dataset import Dataset

from dicom_qr import attrs, dimse, forward, header, part10, patients, store, ul
from hie.blobs import BlobInfo
from hie.context import Context

log = logging.getLogger("dicom_qr.receive")

SUCCESS, CANNOT_UNDERSTAND, OUT_OF_RESOURCES = 0x0000, 0xC000, 0xA700
HEAD = 4 << 20        # octets of a spooled data set read for the index's elements
REQUIRED_UIDS = {"SOPInstanceUID": ("instance", "sop_uid"),
                 "StudyInstanceUID": ("study", "study_uid"),
                 "SeriesInstanceUID": ("series", "series_uid"),
                 "SOPClassUID": ("instance", "sop_class")}


@dataclass(frozen=True)
class Outcome:
    status: int
    reason: str = ""
    sop_class: str = ""
    sop_uid: str = ""
    study_uid: str = ""


class Received:
    """A received data set: its index values (:func:`dicom_qr.attrs.index_values`) and, on
    demand, the pydicom Dataset.  Building one raises whatever the data set's decoding raised
    (the caller's 0xC000)."""

    def __init__(self, levels: dict[str, dict[str, Any]], dataset: Callable[[], Dataset]):
        self.levels, self._dataset, self._ds = levels, dataset, None

    @classmethod
    def of(cls, ds: Dataset) -> "Received":
        return cls(attrs.index_values(ds), lambda: ds)

    @classmethod
    def read(cls, data: bytes | memoryview, syntax: str,
             rest: Callable[[], bytes] | None = None) -> "Received":
        """The data set ``data`` received in ``syntax``: walked for the index's elements (the
        Dataset, when asked for, is read from what the walk covered), or read by pydicom when
        it does not walk.  ``rest``: when ``data`` is only the data set's beginning, the whole
        of it, read if the beginning does not walk."""
        try:
            raw, end = header.walk(data, syntax, attrs.INDEXED_TAGS)
        except header.HeaderError:
            if rest is not None:
                return cls.read(rest(), syntax)
            return cls.of(part10.read(data, syntax, stop_before_pixels=True))
        return cls(attrs.index_values(raw),
                   functools.partial(part10.read, data[:end], syntax, stop_before_pixels=True))

    @classmethod
    def spooled(cls, region: ul.Region, syntax: str) -> "Received":
        """A data set received into a spool file (``region``): read from its first
        :data:`HEAD` octets (the index's elements lie long before the pixel data)."""
        head = region.read(0, min(region.length, HEAD))
        return cls.read(head, syntax, None if len(head) == region.length
                        else lambda: region.read(0, region.length))

    def dataset(self) -> Dataset:
        if self._ds is None:
            self._ds = self._dataset()
        return self._ds


_WRITERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="dicom-blob")


class EarlyWrite:
    """The bytes of an instance being put in the node's blob store by a helper thread (or its
    spool file adopted, :class:`Spool`): calling it waits for the :class:`~hie.blobs.BlobInfo`;
    :meth:`discard` removes a blob this write created for an instance that was then refused."""

    def __init__(self, node: Any, data: bytes | ul.Region):
        self.node = node
        self.future = _WRITERS.submit(node.blobs.adopt, data.path) \
            if isinstance(data, ul.Region) else _WRITERS.submit(node.blobs.put, data)

    def __call__(self) -> BlobInfo:
        return self.future.result()

    def discard(self) -> None:
        try:
            info = self.future.result()
        except Exception:  # noqa: BLE001 - nothing was written
            return
        if info.created:
            self.node.blobs.delete(info.key)


class Spool:
    """A C-STORE's data set too large to hold in memory (past :data:`dicom_qr.ul.SPILL_AT`),
    written as it arrives into a file of the blob store's temporary folder after the File Meta
    Information (:func:`dicom_qr.part10.file_head`): the finished file is the instance's PS3.10
    file, which the store adopts without a copy (:meth:`hie.blobs.FileBlobStore.adopt`)."""

    def __init__(self, folder: Any, head: bytes):
        fd, self.path = tempfile.mkstemp(dir=folder, prefix="spool-", suffix=".dcm")
        self.fh = os.fdopen(fd, "w+b")
        self.fh.write(head)
        self.offset, self.size = len(head), 0

    def write(self, data: bytes | memoryview) -> None:
        self.fh.write(data)
        self.size += len(data)

    def region(self) -> ul.Region:
        self.fh.flush()
        return ul.Region(self.fh, self.offset, self.size, self.path)

    def discard(self) -> None:
        self.fh.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def spool_for(node: Any, assoc: Any, message: dimse.Message) -> Spool | None:
    """The :class:`Spool` of a C-STORE whose data set outgrows memory (a listener's spooler);
    None for other messages, or a store that cannot adopt files."""
    folder = getattr(node.blobs, "temp_folder", None)
    command = message.command
    if message.field != dimse.C_STORE_RQ or folder is None or \
            not command.get("AffectedSOPClassUID") or not command.get("AffectedSOPInstanceUID"):
        return None
    cx = assoc.agreed.contexts.get(message.context_id)
    if cx is None:
        return None
    return Spool(folder, part10.file_head(command["AffectedSOPClassUID"],
                                          command["AffectedSOPInstanceUID"],
                                          cx.transfer_syntax, assoc.calling))


def accept(node: Any, ctx: Context, received: Received, blob: Callable[[], BlobInfo],
           syntax: str, source: str, cache: store.LevelCache | None = None) -> Outcome:
    """Keep and index one instance (``blob``: puts its bytes as received, File Meta Information
    first, in the store — or waits for an :class:`EarlyWrite` — called only once the data set
    has passed its checks)."""
    levels = received.levels
    missing = [keyword for keyword, (level, column) in REQUIRED_UIDS.items()
               if not levels[level][column]]
    if missing:
        log.warning("instance from %s refused: no %s", source, ", ".join(missing))
        return Outcome(CANNOT_UNDERSTAND, f"no {', '.join(missing)}")
    p, inst = levels["patient"], levels["instance"]
    done = Outcome(SUCCESS, "", inst["sop_class"], inst["sop_uid"], levels["study"]["study_uid"])
    p["issuer"] = p["issuer"] or patients.issuer_for(source, node.settings.dicom_issuers)
    ctx.note(f"{p['patient_id']}^^^{p['issuer']}" if p["issuer"] else p["patient_id"],
             [inst["sop_uid"]])
    cache = cache if cache is not None else store.LevelCache()
    key = (p["patient_id"], p["issuer"])
    try:
        if cache.knows(store.dicom_patient, key):
            domain = cache.held(store.dicom_patient, key).get("domain", "")
        else:
            try:
                ds = received.dataset()
            except Exception as exc:  # noqa: BLE001 - a data set pydicom cannot decode
                log.warning("instance from %s refused: cannot decode the data set: %s", source,
                            exc)
                return Outcome(CANNOT_UNDERSTAND, "the data set cannot be decoded")
            domain = p["domain"] = _tie(ds, ctx, p["issuer"], source)
        peers = forward.destinations(node.settings, source=source,
                                     modality=levels["series"]["modality"],
                                     domains={p["issuer"], domain})
        info = blob()
        store.record(node.db, levels, transfer_syntax=syntax, blob_key=info.key,
                     size=info.size, source_ae=source, cache=cache,
                     also=(lambda conn: forward.enqueue(node.outbox, conn, peers,
                                                        inst["sop_uid"])) if peers else None)
    except Exception:  # noqa: BLE001 - storage or database failure: out of resources
        log.exception("instance %s could not be stored", inst["sop_uid"])
        return Outcome(OUT_OF_RESOURCES, "it could not be stored", done.sop_class,
                       done.sop_uid, done.study_uid)
    return done


def _tie(ds: Dataset, ctx: Context, issuer: str, source: str) -> str:
    """The patient's domain in the patient index, once tied to it; "" when none is named."""
    ids = patients.identifiers(ds, issuer)
    if not ids:
        return ""
    return patients.tie(ctx, ids, patients.demographics(ds), f"DICOM {source}")[1]


__all__ = ["SUCCESS", "CANNOT_UNDERSTAND", "OUT_OF_RESOURCES", "Outcome", "Received",
           "EarlyWrite", "Spool", "spool_for",
           "accept"]

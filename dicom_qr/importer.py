"""Import of outside images — requirement 001 — for ``hie dicom import``: DICOM files and folders
(a CD's DICOMDIR read, PS3.10 8 / PS3.3 F), JPG / BMP / PNG and PDF files converted
(:mod:`dicom_qr.convert`), all sent by C-STORE (PS3.4 Annex B) to a node — by default this
node's own listener.

1. :func:`collect`: the files under the paths given (folders walked); a DICOMDIR adds the
   files its records reference (Referenced File ID, PS3.3 F.5) — a CD's files often have no
   extension — and is itself never sent (it is a Media Storage Directory, not an instance);
2. :func:`prepare`: each file's kind from its first bytes; a DICOM file is sent as it is —
   unless a patient is given, then its PatientID / PatientName / IssuerOfPatientID are
   replaced and the outside ones kept in OtherPatientIDsSequence (the reconciliation of IHE
   RAD Import Reconciliation Workflow), its UIDs unchanged; an image or a PDF is converted
   under the given patient into one new study (one series per kind); what is neither, or
   cannot be read, is rejected with the reason;
3. :func:`send`: one association per 128 presentation contexts (PS3.8 9.3.2.2), each
   instance in its own transfer syntax; the status of each C-STORE.

Series and studies are recognised by their Series / Study Instance UIDs for the summary.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pydicom
from pydicom.dataset import Dataset

from dicom_qr import convert as C
from dicom_qr.association import context_count, sending_contexts
from dicom_qr.retrieve import MAX_CONTEXTS
from hie.settings import Peer

log = logging.getLogger("dicom_qr.importer")

DIRECTORY = "1.2.840.10008.1.3.10"          # Media Storage Directory Storage (DICOMDIR)
DELIVERED = {0x0000, 0xB000, 0xB006, 0xB007}


class ImportFailure(Exception):
    """The node cannot be reached (a message for the operator)."""


@dataclass
class Item:
    path: Path
    kind: str
    sop_class: str
    sop_uid: str
    syntax: str
    study: str
    series: str
    dataset: Dataset | None = None     # None: the file is sent as it is
    status: int | None = None


@dataclass
class Summary:
    sent: list[Item] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)

    def _ok(self, kinds: Iterable[str]) -> list[Item]:
        return [i for i in self.sent if i.kind in kinds and i.status in DELIVERED]

    @property
    def failed(self) -> list[Item]:
        return [i for i in self.sent if i.status not in DELIVERED]

    def lines(self) -> list[str]:
        dicom = self._ok([C.DICOM])
        images = self._ok([C.JPEG, C.PNG, C.BMP])
        pdfs = self._ok([C.PDF])
        out = [f"imported {len(dicom)} DICOM instance(s) in "
               f"{len({i.series for i in dicom})} series of {len({i.study for i in dicom})} "
               "study(ies)",
               f"converted {len(images) + len(pdfs)}: {len(images)} image(s) → Secondary "
               f"Capture, {len(pdfs)} PDF(s) → Encapsulated PDF"]
        out.append(f"rejected {len(self.rejected)}")
        out += [f"  {p}: {why}" for p, why in self.rejected]
        out.append(f"failed {len(self.failed)}")
        out += [f"  {i.path}: " + (f"status 0x{i.status:04X}" if i.status is not None and
                                   i.status >= 0 else "not sent") for i in self.failed]
        return out


def _dicomdir_files(path: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - a damaged DICOMDIR
        return [], [(path, f"DICOMDIR cannot be read: {exc}")]
    found, missing = [], []
    for record in ds.get("DirectoryRecordSequence", None) or []:
        ref = record.get("ReferencedFileID", None)
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        target = path.parent.joinpath(*[str(p) for p in parts])
        if not target.exists():     # ISO 9660 names: try the case the file system has
            target = _case_insensitive(path.parent, [str(p) for p in parts]) or target
        (found if target.exists() else missing).append(target)
    return found, [(m, "listed in the DICOMDIR, not on the medium") for m in missing]


def _case_insensitive(base: Path, parts: list[str]) -> Path | None:
    here = base
    for part in parts:
        match = next((c for c in here.iterdir() if c.name.lower() == part.lower()), None) \
            if here.is_dir() else None
        if match is None:
            return None
        here = match
    return here


def collect(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(the files to import, in a stable order; those rejected already)."""
    files: dict[Path, None] = {}
    rejected: list[tuple[Path, str]] = []
    directories: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    full = Path(root) / name
                    if name.upper() == "DICOMDIR":
                        directories.append(full)
                    else:
                        files.setdefault(full)
        elif path.is_file():
            if path.name.upper() == "DICOMDIR":
                directories.append(path)
            else:
                files.setdefault(path)
        else:
            rejected.append((path, "no such file or folder"))
    for d in directories:
        found, missing = _dicomdir_files(d)
        for f in found:
            files.setdefault(f)
        rejected += missing
    resolved: dict[Path, Path] = {}
    for f in files:
        resolved.setdefault(f.resolve(), f)
    return list(resolved.values()), rejected


def _reconciled(ds: Dataset, target: C.Target) -> Dataset:
    """``ds`` under the given patient, the outside identifier kept in OtherPatientIDs."""
    old_id, old_issuer = str(ds.get("PatientID", "") or ""), str(ds.get("IssuerOfPatientID", "")
                                                                  or "")
    if old_id and (old_id, old_issuer) != (target.patient_id, target.issuer):
        item = Dataset()
        item.PatientID = old_id
        if old_issuer:
            item.IssuerOfPatientID = old_issuer
        item.TypeOfPatientID = "TEXT"
        ds.OtherPatientIDsSequence = list(ds.get("OtherPatientIDsSequence", None) or []) + [item]
    ds.PatientID = target.patient_id
    if target.patient_name:
        ds.PatientName = target.patient_name
    if target.issuer:
        ds.IssuerOfPatientID = target.issuer
    if target.patient_name and "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 192"
    elif target.patient_name:
        cs = ds.SpecificCharacterSet
        terms = [cs] if isinstance(cs, str) else list(cs)
        if not any(t in ("ISO_IR 192", "GB18030", "GBK") for t in terms):
            ds.SpecificCharacterSet = "ISO_IR 192"   # a Chinese name needs a charset for it
    return ds


def prepare(files: list[Path], target: C.Target | None
            ) -> tuple[list[Item], list[tuple[Path, str]]]:
    """The items to send and the files rejected (see the module's docstring)."""
    items, rejected = [], []
    for path in files:
        try:
            with open(path, "rb") as f:
                head = f.read(140)
        except OSError as exc:
            rejected.append((path, f"cannot be read: {exc.strerror or exc}"))
            continue
        kind = C.kind_of(head)
        if kind is None:
            rejected.append((path, "not DICOM, an image (JPG/BMP/PNG) or a PDF"))
            continue
        try:
            items.append(_dicom(path, target) if kind == C.DICOM else
                         _converted(path, kind, target))
        except C.ConversionError as exc:
            rejected.append((path, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a damaged file is one rejection
            rejected.append((path, f"cannot be read: {exc}"))
    return items, rejected


def _dicom(path: Path, target: C.Target | None) -> Item:
    ds = pydicom.dcmread(path, stop_before_pixels=target is None)
    meta = ds.file_meta
    sop_class = str(meta.get("MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
    if sop_class == DIRECTORY:
        raise C.ConversionError("a DICOMDIR is read, not imported")
    uids = [str(ds.get(k, "") or "") for k in ("SOPInstanceUID", "StudyInstanceUID",
                                                "SeriesInstanceUID")]
    if not all(uids) or not sop_class or "TransferSyntaxUID" not in meta:
        raise C.ConversionError("a DICOM file without its UIDs or transfer syntax")
    return Item(path, C.DICOM, sop_class, uids[0], str(meta.TransferSyntaxUID), uids[1], uids[2],
                _reconciled(ds, target) if target is not None else None)


def _converted(path: Path, kind: str, target: C.Target | None) -> Item:
    if target is None:
        raise C.ConversionError("converting needs the patient: give --patient-id")
    ds = C.convert(path.read_bytes(), kind, target, title=path.stem)
    return Item(path, kind, str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                str(ds.file_meta.TransferSyntaxUID), str(ds.StudyInstanceUID),
                str(ds.SeriesInstanceUID), ds)


def _groups(items: list[Item]) -> list[list[Item]]:
    """Items in groups whose presentation contexts fit one association."""
    groups: list[list[Item]] = []
    keys: list[list[tuple[str, str]]] = []
    for item in items:
        key = (item.sop_class, item.syntax)
        if not groups or (key not in keys[-1] and
                          context_count(keys[-1] + [key]) > MAX_CONTEXTS):
            groups.append([])
            keys.append([])
        groups[-1].append(item)
        if key not in keys[-1]:
            keys[-1].append(key)
    return groups


def send(items: list[Item], peer: Peer, calling_ae: str,
         progress: Callable[[int, int, Item], None] | None = None) -> None:
    """C-STORE every item to ``peer``; each item's :attr:`Item.status` (-1: not sent)."""
    from dicom_qr.association import NodeAE

    n = 0
    for group in _groups(items):
        ae = NodeAE(ae_title=calling_ae)
        ae.requested_contexts = sending_contexts((i.sop_class, i.syntax) for i in group)
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
        if not assoc.is_established:
            raise ImportFailure(f"no association with {peer}")
        try:
            for item in group:
                item.status = _store(assoc, item)
                n += 1
                if progress is not None:
                    progress(n, len(items), item)
        finally:
            if assoc.is_established:
                assoc.release()


def _store(assoc, item: Item) -> int:
    taken = {str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
             if cx.abstract_syntax == item.sop_class}
    if not taken:
        log.warning("%s: the node takes no %s", item.path, item.sop_class)
        return -1
    what: Dataset | Path = item.dataset if item.dataset is not None else item.path
    if item.dataset is None and item.syntax not in taken:
        what = pydicom.dcmread(item.path)   # pynetdicom converts between uncompressed syntaxes
    try:
        status = assoc.send_c_store(what)
    except Exception as exc:  # noqa: BLE001 - an instance pynetdicom cannot encode or send
        log.warning("%s could not be sent: %s", item.path, exc)
        return -1
    return int(getattr(status, "Status", -1)) if status else -1


def run(paths: list[str], peer: Peer, calling_ae: str, target: C.Target | None,
        progress: Callable[[int, int, Item], None] | None = None) -> Summary:
    files, rejected = collect(paths)
    items, more = prepare(files, target)
    summary = Summary(items, rejected + more)
    if items:
        send(items, peer, calling_ae, progress)
    return summary


__all__ = ["ImportFailure", "Item", "Summary", "collect", "prepare", "send", "run"]

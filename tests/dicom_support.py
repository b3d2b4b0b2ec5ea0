"""DICOM test helpers: DCMTK from Debian by absolute path (pynetdicom installs console scripts of
the same names), small instances written as PS3.10 files, findscu answers read back."""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

DCMTK = Path("/usr/bin")
SC = "1.2.840.10008.5.1.4.1.1.7"          # Secondary Capture Image Storage
CT = "1.2.840.10008.5.1.4.1.1.2"


def instance(folder: Path, name: str, *, patient_id: str, patient_name: str, charset: str,
             study: str, series: str, modality: str = "CT", study_date: str = "20261202",
             sop_class: str = CT, implicit: bool = False, number: int = 1,
             accession: str = "", issuer: str | None = "BJXH",
             other_ids: tuple[tuple[str, str], ...] = ()) -> Path:
    """A small image instance written as a DICOM file (PS3.10); ``issuer`` None sends no
    IssuerOfPatientID, ``other_ids`` (PatientID, issuer) go to OtherPatientIDsSequence."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName = patient_id, patient_name
    if issuer is not None:
        ds.IssuerOfPatientID = issuer
    if other_ids:
        items = []
        for value, domain in other_ids:
            item = Dataset()
            item.PatientID, item.IssuerOfPatientID = value, domain
            items.append(item)
        ds.OtherPatientIDsSequence = items
    ds.PatientBirthDate, ds.PatientSex = "19800101", "M"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study_date, "093000", accession
    ds.StudyDescription = "胸部CT平扫"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, number
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(range(64))
    path = folder / name
    ds.save_as(path, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return path


def run(tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(DCMTK / tool), *args], capture_output=True, timeout=60, cwd=cwd)


def find(live, folder: Path, *keys: str, model: str = "-S") -> list[Dataset]:
    """findscu with ``keys`` (``-k`` each); the answers it extracted, in order."""
    out = folder / f"q{len(list(folder.glob('q*')))}"
    out.mkdir()
    host, port = live.node.listeners["dicom"]
    args = [model, "-aec", live.settings.dicom_ae_title, "-X", "-od", str(out)]
    for k in keys:
        args += ["-k", k]
    done = run("findscu", *args, host, str(port))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def free_port() -> int:
    """A loopback port nothing listens on (a peer started later, or one that stays down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

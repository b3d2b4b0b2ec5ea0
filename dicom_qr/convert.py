"""Conversion of outside material to DICOM — requirement 001's "PDF/JPG reports and non-DICOM
images to DICOM" — sans-IO: bytes and the patient / study attributes in, a pydicom data set out.

- **JPEG / PNG / BMP → Secondary Capture Image Storage** (1.2.840.10008.5.1.4.1.1.7; PS3.3
  A.8.1: Patient, General Study, General Series, SC Equipment — ConversionType ``WSD`` —,
  General Image, Image Pixel, SOP Common).  A baseline JPEG (SOF0, 8 bit) is kept as it is,
  encapsulated (PS3.5 A.4) in the JPEG Baseline transfer syntax (1.2.840.10008.1.2.4.50),
  colour as YBR_FULL_422 (PS3.5 8.2.1): the original report image, not a recompression.
  Anything else (progressive JPEG, PNG, BMP) is decoded (Pillow) to 8-bit MONOCHROME2 or RGB
  and written uncompressed (explicit VR little endian).
- **PDF → Encapsulated PDF Storage** (1.2.840.10008.5.1.4.1.1.104.1; PS3.3 A.45.1:
  Encapsulated Document Series — Modality ``DOC`` —, SC Equipment, Encapsulated Document
  module C.24.2: the PDF in EncapsulatedDocument (OB, padded to even length with one NUL),
  MIMETypeOfEncapsulatedDocument ``application/pdf``, DocumentTitle, BurnedInAnnotation).

:func:`kind_of` tells a file's kind from its first bytes (never from its name);
:class:`Target` carries the patient and study attributes an import gives every converted
file; :class:`ConversionError` is a file that cannot be converted (a message for the summary).
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, ExplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
DICOM, JPEG, PNG, BMP, PDF = "dicom", "jpeg", "png", "bmp", "pdf"


class ConversionError(ValueError):
    """A file that cannot be converted; the message says why."""


def kind_of(head: bytes) -> str | None:
    """The kind of a file from its first 132+ bytes: DICOM (PS3.10 preamble + ``DICM``), JPEG,
    PNG, BMP, PDF, or None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return DICOM
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"BM") and len(head) >= 26:
        return BMP
    if head.lstrip(b"\xef\xbb\xbf\r\n\t ").startswith(b"%PDF-"):
        return PDF
    return None


@dataclass
class Target:
    """The patient and study converted files are filed under (one study and one series per
    kind for a whole import, unless ``study_uid`` names an existing study)."""

    patient_id: str
    patient_name: str = ""
    issuer: str = ""
    birth_date: str = ""
    sex: str = ""
    study_description: str = ""
    study_uid: str = field(default_factory=generate_uid)
    accession: str = ""
    series: dict[str, str] = field(default_factory=dict)   # kind -> SeriesInstanceUID
    numbers: dict[str, int] = field(default_factory=dict)  # kind -> last InstanceNumber

    def series_uid(self, kind: str) -> str:
        return self.series.setdefault(kind, generate_uid())

    def next_number(self, kind: str) -> int:
        self.numbers[kind] = self.numbers.get(kind, 0) + 1
        return self.numbers[kind]


def _common(target: Target, sop_class: str, kind: str, modality: str, title: str,
            now: dt.datetime) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.PatientID, ds.PatientName = target.patient_id, target.patient_name
    if target.issuer:
        ds.IssuerOfPatientID = target.issuer
    ds.PatientBirthDate, ds.PatientSex = target.birth_date, target.sex
    ds.StudyInstanceUID, ds.StudyID = target.study_uid, ""
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AccessionNumber, ds.ReferringPhysicianName = target.accession, ""
    ds.StudyDescription = target.study_description
    ds.SeriesInstanceUID = target.series_uid(kind)
    ds.Modality = modality
    ds.SeriesNumber = {DICOM: 1, JPEG: 901, PNG: 901, BMP: 901, PDF: 902}.get(kind, 900)
    ds.SeriesDescription = "文档" if kind == PDF else "外来图像"
    ds.InstanceNumber = target.next_number(kind)
    ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
    ds.ConversionType = "WSD"                     # SC Equipment (C.8.6.1): workstation
    ds.Manufacturer = ""
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.StudyDate, ds.StudyTime
    if kind == PDF:
        ds.DocumentTitle = title
    elif title:
        ds.ImageComments = title
    return ds


def _file_meta(ds: Dataset, syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta


def jpeg_frame(data: bytes) -> tuple[int, int, int, int, int]:
    """(SOF marker, precision, rows, columns, components) of a JPEG stream (ITU T.81 B.2.2)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ConversionError("not a JPEG stream: bad marker")
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                      0xCE, 0xCF):
            seg = data[i + 4:i + 2 + length]
            if len(seg) < 6:
                break
            return (marker, seg[0], int.from_bytes(seg[1:3], "big"),
                    int.from_bytes(seg[3:5], "big"), seg[5])
        if marker == 0xDA:
            break
        i += 2 + length
    raise ConversionError("the JPEG stream has no frame header")


def image_to_sc(data: bytes, kind: str, target: Target, title: str = "",
                now: dt.datetime | None = None) -> Dataset:
    """A Secondary Capture instance of an image file's bytes."""
    now = now or dt.datetime.now()
    ds = _common(target, SECONDARY_CAPTURE, kind, "OT", title, now)
    ds.BurnedInAnnotation = "YES"
    ds.PatientOrientation = ""
    if kind == JPEG:
        sof, precision, rows, cols, comps = jpeg_frame(data)
        if sof == 0xC0 and precision == 8 and comps in (1, 3) and rows and cols:
            _pixel_module(ds, rows, cols, comps,
                          "MONOCHROME2" if comps == 1 else "YBR_FULL_422")
            # one fragment, padded to even length after the EOI marker (PS3.5 A.4)
            ds.PixelData = encapsulate([data + b"\x00" if len(data) % 2 else data])
            ds["PixelData"].VR = "OB"
            ds.LossyImageCompression = "01"
            ds.LossyImageCompressionMethod = "ISO_10918_1"
            _file_meta(ds, JPEGBaseline8Bit)
            return ds
    pixels, rows, cols, comps = _decoded(data)
    _pixel_module(ds, rows, cols, comps, "MONOCHROME2" if comps == 1 else "RGB")
    ds.PixelData = pixels + (b"\x00" if len(pixels) % 2 else b"")
    _file_meta(ds, ExplicitVRLittleEndian)
    return ds


def _pixel_module(ds: Dataset, rows: int, cols: int, comps: int, photometric: str) -> None:
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = comps, photometric
    if comps == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0


def _decoded(data: bytes) -> tuple[bytes, int, int, int]:
    try:
        from PIL import Image
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            grey = img.mode in ("1", "L", "LA", "I;16", "I", "F")
            out = img.convert("L" if grey else "RGB")
            return out.tobytes(), out.height, out.width, 1 if grey else 3
    except Exception as exc:  # noqa: BLE001 - Pillow's many errors for a damaged image
        raise ConversionError(f"the image cannot be decoded: {exc}") from None


def pdf_to_encapsulated(data: bytes, target: Target, title: str = "",
                        now: dt.datetime | None = None) -> Dataset:
    """An Encapsulated PDF instance of a PDF file's bytes."""
    if not data.lstrip(b"\xef\xbb\xbf\r\n\t ").startswith(b"%PDF-"):
        raise ConversionError("not a PDF document")
    now = now or dt.datetime.now()
    ds = _common(target, ENCAPSULATED_PDF, PDF, "DOC", title or "文档", now)
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(data)
    ds.EncapsulatedDocument = data + (b"\x00" if len(data) % 2 else b"")
    _file_meta(ds, ExplicitVRLittleEndian)
    return ds


def convert(data: bytes, kind: str, target: Target, title: str = "") -> Dataset:
    """The DICOM instance of a non-DICOM file of ``kind``."""
    if kind == PDF:
        return pdf_to_encapsulated(data, target, title)
    if kind in (JPEG, PNG, BMP):
        return image_to_sc(data, kind, target, title)
    raise ConversionError(f"{kind} files are not converted")


__all__ = ["SECONDARY_CAPTURE", "ENCAPSULATED_PDF", "DICOM", "JPEG", "PNG", "BMP", "PDF",
           "ConversionError", "kind_of", "Target", "jpeg_frame", "image_to_sc",
           "pdf_to_encapsulated", "convert"]

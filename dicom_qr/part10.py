"""Data sets as they travel and as they are kept: a received data set read in its presentation
context's transfer syntax (PS3.5 Section 10, 7.1 / 7.3; Deflated Explicit VR Little Endian,
A.5), written back in one, and the DICOM file a received instance is kept as — the File Meta
Information (PS3.10 7.1) before the data set bytes exactly as they came — and, for a stored
file, where its data set begins.
"""
from __future__ import annotations

import struct
import zlib
from io import BytesIO

from pydicom.charset import encode_string
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
# syntaxes whose data set any data set can be written in (PS3.5 A.1 - A.5)
NATIVE = (IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE)
IMPLEMENTATION_CLASS_UID = "2.25.229371948851601738627311920935561253710"
IMPLEMENTATION_VERSION = "HIE_NODE_1"
_ASCII = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"}
_TEXT = {"SH", "LO", "ST", "LT", "UC", "UT"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}


def _stop_at_pixels(tag, vr, length) -> bool:
    return tag >= 0x7FE00010


def read(data: bytes | memoryview, syntax: str, *, stop_before_pixels: bool = False) -> Dataset:
    """The data set ``data`` encoded in transfer syntax ``syntax`` (an encapsulated syntax
    is Explicit VR Little Endian outside its pixel data)."""
    if syntax == DEFLATED_LE:
        data = zlib.decompress(bytes(data), -zlib.MAX_WBITS)
    ds = read_dataset(BytesIO(data), syntax == IMPLICIT_LE, syntax != EXPLICIT_BE,
                      stop_when=_stop_at_pixels if stop_before_pixels else None)
    ds.set_original_encoding(syntax == IMPLICIT_LE, syntax != EXPLICIT_BE)
    return ds


def _flat(ds: Dataset, implicit: bool) -> bytes | None:
    """``ds`` in (Implicit or Explicit VR) Little Endian when every element is a string VR (a
    C-FIND identifier, an answer), written here without pydicom's general writer; None for any
    other data set.  Text and PN values are encoded in the data set's character set as pydicom
    encodes them (PS3.5 6.1; ISO 2022 escape sequences included)."""
    encodings = None
    out = []
    for elem in ds:
        vr, value = elem.VR, getattr(elem, "value", None)
        if not isinstance(vr, str) or isinstance(value, (bytes, bytearray)):
            return None
        if value is None or value == "":
            raw = b""
        elif vr in _ASCII:
            values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
            raw = "\\".join(getattr(v, "original_string", None) or str(v)
                             for v in values).encode("ascii")
        elif vr in _TEXT or vr == "PN":
            if encodings is None:
                encodings = ds._character_set
                encodings = [encodings] if isinstance(encodings, str) else encodings
            values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
            raw = b"\\".join(v.encode(encodings) if vr == "PN" else encode_string(v, encodings)
                              for v in values)
        else:
            return None
        if len(raw) % 2:
            raw += b"\x00" if vr == "UI" else b" "
        tag = elem.tag
        if implicit:
            out.append(struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(raw)))
        elif vr.encode() in _LONG_VRS:
            out.append(struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(raw)))
        elif len(raw) > 0xFFFF:
            return None
        else:
            out.append(struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(raw)))
        out.append(raw)
    return b"".join(out)


def write(ds: Dataset, syntax: str) -> bytes:
    """``ds`` encoded in ``syntax`` (one of :data:`NATIVE`, or an encapsulated syntax for a
    data set whose pixel data is already encapsulated in it)."""
    if syntax in (IMPLICIT_LE, EXPLICIT_LE):
        try:
            raw = _flat(ds, syntax == IMPLICIT_LE)
        except (UnicodeError, TypeError, ValueError, AttributeError):
            raw = None
        if raw is not None:
            return raw
    fp = DicomBytesIO()
    fp.is_implicit_VR = syntax == IMPLICIT_LE
    fp.is_little_endian = syntax != EXPLICIT_BE
    write_dataset(fp, ds)
    raw = fp.getvalue()
    if syntax == DEFLATED_LE:
        packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = packer.compress(raw) + packer.flush()
    return raw


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr in (b"UI", b"OB") else b" "
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", 2, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 2, element, vr, len(value)) + value


def file_bytes(sop_class: str, sop_uid: str, syntax: str, data: bytes | memoryview,
               source_ae: str = "") -> bytes:
    """The DICOM file (PS3.10 7.1: preamble, "DICM", File Meta Information in Explicit VR
    Little Endian) of a data set received as ``data`` in ``syntax``, ``data`` unchanged."""
    return b"".join((file_head(sop_class, sop_uid, syntax, source_ae), data))


def file_head(sop_class: str, sop_uid: str, syntax: str, source_ae: str = "") -> bytes:
    """What comes before the data set in :func:`file_bytes`."""
    meta = b"".join([
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", sop_class.encode("ascii")),
        _element(0x0003, b"UI", sop_uid.encode("ascii")),
        _element(0x0010, b"UI", syntax.encode("ascii")),
        _element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii")),
        _element(0x0013, b"SH", IMPLEMENTATION_VERSION.encode("ascii")),
    ] + ([_element(0x0016, b"AE", source_ae.encode("ascii", "replace")[:16])]
         if source_ae else []))
    group = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(meta))
    return b"".join((bytes(128), b"DICM", group, meta))


def data_set(blob: bytes | memoryview) -> tuple[str, memoryview]:
    """(transfer syntax, data set bytes) of a DICOM file; ValueError if it is not one."""
    view = memoryview(blob)
    if bytes(view[128:132]) != b"DICM":
        raise ValueError("not a DICOM file (no DICM prefix)")
    at, syntax = 132, ""
    while at + 8 <= len(view) and int.from_bytes(view[at:at + 2], "little") == 2:
        element = int.from_bytes(view[at + 2:at + 4], "little")
        vr = bytes(view[at + 4:at + 6])
        if vr in _LONG_VRS:
            length, start = int.from_bytes(view[at + 8:at + 12], "little"), at + 12
        else:
            length, start = int.from_bytes(view[at + 6:at + 8], "little"), at + 8
        if element == 0x0010:
            syntax = bytes(view[start:start + length]).rstrip(b"\x00 ").decode("ascii")
        at = start + length
    if not syntax:
        raise ValueError("a DICOM file without its TransferSyntaxUID")
    return syntax, view[at:]


__all__ = ["read", "write", "file_bytes", "file_head", "data_set", "NATIVE", "IMPLICIT_LE",
           "EXPLICIT_LE", "DEFLATED_LE", "EXPLICIT_BE", "IMPLEMENTATION_CLASS_UID",
           "IMPLEMENTATION_VERSION"]

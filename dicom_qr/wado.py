"""WADO-RS, Retrieve Transaction (DICOM PS3.18 10.4 / 8.7) over the stored instances — sans-IO:
what the client accepts, the multipart body, the metadata, the rendered image.

- **Instances** (10.4.1.1.1: study, series, instance resources): ``multipart/related;
  type="application/dicom"``, one part per instance, the PS3.10 file exactly as stored.  The
  transfer syntax (8.7.3.5.2): ``transfer-syntax=*`` takes each instance as stored; none or
  Explicit VR Little Endian (the default) takes stored uncompressed instances, those stored in
  Implicit VR Little Endian re-encoded; any other syntax is served when the instances are
  stored in it.  An instance that cannot be given in an acceptable syntax makes the answer
  406 Not Acceptable (the node does not transcode compressed pixel data).
- **Metadata** (10.4.1.1.2, ``/metadata``): ``application/dicom+json``, one DICOM JSON object
  per instance without its bulk data: pixel data is left out, other large binary values are
  given as a BulkDataURI (the instance's own URL).
- **Rendered** (10.4.1.1.3, ``/rendered`` of an instance, ``/frames/{n}/rendered``):
  ``image/jpeg`` (the default) or ``image/png`` of one frame.  A baseline JPEG frame is sent as
  stored; uncompressed MONOCHROME1/2 and RGB data are drawn with the instance's Rescale
  Slope / Intercept and its first window (Window Center / Width), else its full range.
"""
from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from hie.mtom import parse_content_type

ANY = "*"
CHUNK = 64 * 1024


class NotAcceptable(ValueError):
    """406: nothing the client accepts can be given."""


class CannotRender(ValueError):
    """The instance's pixel data cannot be rendered: ``status`` 400 for a frame it does not
    have, 406 for pixel data the node does not draw."""

    def __init__(self, message: str, status: int = 406):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Part:
    sop_uid: str
    path: Path
    stored_syntax: str
    syntax: str            # the one sent


def wanted_syntax(accept: str) -> str:
    """The transfer syntax an Accept header asks application/dicom in (``*``: as stored);
    raises :class:`NotAcceptable` when it accepts no DICOM instance at all."""
    if not accept.strip():
        return ExplicitVRLittleEndian
    best = None
    for item in accept.split(","):
        mime, params = parse_content_type(item)
        inner = params.get("type", "").lower()
        if mime in ("multipart/related", "*/*", "multipart/*") and inner in (
                "", "application/dicom"):
            best = params.get("transfer-syntax", best or ExplicitVRLittleEndian)
        elif mime == "application/dicom":
            best = params.get("transfer-syntax", best or ExplicitVRLittleEndian)
        if best == ANY:
            return ANY
    if best is None:
        raise NotAcceptable("the Accept header takes no multipart/related; "
                            "type=\"application/dicom\"")
    return best


def plan(found: list[tuple[str, Path, str]], syntax: str) -> list[Part]:
    """The parts of a retrieve (``found``: SOP Instance UID, file, stored syntax)."""
    out = []
    for sop_uid, path, stored in found:
        if syntax == ANY or syntax == stored:
            out.append(Part(sop_uid, path, stored, stored))
        elif syntax == ExplicitVRLittleEndian and stored == ImplicitVRLittleEndian:
            out.append(Part(sop_uid, path, stored, syntax))
        else:
            raise NotAcceptable(f"instance {sop_uid} is stored in {stored}, not {syntax}: "
                                "ask transfer-syntax=* to take it as stored")
    return out


def boundary() -> str:
    return f"hie-{uuid.uuid4().hex}"


def multipart(parts: list[Part], mark: str) -> Iterator[bytes]:
    """The body of a multipart/related answer, file by file, in chunks."""
    for part in parts:
        yield (f"--{mark}\r\nContent-Type: application/dicom; transfer-syntax={part.syntax}"
               "\r\n\r\n").encode("ascii")
        if part.syntax == part.stored_syntax:
            with open(part.path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        else:
            yield reencoded(part.path, part.syntax)
        yield b"\r\n"
    yield f"--{mark}--\r\n".encode("ascii")


def reencoded(path: Path, syntax: str) -> bytes:
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True,
               enforce_file_format=True)
    return buf.getvalue()


def metadata(path: Path, url: str) -> dict:
    """An instance's DICOM JSON without its pixel data, large binaries as BulkDataURIs."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.to_json_dict(bulk_data_threshold=4096,
                           bulk_data_element_handler=lambda _elem: url)


def rendered(path: Path, frame: int = 1, media: str = "image/jpeg") -> bytes:
    """One frame as ``media`` (image/jpeg or image/png); raises :class:`CannotRender`."""
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise CannotRender("the instance has no pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= frames:
        raise CannotRender(f"frame {frame} of {frames}", 400)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    if syntax == JPEGBaseline8Bit:
        data = next(b for i, b in enumerate(generate_frames(ds.PixelData,
                                                            number_of_frames=frames))
                    if i == frame - 1)
        if media == "image/jpeg":
            return data
        from PIL import Image
        with Image.open(io.BytesIO(data)) as img:
            return _encode(img, media)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        raise CannotRender(f"pixel data in {syntax} is not rendered")
    return _encode(_image(ds, frame), media)


def _image(ds: Dataset, frame: int):
    from PIL import Image
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples, bits = int(ds.get("SamplesPerPixel", 1)), int(ds.BitsAllocated)
    size = rows * cols * samples * bits // 8
    raw = bytes(ds.PixelData)[size * (frame - 1):size * frame]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples == 3 and bits == 8:
        if int(ds.get("PlanarConfiguration", 0) or 0) == 1:
            planes = [raw[i * rows * cols:(i + 1) * rows * cols] for i in range(3)]
            return Image.merge("RGB", [Image.frombytes("L", (cols, rows), p) for p in planes])
        return Image.frombytes("RGB", (cols, rows), raw)
    if samples != 1 or bits not in (8, 16):
        raise CannotRender(f"{samples} samples of {bits} bits are not rendered")
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    mode = "L" if bits == 8 else ("I;16S" if signed else "I;16")
    img = Image.frombytes(mode, (cols, rows), raw).convert("I")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    low, high = img.getextrema()
    low, high = low * slope + intercept, high * slope + intercept
    center, width = _window(ds)
    if center is not None and width and width > 1:
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    span = (high - low) or 1.0
    scale = 255.0 * slope / span
    offset = 255.0 * (intercept - low) / span
    out = img.point(lambda v: v * scale + offset).convert("L")
    if photometric == "MONOCHROME1":
        out = out.point(lambda v: 255 - v)
    return out


def _first(value) -> float | None:
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _window(ds: Dataset) -> tuple[float | None, float | None]:
    return _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))


def _encode(img, media: str) -> bytes:
    buf = io.BytesIO()
    if media == "image/png":
        img.save(buf, "PNG")
    else:
        (img if img.mode in ("L", "RGB") else img.convert("RGB")).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def rendered_media(accept: str) -> str:
    """image/jpeg (the default) or image/png, from an Accept header; else NotAcceptable."""
    if not accept.strip():
        return "image/jpeg"
    for item in accept.split(","):
        mime, _params = parse_content_type(item)
        if mime in ("image/jpeg", "image/*", "*/*"):
            return "image/jpeg"
        if mime == "image/png":
            return "image/png"
    raise NotAcceptable("rendered frames are given as image/jpeg or image/png")


__all__ = ["ANY", "NotAcceptable", "CannotRender", "Part", "wanted_syntax", "plan", "boundary",
           "multipart", "reencoded", "metadata", "rendered", "rendered_media"]

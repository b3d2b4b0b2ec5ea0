"""What the imaging index keeps of a DICOM dataset, and how person names and character sets are
handled — sans-IO (pydicom datasets in, plain values out).

- :func:`index_values`: the attributes of each level (PS3.4 Table C.6-1 / C.6-2 patient, C.6-5
  study, C.6-6 series, C.6-7 instance) the index matches on and returns.
- Person names (PS3.5 6.2, PN): up to three component groups — alphabetic, ideographic,
  phonetic — separated by ``=``.  Chinese PACS send ``ZHANG^SAN=张^三``, ``张^三`` or ``张三``.
  :func:`name_forms` gives the comparable forms the index keeps: the ideographic group (or an
  alphabetic group written in Chinese characters) folded like the patient index's names
  (:func:`pix_pdq.names.normalize`: traditional and variant forms folded, separators dropped,
  the component separator ``^`` too), and the alphabetic group upper-cased.  A query ``张*``
  becomes ``张%`` over the folded form: it finds 张三 and 張三, never 章三.
- Character sets (PS3.5 6.1, PS3.3 C.12.1.1.2): pydicom decodes ISO_IR 192 (UTF-8), GB18030,
  GBK and ISO 2022 IR 58 / IR 6 with code extensions.  :func:`answer_charset` keeps the
  query's Specific Character Set when it can represent an answer, and falls back to
  ISO_IR 192 so that a Chinese name is never lost.
"""
from __future__ import annotations

import codecs
from typing import Any

from pydicom import charset as dcs
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.values import convert_PN, convert_text

from pix_pdq.names import normalize

UTF8 = "ISO_IR 192"


def text_of(value: Any) -> str:
    """A DICOM value as text: several values backslash-separated (PS3.5 6.4), none as ""."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _has_cjk(text: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text)


def name_forms(name: str) -> tuple[str, str]:
    """(folded Chinese form, upper-cased alphabetic form) of a decoded PN value."""
    groups = (name.split("=") + ["", ""])[:3]
    alpha, ideo = groups[0].strip(), groups[1].strip()
    chinese = ideo or (alpha if _has_cjk(alpha) else "")
    folded = normalize(chinese.replace("^", "")) if chinese else ""
    return folded, alpha.rstrip("^").upper() if not _has_cjk(alpha) else ""


# level -> (column, tag, VR, longest value kept) of what the index keeps (PS3.4 C.6.1 / C.6.2)
_INDEXED = {
    "patient": (("patient_id", 0x00100020, "LO", None), ("issuer", 0x00100021, "LO", None),
                ("patient_name", 0x00100010, "PN", None),
                ("birth_date", 0x00100030, "DA", 8), ("sex", 0x00100040, "CS", None)),
    "study": (("study_uid", 0x0020000D, "UI", None), ("study_date", 0x00080020, "DA", 8),
              ("study_time", 0x00080030, "TM", 16), ("accession", 0x00080050, "SH", None),
              ("study_id", 0x00200010, "SH", 16), ("description", 0x00081030, "LO", 324),
              ("referring", 0x00080090, "PN", 324), ("charset", 0x00080005, "CS", 128)),
    "series": (("series_uid", 0x0020000E, "UI", None), ("modality", 0x00080060, "CS", 16),
               ("series_number", 0x00200011, "IS", 12),
               ("description", 0x0008103E, "LO", 324), ("body_part", 0x00180015, "CS", 64)),
    "instance": (("sop_uid", 0x00080018, "UI", None), ("sop_class", 0x00080016, "UI", None),
                 ("instance_number", 0x00200013, "IS", 12)),
}


def _ascii(raw: bytes) -> str:
    return "\\".join(v.strip(" \x00") for v in raw.decode("ascii", "replace").split("\\")).strip()


# every tag index_values reads: what dicom_qr.header takes from a received data set's bytes
INDEXED_TAGS = frozenset([0x00080005] + [tag for fields in _INDEXED.values()
                                         for _, tag, _, _ in fields])


_DECODED = frozenset(("PN", "LO", "SH"))


def _value(ds: Dataset | dict[int, bytes], tag: int, vr: str, encodings: list[str]) -> str:
    """The text of element ``tag``, decoded from its raw bytes when pydicom has not decoded it
    yet (its converters, without the Dataset's own machinery: ten times cheaper)."""
    if isinstance(ds, dict):
        raw = ds.get(tag)
        if raw is None:
            return ""
    else:
        elem = ds.get_item(tag)
        if elem is None:
            return ""
        raw = elem.value
    if not isinstance(raw, (bytes, bytearray)):
        return text_of(raw)
    if vr in _DECODED and len(encodings) == 1 and b"\x1b" not in raw:
        # one character set and no code extension: the value's bytes decode as one string
        # (what pydicom's converters do, without building a PersonName per value)
        return "\\".join(v.strip(" \x00") for v in
                          raw.decode(encodings[0], "replace").split("\\")).strip()
    if vr == "PN":
        return text_of(convert_PN(bytes(raw), encodings))
    if vr in ("LO", "SH"):
        return text_of(convert_text(bytes(raw), encodings, vr))
    return _ascii(bytes(raw))


def index_values(ds: Dataset | dict[int, bytes]) -> dict[str, dict[str, Any]]:
    """Level -> column -> value, from a dataset (its elements decoded or still raw) or from
    the value bytes of its elements of :data:`INDEXED_TAGS` (:func:`dicom_qr.header.walk`)."""
    charset = _value(ds, 0x00080005, "CS", [])
    encodings = dcs.convert_encodings(charset.split("\\") if charset else None)
    out = {level: {column: _value(ds, tag, vr, encodings)[:limit]
                   for column, tag, vr, limit in fields}
           for level, fields in _INDEXED.items()}
    p = out["patient"]
    p["name_norm"], p["name_alpha"] = name_forms(p["patient_name"])
    return out


def _encodable(text: str, encodings: list[str]) -> bool:
    for ch in text:
        for enc in encodings:
            try:
                codecs.encode(ch, enc)
                break
            except (UnicodeError, LookupError):
                continue
        else:
            return False
    return True


def answer_charset(query_charset: list[str], texts: list[str]) -> list[str]:
    """The Specific Character Set of an answer holding ``texts``: the query's when every text
    can be written in it, else ISO_IR 192 (PS3.4 C.4.1.1.3.1 leaves the SCP free to answer in
    another character set; UTF-8 represents everything)."""
    terms = [t for t in query_charset if t is not None]
    try:
        encodings = dcs.convert_encodings(terms or [""])
    except (LookupError, ValueError):
        return [UTF8]
    if all(_encodable(t, encodings) for t in texts if t):
        return terms
    return [UTF8]


__all__ = ["UTF8", "INDEXED_TAGS", "text_of", "name_forms", "index_values", "answer_charset"]

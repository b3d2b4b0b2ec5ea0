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

from pix_pdq.names import normalize

UTF8 = "ISO_IR 192"


def text_of(value: Any) -> str:
    """A DICOM value as text: several values backslash-separated (PS3.5 6.4), none as ""."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _text(ds: Dataset, keyword: str) -> str:
    return text_of(ds.get(keyword, ""))


def _has_cjk(text: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text)


def name_forms(name: str) -> tuple[str, str]:
    """(folded Chinese form, upper-cased alphabetic form) of a decoded PN value."""
    groups = (name.split("=") + ["", ""])[:3]
    alpha, ideo = groups[0].strip(), groups[1].strip()
    chinese = ideo or (alpha if _has_cjk(alpha) else "")
    folded = normalize(chinese.replace("^", "")) if chinese else ""
    return folded, alpha.rstrip("^").upper() if not _has_cjk(alpha) else ""


def index_values(ds: Dataset) -> dict[str, dict[str, Any]]:
    """Level -> column -> value, from a (decoded) dataset."""
    name = _text(ds, "PatientName")
    folded, alpha = name_forms(name)
    charset = _text(ds, "SpecificCharacterSet")
    return {
        "patient": {"patient_id": _text(ds, "PatientID"),
                    "issuer": _text(ds, "IssuerOfPatientID"),
                    "patient_name": name, "name_norm": folded, "name_alpha": alpha,
                    "birth_date": _text(ds, "PatientBirthDate")[:8],
                    "sex": _text(ds, "PatientSex")},
        "study": {"study_uid": _text(ds, "StudyInstanceUID"),
                  "study_date": _text(ds, "StudyDate")[:8],
                  "study_time": _text(ds, "StudyTime")[:16],
                  "accession": _text(ds, "AccessionNumber"),
                  "study_id": _text(ds, "StudyID")[:16],
                  "description": _text(ds, "StudyDescription")[:324],
                  "referring": _text(ds, "ReferringPhysicianName")[:324],
                  "charset": str(charset or "")[:128]},
        "series": {"series_uid": _text(ds, "SeriesInstanceUID"),
                   "modality": _text(ds, "Modality")[:16],
                   "series_number": _text(ds, "SeriesNumber")[:12],
                   "description": _text(ds, "SeriesDescription")[:324],
                   "body_part": _text(ds, "BodyPartExamined")[:64]},
        "instance": {"sop_uid": _text(ds, "SOPInstanceUID"),
                     "sop_class": _text(ds, "SOPClassUID"),
                     "instance_number": _text(ds, "InstanceNumber")[:12]},
    }


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


__all__ = ["UTF8", "text_of", "name_forms", "index_values", "answer_charset"]

"""QIDO-RS, Search Transaction (DICOM PS3.18 10.6 / 8.3.4): the query parameters of a search for
studies, series or instances turned into the C-FIND query of :mod:`dicom_qr.cfind` (the same
matching: single values, ``*`` ``?``, UID lists, date / time ranges, Chinese names folded), and
its answers into the DICOM JSON Model (PS3.18 Annex F) — sans-IO.

- Resources (Table 10.6.1-2): ``/studies``, ``/series``, ``/instances``, and below a study /
  series (``/studies/{study}/series``, ``/studies/{study}/instances``,
  ``/studies/{study}/series/{series}/instances``): the path's UIDs are matching keys.
- Query keys (8.3.4.1): ``{attribute}={value}``, the attribute a keyword (``PatientID``) or a
  tag (``00100020``); an attribute the index cannot match on is answered with a ``Warning:
  299`` header naming it, not with an error.
- ``includefield``: keywords or tags (repeated or comma-separated), or ``all``: every
  attribute the index holds for the level; the defaults are those of Tables 10.6.3-3..5.
- ``fuzzymatching=true`` is not supported: literal matching is done and a warning says so
  (8.3.4.3).  ``limit`` / ``offset`` page the answers (8.3.4.4); a value that is not a
  non-negative integer is a 400.
- Each answer carries RetrieveURL (0008,1190).  No match is 200 with an empty array
  (CP-2473).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from dicom_qr import cfind

LEVEL = {"studies": "STUDY", "series": "SERIES", "instances": "IMAGE"}
DEFAULTS = {
    "STUDY": ["StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
              "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate",
              "PatientSex", "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances"],
    "SERIES": ["Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances"],
    "IMAGE": ["SOPClassUID", "SOPInstanceUID", "InstanceNumber"],
}
# what a study's or a series' answers below it also carry (Tables 10.6.3-4, -5)
ABOVE = {"SERIES": ["StudyInstanceUID"], "IMAGE": ["StudyInstanceUID", "SeriesInstanceUID"]}
# a search for series or instances not under a study also returns the study's attributes, one
# for instances not under a series the series' (Tables 10.6.3-4, -5)
STUDY_OF = DEFAULTS["STUDY"][:10]                  # without the study's counts
SERIES_OF = DEFAULTS["SERIES"][:4]                 # without the series' count
PARAMETERS = {"includefield", "fuzzymatching", "limit", "offset"}
MAX_LIMIT = 10_000


class QidoError(ValueError):
    """A search the origin server refuses (400 Bad Request)."""


@dataclass
class Search:
    query: cfind.Query
    limit: int
    offset: int
    warnings: list[str] = field(default_factory=list)


def _keyword(name: str) -> str | None:
    """A keyword from a keyword or an 8-hex-digit tag; None when DICOM has no such attribute."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return keyword_for_tag(int(name, 16)) or None
    return name if tag_for_keyword(name) is not None else None


def _number(params: list[tuple[str, str]], name: str, default: int) -> int:
    values = [v for k, v in params if k == name]
    if not values:
        return default
    if not values[-1].isdigit():
        raise QidoError(f"{name} must be a non-negative integer, not {values[-1]!r}")
    return int(values[-1])


def search(resource: str, params: Iterable[tuple[str, str]], study: str | None = None,
           series: str | None = None, max_results: int = MAX_LIMIT) -> Search:
    """The :class:`Search` of a QIDO-RS request; raises :class:`QidoError`."""
    params = list(params)
    level = LEVEL[resource]
    returned = list(DEFAULTS[level]) + ABOVE.get(level, [])
    if level != "STUDY" and study is None:
        returned += STUDY_OF
    if level == "IMAGE" and series is None:
        returned += SERIES_OF
    q = cfind.Query(cfind.STUDY_ROOT, level, charset=["ISO_IR 192"])
    out = Search(q, _number(params, "limit", max_results), _number(params, "offset", 0))
    out.limit = min(out.limit, max_results)
    unmatched = []
    for name, value in params:
        if name == "includefield":
            for item in filter(None, (v.strip() for v in value.split(","))):
                if item == "all":
                    returned += [k for k, (lvl, *_r) in cfind.KEYS.items()
                                 if cfind.LEVELS.index(lvl) <= cfind.LEVELS.index(level)]
                    continue
                kw = _keyword(item)
                if kw is None:
                    raise QidoError(f"includefield {item!r} is not a DICOM attribute")
                returned.append(kw)
            continue
        if name == "fuzzymatching":
            if value.lower() == "true":
                out.warnings.append("The fuzzymatching parameter is not supported. Only "
                                    "literal matching has been performed.")
            continue
        if name in PARAMETERS:
            continue
        kw = _keyword(name)
        if kw is None:
            raise QidoError(f"{name!r} is neither a query parameter nor a DICOM attribute")
        if kw == "ModalitiesInStudy" and level == "STUDY":
            q.modalities = value
        elif kw in cfind.KEYS:
            q.matching[kw] = value
        else:
            unmatched.append(kw)
        returned.append(kw)
    if study:
        q.matching["StudyInstanceUID"] = study
    if series:
        q.matching["SeriesInstanceUID"] = series
    if "ModalitiesInStudy" in returned and q.modalities is None and level == "STUDY":
        q.modalities = ""
    q.returned = list(dict.fromkeys(k for k in returned if k != "ModalitiesInStudy"))
    if unmatched:
        out.warnings.append("The following attributes are not supported for matching: "
                            + ", ".join(sorted(set(unmatched))))
    return out


def retrieve_url(base: str, ds: Dataset, level: str) -> str:
    """The WADO-RS URL of an answer's study, series or instance."""
    url = f"{base}/studies/{ds.get('StudyInstanceUID', '')}"
    if level in ("SERIES", "IMAGE"):
        url += f"/series/{ds.get('SeriesInstanceUID', '')}"
    if level == "IMAGE":
        url += f"/instances/{ds.get('SOPInstanceUID', '')}"
    return url


def to_json(ds: Dataset, base: str, level: str) -> dict[str, Any]:
    """One answer in the DICOM JSON Model (UTF-8 throughout: no SpecificCharacterSet)."""
    for kw in ("QueryRetrieveLevel", "RetrieveAETitle", "SpecificCharacterSet"):
        if kw in ds:
            delattr(ds, kw)
    ds.RetrieveURL = retrieve_url(base, ds, level)
    return ds.to_json_dict()


__all__ = ["LEVEL", "DEFAULTS", "QidoError", "Search", "search", "retrieve_url", "to_json"]

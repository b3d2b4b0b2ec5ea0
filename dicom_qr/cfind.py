"""C-FIND SCP query engine: Patient Root and Study Root Query/Retrieve Information Models,
PATIENT / STUDY / SERIES / IMAGE levels (DICOM PS3.4 C.4.1, C.6.1, C.6.2), over the imaging
index (dicom_qr.tables).

A request identifier (:class:`Query`) says the level (QueryRetrieveLevel) and, per attribute,
either a matching key (a value) or a return key (empty).  Matching (PS3.4 C.2.2.2):

- single value matching: the value exactly (PN and the alphabetic name group case-insensitive);
- wildcard matching: ``*`` any run, ``?`` one character (not for dates, times or UIDs);
- list of UID matching: ``uid1\\uid2\\…``;
- range matching of DA / TM: ``a-b``, ``a-``, ``-b``;
- universal matching: an empty value (a return key) matches everything.

Person names match through the forms of :mod:`dicom_qr.attrs` — ``张*`` over the folded
Chinese form finds 张三 (and 張三) and never 章三; ``ZHANG*`` over the alphabetic group.
Queries are relational (C.4.1.2.2): keys of any level above the requested one may be given,
so an IMAGE level query with only the StudyInstanceUID lists the study's instances.

A PatientID with its IssuerOfPatientID (single values) is answered through the patient index
(:func:`through_index`, :mod:`dicom_qr.patients`): every DICOM patient whose identifier the index
holds for the same person matches — the enterprise ID finds the studies of every hospital.

Each answer carries the requested return keys the index holds (others come back empty,
C.4.1.1.3.2), ``QueryRetrieveLevel``, ``RetrieveAETitle``, ``SpecificCharacterSet``
(:func:`dicom_qr.attrs.answer_charset`), ``ModalitiesInStudy`` and the ``NumberOf…Related…``
counts when asked.  :class:`QueryError` is an identifier the SCP cannot process (status
0xA900 Identifier does not match SOP Class, or 0xC000).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import sqlalchemy as sa
from pydicom.dataset import Dataset
from sqlalchemy.engine import Connection

from dicom_qr import part10
from dicom_qr.attrs import answer_charset, name_forms, text_of
from dicom_qr.patients import same_person
from dicom_qr.tables import dicom_instance as I, dicom_patient as P, dicom_series as SE
from dicom_qr.tables import dicom_study as ST

PATIENT_ROOT = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.1"
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

# keyword -> (level, column, kind); kind: text, pn, uid, date, time
KEYS: dict[str, tuple[str, Any, str]] = {
    "PatientID": ("PATIENT", P.c.patient_id, "text"),
    "IssuerOfPatientID": ("PATIENT", P.c.issuer, "text"),
    "PatientName": ("PATIENT", P.c.patient_name, "pn"),
    "PatientBirthDate": ("PATIENT", P.c.birth_date, "date"),
    "PatientSex": ("PATIENT", P.c.sex, "text"),
    "StudyInstanceUID": ("STUDY", ST.c.study_uid, "uid"),
    "StudyDate": ("STUDY", ST.c.study_date, "date"),
    "StudyTime": ("STUDY", ST.c.study_time, "time"),
    "AccessionNumber": ("STUDY", ST.c.accession, "text"),
    "StudyID": ("STUDY", ST.c.study_id, "text"),
    "StudyDescription": ("STUDY", ST.c.description, "text"),
    "ReferringPhysicianName": ("STUDY", ST.c.referring, "text"),
    "SeriesInstanceUID": ("SERIES", SE.c.series_uid, "uid"),
    "Modality": ("SERIES", SE.c.modality, "text"),
    "SeriesNumber": ("SERIES", SE.c.series_number, "text"),
    "SeriesDescription": ("SERIES", SE.c.description, "text"),
    "BodyPartExamined": ("SERIES", SE.c.body_part, "text"),
    "SOPInstanceUID": ("IMAGE", I.c.sop_uid, "uid"),
    "SOPClassUID": ("IMAGE", I.c.sop_class, "uid"),
    "InstanceNumber": ("IMAGE", I.c.instance_number, "text"),
}
COUNTS = {"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
          "NumberOfPatientRelatedInstances", "NumberOfStudyRelatedSeries",
          "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances"}
_IGNORED = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle",
            "TimezoneOffsetFromUTC", "InstanceAvailability"}


class QueryError(ValueError):
    """An identifier the SCP cannot process; ``status`` is the C-FIND failure status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Query:
    model: str                          # PATIENT_ROOT or STUDY_ROOT
    level: str
    matching: dict[str, str] = field(default_factory=dict)    # keyword -> value
    returned: list[str] = field(default_factory=list)         # every keyword asked for
    charset: list[str] = field(default_factory=list)          # the request's
    modalities: str | None = None       # ModalitiesInStudy: None not asked, "" return key
    # (domain, PatientID) of the person the PatientID + issuer keys name (through_index)
    identity: list[tuple[str, str]] | None = None


def parse(identifier: Dataset, model: str) -> Query:
    """The :class:`Query` of a C-FIND request identifier; raises :class:`QueryError`."""
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in LEVELS:
        raise QueryError(0xA900, f"QueryRetrieveLevel {level!r} is not one of {LEVELS}")
    if model == PATIENT_ROOT and level == "PATIENT" and identifier.get("StudyInstanceUID"):
        raise QueryError(0xA900, "a PATIENT level query has no study keys")
    cs = identifier.get("SpecificCharacterSet", [])
    q = Query(model, level, charset=[cs] if isinstance(cs, str) else list(cs))
    for elem in identifier:
        kw = elem.keyword
        if not kw or kw in _IGNORED:
            continue
        if elem.VR == "SQ":
            q.returned.append(kw)        # sequences are not matched (C.2.2.2.6 is optional)
            continue
        q.returned.append(kw)
        if kw == "ModalitiesInStudy":
            q.modalities = text_of(elem.value)
            continue
        value = text_of(elem.value)
        if value and kw in KEYS:
            q.matching[kw] = value
    return q


def read_identifier(data: bytes | None, syntax: str, model: str) -> Query:
    """:func:`parse` of a request identifier still encoded in its presentation context's
    transfer syntax; one that cannot be decoded is a :class:`QueryError` 0xC000."""
    try:
        return parse(part10.read(data or b"", syntax), model)
    except QueryError:
        raise
    except Exception as exc:  # noqa: BLE001 - an identifier pydicom cannot decode
        raise QueryError(0xC000, f"the identifier cannot be decoded: {exc}") from None


def _like(value: str) -> str:
    out = []
    for c in value:
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def _wild(value: str) -> bool:
    return "*" in value or "?" in value


def _range(col, value: str):
    if "-" not in value:
        return col == value
    lo, _, hi = value.partition("-")
    conds = []
    if lo:
        conds.append(col >= lo)
    if hi:
        conds.append(col <= hi + ("\uffff" if len(hi) < 8 else ""))
    return sa.and_(*conds) if conds else sa.true()


def _pn(value: str):
    """A PN key over the forms the index keeps (:func:`dicom_qr.attrs.name_forms` folds the
    query as it folded the names; ``*`` and ``?`` pass through)."""
    folded, alpha = name_forms(value)
    col, text = (P.c.name_norm, folded) if folded else (P.c.name_alpha, alpha)
    return col.like(_like(text), escape="\\") if _wild(text) else col == text


def condition(keyword: str, value: str):
    level, col, kind = KEYS[keyword]
    if kind == "pn":
        return _pn(value)
    if kind == "uid":
        uids = [u.strip() for u in value.split("\\") if u.strip()]
        return col.in_(uids) if len(uids) > 1 else col == uids[0]
    if kind in ("date", "time"):
        return _range(col, value)
    if "\\" in value:                  # a list of values (C.2.2.2.1 for CS / SH…)
        return col.in_(value.split("\\"))
    return col.like(_like(value), escape="\\") if _wild(value) else col == value


_ORDER = {"PATIENT": 0, "STUDY": 1, "SERIES": 2, "IMAGE": 3}
_TABLES = (P, ST, SE, I)
_PARENT = ((ST, ST.c.patient_pk == P.c.id), (SE, SE.c.study_pk == ST.c.id),
           (I, I.c.series_pk == SE.c.id))


def _down_to(depth: int):
    """The patient table joined with its studies, series, instances down to ``depth``."""
    src = P
    for table, on in _PARENT[:depth]:
        src = src.join(table, on)
    return src


_JOINS = [_down_to(depth) for depth in range(4)]
# the rows of each level with their ancestors' columns (labelled table__column), in order
_ROWS = [sa.select(*[c.label(f"{t.name}__{c.name}") for t in _TABLES[:depth + 1] for c in t.c])
         .select_from(_JOINS[depth]).order_by(_TABLES[depth].c.id) for depth in range(4)]
_PATIENT_KEYS = ("PatientID", "IssuerOfPatientID")


def through_index(conn: Connection, q: Query) -> Query:
    """``q`` with :attr:`Query.identity` set when its PatientID and IssuerOfPatientID are
    single values naming an identifier the patient index knows."""
    pid, issuer = (q.matching.get(k, "") for k in _PATIENT_KEYS)
    if not pid or not issuer or any(_wild(v) or "\\" in v for v in (pid, issuer)):
        return q
    q.identity = same_person(conn, pid, issuer)
    return q


def statement(q: Query):
    """The SELECT of the rows of ``q.level`` that match."""
    depth = _ORDER[q.level]
    used = max([depth] + [_ORDER[KEYS[k][0]] for k in q.matching]
               + ([1] if q.modalities else []))
    conds = [condition(k, v) for k, v in q.matching.items()
             if q.identity is None or k not in _PATIENT_KEYS]
    if q.identity is not None:
        conds.append(sa.tuple_(P.c.domain, P.c.patient_id).in_(q.identity))
    if q.modalities:
        mods = [m for m in q.modalities.split("\\") if m]
        conds.append(ST.c.id.in_(sa.select(SE.c.study_pk).where(
            sa.or_(*[SE.c.modality.like(_like(m), escape="\\") if _wild(m)
                     else SE.c.modality == m for m in mods]))))
    table = _TABLES[depth]
    inner = sa.select(table.c.id).select_from(_JOINS[used]).where(*conds).distinct()
    return _ROWS[depth].where(table.c.id.in_(inner))


def _count_statements() -> dict[str, tuple[str, Any]]:
    """``NumberOf…Related…`` → (level, the count's SELECT of the row ``:row_id``): built
    once."""
    row = sa.bindparam("row_id")
    studies = sa.select(ST.c.id).where(ST.c.patient_pk == row)
    patient_series = sa.select(SE.c.id).where(SE.c.study_pk.in_(studies))
    study_series = sa.select(SE.c.id).where(SE.c.study_pk == row)

    def count(table, where):
        return sa.select(sa.func.count()).select_from(table).where(where)
    return {
        "NumberOfPatientRelatedStudies": ("PATIENT", count(ST, ST.c.patient_pk == row)),
        "NumberOfPatientRelatedSeries": ("PATIENT", count(SE, SE.c.study_pk.in_(studies))),
        "NumberOfPatientRelatedInstances": ("PATIENT",
                                            count(I, I.c.series_pk.in_(patient_series))),
        "NumberOfStudyRelatedSeries": ("STUDY", count(SE, SE.c.study_pk == row)),
        "NumberOfStudyRelatedInstances": ("STUDY", count(I, I.c.series_pk.in_(study_series))),
        "NumberOfSeriesRelatedInstances": ("SERIES", count(I, I.c.series_pk == row)),
    }


_COUNTS = _count_statements()


def _counts(conn: Connection, level: str, row_id: int, wanted: set[str]) -> dict[str, int]:
    return {name: conn.execute(stmt, {"row_id": row_id}).scalar_one()
            for name, (at, stmt) in _COUNTS.items() if at == level and name in wanted}


_ATTR = {kw: (f"{KEYS[kw][1].table.name}__{KEYS[kw][1].name}") for kw in KEYS}


def answers(conn: Connection, q: Query, ae_title: str, *, limit: int | None = None,
            offset: int = 0) -> Iterator[Dataset]:
    """The identifiers answering ``q``, one per matching row of its level (QIDO-RS pages them
    with ``limit`` / ``offset``)."""
    wanted = set(q.returned)
    stmt = statement(through_index(conn, q))
    if limit is not None or offset:
        stmt = stmt.limit(limit).offset(offset)
    for row in conn.execute(stmt).mappings():
        ds = Dataset()
        texts: list[str] = []
        ds.QueryRetrieveLevel = q.level
        for kw in q.returned:
            if kw in _ATTR and _ATTR[kw] in row:
                value = row[_ATTR[kw]] or ""
                setattr(ds, kw, value)
                texts.append(str(value))
            elif kw in COUNTS:
                continue
            elif kw == "ModalitiesInStudy":
                continue
            else:
                setattr(ds, kw, None)                  # asked, not held: zero length
        level_id = row[{"PATIENT": "dicom_patient__id", "STUDY": "dicom_study__id",
                        "SERIES": "dicom_series__id", "IMAGE": "dicom_instance__id"}[q.level]]
        for name, n in _counts(conn, q.level, level_id, wanted).items():
            setattr(ds, name, str(n))
        if q.modalities is not None and "dicom_study__id" in row:
            mods = conn.execute(sa.select(SE.c.modality).where(
                SE.c.study_pk == row["dicom_study__id"]).distinct()).scalars().all()
            ds.ModalitiesInStudy = sorted(m for m in mods if m)
        ds.RetrieveAETitle = ae_title
        charset = answer_charset(q.charset, texts)
        if charset:
            ds.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
        yield ds


__all__ = ["PATIENT_ROOT", "STUDY_ROOT", "LEVELS", "KEYS", "QueryError", "Query", "parse",
           "read_identifier",
           "condition", "through_index", "statement", "answers"]

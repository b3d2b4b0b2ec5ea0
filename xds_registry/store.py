"""Registry write-side persistence: rows of :mod:`xds_registry.tables` for the objects of Register
Document Set-b (ITI TF-2b 3.42.4.1.3), Update Document Set (3.57.4.1.3) and Delete Document Set
(3.62.4.1.3), plus the look-ups those transactions check against (existing objects, uniqueIds,
associations).

Every function takes a connection inside the caller's unit of work (``ctx.db.begin()``), so a
transaction is stored completely or not at all (DESIGN.md principle 5).

Concurrency.  :func:`lock_registry` must be the first statement of every registry write unit: on
PostgreSQL it takes a transaction-scoped advisory lock (``pg_advisory_xact_lock``), on SQLite the
unit of work already began with ``BEGIN IMMEDIATE`` (hie.db), which holds the database write lock.
Registry writers are thus serialized, which makes the check-then-write rules of the TF safe — a
uniqueId registered twice by two concurrent submissions, a document replaced twice, two new
versions of one logicalId, ``seq = max(seq) + 1`` — without relying on isolation levels.  Readers
(stored queries) never take the lock.  A write unit is a handful of indexed statements (a few
milliseconds), so this bounds registrations at several hundred per second per registry, far above
a regional platform's load; should it ever matter, the lock can be split per patient.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from xds_registry import vocab as V
from xds_registry.ebrim import deserialize, serialize
from xds_registry.model import AnyEntry, Association, DocumentEntry, Folder, SubmissionSet
from xds_registry.tables import (association as t_assoc, document_entry as t_de,
                                 folder as t_fd, object_author as t_author,
                                 object_code as t_code, object_reference_id as t_ref,
                                 registry_object as t_obj, submission_set as t_ss)

REGISTRY_LOCK_KEY = 0x58445352_00000042   # "XDSR" / 42: the registry writers' advisory lock
CHUNK = 500                               # bound for IN (...) lists

APPROVED, DEPRECATED, SUBMITTED = "Approved", "Deprecated", "Submitted"


def lock_registry(conn: Connection) -> None:
    """Serialize registry writers (see the module docstring)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": REGISTRY_LOCK_KEY})


def next_seq(conn: Connection) -> int:
    """The next registration sequence number (safe under :func:`lock_registry`)."""
    return (conn.execute(sa.select(sa.func.max(t_obj.c.seq))).scalar() or 0) + 1


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    vals = list(dict.fromkeys(values))
    for i in range(0, len(vals), CHUNK):
        yield vals[i:i + CHUNK]


# --------------------------------------------------------------------------------------------
# look-ups
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Existing:
    """What the write side needs to know about a registered object."""

    id: str
    kind: str
    lid: str
    version: int
    status: str
    patient_id: str | None = None
    unique_id: str | None = None
    hash: str | None = None
    size: int | None = None
    source: str | None = None        # Associations
    target: str | None = None
    type: str | None = None          # Associations: short type name


def _existing_select():
    o = t_obj.c
    return (sa.select(o.id, o.kind, o.lid, o.version, o.status,
                      sa.func.coalesce(t_de.c.patient_id, t_fd.c.patient_id,
                                       t_ss.c.patient_id).label("patient_id"),
                      sa.func.coalesce(t_de.c.unique_id, t_fd.c.unique_id,
                                       t_ss.c.unique_id).label("unique_id"),
                      t_de.c.hash, t_de.c.size, t_assoc.c.source_id, t_assoc.c.target_id,
                      t_assoc.c.type)
            .select_from(t_obj.outerjoin(t_de, t_de.c.id == o.id)
                         .outerjoin(t_fd, t_fd.c.id == o.id)
                         .outerjoin(t_ss, t_ss.c.id == o.id)
                         .outerjoin(t_assoc, t_assoc.c.id == o.id)))


def _row(r) -> Existing:
    return Existing(r.id, r.kind, r.lid, r.version, r.status, r.patient_id, r.unique_id,
                    r.hash, r.size, r.source_id, r.target_id, r.type)


def load(conn: Connection, ids: Iterable[str]) -> dict[str, Existing]:
    """The registered objects among ``ids`` (any kind), by id."""
    out: dict[str, Existing] = {}
    for part in _chunks(ids):
        for r in conn.execute(_existing_select().where(t_obj.c.id.in_(part))):
            out[r.id] = _row(r)
    return out


def load_xml(conn: Connection, object_id: str) -> bytes | None:
    return conn.execute(sa.select(t_obj.c.xml).where(t_obj.c.id == object_id)).scalar()


def versions(conn: Connection, lids: Iterable[str]) -> dict[str, list[Existing]]:
    """Every version of each logical id, oldest first."""
    out: dict[str, list[Existing]] = {}
    for part in _chunks(lids):
        q = _existing_select().where(t_obj.c.lid.in_(part)).order_by(t_obj.c.version)
        for r in conn.execute(q):
            out.setdefault(r.lid, []).append(_row(r))
    return out


def documents_by_unique_id(conn: Connection, uids: Iterable[str]) -> dict[str, list[Existing]]:
    out: dict[str, list[Existing]] = {}
    for part in _chunks(uids):
        q = _existing_select().where(t_de.c.unique_id.in_(part)).order_by(t_obj.c.seq)
        for r in conn.execute(q):
            out.setdefault(r.unique_id, []).append(_row(r))
    return out


def package_unique_ids(conn: Connection, kind: str, uids: Iterable[str]) -> dict[str, str]:
    """uniqueId -> logical id of the SubmissionSets (``kind="SubmissionSet"``) or Folders
    already registered with these uniqueIds."""
    table = t_ss if kind == "SubmissionSet" else t_fd
    out: dict[str, str] = {}
    for part in _chunks(uids):
        q = sa.select(table.c.unique_id, t_obj.c.lid).select_from(
            table.join(t_obj, t_obj.c.id == table.c.id)).where(table.c.unique_id.in_(part))
        for r in conn.execute(q):
            out[r.unique_id] = r.lid
    return out


def associations_of(conn: Connection, ids: Iterable[str], *, as_source: bool = True,
                    as_target: bool = True, types: Sequence[str] | None = None,
                    status: str | None = APPROVED) -> list[Existing]:
    """Associations whose source and/or target is one of ``ids`` (short ``types``)."""
    out: dict[str, Existing] = {}
    a = t_assoc.c
    for part in _chunks(ids):
        conds = []
        if as_source:
            conds.append(a.source_id.in_(part))
        if as_target:
            conds.append(a.target_id.in_(part))
        q = _existing_select().where(t_obj.c.kind == "Association", sa.or_(*conds))
        if types:
            q = q.where(a.type.in_(list(types)))
        if status:
            q = q.where(t_obj.c.status == status)
        for r in conn.execute(q.order_by(t_obj.c.seq)):
            out[r.id] = _row(r)
    return list(out.values())


# --------------------------------------------------------------------------------------------
# writes
# --------------------------------------------------------------------------------------------

def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def insert(conn: Connection, entry: AnyEntry, *, seq: int, status: str = APPROVED,
           version: int = 1, created_at: dt.datetime | None = None) -> None:
    """Insert ``entry`` (final ids) with its typed rows; ``xml`` is its ebRIM element with
    ``lid`` and ``VersionInfo`` written in (the status is managed by the row, not the XML)."""
    entry.lid = entry.lid or entry.id
    entry.status = None
    if not isinstance(entry, (Association, SubmissionSet)):
        entry.version = str(version)
    created_at = created_at or now_utc()
    conn.execute(t_obj.insert().values(
        id=entry.id, seq=seq, kind=entry.KIND, lid=entry.lid, version=version, status=status,
        home=entry.home, xml=serialize(entry.to_ebrim()), created_at=created_at))
    if isinstance(entry, DocumentEntry):
        _insert_document(conn, entry, status)
    elif isinstance(entry, SubmissionSet):
        conn.execute(t_ss.insert().values(
            id=entry.id, unique_id=entry.unique_id, patient_id=entry.patient_id,
            source_id=entry.source_id, submission_time=entry.submission_time,
            content_type_code=entry.content_type.code if entry.content_type else None,
            content_type_scheme=entry.content_type.scheme if entry.content_type else None,
            status=status))
        _insert_authors(conn, entry.id, entry.authors)
    elif isinstance(entry, Folder):
        conn.execute(t_fd.insert().values(
            id=entry.id, lid=entry.lid, unique_id=entry.unique_id, patient_id=entry.patient_id,
            last_update_time=entry.last_update_time, status=status))
        _insert_codes(conn, entry.id, "folder", entry.codes)
    elif isinstance(entry, Association):
        conn.execute(t_assoc.insert().values(
            id=entry.id, type=entry.type_short or entry.type[-32:], source_id=entry.source,
            target_id=entry.target, status=status, ss_status=entry.ss_status))
    else:  # pragma: no cover - AnyEntry is closed
        raise TypeError(type(entry))


def _code_cols(prefix: str, code) -> dict:
    return {f"{prefix}_code": code.code if code else None,
            f"{prefix}_scheme": code.scheme if code else None}


def _insert_document(conn: Connection, de: DocumentEntry, status: str) -> None:
    conn.execute(t_de.insert().values(
        id=de.id, lid=de.lid, unique_id=de.unique_id, patient_id=de.patient_id, status=status,
        entry_type=de.entry_type, **_code_cols("class", de.class_code),
        **_code_cols("type", de.type_code), **_code_cols("practice", de.practice_code),
        **_code_cols("hcft", de.hcft_code), **_code_cols("format", de.format_code),
        creation_time=de.creation_time, service_start_time=de.service_start_time,
        service_stop_time=de.service_stop_time, mime_type=de.mime_type,
        hash=de.hash.lower() if de.hash else None, size=de.size,
        repository_unique_id=de.repository_unique_id, availability=status))
    _insert_codes(conn, de.id, "event", de.event_codes)
    _insert_codes(conn, de.id, "conf", de.confidentiality_codes)
    _insert_authors(conn, de.id, de.authors)
    if de.reference_ids:
        conn.execute(t_ref.insert(), [{"object_id": de.id, "reference_id": r}
                                      for r in dict.fromkeys(de.reference_ids)])


def _insert_codes(conn: Connection, object_id: str, kind: str, codes) -> None:
    rows = [{"object_id": object_id, "kind": kind, "code": c.code, "scheme": c.scheme}
            for c in codes]
    if rows:
        conn.execute(t_code.insert(), rows)


def _insert_authors(conn: Connection, object_id: str, authors) -> None:
    rows = [{"object_id": object_id, "person": a.person} for a in authors if a.person]
    if rows:
        conn.execute(t_author.insert(), rows)


def set_status(conn: Connection, ids: Iterable[str], status: str) -> None:
    """Change the availabilityStatus of registered objects (all kinds)."""
    for part in _chunks(ids):
        conn.execute(t_obj.update().where(t_obj.c.id.in_(part)).values(status=status))
        conn.execute(t_de.update().where(t_de.c.id.in_(part))
                     .values(status=status, availability=status))
        conn.execute(t_fd.update().where(t_fd.c.id.in_(part)).values(status=status))
        conn.execute(t_ss.update().where(t_ss.c.id.in_(part)).values(status=status))
        conn.execute(t_assoc.update().where(t_assoc.c.id.in_(part)).values(status=status))


def touch_folders(conn: Connection, folder_ids: Iterable[str], when: str) -> None:
    """Set lastUpdateTime of registered Folders (ITI TF-3 4.2.3.4.3: the registry keeps it)."""
    for fid in dict.fromkeys(folder_ids):
        xml = load_xml(conn, fid)
        if xml is None:
            continue
        fd = Folder.from_ebrim(deserialize(xml))
        fd.last_update_time = when
        conn.execute(t_obj.update().where(t_obj.c.id == fid)
                     .values(xml=serialize(fd.to_ebrim())))
        conn.execute(t_fd.update().where(t_fd.c.id == fid).values(last_update_time=when))


def delete(conn: Connection, ids: Iterable[str]) -> None:
    """Remove objects and every row that describes them (ITI-62)."""
    for part in _chunks(ids):
        for t in (t_code, t_author, t_ref):
            conn.execute(t.delete().where(t.c.object_id.in_(part)))
        for t in (t_de, t_fd, t_ss, t_assoc):
            conn.execute(t.delete().where(t.c.id.in_(part)))
        conn.execute(t_obj.delete().where(t_obj.c.id.in_(part)))


def counts(conn: Connection) -> dict[str, int]:
    """Row counts of every registry table (tests and diagnostics)."""
    return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0
            for t in (t_obj, t_de, t_ss, t_fd, t_assoc, t_code, t_author, t_ref)}


def dtm_now() -> str:
    return now_utc().strftime("%Y%m%d%H%M%S")


def status_short(urn_or_short: str) -> str | None:
    if urn_or_short in V.STATUS_URNS:
        return urn_or_short
    return V.STATUS_SHORT.get(urn_or_short)

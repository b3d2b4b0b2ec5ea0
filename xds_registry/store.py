"""Registry write-side persistence: rows of :mod:`xds_registry.tables` for the objects of Register
Document Set-b (ITI TF-2b 3.42.4.1.3), Update Document Set (3.57.4.1.3) and Delete Document Set
(3.62.4.1.3), plus the look-ups those transactions check against (existing objects, uniqueIds,
associations).

Every function takes a connection inside the caller's unit of work (``ctx.db.begin()``), so a
transaction is stored completely or not at all (DESIGN.md principle 5).

Concurrency.  Every write unit locks before its first registry statement (ITI-41 reads its own
``repo_document`` rows first, in the same unit).  On SQLite the unit of work already began with
``BEGIN IMMEDIATE`` (hie.db), which holds the database write lock: writers are serialized.  On
PostgreSQL the locks are transaction-scoped advisory locks (``pg_advisory_xact_lock``) in two
levels, so that the check-then-write rules of the TF — a uniqueId registered twice by two
concurrent submissions, a document replaced twice, an addendum to a document being replaced, two
new versions of one logicalId — are safe without relying on isolation levels:

- :func:`lock_registry` takes the registry lock exclusively: ITI-57 and ITI-62, which rewrite
  existing objects, run alone;
- :func:`lock_for_register` (ITI-42, and ITI-41 through it) takes the registry lock shared plus
  one exclusive lock per name the submission claims or touches — its entryUUIDs, its uniqueIds and
  the existing objects its associations reference (the replaced original, the folder, the parent
  document).  Any two submissions that could contradict each other share a name and so run one
  after the other; all others, the common case of new documents, run side by side.  The names are
  locked in one statement, in sorted key order, so two submissions cannot deadlock.

Registration numbers (``seq``, the order of results) come from the ``xds_object_seq_seq``
sequence on PostgreSQL and from ``max(seq) + 1`` on SQLite.  Readers (stored queries) never lock.

Cost.  The statements of the write path are built once (module constants, expanding IN
parameters), so executing them reuses SQLAlchemy's compiled form; :func:`lookup` answers a
submission's existence checks in one UNION ALL; :class:`Rows` gathers a submission's rows (built
before the lock, numbered under it) and writes them with one executemany INSERT per table,
however many objects, codes and authors it has.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from xds_registry import vocab as V
from xds_registry.ebrim import deserialize, serialize
from xds_registry.model import AnyEntry, Association, DocumentEntry, Folder, SubmissionSet
from xds_registry.tables import (OBJECT_SEQ, association as t_assoc, document_entry as t_de,
                                 folder as t_fd, object_author as t_author,
                                 object_code as t_code, object_reference_id as t_ref,
                                 registry_object as t_obj, submission_set as t_ss)

REGISTRY_LOCK_KEY = 0x58445352_00000042   # "XDSR" / 42: the registry writers' advisory lock
CHUNK = 500                               # bound for IN (...) lists

APPROVED, DEPRECATED, SUBMITTED = "Approved", "Deprecated", "Submitted"


def lock_registry(conn: Connection) -> None:
    """Run alone among registry writers (ITI-57, ITI-62; see the module docstring)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_EXCLUSIVE, {"k": REGISTRY_LOCK_KEY})


def lock_for_register(conn: Connection, names: Iterable[str]) -> None:
    """A registration's locks (see the module docstring): the registry lock shared, then each of
    ``names`` (entryUUIDs, uniqueIds, referenced ids) exclusively, in key order."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(_LOCK_SHARED, {"k": REGISTRY_LOCK_KEY})
    keys = sorted({lock_key(n) for n in names})
    if keys:
        conn.execute(_LOCK_KEYS, {"keys": keys})


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (a collision only serializes)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8, person=b"xds-lock").digest()
    return int.from_bytes(digest, "big", signed=True)


_LOCK_EXCLUSIVE = sa.text("SELECT pg_advisory_xact_lock(:k)")
_LOCK_SHARED = sa.text("SELECT pg_advisory_xact_lock_shared(:k)")
# the keys arrive sorted; WITH ORDINALITY + ORDER BY keeps them so (no deadlock between two
# registrations), and PostgreSQL evaluates the volatile lock function after the sort
_LOCK_KEYS = sa.text(
    "SELECT count(pg_advisory_xact_lock(k.key)) FROM (SELECT key FROM unnest(CAST(:keys AS "
    "bigint[])) WITH ORDINALITY AS u(key, n) ORDER BY n) AS k")


def next_seqs(conn: Connection, count: int) -> list[int]:
    """``count`` new registration numbers, increasing (see the module docstring)."""
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        return list(conn.execute(_NEXT_SEQS, {"n": count}).scalars())
    first = (conn.execute(_MAX_SEQ).scalar() or 0) + 1
    return list(range(first, first + count))


def next_seq(conn: Connection) -> int:
    """One new registration number (the row using it is inserted before the next call)."""
    return next_seqs(conn, 1)[0]


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


# Statements of the hot write path are built once, with expanding IN parameters: executing a
# prebuilt construct reuses its cache key and compiled SQL instead of rebuilding both per call.
_VALUES = sa.bindparam("values", expanding=True)
_BY_ID = _existing_select().where(t_obj.c.id.in_(_VALUES))
_BY_LID = _existing_select().where(t_obj.c.lid.in_(_VALUES)).order_by(t_obj.c.version)
_BY_DOC_UID = _existing_select().where(t_de.c.unique_id.in_(_VALUES)).order_by(t_obj.c.seq)
_PACKAGE_UIDS = {
    kind: sa.select(table.c.unique_id, t_obj.c.lid)
    .select_from(table.join(t_obj, t_obj.c.id == table.c.id)).where(table.c.unique_id.in_(_VALUES))
    for kind, table in (("SubmissionSet", t_ss), ("Folder", t_fd))}
_MAX_SEQ = sa.select(sa.func.max(t_obj.c.seq))
_NEXT_SEQS = sa.text(f"SELECT nextval('{OBJECT_SEQ.name}') FROM generate_series(1, :n) "
                     "ORDER BY 1")


def load(conn: Connection, ids: Iterable[str]) -> dict[str, Existing]:
    """The registered objects among ``ids`` (any kind), by id."""
    out: dict[str, Existing] = {}
    for part in _chunks(ids):
        for r in conn.execute(_BY_ID, {"values": part}):
            out[r.id] = _row(r)
    return out


def load_xml(conn: Connection, object_id: str) -> bytes | None:
    return conn.execute(sa.select(t_obj.c.xml).where(t_obj.c.id == object_id)).scalar()


def versions(conn: Connection, lids: Iterable[str]) -> dict[str, list[Existing]]:
    """Every version of each logical id, oldest first."""
    out: dict[str, list[Existing]] = {}
    for part in _chunks(lids):
        for r in conn.execute(_BY_LID, {"values": part}):
            out.setdefault(r.lid, []).append(_row(r))
    return out


def documents_by_unique_id(conn: Connection, uids: Iterable[str]) -> dict[str, list[Existing]]:
    out: dict[str, list[Existing]] = {}
    for part in _chunks(uids):
        for r in conn.execute(_BY_DOC_UID, {"values": part}):
            out.setdefault(r.unique_id, []).append(_row(r))
    return out


def package_unique_ids(conn: Connection, kind: str, uids: Iterable[str]) -> dict[str, str]:
    """uniqueId -> logical id of the SubmissionSets (``kind="SubmissionSet"``) or Folders
    already registered with these uniqueIds."""
    q = _PACKAGE_UIDS["SubmissionSet" if kind == "SubmissionSet" else "Folder"]
    out: dict[str, str] = {}
    for part in _chunks(uids):
        for r in conn.execute(q, {"values": part}):
            out[r.unique_id] = r.lid
    return out


@dataclass
class Lookup:
    """What a submission's checks need from the registry (:func:`lookup`): registered objects by
    id, DocumentEntries by uniqueId (registration order), and uniqueId -> logical id of the
    SubmissionSets and of the Folders."""

    by_id: dict[str, Existing]
    documents: dict[str, list[Existing]]
    submission_sets: dict[str, str]
    folders: dict[str, str]


def _lookup_branch(tag: str, column) -> sa.Select:
    return (_existing_select().add_columns(t_obj.c.seq, sa.literal(tag).label("which"))
            .where(column.in_(sa.bindparam(tag, expanding=True))))


# one statement, each branch driven by its own index (a UNION ALL, not an OR across joined
# tables, which no planner can answer from the indexes); only the branches with values take
# part (an empty IN list would let a planner scan xds_object), one prebuilt statement for each
# combination
_LOOKUP_COLUMNS = {"ids": t_obj.c.id, "doc_uids": t_de.c.unique_id,
                   "ss_uids": t_ss.c.unique_id, "folder_uids": t_fd.c.unique_id}
_LOOKUPS: dict[tuple[str, ...], sa.CompoundSelect | sa.Select] = {}


def _lookup_statement(tags: tuple[str, ...]):
    stmt = _LOOKUPS.get(tags)
    if stmt is None:
        branches = [_lookup_branch(t, _LOOKUP_COLUMNS[t]) for t in tags]
        stmt = _LOOKUPS[tags] = branches[0] if len(branches) == 1 else sa.union_all(*branches)
    return stmt


def lookup(conn: Connection, *, ids: Iterable[str] = (), document_uids: Iterable[str] = (),
           submission_set_uids: Iterable[str] = (), folder_uids: Iterable[str] = ()) -> Lookup:
    """:func:`load`, :func:`documents_by_unique_id` and :func:`package_unique_ids` (both kinds)
    in one round trip."""
    params = {"ids": list(dict.fromkeys(ids)), "doc_uids": list(dict.fromkeys(document_uids)),
              "ss_uids": list(dict.fromkeys(submission_set_uids)),
              "folder_uids": list(dict.fromkeys(folder_uids))}
    if any(len(v) > CHUNK for v in params.values()):
        return Lookup(load(conn, params["ids"]),
                      documents_by_unique_id(conn, params["doc_uids"]),
                      package_unique_ids(conn, "SubmissionSet", params["ss_uids"]),
                      package_unique_ids(conn, "Folder", params["folder_uids"]))
    out = Lookup({}, {}, {}, {})
    tags = tuple(t for t, v in params.items() if v)
    if not tags:
        return out
    docs: list = []
    for r in conn.execute(_lookup_statement(tags), {t: params[t] for t in tags}):
        if r.which == "ids":
            out.by_id[r.id] = _row(r)
        elif r.which == "doc_uids":
            docs.append(r)
        elif r.which == "ss_uids":
            out.submission_sets[r.unique_id] = r.lid
        else:
            out.folders[r.unique_id] = r.lid
    for r in sorted(docs, key=lambda r: r.seq):
        out.documents.setdefault(r.unique_id, []).append(_row(r))
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


_BLANK_TEXT = re.compile(rb">[ \t\r\n]+<")


def stored_xml(el) -> bytes:
    """The ``xml`` column of an object: its serialised ebRIM element, without the
    whitespace-only text between tags that a raw extra child of a pretty-printed submission may
    bring (reading it back drops that anyway), so that stored queries can splice the stored
    bytes as they are (``xds_registry.query_result``)."""
    xml = serialize(el)
    return serialize(deserialize(xml)) if _BLANK_TEXT.search(xml) else xml


def insert(conn: Connection, entry: AnyEntry, *, seq: int, status: str = APPROVED,
           version: int = 1, created_at: dt.datetime | None = None) -> None:
    """Insert ``entry`` (final ids) with its typed rows; ``xml`` is its ebRIM element with
    ``lid`` and ``VersionInfo`` written in (the status is managed by the row, not the XML), see
    :func:`stored_xml`."""
    rows = Rows()
    rows.add(entry, seq=seq, status=status, version=version, created_at=created_at)
    rows.write(conn)


# one prebuilt INSERT per table, in foreign-key order (xds_object first)
_INSERTS = {t: t.insert() for t in (t_obj, t_ss, t_fd, t_de, t_assoc, t_code, t_author, t_ref)}


class Rows:
    """The rows of a batch of registry objects, gathered per table, so that a submission costs one
    (executemany) INSERT per table instead of one per row."""

    def __init__(self) -> None:
        self.tables: dict[sa.Table, list[dict]] = {t: [] for t in _INSERTS}

    def add(self, entry: AnyEntry, *, seq: int | None, status: str = APPROVED, version: int = 1,
            created_at: dt.datetime | None = None) -> None:
        """Add ``entry`` (final ids) with its typed rows; ``seq=None`` leaves the registration
        number to :meth:`number` (rows built before the registry lock is taken)."""
        entry.lid = entry.lid or entry.id
        entry.status = None
        if not isinstance(entry, (Association, SubmissionSet)):
            entry.version = str(version)
        created_at = created_at or now_utc()
        rows = self.tables
        rows[t_obj].append(dict(
            id=entry.id, seq=seq, kind=entry.KIND, lid=entry.lid, version=version, status=status,
            home=entry.home, xml=stored_xml(entry.to_ebrim()), created_at=created_at))
        if isinstance(entry, DocumentEntry):
            self._document(entry, status)
        elif isinstance(entry, SubmissionSet):
            rows[t_ss].append(dict(
                id=entry.id, unique_id=entry.unique_id, patient_id=entry.patient_id,
                source_id=entry.source_id, submission_time=entry.submission_time,
                content_type_code=entry.content_type.code if entry.content_type else None,
                content_type_scheme=entry.content_type.scheme if entry.content_type else None,
                status=status))
            self._authors(entry.id, entry.authors)
        elif isinstance(entry, Folder):
            rows[t_fd].append(dict(
                id=entry.id, lid=entry.lid, unique_id=entry.unique_id,
                patient_id=entry.patient_id, last_update_time=entry.last_update_time,
                status=status))
            self._codes(entry.id, "folder", entry.codes)
        elif isinstance(entry, Association):
            rows[t_assoc].append(dict(
                id=entry.id, type=entry.type_short or entry.type[-32:], source_id=entry.source,
                target_id=entry.target, status=status, ss_status=entry.ss_status))
        else:  # pragma: no cover - AnyEntry is closed
            raise TypeError(type(entry))

    def _document(self, de: DocumentEntry, status: str) -> None:
        self.tables[t_de].append(dict(
            id=de.id, lid=de.lid, unique_id=de.unique_id, patient_id=de.patient_id,
            status=status, entry_type=de.entry_type, **_code_cols("class", de.class_code),
            **_code_cols("type", de.type_code), **_code_cols("practice", de.practice_code),
            **_code_cols("hcft", de.hcft_code), **_code_cols("format", de.format_code),
            creation_time=de.creation_time, service_start_time=de.service_start_time,
            service_stop_time=de.service_stop_time, mime_type=de.mime_type,
            hash=de.hash.lower() if de.hash else None, size=de.size,
            repository_unique_id=de.repository_unique_id, availability=status))
        self._codes(de.id, "event", de.event_codes)
        self._codes(de.id, "conf", de.confidentiality_codes)
        self._authors(de.id, de.authors)
        self.tables[t_ref].extend({"object_id": de.id, "reference_id": r}
                                  for r in dict.fromkeys(de.reference_ids or ()))

    def _codes(self, object_id: str, kind: str, codes) -> None:
        self.tables[t_code].extend({"object_id": object_id, "kind": kind, "code": c.code,
                                    "scheme": c.scheme} for c in codes)

    def _authors(self, object_id: str, authors) -> None:
        self.tables[t_author].extend({"object_id": object_id, "person": a.person}
                                     for a in authors if a.person)

    def count(self) -> int:
        """How many objects (registration numbers to draw with :func:`next_seqs`)."""
        return len(self.tables[t_obj])

    def number(self, seqs: Sequence[int]) -> None:
        """Number the objects in the order they were added with ``seqs`` (increasing)."""
        objs = self.tables[t_obj]
        if len(seqs) != len(objs):
            raise ValueError(f"{len(objs)} registration numbers needed, {len(seqs)} given")
        for row, seq in zip(objs, seqs):
            row["seq"] = seq

    def write(self, conn: Connection) -> None:
        for table, rows in self.tables.items():
            if rows:
                conn.execute(_INSERTS[table], rows)


def _code_cols(prefix: str, code) -> dict:
    return {f"{prefix}_code": code.code if code else None,
            f"{prefix}_scheme": code.scheme if code else None}


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

"""Linking an incoming identity to a person of the patient index: the cross-referencing a PIX
Manager does when a Patient Identity Source feeds an identifier it has not seen (ITI TF-2a
3.8.4.1.3 "the PIX Manager shall ... apply its linking policy"), with the probabilistic matching
of :mod:`pix_pdq.matching`.

For an identity whose identifiers the index does not know yet, :func:`find_match`:

1. reads the identity's :class:`~pix_pdq.matching.Demographics` from the feed (name, sex, birth
   date, the resident ID number — an identifier in the national domain 2.16.156.10011.1.3 or
   PID-19 — phone and address);
2. finds the candidate persons through the blocking keys stored in ``pix_block`` (at most
   :data:`MAX_CANDIDATES`), so a feed costs the same whatever the size of the index; each key
   carries its person's resident ID number, and a candidate with another valid number (two
   people by rule, :func:`pix_pdq.matching.two_people`) is dropped unread;
3. weighs each candidate (``name`` agreement weighted by how common the exact name is in the
   index) and links to the best one above the upper threshold — unless that person already has
   an identifier of the same source domain (one identity per domain per person: two numbers of
   one hospital are joined only by an explicit merge) or a different enterprise identifier; such
   a pair, and every pair between the thresholds, is queued in ``pix_review`` instead.

Every comparison that ended in a link or a review is written to ``pix_match`` with its evidence
(:func:`decision_rows`, written by :mod:`pix_pdq.recording`), so each link can be explained and
undone.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hie.db import member_of
from pix_pdq import matching as M
from pix_pdq import recording
from pix_pdq import names as N
from pix_pdq.resident_id import RESIDENT_ID_OID, ResidentId, foreign, parse as parse_resident_id
from pix_pdq.tables import ACTIVE, block as t_block, identifier as t_id, person as t_person

MAX_CANDIDATES = 200
KEY_LEN = 160
NAME_KEY = "n:"            # not a search key: counts persons by exact (normalized) name
_TOTAL_TTL = 60.0          # seconds a count of active persons is reused


# --------------------------------------------------------------------------------------------
# demographics
# --------------------------------------------------------------------------------------------

def primary_name(demo: Mapping[str, Any]) -> tuple[str, str]:
    """(family, given) of the legal name (XPN-7 ``L``), else the first; a whole Chinese name
    sent in the family component is split."""
    found = demo.get("names") or []
    primary: Mapping[str, Any] = next((n for n in found if n.get("type") == "L"),
                                      found[0] if found else {})
    family, given = str(primary.get("family", "")), str(primary.get("given", ""))
    if family and not given and N.is_chinese(family):
        return N.split(family)       # 张三 sent whole in XPN-1
    return family, given


def _address(demo: Mapping[str, Any]) -> str:
    for a in demo.get("addresses") or []:
        parts = [a.get(k, "") for k in ("state", "city", "county", "street", "other")]
        text = "".join(p for p in parts if p) if N.is_chinese("".join(parts)) else \
            " ".join(p for p in parts if p)
        if text:
            return text
    return ""


def _phone(demo: Mapping[str, Any]) -> str:
    for key in ("home_phones", "business_phones"):
        for p in demo.get(key) or []:
            if p.get("number"):
                return str(p["number"])
    return ""


def resident_id_of(identifiers: Sequence[Any], demo: Mapping[str, Any]) -> ResidentId | None:
    """The national identification number: an identifier of the resident-ID domain, else PID-19
    (HL7 "SSN number"; Chinese sites put the resident ID there), else a resident ID sent as an
    identifier but refused as one (``resident_id_unverified``) — read as a GB 11643 number
    when it has 15 or 18 characters, else as another scheme's number (:func:`foreign`)."""
    for ident in identifiers:
        if ident.domain == RESIDENT_ID_OID and ident.value:
            return parse_resident_id(ident.value)
    ssn = str(demo.get("ssn") or demo.get("resident_id_unverified") or "").strip()
    if not ssn:
        return None
    rid = parse_resident_id(ssn)
    return rid if rid.valid or len(rid.number) in (15, 18) else foreign(ssn)


def demographics_of(identifiers: Sequence[Any], demo: Mapping[str, Any]) -> M.Demographics:
    family, given = primary_name(demo)
    return M.Demographics(family=family, given=given, sex=str(demo.get("sex") or "")[:1],
                          birth_date=str(demo.get("birth_time") or "")[:8],
                          resident_id=resident_id_of(identifiers, demo), phone=_phone(demo),
                          address=_address(demo))


def keys_of(d: M.Demographics) -> list[str]:
    keys = M.blocking_keys(d)
    if d.full_name:
        keys.append(NAME_KEY + d.full_name)
    return [k[:KEY_LEN] for k in dict.fromkeys(keys)]


def index_person(conn: Connection, person_id: int, d: M.Demographics,
                 fresh: bool = False) -> None:
    """File ``person_id`` under the keys of ``d`` (replacing its previous keys; a ``fresh``
    person has none yet)."""
    recording.file_blocks(conn, person_id, keys_of(d), fresh=fresh)


# --------------------------------------------------------------------------------------------
# candidates
# --------------------------------------------------------------------------------------------

# pix_block alone, through its (key, person_id) key: a join to pix_person here let the planner
# drive from pix_person (a scan of the whole index per feed) whenever its statistics were stale;
# only active persons are filed, and _candidate_persons keeps only active ones anyway
# (no DISTINCT either: with it the planner preferred walking the person_id index in order and
# filtering on the key); duplicates are removed here
# a candidate whose block carries another resident ID number than the feed's deciding one is
# two people by rule (matching.two_people, matching.deciding_number): the query leaves it out,
# from the index alone on PostgreSQL — in a large index most of a block are such strangers
_CANDIDATES = {pg: sa.select(t_block.c.person_id)
               .where(member_of(t_block.c.key, "keys", pg),
                      sa.or_(sa.bindparam("any_number", type_=sa.Boolean),
                             t_block.c.number.is_(None),
                             t_block.c.number == sa.bindparam("number")))
               .limit(4 * MAX_CANDIDATES) for pg in (False, True)}
_NAME_COUNT = sa.select(sa.func.count()).select_from(t_block).where(
    t_block.c.key == sa.bindparam("key"))
_TOTAL = sa.select(sa.func.count()).select_from(t_person).where(t_person.c.status == ACTIVE)
_totals: dict[str, tuple[float, int]] = {}


def _active_persons(conn: Connection) -> int:
    url = str(conn.engine.url)
    seen = _totals.get(url)
    if seen is None or time.monotonic() - seen[0] > _TOTAL_TTL or seen[1] < 1000:
        seen = (time.monotonic(), int(conn.execute(_TOTAL).scalar() or 0))
        _totals[url] = seen
    return seen[1]


YOUNG = 100_000  # active persons below which the index counts as young (growing fast)


def known_young(url: str) -> bool:
    """Whether the index of the database at ``url`` was young when last counted (no query)."""
    seen = _totals.get(url)
    return seen is not None and seen[1] < YOUNG


def young(conn: Connection) -> bool:
    """Whether the index is still small enough that its tables can outgrow their statistics
    between two autovacuum analyses (a new platform loading its hospitals' patients): feeds
    then plan each statement with its values (:func:`hie.db.custom_plans`); an older index
    keeps PostgreSQL's cached plans, which saves a quarter of its CPU per feed."""
    return conn.dialect.name == "postgresql" and _active_persons(conn) < YOUNG


def name_share(conn: Connection, full_name: str) -> float | None:
    """The share of active persons with this exact (normalized) name; None when unknown."""
    if not full_name:
        return None
    total = _active_persons(conn)
    if total <= 0:
        return None
    key = (NAME_KEY + full_name)[:KEY_LEN]
    slot = (str(conn.engine.url), key)
    cached = _name_counts.get(slot) if total >= _NAME_CACHE_FROM else None
    if cached is not None and time.monotonic() - cached[0] <= _TOTAL_TTL:
        count = cached[1]
    else:
        count = int(conn.execute(_NAME_COUNT, {"key": key}).scalar() or 0)
        if total >= _NAME_CACHE_FROM:   # a large index: a name's share moves slowly
            if len(_name_counts) >= _NAME_CACHE_SIZE:
                _name_counts.clear()
            _name_counts[slot] = (time.monotonic(), count)
    return max(count, 1) / max(total, 1)


# name key -> (when counted, persons with that name): reused for _TOTAL_TTL seconds once the
# index holds _NAME_CACHE_FROM persons (one statement less per feed; the weight of a common
# name does not change in a minute)
_name_counts: dict[tuple[str, str], tuple[float, int]] = {}
_NAME_CACHE_FROM = 10_000
_NAME_CACHE_SIZE = 100_000


# the candidates' records with their active identifiers, one row per identifier
_CANDIDATE_ROWS = {pg: sa.select(t_person.c.id, t_person.c.demographics, t_person.c.enterprise_id,
                                 t_id.c.domain_oid, t_id.c.value)
                   .select_from(t_person.outerjoin(t_id, sa.and_(t_id.c.person_id == t_person.c.id,
                                                                 t_id.c.status == ACTIVE)))
                   .where(member_of(t_person.c.id, "ids", pg), t_person.c.status == ACTIVE)
                   for pg in (False, True)}


@dataclass
class Candidate:
    """A person of the index as matching sees it: its comparable demographics, the domains
    it holds identifiers of, its enterprise id, its record as stored (``demographics``) and
    a resident ID number it holds."""

    demographics: M.Demographics
    domains: set[str]
    enterprise_id: str | None
    record: dict[str, Any]
    national: str | None = None   # one of its active resident ID numbers


def _candidate_persons(conn: Connection, ids: Sequence[int]) -> dict[int, Candidate]:
    if not ids:
        return {}
    rows: dict[int, tuple[Any, list[_Ident]]] = {}
    for r in conn.execute(_CANDIDATE_ROWS[conn.dialect.name == "postgresql"], {"ids": list(ids)}):
        own = rows.setdefault(r.id, (r, []))[1]
        if r.domain_oid is not None:
            own.append(_Ident(r.domain_oid, r.value))
    out = {}
    for pid, (r, own) in rows.items():
        record = dict(r.demographics or {})
        out[pid] = Candidate(demographics_of(own, record), {i.domain for i in own},
                             r.enterprise_id, record, next(
                                 (i.value for i in own if i.domain == RESIDENT_ID_OID), None))
    return out


@dataclass(frozen=True)
class _Ident:
    domain: str
    value: str


# --------------------------------------------------------------------------------------------
# matching
# --------------------------------------------------------------------------------------------

@dataclass
class MatchResult:
    """``person_id``: the person to link to (None: a new person); ``decision`` the winning
    comparison; ``reviews``: (candidate person, decision) pairs for the review queue;
    ``compared``: how many candidates were read (those with another resident ID number are
    left out by the query)."""

    person_id: int | None = None
    decision: M.Decision | None = None
    reviews: list[tuple[int, M.Decision]] = field(default_factory=list)
    compared: int = 0
    patterns: dict[str, int] = field(default_factory=dict)   # comparison vectors seen, counted
    chosen: Candidate | None = None    # the person linked to, as read
    keys: list[str] = field(default_factory=list)   # the identity's own blocking keys


def find_match(conn: Connection, identifiers: Sequence[Any], d: M.Demographics,
               model: M.Model, affinity_domain: str = "") -> MatchResult:
    """See the module docstring (steps 2 and 3)."""
    filed = keys_of(d)
    keys = [k for k in filed if not k.startswith(NAME_KEY)]
    if not keys:
        return MatchResult(keys=filed)
    pg = conn.dialect.name == "postgresql"
    number = M.deciding_number(d.resident_id)
    ids = list(dict.fromkeys(conn.execute(_CANDIDATES[pg], {
        "keys": keys, "any_number": number is None, "number": number}).scalars()))[
        :MAX_CANDIDATES]
    persons = _candidate_persons(conn, ids)
    result = MatchResult(compared=len(persons), keys=filed)
    share = name_share(conn, d.full_name) if persons else None
    domains = {i.domain for i in identifiers}
    enterprise = {i.value for i in identifiers if affinity_domain and i.oid == affinity_domain}
    for pid, cand in sorted(persons.items()):
        cd, their_domains, eid = cand.demographics, cand.domains, cand.enterprise_id
        if M.two_people(d, cd):  # decided by rule: neither linked nor queued, and no
            continue             # evidence for m and u
        dec = M.decide(model, d, cd, lambda _name: share)
        key = pattern_of(dec.levels)
        result.patterns[key] = result.patterns.get(key, 0) + 1
        barred = bool(domains & their_domains) or bool(enterprise and eid and
                                                       eid not in enterprise)
        if dec.outcome == "link" and not barred:
            if result.decision is None or dec.score > result.decision.score:
                if result.person_id is not None:
                    result.reviews.append((result.person_id, result.decision))
                result.person_id, result.decision, result.chosen = pid, dec, cand
            else:
                result.reviews.append((pid, dec))
        elif dec.outcome in ("link", "review"):
            result.reviews.append((pid, dec))
    return result


def decision_rows(*, now: dt.datetime, source: str, identifiers: Sequence[Any],
                  person_id: int | None, result: MatchResult, model: M.Model
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``pix_match`` rows of ``result`` (the link or the new person, then the review pairs)
    and its ``pix_review`` rows, for ``person_id`` — None for a person yet to be created (the
    writer fills ``person_id`` in, :mod:`pix_pdq.recording`)."""
    cx = "~".join(i.cx for i in identifiers)[:4000]
    thresholds = {"upper": model.upper, "lower": model.lower}
    rows = []
    if result.decision is not None:
        rows.append({"time": now, "source": source, "identifiers": cx, "person_id": person_id,
                     "candidate_id": result.person_id, "outcome": "link",
                     "score": result.decision.score,
                     "evidence": {**result.decision.evidence(), "thresholds": thresholds}})
    else:
        rows.append({"time": now, "source": source, "identifiers": cx, "person_id": person_id,
                     "candidate_id": None, "outcome": "new", "score": None,
                     "evidence": {"compared": result.compared, "thresholds": thresholds}})
    # every comparison vector of this feed, for the estimation of m and u (hie mpi estimate)
    rows[0]["evidence"]["patterns"] = result.patterns
    reviews = [(cand, dec) for cand, dec in result.reviews if cand != person_id]
    for cand, dec in reviews:
        rows.append({"time": now, "source": source, "identifiers": cx, "person_id": person_id,
                     "candidate_id": cand, "outcome": "review", "score": dec.score,
                     "evidence": {**dec.evidence(), "thresholds": thresholds}})
    queue = [{"person_id": person_id, "candidate_id": cand, "score": dec.score,
              "evidence": dec.evidence(), "status": "pending", "created_at": now}
             for cand, dec in reviews]
    return rows, queue


def pattern_of(levels: Mapping[str, str]) -> str:
    """A comparison vector as text, ``name=exact;sex=exact;...`` (fields in a fixed order)."""
    return ";".join(f"{f}={levels.get(f, M.MISSING)}" for f in M.FIELDS)


def vector_of(pattern: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in pattern.split(";") if "=" in part)


def reindex(db: Any, batch: int = 1000) -> int:
    """File every active person again under the blocking keys of this version (``hie mpi
    reindex``, after the keys changed); one unit of work per ``batch`` persons.  Returns how
    many were filed."""
    done, after = 0, 0
    while True:
        with db.begin() as conn:
            rows = conn.execute(sa.select(t_person.c.id, t_person.c.demographics)
                                .where(t_person.c.status == ACTIVE, t_person.c.id > after)
                                .order_by(t_person.c.id).limit(batch)).all()
            if not rows:
                return done
            national: dict[int, str] = dict(conn.execute(
                sa.select(t_id.c.person_id, t_id.c.value).where(
                    t_id.c.person_id.in_([r.id for r in rows]),
                    t_id.c.domain_oid == RESIDENT_ID_OID, t_id.c.status == ACTIVE)).all())
            for r in rows:
                ids = [_Ident(RESIDENT_ID_OID, national[r.id])] if r.id in national else []
                index_person(conn, r.id, demographics_of(ids, dict(r.demographics or {})))
            done += len(rows)
            after = rows[-1].id


def merge_persons(conn: Connection, subsumed: int, survivor: int, now: dt.datetime) -> None:
    """Make ``subsumed`` part of ``survivor``: its identifiers move over, it is retired
    (``merged``, ``merged_into``) and leaves the blocks.  Refused (ValueError) unless both are
    active and hold no numbers of one domain (joining those is an ADT A40 merge of numbers)."""
    from pix_pdq.tables import MERGED
    rows = {p.id: p for p in conn.execute(sa.select(t_person).where(
        t_person.c.id.in_([subsumed, survivor])))}
    if len(rows) != 2 or any(p.status != ACTIVE for p in rows.values()):
        raise ValueError("both persons must still be active")
    theirs = {d for (d,) in conn.execute(sa.select(t_id.c.domain_oid).where(
        t_id.c.person_id == survivor, t_id.c.status == ACTIVE))}
    moving = {d for (d,) in conn.execute(sa.select(t_id.c.domain_oid).where(
        t_id.c.person_id == subsumed, t_id.c.status == ACTIVE))}
    clash = sorted(moving & theirs)
    if clash:
        raise ValueError("both persons hold numbers of domain(s) " + ", ".join(clash)
                         + ": merge those numbers explicitly (ADT A40)")
    conn.execute(t_id.update().where(t_id.c.person_id == subsumed).values(person_id=survivor))
    conn.execute(t_person.update().where(t_person.c.id == subsumed).values(
        status=MERGED, merged_into=survivor, updated_at=now))
    conn.execute(t_block.delete().where(t_block.c.person_id == subsumed))
    recording.renumber(conn, survivor)


__all__ = ["MAX_CANDIDATES", "MatchResult", "demographics_of", "find_match", "index_person",
           "keys_of", "merge_persons", "name_share", "pattern_of", "primary_name",
           "decision_rows",
           "resident_id_of", "vector_of"]

"""The patient index: record identities fed by Patient Identity Sources and answer "is this
patient known?" (ITI TF-2a 3.8.4.1.3 expected actions of the Document Registry / PIX Manager;
ITI TF-2x Appendix E for the CX data type of patient identifiers; XDS ``XDSUnknownPatientId``,
ITI TF-3 Table 4.2.4.1-2).

Functions take a SQLAlchemy connection inside the caller's unit of work, so a feed message is
applied completely or not at all.  A person is found through one of its identifiers, else by
matching the demographics against the index (:mod:`pix_pdq.linking`); identifiers of different
persons fed together are reported as conflicts and left where they are (joining two persons is
a merge).
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hie.db import custom_plans, needs_transaction
from hie.hl7v2 import DEFAULT_DELIMITERS, Field
from pix_pdq import linking, recording
from pix_pdq import matching as M
from pix_pdq import names as N
from pix_pdq.resident_id import RESIDENT_ID_OID
from pix_pdq.tables import ACTIVE, MERGED, identifier as t_id, person as t_person


@dataclass(frozen=True)
class Identifier:
    """A patient identifier (HL7 CX): ``value`` (CX-1) in the domain of an assigning authority
    (CX-4: ``namespace`` &``oid``&``oid_type``), with identifier type code ``id_type`` (CX-5)."""

    value: str
    oid: str = ""
    namespace: str = ""
    oid_type: str = ""
    id_type: str = ""

    @property
    def domain(self) -> str:
        """The key of the identifier's domain: the universal id, else the namespace id."""
        return self.oid or self.namespace

    @property
    def domain_type(self) -> str:
        return self.oid_type if self.oid else ""

    @classmethod
    def from_field(cls, f: Field, rep: int = 1) -> "Identifier":
        """From repetition ``rep`` of a CX field (e.g. PID-3)."""
        return cls(value=f.value(rep, 1).strip(), namespace=f.value(rep, 4, 1).strip(),
                   oid=f.value(rep, 4, 2).strip(), oid_type=f.value(rep, 4, 3).strip(),
                   id_type=f.value(rep, 5).strip())

    @classmethod
    def parse(cls, cx: str) -> "Identifier":
        """From a CX string as XDS writes it, ``id^^^&oid&ISO`` (HL7 default delimiters)."""
        return cls.from_field(Field.parse(cx.strip(), DEFAULT_DELIMITERS))

    @property
    def cx(self) -> str:
        """The CX string ``id^^^namespace&oid&ISO`` (ITI TF-3 4.2.3.2.16 form)."""
        aa = (self.namespace, self.oid, self.oid_type) if self.domain else None
        return Field.of((self.value, None, None, aa)).encode(DEFAULT_DELIMITERS)


@dataclass(frozen=True)
class Person:
    id: int
    enterprise_id: str | None
    status: str
    name: str | None
    family_name: str | None
    given_name: str | None
    birth_date: str | None
    sex: str | None
    demographics: dict[str, Any]
    identifiers: tuple[Identifier, ...]


@dataclass(frozen=True)
class RecordResult:
    """What :func:`record_identity` did: the person, whether it was created (or ``linked`` by
    matching), the identifiers added to it, and identifiers left alone because they already
    belong to another person."""

    person_id: int
    created: bool
    added: tuple[Identifier, ...] = ()
    conflicts: tuple[tuple[Identifier, int], ...] = ()
    linked: bool = False   # found by matching the demographics (not by an identifier)


# --------------------------------------------------------------------------------------------
# demographics columns
# --------------------------------------------------------------------------------------------

def display_name(family: str, given: str) -> str:
    """``张三`` for Chinese names (no blank), ``ZHANG SAN`` otherwise (family name first)."""
    family, given = family.strip(), given.strip()
    if not family or not given:
        return family or given
    sep = "" if N.is_chinese(family) or N.is_chinese(given) else " "
    return f"{family}{sep}{given}"


def _columns(demo: Mapping[str, Any]) -> dict[str, Any]:
    """The typed query columns: the display name, and family / given name in the comparable
    form (variants folded, a whole Chinese name split; the name as sent stays in the
    demographics)."""
    family, given = linking.primary_name(demo)
    birth = (demo.get("birth_time") or "")[:8]
    sex = (demo.get("sex") or "")[:1]
    return {"name": display_name(family, given)[:256] or None,
            "family_name": N.normalize(family)[:128] or None,
            "given_name": N.normalize(given)[:128] or None,
            "birth_date": birth or None, "sex": sex or None}


def merge_demographics(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """HL7 v2 update semantics (v2.5 2.5.3 / 2.6): an attribute not sent keeps its value, one
    sent as the null value (here: None) is deleted, any other replaces it."""
    out = dict(old)
    for key, value in new.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Owner:
    """A person holding one of a feed's identifiers, with what recording the feed needs of it:
    its enterprise id, its demographics and its resident ID number (one of its active national
    identifiers, None if it has none) — read with the identifiers, so that a feed of a known
    patient reads once before it writes."""

    person_id: int
    enterprise_id: str | None
    demographics: dict[str, Any]
    national: str | None


def _lookup(conn: Connection, ids: Iterable[Identifier]) -> dict[tuple[str, str], Owner]:
    keys = sorted({(i.domain, i.value) for i in ids})
    found: dict[tuple[str, str], Owner] = {}
    for start in range(0, len(keys), _SLOTS):
        chunk = keys[start:start + _SLOTS]
        chunk += [("", "")] * (_SLOTS - len(chunk))   # unused slots: a pair no identifier has
        params = {}
        for n, (domain, value) in enumerate(chunk):
            params[f"d{n}"], params[f"v{n}"] = domain, value
        for r in conn.execute(_LOOKUP[conn.dialect.name == "postgresql"], params):
            found[(r.domain_oid, r.value)] = Owner(r.person_id, r.enterprise_id,
                                                   r.demographics or {}, r.national)
    return found


# built once (building a select per feed cost more than running it): a fixed number of
# (domain, value) pairs, each through the unique index, with the holder's record.  One shape
# whatever the identifiers, so that PostgreSQL can keep one generic plan — which it does only
# when the plans it would make for the values cost no less: with arrays (domain = ANY .. AND
# value = ANY ..), or an OR of pairs joined to the person, the custom plans looked cheaper and
# every feed planned the statement anew (0.35 ms of the server's CPU).  Pairs in a VALUES list
# are estimated alike whatever their values; unused slots hold a pair no identifier has
_SLOTS = 4
_national = t_id.alias("national")
_LOOKUP = {
    False: sa.select(
        t_id.c.domain_oid, t_id.c.value, t_id.c.person_id, t_person.c.enterprise_id,
        t_person.c.demographics,
        sa.select(_national.c.value).where(
            _national.c.person_id == t_id.c.person_id,
            _national.c.domain_oid == RESIDENT_ID_OID, _national.c.status == ACTIVE)
        .limit(1).scalar_subquery().label("national"))
    .select_from(t_id.join(t_person, t_person.c.id == t_id.c.person_id))
    .where(sa.or_(*(sa.and_(t_id.c.domain_oid == sa.bindparam(f"d{n}"),
                            t_id.c.value == sa.bindparam(f"v{n}")) for n in range(_SLOTS)))),
    True: sa.text(
        "SELECT i.domain_oid, i.value, i.person_id, p.enterprise_id, p.demographics, "
        "(SELECT n.value FROM pix_identifier n WHERE n.person_id = i.person_id "
        f"AND n.domain_oid = '{RESIDENT_ID_OID}' AND n.status = '{ACTIVE}' LIMIT 1) AS national "
        "FROM (VALUES " + ", ".join(f"(CAST(:d{n} AS VARCHAR), CAST(:v{n} AS VARCHAR))"
                                     for n in range(_SLOTS)) + ") AS k (d, v) "
        "JOIN pix_identifier i ON i.domain_oid = k.d AND i.value = k.v "
        "JOIN pix_person p ON p.id = i.person_id"),
}


def is_known(conn: Connection, cx: str, domain: str | None = None) -> bool:
    """True when the CX ``id^^^&oid&ISO`` is a recorded, active identifier of an active person
    (the XDS registry's ``XDSUnknownPatientId`` check).  With ``domain`` (e.g. the affinity
    domain OID) only identifiers of that assigning authority count: the index also keeps local
    identifiers, which an XDS registry must not accept (ITI TF-2a 3.8.4.1.3)."""
    try:
        ident = Identifier.parse(cx)
    except Exception:  # noqa: BLE001 - a malformed CX is simply not known
        return False
    if not ident.value or not ident.domain:
        return False
    if domain is not None and ident.domain != domain:
        return False
    row = conn.execute(_IS_KNOWN, {"domain": ident.domain, "value": ident.value}).first()
    return row is not None


# built once: every registration asks it (building a select costs more than running it)
_IS_KNOWN = (sa.select(t_id.c.id)
             .select_from(t_id.join(t_person, t_person.c.id == t_id.c.person_id))
             .where(t_id.c.domain_oid == sa.bindparam("domain"),
                    t_id.c.value == sa.bindparam("value"),
                    t_id.c.status == ACTIVE, t_person.c.status == ACTIVE)
             .limit(1))


_ALIASES = None
MERGES_TTL = 1.0   # seconds another process may take to see a node's first merge
_merges: dict[str, tuple[float, bool]] = {}
# the value written out, so PostgreSQL uses the partial index of merged identifiers
_ANY_MERGED = sa.select(t_id.c.id).where(
    t_id.c.status == sa.literal_column(f"'{MERGED}'")).limit(1)


def has_merges(conn: Connection) -> bool:
    """Whether the index holds any merged identifier — asked at most once per
    :data:`MERGES_TTL` per process (and known at once in the process that merged), so that the
    registry's queries pay for alias look-ups only once there is something to find."""
    url = str(conn.engine.url)
    seen = _merges.get(url)
    now = time.monotonic()
    if seen is not None and (seen[1] or now - seen[0] < MERGES_TTL):
        return seen[1]
    found = conn.execute(_ANY_MERGED).first() is not None
    _merges[url] = (now, found)
    return found


def _merged_now(conn: Connection) -> None:
    _merges[str(conn.engine.url)] = (time.monotonic(), True)


def patient_aliases(conn: Connection, cx: str) -> list[str]:
    """``cx`` and the identifiers of its domain merged into its person (ADT A40), as CX strings
    ``id^^^&oid&ISO``: a query by the surviving identifier also finds what was filed under the
    subsumed ones (ITI TF-2a 3.8.4.2: the registry follows merges)."""
    global _ALIASES
    try:
        ident = Identifier.parse(cx)
    except Exception:  # noqa: BLE001 - not a CX: nothing to expand
        return [cx]
    if not ident.value or not ident.domain or not has_merges(conn):
        return [cx]
    if _ALIASES is None:
        alias = t_id.alias("merged")
        _ALIASES = (sa.select(alias.c.value, alias.c.domain_oid, alias.c.domain_type)
                    .select_from(t_id.join(alias, alias.c.person_id == t_id.c.person_id))
                    .where(t_id.c.domain_oid == sa.bindparam("domain"),
                           t_id.c.value == sa.bindparam("value"),
                           t_id.c.status == ACTIVE, alias.c.domain_oid == sa.bindparam("domain"),
                           alias.c.status == MERGED))
    out = [cx]
    for r in conn.execute(_ALIASES, {"domain": ident.domain, "value": ident.value}):
        out.append(f"{r.value}^^^&{r.domain_oid}&{r.domain_type or 'ISO'}")
    return out


def merge_identifiers(conn: Connection, survivor: int, prior: Sequence[Identifier],
                      now: dt.datetime, source: str = "") -> list[Identifier]:
    """ADT A40: each ``prior`` identifier is retired (status ``merged``) under the surviving
    person, and the person that held it — when another — is merged into the survivor with all
    its identifiers (an explicit merge: no one-number-per-domain check).  Returns the prior
    identifiers the index did not know."""
    from pix_pdq.tables import match as t_match
    unknown = []
    for ident in prior:
        key = ident
        if ident.domain == RESIDENT_ID_OID:
            key = national_identifier(ident)[0] or ident
        row = conn.execute(sa.select(t_id.c.id, t_id.c.person_id).where(
            t_id.c.domain_oid == key.domain, t_id.c.value == key.value)).first()
        if row is None:
            unknown.append(ident)
            continue
        owner = row.person_id
        conn.execute(t_id.update().where(t_id.c.id == row.id).values(
            status=MERGED, person_id=survivor))
        _merged_now(conn)
        if owner != survivor:
            conn.execute(t_id.update().where(t_id.c.person_id == owner).values(
                person_id=survivor))
            conn.execute(t_person.update().where(t_person.c.id == owner).values(
                status=MERGED, merged_into=survivor, updated_at=now))
            conn.execute(linking.t_block.delete().where(linking.t_block.c.person_id == owner))
        recording.renumber(conn, survivor)   # its numbers changed: the owner's, or one retired
        conn.execute(t_match.insert().values(
            time=now, source=source[:256], identifiers=key.cx, person_id=survivor,
            candidate_id=owner, outcome="merge", score=None,
            evidence={"event": "A40", "prior": key.cx}))
    return unknown


def known_domains(conn: Connection, domains: Iterable[str], affinity_domain: str = "") -> set[str]:
    """Those of ``domains`` the index knows: registered in ``pix_domain``, or the affinity or
    the national resident-ID domain."""
    from pix_pdq.tables import domain as t_domain
    wanted = set(domains)
    fixed = {d for d in (affinity_domain, RESIDENT_ID_OID) if d} & wanted
    seen = _seen_domains.setdefault(str(conn.engine.url), set())
    fixed |= wanted & seen
    rest = sorted(wanted - fixed)
    if not rest:
        return fixed
    global _KNOWN_DOMAINS
    if _KNOWN_DOMAINS is None:
        _KNOWN_DOMAINS = sa.select(t_domain.c.oid).where(
            t_domain.c.oid.in_(sa.bindparam("oids", expanding=True)))
    found = set(conn.execute(_KNOWN_DOMAINS, {"oids": rest}).scalars())
    tx = conn.get_transaction()
    if tx is None or conn.info.get("domains_written") is not tx:
        seen |= found   # committed rows: a domain once known stays known (none is removed)
    return fixed | found


_KNOWN_DOMAINS = None
# database URL -> domains seen registered by committed units of work; domains are never
# removed, so each process keeps them and a feed from a known hospital costs no look-up
_seen_domains: dict[str, set[str]] = {}


def register_domains(conn: Connection, identifiers: Sequence[Identifier], *, auto: bool,
                     affinity_domain: str = "", source: str = "",
                     now: dt.datetime | None = None) -> list[Identifier]:
    """The identifiers whose domain the index does not know.  With ``auto`` their domains are
    registered (and the list is empty)."""
    from pix_pdq.tables import domain as t_domain
    known = known_domains(conn, (i.domain for i in identifiers), affinity_domain)
    unknown = [i for i in identifiers if i.domain not in known]
    if not unknown or not auto:
        return unknown
    needs_transaction(conn)
    now = now or dt.datetime.now(dt.timezone.utc)
    rows = {i.domain: {"oid": i.domain, "namespace": i.namespace, "source": source[:256],
                       "auto": True, "created_at": now} for i in unknown}
    conn.execute(t_domain.insert(), list(rows.values()))
    conn.info["domains_written"] = conn.get_transaction()  # not committed: not to be cached
    return []


def find_person(conn: Connection, ident: Identifier) -> int | None:
    """The id of the person holding ``ident``, None if it is not recorded."""
    return conn.execute(sa.select(t_id.c.person_id).where(
        t_id.c.domain_oid == ident.domain, t_id.c.value == ident.value)).scalar()


def get_person(conn: Connection, person_id: int) -> Person | None:
    row = conn.execute(sa.select(t_person).where(t_person.c.id == person_id)).first()
    if row is None:
        return None
    ids = conn.execute(sa.select(t_id).where(t_id.c.person_id == person_id)
                       .order_by(t_id.c.id)).all()
    return Person(
        id=row.id, enterprise_id=row.enterprise_id, status=row.status, name=row.name,
        family_name=row.family_name, given_name=row.given_name, birth_date=row.birth_date,
        sex=row.sex, demographics=dict(row.demographics or {}),
        identifiers=tuple(_from_row(i) for i in ids))


def _from_row(row: Any) -> Identifier:
    namespace_only = not row.domain_type and row.domain_oid == row.domain_namespace
    return Identifier(value=row.value, oid="" if namespace_only else row.domain_oid,
                      namespace=row.domain_namespace, oid_type=row.domain_type,
                      id_type=row.id_type)


# --------------------------------------------------------------------------------------------
# recording
# --------------------------------------------------------------------------------------------

def _choose_person(ids: Sequence[Identifier], anchor: Sequence[Identifier],
                   owners: Mapping[tuple[str, str], Owner]) -> Owner | None:
    """The person the identifiers are recorded for: the holder of the affinity-domain
    identifier; else the holder of another identifier, unless the message brings an
    affinity-domain identifier and that holder already has a different one (then a new person:
    one person never gets two enterprise ids without the linking a later issue adds)."""
    for ident in anchor:
        owner = owners.get((ident.domain, ident.value))
        if owner is not None:
            return owner
    for ident in ids:
        owner = owners.get((ident.domain, ident.value))
        if owner is None:
            continue
        if not anchor or owner.enterprise_id is None:
            return owner
    return None


class InvalidIdentity(ValueError):
    """The identifiers sent cannot identify a patient (ITI-8 answers AE)."""


def national_identifier(ident: Identifier) -> tuple[Identifier | None, str]:
    """A resident ID number (domain 2.16.156.10011.1.3) as the index keeps it: a valid number in
    its normalized 18-character form (a legacy 15-digit number upgraded, so both forms name one
    identifier); an invalid one is not an identifier (None) — its text is returned to be kept as
    data for matching (GB 11643: the check character exists to catch mistyped numbers)."""
    from pix_pdq.resident_id import parse as parse_resident_id
    rid = parse_resident_id(ident.value)
    if not rid.valid:
        return None, ident.value
    return Identifier(rid.number, ident.oid, ident.namespace, ident.oid_type, ident.id_type), ""


def record_identity(conn: Connection, identifiers: Sequence[Identifier],
                    demographics: Mapping[str, Any] | None = None, *,
                    affinity_domain: str = "", now: dt.datetime | None = None,
                    source: str = "", model: M.Model | None = None,
                    matching: bool = True, register: bool = True,
                    rows: Callable[[Sequence[tuple[Identifier, int]]],
                                   Sequence[tuple[sa.Table, dict[str, Any]]]] | None = None
                    ) -> RecordResult:
    """Record that ``identifiers`` name one person with ``demographics`` (merged into what is
    known, see :func:`merge_demographics`).

    The person is the one already holding the affinity-domain identifier, else the one holding
    the first recorded identifier (if it has no other enterprise id), else — with ``matching``
    — the person the demographics match (:func:`pix_pdq.linking.find_match` with ``model``,
    decisions logged under ``source``), else a new person.  With ``register`` the identifiers'
    domains are registered as known (a caller enforcing ``HIE_PIX_AUTO_DOMAINS`` checks first).  Identifiers not yet recorded are
    added to it; identifiers recorded for a *different* person are left there and reported in
    :attr:`RecordResult.conflicts`.  Every identifier needs a value and a domain (ValueError).
    Concurrent writers may make the inserts fail with an IntegrityError: the caller retries its
    unit of work.  ``rows(conflicts)`` gives rows of other tables written with the person (see
    :class:`pix_pdq.recording.Write`).  Everything is written by the last statement (see
    :meth:`hie.db.Database.begin`, ``one_statement``), but for a new domain's registration.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    if linking.young(conn):  # its statistics lag its growth: plan with the values (hie.db)
        custom_plans(conn)
    unique: list[Identifier] = []
    seen: set[tuple[str, str]] = set()
    demo_new = dict(demographics or {})
    for ident in identifiers:
        if not ident.value or not ident.domain:
            raise ValueError(f"identifier without value or assigning authority: {ident.cx}")
        if ident.domain == RESIDENT_ID_OID:
            ident, unverified = national_identifier(ident)
            if ident is None:   # kept as data for matching, never as a key
                demo_new.setdefault("resident_id_unverified", unverified)
                continue
        if (ident.domain, ident.value) not in seen:
            seen.add((ident.domain, ident.value))
            unique.append(ident)
    if not unique:
        raise InvalidIdentity("no usable patient identifier: a resident ID number that fails "
                              "its GB 11643 check cannot identify a patient by itself")
    if register:  # the domains of these identifiers become known (see register_domains)
        register_domains(conn, unique, auto=True, affinity_domain=affinity_domain,
                         source=source, now=now)
    owners = _lookup(conn, unique)
    anchor = [i for i in unique if affinity_domain and i.oid == affinity_domain]
    enterprise_id = anchor[0].value if anchor else None
    chosen = _choose_person(unique, anchor, owners)
    person_id = chosen.person_id if chosen is not None else None
    model = model or M.default_model()
    match = None
    if person_id is None and matching:
        match = linking.find_match(conn, unique, linking.demographics_of(unique, demo_new),
                                   model, affinity_domain)
        person_id = match.person_id
    created = person_id is None
    number = None   # the known person's resident ID number
    if created:
        demo = merge_demographics({}, demo_new)
        person: dict[str, Any] = {"enterprise_id": enterprise_id}
    else:
        if chosen is not None:   # read with the identifiers
            stored, eid, number = chosen.demographics, chosen.enterprise_id, chosen.national
        else:                    # the person matching linked to, as it read it
            linked = match.chosen
            stored, eid, number = linked.record, linked.enterprise_id, linked.national
        demo = merge_demographics(stored, demo_new)
        person = {"enterprise_id": enterprise_id} if eid is None and enterprise_id else {}
    person.update(demographics=demo, **_columns(demo))
    added, conflicts = [], []
    for ident in unique:
        owner = owners.get((ident.domain, ident.value))
        if owner is None:
            added.append(ident)
        elif owner.person_id != person_id:
            conflicts.append((ident, owner.person_id))
    national = [i for i in unique if i.domain == RESIDENT_ID_OID]
    if not national and number:   # a new person holds only the identifiers just added
        national = [Identifier(number, RESIDENT_ID_OID)]
    if created and match is not None:   # a new person: filed under the keys it was matched by
        keys = match.keys
    else:
        keys = linking.keys_of(linking.demographics_of(national, demo))
    plan = recording.Write(person_id, person, now, identifiers=added, keys=keys,
                           rows=rows(conflicts) if rows is not None else ())
    if match is not None:
        plan.matches, plan.reviews = linking.decision_rows(
            now=now, source=source, identifiers=unique, person_id=person_id, result=match,
            model=model)
    person_id = recording.write(conn, plan)
    return RecordResult(person_id, created, tuple(added), tuple(conflicts),
                        linked=match is not None and match.person_id is not None)


__all__ = ["Identifier", "InvalidIdentity", "Person", "RecordResult", "is_known", "find_person",
           "get_person", "known_domains", "merge_identifiers", "national_identifier",
           "patient_aliases", "register_domains",
           "record_identity", "merge_demographics", "display_name"]

"""Writing what :func:`pix_pdq.index.record_identity` decided for one identity feed (ITI TF-2a
3.8.4.1.3: the PIX Manager records the identifiers and the cross-reference): the person's row
(a new one, or the known one updated), the identifiers added to it, its blocking keys, the
matching decisions with the pairs queued for review, and rows of other tables that belong with
them (the ITI-8 feed log).

:class:`Write` is the plan, built the same way for every database; :func:`write` carries it out
— on PostgreSQL as **one statement** (data-modifying common table expressions: the feed is one
round trip and one statement's overhead in the node and in the server, where it used to be up to
six), elsewhere as the plain statements one after the other.  Both run inside the caller's unit
of work; a unique key won by a concurrent feed raises IntegrityError (the caller retries).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pix_pdq.resident_id import RESIDENT_ID_OID
from pix_pdq.tables import (ACTIVE, block as t_block, identifier as t_id, match as t_match,
                            person as t_person, review as t_review)


@dataclass
class Write:
    """``person_id`` None: a new person with the columns ``person``; else that person's columns
    are replaced by ``person`` (``enterprise_id`` among them only when it is to be set).
    ``identifiers`` (``pix_pdq.index.Identifier``) are added to it; its blocking keys become
    ``keys`` (each carrying the person's resident ID number, see :func:`recorded_number`);
    ``matches`` / ``reviews`` are ``pix_match`` / ``pix_review`` rows without their
    ``person_id`` (see :func:`pix_pdq.linking.decision_rows`); ``rows`` are rows of other
    tables written with the person in the same statement (e.g. the ITI-8 feed log), each
    ``(table, row)`` with its ``person_id`` column set to the person."""

    person_id: int | None
    person: dict[str, Any]
    now: dt.datetime
    identifiers: Sequence[Any] = ()
    keys: Sequence[str] = ()
    matches: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    rows: Sequence[tuple[sa.Table, dict[str, Any]]] = ()


def write(conn: Connection, plan: Write) -> int:
    """Carry ``plan`` out; returns the person's id."""
    if conn.dialect.name == "postgresql":
        return _write_postgresql(conn, plan)
    return _write_statements(conn, plan)


# --------------------------------------------------------------------------------------------
# any database: one statement per table
# --------------------------------------------------------------------------------------------

def _write_statements(conn: Connection, plan: Write) -> int:
    now = plan.now
    if plan.person_id is None:
        person_id = conn.execute(t_person.insert(), dict(
            status=ACTIVE, created_at=now, updated_at=now, **plan.person)).inserted_primary_key[0]
    else:
        person_id = plan.person_id
        conn.execute(t_person.update().where(t_person.c.id == person_id).values(
            updated_at=now, **plan.person))
    if plan.identifiers:
        conn.execute(t_id.insert(), [
            {"person_id": person_id, "domain_oid": i.domain, "value": i.value,
             "domain_namespace": i.namespace, "domain_type": i.domain_type,
             "id_type": i.id_type, "status": ACTIVE, "created_at": now}
            for i in plan.identifiers])
    file_blocks(conn, person_id, plan.keys, fresh=plan.person_id is None)
    if plan.matches:
        conn.execute(t_match.insert(), [dict(r, person_id=person_id) for r in plan.matches])
    if plan.reviews:
        conn.execute(t_review.insert(), [dict(r, person_id=person_id) for r in plan.reviews])
    for table, row in plan.rows:
        conn.execute(table.insert(), dict(row, person_id=person_id))
    return int(person_id)


# --------------------------------------------------------------------------------------------
# blocking keys and the resident ID number they carry
# --------------------------------------------------------------------------------------------

def _number_of(person: Any) -> sa.ScalarSelect:
    return (sa.select(sa.case((sa.func.count() == 1, sa.func.min(t_id.c.value))))
            .where(t_id.c.person_id == person, t_id.c.domain_oid == RESIDENT_ID_OID,
                   t_id.c.status == ACTIVE).scalar_subquery())


_RECORDED_NUMBER = sa.select(_number_of(sa.bindparam("person")))
_RENUMBER = t_block.update().where(t_block.c.person_id == sa.bindparam("person")).values(
    number=_number_of(sa.bindparam("person")))


def recorded_number(conn: Connection, person_id: int) -> str | None:
    """The resident ID number the blocks of ``person_id`` carry: its one active identifier of
    the national domain, None when it holds none — or several (two numbers joined by a merge:
    then no candidate is judged by a number alone, see :func:`pix_pdq.linking.find_match`)."""
    return conn.execute(_RECORDED_NUMBER, {"person": person_id}).scalar()


def renumber(conn: Connection, person_id: int) -> None:
    """The blocks of ``person_id`` carry its number again, after its identifiers changed
    otherwise than through a feed (a merge moved some to it, an unlink took one away)."""
    conn.execute(_RENUMBER, {"person": person_id})


def file_blocks(conn: Connection, person_id: int, keys: Sequence[str], *,
                fresh: bool = False) -> None:
    """File ``person_id`` under ``keys`` (replacing its previous keys; a ``fresh`` person has
    none yet), with its recorded number."""
    number = recorded_number(conn, person_id)
    if conn.dialect.name == "postgresql":   # one statement: only the keys that changed
        conn.exec_driver_sql(
            "WITH " + _KEYS_GONE + " INSERT INTO pix_block (key, person_id, number) "
            "SELECT k, %(person)s, %(number)s FROM unnest(CAST(%(keys)s AS varchar[])) AS k "
            + _KEY_KEPT, {"person": person_id, "keys": list(keys), "number": number})
        return
    if not fresh:
        conn.execute(t_block.delete().where(t_block.c.person_id == person_id))
    if keys:
        conn.execute(t_block.insert(), [{"key": k, "person_id": person_id, "number": number}
                                        for k in keys])


# --------------------------------------------------------------------------------------------
# PostgreSQL: one statement
# --------------------------------------------------------------------------------------------

_PERSON_COLUMNS = ("enterprise_id", "name", "family_name", "given_name", "birth_date", "sex",
                   "demographics")

# the parts of the statement, by name; ``p`` yields the person's id to the others
_INSERT_PERSON = (
    "p AS (INSERT INTO pix_person (enterprise_id, status, name, family_name, given_name, "
    "birth_date, sex, demographics, created_at, updated_at) VALUES (%(enterprise_id)s, "
    "%(active)s, %(name)s, %(family_name)s, %(given_name)s, %(birth_date)s, %(sex)s, "
    "%(demographics)s, %(now)s, %(now)s) RETURNING id)")
_UPDATE_PERSON = (
    "p AS (UPDATE pix_person SET name = %(name)s, family_name = %(family_name)s, "
    "given_name = %(given_name)s, birth_date = %(birth_date)s, sex = %(sex)s, "
    "demographics = %(demographics)s, updated_at = %(now)s{eid} WHERE id = %(person)s "
    "RETURNING id)")
_IDENTIFIERS = (
    "i AS (INSERT INTO pix_identifier (person_id, domain_oid, value, domain_namespace, "
    "domain_type, id_type, status, created_at) SELECT p.id, x.d, x.v, x.n, x.t, x.k, "
    "%(active)s, %(now)s FROM p, unnest(CAST(%(i_domains)s AS varchar[]), "
    "CAST(%(i_values)s AS varchar[]), CAST(%(i_namespaces)s AS varchar[]), "
    "CAST(%(i_types)s AS varchar[]), CAST(%(i_id_types)s AS varchar[])) AS x(d, v, n, t, k))")
# a person filed again loses and gains only the keys that changed (an update seldom changes
# any); the two sets are disjoint, so the order the parts run in does not matter.  A key kept
# gets the person's number when that changed
_KEYS_GONE = ("g AS (DELETE FROM pix_block WHERE person_id = %(person)s "
              "AND NOT (key = ANY(CAST(%(keys)s AS varchar[]))))")
_KEY_KEPT = ("ON CONFLICT (key, person_id) DO UPDATE SET number = EXCLUDED.number "
             "WHERE pix_block.number IS DISTINCT FROM EXCLUDED.number")
_KEYS = ("b AS (INSERT INTO pix_block (key, person_id, number) SELECT k, p.id, {number} "
         "FROM p, unnest(CAST(%(keys)s AS varchar[])) AS k " + _KEY_KEPT + ")")
# the number of a person updated: its active national identifiers with those added now
_NUMBER = ("n AS (SELECT CASE WHEN count(*) = 1 THEN min(v) END AS number FROM (SELECT value "
           "AS v FROM pix_identifier WHERE person_id = %(person)s AND domain_oid = %(national)s "
           "AND status = %(active)s UNION SELECT unnest(CAST(%(i_national)s AS varchar[]))) "
           "AS s)")
_MATCHES = (
    "m AS (INSERT INTO pix_match (time, source, identifiers, person_id, candidate_id, outcome, "
    "score, evidence) SELECT %(now)s, %(m_source)s, %(m_identifiers)s, p.id, x.c, x.o, x.s, "
    "x.e FROM p, unnest(CAST(%(m_candidates)s AS bigint[]), CAST(%(m_outcomes)s AS varchar[]), "
    "CAST(%(m_scores)s AS float8[]), CAST(%(m_evidence)s AS jsonb[])) AS x(c, o, s, e))")
_REVIEWS = (
    "r AS (INSERT INTO pix_review (person_id, candidate_id, score, evidence, status, "
    "created_at) SELECT p.id, x.c, x.s, x.e, 'pending', %(now)s FROM p, "
    "unnest(CAST(%(r_candidates)s AS bigint[]), CAST(%(r_scores)s AS float8[]), "
    "CAST(%(r_evidence)s AS jsonb[])) AS x(c, s, e))")

_statements: dict[tuple[Any, ...], str] = {}


def _row_part(n: int, table: sa.Table, columns: Sequence[str]) -> str:
    """Row ``n`` of ``rows``: an insert into ``table`` with the person's id."""
    names = ", ".join(table.c[c].name for c in columns)
    values = ", ".join(f"%(x{n}_{c})s" for c in columns)
    return f"x{n} AS (INSERT INTO {table.name} ({names}, person_id) SELECT {values}, p.id FROM p)"


def _statement(new: bool, eid: bool, identifiers: bool, matches: bool, reviews: bool,
               rows: tuple[tuple[sa.Table, tuple[str, ...]], ...] = ()) -> str:
    shape = (new, eid, identifiers, matches, reviews, rows)
    sql = _statements.get(shape)
    if sql is None:
        parts = [_INSERT_PERSON if new else _UPDATE_PERSON.format(
            eid=", enterprise_id = %(enterprise_id)s" if eid else "")]
        if identifiers:
            parts.append(_IDENTIFIERS)
        if new:   # its number: the one national identifier it is created with, if any
            parts.append(_KEYS.format(number="%(number)s"))
        else:
            parts += [_NUMBER, _KEYS_GONE, _KEYS.format(number="(SELECT number FROM n)")]
        if matches:
            parts.append(_MATCHES)
        if reviews:
            parts.append(_REVIEWS)
        parts += [_row_part(n, table, columns) for n, (table, columns) in enumerate(rows)]
        sql = _statements[shape] = "WITH " + ", ".join(parts) + " SELECT id FROM p"
    return sql


def _write_postgresql(conn: Connection, plan: Write) -> int:
    from psycopg.types.json import Jsonb
    new = plan.person_id is None
    person = plan.person
    params: dict[str, Any] = {c: person.get(c) for c in _PERSON_COLUMNS}
    params.update(person=plan.person_id, active=ACTIVE, now=plan.now, keys=list(plan.keys),
                  demographics=Jsonb(person["demographics"]), national=RESIDENT_ID_OID)
    ids = plan.identifiers
    national = [i.value for i in ids if i.domain == RESIDENT_ID_OID]
    params.update(i_national=national, number=national[0] if len(national) == 1 else None)
    if ids:
        params.update(i_domains=[i.domain for i in ids], i_values=[i.value for i in ids],
                      i_namespaces=[i.namespace for i in ids],
                      i_types=[i.domain_type for i in ids], i_id_types=[i.id_type for i in ids])
    if plan.matches:   # one feed: one source and one list of identifiers for all its rows
        first = plan.matches[0]
        params.update(m_source=first["source"], m_identifiers=first["identifiers"],
                      m_candidates=[r["candidate_id"] for r in plan.matches],
                      m_outcomes=[r["outcome"] for r in plan.matches],
                      m_scores=[r["score"] for r in plan.matches],
                      m_evidence=[Jsonb(r["evidence"]) for r in plan.matches])
    if plan.reviews:
        params.update(r_candidates=[r["candidate_id"] for r in plan.reviews],
                      r_scores=[r["score"] for r in plan.reviews],
                      r_evidence=[Jsonb(r["evidence"]) for r in plan.reviews])
    shapes = []
    for n, (table, row) in enumerate(plan.rows):
        columns = tuple(c for c in row if c != "person_id")
        shapes.append((table, columns))
        params.update((f"x{n}_{c}", row[c]) for c in columns)
    sql = _statement(new, not new and "enterprise_id" in person, bool(ids), bool(plan.matches),
                     bool(plan.reviews), tuple(shapes))
    person_id = conn.exec_driver_sql(sql, params).scalar()
    if person_id is None:
        raise sa.exc.NoResultFound(f"person {plan.person_id} is gone")
    return int(person_id)


__all__ = ["Write", "file_blocks", "recorded_number", "renumber", "write"]

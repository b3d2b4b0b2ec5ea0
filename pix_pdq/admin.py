"""The patient index's administration API (JSON under ``/api/mpi``, CONTRACT.md ``/api/...``):
what requirement 000 asks of master index management — search persons by name or ID number, show
a person's linked identities with the evidence and history of each link — and the review queue of
potential duplicates (list, link, reject).

- ``GET /api/mpi/persons?q=`` — by resident ID number (15 or 18 characters), by any identifier
  value, or by name (exact after normalization, or a prefix: ``张*``); at most 50;
- ``GET /api/mpi/persons/{id}`` — the person, its identifiers, the matching decisions that
  concern it (``pix_match``) and its pending reviews;
- ``POST /api/mpi/persons/{id}/unlink?domain=&value=`` — undo a link: that identifier becomes a
  person of its own (decision kept as ``unlink``);
- ``GET /api/mpi/reviews?status=pending`` — the queue, oldest first;
- ``POST /api/mpi/reviews/{id}/link`` — the two persons are one: the reviewed person is merged
  into the candidate (its identifiers move over; refused with 409 when both hold numbers of the
  same domain, which needs an explicit merge of those numbers); ``POST .../reject`` — they are
  two people.  The deciding user is the ``X-HIE-User`` header, UTF-8 (until the node has
logins).

Errors are JSON ``{"error": ...}`` with 400 / 404 / 409.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pix_pdq import linking, notify
from pix_pdq import names as N
from pix_pdq.index import Identifier
from pix_pdq.resident_id import RESIDENT_ID_OID, parse as parse_resident_id
from pix_pdq.tables import MERGED, identifier as t_id, match as t_match, person as t_person, \
    review as t_review

LIMIT = 50


class AdminError(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status
        self.text = text


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


def _person_summary(row: Any) -> dict:
    return {"id": row.id, "enterprise_id": row.enterprise_id, "status": row.status,
            "name": row.name, "birth_date": row.birth_date, "sex": row.sex,
            "merged_into": row.merged_into}


def search(conn: Connection, q: str) -> list[dict]:
    q = (q or "").strip()
    if not q:
        raise AdminError(400, "q is required: a name, a name prefix (张*) or an ID number")
    person_ids: list[int] = []
    rid = parse_resident_id(q)
    if rid.valid:
        person_ids += conn.execute(sa.select(t_id.c.person_id).where(
            t_id.c.domain_oid == RESIDENT_ID_OID, t_id.c.value == rid.number)).scalars().all()
    person_ids += conn.execute(sa.select(t_id.c.person_id).where(t_id.c.value == q)
                               .limit(LIMIT)).scalars().all()
    if N.is_chinese(q) or not q.isascii() or q.isalpha() or q.endswith("*"):
        if q.endswith("*"):
            prefix = q[:-1].replace("%", "").replace("_", "")
            person_ids += conn.execute(sa.select(t_person.c.id).where(
                t_person.c.name.like(prefix + "%")).order_by(t_person.c.id)
                .limit(LIMIT)).scalars().all()
        else:
            person_ids += conn.execute(sa.select(linking.t_block.c.person_id).where(
                linking.t_block.c.key == (linking.NAME_KEY + N.normalize(q))[:linking.KEY_LEN])
                .limit(LIMIT)).scalars().all()
            person_ids += conn.execute(sa.select(t_person.c.id).where(t_person.c.name == q)
                                       .limit(LIMIT)).scalars().all()
    wanted = list(dict.fromkeys(person_ids))[:LIMIT]
    if not wanted:
        return []
    rows = conn.execute(sa.select(t_person).where(t_person.c.id.in_(wanted))).all()
    order = {pid: n for n, pid in enumerate(wanted)}
    return [_person_summary(r) for r in sorted(rows, key=lambda r: order[r.id])]


def person(conn: Connection, person_id: int) -> dict:
    row = conn.execute(sa.select(t_person).where(t_person.c.id == person_id)).first()
    if row is None:
        raise AdminError(404, f"no person {person_id}")
    idents = conn.execute(sa.select(t_id).where(t_id.c.person_id == person_id)
                          .order_by(t_id.c.id)).all()
    decisions = conn.execute(sa.select(t_match).where(sa.or_(
        t_match.c.person_id == person_id, t_match.c.candidate_id == person_id))
        .order_by(t_match.c.id)).all()
    reviews = conn.execute(sa.select(t_review).where(sa.or_(
        t_review.c.person_id == person_id, t_review.c.candidate_id == person_id),
        t_review.c.status == "pending").order_by(t_review.c.id)).all()
    out = _person_summary(row)
    out["demographics"] = dict(row.demographics or {})
    out["identifiers"] = [{"value": i.value, "domain": i.domain_oid,
                           "namespace": i.domain_namespace, "type": i.id_type,
                           "status": i.status, "since": _iso(i.created_at)} for i in idents]
    out["history"] = [{"time": _iso(m.time), "source": m.source, "identifiers": m.identifiers,
                       "outcome": m.outcome, "person_id": m.person_id,
                       "candidate_id": m.candidate_id, "score": m.score,
                       "evidence": m.evidence} for m in decisions]
    out["reviews"] = [_review(r) for r in reviews]
    return out


def _review(r: Any) -> dict:
    return {"id": r.id, "person_id": r.person_id, "candidate_id": r.candidate_id,
            "score": r.score, "evidence": r.evidence, "status": r.status,
            "created_at": _iso(r.created_at), "decided_at": _iso(r.decided_at),
            "decided_by": r.decided_by}


def reviews(conn: Connection, status: str = "pending") -> list[dict]:
    rows = conn.execute(sa.select(t_review).where(t_review.c.status == status)
                        .order_by(t_review.c.id).limit(500)).all()
    return [_review(r) for r in rows]


def decide(conn: Connection, review_id: int, verdict: str, user: str,
           now: dt.datetime, changed: list[int] | None = None) -> dict:
    """``verdict`` ``link`` (merge the reviewed person into the candidate) or ``reject``.
    Persons whose identifiers changed are appended to ``changed``."""
    changed = changed if changed is not None else []
    r = conn.execute(sa.select(t_review).where(t_review.c.id == review_id)).first()
    if r is None:
        raise AdminError(404, f"no review {review_id}")
    if r.status != "pending":
        raise AdminError(409, f"review {review_id} was already decided ({r.status})")
    if verdict == "link":
        _merge(conn, r.person_id, r.candidate_id, now)
        changed.append(r.candidate_id)
    conn.execute(t_review.update().where(t_review.c.id == review_id).values(
        status="linked" if verdict == "link" else "rejected", decided_at=now,
        decided_by=user[:256]))
    conn.execute(t_match.insert().values(
        time=now, source=f"review by {user}"[:256], identifiers="",
        person_id=r.candidate_id if verdict == "link" else r.person_id,
        candidate_id=r.person_id if verdict == "link" else r.candidate_id,
        outcome="merge" if verdict == "link" else "reject", score=r.score,
        evidence={"review": review_id, "by": user}))
    return _review(conn.execute(sa.select(t_review).where(t_review.c.id == review_id)).one())


def unlink(conn: Connection, person_id: int, domain: str, value: str, user: str,
           now: dt.datetime, changed: list[int] | None = None) -> dict:
    """Undo a link: the identifier ``value`` of ``domain`` leaves the person and becomes a
    person of its own (with a copy of the demographics known so far); both are filed again
    under their blocking keys and the decision is kept in ``pix_match`` (``unlink``).  An
    identifier retired by a merge (ADT^A40, PRPA_IN201304UV02, a review's link) is the undo of
    that merge: it becomes active again, in a person of its own, so the XDS registry again
    knows it and no longer returns its documents for the survivor."""
    if not domain or not value:
        raise AdminError(400, "domain and value name the identifier to unlink")
    row = conn.execute(sa.select(t_person).where(t_person.c.id == person_id)).first()
    if row is None or row.status != "active":
        raise AdminError(404, f"no active person {person_id}")
    ident = conn.execute(sa.select(t_id).where(
        t_id.c.person_id == person_id, t_id.c.domain_oid == domain, t_id.c.value == value,
        t_id.c.status.in_(("active", MERGED)))).first()
    if ident is None:
        raise AdminError(404, f"person {person_id} holds no identifier {value} of {domain}")
    unmerge = ident.status == MERGED
    others = conn.execute(sa.select(sa.func.count()).select_from(t_id).where(
        t_id.c.person_id == person_id, t_id.c.status == "active")).scalar()
    if others <= 1 and not unmerge:
        raise AdminError(409, "the person's only identifier cannot be unlinked from it")
    new_id = conn.execute(t_person.insert().values(
        enterprise_id=None, status="active", demographics=dict(row.demographics or {}),
        name=row.name, family_name=row.family_name, given_name=row.given_name,
        birth_date=row.birth_date, sex=row.sex, created_at=now,
        updated_at=now)).inserted_primary_key[0]
    if row.enterprise_id is not None and row.enterprise_id == value:  # the enterprise id leaves
        conn.execute(t_person.update().where(t_person.c.id == person_id).values(
            enterprise_id=None))
        conn.execute(t_person.update().where(t_person.c.id == new_id).values(
            enterprise_id=row.enterprise_id))
    conn.execute(t_id.update().where(t_id.c.id == ident.id).values(person_id=new_id,
                                                                   status="active"))
    if changed is not None:
        changed.extend((person_id, new_id))
    for pid in (person_id, new_id):
        idents = [Identifier(i.value, i.domain_oid) for i in conn.execute(
            sa.select(t_id.c.domain_oid, t_id.c.value).where(t_id.c.person_id == pid,
                                                            t_id.c.status == "active"))]
        linking.index_person(conn, pid, linking.demographics_of(
            idents, dict(row.demographics or {})))
    conn.execute(t_match.insert().values(
        time=now, source=f"unlink by {user}"[:256], identifiers=f"{value}^^^&{domain}&ISO",
        person_id=new_id, candidate_id=person_id, outcome="unmerge" if unmerge else "unlink",
        score=None, evidence={"by": user, "from": person_id}))
    return {"person_id": person_id, "new_person_id": new_id, "identifier": {
        "domain": domain, "value": value}}


def _merge(conn: Connection, subsumed: int, survivor: int, now: dt.datetime) -> None:
    try:
        linking.merge_persons(conn, subsumed, survivor, now)
    except ValueError as exc:
        raise AdminError(409, str(exc)) from None


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

def routes(node: Any) -> list[Route]:
    def answer(fn, write: bool = False):
        async def endpoint(request: Request) -> JSONResponse:
            try:
                if write:  # a change of cross-references notifies the PIX consumers
                    with node.db.begin() as conn:
                        changed: list[int] = []
                        body = fn(conn, request, changed)
                        notify.changed(node, conn, changed)
                else:
                    with node.db.read() as conn:
                        body = fn(conn, request)
            except AdminError as err:
                return JSONResponse({"error": err.text}, status_code=err.status)
            except ValueError as err:
                return JSONResponse({"error": str(err)}, status_code=400)
            return JSONResponse(body)
        return endpoint

    def _id(request: Request, name: str) -> int:
        raw = request.path_params[name]
        if not raw.isdigit():
            raise AdminError(404, f"no {name} {raw}")
        return int(raw)

    def user(request: Request) -> str:
        raw = request.headers.get("x-hie-user", "")
        try:  # header bytes arrive as latin-1 text; a Chinese name is sent as UTF-8
            raw = raw.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        return raw.strip() or "admin"

    now = lambda: dt.datetime.now(dt.timezone.utc)  # noqa: E731
    return [
        Route("/api/mpi/persons", answer(lambda c, r: {"persons": search(
            c, r.query_params.get("q", ""))})),
        Route("/api/mpi/persons/{person_id}", answer(lambda c, r: person(
            c, _id(r, "person_id")))),
        Route("/api/mpi/persons/{person_id}/unlink", answer(lambda c, r, ch: unlink(
            c, _id(r, "person_id"), r.query_params.get("domain", ""),
            r.query_params.get("value", ""), user(r), now(), ch), write=True),
            methods=["POST"]),
        Route("/api/mpi/reviews", answer(lambda c, r: {"reviews": reviews(
            c, r.query_params.get("status", "pending"))})),
        Route("/api/mpi/reviews/{review_id}/link", answer(lambda c, r, ch: decide(
            c, _id(r, "review_id"), "link", user(r), now(), ch), write=True),
            methods=["POST"]),
        Route("/api/mpi/reviews/{review_id}/reject", answer(lambda c, r, ch: decide(
            c, _id(r, "review_id"), "reject", user(r), now(), ch), write=True),
            methods=["POST"]),
    ]


__all__ = ["AdminError", "decide", "person", "reviews", "routes", "search", "unlink"]

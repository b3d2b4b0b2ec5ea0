"""Patient Demographics Query [ITI-21], HL7 v2.5, Patient Demographics Supplier side
(ITI TF-2a 3.21).

Request QBP^Q22^QBP_Q21 (3.21.4.1.2): MSH, QPD, RCP, [DSC].  QPD-1 ``IHE PDQ Query``, QPD-2 the
query tag, QPD-3 the parameters as ``@<field>^<value>`` repetitions (HL7 v2.5 5.4, QIP), of which
this supplier answers:

=====================  ==============================================================
``@PID.3.1``           an identifier value (with ``@PID.3.4.1``/``.2`` its domain, ``.3`` ISO)
``@PID.5.1`` / ``.1.1`` family name   ``@PID.5.2`` given name (``*`` at the end: prefix)
``@PID.7`` / ``.7.1``  birth date (YYYYMMDD)   ``@PID.8`` sex (F/M/O/U)
``@PID.11.1``..``.5``  street, other, city, state, postal code (prefix with ``*``)
``@PID.13.1``          phone number            ``@PID.19`` resident ID number (GB 11643)
=====================  ==============================================================

Chinese names match character by character, after folding traditional and variant forms
(``張*`` finds 张三; ``张*`` never finds 章三).  QPD-8 (repeating) limits the identifiers returned in
PID-3 to those domains.  RCP-2 (``<n>^RD``) bounds the answer; when more persons match, DSC-1
carries a continuation pointer, and the same query sent again with that pointer in DSC-1 returns
the next increment (the pointer is the last person id sent: stateless, so a consumer may resume
at any time).  QCN^J01 (cancel query) is acknowledged AA: nothing is held for a query.

Response RSP^K22^RSP_K21 (3.21.4.2.2): MSH, MSA, [ERR], QAK (``OK`` / ``NF`` / ``AE`` / ``AR``),
the request's QPD, one PID per person (PID-3 identifiers, PID-5 name, PID-7, PID-8, PID-11,
PID-13, PID-19), [DSC].  An unknown QPD-8 domain is ``AE`` with ERR 204 at ``QPD^1^8^<n>``; an
unknown parameter or a query without any is ``AE`` with ERR 101/103 at ``QPD^1^3``.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hie.context import SERIOUS_FAILURE, Context
from hie.errors import HL7, Hl7Error
from hie.hl7v2 import ErrorDetail, Message, Repeat, Segment, build_ack, query_response
from pix_pdq import names as N
from pix_pdq.index import Identifier, known_domains
from pix_pdq.iti8 import check_version
from pix_pdq.resident_id import RESIDENT_ID_OID, parse as parse_resident_id
from pix_pdq.tables import ACTIVE, block as t_block, identifier as t_id, person as t_person

QUERY_NAME = "IHE PDQ Query"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

# QIP field -> our parameter name
FIELDS = {
    "PID.3.1": "id", "PID.3": "id", "PID.3.4.1": "id_namespace", "PID.3.4.2": "id_oid",
    "PID.3.4": "id_namespace", "PID.3.4.3": "id_type",
    "PID.5.1": "family", "PID.5.1.1": "family", "PID.5.2": "given",
    "PID.7": "birth", "PID.7.1": "birth", "PID.8": "sex",
    "PID.11.1": "street", "PID.11.2": "other", "PID.11.3": "city", "PID.11.4": "state",
    "PID.11.5": "zip", "PID.13": "phone", "PID.13.1": "phone", "PID.19": "resident_id",
}


def parse_query(msg: Message) -> tuple[dict[str, str], list[str], int, int]:
    """(parameters, what domains, limit, continue after person id); raises Hl7Error.  (The
    query tag is echoed from QPD-2 by :func:`hie.hl7v2.query_response`.)"""
    check_version(msg)
    qpd = msg.segment("QPD")
    if qpd is None:
        raise Hl7Error("AE", HL7.SEGMENT_SEQUENCE_ERROR, "the QPD segment is missing", "QPD")
    if QUERY_NAME.lower() not in (qpd.value(1).lower(), qpd.value(1, comp=2).lower()):
        raise Hl7Error("AE", HL7.TABLE_VALUE_NOT_FOUND,
                       f"QPD-1 message query name must be {QUERY_NAME!r}", "QPD^1^1")
    params: dict[str, str] = {}
    for rep in range(1, len(qpd[3].reps) + 1):
        name = qpd[3].value(rep, 1).lstrip("@").upper()
        value = qpd[3].value(rep, 2).strip()
        if not name:
            continue
        key = FIELDS.get(name)
        if key is None:
            raise Hl7Error("AE", HL7.TABLE_VALUE_NOT_FOUND,
                           f"query parameter @{name} is not supported", f"QPD^1^3^{rep}^1")
        if value:
            params[key] = value
    if not any(k for k in params if k not in ("id_namespace", "id_oid")):
        raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING,
                       "QPD-3 holds no query parameter with a value", "QPD^1^3")
    wanted = [Identifier.from_field(qpd[8], r).domain for r in range(1, len(qpd[8].reps) + 1)]
    rcp = msg.segment("RCP")
    limit = DEFAULT_LIMIT
    if rcp is not None and rcp.value(2).strip():
        raw = rcp.value(2).strip()
        if not raw.isdigit() or int(raw) < 1:
            raise Hl7Error("AE", HL7.DATA_TYPE_ERROR, "RCP-2 quantity must be a positive number",
                           "RCP^1^2^1^1")
        limit = min(int(raw), MAX_LIMIT)
    after = 0
    dsc = msg.segment("DSC")
    if dsc is not None and dsc.value(1).strip():
        pointer = dsc.value(1).strip()
        if not pointer.isdigit():
            raise Hl7Error("AE", HL7.DATA_TYPE_ERROR, "DSC-1 is not a continuation pointer of "
                           "this supplier", "DSC^1^1")
        after = int(pointer)
    return params, wanted, limit, after


def _like(column: sa.ColumnElement, value: str) -> sa.ColumnElement:
    if value.endswith("*"):
        prefix = value[:-1].replace("%", "").replace("_", "")
        return column.like(prefix + "%")
    return column == value


def _name_condition(column: sa.ColumnElement, value: str) -> sa.ColumnElement:
    return _like(column, N.normalize(value.rstrip("*")) + ("*" if value.endswith("*") else ""))


def _conditions(params: dict[str, str]) -> list[sa.ColumnElement]:
    """The SQL conditions of ``params`` (address and phone are checked in Python)."""
    p = t_person.c
    where = [p.status == ACTIVE]
    if "family" in params:
        where.append(_name_condition(p.family_name, params["family"]))
    if "given" in params:
        where.append(_name_condition(p.given_name, params["given"]))
    if "name" in params:   # any part of the name, or the whole display name (张三)
        value = params["name"]
        whole = value.rstrip("*").replace("%", "").replace("_", "")
        where.append(sa.or_(_name_condition(p.family_name, value),
                            _name_condition(p.given_name, value),
                            p.name.like(whole + "%") if value.endswith("*") else p.name == whole))
    if "birth" in params:
        where.append(p.birth_date == params["birth"][:8])
    if "birth_from" in params:   # inclusive bounds, YYYYMMDD
        where.append(p.birth_date >= params["birth_from"])
    if "birth_to" in params:
        where.append(p.birth_date <= params["birth_to"])
    if "person_id" in params:
        where.append(p.id == int(params["person_id"]))
    if "sex" in params:
        where.append(p.sex == params["sex"][:1].upper())
    id_filters = []
    if "id" in params:
        cond = [t_id.c.value == params["id"], t_id.c.status == ACTIVE]
        domain = params.get("id_oid") or params.get("id_namespace")
        if domain:
            cond.append(t_id.c.domain_oid == domain)
        id_filters.append(sa.and_(*cond))
    for cond in id_filters:
        where.append(p.id.in_(sa.select(t_id.c.person_id).where(cond)))
    if params.get("id_type", "ISO").upper() != "ISO":   # every domain of the index is an OID
        where.append(sa.false())
    if "resident_id" in params:
        # an identifier of the national domain, or the number a feed carried in PID-19 (kept
        # as the person's ``id:`` blocking key, pix_pdq.matching.blocking_keys)
        rid = parse_resident_id(params["resident_id"])
        number = rid.number if rid.valid else params["resident_id"]
        found = p.id.in_(sa.select(t_id.c.person_id).where(
            t_id.c.domain_oid == RESIDENT_ID_OID, t_id.c.value == number))
        if rid.valid:
            found = sa.or_(found, p.id.in_(sa.select(t_block.c.person_id).where(
                t_block.c.key == f"id:{number}")))
        where.append(found)
    return where


def search(conn: Connection, params: dict[str, str], after: int, limit: int,
           before: int | None = None) -> list[Any]:
    """Active persons matching ``params``, by id, after ``after``; at most ``limit + 1``.
    With ``before``: those with a smaller id than ``before``, the nearest first (a previous
    page read backwards)."""
    p = t_person.c
    where = _conditions(params)
    out: list[Any] = []
    page = limit + 1 if not _filters_after(params) else 4 * (limit + 1)
    while len(out) <= limit:
        # address and phone live in the kept demographics: checked here, page after page, so
        # that an increment is full whenever enough persons match
        if before is None:
            q = sa.select(t_person).where(*where, p.id > after).order_by(p.id)
        else:
            q = sa.select(t_person).where(*where, p.id < before).order_by(p.id.desc())
        rows = conn.execute(q.limit(page)).all()
        for r in rows:
            demo = dict(r.demographics or {})
            if _address_matches(demo, params) and _phone_matches(demo, params):
                out.append(r)
                if len(out) > limit:
                    break
        if len(rows) < page:
            break
        if before is None:
            after = rows[-1].id
        else:
            before = rows[-1].id
    return out


def count(conn: Connection, params: dict[str, str]) -> int:
    """How many active persons match ``params`` (PDQm's Bundle.total)."""
    where = _conditions(params)
    if not _filters_after(params):
        return conn.execute(sa.select(sa.func.count()).select_from(t_person)
                            .where(*where)).scalar_one()
    total = 0
    for demo in conn.execute(sa.select(t_person.c.demographics).where(*where)).scalars():
        demo = dict(demo or {})
        total += _address_matches(demo, params) and _phone_matches(demo, params)
    return total


def _filters_after(params: dict[str, str]) -> bool:
    return "phone" in params or any(k in params for k in ("street", "other", "city", "state",
                                                           "zip", "country", "address"))


def _address_matches(demo: dict, params: dict[str, str]) -> bool:
    keys = {"street": "street", "other": "other", "city": "city", "state": "state", "zip": "zip",
            "country": "country"}
    wanted = {k: v for k, v in params.items() if k in keys}
    anywhere = params.get("address")   # any part of the address (FHIR ``address``)
    if not wanted and anywhere is None:
        return True
    for a in demo.get("addresses") or []:
        if all(_text_matches(str(a.get(keys[k], "")), v) for k, v in wanted.items()) and (
                anywhere is None or any(_text_matches(str(a.get(k, "")), anywhere)
                                        for k in ("street", "other", "city", "state", "zip",
                                                  "country", "county"))):
            return True
    return False


def _phone_matches(demo: dict, params: dict[str, str]) -> bool:
    if "phone" not in params:
        return True
    from pix_pdq.matching import phone_digits
    want = phone_digits(params["phone"])
    return any(phone_digits(str(ph.get("number", ""))).endswith(want[-8:])
               for key in ("home_phones", "business_phones") for ph in demo.get(key) or [])


def _text_matches(value: str, pattern: str) -> bool:
    v, pat = N.normalize(value), N.normalize(pattern.rstrip("*"))
    return v.startswith(pat) if pattern.endswith("*") else v == pat


_IDS_OF = (sa.select(t_id).where(t_id.c.person_id.in_(sa.bindparam("persons", expanding=True)),
                                  t_id.c.status == ACTIVE).order_by(t_id.c.id))
_IDS_OF_WANTED = _IDS_OF.where(t_id.c.domain_oid.in_(sa.bindparam("domains", expanding=True)))


def identifiers_of(conn: Connection, person_ids: list[int], wanted: list[str]
                   ) -> dict[int, list[Any]]:
    """The active identifiers of each person (only those of the ``wanted`` domains, when any),
    in one statement for a whole increment."""
    out: dict[int, list[Any]] = {p: [] for p in person_ids}
    if not person_ids:
        return out
    q, params = (_IDS_OF_WANTED, {"persons": person_ids, "domains": wanted}) if wanted else (
        _IDS_OF, {"persons": person_ids})
    for i in conn.execute(q, params):
        out[i.person_id].append(i)
    return out


def _pid(row: Any, ids: list[Any], n: int) -> Segment:
    demo = dict(row.demographics or {})
    sent = (demo.get("names") or [{}])[0]   # the name as the source sent it
    address = (demo.get("addresses") or [{}])[0]
    phone = (demo.get("home_phones") or demo.get("business_phones") or [{}])[0]
    rid = next((i.value for i in ids if i.domain_oid == RESIDENT_ID_OID), None)
    return Segment.of("PID", {
        1: str(n),
        3: Repeat([(i.value, None, None, (i.domain_namespace, "" if not i.domain_type
                                         and i.domain_oid == i.domain_namespace
                                         else i.domain_oid, i.domain_type), i.id_type or None)
                   for i in ids]),
        5: (sent.get("family") or row.family_name or "", sent.get("given") or None),
        7: row.birth_date or None, 8: row.sex or None,
        11: tuple(address.get(k) for k in ("street", "other", "city", "state", "zip",
                                           "country")) if address else None,
        13: phone.get("number") or None,
        19: rid or demo.get("ssn") or None})


def handle(ctx: Context, msg: Message, raw: bytes | None = None) -> Message:
    ctx.message_id = msg.control_id or None
    ctx.extra["message_type"] = f"{msg.message_type}^{msg.trigger_event}"
    try:
        params, wanted, limit, after = parse_query(msg)
    except Hl7Error as err:
        ctx.fail(SERIOUS_FAILURE, err.text)
        return _response(ctx, msg, err.ack_code, err.ack_code, [ErrorDetail.from_error(err)],
                         [], None)
    with ctx.db.read(planned=True) as conn:  # 张 or 欧阳: plans differ
        known = known_domains(conn, [w for w in wanted if w], ctx.settings.affinity_domain)
        errors = [ErrorDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                              f"what-domain {w or '(empty)'} is not a domain of this supplier",
                              f"QPD^1^8^{n}") for n, w in enumerate(wanted, start=1)
                  if not w or w not in known]
        if errors:
            ctx.fail(SERIOUS_FAILURE, "; ".join(e.text for e in errors))
            return _response(ctx, msg, "AE", "AE", errors, [], None)
        rows = search(conn, params, after, limit)
        more = len(rows) > limit
        rows = rows[:limit]
        ids = identifiers_of(conn, [r.id for r in rows], wanted)
        pids = [_pid(r, ids[r.id], n) for n, r in enumerate(rows, start=1)]
    for r in rows:
        ctx.note(None, [f"person:{r.id}"])
    pointer = str(rows[-1].id) if more and rows else None
    return _response(ctx, msg, "AA", "OK" if pids else "NF", [], pids, pointer)


def _response(ctx: Context, msg: Message, ack: str, status: str, errors: list[ErrorDetail],
              pids: list[Segment], pointer: str | None) -> Message:
    segments = list(pids)
    if pointer:
        segments.append(Segment.of("DSC", {1: pointer, 2: "I"}))
    return query_response(msg, ("RSP", "K22", "RSP_K21"), ack, status, errors, segments,
                          hits=len(pids), sending_application=msg.msh[5] or "HIE",
                          timestamp=ctx.now())


def cancel(ctx: Context, msg: Message, raw: bytes | None = None) -> Message:
    """QCN^J01: nothing is held for a query (continuation is stateless): acknowledged AA."""
    ctx.message_id = msg.control_id or None
    return build_ack(msg, "AA", sending_application=msg.msh[5] or "HIE", timestamp=ctx.now())


__all__ = ["QUERY_NAME", "cancel", "count", "handle", "parse_query", "search"]

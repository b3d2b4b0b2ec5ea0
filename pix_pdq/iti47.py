"""ITI-47 Patient Demographics Query HL7 V3, Patient Demographics Supplier side (ITI TF-2b
3.47), on ``POST /pdq``; the national 个人信息查询 service (the same PRPA_IN201305UV02) on
``POST /pix`` too.

Query PRPA_IN201305UV02 (Find Candidates Query, 3.47.4.1.2), answered with PRPA_IN201306UV02
(3.47.4.2, wsa:Action ``urn:hl7-org:v3:PRPA_IN201306UV02``).  Parameters
(:func:`hie.hl7v3_query.parse_pdq_query`), searched with :func:`pix_pdq.iti21.search` (the same
index queries as ITI-21):

- ``livingSubjectName`` — family / given parts, or a whole name (张三, split after the family
  name, compound surnames kept); a trailing ``*`` is a prefix wildcard (``张*``); traditional and
  variant characters fold (``張*`` finds 张三), homophones never match;
- ``livingSubjectAdministrativeGender`` (M / F / UN, or the GB/T 2261.1 codes 1 / 2 / 0 / 9),
  ``livingSubjectBirthTime`` (the date of the TS value);
- ``livingSubjectId`` — an identifier (root = its domain), or the resident ID number (root
  2.16.156.10011.1.3; the legacy 15-digit form finds the 18-character one);
- ``patientAddress`` (street line, city, state, postal code, county, country; ``*`` prefix),
  ``patientTelecom``;
- ``otherIDsScopingOrganization`` — the domains whose identifiers are returned (none: all).

Each matching person is one ``subject/registrationEvent`` whose Patient.id is its identifier in
the affinity domain (else its first), Person.id its resident ID number, asOtherIDs the others —
limited to the requested domains — with the demographics the index keeps.  ``queryAck`` carries
``resultTotalQuantity`` / ``resultCurrentQuantity`` / ``resultRemainingQuantity``.

Continuation (3.47.4.3, the Continuation Option): with ``initialQuantity`` (default 100, at most
1000) the answer holds that many persons; when more match, the query is kept in the table
``pix_pdq_query`` (by sender device and queryId, the last person id sent: any HTTP worker
process continues it) and QUQI_IN000003UV01 with wsa:Action
``urn:hl7-org:v3:QUQI_IN000003UV01_Continue`` returns the next ``continuationQuantity`` (default:
the initial quantity) as another PRPA_IN201306UV02; ``..._Cancel`` (3.47.4.4) ends it and is
acknowledged with MCCI_IN000002UV01 ``AA``.  A finished or cancelled query is forgotten; an
unknown queryId is ``AE`` with code 204 at ``.../queryContinuation/queryId``.

Errors (3.47.4.2.3): a domain of otherIDsScopingOrganization the index does not know: ``AE`` /
queryResponseCode ``AE``, one acknowledgementDetail 204 per domain at
``.../otherIDsScopingOrganization[n]/value``; a missing, malformed or unsupported parameter
(mothersMaidenName, ...): ``AE`` / ``QE`` with code 101 / 102 / 103 and its location.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.exc import IntegrityError

from hie.context import SERIOUS_FAILURE, Context
from hie.db import custom_plans
from hie.errors import HL7
from hie.hl7v3 import (II, Acknowledgement, AckDetail, QueryAck, V3Error, V3Message, build_ack,
                       peek_transmission)
from hie.hl7v3_patient import PatientRecord
from hie.hl7v3_query import (CONTINUATION, PDQ_QUERY, PDQ_RESPONSE, build_query_response,
                             parse_continuation, parse_pdq_query, query_id_of)
from hie.soap import SoapRequest, SoapResponse
from hie.transactions import ITI_47
from hie.xmlsafe import parse_xml
from pix_pdq import names as N
from pix_pdq.index import known_domains
from pix_pdq.iti21 import count, search
from pix_pdq.iti44 import custodian, decode, error_ack, node_device, v3_body
from pix_pdq.resident_id import RESIDENT_ID_OID
from pix_pdq.tables import ACTIVE, identifier as t_id, pdq_query as t_query

DEFAULT_QUANTITY = 100
MAX_QUANTITY = 1000
KEEP = dt.timedelta(days=1)      # an unfinished query is forgotten a day after its last use
CONTINUE_ACTION = "urn:hl7-org:v3:QUQI_IN000003UV01_Continue"
CANCEL_ACTION = "urn:hl7-org:v3:QUQI_IN000003UV01_Cancel"
ITI_47_CONTINUE = dataclasses.replace(ITI_47, action=CONTINUE_ACTION)
ITI_47_CANCEL = dataclasses.replace(ITI_47, action=CANCEL_ACTION,
                                    response_action="urn:hl7-org:v3:MCCI_IN000002UV01")


# --------------------------------------------------------------------------------------------
# parameters and records
# --------------------------------------------------------------------------------------------

def search_params(params: dict[str, str]) -> dict[str, str]:
    """The v3 parameters in :func:`pix_pdq.iti21.search` terms: a whole Chinese name split into
    family and given name (a wildcard kept on the last part), the county as ``address``."""
    out = {k: v for k, v in params.items() if k not in ("name", "county")}
    whole = params.get("name")
    if whole:
        star = whole.endswith("*")
        base = whole.rstrip("*")
        if N.is_chinese(base):
            norm = N.normalize(base)
            if star and norm in N.COMPOUND_SURNAMES:
                family, given = norm, ""
            else:
                family, given = N.split(base)
            if given:
                out.update(family=family, given=given + ("*" if star else ""))
            else:
                out["family"] = family + ("*" if star else "")
        else:
            out["name"] = whole
    if params.get("county") and "address" not in out:
        out["address"] = params["county"]
    return out


def record_of(conn, row: Any, wanted: list[str], affinity: str) -> PatientRecord:
    """A person of the index as an HL7 v3 Patient (identifiers limited to ``wanted``)."""
    q = sa.select(t_id).where(t_id.c.person_id == row.id, t_id.c.status == ACTIVE)
    if wanted:
        q = q.where(t_id.c.domain_oid.in_(wanted))
    ids = conn.execute(q.order_by(t_id.c.id)).all()
    iis = [II(i.domain_oid, i.value, i.domain_namespace if i.domain_type else "") for i in ids]
    national = [ii for ii in iis if ii.root == RESIDENT_ID_OID]
    others = [ii for ii in iis if ii.root != RESIDENT_ID_OID]
    main = next((ii for ii in others if affinity and ii.root == affinity),
                others[0] if others else None)
    rec = PatientRecord(ids=[main] if main else [], person_ids=national,
                        other_ids=[(ii, II(ii.root)) for ii in others if ii is not main],
                        demographics=dict(row.demographics or {}))
    return rec


# --------------------------------------------------------------------------------------------
# answers
# --------------------------------------------------------------------------------------------

def _respond(ctx: Context, msg: V3Message, ack: Acknowledgement, qa: QueryAck,
             records=(), qbp=None, national: bool = False) -> etree._Element:
    return build_query_response(PDQ_RESPONSE, msg, ack, qa, records,
                                node_device=node_device(ctx), custodian=custodian(ctx),
                                query_by_parameter=qbp, now=ctx.now(), national=national)


def _refuse(ctx: Context, msg: V3Message, err: V3Error, code: str, qbp=None,
            national: bool = False) -> etree._Element:
    ctx.fail(SERIOUS_FAILURE, str(err)[:4000])
    target = msg.transmission.id if msg.transmission.id.root else None
    return _respond(ctx, msg, Acknowledgement(err.type_code, target, err.details),
                    QueryAck(query_id_of(msg), code), qbp=qbp, national=national)


def _decode(ctx: Context, body: etree._Element, expected, national: bool):
    try:
        return decode(ctx, body, expected), None
    except V3Error as err:
        tx = peek_transmission(body)
        fake = V3Message(body, tx, None, national=tx.r2 or national)
        return None, _refuse(ctx, fake, err, err.query_code if err.type_code == "AE" else "AE",
                             national=national)


def _page(ctx: Context, conn, params: dict, wanted: list[str], after: int, limit: int):
    rows = search(conn, params, after, limit)
    more = len(rows) > limit
    rows = rows[:limit]
    affinity = ctx.settings.affinity_domain
    records = [record_of(conn, r, wanted, affinity) for r in rows]
    for r in rows:
        ctx.note(None, [f"person:{r.id}"])
    return rows, records, more


def _key(msg: V3Message, qid: II) -> tuple[str, str]:
    return str(msg.transmission.sender or II(""))[:256], str(qid)[:256]


def answer(ctx: Context, body: etree._Element, national: bool = False) -> etree._Element:
    """Answer one PRPA_IN201305UV02 (see the module docstring)."""
    msg, refused = _decode(ctx, body, (PDQ_QUERY,), national)
    if refused is not None:
        return refused
    national = national or msg.national
    try:
        q = parse_pdq_query(msg)
    except V3Error as err:
        return _refuse(ctx, msg, err, err.query_code, national=national)
    qbp = q.query_by_parameter
    params = search_params(q.params)
    wanted = [d for d, _ in q.scoping]
    limit = min(q.initial_quantity or DEFAULT_QUANTITY, MAX_QUANTITY)
    now = ctx.now()
    with ctx.db.read(planned=True) as conn:
        known = known_domains(conn, wanted, ctx.settings.affinity_domain)
        errors = [AckDetail(HL7.UNKNOWN_KEY_IDENTIFIER, f"domain {d} is not a patient "
                            "identity domain of this supplier", loc)
                  for d, loc in q.scoping if d not in known]
        if errors:
            return _refuse(ctx, msg, V3Error(errors, "AE", "AE"), "AE", qbp, national)
        rows, records, more = _page(ctx, conn, params, wanted, 0, limit)
        total = count(conn, params) if more else len(rows)
    total = max(total, len(rows) + (1 if more else 0))
    sender, qid = _key(msg, q.query_id)
    with ctx.db.begin() as conn:
        conn.execute(t_query.delete().where(t_query.c.updated_at < now - KEEP))
        conn.execute(t_query.delete().where(t_query.c.sender == sender,
                                            t_query.c.query_id == qid))
        if more:
            try:
                with conn.begin_nested():
                    conn.execute(t_query.insert().values(
                        sender=sender, query_id=qid,
                        params={"params": params, "wanted": wanted, "limit": limit,
                                "national": national},
                        query=etree.tostring(qbp, encoding="UTF-8"), after=rows[-1].id,
                        sent=len(rows), total=total, created_at=now, updated_at=now))
            except IntegrityError:   # the same queryId sent twice at once: the other one wins
                pass
    ack = Acknowledgement("AA", msg.transmission.id)
    qa = QueryAck(q.query_id, "OK" if records else "NF", total, len(records),
                  total - len(records))
    return _respond(ctx, msg, ack, qa, records, qbp, national)


def _unknown_query(ctx: Context, msg: V3Message, qid: II) -> V3Error:
    return V3Error(AckDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                             f"no open query {qid} from this sender (finished, cancelled, "
                             "expired or never sent)",
                             msg.path("controlActProcess", "queryContinuation", "queryId")),
                   "AE", "AE")


def continue_query(ctx: Context, body: etree._Element) -> etree._Element:
    """QUQI_IN000003UV01 Continue: the next increment, as PRPA_IN201306UV02."""
    msg, refused = _decode(ctx, body, (CONTINUATION,), False)
    if refused is not None:
        return refused
    try:
        c = parse_continuation(msg)
    except V3Error as err:
        return _refuse(ctx, msg, err, err.query_code)
    sender, qid = _key(msg, c.query_id)
    now = ctx.now()
    with ctx.db.begin() as conn:
        custom_plans(conn)  # the next increment is searched with its values (see hie.db)
        state = conn.execute(sa.select(t_query).where(
            t_query.c.sender == sender, t_query.c.query_id == qid,
            t_query.c.updated_at >= now - KEEP).with_for_update()).first()
        if state is None:
            return _refuse(ctx, msg, _unknown_query(ctx, msg, c.query_id), "AE")
        saved = dict(state.params)
        national = bool(saved.get("national"))
        limit = min(c.quantity or saved.get("limit") or DEFAULT_QUANTITY, MAX_QUANTITY)
        rows, records, more = _page(ctx, conn, saved["params"], saved["wanted"], state.after,
                                    limit)
        sent = state.sent + len(rows)
        total = max(state.total, sent + (1 if more else 0))
        if more:
            conn.execute(t_query.update().where(t_query.c.id == state.id).values(
                after=rows[-1].id, sent=sent, total=total, updated_at=now))
        else:
            conn.execute(t_query.delete().where(t_query.c.id == state.id))
            total = sent
    qbp = parse_xml(state.query) if state.query else None
    qa = QueryAck(c.query_id, "OK" if records else "NF", total, len(records), total - sent)
    return _respond(ctx, msg, Acknowledgement("AA", msg.transmission.id), qa, records, qbp,
                    national)


def cancel_query(ctx: Context, body: etree._Element) -> etree._Element:
    """QUQI_IN000003UV01 Cancel: the query is forgotten; MCCI_IN000002UV01 AA."""
    try:
        msg = decode(ctx, body, (CONTINUATION,))
        c = parse_continuation(msg)
    except V3Error as err:
        return error_ack(ctx, body, err)
    sender, qid = _key(msg, c.query_id)
    with ctx.db.begin() as conn:
        gone = conn.execute(t_query.delete().where(t_query.c.sender == sender,
                                                   t_query.c.query_id == qid)).rowcount
    if not gone:
        return error_ack(ctx, body, _unknown_query(ctx, msg, c.query_id), msg.transmission)
    return build_ack(Acknowledgement("AA", msg.transmission.id), msg.transmission,
                     node_device=node_device(ctx), now=ctx.now())


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    return SoapResponse(answer(ctx, v3_body(req)))


def handle_national(ctx: Context, req: SoapRequest) -> SoapResponse:
    """个人信息查询 on /pix: answered in the national form."""
    return SoapResponse(answer(ctx, v3_body(req), national=True))


def handle_continue(ctx: Context, req: SoapRequest) -> SoapResponse:
    return SoapResponse(continue_query(ctx, v3_body(req)))


def handle_cancel(ctx: Context, req: SoapRequest) -> SoapResponse:
    return SoapResponse(cancel_query(ctx, v3_body(req)))


__all__ = ["CONTINUE_ACTION", "CANCEL_ACTION", "ITI_47_CONTINUE", "ITI_47_CANCEL", "answer",
           "continue_query", "cancel_query", "handle", "handle_national", "handle_continue",
           "handle_cancel", "record_of", "search_params"]

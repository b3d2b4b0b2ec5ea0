"""PIX Query [ITI-9], HL7 v2.5 profile, PIX Manager side (ITI TF-2a 3.9).

Request QBP^Q23^QBP_Q21 (3.9.4.1.2): MSH, QPD, RCP.  QPD-1 is the message query name
``IHE PIX Query``, QPD-2 the query tag, QPD-3 the patient identifier (CX with its assigning
authority), QPD-4 (repeating) the domains whose identifiers are wanted (only CX-4 valued; empty:
every domain).  RCP-1 query priority ``I`` (immediate).

Response RSP^K23^RSP_K23 (3.9.4.2.2): MSH, MSA, [ERR], QAK, QPD (the request's, echoed), [PID].
The expected actions (3.9.4.2.2.6):

- the identifier is known and the person has identifiers in the wanted domains (or, with no
  QPD-4, any identifier besides the one asked about): MSA-1 ``AA``, QAK-2 ``OK``, one PID whose
  PID-3 lists them and whose PID-5 is a single space (names differ between domains);
- the identifier is known but the person has none in the wanted domains: ``AA`` / ``NF``, no PID;
- the assigning authority of QPD-3 is not a domain of the index: ``AE`` / ``AE`` with ERR-2
  ``QPD^1^3^1^4`` and ERR-3 204 (unknown key identifier); the identifier is not known in a known
  domain: the same with ERR-2 ``QPD^1^3^1^1``;
- a domain of QPD-4 is not known: ``AE`` / ``AE``, ERR-2 ``QPD^1^4^<repetition>``, 204.

A malformed query (no QPD, wrong query name, no QPD-3 value) is answered ``AE`` with ERR 101/100;
a wrong version or processing id ``AR``.  Only active identifiers of active persons count.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hie.context import SERIOUS_FAILURE, Context
from hie.errors import HL7, Hl7Error
from hie.hl7v2 import ErrorDetail, Message, Repeat, Segment, query_response
from pix_pdq.index import Identifier, known_domains
from pix_pdq.iti8 import check_version
from pix_pdq.tables import ACTIVE, identifier as t_id, person as t_person

QUERY_NAME = "IHE PIX Query"


def check_query(msg: Message) -> tuple[Identifier, list[Identifier]]:
    """(the identifier asked about, the wanted domains); raises :class:`Hl7Error`.  (The query
    tag is echoed from QPD-2 by :func:`hie.hl7v2.query_response`.)"""
    check_version(msg)
    if msg.trigger_event != "Q23":
        raise Hl7Error("AE", HL7.UNSUPPORTED_EVENT_CODE,
                       f"unsupported event QBP^{msg.trigger_event}; the PIX Manager answers "
                       "QBP^Q23", "MSH^1^9^1^2")
    if not msg.control_id:
        raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING, "MSH-10 message control id is missing",
                       "MSH^1^10")
    qpd = msg.segment("QPD")
    if qpd is None:
        raise Hl7Error("AE", HL7.SEGMENT_SEQUENCE_ERROR, "the QPD segment is missing", "QPD")
    name = qpd.value(1, comp=2) or qpd.value(1)
    if QUERY_NAME.lower() not in (qpd.value(1).lower(), name.lower()):
        raise Hl7Error("AE", HL7.TABLE_VALUE_NOT_FOUND,
                       f"QPD-1 message query name must be {QUERY_NAME!r}", "QPD^1^1")
    asked = Identifier.from_field(qpd[3])
    if not asked.value:
        raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING, "QPD-3 has no identifier (CX-1)",
                       "QPD^1^3^1^1")
    if not asked.domain:
        raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING,
                       "QPD-3 has no assigning authority (CX-4)", "QPD^1^3^1^4")
    wanted = [Identifier.from_field(qpd[4], rep) for rep in range(1, len(qpd[4].reps) + 1)]
    return asked, wanted


_PERSON_OF = (sa.select(t_id.c.person_id)
              .select_from(t_id.join(t_person, t_person.c.id == t_id.c.person_id))
              .where(t_id.c.domain_oid == sa.bindparam("domain"),
                     t_id.c.value == sa.bindparam("value"),
                     t_id.c.status == ACTIVE, t_person.c.status == ACTIVE))
_IDENTIFIERS_OF = (sa.select(t_id.c.value, t_id.c.domain_oid, t_id.c.domain_namespace,
                             t_id.c.domain_type, t_id.c.id_type)
                   .where(t_id.c.person_id == sa.bindparam("person"), t_id.c.status == ACTIVE)
                   .order_by(t_id.c.id))


def cross_references(conn: Connection, asked: Identifier) -> list[Identifier] | None:
    """Every active identifier of the person holding ``asked`` (None: not known)."""
    person = conn.execute(_PERSON_OF, {"domain": asked.domain, "value": asked.value}).scalar()
    if person is None:
        return None
    out = []
    for r in conn.execute(_IDENTIFIERS_OF, {"person": person}):
        namespace_only = not r.domain_type and r.domain_oid == r.domain_namespace
        out.append(Identifier(r.value, "" if namespace_only else r.domain_oid,
                              r.domain_namespace, r.domain_type, r.id_type))
    return out


def _response(ctx: Context, msg: Message, ack_code: str, status: str,
              errors: list[ErrorDetail], pid: list[Identifier] | None) -> Message:
    segments = [Segment.of("PID", {3: Repeat([_cx(i) for i in pid]), 5: " "})] if pid else []
    return query_response(msg, ("RSP", "K23", "RSP_K23"), ack_code, status, errors, segments,
                          sending_application=msg.msh[5] or "HIE", timestamp=ctx.now())


def _cx(i: Identifier) -> tuple:
    return (i.value, None, None, (i.namespace, i.oid, i.oid_type) if i.domain else None,
            i.id_type or None)


def handle(ctx: Context, msg: Message, raw: bytes | None = None) -> Message:
    """Answer one QBP^Q23 (see the module docstring)."""
    ctx.message_id = msg.control_id or None
    ctx.extra["message_type"] = f"{msg.message_type}^{msg.trigger_event}"
    try:
        asked, wanted = check_query(msg)
    except Hl7Error as err:
        ctx.fail(SERIOUS_FAILURE, err.text)
        return _response(ctx, msg, err.ack_code, err.ack_code, [ErrorDetail.from_error(err)],
                         None)
    ctx.note(asked.cx)
    affinity = ctx.settings.affinity_domain
    with ctx.db.read() as conn:
        domains = {asked.domain} | {w.domain for w in wanted if w.domain}
        known = known_domains(conn, domains, affinity)
        errors = []
        if asked.domain not in known:
            errors.append(ErrorDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                                      f"assigning authority {asked.domain} is not a domain of "
                                      "this PIX Manager", "QPD^1^3^1^4"))
        for rep, w in enumerate(wanted, start=1):
            if not w.domain or w.domain not in known:
                errors.append(ErrorDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                                          f"what-domain {w.domain or '(empty)'} is not a domain "
                                          "of this PIX Manager", f"QPD^1^4^{rep}"))
        if errors:
            ctx.fail(SERIOUS_FAILURE, "; ".join(e.text for e in errors))
            return _response(ctx, msg, "AE", "AE", errors, None)
        found = cross_references(conn, asked)
    if found is None:
        err = ErrorDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                          f"patient identifier {asked.value} is not known in domain "
                          f"{asked.domain}", "QPD^1^3^1^1")
        ctx.fail(SERIOUS_FAILURE, err.text)
        return _response(ctx, msg, "AE", "AE", [err], None)
    want = {w.domain for w in wanted}
    if want:
        result = [i for i in found if i.domain in want]
    else:
        result = [i for i in found if (i.domain, i.value) != (asked.domain, asked.value)]
    ctx.note(None, [i.cx for i in result])
    if not result:
        return _response(ctx, msg, "AA", "NF", [], None)
    return _response(ctx, msg, "AA", "OK", [], result)


__all__ = ["QUERY_NAME", "check_query", "cross_references", "handle"]

"""ITI-45 PIXV3 Query, PIX Manager side (ITI TF-2b 3.45), on ``POST /pix``.

Request PRPA_IN201309UV02 (Patient Registry Get Identifiers Query, 3.45.4.1.2): in
``controlActProcess/queryByParameter`` the ``queryId``, one ``parameterList/patientIdentifier``
(the identifier asked about: root = assigning authority, extension = id) and any number of
``dataSource`` (the domains whose identifiers are wanted; none: every domain).  Response
PRPA_IN201310UV02 (3.45.4.2), wsa:Action ``urn:hl7-org:v3:PRPA_IN201310UV02``, with the
acknowledgement, one ``subject/registrationEvent/subject1/patient`` whose Patient.id lists the
cross-referenced identifiers (the queried one left out) and whose Person name has nullFlavor NA,
the custodian (this node's affinity domain), the ``queryAck`` and the echoed query.

Expected actions (3.45.4.2.3), with the ITI-9 semantics (:func:`pix_pdq.iti9.cross_references`;
only active identifiers of active persons count):

- the identifier is known and the person has identifiers in the wanted domains: ``AA`` /
  queryResponseCode ``OK``;
- it is known but has none there: ``AA`` / ``NF``, no subject;
- the assigning authority of the patientIdentifier is not a domain of the index, or the
  identifier is not known in it: ``AE`` / ``AE`` with ``acknowledgementDetail`` code 204 and the
  location ``.../parameterList/patientIdentifier/value``;
- a dataSource domain is not known: ``AE`` / ``AE``, 204, ``.../dataSource[n]/value``;
- a malformed query (no queryByParameter, queryId, patientIdentifier, root or extension):
  ``AE`` / ``QE`` with code 101; a transmission wrapper problem: ``AE`` / ``AR`` as for ITI-44.
"""
from __future__ import annotations

from lxml import etree

from hie.context import SERIOUS_FAILURE, Context
from hie.errors import HL7
from hie.hl7v3 import Acknowledgement, AckDetail, QueryAck, V3Error, V3Message, peek_transmission
from hie.hl7v3_patient import PatientRecord
from hie.hl7v3_query import (PIX_QUERY, PIX_RESPONSE, build_query_response, parse_pix_query,
                             query_id_of)
from hie.soap import SoapRequest, SoapResponse
from pix_pdq.index import known_domains, national_identifier
from pix_pdq.iti44 import custodian, decode, node_device, to_identifier, to_ii, v3_body
from pix_pdq.iti9 import cross_references
from pix_pdq.resident_id import RESIDENT_ID_OID


def respond(ctx: Context, msg: V3Message, ack: Acknowledgement, code: str,
            patients=(), qbp=None, **quantities) -> etree._Element:
    return build_query_response(PIX_RESPONSE, msg, ack,
                                QueryAck(query_id_of(msg), code, **quantities), patients,
                                node_device=node_device(ctx), custodian=custodian(ctx),
                                query_by_parameter=qbp, now=ctx.now())


def _refuse(ctx: Context, msg: V3Message, err: V3Error, code: str, qbp=None) -> etree._Element:
    ctx.fail(SERIOUS_FAILURE, str(err)[:4000])
    target = msg.transmission.id if msg.transmission.id.root else None
    return respond(ctx, msg, Acknowledgement(err.type_code, target, err.details), code, qbp=qbp)


def answer(ctx: Context, body: etree._Element) -> etree._Element:
    try:
        msg = decode(ctx, body, (PIX_QUERY,))
    except V3Error as err:
        tx = peek_transmission(body)
        fake = V3Message(body, tx, None, national=tx.r2)
        return _refuse(ctx, fake, err, err.query_code if err.type_code == "AE" else "AE")
    try:
        q = parse_pix_query(msg)
    except V3Error as err:
        return _refuse(ctx, msg, err, err.query_code)
    asked = to_identifier(q.patient)
    if asked.domain == RESIDENT_ID_OID:
        asked = national_identifier(asked)[0] or asked
    ctx.note(asked.cx)
    with ctx.db.read() as conn:
        domains = {asked.domain} | {d for d, _ in q.data_sources}
        known = known_domains(conn, domains, ctx.settings.affinity_domain)
        errors = []
        if asked.domain not in known:
            errors.append(AckDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                                    f"assigning authority {asked.domain} is not a domain of "
                                    "this PIX Manager", q.patient_location))
        errors += [AckDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                             f"data source {d} is not a domain of this PIX Manager", loc)
                   for d, loc in q.data_sources if d not in known]
        found = None if errors else cross_references(conn, asked)
    if not errors and found is None:
        errors.append(AckDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                                f"patient identifier {asked.value} is not known in domain "
                                f"{asked.domain}", q.patient_location))
    if errors:
        return _refuse(ctx, msg, V3Error(errors, "AE", "AE"), "AE", q.query_by_parameter)
    want = {d for d, _ in q.data_sources}
    result = [i for i in found if (i.domain in want if want else
                                   (i.domain, i.value) != (asked.domain, asked.value))]
    ctx.note(None, [i.cx for i in result])
    ack = Acknowledgement("AA", msg.transmission.id)
    if not result:
        return respond(ctx, msg, ack, "NF", qbp=q.query_by_parameter, total=0, current=0,
                       remaining=0)
    rec = PatientRecord(ids=[to_ii(i) for i in result])
    return respond(ctx, msg, ack, "OK", [rec], q.query_by_parameter, total=1, current=1,
                   remaining=0)


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    return SoapResponse(answer(ctx, v3_body(req)))


__all__ = ["answer", "handle"]

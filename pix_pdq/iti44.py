"""ITI-44 Patient Identity Feed HL7 V3, PIX Manager side (ITI TF-2b 3.44), and the national
个人信息注册 / 更新 / 合并 services of the interoperability maturity evaluation
(国家医疗健康信息互联互通标准化成熟度测评), on ``POST /pix``.

Interactions (request wsa:Action ``urn:hl7-org:v3:<interaction>``), each acknowledged with
MCCI_IN000002UV01 (wsa:Action ``urn:hl7-org:v3:MCCI_IN000002UV01``):

==================  ===========================================  ==========================
PRPA_IN201301UV02   Patient Registry Record Added (3.44.4.1)     add (ADT A01/A04 in v2)
PRPA_IN201302UV02   Patient Registry Record Revised (3.44.4.1)   revise (A08)
PRPA_IN201304UV02   Patient Registry Duplicates Resolved         merge (A40): the subsumed
                    (3.44.4.2) — also the national 个人信息合并    identity in replacementOf/
                                                                 priorRegistration
PRPA_IN201311UV02   national 个人信息注册 (registrationRequest)    add
PRPA_IN201314UV02   national 个人信息更新 (registrationRequest)    revise
==================  ===========================================  ==========================

Each message is decoded by :mod:`hie.hl7v3` / :mod:`hie.hl7v3_patient` into a
:class:`pix_pdq.feed.Feed` — Patient.id, Person.id (the resident ID number) and asOtherIDs are
the identifiers (root = assigning authority, extension = id), the demographics are mapped into
the index's vocabulary — and applied with :func:`pix_pdq.feed.apply_feed` exactly as ITI-8 does
(same matching, same merge, the XDS registry follows a merge the same way).

Acknowledgement (HL7 v3 MCCI_MT000200UV01, ITI TF-2b 3.44.4.1.3): ``AA``; ``AA`` with
``acknowledgementDetail typeCode="W"`` code 205 for an identifier already recorded for another
person, 204 for a prior (merged) identifier the index does not know; ``AE`` with code 204 and
the XPath of each identifier whose assigning authority is not a domain of the index when
``HIE_PIX_AUTO_DOMAINS`` is off; ``AE`` 101 for a missing required part (message id,
creationTime, sender / receiver device id, controlActProcess, patient, patient id, prior
identity of a merge), 102 for an identifier without root or extension or a message whose only
identifier is a resident ID number failing its GB 11643 check; ``AR`` 201 / 200 / 202 for an
interaction not accepted on this action, an interactionId contradicting the element, an
unsupported processingCode.  Anything that is not an HL7 v3 message is a SOAP Sender fault.  A
message id already received from the same sender device is not applied again: the stored
acknowledgement is returned (``pix_feed_log``, keyed by the sender device id, the marker
``urn:hl7-org:v3`` and the message id).  A message of the national form (``registrationRequest``,
the national interactions, R2 collection datatypes) is answered in it.

The national WebService convention — what the search of public integration code showed: many
platforms and hospital integration engines expose every interaction service through one
WebService operation ``HIPMessageServer(action, message)`` (JAX-WS services named ``HIPService``
with a SOAP 1.2 port ``HIPServiceSoap12`` in namespace ``urn:hl7-org:v3``; .NET ASMX clients in
``http://tempuri.org/``; InterSystems-based platforms in their own namespace), where ``action``
names the service — a service code of the platform's catalogue (个人信息注册服务 S0001, 更新
S0002, 合并 S0003, 查询 S0004 in the catalogue seen), the interaction id itself, or a
platform-specific name (e.g. ``PatientInfoRegister``) — and ``message`` is the HL7 v3 XML as a
string; the operation returns the response message as a string.  The convention is a de-facto
one (no normative text found); it is supported as the extra operation
``urn:hl7-org:v3:HIPMessageServer`` on ``/pix`` and ``/pdq`` (:mod:`pix_pdq.v3_service`).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.exc import IntegrityError

from hie.context import SERIOUS_FAILURE, Context
from hie.errors import HL7, SoapFault
from hie.hl7v3 import (II, Acknowledgement, AckDetail, NotV3, Transmission, V3Error,
                       V3Message, build_ack, child, parse_acknowledgement, parse_message,
                       peek_transmission)
from hie.hl7v3_patient import FEEDS, Registration, parse_registration
from hie.soap import SoapRequest, SoapResponse
from hie.transactions import ITI_44
from hie.xmlsafe import parse_xml
from pix_pdq.feed import Feed, UnknownDomains, apply_feed, note_applied, note_patient, run
from pix_pdq.index import Identifier, InvalidIdentity
from pix_pdq.resident_id import RESIDENT_ID_OID
from pix_pdq.tables import feed_log

log = logging.getLogger("pix_pdq.iti44")

V3_MARKER = "urn:hl7-org:v3"   # pix_feed_log.sending_facility of HL7 v3 feeds
ACTIONS = {name: f"urn:hl7-org:v3:{name}" for name in FEEDS}
TRANSACTIONS = {name: dataclasses.replace(ITI_44, action=action)
                for name, action in ACTIONS.items()}


# --------------------------------------------------------------------------------------------
# helpers shared by the v3 handlers (ITI-44, ITI-45, ITI-47)
# --------------------------------------------------------------------------------------------

def node_device(ctx: Context) -> II:
    """This node's device id: the OID of its home community."""
    hc = ctx.settings.home_community_id or "urn:oid:1.2.156"
    return II(hc[len("urn:oid:"):] if hc.startswith("urn:oid:") else hc)


def custodian(ctx: Context) -> II:
    """The assigning authority this PIX Manager / PDQ Supplier answers for."""
    return II(ctx.settings.affinity_domain or node_device(ctx).root)


def to_identifier(ii: II) -> Identifier:
    return Identifier(value=ii.extension, oid=ii.root, namespace=ii.assigning_authority_name,
                      oid_type="ISO")


def to_ii(ident: Identifier) -> II:
    return II(ident.domain, ident.value, ident.namespace if ident.oid else "")


def v3_body(req: SoapRequest) -> etree._Element:
    if req.body is None or not isinstance(req.body.tag, str):
        raise SoapFault.sender("the SOAP Body holds no HL7 v3 message")
    return req.body


def decode(ctx: Context, body: etree._Element, expected) -> V3Message:
    """Read the message; a non-v3 body is a SOAP Sender fault.  Raises V3Error."""
    try:
        msg = parse_message(body, expected)
    except NotV3 as exc:
        raise SoapFault.sender(f"{ctx.transaction.id}: {exc.reason}") from None
    ctx.message_id = str(msg.transmission.id)[:256]
    ctx.extra["message_type"] = msg.interaction
    return msg


def error_ack(ctx: Context, body: etree._Element, err: V3Error,
              tx: Transmission | None = None, national: bool = False) -> etree._Element:
    """MCCI_IN000002UV01 ``AE`` / ``AR`` for ``err``, addressed back to the sender."""
    tx = tx or peek_transmission(body)
    ctx.fail(SERIOUS_FAILURE, str(err)[:4000])
    return build_ack(Acknowledgement(err.type_code, tx.id if tx.id.root else None, err.details),
                     tx, node_device=node_device(ctx), now=ctx.now(),
                     national=national or tx.r2)


# --------------------------------------------------------------------------------------------
# the feed
# --------------------------------------------------------------------------------------------

def _sender_key(tx: Transmission) -> str:
    return str(tx.sender or II(""))[:256]


def _stored(conn, tx: Transmission):
    return conn.execute(sa.select(feed_log.c.ack, feed_log.c.ack_code)
                        .where(feed_log.c.sending_application == _sender_key(tx),
                               feed_log.c.sending_facility == V3_MARKER,
                               feed_log.c.control_id == str(tx.id)[:199])).first()


def _log_row(ctx: Context, tx: Transmission, body: etree._Element, ack: etree._Element,
             person_id: int | None) -> dict[str, Any]:
    code = parse_acknowledgement(child(ack, "acknowledgement")).type_code or "AE"
    return {"sending_application": _sender_key(tx), "sending_facility": V3_MARKER,
            "control_id": str(tx.id)[:199], "message_type": tx.interaction[:13],
            "received_at": ctx.now(), "remote_addr": (ctx.remote_addr or "")[:64] or None,
            "ack_code": code[:2], "ack": etree.tostring(ack, encoding="UTF-8"),
            "message": etree.tostring(body, encoding="UTF-8"), "person_id": person_id}


def _replay(ctx: Context, stored, identifiers=()) -> etree._Element:
    ctx.extra["duplicate"] = True
    note_patient(ctx, list(identifiers))
    if stored.ack_code != "AA":
        ctx.fail(SERIOUS_FAILURE, "duplicate of a message acknowledged with " + stored.ack_code)
    ctx.detail = ctx.detail or "duplicate message id: stored acknowledgement returned"
    return parse_xml(stored.ack)


def _log_refusal(ctx: Context, tx: Transmission, body, ack) -> etree._Element:
    try:
        with ctx.db.begin() as conn:
            conn.execute(feed_log.insert().values(**_log_row(ctx, tx, body, ack, None)))
    except IntegrityError:   # the same message, logged concurrently: its stored answer
        with ctx.db.read() as conn:
            stored = _stored(conn, tx)
        if stored is not None:
            return _replay(ctx, stored)
        raise
    return ack


def feed_of(reg: Registration) -> tuple[Feed, dict[Identifier, str]]:
    """The index feed of a registration and the XPath of each identifier."""
    rec = reg.patient
    where: dict[Identifier, str] = {}
    idents = []
    for ii in rec.identifiers():
        ident = to_identifier(ii)
        idents.append(ident)
        where.setdefault(ident, rec.locations.get(ii, ""))
    prior = []
    for ii in reg.prior:
        ident = to_identifier(ii)
        prior.append(ident)
        where.setdefault(ident, reg.prior_locations.get(ii, ""))
    return Feed(reg.interaction, tuple(idents), dict(rec.demographics), tuple(prior)), where


def answer(ctx: Context, body: etree._Element, expected=None,
           national: bool = False) -> etree._Element:
    """Apply one feed message; the MCCI_IN000002UV01 acknowledgement (see the docstring)."""
    try:
        msg = decode(ctx, body, expected or tuple(FEEDS))
    except V3Error as err:
        return error_ack(ctx, body, err, national=national)
    tx = msg.transmission
    with ctx.db.read() as conn:
        stored = _stored(conn, tx)
    if stored is not None:
        return _replay(ctx, stored)
    try:
        reg = parse_registration(msg)
    except V3Error as err:
        return _log_refusal(ctx, tx, body, error_ack(ctx, body, err, tx,
                                                     national or msg.national))
    national = national or msg.national
    feed, where = feed_of(reg)
    source = f"{ctx.transaction.id} {_sender_key(tx)}"
    kw = {"node_device": node_device(ctx), "national": national}

    def unit():
        with ctx.db.begin() as conn:
            again = _stored(conn, tx)
            if again is not None:
                return _replay(ctx, again, feed.identifiers), None, []
            result = apply_feed(ctx, conn, feed, source)
            warnings = [AckDetail(HL7.DUPLICATE_KEY_IDENTIFIER,
                                  f"identifier {i.cx} is recorded for another patient; not "
                                  "linked", where.get(i, ""), "W") for i in result.conflicts]
            warnings += [AckDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                                   f"prior identifier {i.cx} is not known; nothing merged",
                                   where.get(i, ""), "W") for i in result.unknown_prior]
            ack = build_ack(Acknowledgement("AA", tx.id, tuple(warnings)), tx, now=ctx.now(),
                            **kw)
            conn.execute(feed_log.insert().values(**_log_row(ctx, tx, body, ack,
                                                             result.person_id)))
            return ack, result, warnings

    try:
        ack, result, warnings = run(ctx, unit, str(tx.id))
    except UnknownDomains as refused:
        err = V3Error([AckDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                                 f"assigning authority {i.domain} is not a domain of this "
                                 "patient index (HIE_PIX_AUTO_DOMAINS is off)",
                                 where.get(i, "") + "/@root")
                       for i in refused.identifiers])
        return _log_refusal(ctx, tx, body, error_ack(ctx, body, err, tx, national))
    except InvalidIdentity as exc:
        loc = next((where[i] for i in feed.identifiers if i.domain == RESIDENT_ID_OID), "")
        err = V3Error.invalid(f"{exc}", loc + "/@extension")
        return _log_refusal(ctx, tx, body, error_ack(ctx, body, err, tx, national))
    if result is None:
        return ack
    note_applied(ctx, feed, result, [w.text for w in warnings])
    return ack


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    """The SOAP operation of every ITI-44 / national feed action: the body must be the
    interaction the action names."""
    name = req.action.rsplit(":", 1)[-1]
    return SoapResponse(answer(ctx, v3_body(req), (name,) if name in FEEDS else None))


__all__ = ["ACTIONS", "TRANSACTIONS", "answer", "handle", "node_device", "custodian",
           "to_identifier", "to_ii", "decode", "error_ack", "feed_of", "v3_body"]

"""ITI-8 Patient Identity Feed, receiving side (ITI TF-2a 3.8; HL7 v2.3.1 / v2.5 chapter 3).

Messages: ADT^A01 (admit/visit notification), ADT^A04 (register), ADT^A05 (pre-admit) create or
update a patient (ITI TF-2a 3.8.4.1); ADT^A08 (update patient information, 3.8.4.2) updates it —
and creates it when the patient is not known yet.  All four share the ADT_A01 structure.
ADT^A40 (merge patient - patient identifier list, ADT_A39 structure, 3.8.4.2) records the
surviving identity of PID-3 and merges the identifiers of MRG-1 into it: each is retired (kept,
status ``merged``), the person that held it joins the survivor, and the XDS registry's queries
by the surviving identifier find what was registered under the subsumed one.

Expected actions (3.8.4.1.3): every PID-3 identifier is recorded; those whose assigning authority
is the affinity domain (``HIE_AFFINITY_DOMAIN``) make the patient known to the XDS registry.  An
identity none of whose identifiers is known is matched against the index by its demographics
(:mod:`pix_pdq.linking`, with the model of ``hie mpi estimate``).  PID-5 (names), PID-7 (birth),
PID-8 (sex) and the other demographic fields are stored with HL7 update semantics (a field not
sent keeps its value, ``""`` deletes it).

Identity domains: an assigning authority the index does not know is registered by the feed when
``HIE_PIX_AUTO_DOMAINS`` is true (default); when false the message is refused with ``AE`` and
ERR 204 at ``PID^1^3^<repetition>^4`` for each such identifier.

Acknowledgement (HL7 v2.5 2.9.2 original mode, ITI TF-2x C.2.3): ``AA``; ``AR`` with ERR 203 /
202 for an unsupported version (MSH-12) or processing id (MSH-11); ``AE`` with ERR 101 for a
missing MSH-9, MSH-10 or PID-3 (or a PID-3 repetition without value or assigning authority),
100 for a missing PID (or, in an A40, MRG), 102 for a PID-3 holding only a resident ID number
that fails its check character, 200 / 201 for a message type / trigger event other than ADT A01,
A04, A05, A08, A40.  Identifiers already recorded for another person are left there and reported
as warnings (ERR-4 ``W``, code 205) in the AA; an MRG-1 identifier the index does not know, as a
warning 204.  A message already received from the same sending application and facility with the
same control id (MSH-10) is not applied again: the stored ACK is returned.
"""
from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hie.context import SERIOUS_FAILURE, Context
from hie.db import NeedsTransaction
from hie.errors import HL7, Hl7Error
from hie.hl7v2 import (DEFAULT_DELIMITERS, ErrorDetail, Field, Message, Segment, ack_for_error,
                       build_ack, parse)
from pix_pdq.feed import (Feed, UnknownDomains, apply_feed, note_applied, note_patient,
                           one_statement_first, run)
from pix_pdq.index import Identifier, national_identifier
from pix_pdq.resident_id import RESIDENT_ID_OID
from pix_pdq.tables import feed_log

log = logging.getLogger("pix_pdq.iti8")

SUPPORTED_EVENTS = {
    "A01": "Admit/visit notification",
    "A04": "Register a patient",
    "A05": "Pre-admit a patient",
    "A08": "Update patient information",
    "A40": "Merge patient - patient identifier list",
}
SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")  # HL7 Table 0104
PROCESSING_IDS = ("P", "D", "T")  # HL7 Table 0103


# --------------------------------------------------------------------------------------------
# validation and extraction
# --------------------------------------------------------------------------------------------

def check_version(msg: Message) -> None:
    """HL7 v2.5 2.9.2 step 1 (MSH-12 version, MSH-11 processing id), shared by the patient
    index's transactions; raises :class:`Hl7Error` AR."""
    if msg.version not in SUPPORTED_VERSIONS:
        raise Hl7Error("AR", HL7.UNSUPPORTED_VERSION_ID,
                       f"unsupported HL7 version {msg.version!r} (MSH-12); supported: "
                       + ", ".join(SUPPORTED_VERSIONS), "MSH^1^12")
    if msg.processing_id not in PROCESSING_IDS:
        raise Hl7Error("AR", HL7.UNSUPPORTED_PROCESSING_ID,
                       f"unsupported processing id {msg.processing_id!r} (MSH-11)", "MSH^1^11")


def check_header(msg: Message) -> None:
    """HL7 v2.5 2.9.2 step 1 and the ITI-8 message types; raises :class:`Hl7Error`."""
    check_version(msg)
    if not msg.message_type:
        raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING, "MSH-9 message type is missing",
                       "MSH^1^9")
    if msg.message_type != "ADT":
        raise Hl7Error("AE", HL7.UNSUPPORTED_MESSAGE_TYPE,
                       f"unsupported message type {msg.message_type!r}; ITI-8 accepts ADT",
                       "MSH^1^9^1^1")
    if msg.trigger_event not in SUPPORTED_EVENTS:
        raise Hl7Error("AE", HL7.UNSUPPORTED_EVENT_CODE,
                       f"unsupported event ADT^{msg.trigger_event}; supported: "
                       + ", ".join(SUPPORTED_EVENTS), "MSH^1^9^1^2")
    if not msg.control_id:
        raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING, "MSH-10 message control id is missing",
                       "MSH^1^10")


def _is_null(f: Field) -> bool:
    """The HL7 null value ``""`` (v2.5 2.5.3): delete the attribute."""
    return f.reps == ((('""',),),)


def _compact(d: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in d.items() if v}


def _name(f: Field, rep: int) -> dict[str, str]:  # XPN
    return _compact({"family": f.value(rep, 1), "given": f.value(rep, 2),
                     "middle": f.value(rep, 3), "suffix": f.value(rep, 4),
                     "prefix": f.value(rep, 5), "degree": f.value(rep, 6),
                     "type": f.value(rep, 7)})


def _address(f: Field, rep: int) -> dict[str, str]:  # XAD
    return _compact({"street": f.value(rep, 1), "other": f.value(rep, 2),
                     "city": f.value(rep, 3), "state": f.value(rep, 4), "zip": f.value(rep, 5),
                     "country": f.value(rep, 6), "type": f.value(rep, 7),
                     "county": f.value(rep, 9)})


def _phone(f: Field, rep: int) -> dict[str, str]:  # XTN
    """The number: XTN-1 (the 2.3 form), else XTN-12 (unformatted), else XTN-5/6/7 (country
    code, area code, local number: the structured form of HL7 v2.5 2.A.89)."""
    number = (f.value(rep, 1) or f.value(rep, 12)
              or "".join(f.value(rep, c) for c in (5, 6, 7)))
    return _compact({"number": number, "use": f.value(rep, 2),
                     "equipment": f.value(rep, 3), "email": f.value(rep, 4)})


def _coded(f: Field, rep: int) -> dict[str, str]:  # CE / CWE / IS
    return _compact({"code": f.value(rep, 1), "text": f.value(rep, 2),
                     "system": f.value(rep, 3)})


def _list(build):
    def read(f: Field) -> list[dict[str, str]]:
        return [x for x in (build(f, r) for r in range(1, len(f.reps) + 1)) if x]
    return read


def _first(f: Field) -> str:
    return f.value()


def _first_coded(f: Field) -> dict[str, str]:
    return _coded(f, 1)


# demographic attribute -> (PID field, reader)
_PID_FIELDS = {
    "names": (5, _list(_name)),
    "mothers_maiden_name": (6, _list(_name)),
    "birth_time": (7, _first),
    "sex": (8, _first),
    "aliases": (9, _list(_name)),
    "race": (10, _list(_coded)),
    "addresses": (11, _list(_address)),
    "home_phones": (13, _list(_phone)),
    "business_phones": (14, _list(_phone)),
    "language": (15, _first_coded),
    "marital_status": (16, _first_coded),
    "religion": (17, _first_coded),
    "ssn": (19, _first),            # Chinese sites often carry the resident ID number here
    "ethnic_group": (22, _list(_coded)),
    "birth_place": (23, _first),
    "multiple_birth": (24, _first),
    "birth_order": (25, _first),
    "citizenship": (26, _list(_coded)),
    "nationality": (28, _first_coded),
    "death_time": (29, _first),
    "death_indicator": (30, _first),
}


def demographics_from_pid(pid: Segment) -> dict[str, Any]:
    """The demographic attributes the PID segment sends: attribute -> value, or None for the HL7
    null (delete); attributes whose field is empty are absent (keep)."""
    out: dict[str, Any] = {}
    for key, (n, read) in _PID_FIELDS.items():
        f = pid[n]
        if not f:
            continue
        if _is_null(f):
            out[key] = None
            continue
        value = read(f)
        if value:
            out[key] = value
    return out


def feed_from_message(msg: Message) -> Feed:
    """The identifiers and demographics of an ADT A01/A04/A05/A08; raises :class:`Hl7Error` AE."""
    pid = msg.segment("PID")
    if pid is None:
        raise Hl7Error("AE", HL7.SEGMENT_SEQUENCE_ERROR, "the PID segment is missing", "PID")
    f = pid[3]
    if not f or _is_null(f):
        raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING,
                       "PID-3 patient identifier list is missing", "PID^1^3")
    identifiers = []
    for rep in range(1, len(f.reps) + 1):
        ident = Identifier.from_field(f, rep)
        if not ident.value:
            raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING,
                           f"PID-3 repetition {rep} has no ID number (CX-1)",
                           f"PID^1^3^{rep}^1")
        if not ident.domain:
            raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING,
                           f"PID-3 repetition {rep} ({ident.value}) has no assigning authority "
                           "(CX-4)", f"PID^1^3^{rep}^4")
        if len(ident.value) > 128 or len(ident.domain) > 128 or len(ident.namespace) > 128:
            raise Hl7Error("AE", HL7.DATA_TYPE_ERROR,
                           f"PID-3 repetition {rep} is too long", f"PID^1^3^{rep}")
        identifiers.append(ident)
    if all(national_identifier(i)[0] is None for i in identifiers
           if i.domain == RESIDENT_ID_OID) and all(i.domain == RESIDENT_ID_OID
                                                    for i in identifiers):
        raise Hl7Error("AE", HL7.DATA_TYPE_ERROR,
                       "PID-3 holds only a resident ID number that fails its GB 11643 check "
                       "character: it cannot identify the patient", "PID^1^3^1^1")
    prior: list[Identifier] = []
    if msg.trigger_event == "A40":
        mrg = msg.segment("MRG")
        if mrg is None or not mrg[1]:
            raise Hl7Error("AE", HL7.SEGMENT_SEQUENCE_ERROR,
                           "ADT^A40 needs an MRG segment with MRG-1 (prior patient identifier)",
                           "MRG^1^1")
        for rep in range(1, len(mrg[1].reps) + 1):
            ident = Identifier.from_field(mrg[1], rep)
            if not ident.value or not ident.domain:
                raise Hl7Error("AE", HL7.REQUIRED_FIELD_MISSING,
                               f"MRG-1 repetition {rep} needs an ID number and an assigning "
                               "authority", f"MRG^1^1^{rep}")
            prior.append(ident)
    return Feed(msg.trigger_event, tuple(identifiers), demographics_from_pid(pid), tuple(prior))


# --------------------------------------------------------------------------------------------
# the transaction
# --------------------------------------------------------------------------------------------

def _sender(msg: Message) -> tuple[str, str]:
    return (msg.msh[3].encode(DEFAULT_DELIMITERS)[:256],
            msg.msh[4].encode(DEFAULT_DELIMITERS)[:256])


def _ack_kw(ctx: Context, msg: Message) -> dict[str, Any]:
    return {"sending_application": msg.msh[5] or "HIE", "timestamp": ctx.now()}


_STORED = sa.select(feed_log.c.ack, feed_log.c.ack_code, feed_log.c.person_id).where(
    feed_log.c.sending_application == sa.bindparam("app"),
    feed_log.c.sending_facility == sa.bindparam("facility"),
    feed_log.c.control_id == sa.bindparam("control_id"))
_LOG = feed_log.insert()


def _stored(conn, msg: Message):
    app, facility = _sender(msg)
    return conn.execute(_STORED, {"app": app, "facility": facility,
                                  "control_id": msg.control_id[:199]}).first()


def _log_row(ctx: Context, msg: Message, raw: bytes | None, ack: Message,
             person_id: int | None) -> dict[str, Any]:
    app, facility = _sender(msg)
    return {"sending_application": app, "sending_facility": facility,
            "control_id": msg.control_id[:199],
            "message_type": f"{msg.message_type}^{msg.trigger_event}"[:16],
            "received_at": ctx.now(), "remote_addr": (ctx.remote_addr or "")[:64] or None,
            "ack_code": ack.get("MSA-1"), "ack": ack.encode(),
            "message": raw if raw is not None else msg.encode(), "person_id": person_id}


def _replay(ctx: Context, msg: Message, stored) -> Message:
    ctx.extra["duplicate"] = True
    pid3 = msg.segment("PID")[3] if msg.segment("PID") is not None else Field()
    note_patient(ctx, [Identifier.from_field(pid3, r) for r in range(1, len(pid3.reps) + 1)])
    if stored.ack_code != "AA":
        ctx.fail(SERIOUS_FAILURE, "duplicate of a message acknowledged with " + stored.ack_code)
    ctx.detail = ctx.detail or "duplicate message control id: stored acknowledgement returned"
    return parse(stored.ack)


def _refuse(ctx: Context, msg: Message, raw: bytes | None, ack: Message, why: str) -> Message:
    """Log a refused message with its acknowledgement ``ack``; a message received before
    (the unique key of its feed log row) gets its stored acknowledgement instead."""
    try:
        with ctx.db.begin() as conn:
            conn.execute(_LOG, _log_row(ctx, msg, raw, ack, None))
    except IntegrityError:
        with ctx.db.read() as conn:
            stored = _stored(conn, msg)
        if stored is None:
            raise
        return _replay(ctx, msg, stored)
    ctx.fail(SERIOUS_FAILURE, why)
    return ack


def handle(ctx: Context, msg: Message, raw: bytes | None = None) -> Message:
    """Apply one ADT message; returns the acknowledgement.  ``raw`` (the bytes as received) is
    kept in the feed log."""
    ctx.message_id = msg.control_id or None
    ctx.extra["message_type"] = f"{msg.message_type}^{msg.trigger_event}"
    try:
        check_header(msg)
    except Hl7Error as err:
        ctx.fail(SERIOUS_FAILURE, err.text)
        return ack_for_error(msg, err, **_ack_kw(ctx, msg))

    # a message already received is found inside the unit of work below (or, for one refused
    # as malformed, by the unique key of its feed log row): no look-up of its own here
    try:
        feed = feed_from_message(msg)
    except Hl7Error as err:
        return _refuse(ctx, msg, raw, ack_for_error(msg, err, **_ack_kw(ctx, msg)), err.text)

    source = f"ITI-8 {'|'.join(_sender(msg))}"
    attempts = 0
    # one statement, until a step needs a transaction block (hie.db.NeedsTransaction)
    one_statement = one_statement_first(ctx, feed)

    def unit() -> tuple[Message, Any, list[ErrorDetail]]:
        nonlocal attempts, one_statement
        attempts += 1
        answer: dict[str, Any] = {}

        def log(conflicts, unknown_prior) -> dict[str, Any]:
            """The feed log row, with the ACK: built before the feed is written, in the
            statement that writes it (hie.db.Database.begin, one_statement)."""
            warnings = [
                ErrorDetail(HL7.DUPLICATE_KEY_IDENTIFIER,
                            f"identifier {ident.cx} is recorded for another patient; not linked",
                            f"PID^1^3^{feed.identifiers.index(ident) + 1}", "W")
                for ident in conflicts]
            warnings += [
                ErrorDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                            f"prior identifier {ident.cx} is not known; nothing merged",
                            f"MRG^1^1^{feed.prior.index(ident) + 1}", "W")
                for ident in unknown_prior]
            answer["ack"] = build_ack(msg, "AA", warnings, **_ack_kw(ctx, msg))
            answer["warnings"] = warnings
            return _log_row(ctx, msg, raw, answer["ack"], None)

        try:
            with ctx.db.begin(one_statement=one_statement) as conn:
                # a message received before is caught by the unique key of its feed log row,
                # which undoes the write; the retry finds the row (no look-up for every new
                # message)
                stored = _stored(conn, msg) if attempts > 1 else None
                if stored is not None:
                    return _replay(ctx, msg, stored), None, []
                result = apply_feed(ctx, conn, feed, source, log=log)
                return answer["ack"], result, answer["warnings"]
        except NeedsTransaction:
            one_statement = False
            attempts -= 1
            return unit()

    try:
        ack, result, warnings = run(ctx, unit, msg.control_id)
    except UnknownDomains as refused:
        errors = [ErrorDetail(HL7.UNKNOWN_KEY_IDENTIFIER,
                              f"assigning authority {i.domain} is not a domain of this "
                              "patient index (HIE_PIX_AUTO_DOMAINS is off)",
                              f"PID^1^3^{feed.identifiers.index(i) + 1}^4")
                  for i in refused.identifiers]
        return _refuse(ctx, msg, raw, build_ack(msg, "AE", errors, **_ack_kw(ctx, msg)),
                       "; ".join(e.text for e in errors))
    if result is None:  # a duplicate, logged concurrently: the stored ACK
        return ack
    note_applied(ctx, feed, result, [w.text for w in warnings])
    return ack


__all__ = ["Feed", "SUPPORTED_EVENTS", "SUPPORTED_VERSIONS", "PROCESSING_IDS", "check_header",
           "check_version",
           "feed_from_message", "demographics_from_pid", "handle"]

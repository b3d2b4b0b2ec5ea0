"""The patient index's FHIR R4 routes under /fhir (CONTRACT.md): Patient create / update (ITI-104
Patient Identity Feed FHIR), PIXm ``$ihe-pix`` (ITI-83) and PDQm search (ITI-78), read, and the
CapabilityStatement (``GET /fhir/metadata``).

- ITI-104 (PIXm 3.0, ITI TF-2 3.104.4.1-2): ``PUT /fhir/Patient?identifier=urn:oid:X|v`` is a
  conditional update (http.html#cond-update): no match creates (201), one match updates (200),
  several are 412; the URL identifier is part of the identity fed.  ``PUT /fhir/Patient/{id}``
  updates that person (405 for an unknown id: the index assigns ids) and ``POST /fhir/Patient``
  creates, or updates the person the identifiers or demographics already name (the index's
  feed semantics; ``If-None-Exist`` makes it a conditional create).  A Patient with ``active``
  false and a ``link`` of type ``replaced-by`` (3.104.4.2 Resolve Duplicate Patient) merges
  the patient named by the URL into the survivor, as ADT^A40 does.  Everything goes through
  :func:`pix_pdq.feed.apply_feed`, so FHIR, HL7 v2 and v3 feeds build one index.
- ``GET /fhir/Patient/{id}``: a merged-away person is answered 200 with ``active`` false and a
  ``replaced-by`` link to the survivor (the PMIR merge representation); the survivor lists
  ``replaces`` links.
- ITI-83 (3.83.4.1-2): ``sourceIdentifier`` (``system|value``), ``targetSystem`` (0..*);
  errors 400 "sourceIdentifier Assigning Authority not found", 404 "sourceIdentifier Patient
  Identifier not found", 403 "targetSystem not found", each an OperationOutcome.
- ITI-78 (3.78.4.1): see :data:`SEARCH_PARAMS`; string parameters match from the start,
  case-insensitively, after folding traditional and variant characters (``family=張`` finds
  张三), ``:exact`` matches whole; ``birthdate`` takes eq/ge/le/gt/lt; paging is stateless
  (``_after`` / ``_before`` carry the last / first person id of the page, so any HTTP worker
  serves any page).  Parameters the server does not know are ignored and left out of the
  ``self`` link, or refused (400) with ``Prefer: handling=strict`` (search.html#errors).

Errors are OperationOutcomes (400 malformed or invalid resource, 404, 405, 406, 412, 415, 422
business rules); every request is audited and measured once, like the other transports.
"""
from __future__ import annotations

import calendar
import datetime as dt
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qsl

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from hie import fhir
from hie.context import MAJOR_FAILURE, SERIOUS_FAILURE, Context
from hie.fhir import FhirError, Issue
from hie.transactions import ITI_78, ITI_83, ITI_104, Transaction
from pix_pdq import fhir_patient as FP
from pix_pdq import iti21
from pix_pdq.feed import Feed, UnknownDomains, apply_feed, note_patient, run
from pix_pdq.index import Identifier, InvalidIdentity, Person, known_domains, \
    national_identifier
from pix_pdq.iti9 import cross_references
from pix_pdq.resident_id import RESIDENT_ID_OID
from pix_pdq.tables import ACTIVE, identifier as t_id, person as t_person

log = logging.getLogger("pix_pdq.fhir")

MAX_BODY = 4 * 1024 * 1024
DEFAULT_COUNT = 20
MAX_COUNT = 200
PIXM_OPERATION = "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix"
PDQM_PATIENT = "https://profiles.ihe.net/ITI/PDQm/StructureDefinition/IHE.PDQm.Patient"
PIXM_PATIENT = "https://profiles.ihe.net/ITI/PIXm/StructureDefinition/IHE.PIXm.Patient"
CAPABILITIES = Transaction("FHIR", "FHIR capabilities and refused requests", "FHIR server")

# PDQm parameter -> (FHIR type, what it matches)
SEARCH_PARAMS = {
    "_id": ("token", "the logical id (person id)"),
    "active": ("token", "true: persons in use (merged persons are read, not searched)"),
    "family": ("string", "family name, from the start (张 finds 张三), :exact"),
    "given": ("string", "given name, from the start, :exact"),
    "name": ("string", "any part of the name or the whole name (张三), :exact"),
    "identifier": ("token", "system|value (urn:oid:...), or a value in any domain; the "
                            "resident ID number (urn:oid:2.16.156.10011.1.3) in 15 or 18 digits"),
    "birthdate": ("date", "YYYY[-MM[-DD]] with prefix eq, ge, le, gt, lt"),
    "gender": ("token", "male | female | other | unknown"),
    "address": ("string", "any part of an address, from the start"),
    "address-city": ("string", "city"), "address-state": ("string", "province / state"),
    "address-postalcode": ("string", "postal code"), "address-country": ("string", "country"),
    "telecom": ("token", "a phone number ([phone|]number; the last 8 digits compare)"),
}
_RESULT_PARAMS = {"_count", "_format", "_pretty", "_after", "_before"}
_STRING_TARGET = {"family": "family", "given": "given", "name": "name", "address": "address",
                  "address-city": "city", "address-state": "state",
                  "address-postalcode": "zip", "address-country": "country"}


@dataclass
class FhirRequest:
    method: str
    path_id: str | None
    query: list[tuple[str, str]]
    headers: Any
    body: bytes
    base: str            # http://host:port/fhir

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    @property
    def strict(self) -> bool:
        return "handling=strict" in self.headers.get("prefer", "").replace(" ", "").lower()


@dataclass
class Answer:
    status: int
    resource: dict | None
    headers: dict


# ---------------------------------------------------------------------------------------------
# loading persons as Patients
# ---------------------------------------------------------------------------------------------

def _instant(value: Any) -> str | None:
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ident(r: Any) -> Identifier:
    namespace_only = not r.domain_type and r.domain_oid == r.domain_namespace
    return Identifier(r.value, "" if namespace_only else r.domain_oid, r.domain_namespace,
                      r.domain_type, r.id_type)


def patients(conn, rows: list[Any]) -> list[dict]:
    """The Patients of person rows, with three queries whatever their number."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    idents: dict[int, list[Any]] = {i: [] for i in ids}
    for r in conn.execute(sa.select(t_id).where(t_id.c.person_id.in_(ids)).order_by(t_id.c.id)):
        idents[r.person_id].append(r)
    replaces: dict[int, list[int]] = {i: [] for i in ids}
    for pid, into in conn.execute(sa.select(t_person.c.id, t_person.c.merged_into).where(
            t_person.c.merged_into.in_(ids)).order_by(t_person.c.id)):
        replaces[into].append(pid)
    out = []
    for row in rows:
        person = Person(id=row.id, enterprise_id=row.enterprise_id, status=row.status,
                        name=row.name, family_name=row.family_name, given_name=row.given_name,
                        birth_date=row.birth_date, sex=row.sex,
                        demographics=dict(row.demographics or {}),
                        identifiers=tuple(_ident(i) for i in idents[row.id]
                                          if i.status == ACTIVE))
        out.append(FP.patient_resource(
            person, merged_into=row.merged_into, replaces=replaces[row.id],
            old_identifiers=[_ident(i) for i in idents[row.id] if i.status != ACTIVE],
            last_updated=_instant(row.updated_at)))
    return out


def load_patient(conn, person_id: int) -> dict | None:
    row = conn.execute(sa.select(t_person).where(t_person.c.id == person_id)).first()
    return patients(conn, [row])[0] if row is not None else None


def _person_id(raw: str | None) -> int:
    if not raw or not raw.isdigit() or len(raw) > 18:
        raise FhirError(404, "not-found", f"Patient/{raw} is not known")
    return int(raw)


# ---------------------------------------------------------------------------------------------
# read
# ---------------------------------------------------------------------------------------------

def read(ctx: Context, req: FhirRequest) -> Answer:
    pid = _person_id(req.path_id)
    with ctx.db.read() as conn:
        patient = load_patient(conn, pid)
    if patient is None:
        raise FhirError(404, "not-found", f"Patient/{pid} is not known")
    ctx.note(None, [f"Patient/{pid}"])
    return Answer(200, patient, {})


# ---------------------------------------------------------------------------------------------
# ITI-104 Patient Identity Feed FHIR
# ---------------------------------------------------------------------------------------------

def _condition(conn, query: list[tuple[str, str]], where: str) -> tuple[list[Identifier],
                                                                        set[int]]:
    """The identifiers of a conditional request's ``identifier`` parameters (repeated: all
    must hold; comma: any) and the persons matching them."""
    others = sorted({k for k, _ in query if k not in ("identifier", "_format", "_pretty")})
    if others:
        raise FhirError(400, "not-supported", f"{where}: only the identifier parameter is "
                        f"supported, not {', '.join(others)}")
    groups = [v for k, v in query if k == "identifier"]
    if not groups:
        raise FhirError(400, "required", f"{where}: needs identifier=<system>|<value>")
    matched: set[int] | None = None
    named: list[Identifier] = []
    for group in groups:
        persons: set[int] = set()
        for token in re.split(r"(?<!\\),", group):
            ident = FP.identifier_from_token(token, "identifier")
            key = national_identifier(ident)[0] if ident.domain == RESIDENT_ID_OID else ident
            if key is None:
                raise FhirError(422, "business-rule", f"identifier {ident.value} fails the GB "
                                "11643 check character: it cannot identify a patient")
            named.append(key)
            row = conn.execute(sa.select(t_id.c.person_id).where(
                t_id.c.domain_oid == key.domain, t_id.c.value == key.value)).scalar()
            if row is not None:
                persons.add(row)
        matched = persons if matched is None else matched & persons
    return named, matched or set()


def _unique(identifiers: list[Identifier]) -> tuple[Identifier, ...]:
    seen, out = set(), []
    for i in identifiers:
        if (i.domain, i.value) not in seen:
            seen.add((i.domain, i.value))
            out.append(i)
    return tuple(out)


def _survivor(conn, other: dict) -> Identifier:
    """An identifier of the surviving patient of a replaced-by link."""
    if other.get("identifier"):
        return FP.identifier_from_fhir(other["identifier"], "Patient.link.other.identifier")
    ref = str(other.get("reference", ""))
    m = re.search(r"(?:^|/)Patient/(\d+)$", ref)
    if not m:
        raise FhirError(422, "business-rule", f"replaced-by reference {ref!r} is not a "
                        "Patient of this server", ["Patient.link.other"])
    row = conn.execute(sa.select(t_person.c.status).where(
        t_person.c.id == int(m.group(1)))).first()
    ident = conn.execute(sa.select(t_id).where(t_id.c.person_id == int(m.group(1)),
                                              t_id.c.status == ACTIVE)
                         .order_by(t_id.c.id).limit(1)).first()
    if row is None or row.status != ACTIVE or ident is None:
        raise FhirError(422, "business-rule", f"the surviving patient {ref} is not an active "
                        "patient of this index", ["Patient.link.other"])
    return _ident(ident)


def feed(ctx: Context, req: FhirRequest, mode: str) -> Answer:
    """``mode``: ``create`` (POST), ``conditional`` (PUT ?identifier=), ``update`` (PUT /id)."""
    resource = fhir.parse_body(req.body, req.headers.get("content-type"))
    fhir.validate(resource, "Patient")
    body_ids = FP.feed_identifiers(resource)
    demographics = FP.demographics_from_patient(resource)
    survivor_link = FP.replaced_by(resource) if resource.get("active") is False else None
    source = f"ITI-104 {ctx.remote_addr}"
    expected: int | None = None
    if mode == "update":
        expected = _person_id(req.path_id)
        if str(resource.get("id", "")) != str(expected):
            raise FhirError(400, "invalid", f"Patient.id ({resource.get('id')!r}) must be the id "
                            f"in the URL ({expected})", ["Patient.id"])

    def unit() -> Answer:
        with ctx.db.begin() as conn:
            feed_ids = list(body_ids)
            matched: set[int] = set()
            prior: list[Identifier] = []
            if mode == "conditional":
                named, matched = _condition(conn, req.query, "conditional update")
                if len(matched) > 1:
                    raise FhirError(412, "multiple-matches", "the identifiers of the condition "
                                    f"name {len(matched)} different patients")
                if matched and resource.get("id") and str(resource["id"]) not in \
                        {str(m) for m in matched}:
                    raise FhirError(400, "invalid", f"Patient.id {resource['id']} is not the "
                                    "patient the condition matches", ["Patient.id"])
                feed_ids = named + feed_ids
                prior = named
            elif mode == "create":
                cond = req.headers.get("if-none-exist")
                if cond:
                    _, found = _condition(conn, parse_qsl(cond.split("?", 1)[-1]),
                                          "If-None-Exist")
                    if len(found) > 1:
                        raise FhirError(412, "multiple-matches", "If-None-Exist matches "
                                        f"{len(found)} patients")
                    if found:
                        pid = found.pop()
                        ctx.extra["person_id"] = pid
                        return Answer(200, load_patient(conn, pid), {})
            else:
                row = conn.execute(sa.select(t_person.c.status, t_person.c.merged_into)
                                   .where(t_person.c.id == expected)).first()
                if row is None:
                    raise FhirError(405, "not-supported", f"Patient/{expected} does not exist "
                                    "and this server assigns ids: create with POST /Patient or "
                                    "PUT /Patient?identifier=...")
                if row.status != ACTIVE:
                    raise FhirError(422, "business-rule", f"Patient/{expected} was merged into "
                                    f"Patient/{row.merged_into}: update that patient")
                own = [_ident(r) for r in conn.execute(sa.select(t_id).where(
                    t_id.c.person_id == expected, t_id.c.status == ACTIVE).order_by(t_id.c.id))]
                matched = {expected}
                prior = own
                feed_ids = feed_ids + own
            if survivor_link is not None:
                return _merge(ctx, conn, _survivor(conn, survivor_link), prior, matched, source)
            identifiers = _unique(feed_ids)
            if not identifiers:
                raise FhirError(422, "required", "Patient.identifier: the patient needs at least "
                                "one identifier with a system (urn:oid:...) and a value",
                                ["Patient.identifier"])
            result = apply_feed(ctx, conn, Feed("ITI-104", identifiers, demographics), source)
            if matched and result.person_id not in matched:
                raise FhirError(409, "conflict", "the identifiers of this Patient belong to "
                                f"Patient/{result.person_id}, not to the patient addressed")
            if result.conflicts:
                ctx.detail = "identifiers recorded for another patient, left there: " + \
                    ", ".join(i.cx for i in result.conflicts)
            note_patient(ctx, identifiers)
            ctx.extra.update(person_id=result.person_id, created=result.created)
            patient = load_patient(conn, result.person_id)
            status = 201 if result.created else 200
            headers = {"Location": f"{req.base}/Patient/{result.person_id}"} if status == 201 \
                else {"Content-Location": f"{req.base}/Patient/{result.person_id}"}
            return Answer(status, patient, headers)

    try:
        return run(ctx, unit, "Patient")
    except UnknownDomains as refused:
        raise FhirError(422, "business-rule", "assigning authorities not known to this patient "
                        "index (HIE_PIX_AUTO_DOMAINS is off): "
                        + ", ".join(i.domain for i in refused.identifiers)) from None
    except InvalidIdentity as exc:
        raise FhirError(422, "business-rule", str(exc), ["Patient.identifier"]) from None


def _merge(ctx: Context, conn, survivor: Identifier, prior: list[Identifier],
           matched: set[int], source: str) -> Answer:
    """Resolve Duplicate Patient: ``prior`` (the patient addressed) joins the survivor."""
    if not prior:
        raise FhirError(422, "business-rule", "a merge (replaced-by) needs the patient to merge "
                        "in the URL: PUT /Patient?identifier=... or PUT /Patient/{id}")
    if not matched:
        raise FhirError(404, "not-found", "the patient to merge is not known: "
                        + ", ".join(f"{FP.system_of(i)}|{i.value}" for i in prior))
    result = apply_feed(ctx, conn, Feed("ITI-104 merge", (survivor,), {}, tuple(prior)), source)
    merged = next(iter(matched))
    ctx.extra.update(person_id=result.person_id, merged=merged)
    note_patient(ctx, (survivor,))
    ctx.detail = f"Patient/{merged} merged into Patient/{result.person_id}"
    return Answer(200, load_patient(conn, merged), {})


# ---------------------------------------------------------------------------------------------
# ITI-83 PIXm
# ---------------------------------------------------------------------------------------------

def pix(ctx: Context, req: FhirRequest) -> Answer:
    query = list(req.query)
    if req.method == "POST":
        query += _post_params(req, {"sourceIdentifier", "targetSystem"})
    sources = [v for k, v in query if k == "sourceIdentifier"]
    if len(sources) != 1:
        raise FhirError(400, "required" if not sources else "invalid",
                        "exactly one sourceIdentifier=<system>|<value> is required")
    asked = FP.identifier_from_token(sources[0], "sourceIdentifier")
    targets = [t.strip() for k, v in query if k == "targetSystem"
               for t in re.split(r"(?<!\\),", v) if t.strip()]
    wanted = [FP.domain_of(t) for t in targets]
    wanted_domains = [oid or ns for oid, ns in wanted]
    ctx.note(asked.cx)
    if asked.domain == RESIDENT_ID_OID:
        asked = national_identifier(asked)[0] or asked
    with ctx.db.read() as conn:
        known = known_domains(conn, {asked.domain, *wanted_domains},
                              ctx.settings.affinity_domain)
        if asked.domain not in known:
            raise FhirError(400, "code-invalid", "sourceIdentifier Assigning Authority not found",
                            ["sourceIdentifier"])
        unknown = [t for t, d in zip(targets, wanted_domains) if d not in known]
        if unknown:
            raise FhirError(403, "code-invalid", "targetSystem not found",
                            ["targetSystem"])
        found = cross_references(conn, asked)
        person = conn.execute(sa.select(t_id.c.person_id).where(
            t_id.c.domain_oid == asked.domain, t_id.c.value == asked.value)).scalar()
    if found is None:
        raise FhirError(404, "not-found", "sourceIdentifier Patient Identifier not found",
                        ["sourceIdentifier"])
    if wanted_domains:
        result = [i for i in found if i.domain in set(wanted_domains)]
    else:
        result = [i for i in found if (i.domain, i.value) != (asked.domain, asked.value)]
    ctx.note(None, [i.cx for i in result])
    items = [("targetIdentifier", "valueIdentifier",
              {k: v for k, v in FP.identifier_to_fhir(i).items() if k in ("system", "value")})
             for i in result]
    if result or not wanted_domains:
        items.append(("targetId", "valueReference", {"reference": f"Patient/{person}"}))
    return Answer(200, fhir.parameters(items), {})


def _post_params(req: FhirRequest, names: set[str]) -> list[tuple[str, str]]:
    """The parameters of a POSTed operation or search: a form, or (operations) Parameters."""
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if not req.body.strip():
        return []
    if ctype == "application/x-www-form-urlencoded":
        try:
            return parse_qsl(req.body.decode("utf-8"), keep_blank_values=False)
        except UnicodeDecodeError:
            raise FhirError(400, "structure", "the form is not UTF-8") from None
    if "sourceIdentifier" not in names:
        raise FhirError(415, "not-supported", "POST _search takes an "
                        "application/x-www-form-urlencoded body")
    resource = fhir.parse_body(req.body, req.headers.get("content-type"))
    fhir.validate(resource, "Parameters")
    out = []
    for name in names:
        for value in fhir.parameter_values(resource, name):
            if isinstance(value, dict):   # an Identifier
                value = f"{value.get('system', '')}|{value.get('value', '')}"
            out.append((name, str(value)))
    return out


# ---------------------------------------------------------------------------------------------
# ITI-78 PDQm
# ---------------------------------------------------------------------------------------------

def _date_bounds(raw: str, name: str) -> tuple[str, str, str]:
    """(prefix, first day, last day) of a date search value."""
    m = re.fullmatch(r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?"
                     r"(T[0-9:.+\-Z]*)?", raw.strip())
    if not m:
        raise FhirError(400, "value", f"{name}={raw!r} is not a date (YYYY[-MM[-DD]]) with an "
                        "optional prefix eq, ge, le, gt, lt", [name])
    prefix, y, mo, d = m.group(1) or "eq", int(m.group(2)), m.group(3), m.group(4)
    if prefix not in ("eq", "ge", "le", "gt", "lt"):
        raise FhirError(400, "not-supported", f"{name}: prefix {prefix} is not supported "
                        "(eq, ge, le, gt, lt are)", [name])
    try:
        if d:
            lo = hi = dt.date(y, int(mo), int(d))
        elif mo:
            lo = dt.date(y, int(mo), 1)
            hi = dt.date(y, int(mo), calendar.monthrange(y, int(mo))[1])
        else:
            lo, hi = dt.date(y, 1, 1), dt.date(y, 12, 31)
    except ValueError:
        raise FhirError(400, "value", f"{name}={raw!r} is not a real date", [name]) from None
    return prefix, lo.strftime("%Y%m%d"), hi.strftime("%Y%m%d")


def _shift(day: str, days: int) -> str:
    return (dt.datetime.strptime(day, "%Y%m%d") + dt.timedelta(days=days)).strftime("%Y%m%d")


def search_params(query: list[tuple[str, str]], strict: bool
                  ) -> tuple[dict[str, str], list[tuple[str, str]], list[str], bool]:
    """(index search parameters, the parameters used — for the self link —, the names
    ignored, whether no person can match)."""
    params: dict[str, str] = {}
    used: list[tuple[str, str]] = []
    ignored: list[str] = []
    nothing = False
    seen: set[str] = set()
    for key, value in query:
        name, _, modifier = key.partition(":")
        if name in _RESULT_PARAMS:
            continue
        if name not in SEARCH_PARAMS:
            if strict:
                raise FhirError(400, "not-supported", f"search parameter {key!r} is not "
                                "supported (Prefer: handling=strict)", [key])
            ignored.append(key)
            continue
        value = value.strip()
        if not value:
            continue
        kind = SEARCH_PARAMS[name][0]
        if modifier and not (kind == "string" and modifier == "exact"):
            raise FhirError(400, "not-supported", f"modifier :{modifier} of {name} is not "
                            "supported", [key])
        if name in seen and name != "birthdate":
            raise FhirError(400, "not-supported", f"{name} may be given once", [key])
        if name != "birthdate" and re.search(r"(?<!\\),", value) and name != "_id":
            raise FhirError(400, "not-supported", f"{name}: lists of values (a,b) are not "
                            "supported", [key])
        seen.add(name)
        used.append((key, value))
        if name in _STRING_TARGET:
            text = value.rstrip("*")
            params[_STRING_TARGET[name]] = text if modifier == "exact" else text + "*"
        elif name == "birthdate":
            prefix, lo, hi = _date_bounds(value, key)
            low = {"eq": lo, "ge": lo, "gt": _shift(hi, 1)}.get(prefix)
            high = {"eq": hi, "le": hi, "lt": _shift(lo, -1)}.get(prefix)
            if low:
                params["birth_from"] = max(low, params.get("birth_from", low))
            if high:
                params["birth_to"] = min(high, params.get("birth_to", high))
        elif name == "gender":
            if value not in FP.GENDER_TO_SEX:
                raise FhirError(400, "code-invalid", f"gender {value!r}: male, female, other "
                                "or unknown", [key])
            params["sex"] = FP.GENDER_TO_SEX[value]
        elif name == "_id":
            ids = [v for v in value.split(",") if v.isdigit() and len(v) <= 18]
            if len(ids) != 1:
                nothing = nothing or not ids
                if ids:
                    raise FhirError(400, "not-supported", "_id takes one id", [key])
            else:
                params["person_id"] = ids[0]
        elif name == "active":
            if value not in ("true", "false"):
                raise FhirError(400, "value", "active is true or false", [key])
            nothing = nothing or value == "false"
        elif name == "identifier":
            system, code = FP.split_token(value)
            if not code:
                raise FhirError(400, "not-supported", "identifier needs a value "
                                "(<system>|<value> or <value>)", [key])
            if system:
                oid, namespace = FP.domain_of(system)
                if (oid or namespace) == RESIDENT_ID_OID:
                    params["resident_id"] = code
                else:
                    params["id"], params["id_oid"] = code, oid or namespace
            elif system == "":
                nothing = True   # "|value": identifiers without a system are not kept
            else:
                params["id"] = code
        elif name == "telecom":
            system, number = FP.split_token(value)
            if system not in (None, "phone", "sms", "fax") or \
                    len(re.sub(r"\D", "", number)) < 3:
                raise FhirError(400, "not-supported", "telecom searches phone numbers "
                                "([phone|]number)", [key])
            params["phone"] = number
    return params, used, ignored, nothing


def search(ctx: Context, req: FhirRequest) -> Answer:
    query = list(req.query)
    if req.method == "POST":
        query += _post_params(req, set())
    params, used, ignored, nothing = search_params(query, req.strict)
    counts = [v for k, v in query if k == "_count"]
    if counts and not counts[-1].strip().isdigit():
        raise FhirError(400, "value", "_count must be a number", ["_count"])
    count = min(int(counts[-1]) if counts else DEFAULT_COUNT, MAX_COUNT)
    after = _cursor(query, "_after")
    before = _cursor(query, "_before")
    ctx.extra["query"] = "&".join(f"{k}={v}" for k, v in used)[:1000]
    if "resident_id" in params:
        ctx.note(f"{params['resident_id']}^^^&{RESIDENT_ID_OID}&ISO")
    elif "id" in params:
        ctx.note(f"{params['id']}^^^&{params.get('id_oid', '')}&ISO")
    with ctx.db.read(planned=True) as conn:
        total = 0 if nothing else iti21.count(conn, params)
        rows: list[Any] = []
        if count and not nothing:
            rows = iti21.search(conn, params, after or 0, count, before)
        more = len(rows) > count
        rows = rows[:count]
        if before is not None:
            rows.reverse()
        resources = patients(conn, rows)
    ctx.note(None, [f"Patient/{r.id}" for r in rows])
    base_params = used + [("_count", str(count))]
    path = "/Patient"
    links = {"self": fhir.search_url(req.base, path, base_params + (
        [("_after", str(after))] if after else []) + (
        [("_before", str(before))] if before is not None else []))}
    if rows:
        if (before is None and more) or before is not None:
            links["next"] = fhir.search_url(req.base, path,
                                            base_params + [("_after", str(rows[-1].id))])
        if (before is None and after) or (before is not None and more):
            links["previous"] = fhir.search_url(req.base, path,
                                                base_params + [("_before", str(rows[0].id))])
    outcome = None
    if ignored:
        outcome = fhir.operation_outcome([Issue(
            "warning", "not-supported", "search parameters not supported and ignored: "
            + ", ".join(ignored))])
    bundle = fhir.searchset(resources, req.base, total, links, outcome,
                            _instant(dt.datetime.now(dt.timezone.utc)))
    return Answer(200, bundle, {})


def _cursor(query: list[tuple[str, str]], name: str) -> int | None:
    values = [v for k, v in query if k == name]
    if not values:
        return None
    if not values[-1].isdigit() or len(values[-1]) > 18:
        raise FhirError(400, "value", f"{name} is not a paging cursor of this server", [name])
    return int(values[-1])


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

class FhirService:
    def __init__(self, node: Any):
        self.node = node

    async def call(self, request: Request, tx: Transaction,
                   work: Callable[[Context, FhirRequest], Answer]) -> Response:
        started = time.perf_counter()
        ctx = Context(self.node, tx, remote_addr=request.client.host if request.client else "")
        ctx.message_id = request.headers.get("x-request-id") or None
        query = list(request.query_params.multi_items())
        pretty = request.query_params.get("_pretty") == "true"
        fmt = "json"
        try:
            fmt = fhir.response_format(request.query_params.get("_format"),
                                       request.headers.get("accept"))
            body = b""
            if request.method in ("POST", "PUT"):
                body = await self._body(request)
            req = FhirRequest(request.method, request.path_params.get("id"), query,
                              request.headers, body,
                              str(request.base_url).rstrip("/") + "/fhir")
            answer = await run_in_threadpool(work, ctx, req)
        except FhirError as err:
            ctx.fail(SERIOUS_FAILURE, err.diagnostics)
            answer = Answer(err.status, err.outcome(), err.headers)
        except ClientDisconnect:
            ctx.fail(SERIOUS_FAILURE, "client went away")
            answer = Answer(400, fhir.operation_outcome([Issue(
                "error", "incomplete", "request body incomplete")]), {})
        except Exception:  # never a stack trace to the client
            log.exception("FHIR %s %s failed", request.method, request.url.path)
            ctx.fail(MAJOR_FAILURE, "internal error")
            answer = Answer(500, fhir.operation_outcome([Issue(
                "fatal", "exception", "internal error; the request was not applied")]), {})
        seconds = time.perf_counter() - started
        ctx.finish(seconds)
        headers = dict(answer.headers)
        if answer.resource is None or self._minimal(request, answer):
            return Response(b"", status_code=answer.status, headers=headers)
        content, media = fhir.encode(answer.resource, fmt, pretty)
        return Response(content, status_code=answer.status, media_type=media, headers=headers)

    @staticmethod
    def _minimal(request: Request, answer: Answer) -> bool:
        prefer = request.headers.get("prefer", "").replace(" ", "").lower()
        return request.method in ("POST", "PUT") and answer.status < 300 and \
            "return=minimal" in prefer

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            raise FhirError(413, "too-costly", f"request body larger than {MAX_BODY} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise FhirError(413, "too-costly", f"request body larger than {MAX_BODY} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


    # -- endpoints --------------------------------------------------------------------------
    async def patient_type(self, request: Request) -> Response:
        if request.method == "GET":
            return await self.call(request, ITI_78, search)
        if request.method == "POST":
            return await self.call(request, ITI_104, lambda c, r: feed(c, r, "create"))
        if request.method == "PUT":
            return await self.call(request, ITI_104, lambda c, r: feed(c, r, "conditional"))
        return await self.refuse(request, "GET, POST, PUT")

    async def patient_instance(self, request: Request) -> Response:
        if request.method == "GET":
            return await self.call(request, ITI_78, read)
        if request.method == "PUT":
            return await self.call(request, ITI_104, lambda c, r: feed(c, r, "update"))
        return await self.refuse(request, "GET, PUT")

    async def search_post(self, request: Request) -> Response:
        if request.method != "POST":
            return await self.refuse(request, "POST")
        return await self.call(request, ITI_78, search)

    async def pix(self, request: Request) -> Response:
        if request.method not in ("GET", "POST"):
            return await self.refuse(request, "GET, POST")
        return await self.call(request, ITI_83, pix)

    async def metadata(self, request: Request) -> Response:
        if request.method != "GET":
            return await self.refuse(request, "GET")
        caps = fhir.capabilities(self.node)
        return await self.call(request, CAPABILITIES, lambda c, r: Answer(
            200, caps.statement(r.base, dt.date.today().isoformat()), {}))

    async def refuse(self, request: Request, allow: str) -> Response:
        def work(ctx: Context, req: FhirRequest) -> Answer:
            raise FhirError(405, "not-supported", f"{request.method} is not supported on "
                            f"{request.url.path}; allowed: {allow}", headers={"Allow": allow})
        return await self.call(request, CAPABILITIES, work)


def describe(caps: fhir.Capabilities) -> None:
    """What this module serves, in the node's CapabilityStatement."""
    caps.add_resource(
        "Patient", ["read", "search-type", "create", "update"],
        [(name, kind, doc) for name, (kind, doc) in SEARCH_PARAMS.items()],
        [("ihe-pix", PIXM_OPERATION)], [PDQM_PATIENT, PIXM_PATIENT],
        updateCreate=False, conditionalCreate=True, conditionalUpdate=True)


ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]


def routes(node: Any) -> list:
    service = FhirService(node)
    caps = fhir.capabilities(node)
    describe(caps)
    out = [Route("/fhir/Patient/$ihe-pix", service.pix, methods=ALL_METHODS),
           Route("/fhir/Patient/_search", service.search_post, methods=ALL_METHODS),
           Route("/fhir/Patient/{id}", service.patient_instance, methods=ALL_METHODS),
           Route("/fhir/Patient", service.patient_type, methods=ALL_METHODS)]
    if not getattr(caps, "route_served", False):   # one metadata route, whoever adds first
        caps.route_served = True
        out.insert(0, Route("/fhir/metadata", service.metadata, methods=ALL_METHODS))
    return out


__all__ = ["FhirService", "SEARCH_PARAMS", "describe", "feed", "load_patient", "patients",
           "pix", "read", "routes", "search", "search_params"]

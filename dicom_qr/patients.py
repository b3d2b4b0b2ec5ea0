"""Imaging under the enterprise identity: a DICOM patient (PatientID in the domain of its issuer)
tied to the node's patient index (pix_pdq), so that a study sent by one hospital's PACS is
found by the patient's identifier in any domain the index has linked — the affinity domain's
enterprise ID, another hospital's MRN, the resident ID number.

The domain of a DICOM PatientID (PS3.3 C.7.1.1, Patient Identification Module; IHE RAD TF-2
4.8.4.1.2.1 and the PIR profile's use of the issuer):

1. ``IssuerOfPatientIDQualifiersSequence`` > ``UniversalEntityID`` (type ISO): the OID;
2. ``IssuerOfPatientID``: an OID as it is; a namespace the index knows (an HL7 feed has sent
   it as CX-4.1 with its universal id, ``pix_domain``) becomes that OID, otherwise the
   namespace itself is the domain (as a namespace-only CX-4 is in the index);
3. no issuer: the issuer configured for the sending AE title in ``HIE_DICOM_ISSUERS``
   (``AE=issuer,…``, an OID or a namespace) — many PACS send no issuer at all; the index
   keeps it as the instance's IssuerOfPatientID (RAD TF-2 4.8.4.1.2.1 lets the archive supply
   it), so two PACS's equal PatientIDs stay two patients;
4. else none: the instance is stored and found by PatientID, but not tied.

``OtherPatientIDsSequence`` items (each PatientID + issuer) are the same person's identifiers
in other domains (a resident ID number, often): they go to the index with the primary one.

When an instance names a patient the index does not know, the DICOM patient is fed to it
(:func:`pix_pdq.feed.apply_feed`, event ``DICOM``: identifiers, name, sex, birth date) and the
index links it as it links any feed — by identifier, else by its matching.  C-FIND keys
PatientID + IssuerOfPatientID are then answered through the index
(:func:`same_person`): every DICOM patient whose identifier belongs to the same person.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Sequence

import sqlalchemy as sa
from pydicom.dataset import Dataset
from sqlalchemy.engine import Connection

from dicom_qr.attrs import text_of
from hie.hl7types import OID_RE
from pix_pdq.index import Identifier
from pix_pdq.tables import domain as t_domain, identifier as t_id

log = logging.getLogger("dicom_qr.patients")

FEED_EVENT = "DICOM"


@functools.lru_cache(maxsize=8)
def issuers(setting: str) -> dict[str, str]:
    """``HIE_DICOM_ISSUERS``: AE title -> the issuer of the PatientIDs it sends."""
    out: dict[str, str] = {}
    for part in (setting or "").split(","):
        ae, sep, dom = part.partition("=")
        if sep and ae.strip() and dom.strip():
            out[ae.strip()] = dom.strip()
    return out


def _named(value: str, oid: str = "") -> Identifier | None:
    """An identifier's domain from an issuer text (and a universal id, if given)."""
    if oid:
        return Identifier("", oid=oid, namespace=value, oid_type="ISO")
    if not value:
        return None
    if OID_RE.fullmatch(value):
        return Identifier("", oid=value, oid_type="ISO")
    return Identifier("", namespace=value)


def _issuer_of(item: Dataset) -> Identifier | None:
    """The domain an item's IssuerOfPatientID (and its qualifiers) name."""
    issuer = text_of(item.get("IssuerOfPatientID", ""))
    for q in item.get("IssuerOfPatientIDQualifiersSequence", None) or []:
        uid, kind = text_of(q.get("UniversalEntityID", "")), text_of(
            q.get("UniversalEntityIDType", ""))
        if uid and kind.upper() in ("ISO", ""):
            return _named(issuer, uid)
    return _named(issuer)


def issuer_for(calling_ae: str, setting: str) -> str:
    """The issuer ``HIE_DICOM_ISSUERS`` gives the PatientIDs of ``calling_ae`` ("" none)."""
    return issuers(setting).get(calling_ae.strip(), "") if setting else ""


def identifiers(ds: Dataset, issuer: str = "") -> list[Identifier]:
    """The patient's identifiers an instance gives (primary first; ``issuer``: the one to use
    when the instance sends none), domains not yet resolved against the index
    (:func:`resolve`); [] when the primary one has no domain."""
    value = text_of(ds.get("PatientID", ""))
    primary = _issuer_of(ds) or _named(issuer)
    if not value or primary is None:
        return []
    out = [Identifier(value, primary.oid, primary.namespace, primary.oid_type)]
    for item in ds.get("OtherPatientIDsSequence", None) or []:
        other, dom = text_of(item.get("PatientID", "")), _issuer_of(item)
        if other and dom is not None:
            out.append(Identifier(other, dom.oid, dom.namespace, dom.oid_type))
    return out


def resolve(conn: Connection, ident: Identifier) -> Identifier:
    """A namespace-only identifier whose namespace the index knows with a universal id, in
    that domain; others unchanged."""
    if ident.oid or not ident.namespace:
        return ident
    oid = conn.execute(sa.select(t_domain.c.oid).where(
        t_domain.c.namespace == ident.namespace, t_domain.c.oid != ident.namespace)
        .order_by(t_domain.c.created_at).limit(1)).scalar()
    return Identifier(ident.value, oid, ident.namespace, "ISO") if oid else ident


def demographics(ds: Dataset) -> dict[str, Any]:
    """The index's demographic attributes (pix_pdq.iti8 keys) of an instance's patient: the
    ideographic name group if there is one, else the alphabetic; sex; birth date."""
    name = text_of(ds.get("PatientName", ""))
    groups = (name.split("=") + ["", ""])[:3]
    chosen = groups[1].strip() or groups[0].strip()
    out: dict[str, Any] = {}
    if chosen:
        family, _, given = chosen.partition("^")
        parts = {"family": family.strip(), "given": given.replace("^", " ").strip()}
        out["names"] = [{k: v for k, v in parts.items() if v}]
    sex = text_of(ds.get("PatientSex", "")).upper()
    if sex in ("M", "F", "O"):
        out["sex"] = sex
    birth = text_of(ds.get("PatientBirthDate", ""))
    if len(birth) == 8 and birth.isdigit():
        out["birth_time"] = birth
    return out


def tie(ctx, ids: Sequence[Identifier], demo: dict[str, Any], source: str
        ) -> tuple[int | None, str]:
    """(the index's person, the domain key of the primary identifier) for a DICOM patient:
    found by its identifier, else fed to the index (``ctx``: the C-STORE's transaction
    context).  The person is None when the index refuses it (an unknown domain with
    HIE_PIX_AUTO_DOMAINS off, an identifier it cannot record): the instance is kept all the
    same, found by its PatientID."""
    from pix_pdq import feed as F
    from pix_pdq.index import InvalidIdentity, find_person

    with ctx.db.read() as conn:
        resolved = [resolve(conn, i) for i in ids]
        person = find_person(conn, resolved[0])
    key = resolved[0].domain
    if person is not None:
        return person, key
    fed = F.Feed(FEED_EVENT, tuple(resolved), demo)

    def unit():
        with ctx.db.begin() as conn:
            return F.apply_feed(ctx, conn, fed, source).person_id

    try:
        return F.run(ctx, unit, resolved[0].cx), key
    except (F.UnknownDomains, InvalidIdentity, ValueError) as exc:
        log.warning("DICOM patient %s not tied to the patient index: %s", resolved[0].cx, exc)
        return None, key


def same_person(conn: Connection, patient_id: str, issuer: str) -> list[tuple[str, str]] | None:
    """(domain, value) of every identifier of the person holding ``patient_id`` in the domain
    ``issuer`` names — those merged into it too (ADT A40 moves them to the survivor: a study
    filed under a merged-away MRN is the survivor's); None when the index does not know it."""
    named = _named(issuer)
    if named is None:
        return None
    key = resolve(conn, Identifier(patient_id, named.oid, named.namespace,
                                   named.oid_type)).domain
    person = conn.execute(sa.select(t_id.c.person_id).where(
        t_id.c.domain_oid == key, t_id.c.value == patient_id)).scalar()
    if person is None:
        return None
    rows = conn.execute(sa.select(t_id.c.domain_oid, t_id.c.value).where(
        t_id.c.person_id == person)).all()
    return [(d, v) for d, v in rows] or [(key, patient_id)]


__all__ = ["FEED_EVENT", "issuers", "issuer_for", "identifiers", "resolve", "demographics", "tie",
           "same_person"]

"""FHIR R4 Patient (patient.html) <-> the patient index's identifiers and demographics, for
PIXm (ITI-104 feed, ITI-83 query) and PDQm (ITI-78).

Identifiers (datatypes.html#Identifier; ITI TF-2x Appendix E.3 / Z.9: ``system`` is the
assigning authority as ``urn:oid:<oid>``): ``urn:oid:X`` is the index domain X with type ISO; any
other absolute URI is kept as a namespace-only domain and given back unchanged.  The identifier
type (``Identifier.type``, HL7 Table 0203 codes ``MR``, ``PI``, ``NI``...) is CX-5.  The national
resident ID number (居民身份证号码) is the domain 2.16.156.10011.1.3.

Demographics are the dictionary :func:`pix_pdq.iti8.demographics_from_pid` fills from PID, so a
patient fed by FHIR and one fed by HL7 v2 or v3 are one record:

============================  =============================================================
HumanName (use, family,       ``names`` {family, given (first given), middle (the others),
given, prefix, suffix, text)  prefix, suffix, type (HL7 0200: official L, usual D, nickname N,
                              maiden M, anonymous S)}; a Chinese name sent only as ``text``
                              (张三) is kept whole and split by the index (复姓 included)
gender                        ``sex`` male M, female F, other O, unknown U
birthDate (+ birthTime ext.)  ``birth_time`` YYYYMMDD[HHMM...]
deceased[x]                   ``death_indicator`` Y/N, ``death_time``
Address                       ``addresses`` {street = line[0], other = line[1], city, county =
                              district, state, zip = postalCode, country, type (HL7 0190:
                              home H, work O, temp C, old BA; type postal M)}
ContactPoint                  ``home_phones`` / ``business_phones`` (use work) {number, use
                              (HL7 0201), equipment (HL7 0202: PH, CP mobile, FX, Internet),
                              email}
maritalStatus                 ``marital_status`` {code, text, system}
communication.language        ``language``
multipleBirth[x]              ``multiple_birth`` Y/N, ``birth_order``
extensions                    patient-mothersMaidenName, patient-religion, patient-nationality,
                              patient-citizenship, patient-birthPlace (HL7 core extensions);
                              ethnic group (民族, GB/T 3304) and race under :data:`EXT_ETHNIC`,
                              :data:`EXT_RACE`
============================  =============================================================

A FHIR update replaces the resource (http.html#update): every attribute above that the
Patient does not carry is deleted (the HL7 null), other index data is left alone.  Code
systems: an OID becomes ``urn:oid:``, anything else is passed through unchanged.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

from hie.fhir import FhirError
from pix_pdq import names as N
from pix_pdq.index import Identifier, Person
from pix_pdq.resident_id import RESIDENT_ID_OID, parse as parse_resident_id

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
EXT = "http://hl7.org/fhir/StructureDefinition/"
EXT_MAIDEN = EXT + "patient-mothersMaidenName"
EXT_RELIGION = EXT + "patient-religion"
EXT_NATIONALITY = EXT + "patient-nationality"
EXT_CITIZENSHIP = EXT + "patient-citizenship"
EXT_BIRTH_PLACE = EXT + "patient-birthPlace"
EXT_BIRTH_TIME = EXT + "patient-birthTime"
EXT_ETHNIC = "urn:hie:fhir:StructureDefinition:ethnic-group"   # 民族 (GB/T 3304)
EXT_RACE = "urn:hie:fhir:StructureDefinition:race"

_OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")
GENDER_TO_SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
SEX_TO_GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other",
                 "N": "unknown"}
_NAME_USE = {"official": "L", "usual": "D", "nickname": "N", "maiden": "M", "anonymous": "S",
             "temp": "T", "old": "O"}
_NAME_TYPE = {v: k for k, v in _NAME_USE.items()} | {"A": "usual", "B": "official",
                                                     "C": "official", "U": "usual"}
_ADDR_USE = {"home": "H", "work": "O", "temp": "C", "old": "BA", "billing": "B"}
_ADDR_TYPE = {"H": "home", "O": "work", "B": "work", "C": "temp", "BA": "old", "P": "home",
              "L": "home", "RH": "home"}
FHIR_MANAGED = ("names", "mothers_maiden_name", "birth_time", "sex", "race", "addresses",
                "home_phones", "business_phones", "language", "marital_status", "religion",
                "ethnic_group", "birth_place", "multiple_birth", "birth_order", "citizenship",
                "nationality", "death_time", "death_indicator")


# ---------------------------------------------------------------------------------------------
# identifiers
# ---------------------------------------------------------------------------------------------

def domain_of(system: str) -> tuple[str, str]:
    """(oid, namespace) of an Identifier.system."""
    if system.lower().startswith("urn:oid:"):
        return system[8:], ""
    return "", system


def system_of(ident: Identifier) -> str:
    if ident.oid and (_OID.fullmatch(ident.oid) or ident.oid_type == "ISO"):
        return "urn:oid:" + ident.oid
    return ident.domain


def split_token(token: str) -> tuple[str | None, str]:
    """A token search value ``[system]|[code]`` (search.html#token): (system or None, value);
    ``\\|`` escapes a bar in the value."""
    parts = re.split(r"(?<!\\)\|", token, maxsplit=1)
    if len(parts) == 1:
        return None, parts[0].replace("\\|", "|")
    return parts[0], parts[1].replace("\\|", "|")


def identifier_from_token(token: str, where: str) -> Identifier:
    """``urn:oid:X|value`` as an index identifier; FhirError 400 without both parts."""
    system, value = split_token(token)
    if not system or not value:
        raise FhirError(400, "invalid", f"{where} must be <system>|<value> (e.g. "
                        f"urn:oid:{RESIDENT_ID_OID}|110105199003071234), got {token!r}", [where])
    oid, namespace = domain_of(system)
    if oid and not _OID.fullmatch(oid):
        raise FhirError(400, "invalid", f"{where}: {system!r} is not a urn:oid: with a valid OID",
                        [where])
    return Identifier(value.strip(), oid, namespace, "ISO" if oid else "")


def identifier_from_fhir(item: Mapping[str, Any], where: str) -> Identifier:
    system, value = item.get("system"), item.get("value")
    if not system or not value or not str(value).strip():
        raise FhirError(422, "required", f"{where} needs a system (the assigning authority, "
                        "urn:oid:...) and a value to identify the patient", [where])
    oid, namespace = domain_of(system)
    if oid and not _OID.fullmatch(oid):
        raise FhirError(422, "value", f"{where}.system {system!r} is not a valid urn:oid:",
                        [where + ".system"])
    if len(value) > 128 or len(oid or namespace) > 128:
        raise FhirError(422, "value", f"{where} is longer than 128 characters", [where])
    id_type = ""
    for coding in (item.get("type") or {}).get("coding") or []:
        if coding.get("system") in (V2_0203, None) and coding.get("code"):
            id_type = str(coding["code"])[:8]
            break
    return Identifier(str(value).strip(), oid, namespace, "ISO" if oid else "", id_type)


def identifier_to_fhir(ident: Identifier, old: bool = False) -> dict:
    out: dict[str, Any] = {}
    if old:
        out["use"] = "old"
    if ident.id_type:
        out["type"] = {"coding": [{"system": V2_0203, "code": ident.id_type}]}
    out["system"] = system_of(ident)
    out["value"] = ident.value
    return out


# ---------------------------------------------------------------------------------------------
# FHIR -> demographics
# ---------------------------------------------------------------------------------------------

def _coded(cc: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not cc:
        return None
    coding = (cc.get("coding") or [{}])[0]
    out = {"code": coding.get("code", ""), "text": cc.get("text") or coding.get("display", ""),
           "system": domain_of(coding["system"])[0] or coding["system"]
           if coding.get("system") else ""}
    out = {k: str(v) for k, v in out.items() if v}
    return out or None


def _ext_values(resource: Mapping[str, Any], url: str) -> list[Any]:
    out = []
    for ext in resource.get("extension") or []:
        if ext.get("url") != url:
            continue
        value = next((v for k, v in ext.items() if k.startswith("value")), None)
        if value is None:  # complex extension (nationality, citizenship): its "code" part
            for part in ext.get("extension") or []:
                if part.get("url") == "code":
                    value = next((v for k, v in part.items() if k.startswith("value")), None)
        if value is not None:
            out.append(value)
    return out


def _name(h: Mapping[str, Any]) -> dict[str, str]:
    given = [g for g in h.get("given") or [] if g]
    family = h.get("family") or ""
    if not family and not given and h.get("text"):
        family = h["text"]          # 张三 whole: the index splits it (pix_pdq.names.split)
    out = {"family": family, "given": given[0] if given else "",
           "middle": " ".join(given[1:]), "prefix": " ".join(h.get("prefix") or []),
           "suffix": " ".join(h.get("suffix") or []), "type": _NAME_USE.get(h.get("use"), "")}
    return {k: v for k, v in out.items() if v}


def _address(a: Mapping[str, Any]) -> dict[str, str]:
    lines = a.get("line") or []
    out = {"street": lines[0] if lines else "", "other": " ".join(lines[1:]),
           "city": a.get("city", ""), "state": a.get("state", ""),
           "zip": a.get("postalCode", ""), "country": a.get("country", ""),
           "type": "M" if a.get("type") == "postal" else _ADDR_USE.get(a.get("use"), ""),
           "county": a.get("district", "")}
    if not any(out[k] for k in ("street", "city", "state", "zip")) and a.get("text"):
        out["street"] = a["text"]
    return {k: v for k, v in out.items() if v}


def _phone(cp: Mapping[str, Any]) -> dict[str, str]:
    system, use, value = cp.get("system", "phone"), cp.get("use"), cp.get("value", "")
    if system == "email":
        return {"use": "NET", "equipment": "Internet", "email": value}
    equipment = {"fax": "FX", "pager": "BP"}.get(system, "CP" if use == "mobile" else "PH")
    return {"number": value, "use": {"work": "WPN", "temp": "ORN"}.get(use, "PRN"),
            "equipment": equipment}


def demographics_from_patient(p: Mapping[str, Any]) -> dict[str, Any]:
    """The index's demographics of a Patient: every attribute FHIR manages, None where the
    Patient has none (a FHIR update replaces the resource)."""
    d: dict[str, Any] = {k: None for k in FHIR_MANAGED}
    names = [n for n in (_name(h) for h in p.get("name") or []) if n]
    d["names"] = names or None
    if p.get("gender"):
        if p["gender"] not in GENDER_TO_SEX:
            raise FhirError(400, "code-invalid", f"Patient.gender {p['gender']!r} is not one of "
                            "male, female, other, unknown", ["Patient.gender"])
        d["sex"] = GENDER_TO_SEX[p["gender"]]
    if p.get("birthDate"):
        times = _ext_values(p.get("_birthDate") or {}, EXT_BIRTH_TIME)
        stamp = times[0] if times else p["birthDate"]
        d["birth_time"] = re.sub(r"[-:T]", "", stamp[:16]) if times else \
            p["birthDate"].replace("-", "")
    if "deceasedBoolean" in p:
        d["death_indicator"] = "Y" if p["deceasedBoolean"] else "N"
    elif p.get("deceasedDateTime"):
        d["death_indicator"] = "Y"
        d["death_time"] = re.sub(r"[-:T]", "", p["deceasedDateTime"][:16])
    d["addresses"] = [x for x in (_address(a) for a in p.get("address") or []) if x] or None
    home, work = [], []
    for cp in p.get("telecom") or []:
        if cp.get("value"):
            (work if cp.get("use") == "work" else home).append(_phone(cp))
    d["home_phones"], d["business_phones"] = home or None, work or None
    d["marital_status"] = _coded(p.get("maritalStatus"))
    for c in p.get("communication") or []:
        d["language"] = _coded(c.get("language"))
        if c.get("preferred"):
            break
    if "multipleBirthBoolean" in p:
        d["multiple_birth"] = "Y" if p["multipleBirthBoolean"] else "N"
    elif "multipleBirthInteger" in p:
        d["multiple_birth"], d["birth_order"] = "Y", str(p["multipleBirthInteger"])
    maiden = _ext_values(p, EXT_MAIDEN)
    d["mothers_maiden_name"] = [{"family": str(maiden[0])}] if maiden else None
    for key, url, many in (("religion", EXT_RELIGION, False), ("nationality", EXT_NATIONALITY,
                           False), ("citizenship", EXT_CITIZENSHIP, True),
                           ("ethnic_group", EXT_ETHNIC, True), ("race", EXT_RACE, True)):
        coded = [c for c in (_coded(v) if isinstance(v, dict) else {"code": str(v)}
                             for v in _ext_values(p, url)) if c]
        d[key] = (coded if many else coded[0]) if coded else None
    place = _ext_values(p, EXT_BIRTH_PLACE)
    if place and isinstance(place[0], dict):
        a = place[0]
        d["birth_place"] = a.get("text") or "".join(
            a.get(k, "") for k in ("state", "city", "district")) or None
    return d


def feed_identifiers(p: Mapping[str, Any]) -> list[Identifier]:
    """Patient.identifier as index identifiers (FhirError 422 for one without system/value)."""
    return [identifier_from_fhir(item, f"Patient.identifier[{n}]")
            for n, item in enumerate(p.get("identifier") or [])]


def replaced_by(p: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """ITI-104 Resolve Duplicate Patient: the ``link`` of type ``replaced-by`` (its ``other``
    reference) when the Patient says it was merged into another."""
    for n, link in enumerate(p.get("link") or []):
        if link.get("type") == "replaced-by":
            other = link.get("other") or {}
            if not other.get("reference") and not other.get("identifier"):
                raise FhirError(422, "required", "a replaced-by link needs the surviving "
                                "patient as a reference or an identifier",
                                [f"Patient.link[{n}].other"])
            return other
    return None


# ---------------------------------------------------------------------------------------------
# demographics -> FHIR
# ---------------------------------------------------------------------------------------------

def _cc(c: Mapping[str, Any] | None) -> dict | None:
    if not c:
        return None
    coding = {}
    if c.get("system"):
        s = c["system"]
        coding["system"] = "urn:oid:" + s if _OID.fullmatch(s) else s
    if c.get("code"):
        coding["code"] = c["code"]
    if c.get("text") and coding:
        coding["display"] = c["text"]
    out: dict[str, Any] = {}
    if coding:
        out["coding"] = [coding]
    if c.get("text"):
        out["text"] = c["text"]
    return out or None


def _date(hl7: str | None) -> str | None:
    """HL7 TS YYYY[MM[DD]] -> FHIR date."""
    digits = re.sub(r"\D", "", hl7 or "")[:8]
    if len(digits) not in (4, 6, 8):
        return None
    return "-".join(x for x in (digits[:4], digits[4:6], digits[6:8]) if x)


def _datetime(hl7: str) -> str | None:
    digits = re.sub(r"\D", "", hl7 or "")
    if len(digits) < 12:
        return _date(hl7)
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}:{digits[10:12]}:" \
           f"{digits[12:14] or '00'}+08:00"


def _human_name(n: Mapping[str, Any]) -> dict:
    family, given = n.get("family", ""), n.get("given", "")
    if family and not given and N.is_chinese(family) and not any(c in family for c in "·•・"):
        cut = len(N.split(family)[0])
        family, given = family[:cut], family[cut:]
    out: dict[str, Any] = {}
    if n.get("type") in _NAME_TYPE:
        out["use"] = _NAME_TYPE[n["type"]]
    chinese = N.is_chinese(family + given)
    text = (family + given) if chinese else " ".join(x for x in (given, n.get("middle", ""),
                                                                 family) if x)
    if text:
        out["text"] = text
    if family:
        out["family"] = family
    givens = [g for g in [given] + (n.get("middle", "").split() if n.get("middle") else []) if g]
    if givens:
        out["given"] = givens
    if n.get("prefix"):
        out["prefix"] = n["prefix"].split()
    if n.get("suffix"):
        out["suffix"] = n["suffix"].split()
    return out


def _fhir_address(a: Mapping[str, Any]) -> dict:
    out: dict[str, Any] = {}
    t = a.get("type", "")
    if t == "M":
        out["type"] = "postal"
    elif t in _ADDR_TYPE:
        out["use"] = _ADDR_TYPE[t]
    parts = [a.get(k, "") for k in ("state", "city", "county", "street", "other")]
    if N.is_chinese("".join(parts)):   # 北京市东城区东华门街道 (a municipality is its province)
        out["text"] = "".join(p for n, p in enumerate(parts) if p and p not in parts[:n])
    lines = [x for x in (a.get("street"), a.get("other")) if x]
    if lines:
        out["line"] = lines
    for src, dst in (("city", "city"), ("county", "district"), ("state", "state"),
                     ("zip", "postalCode"), ("country", "country")):
        if a.get(src):
            out[dst] = a[src]
    return out


def _contact_point(ph: Mapping[str, Any], work: bool) -> dict | None:
    if ph.get("email") or ph.get("equipment") == "Internet":
        value = ph.get("email") or ph.get("number")
        return {"system": "email", "value": value, "use": "work" if work else "home"} \
            if value else None
    if not ph.get("number"):
        return None
    system = {"FX": "fax", "BP": "pager"}.get(ph.get("equipment", ""), "phone")
    use = "work" if work else "mobile" if ph.get("equipment") == "CP" else "home"
    return {"system": system, "value": ph["number"], "use": use}


def _ext(url: str, key: str, value: Any) -> dict:
    return {"url": url, key: value}


def patient_resource(person: Person, *, merged_into: int | None = None,
                     replaces: Sequence[int] = (), old_identifiers: Iterable[Identifier] = (),
                     last_updated: str | None = None) -> dict:
    """The Patient of an index person (``person.identifiers``: its active ones): ``id`` is the
    person id; identifiers retired by a merge are listed with use ``old``; a merged person is
    inactive with a ``replaced-by`` link to the survivor ``merged_into``; the survivor links the
    persons it ``replaces``."""
    demo = person.demographics
    p: dict[str, Any] = {"resourceType": "Patient", "id": str(person.id)}
    if last_updated:
        p["meta"] = {"lastUpdated": last_updated}
    ext: list[dict] = []
    maiden = (demo.get("mothers_maiden_name") or [{}])[0].get("family")
    if maiden:
        ext.append(_ext(EXT_MAIDEN, "valueString", maiden))
    if demo.get("birth_place"):
        ext.append(_ext(EXT_BIRTH_PLACE, "valueAddress", {"text": demo["birth_place"]}))
    for key, url in (("religion", EXT_RELIGION),):
        cc = _cc(demo.get(key))
        if cc:
            ext.append(_ext(url, "valueCodeableConcept", cc))
    for key, url in (("nationality", EXT_NATIONALITY), ("citizenship", EXT_CITIZENSHIP)):
        values = demo.get(key)
        for c in (values if isinstance(values, list) else [values] if values else []):
            cc = _cc(c)
            if cc:
                ext.append({"url": url, "extension": [_ext("code", "valueCodeableConcept", cc)]})
    for key, url in (("ethnic_group", EXT_ETHNIC), ("race", EXT_RACE)):
        for c in demo.get(key) or []:
            cc = _cc(c)
            if cc:
                ext.append(_ext(url, "valueCodeableConcept", cc))
    if ext:
        p["extension"] = ext
    idents = [identifier_to_fhir(i) for i in person.identifiers]
    idents += [identifier_to_fhir(i, old=True) for i in old_identifiers]
    ssn = parse_resident_id(str(demo.get("ssn") or ""))
    if ssn.valid and not any(i.domain == RESIDENT_ID_OID for i in person.identifiers):
        idents.append({"type": {"coding": [{"system": V2_0203, "code": "NI"}]},
                       "system": "urn:oid:" + RESIDENT_ID_OID, "value": ssn.number})
    if idents:
        p["identifier"] = idents
    p["active"] = person.status == "active"
    names = [_human_name(n) for n in demo.get("names") or []]
    if not names and person.name:
        names = [_human_name({"family": person.name})]
    if [n for n in names if n]:
        p["name"] = [n for n in names if n]
    telecom = [cp for key, work in (("home_phones", False), ("business_phones", True))
               for cp in (_contact_point(ph, work) for ph in demo.get(key) or []) if cp]
    if telecom:
        p["telecom"] = telecom
    sex = (demo.get("sex") or person.sex or "")[:1]
    if sex in SEX_TO_GENDER:
        p["gender"] = SEX_TO_GENDER[sex]
    birth = _date(demo.get("birth_time") or person.birth_date)
    if birth:
        p["birthDate"] = birth
        stamp = re.sub(r"\D", "", demo.get("birth_time") or "")
        if len(stamp) >= 12:
            p["_birthDate"] = {"extension": [_ext(EXT_BIRTH_TIME, "valueDateTime",
                                                  _datetime(stamp))]}
    if demo.get("death_time") and _datetime(demo["death_time"]):
        p["deceasedDateTime"] = _datetime(demo["death_time"])
    elif demo.get("death_indicator") in ("Y", "N"):
        p["deceasedBoolean"] = demo["death_indicator"] == "Y"
    addresses = [a for a in (_fhir_address(x) for x in demo.get("addresses") or []) if a]
    if addresses:
        p["address"] = addresses
    marital = _cc(demo.get("marital_status"))
    if marital:
        p["maritalStatus"] = marital
    if demo.get("birth_order", "").isdigit():
        p["multipleBirthInteger"] = int(demo["birth_order"])
    elif demo.get("multiple_birth") in ("Y", "N"):
        p["multipleBirthBoolean"] = demo["multiple_birth"] == "Y"
    language = _cc(demo.get("language"))
    if language:
        p["communication"] = [{"language": language, "preferred": True}]
    links = []
    if person.status != "active" and merged_into:
        links.append({"other": {"reference": f"Patient/{merged_into}"},
                      "type": "replaced-by"})
    links += [{"other": {"reference": f"Patient/{pid}"}, "type": "replaces"} for pid in replaces]
    if links:
        p["link"] = links
    return p


__all__ = ["EXT_ETHNIC", "EXT_RACE", "FHIR_MANAGED", "demographics_from_patient", "domain_of",
           "feed_identifiers", "identifier_from_fhir", "identifier_from_token",
           "identifier_to_fhir", "patient_resource", "replaced_by", "split_token",
           "system_of"]

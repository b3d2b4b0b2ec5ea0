"""HL7 v3 patient registration payloads, sans-IO: the Patient / Person classes of the Patient
Topic (HL7 V3 NE 2008 PRPA_MT201301UV02 add, PRPA_MT201302UV02 revise, PRPA_MT201303UV02
merge, PRPA_MT201310UV02 query response) as profiled by ITI TF-2b 3.44.4.1.2 (Patient Identity
Feed HL7 V3), 3.46.4.1.2 (PIXV3 Update Notification) and 3.47.4.2.2, and the national
interaction services of the interoperability maturity evaluation (个人信息注册 PRPA_IN201311UV02,
个人信息更新 PRPA_IN201314UV02, 个人信息合并 PRPA_IN201304UV02), whose message structure uses
``registrationRequest`` (moodCode RQO) where IHE uses ``registrationEvent`` and carries the
resident ID number as ``patientPerson/id`` (root 2.16.156.10011.1.3), other cards as
``asOtherIDs``, names as whole Chinese names, GB/T 2261.1 gender codes (code system
2.16.156.10011.2.3.3.4: 1 男, 2 女, 0 未知, 9 未说明), GB/T 2261.2 marital status and GB 3304
ethnic group codes, and addresses split into 省 / 市 / 县 / 乡镇 / 村街路 / 门牌号.

:class:`PatientRecord` holds a patient's identifiers as :class:`hie.hl7v3.II` (root: the
assigning authority, extension: the id) and its demographics in the patient index's dictionary
vocabulary (the keys HL7 v2 PID fills: ``names`` [{family, given, type}], ``birth_time``,
``sex`` M/F/O/U, ``addresses`` [{street, other, city, state, zip, country, type, county}],
``home_phones`` / ``business_phones`` [{number, use, equipment, email}], ``marital_status`` and
``ethnic_group`` {code, text, system}, ``death_time``, ``death_indicator``, ``multiple_birth``,
``birth_order``, ``birth_place``); an attribute sent with a nullFlavor maps to None (delete), one
not sent is absent (keep).  National R2 address parts: ``CNT`` is read as the county (县（区）,
as the national templates use it) and ``CPA`` too; ``STB`` / ``STR`` / ``BNR`` (乡镇街道, 村街路,
门牌号) form the street when no ``SAL`` (full street line) is sent, else ``other``.

:func:`parse_registration` reads a feed (add / revise / merge, IHE or national);
:func:`build_registration` writes one, and :func:`build_update_notification` is the ITI-46
PRPA_IN201302UV02 of a person.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from lxml import etree

from hie.hl7v3 import (H, II, Coded, V3Error, V3Message, add_coded, add_ii, build_control_act,
                       build_transmission, child, children, is_null, new_id, read_coded,
                       read_id_list, read_iis, read_text)

RESIDENT_ID_ROOT = "2.16.156.10011.1.3"           # 居民身份证号 (GB 11643)
GENDER_SYSTEM_GB = "2.16.156.10011.2.3.3.4"       # GB/T 2261.1 生理性别代码
GENDER_SYSTEM_HL7 = "2.16.840.1.113883.5.1"       # HL7 AdministrativeGender

FEEDS = {  # interaction -> trigger event of the control act
    "PRPA_IN201301UV02": "PRPA_TE201301UV02",   # Patient Registry Record Added
    "PRPA_IN201302UV02": "PRPA_TE201302UV02",   # Patient Registry Record Revised
    "PRPA_IN201304UV02": "PRPA_TE201304UV02",   # Patient Registry Duplicates Resolved
    "PRPA_IN201311UV02": "PRPA_TE201311UV02",   # national: Patient Registry Add Request
    "PRPA_IN201314UV02": "PRPA_TE201314UV02",   # national: Patient Registry Revise Request
}
MERGE = "PRPA_IN201304UV02"
REQUESTS = ("PRPA_IN201311UV02", "PRPA_IN201314UV02")  # registrationRequest (moodCode RQO)

_SEX_IN = {"M": "M", "F": "F", "UN": "O", "O": "O", "U": "U",
           "1": "M", "2": "F", "0": "U", "9": "O"}
_SEX_OUT_HL7 = {"M": "M", "F": "F", "O": "UN"}
_SEX_OUT_GB = {"M": ("1", "男性"), "F": ("2", "女性"), "U": ("0", "未知的性别"),
               "O": ("9", "未说明的性别")}
_ADDR_USE_IN = {"H": "H", "HP": "H", "HV": "H", "WP": "B", "TMP": "C", "PST": "M"}
_ADDR_USE_OUT = {"H": "H", "B": "WP", "C": "TMP", "M": "PST"}
_R1_ADDR = {"streetAddressLine": "SAL", "city": "CTY", "state": "STA", "postalCode": "ZIP",
            "country": "CNT_COUNTRY", "county": "CPA", "streetNameBase": "STB",
            "streetName": "STR", "houseNumber": "BNR", "additionalLocator": "ADL"}


@dataclass
class PatientRecord:
    """A patient as an HL7 v3 Patient: ``ids`` (Patient.id), ``person_ids`` (Person.id, e.g.
    the resident ID number), ``other_ids`` (asOtherIDs: id and scoping organization), the
    demographics in the index vocabulary, and the XPath of each identifier as read."""

    ids: list[II] = field(default_factory=list)
    person_ids: list[II] = field(default_factory=list)
    other_ids: list[tuple[II, II | None]] = field(default_factory=list)
    demographics: dict[str, Any] = field(default_factory=dict)
    locations: dict[II, str] = field(default_factory=dict)
    provider_organization: II | None = None

    def identifiers(self) -> list[II]:
        """Every identifier of the patient, Patient.id first, without repetition."""
        out: list[II] = []
        for ii in list(self.ids) + list(self.person_ids) + [o for o, _ in self.other_ids]:
            if ii not in out:
                out.append(ii)
        return out


# ============================================================================================
# reading
# ============================================================================================

def _join(parts: Sequence[str]) -> str:
    parts = [p for p in parts if p]
    if not parts:
        return ""
    return "".join(parts) if any(_cjk(p) for p in parts) else " ".join(parts)


def _cjk(text: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text)


def _compact(d: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in d.items() if v}


def read_name(el: etree._Element) -> dict[str, str]:
    """{family, given, type} of a PN (R1 parts, whole text, or R2 item/part); a whole name
    without parts comes in ``family`` alone (the index splits a Chinese one)."""
    use = (el.get("use") or "").split(" ")[0].upper()
    items = el.findall(H + "item") or [el]
    item = items[0]
    use = use or (item.get("use") or "").split(" ")[0].upper()
    family, given, whole = [], [], []
    parts = item.findall(H + "part")
    if parts:
        for p in parts:
            kind = (p.get("type") or "").upper()
            text = read_text(p)
            (family if kind == "FAM" else given if kind == "GIV" else whole).append(text)
    else:
        family = [read_text(x) for x in item.findall(H + "family")]
        given = [read_text(x) for x in item.findall(H + "given")]
        if not family and not given:
            whole = [(item.text or "").strip()]
    if family:      # untyped parts next to a family name are given names
        return _compact({"family": _join(family), "given": _join(given + whole),
                         "type": use[:3]})
    if given and not whole:
        return _compact({"given": _join(given), "type": use[:3]})
    return _compact({"family": _join(whole), "given": _join(given), "type": use[:3]})


def read_address(el: etree._Element) -> dict[str, str]:
    parts: dict[str, list[str]] = {}
    items = el.findall(H + "item") or [el]
    item = items[0]
    r2 = item.findall(H + "part")
    if r2:
        for p in r2:
            kind = (p.get("type") or "SAL").upper()
            kind = "CPA" if kind == "CNT" else kind   # national: CNT is 县（区）
            parts.setdefault(kind, []).append(read_text(p))
    else:
        for sub in item:
            if not isinstance(sub.tag, str) or not sub.tag.startswith(H):
                continue
            kind = _R1_ADDR.get(sub.tag[len(H):])
            if kind:
                parts.setdefault(kind, []).append(read_text(sub))
        if not parts and (item.text or "").strip():
            parts["SAL"] = [item.text.strip()]
    get = lambda k: _join(parts.get(k, []))  # noqa: E731
    detail = _join([get("STB"), get("STR"), get("BNR")])
    use = (el.get("use") or item.get("use") or "").split(" ")[0].upper()
    return _compact({"street": get("SAL") or detail,
                     "other": get("ADL") or (detail if get("SAL") else ""),
                     "city": get("CTY"), "state": get("STA"), "zip": get("ZIP"),
                     "country": get("CNT_COUNTRY"), "county": get("CPA"),
                     "type": _ADDR_USE_IN.get(use, use[:3])})


def read_telecom(el: etree._Element) -> tuple[str, dict[str, str]]:
    """(index key, {number, use, equipment, email}) of a TEL."""
    value = (el.get("value") or "").strip()
    use = (el.get("use") or "").split(" ")[0].upper()
    scheme, _, rest = value.partition(":")
    if not rest or scheme.lower() not in ("tel", "fax", "mailto", "http", "https"):
        scheme, rest = "tel", value
    scheme = scheme.lower()
    key = "business_phones" if use in ("WP", "WPN") else "home_phones"
    if scheme == "mailto":
        return key, {"use": "NET", "equipment": "Internet", "email": rest}
    equipment = "CP" if use == "MC" else "FX" if scheme == "fax" else "PH"
    return key, _compact({"number": rest, "use": "WPN" if key == "business_phones" else "PRN",
                          "equipment": equipment})


def _coded_dict(c: Coded) -> dict[str, str]:
    return _compact({"code": c.code, "text": c.display, "system": c.system})


def read_person(person: etree._Element, path: str, rec: PatientRecord) -> None:
    """Fill ``rec`` from a Person element (``patientPerson``) at XPath ``path``."""
    demo = rec.demographics
    for ii, loc in read_id_list(person, "id", path):
        rec.person_ids.append(ii)
        rec.locations.setdefault(ii, loc)
    names = [n for n in children(person, "name") if not is_null(n)]
    if names:
        demo["names"] = [x for x in (read_name(n) for n in names) if x.get("family")
                         or x.get("given")]
    elif children(person, "name"):
        demo["names"] = None
    phones: dict[str, list] = {}
    for t in children(person, "telecom"):
        for item in (t.findall(H + "item") or [t]):
            if is_null(item) or not item.get("value"):
                continue
            key, value = read_telecom(item)
            phones.setdefault(key, []).append(value)
    demo.update(phones)
    g = child(person, "administrativeGenderCode")
    if g is not None:
        c = read_coded(g)
        demo["sex"] = _SEX_IN.get(c.code.upper(), "U") if c else None
    b = child(person, "birthTime")
    if b is not None:
        value = (b.get("value") or "").strip() or read_text(b)
        demo["birth_time"] = "".join(ch for ch in value[:12] if ch.isdigit()) or None
    d = child(person, "deceasedInd")
    if d is not None and d.get("value"):
        demo["death_indicator"] = "Y" if d.get("value") == "true" else "N"
    d = child(person, "deceasedTime")
    if d is not None:
        demo["death_time"] = (d.get("value") or "")[:14] or None
    m = child(person, "multipleBirthInd")
    if m is not None and m.get("value"):
        demo["multiple_birth"] = "Y" if m.get("value") == "true" else "N"
    m = child(person, "multipleBirthOrderNumber")
    if m is not None and m.get("value"):
        demo["birth_order"] = m.get("value")
    addrs = [a for a in children(person, "addr") if not is_null(a)]
    if addrs:
        demo["addresses"] = [x for x in (read_address(a) for a in addrs) if x]
    elif children(person, "addr"):
        demo["addresses"] = None
    ms = child(person, "maritalStatusCode")
    if ms is not None:
        c = read_coded(ms)
        demo["marital_status"] = _coded_dict(c) if c else None
    groups = []
    for e in children(person, "ethnicGroupCode"):
        for item in (e.findall(H + "item") or [e]):
            c = read_coded(item)
            if c:
                groups.append(_coded_dict(c))
    if groups:
        demo["ethnic_group"] = groups
    for n, other in enumerate(children(person, "asOtherIDs"), start=1):
        scoping = read_iis(child(other, "scopingOrganization", "id"))
        for ii, loc in read_id_list(other, "id", f"{path}/asOtherIDs[{n}]"):
            rec.other_ids.append((ii, scoping[0] if scoping else None))
            rec.locations.setdefault(ii, loc)
    bp = child(person, "birthPlace", "addr")
    if bp is not None:
        a = read_address(bp)
        demo["birth_place"] = _join([a.get(k, "") for k in ("state", "city", "county",
                                                           "street")]) or None


def read_patient(patient: etree._Element, path: str) -> PatientRecord:
    rec = PatientRecord()
    for ii, loc in read_id_list(patient, "id", path):
        rec.ids.append(ii)
        rec.locations.setdefault(ii, loc)
    person = child(patient, "patientPerson")
    if person is not None:
        read_person(person, path + "/patientPerson", rec)
    org = read_iis(child(patient, "providerOrganization", "id"))
    rec.provider_organization = org[0] if org else None
    return rec


@dataclass
class Registration:
    """A patient identity feed read from an HL7 v3 message: add, revise or merge."""

    message: V3Message
    patient: PatientRecord
    prior: list[II] = field(default_factory=list)       # merge: the subsumed identities
    prior_locations: dict[II, str] = field(default_factory=dict)

    @property
    def interaction(self) -> str:
        return self.message.interaction

    @property
    def is_merge(self) -> bool:
        return self.interaction == MERGE


def parse_registration(msg: V3Message) -> Registration:
    """The feed of an ITI-44 / national registration message; raises :class:`V3Error` (AE, code
    101) naming the XPath of a missing part, or 102 for an identifier without root/extension."""
    if msg.interaction not in FEEDS:
        raise V3Error.invalid(f"{msg.interaction} is not a patient registration",
                              msg.path(), "201")
    cap = msg.control_act
    if cap is None:
        raise V3Error.missing("controlActProcess", msg.path("controlActProcess"))
    subject = child(cap, "subject")
    if subject is None:
        raise V3Error.missing("controlActProcess/subject", msg.path("controlActProcess",
                                                                    "subject"))
    reg_name = "registrationEvent"
    reg = child(subject, reg_name)
    if reg is None:
        reg_name = "registrationRequest"
        reg = child(subject, reg_name)
    if reg is None:
        raise V3Error.missing("subject/registrationEvent (or registrationRequest)",
                              msg.path("controlActProcess", "subject", "registrationEvent"))
    base = ("controlActProcess", "subject", reg_name)
    patient = child(reg, "subject1", "patient")
    if patient is None:
        raise V3Error.missing("subject1/patient", msg.path(*base, "subject1", "patient"))
    ppath = msg.path(*base, "subject1", "patient")
    rec = read_patient(patient, ppath)
    if not rec.ids:
        raise V3Error.missing("the patient identifier (patient/id)", ppath + "/id")
    for ii in rec.identifiers():
        if not ii.root or not ii.extension:
            raise V3Error.invalid(f"patient identifier {ii} needs a root (assigning authority)"
                                  " and an extension (the id)", rec.locations.get(ii, ppath))
    out = Registration(msg, rec)
    msg.national = msg.national or reg_name == "registrationRequest" or \
        msg.interaction in REQUESTS
    if msg.interaction == MERGE:
        prior_path = msg.path(*base, "replacementOf", "priorRegistration", "subject1",
                              "priorRegisteredRole", "id")
        rels = children(reg, "replacementOf")
        for r, rel in enumerate(rels, start=1):
            role = child(rel, "priorRegistration", "subject1", "priorRegisteredRole")
            for ii, loc in read_id_list(role, "id", msg.path(
                    *base, f"replacementOf[{r}]", "priorRegistration", "subject1",
                    "priorRegisteredRole")):
                if not ii.root or not ii.extension:
                    raise V3Error.invalid(f"prior identifier {ii} needs a root and an "
                                          "extension", loc)
                out.prior.append(ii)
                out.prior_locations[ii] = loc
        if not out.prior:
            raise V3Error.missing("the subsumed identity (replacementOf/priorRegistration/"
                                  "subject1/priorRegisteredRole/id)", prior_path)
    return out


# ============================================================================================
# writing
# ============================================================================================

def _add_text(parent: etree._Element, tag: str, text: str, r2: bool) -> None:
    if text:
        if r2:
            etree.SubElement(parent, H + "part", value=text,
                             **({"type": tag} if tag else {}))
        else:
            etree.SubElement(parent, H + tag).text = text


def add_name(parent: etree._Element, name: Mapping[str, str], r2: bool = False,
             whole: bool = True) -> None:
    """A PN; with ``whole`` a Chinese name with no given part is written whole (张三)."""
    el = etree.SubElement(parent, H + "name")
    use = name.get("type") or ""
    target = etree.SubElement(el, H + "item") if r2 else el
    if use:
        target.set("use", use)
    family, given = name.get("family", ""), name.get("given", "")
    if r2:
        _add_text(target, "FAM" if given else "", family, True)
        _add_text(target, "GIV", given, True)
    elif whole and family and not given and _cjk(family):
        target.text = family            # a whole Chinese name
    else:
        _add_text(target, "family", family, False)
        _add_text(target, "given", given, False)


def add_address(parent: etree._Element, a: Mapping[str, str], tag: str = "addr",
                r2: bool = False) -> None:
    el = etree.SubElement(parent, H + tag)
    use = _ADDR_USE_OUT.get(a.get("type", ""), a.get("type", ""))
    target = etree.SubElement(el, H + "item") if r2 else el
    if use:
        target.set("use", use)
    order = (("street", "streetAddressLine", "SAL"), ("other", "additionalLocator", "ADL"),
             ("county", "county", "CNT"), ("city", "city", "CTY"), ("state", "state", "STA"),
             ("zip", "postalCode", "ZIP"), ("country", "country", ""))
    for key, r1_tag, r2_type in order:
        value = a.get(key, "")
        if not value or (r2 and not r2_type):
            continue
        if r2:
            etree.SubElement(target, H + "part", type=r2_type, value=value)
        else:
            etree.SubElement(target, H + r1_tag).text = value


def _telecoms(demo: Mapping[str, Any], national: bool) -> list[tuple[str, str]]:
    out = []
    for key in ("home_phones", "business_phones"):
        for p in demo.get(key) or []:
            if p.get("email"):
                out.append((f"mailto:{p['email']}", "H" if national else "HP"))
            elif p.get("number"):
                use = "WP" if key == "business_phones" else \
                    "MC" if p.get("equipment") == "CP" else ("H" if national else "HP")
                out.append((p["number"] if national else f"tel:{p['number']}", use))
    return out


def add_person(patient: etree._Element, rec: PatientRecord, national: bool = False,
               r2: bool = False) -> etree._Element:
    """``patientPerson`` in the schema's element order (PRPA_MT201301UV02.Person)."""
    demo = rec.demographics
    person = etree.SubElement(patient, H + "patientPerson", classCode="PSN",
                              determinerCode="INSTANCE")
    if rec.person_ids:
        add_ii(person, "id", rec.person_ids, r2=r2)
    names = [n for n in demo.get("names") or [] if n.get("family") or n.get("given")]
    for n in names:
        add_name(person, n, r2)
    if not names:
        etree.SubElement(person, H + "name", nullFlavor="NA")
    tels = _telecoms(demo, national)
    if tels and r2:
        holder = etree.SubElement(person, H + "telecom")
        for value, use in tels:
            etree.SubElement(holder, H + "item", value=value, use=use)
    else:
        for value, use in tels:
            etree.SubElement(person, H + "telecom", value=value, use=use)
    sex = demo.get("sex") or ""
    if national and sex in _SEX_OUT_GB:
        code, text = _SEX_OUT_GB[sex]
        add_coded(person, "administrativeGenderCode", Coded(code, GENDER_SYSTEM_GB, text), r2)
    elif sex in _SEX_OUT_HL7:
        etree.SubElement(person, H + "administrativeGenderCode", code=_SEX_OUT_HL7[sex],
                         codeSystem=GENDER_SYSTEM_HL7)
    if demo.get("birth_time"):
        etree.SubElement(person, H + "birthTime", value=demo["birth_time"])
    if demo.get("death_indicator") in ("Y", "N"):
        etree.SubElement(person, H + "deceasedInd",
                         value="true" if demo["death_indicator"] == "Y" else "false")
    if demo.get("death_time"):
        etree.SubElement(person, H + "deceasedTime", value=demo["death_time"])
    if demo.get("multiple_birth") in ("Y", "N"):
        etree.SubElement(person, H + "multipleBirthInd",
                         value="true" if demo["multiple_birth"] == "Y" else "false")
    if demo.get("birth_order"):
        etree.SubElement(person, H + "multipleBirthOrderNumber", value=str(demo["birth_order"]))
    for a in demo.get("addresses") or []:
        add_address(person, a, r2=r2)
    ms = demo.get("marital_status")
    if ms and ms.get("code"):
        add_coded(person, "maritalStatusCode",
                  Coded(ms["code"], ms.get("system", ""), ms.get("text", "")), r2)
    for e in demo.get("ethnic_group") or []:
        if e.get("code"):
            add_coded(person, "ethnicGroupCode",
                      Coded(e["code"], e.get("system", ""), e.get("text", "")), r2)
    for ii, scoping in rec.other_ids:
        other = etree.SubElement(person, H + "asOtherIDs", classCode="PAT")
        add_ii(other, "id", ii, r2=r2)
        org = etree.SubElement(other, H + "scopingOrganization", classCode="ORG",
                               determinerCode="INSTANCE")
        add_ii(org, "id", scoping or II(ii.root), r2=r2)
    if demo.get("birth_place"):
        bp = etree.SubElement(person, H + "birthPlace")
        add_address(bp, {"street": demo["birth_place"]}, r2=r2)
    return person


def add_patient(parent: etree._Element, rec: PatientRecord, national: bool = False,
                r2: bool = False) -> etree._Element:
    """``subject1/patient`` (Patient.id, statusCode active, patientPerson,
    providerOrganization)."""
    subject1 = etree.SubElement(parent, H + "subject1", typeCode="SBJ")
    patient = etree.SubElement(subject1, H + "patient", classCode="PAT")
    add_ii(patient, "id", rec.ids, r2=r2)
    etree.SubElement(patient, H + "statusCode", code="active")
    add_person(patient, rec, national, r2)
    if rec.provider_organization is not None:
        org = etree.SubElement(patient, H + "providerOrganization", classCode="ORG",
                               determinerCode="INSTANCE")
        add_ii(org, "id", rec.provider_organization, r2=r2)
        etree.SubElement(org, H + "contactParty", classCode="CON")
    return patient


def build_registration(interaction: str, rec: PatientRecord, prior: Sequence[II] = (), *,
                       sender: "II | Sequence[II]", receiver: "II | Sequence[II]",
                       custodian: II | None = None, message_id: II | None = None,
                       now: dt.datetime | None = None, processing_code: str = "P",
                       r2: bool = False) -> etree._Element:
    """A complete feed message: PRPA_IN201301/201302/201304UV02 (IHE, registrationEvent) or the
    national PRPA_IN201311/201314UV02 (registrationRequest, national codes)."""
    if interaction not in FEEDS:
        raise ValueError(f"not a registration interaction: {interaction}")
    national = interaction in REQUESTS
    root = build_transmission(interaction, message_id=message_id or new_id(),
                              creation_time=now, sender=sender, receiver=receiver,
                              processing_code=processing_code, accept_ack="AL", r2=r2)
    cap = build_control_act(root, FEEDS[interaction])
    reg = add_registration(cap, rec, custodian, national, r2, request=national)
    if prior:
        rel = etree.SubElement(reg, H + "replacementOf", typeCode="RPLC")
        pr = etree.SubElement(rel, H + "priorRegistration", classCode="REG", moodCode="EVN")
        etree.SubElement(pr, H + "statusCode", code="obsolete")
        s1 = etree.SubElement(pr, H + "subject1", typeCode="SBJ")
        role = etree.SubElement(s1, H + "priorRegisteredRole", classCode="PAT")
        add_ii(role, "id", list(prior), r2=r2)
    return root


def add_registration(cap: etree._Element, rec: PatientRecord, custodian: II | None,
                     national: bool = False, r2: bool = False, request: bool = False
                     ) -> etree._Element:
    """``subject/registrationEvent`` (or, for a national request, ``registrationRequest``) with
    the patient and its custodian, under the control act ``cap``; returns the registration."""
    subject = etree.SubElement(cap, H + "subject", typeCode="SUBJ")
    if request:
        reg = etree.SubElement(subject, H + "registrationRequest", classCode="REG",
                               moodCode="RQO")
    else:
        reg = etree.SubElement(subject, H + "registrationEvent", classCode="REG",
                               moodCode="EVN")
        etree.SubElement(reg, H + "id", nullFlavor="NA")
    etree.SubElement(reg, H + "statusCode", code="active")
    add_patient(reg, rec, national, r2)
    add_custodian(reg, custodian, r2)
    return reg


def add_custodian(reg: etree._Element, custodian: II | None, r2: bool = False) -> None:
    """``custodian/assignedEntity/id``: the assigning authority answering for the record."""
    if custodian is not None:
        cst = etree.SubElement(reg, H + "custodian", typeCode="CST")
        ae = etree.SubElement(cst, H + "assignedEntity", classCode="ASSIGNED")
        add_ii(ae, "id", custodian, r2=r2)


def build_update_notification(identifiers: Sequence[II],
                              demographics: Mapping[str, Any] | None = None, *,
                              sender: "II | Sequence[II]", receiver: "II | Sequence[II]",
                              custodian: II | None = None, message_id: II | None = None,
                              now: dt.datetime | None = None) -> etree._Element:
    """ITI-46 PIXV3 Update Notification (ITI TF-2b 3.46.4.1): PRPA_IN201302UV02 whose
    Patient.id lists ``identifiers`` (the person's identifiers in the consumer's domains of
    interest), with ``demographics`` (index vocabulary) or, without them, a Person name with
    nullFlavor NA.  ``sender`` / ``receiver``: the PIX Manager's and the consumer's device
    ids; ``custodian``: the assigning authority of the PIX Manager."""
    if not identifiers:
        raise ValueError("an update notification needs at least one identifier")
    rec = PatientRecord(ids=list(identifiers), demographics=dict(demographics or {}))
    return build_registration("PRPA_IN201302UV02", rec, sender=sender, receiver=receiver,
                              custodian=custodian, message_id=message_id, now=now)


__all__ = ["RESIDENT_ID_ROOT", "GENDER_SYSTEM_GB", "GENDER_SYSTEM_HL7", "FEEDS", "MERGE",
           "REQUESTS", "PatientRecord", "Registration", "parse_registration", "read_patient",
           "read_person", "read_name", "read_address", "read_telecom", "add_patient",
           "add_person", "add_name", "add_address", "build_registration",
           "add_custodian", "add_registration", "build_update_notification"]

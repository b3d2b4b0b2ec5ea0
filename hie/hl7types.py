"""HL7 v2.5 data types as XDS metadata uses them (ITI TF-3 Table 4.2.3.1.7-2 "Data Types"):
CX (patient identifiers), CXi (referenceIdList), HD, XCN (persons), XON (organizations), XTN
(telecommunications), DTM (date/time), plus the OID and ``urn:uuid:`` syntaxes of ITI TF-3 4.2.3.1.

Every ``parse_*`` function takes the text of one slot value / external identifier and returns a
typed, frozen value or raises :class:`ValueError` with a message fit for a RegistryError
codeContext.  Encoding characters are the XDS ones: ``^`` components, ``&`` subcomponents (ITI
TF-3 4.2.3.1.7: no escape sequences, no repetition separator inside a value).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

# ITI TF-3 Table 4.2.3.1.7-2: an OID is dotted decimal (digits and dots, no leading zeros,
# at least two arcs).  The first arc is not limited to 0-2 (ITU-T X.660's roots): the TF does
# not ask for it and the profiles' own test data does not obey it (the NIST toolkit's sourceId
# 129.6.58.92.1.1), so a registry refusing it refuses conformant traffic.
OID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
UUID_URN_RE = re.compile(
    r"^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
OID_MAX = 64        # ITI TF-3 4.2.3.1.6: OIDs used as XDS uniqueIds are at most 64 characters
UNIQUE_ID_MAX = 128  # DocumentEntry.uniqueId as root^extension (ITI TF-3 4.2.3.2.26)
EXTENSION_MAX = 16


# --------------------------------------------------------------------------------------------
# OIDs, UUIDs, uniqueIds
# --------------------------------------------------------------------------------------------

def is_oid(text: str) -> bool:
    return bool(text) and len(text) <= OID_MAX and OID_RE.match(text) is not None


def parse_oid(text: str) -> str:
    """An ISO OID (dotted decimal, no leading zeros, at most 64 characters)."""
    if text is None or not OID_RE.match(text):
        raise ValueError(f"not an OID: {text!r}")
    if len(text) > OID_MAX:
        raise ValueError(f"OID longer than {OID_MAX} characters: {text!r}")
    return text


def is_uuid_urn(text: str | None) -> bool:
    return bool(text) and UUID_URN_RE.match(text) is not None  # type: ignore[arg-type]


def parse_uuid_urn(text: str) -> str:
    """A ``urn:uuid:`` (RFC 4122) identifier, as used for entryUUIDs; returned lower-case."""
    if text is None or not UUID_URN_RE.match(text):
        raise ValueError(f"not a urn:uuid: identifier: {text!r}")
    return text.lower()


def parse_oid_urn(text: str) -> str:
    """A ``urn:oid:`` URN (homeCommunityId, ITI TF-3 4.2.3.2.13 / ITI TF-2b 3.38)."""
    if not text or not text.startswith("urn:oid:") or not OID_RE.match(text[8:]):
        raise ValueError(f"not a urn:oid: URN: {text!r}")
    return text


def parse_document_unique_id(text: str) -> str:
    """DocumentEntry.uniqueId: an OID, or ``OID^extension`` (root ≤ 64, extension ≤ 16, total ≤
    128, ITI TF-3 4.2.3.2.26).  Other formats defined by a formatCode's content profile are not
    second-guessed beyond the length: anything without '^' that is not an OID is rejected."""
    if not text:
        raise ValueError("empty uniqueId")
    if len(text) > UNIQUE_ID_MAX:
        raise ValueError(f"uniqueId longer than {UNIQUE_ID_MAX} characters")
    root, sep, ext = text.partition("^")
    parse_oid(root)
    if sep:
        if not ext or len(ext) > EXTENSION_MAX or "^" in ext:
            raise ValueError(f"uniqueId extension must be 1..{EXTENSION_MAX} characters: {text!r}")
    return text


# --------------------------------------------------------------------------------------------
# HD and CX
# --------------------------------------------------------------------------------------------

def _components(text: str, n: int, what: str) -> list[str]:
    if text is None:
        raise ValueError(f"{what} is missing")
    if "~" in text or "\\" in text:
        raise ValueError(f"{what} must not contain repetition or escape characters: {text!r}")
    comps = text.split("^")
    if len(comps) > n:
        raise ValueError(f"{what} has more than {n} components: {text!r}")
    return comps + [""] * (n - len(comps))


@dataclass(frozen=True)
class HD:
    """Hierarchic designator: namespace id, universal id (OID) and its type (``ISO``)."""

    namespace_id: str = ""
    universal_id: str = ""
    universal_id_type: str = ""

    @classmethod
    def parse(cls, text: str) -> "HD":
        parts = text.split("&")
        if len(parts) > 3:
            raise ValueError(f"assigning authority has more than 3 subcomponents: {text!r}")
        parts += [""] * (3 - len(parts))
        return cls(*parts)

    @property
    def is_iso(self) -> bool:
        return self.universal_id_type == "ISO" and is_oid(self.universal_id)

    def __str__(self) -> str:
        s = f"{self.namespace_id}&{self.universal_id}&{self.universal_id_type}"
        return s.rstrip("&") if not (self.universal_id or self.universal_id_type) else s


@dataclass(frozen=True)
class CX:
    """Extended composite ID with check digit (HL7 v2.5 2.A.12)."""

    id: str
    check_digit: str = ""
    check_digit_scheme: str = ""
    assigning_authority: HD = HD()
    identifier_type_code: str = ""
    assigning_facility: str = ""

    @classmethod
    def parse(cls, text: str) -> "CX":
        """Any CX (no XDS restriction), e.g. from a PID-3 repetition."""
        c = _components(text, 10, "CX")
        if not c[0]:
            raise ValueError(f"CX.1 (ID) is empty: {text!r}")
        return cls(c[0], c[1], c[2], HD.parse(c[3]), c[4], c[5])

    @property
    def authority_oid(self) -> str:
        return self.assigning_authority.universal_id

    def __str__(self) -> str:
        comps = [self.id, self.check_digit, self.check_digit_scheme,
                 str(self.assigning_authority), self.identifier_type_code,
                 self.assigning_facility]
        while comps and not comps[-1]:
            comps.pop()
        return "^".join(comps)

    @classmethod
    def of(cls, id: str, authority_oid: str) -> "CX":
        return cls(id, assigning_authority=HD("", authority_oid, "ISO"))


def parse_patient_id(text: str) -> CX:
    """An XDS patient identifier (patientId, sourcePatientId, ITI TF-3 Table 4.2.3.1.7-2 CX):
    ``id^^^&OID&ISO`` — CX.1 and CX.4 only, CX.4 with universal id (OID), type ISO and no
    namespace id; no other component may be present."""
    if text is None or not text.strip():
        raise ValueError("patient ID is empty")
    if text != text.strip():
        raise ValueError(f"patient ID has leading or trailing blanks: {text!r}")
    c = _components(text, 10, "patient ID")
    if not c[0]:
        raise ValueError(f"patient ID: CX.1 (ID) is empty: {text!r}")
    if "&" in c[0]:
        raise ValueError(f"patient ID: CX.1 must not contain '&': {text!r}")
    extra = [i + 1 for i, v in enumerate(c) if v and i not in (0, 3)]
    if extra:
        raise ValueError(f"patient ID: only CX.1 and CX.4 are allowed, found CX.{extra[0]}: "
                         f"{text!r}")
    if not c[3]:
        raise ValueError(f"patient ID: CX.4 (assigning authority) is missing: {text!r}")
    hd = HD.parse(c[3])
    if hd.namespace_id:
        raise ValueError(f"patient ID: CX.4.1 (namespace) must be empty: {text!r}")
    if hd.universal_id_type != "ISO":
        raise ValueError(f"patient ID: CX.4.3 must be 'ISO': {text!r}")
    if not is_oid(hd.universal_id):
        raise ValueError(f"patient ID: CX.4.2 must be an OID: {text!r}")
    return CX(c[0], assigning_authority=hd)


REFERENCE_ID_TYPES = frozenset({
    "urn:ihe:iti:xds:2013:uniqueId", "urn:ihe:iti:xds:2013:accession",
    "urn:ihe:iti:xds:2013:referral", "urn:ihe:iti:xds:2013:order",
    "urn:ihe:iti:xdw:2013:workflowInstanceId", "urn:ihe:iti:xds:2015:encounterId",
})


@dataclass(frozen=True)
class CXi:
    """A referenceIdList value (ITI TF-3 Table 4.2.3.1.7-2 CXi): ID, assigning authority,
    identifier type code and, for cross-community use, the homeCommunityId in CXi.6."""

    id: str
    assigning_authority: HD = HD()
    type_code: str = ""
    home_community_id: str = ""

    def __str__(self) -> str:
        comps = [self.id, "", "", str(self.assigning_authority) if self.assigning_authority != HD()
                 else "", self.type_code, self.home_community_id]
        while comps and not comps[-1]:
            comps.pop()
        return "^".join(comps)


def parse_cxi(text: str) -> CXi:
    """CXi.1 (ID) and CXi.5 (identifier type code) are required; CXi.4, when present, is an HD
    whose universal id, if given, is an OID of type ISO; CXi.2/3 and 7+ must be empty; CXi.6
    (assigning facility: the homeCommunityId of the referenced object) is kept as given."""
    c = _components(text, 10, "CXi")
    if not c[0]:
        raise ValueError(f"referenceId: CXi.1 (ID) is empty: {text!r}")
    if c[1] or c[2] or any(c[6:]):
        raise ValueError(f"referenceId: only CXi.1, 4, 5, 6 are allowed: {text!r}")
    if not c[4]:
        raise ValueError(f"referenceId: CXi.5 (identifier type code) is required: {text!r}")
    hd = HD.parse(c[3]) if c[3] else HD()
    if hd.universal_id or hd.universal_id_type:
        if not hd.is_iso:
            raise ValueError(f"referenceId: CXi.4 must be '&OID&ISO': {text!r}")
    elif c[4] == "urn:ihe:iti:xds:2013:uniqueId" and not c[3]:
        raise ValueError(f"referenceId: CXi.4 is required for uniqueId references: {text!r}")
    return CXi(c[0], hd, c[4], c[5])


# --------------------------------------------------------------------------------------------
# XCN, XON, XTN
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class XCN:
    """A person (authorPerson, legalAuthenticator): ``id^family^given^middle^suffix^prefix^^^
    &OID&ISO``.  Either an ID or a family name is present (ITI TF-3 Table 4.2.3.1.7-2)."""

    id: str = ""
    family: str = ""
    given: str = ""
    middle: str = ""
    suffix: str = ""
    prefix: str = ""
    assigning_authority: HD = HD()

    @property
    def display(self) -> str:
        """The name as a Chinese reader writes it: family name then given name, no space."""
        return f"{self.family}{self.given}" if self.family or self.given else self.id


def parse_xcn(text: str) -> XCN:
    c = _components(text, 23, "XCN")
    family = c[1].split("&")[0]
    if not c[0] and not family:
        raise ValueError(f"XCN: either XCN.1 (ID) or XCN.2 (family name) is required: {text!r}")
    hd = HD.parse(c[8]) if c[8] else HD()
    if hd.universal_id or hd.universal_id_type:
        if not hd.is_iso:
            raise ValueError(f"XCN.9 (assigning authority) must be '&OID&ISO': {text!r}")
    return XCN(c[0], family, c[2], c[3], c[4], c[5], hd)


@dataclass(frozen=True)
class XON:
    """An organization (authorInstitution): ``name^^^^^&OID&ISO^^^^orgId`` or ``name^^^^^^^^^OID``.
    """

    name: str
    assigning_authority: HD = HD()
    organization_id: str = ""


def parse_xon(text: str) -> XON:
    """XON.1 is required; only XON.1, XON.6 (assigning authority, ``&OID&ISO``) and XON.10 may be
    present; when XON.10 is not itself an OID, XON.6 is required (ITI TF-3 Table 4.2.3.1.7-2)."""
    c = _components(text, 10, "XON")
    if not c[0]:
        raise ValueError(f"XON.1 (organization name) is required: {text!r}")
    extra = [i + 1 for i in (1, 2, 3, 4, 6, 7, 8) if c[i]]
    if extra:
        raise ValueError(f"XON: only XON.1, XON.6 and XON.10 are allowed, found XON.{extra[0]}: "
                         f"{text!r}")
    hd = HD.parse(c[5]) if c[5] else HD()
    if c[5] and not hd.is_iso:
        raise ValueError(f"XON.6 (assigning authority) must be '&OID&ISO': {text!r}")
    if c[9] and not is_oid(c[9]) and not c[5]:
        raise ValueError(f"XON.6 is required when XON.10 is not an OID: {text!r}")
    return XON(c[0], hd, c[9])


@dataclass(frozen=True)
class XTN:
    """A telecommunication address (authorTelecommunication, intendedRecipient)."""

    use_code: str = ""
    equipment_type: str = ""
    email: str = ""
    country_code: str = ""
    area_code: str = ""
    local_number: str = ""
    extension: str = ""
    unformatted: str = ""


def parse_xtn(text: str) -> XTN:
    """XTN.3 (equipment type) is required; ``Internet`` / ``X.400`` need XTN.4 (address),
    telephone types need XTN.7 (local number) or XTN.12 (unformatted number)."""
    c = _components(text, 12, "XTN")
    if c[0]:
        raise ValueError(f"XTN.1 is deprecated and must be empty (use XTN.4-XTN.12): {text!r}")
    if not c[2]:
        raise ValueError(f"XTN.3 (telecommunication equipment type) is required: {text!r}")
    if c[2] in ("Internet", "X.400"):
        if not c[3]:
            raise ValueError(f"XTN.4 (communication address) is required for {c[2]}: {text!r}")
        if c[2] == "Internet" and "@" not in c[3]:
            raise ValueError(f"XTN.4 is not an e-mail address: {text!r}")
    elif not c[6] and not c[11]:
        raise ValueError(f"XTN.7 (local number) or XTN.12 is required for {c[2]}: {text!r}")
    return XTN(c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[11])


# --------------------------------------------------------------------------------------------
# DTM
# --------------------------------------------------------------------------------------------

DTM_LENGTHS = (4, 6, 8, 10, 12, 14)


@dataclass(frozen=True, order=True)
class DTM:
    """An XDS date/time: ``YYYY[MM[DD[hh[mm[ss]]]]]`` in UTC, no fractions, no time zone
    (ITI TF-3 Table 4.2.3.1.7-2 DTM).  ``text`` keeps the given precision."""

    text: str

    @property
    def precision(self) -> int:
        return len(self.text)

    def lower(self) -> dt.datetime:
        """The first instant the value covers (for range comparisons)."""
        t = self.text + "0101000000"[len(self.text) - 4:] if len(self.text) < 14 else self.text
        return dt.datetime.strptime(t, "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)

    @classmethod
    def from_datetime(cls, value: dt.datetime) -> "DTM":
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return cls(value.strftime("%Y%m%d%H%M%S"))

    def __str__(self) -> str:
        return self.text


def parse_dtm(text: str) -> DTM:
    if text is None or not text.isdigit() or not text.isascii():
        raise ValueError(f"DTM must be digits only (YYYY[MM[DD[hh[mm[ss]]]]], UTC): {text!r}")
    if len(text) not in DTM_LENGTHS:
        raise ValueError(f"DTM must have 4, 6, 8, 10, 12 or 14 digits: {text!r}")
    y = int(text[:4])
    mo = int(text[4:6]) if len(text) >= 6 else 1
    d = int(text[6:8]) if len(text) >= 8 else 1
    h = int(text[8:10]) if len(text) >= 10 else 0
    mi = int(text[10:12]) if len(text) >= 12 else 0
    s = int(text[12:14]) if len(text) >= 14 else 0
    try:
        dt.datetime(y, mo, d, h, mi, s)
    except ValueError as e:
        raise ValueError(f"DTM is not a valid date/time ({e}): {text!r}") from None
    if y < 1000:
        raise ValueError(f"DTM year out of range: {text!r}")
    return DTM(text)

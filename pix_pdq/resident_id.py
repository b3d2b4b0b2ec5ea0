"""Citizen identification numbers of the People's Republic of China (居民身份证号码), GB 11643-1999
"Citizen identification number", and the legacy 15-digit numbers issued before it.

An 18-character number is: a 6-digit address code (GB/T 2260 administrative division of the
place of first registration), an 8-digit birth date (YYYYMMDD, GB/T 7408), a 3-digit sequence
code (odd for men, even for women) and one check character computed with ISO 7064:1983
MOD 11-2 over the first 17 digits (GB 11643-1999 §5-§8).  A 15-digit number (issued until 1999)
has a 6-digit birth date YYMMDD in the 20th century and no check character; GB 11643-1999
Appendix A upgrades it by inserting ``19`` before the year and appending the check character.

:func:`parse` never raises on bad input: the patient index keeps whatever a hospital sent as
data, but only a :attr:`ResidentId.valid` number is trusted as a matching key.  The national
resident-ID identity domain is :data:`RESIDENT_ID_OID`.
"""
from __future__ import annotations

import datetime as dt
import functools
import unicodedata
from dataclasses import dataclass

# the assigning authority of the national resident ID number (居民身份证号码)
RESIDENT_ID_OID = "2.16.156.10011.1.3"

# ISO 7064 MOD 11-2 weights 2^(18-i) mod 11 for positions i = 1..17, and the check characters
# for the weighted sum mod 11 = 0..10 (GB 11643-1999 §8.2)
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


def check_char(body17: str) -> str:
    """The MOD 11-2 check character of 17 digits."""
    if len(body17) != 17 or not body17.isascii() or not body17.isdigit():
        raise ValueError("a resident ID body is 17 digits")
    return CHECK_CHARS[sum(int(c) * w for c, w in zip(body17, WEIGHTS)) % 11]


def upgrade15(number15: str) -> str:
    """The 18-character number of a legacy 15-digit one (GB 11643-1999 Appendix A)."""
    if len(number15) != 15 or not number15.isascii() or not number15.isdigit():
        raise ValueError("a legacy resident ID is 15 digits")
    body = number15[:6] + "19" + number15[6:]
    return body + check_char(body)


@dataclass(frozen=True)
class ResidentId:
    """What :func:`parse` read from a resident ID number as sent.

    ``raw``: the value as received; ``number``: normalized (half-width, upper-case X; the
    18-character form for a legacy number); ``valid``: 18 characters with a correct check
    character and a real birth date (or a well-formed legacy number); ``legacy``: it came with
    15 digits; ``birth_date`` (YYYYMMDD), ``sex`` (``M``/``F``) and ``region`` (the 6-digit
    address code) are read only from a valid number."""

    raw: str
    number: str
    valid: bool
    legacy: bool = False
    birth_date: str | None = None
    sex: str | None = None
    region: str | None = None
    problem: str = ""
    checked: bool = True    # validated by its check character (False: another scheme's number)

    @property
    def key(self) -> str | None:
        """The number to match on, None when it cannot be trusted."""
        return self.number if self.valid else None


def normalize(value: str) -> str:
    """Full-width digits and letters to ASCII (NFKC), blanks and separators removed, ``x``
    upper-cased: ``１１０１０５…ｘ`` and ``110105 1990…-x`` both become ``110105…X``."""
    text = unicodedata.normalize("NFKC", value or "")
    return "".join(c for c in text if c.isalnum()).upper()


def _birth(yyyymmdd: str) -> bool:
    try:
        day = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return dt.date(1880, 1, 1) <= day <= dt.date.today()


def parse(value: str) -> ResidentId:
    """Read a resident ID number; see :class:`ResidentId`."""
    raw = value if isinstance(value, str) else ""
    return _parse(raw, dt.date.today())   # a birth date is valid from its day on


@functools.lru_cache(maxsize=16384)   # a feed reads its numbers several times
def _parse(raw: str, _today: dt.date) -> ResidentId:
    number = normalize(raw)
    if len(number) == 15 and number.isdigit():
        if not _birth("19" + number[6:12]):
            return ResidentId(raw, number, False, True, problem="no such birth date")
        full = upgrade15(number)
        return ResidentId(raw, full, True, True, "19" + number[6:12],
                          "M" if int(number[14]) % 2 else "F", number[:6])
    if len(number) != 18:
        return ResidentId(raw, number, False, problem=f"{len(number)} characters, not 18")
    body, last = number[:17], number[17]
    if not body.isdigit() or not (last.isdigit() or last == "X"):
        return ResidentId(raw, number, False, problem="not 17 digits and a check character")
    if check_char(body) != last:
        return ResidentId(raw, number, False, problem="wrong check character")
    if not _birth(body[6:14]):
        return ResidentId(raw, number, False, problem="no such birth date")
    return ResidentId(raw, number, True, False, body[6:14], "M" if int(body[16]) % 2 else "F",
                      body[:6])


def foreign(value: str) -> ResidentId:
    """A national identifier of another scheme (a passport or social-security number): kept
    as sent, normalized, taken as valid but not checked."""
    number = normalize(value)
    return ResidentId(value, number, bool(number), checked=False)


def make(body17: str) -> str:
    """An 18-character number from its first 17 digits (test data, examples)."""
    return body17 + check_char(body17)


__all__ = ["RESIDENT_ID_OID", "ResidentId", "check_char", "foreign", "make", "normalize", "parse",
           "upgrade15"]

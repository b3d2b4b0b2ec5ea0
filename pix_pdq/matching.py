"""Probabilistic record linkage of patient identities: Fellegi & Sunter, "A Theory for Record
Linkage", JASA 64 (1969), with m/u probabilities estimated by expectation-maximisation
(Winkler 1988, "Using the EM algorithm for weight computation in the Fellegi-Sunter model of
record linkage") and value-specific (frequency-based) agreement weights for names (Winkler 1989,
"Frequency-based matching in Fellegi-Sunter model of record linkage").

Sans-IO: the patient index gives two :class:`Demographics`, :func:`compare` turns them into a
comparison vector (one agreement *level* per field, or ``missing``), and :class:`Model` weighs
the vector: each field contributes log2(m/u) of its level, where m = P(level | same person) and
u = P(level | different persons); a missing field contributes nothing.  Above
:attr:`Model.upper` the two identities are linked, between :attr:`Model.lower` and
:attr:`Model.upper` the pair goes to human review, below it they are different persons.

Fields and levels (strongest agreement first; the last level is disagreement):

- ``name``: exact (after :func:`pix_pdq.names.normalize`: variant and traditional characters,
  full-width forms, blanks folded), homophone (same length, every character sharing a reading:
  张/章), swapped (family and given exchanged), similar (Jaro-Winkler of the pinyin >= 0.92:
  typing errors), different;
- ``sex``: exact, different;
- ``birth_date`` (YYYYMMDD): exact, transposed (two adjacent digits or month and day
  exchanged), close (one digit differs), different;
- ``resident_id``: exact (both valid, after upgrading legacy 15-digit numbers), typo (one
  character differs or two adjacent exchanged: a mistyped number), different;
- ``phone``: exact (digits, country prefix removed), partial (last 8 digits: a landline with
  and without area code), different;
- ``address``: exact (normalized), similar (one contains the other, or character-bigram Dice
  >= 0.8: abbreviated addresses), different.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping, Sequence

from pix_pdq import names
from pix_pdq.resident_id import ResidentId

MISSING = "missing"
LEVELS: dict[str, tuple[str, ...]] = {
    "name": ("exact", "homophone", "swapped", "similar", "different"),
    "sex": ("exact", "different"),
    "birth_date": ("exact", "transposed", "close", "different"),
    "resident_id": ("exact", "typo", "different"),
    "phone": ("exact", "partial", "different"),
    "address": ("exact", "similar", "different"),
}
FIELDS = tuple(LEVELS)


@dataclass(frozen=True)
class Demographics:
    """What the matcher knows of one identity (any field may be empty)."""

    family: str = ""
    given: str = ""
    sex: str = ""                        # M / F (others: unknown)
    birth_date: str = ""                 # YYYYMMDD (a longer HL7 DTM is cut)
    resident_id: ResidentId | None = None
    phone: str = ""
    address: str = ""

    @property
    def full_name(self) -> str:
        return names.normalize(self.family) + names.normalize(self.given)


Vector = dict[str, str]   # field -> level (or MISSING)


# --------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------

def compare(a: Demographics, b: Demographics) -> Vector:
    """The comparison vector of two identities."""
    return {"name": compare_name(a, b), "sex": compare_sex(a.sex, b.sex),
            "birth_date": compare_birth_date(a.birth_date, b.birth_date),
            "resident_id": compare_resident_id(a.resident_id, b.resident_id),
            "phone": compare_phone(a.phone, b.phone),
            "address": compare_address(a.address, b.address)}


def compare_name(a: Demographics, b: Demographics) -> str:
    fa, ga = names.normalize(a.family), names.normalize(a.given)
    fb, gb = names.normalize(b.family), names.normalize(b.given)
    full_a, full_b = fa + ga, fb + gb
    if not full_a or not full_b:
        return MISSING
    if full_a == full_b:
        return "exact"
    if bool(fa and ga) != bool(fb and gb) and ((fa and fa == fb) or (ga and ga == gb)):
        return "similar"   # one side lacks a part; the part both have agrees
    chinese = names.is_chinese(full_a) and names.is_chinese(full_b)
    if chinese and len(full_a) == len(full_b) and all(
            names.homophone(x, y) for x, y in zip(full_a, full_b)):
        return "homophone"
    if ga and gb and fa == gb and ga == fb:
        return "swapped"
    if not chinese and ga and gb:  # Latin: the parts compared crosswise too
        if names.jaro_winkler(fa, gb) >= 0.92 and names.jaro_winkler(ga, fb) >= 0.92:
            return "swapped"
    if chinese and len(full_a) == len(full_b) >= 3 and sum(
            x != y and not names.homophone(x, y) for x, y in zip(full_a, full_b)) == 1 \
            and full_a[0] == full_b[0]:
        return "similar"
    if names.jaro_winkler(names.pinyin_key(full_a), names.pinyin_key(full_b)) >= 0.92:
        return "similar"
    return "different"


def compare_sex(a: str, b: str) -> str:
    a, b = (a or "").upper()[:1], (b or "").upper()[:1]
    if a not in ("M", "F") or b not in ("M", "F"):
        return MISSING
    return "exact" if a == b else "different"


def _one_edit(a: str, b: str) -> str | None:
    """``transposed`` (two adjacent characters exchanged), ``close`` (one substituted) or None."""
    if len(a) != len(b):
        return None
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(diff) == 1:
        return "close"
    if len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] \
            and a[diff[1]] == b[diff[0]]:
        return "transposed"
    return None


def compare_birth_date(a: str, b: str) -> str:
    a, b = (a or "")[:8], (b or "")[:8]
    if len(a) != 8 or len(b) != 8 or not a.isdigit() or not b.isdigit():
        return MISSING
    if a == b:
        return "exact"
    if a[:4] == b[:4] and a[4:6] == b[6:8] and a[6:8] == b[4:6]:
        return "transposed"   # month and day exchanged
    return _one_edit(a, b) or "different"


def compare_resident_id(a: ResidentId | None, b: ResidentId | None) -> str:
    if a is None or b is None or not a.number or not b.number:
        return MISSING
    if a.valid and b.valid and a.number == b.number:
        return "exact"
    if a.valid and b.valid and a.checked and b.checked:
        # two correct GB 11643 numbers: two people (MOD 11-2 leaves no valid number one typing
        # error from another, see deciding_number); another scheme's numbers may be mistyped
        return "different"
    if a.number == b.number:
        return "typo"         # the same invalid number on both sides
    return "typo" if _one_edit(a.number, b.number) else "different"


_NOT_DIGIT = re.compile(r"\D+")


def phone_digits(value: str) -> str:
    digits = _NOT_DIGIT.sub("", unicodedata.normalize("NFKC", value or ""))
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) >= 11:
            return digits[len(prefix):]
    return digits


def compare_phone(a: str, b: str) -> str:
    a, b = phone_digits(a), phone_digits(b)
    if len(a) < 7 or len(b) < 7:
        return MISSING
    if a == b:
        return "exact"
    if a[-8:] == b[-8:]:
        return "partial"
    return "different"


_ADDRESS_NOISE = re.compile(r"中国|中华人民共和国|[省市区县镇乡街道路号室栋单元楼村]")


def normalize_address(value: str) -> str:
    """NFKC, upper case, blanks and punctuation removed."""
    text = unicodedata.normalize("NFKC", value or "").upper()
    return "".join(c for c in text if c.isalnum())


def _bigrams(text: str) -> Counter:
    return Counter(text[i:i + 2] for i in range(len(text) - 1))


def dice(a: str, b: str) -> float:
    ga, gb = _bigrams(a), _bigrams(b)
    total = sum(ga.values()) + sum(gb.values())
    return 2 * sum((ga & gb).values()) / total if total else 0.0


def compare_address(a: str, b: str) -> str:
    a, b = normalize_address(a), normalize_address(b)
    if not a or not b:
        return MISSING
    if a == b:
        return "exact"
    ka, kb = _ADDRESS_NOISE.sub("", a), _ADDRESS_NOISE.sub("", b)
    if ka == kb or (min(len(ka), len(kb)) >= 6 and (ka in kb or kb in ka)) \
            or dice(ka, kb) >= 0.8:
        return "similar"
    return "different"


# --------------------------------------------------------------------------------------------
# blocking
# --------------------------------------------------------------------------------------------

def _name_parts(d: Demographics) -> tuple[str, str]:
    full = d.full_name
    if names.is_chinese(full):
        return names.split(full)   # a whole Chinese name sent in one part is split here
    return names.normalize(d.family), names.normalize(d.given)


def blocking_keys(d: Demographics) -> list[str]:
    """The keys under which the index files an identity; candidates for a new identity are the
    persons sharing at least one key, so the cost of a feed follows the size of its blocks, not
    of the index.  Each key survives some kinds of error, and a true match needs only one:

    - ``id:`` the valid resident ID number; ``idp:`` / ``ids:`` the first 14 / last 12
      characters of an 18-character one (a typo spares one of them, unless it falls in the
      birth date);
    - ``nb:`` the name's pinyin and the birth year (homophones, variant characters, day or month
      typos); ``bd:`` the birth date with the family name's initial, and with the given name's
      (an error in either part of the name, or the parts swapped); ``bs:`` the name's initials,
      the birth year and month and day in either order (month/day swaps with name typos);
    - ``ph:`` the last 8 digits of the phone number; ``idh:`` / ``idt:`` the halves of a number
      of another scheme (no check character: typos are likelier)."""
    keys: list[str] = []
    rid = d.resident_id
    if rid is not None and rid.valid:
        keys.append(f"id:{rid.number}")
    if rid is not None and len(rid.number) == 18:  # GB 11643 layout, valid or mistyped
        keys += [f"idp:{rid.number[:14]}", f"ids:{rid.number[6:]}"]
    full = d.full_name
    birth = (d.birth_date or "")[:8]
    has_birth = len(birth) == 8 and birth.isdigit()
    phonetic = names.pinyin_key(full) if full else ""
    if phonetic and has_birth:
        keys.append(f"nb:{phonetic}:{birth[:4]}")
        initials = "".join(min(names.readings(c))[:1] for c in full) if names.is_chinese(full) \
            else phonetic[:1] + names.pinyin_key(d.given)[:1]
        mm, dd = sorted((birth[4:6], birth[6:8]))
        keys.append(f"bs:{initials}:{birth[:4]}{mm}{dd}")
    if has_birth:
        # the birth date with the initial of the family name, and with that of the given name:
        # an error in one part of the name (or the parts swapped) keeps one of them, and the
        # block stays small — the birth date alone holds ~N/33,000 persons, a growing block
        initials = sorted({names.pinyin_key(part)[:1].lower() for part in _name_parts(d)} - {""})
        keys += [f"bd:{birth}:{c}" for c in initials] if initials else [f"bd:{birth}"]
    if rid is not None and rid.valid and not rid.checked and len(rid.number) >= 6:
        half = len(rid.number) // 2   # another scheme's number: each half survives a typo
        keys += [f"idh:{rid.number[:half]}", f"idt:{rid.number[half:]}"]
    digits = phone_digits(d.phone)
    if len(digits) >= 7:
        keys.append(f"ph:{digits[-8:]}")
    return list(dict.fromkeys(keys))


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------

@dataclass
class FieldModel:
    m: dict[str, float]
    u: dict[str, float]

    def weight(self, level: str) -> float:
        if level == MISSING:
            return 0.0
        return math.log2(self.m[level] / self.u[level])


@dataclass
class Model:
    """m/u per field and level, the two thresholds, and the prior share of matching pairs."""

    fields: dict[str, FieldModel]
    # defaults: a common name (1 in 250) with the same birth date and sex scores about 23 —
    # review, not link; add a matching phone, address or ID number and it links
    upper: float = 25.0
    lower: float = 10.0
    prior: float = 0.01
    min_u: float = 1e-7

    def weights(self, vector: Mapping[str, str],
                name_frequency: float | None = None) -> dict[str, float]:
        """log2(m/u) per field; with ``name_frequency`` (the share of persons in the index with
        this exact name) an exact name agreement weighs log2(m / frequency) instead of the
        average u: 王伟 says less than 欧阳雪菲."""
        out = {}
        for name, level in vector.items():
            fm = self.fields.get(name)
            if fm is None:
                continue
            w = fm.weight(level)
            if name == "name" and level == "exact" and name_frequency is not None:
                w = math.log2(fm.m["exact"] / max(name_frequency, self.min_u))
            out[name] = w
        return out

    def score(self, vector: Mapping[str, str], name_frequency: float | None = None) -> float:
        return sum(self.weights(vector, name_frequency).values())

    def decide(self, score: float) -> str:
        """``link``, ``review`` or ``new``."""
        if score >= self.upper:
            return "link"
        if score >= self.lower:
            return "review"
        return "new"


def default_model() -> Model:
    """Starting values before estimation: what a registration clerk's errors and a city's
    population make likely (refined by :func:`estimate` on the index's own pairs)."""
    def fm(m: Sequence[float], u: Sequence[float], levels: Sequence[str]) -> FieldModel:
        return FieldModel(dict(zip(levels, m)), dict(zip(levels, u)))
    L = LEVELS
    return Model({
        "name": fm((0.90, 0.04, 0.01, 0.03, 0.02), (0.0005, 0.001, 0.0001, 0.005, 0.9934),
                   L["name"]),
        "sex": fm((0.98, 0.02), (0.5, 0.5), L["sex"]),
        "birth_date": fm((0.92, 0.03, 0.03, 0.02), (0.00005, 0.0001, 0.0006, 0.99925),
                         L["birth_date"]),
        "resident_id": fm((0.95, 0.04, 0.01), (1e-7, 2e-6, 0.999998), L["resident_id"]),
        "phone": fm((0.70, 0.05, 0.25), (0.0001, 0.0002, 0.9997), L["phone"]),
        "address": fm((0.50, 0.30, 0.20), (0.0005, 0.002, 0.9975), L["address"]),
    })


def estimate(vectors: Iterable[Mapping[str, str]], model: Model | None = None,
             iterations: int = 50, tolerance: float = 1e-6, floor: float = 1e-6,
             prior_weight: float = 0.0) -> Model:
    """m, u and the match prior re-estimated by EM over comparison vectors of candidate pairs
    (conditional independence of the fields; missing fields skipped).  Probabilities are kept
    above ``floor`` so that no level becomes impossible.  With ``prior_weight`` > 0 the starting
    model counts as that many pseudo-observations per field (a Dirichlet prior: the MAP
    estimate), so a level the data never show — e.g. agreeing ID numbers, when pairs sharing one
    are joined by the identifier before any matching — keeps its starting value instead of
    collapsing to ``floor``."""
    model = model or default_model()
    start = {k: FieldModel(dict(f.m), dict(f.u)) for k, f in model.fields.items()}
    counts = Counter(tuple(sorted(v.items())) for v in vectors)
    if not counts:
        return model
    fields = {k: FieldModel(dict(f.m), dict(f.u)) for k, f in model.fields.items()}
    prior = model.prior
    for _ in range(iterations):
        m_acc = {k: Counter() for k in fields}
        u_acc = {k: Counter() for k in fields}
        total_g = total = 0.0
        for key, n in counts.items():
            log_m = math.log(prior)
            log_u = math.log(1 - prior)
            for fname, level in key:
                f = fields.get(fname)
                if f is None or level == MISSING:
                    continue
                log_m += math.log(f.m[level])
                log_u += math.log(f.u[level])
            g = 1.0 / (1.0 + math.exp(min(log_u - log_m, 700.0)))
            total_g += g * n
            total += n
            for fname, level in key:
                if fname in fields and level != MISSING:
                    m_acc[fname][level] += g * n
                    u_acc[fname][level] += (1 - g) * n
        change = 0.0
        for fname, f in fields.items():
            for acc, probs, first in ((m_acc[fname], f.m, start[fname].m),
                                      (u_acc[fname], f.u, start[fname].u)):
                s = sum(acc.values())
                if s <= 0:
                    continue
                for level in probs:
                    new = max((acc[level] + prior_weight * first[level])
                              / (s + prior_weight), floor)
                    change = max(change, abs(new - probs[level]))
                    probs[level] = new
                norm = sum(probs.values())
                for level in probs:
                    probs[level] /= norm
        new_prior = min(max(total_g / total, floor), 1 - floor)
        change = max(change, abs(new_prior - prior))
        prior = new_prior
        if change < tolerance:
            break
    return replace(model, fields=fields, prior=prior)


@dataclass
class Decision:
    """The outcome of weighing one pair, with the evidence (per-field levels and weights)."""

    outcome: str                       # link | review | new
    score: float
    levels: dict[str, str]
    weights: dict[str, float] = field(default_factory=dict)
    vetoed: bool = False               # two valid, different resident ID numbers

    def evidence(self) -> dict:
        return {"score": round(self.score, 3), "outcome": self.outcome, "vetoed": self.vetoed,
                "fields": {k: {"level": self.levels[k], "weight": round(w, 3)}
                           for k, w in self.weights.items()}}


def decide(model: Model, a: Demographics, b: Demographics,
           name_frequency: Callable[[str], float | None] | None = None) -> Decision:
    """Compare, weigh and classify one pair.  One deterministic rule overrides the score: two
    valid resident ID numbers that differ by more than one typing error name two people
    (GB 11643 numbers are unique and carry a check character), so such a pair is never linked
    nor queued, however common the shared name and birth date."""
    vector = compare(a, b)
    freq = name_frequency(a.full_name) if name_frequency is not None and \
        vector["name"] == "exact" else None
    weights = model.weights(vector, freq)
    score = sum(weights.values())
    if two_people(a, b):
        return Decision("new", score, vector, weights, vetoed=True)
    return Decision(model.decide(score), score, vector, weights)


def two_people(a: Demographics, b: Demographics) -> bool:
    """The rule of :func:`decide`: two valid GB 11643 resident ID numbers that differ by more
    than one typing error (cheap: a matcher may skip such a candidate before comparing more)."""
    ra, rb = a.resident_id, b.resident_id
    return ra is not None and rb is not None and ra.valid and rb.valid and ra.checked \
        and rb.checked and compare_resident_id(ra, rb) == "different"


def deciding_number(a: ResidentId | None) -> str | None:
    """The number of ``a`` when it decides by itself (:func:`two_people`): a candidate whose
    recorded number — always valid and checked — is another one is another person.  None when
    ``a`` decides nothing (missing, invalid, or another scheme's).  No valid number is one
    typing error from another: the MOD 11-2 check character of GB 11643 (ISO 7064) changes
    with every single substitution and every exchange of adjacent characters, itself
    included, so ``compare_resident_id`` never finds two valid numbers one error apart."""
    if a is None or not a.valid or not a.checked:
        return None
    return a.number


__all__ = ["two_people", "deciding_number", "Decision", "Demographics", "FIELDS", "FieldModel", "LEVELS", "MISSING", "Model",
           "blocking_keys", "compare", "compare_address", "compare_birth_date", "compare_name", "compare_phone",
           "compare_resident_id", "compare_sex", "decide", "default_model", "dice", "estimate",
           "normalize_address", "phone_digits"]

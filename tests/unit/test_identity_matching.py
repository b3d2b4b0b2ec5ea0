"""The patient index's identity core: GB 11643 resident ID numbers, Chinese names (variants,
homophones, compound surnames), the field comparators, blocking keys, and the Fellegi-Sunter
model with EM estimation — the cases the patient-index issue names: 张三 with a legacy 15-digit
number and a homophone character is one person, the other 张伟 born the same day is not."""
from __future__ import annotations

import random

import pytest

from pix_pdq import matching as M
from pix_pdq import names
from pix_pdq import resident_id as R

# -- GB 11643 ---------------------------------------------------------------------------------


def test_check_character_of_the_standard_example():
    # GB 11643-1999 Appendix B example: 11010519491231002X
    assert R.check_char("11010519491231002") == "X"
    assert R.make("11010519491231002") == "11010519491231002X"


def test_valid_number_gives_birth_date_sex_and_region():
    rid = R.parse("11010519491231002X")
    assert rid.valid and not rid.legacy
    assert (rid.birth_date, rid.sex, rid.region) == ("19491231", "F", "110105")
    assert rid.key == "11010519491231002X"


def test_full_width_and_lower_case_x_are_normalized():
    rid = R.parse("１１０１０５１９４９１２３１００２ｘ")
    assert rid.valid and rid.number == "11010519491231002X"
    assert R.parse(" 110105 19491231 002x ").number == "11010519491231002X"


def test_legacy_15_digit_number_is_upgraded():
    rid = R.parse("110105491231002")
    assert rid.valid and rid.legacy
    assert rid.number == "11010519491231002X" and rid.birth_date == "19491231"
    assert rid.sex == "F"  # the 15th digit, 2, is even
    assert R.upgrade15("110105491231002") == "11010519491231002X"


@pytest.mark.parametrize("value, problem", [
    ("110105194912310021", "wrong check character"),
    ("11010519491331002X", "wrong check character"),   # month 13 also breaks the check
    ("110105194902300029", "no such birth date"),       # 30 February, correct check
    ("1101051949123100", "16 characters, not 18"),
    ("", "0 characters, not 18"),
    ("11010519491231002Y", "not 17 digits and a check character"),
])
def test_invalid_numbers_are_kept_but_not_trusted(value, problem):
    body = "11010519490230002"
    if problem == "no such birth date":
        value = R.make(body)
    rid = R.parse(value)
    assert not rid.valid and rid.key is None
    assert rid.raw == value and rid.problem == problem


# -- names ------------------------------------------------------------------------------------


def test_normalize_folds_variants_full_width_and_separators():
    assert names.normalize("張 偉") == "张伟"
    assert names.normalize("陳麗華") == "陈丽华"
    assert names.normalize("买买提·艾力") == "买买提艾力"
    assert names.normalize("Ｗａｎｇ　Ｗｅｉ") == "WANGWEI"


def test_split_knows_compound_surnames():
    assert names.split("欧阳雪菲") == ("欧阳", "雪菲")
    assert names.split("司马光") == ("司马", "光")
    assert names.split("张三") == ("张", "三")
    assert names.split("买买提·艾力") == ("买买提艾力", "")
    assert names.split("Peter Smith") == ("PETERSMITH", "")


def test_homophones_through_every_reading():
    assert names.homophone("张", "章")
    assert names.homophone("丽", "莉")
    assert names.homophone("单", "善")  # 单 also reads shan
    assert not names.homophone("张", "王")
    assert names.pinyin_key("张伟") == "zhangwei"


def test_jaro_winkler_known_values():
    assert names.jaro_winkler("MARTHA", "MARHTA") == pytest.approx(0.961, abs=1e-3)
    assert names.jaro_winkler("DWAYNE", "DUANE") == pytest.approx(0.84, abs=1e-3)
    assert names.jaro_winkler("", "X") == 0.0 and names.jaro_winkler("AB", "AB") == 1.0


# -- comparators ------------------------------------------------------------------------------

ZHANG_SAN_ID = R.make("11010519900307123")


def demo(name="张三", sex="M", birth="19900307", rid=ZHANG_SAN_ID, phone="13801234567",
         address="北京市朝阳区建国路88号") -> M.Demographics:
    family, given = names.split(name)
    return M.Demographics(family, given, sex, birth, R.parse(rid) if rid else None, phone,
                          address)


def test_the_same_person_at_three_hospitals_compares_as_such():
    a = demo()
    legacy = demo(name="章三", rid="110105900307123", phone="+86 138-0123-4567",
                  address="朝阳区建国路88号")
    v = M.compare(a, legacy)
    assert v == {"name": "homophone", "sex": "exact", "birth_date": "exact",
                 "resident_id": "exact", "phone": "exact", "address": "similar"}


@pytest.mark.parametrize("a, b, level", [
    ("19900307", "19900307", "exact"),
    ("19900307", "19900703", "transposed"),   # month and day exchanged
    ("19900307", "19093007", "different"),
    ("19900307", "19900370", "transposed"),   # adjacent digits
    ("19900307", "19900308", "close"),
    ("19900307", "19910408", "different"),
    ("19900307", "", "missing"),
])
def test_birth_date_levels(a, b, level):
    assert M.compare_birth_date(a, b) == level


def test_resident_id_levels():
    good = R.parse(ZHANG_SAN_ID)
    typo = R.parse(ZHANG_SAN_ID[:10] + ("4" if ZHANG_SAN_ID[10] != "4" else "5") + ZHANG_SAN_ID[11:])
    other = R.parse(R.make("11010519900307145"))
    assert M.compare_resident_id(good, good) == "exact"
    assert M.compare_resident_id(good, R.parse("110105900307123")) == "exact"
    assert not typo.valid and M.compare_resident_id(good, typo) == "typo"
    assert M.compare_resident_id(good, other) == "different"
    assert M.compare_resident_id(good, None) == "missing"


def test_name_levels():
    assert M.compare_name(demo(name="张伟"), demo(name="張偉")) == "exact"
    assert M.compare_name(demo(name="李丽"), demo(name="李莉")) == "homophone"
    assert M.compare_name(M.Demographics("三", "张"), M.Demographics("张", "三")) == "swapped"
    assert M.compare_name(demo(name="王建国"), demo(name="王建华")) == "similar"
    assert M.compare_name(demo(name="张伟"), demo(name="李娜")) == "different"
    assert M.compare_name(M.Demographics("SMITH", "JOHN"), M.Demographics("SMYTH", "JOHN")) \
        == "similar"
    # one side sent no given name: the family names agreeing is partial agreement
    assert M.compare_name(M.Demographics("NEUMANN", "MICHAELA"), M.Demographics("NEUMANN", "")) \
        == "similar"
    assert M.compare_name(M.Demographics("NEUMANN", "MICHAELA"), M.Demographics("", "")) \
        == M.MISSING


def test_phone_and_address_levels():
    assert M.compare_phone("+86 138-0123-4567", "13801234567") == "exact"
    assert M.compare_phone("010-65123456", "65123456") == "partial"
    assert M.compare_phone("13801234567", "13907654321") == "different"
    assert M.compare_phone("", "13801234567") == "missing"
    assert M.compare_address("北京市朝阳区建国路88号", "北京朝阳建国路88号") == "similar"
    assert M.compare_address("北京市朝阳区建国路88号", "上海市浦东新区世纪大道100号") == "different"


# -- blocking ---------------------------------------------------------------------------------


def test_true_matches_share_a_block_and_keys_survive_errors():
    a = demo()
    for variant in (demo(name="章三"), demo(rid=None), demo(birth="19900703", rid=None),
                    demo(rid="110105900307123"), demo(name="张叁", phone="")):
        assert set(M.blocking_keys(a)) & set(M.blocking_keys(variant)), variant


def test_strangers_usually_share_no_block():
    a = demo()
    b = demo(name="李娜", sex="F", birth="19850412", rid=R.make("31010419850412456"),
             phone="13911112222", address="上海市徐汇区")
    assert not set(M.blocking_keys(a)) & set(M.blocking_keys(b))


# -- the model --------------------------------------------------------------------------------


def test_same_person_links_and_namesake_born_the_same_day_does_not():
    model = M.default_model()
    zhang_wei = demo(name="张伟", rid=R.make("11010519900307123"))
    again = demo(name="张偉", rid="110105900307123", phone="", address="朝阳区建国路88号")
    namesake = demo(name="张伟", rid=R.make("32010219900307151"), phone="13705556666",
                    address="南京市鼓楼区中山路1号")
    common = lambda name: 0.004  # noqa: E731 - 张伟 is among the commonest names
    assert M.decide(model, zhang_wei, again, common).outcome == "link"
    d = M.decide(model, zhang_wei, namesake, common)
    assert d.outcome == "new", d.evidence()
    assert d.weights["resident_id"] < 0 and d.levels["birth_date"] == "exact"
    assert d.vetoed  # two correct, different numbers: two people, whatever else agrees
    # without the numbers the same evidence is only worth a review
    no_ids = M.decide(model, M.Demographics(**{**zhang_wei.__dict__, "resident_id": None}),
                      M.Demographics(**{**namesake.__dict__, "resident_id": None}), common)
    assert no_ids.outcome in ("review", "new") and not no_ids.vetoed


def test_only_two_valid_numbers_veto():
    """A number with a wrong check character that differs in several places is weighed as a
    disagreement, not taken as proof of two people."""
    model = M.default_model()
    a = demo()
    b = demo(rid=ZHANG_SAN_ID[:12] + "99999" + ("0" if ZHANG_SAN_ID[17] != "0" else "1"))
    assert not R.parse(b.resident_id.raw).valid
    d = M.decide(model, a, b)
    assert d.levels["resident_id"] == "different" and not d.vetoed
    assert d.outcome == "link", d.evidence()  # everything else agrees


def _one_error_away(number: str) -> set[str]:
    """Every string one typing error from ``number``: a character replaced (digits, X), or
    two adjacent characters exchanged."""
    out = set()
    for i in range(len(number)):
        for c in "0123456789X":
            out.add(number[:i] + c + number[i + 1:])
        if i + 1 < len(number):
            out.add(number[:i] + number[i + 1] + number[i] + number[i + 2:])
    out.discard(number)
    return out


def test_a_valid_number_decides_alone_and_none_is_one_typing_error_from_another():
    """``deciding_number`` (what the candidate query keeps of a block) agrees with
    ``two_people``: no valid number lies one typing error from another (every replaced
    character and every exchange of neighbours, the check character included, over forty
    numbers), so a candidate with another valid number is always another person."""
    rng = random.Random(11643)
    samples = [ZHANG_SAN_ID, R.make("11010519491231002"), R.make("44030419851111123")]
    while len(samples) < 40:
        samples.append(R.make(f"{rng.randint(110000, 659999)}19{rng.randint(50, 99)}0"
                              f"{rng.randint(1, 9)}1{rng.randint(0, 8)}{rng.randint(100, 999)}"))
    stranger = R.make("32010219900307173")
    for number in samples:
        a = demo(rid=number)
        assert M.deciding_number(a.resident_id) == number
        near = [n for n in _one_error_away(number) if R.parse(n).valid]
        assert near == [], (number, near)
        assert M.two_people(a, demo(rid=stranger)) == (stranger != number)
        assert not M.two_people(a, demo(rid=number))
    for fed in (ZHANG_SAN_ID[:17] + "0", None):   # mistyped, missing: no number decides
        assert M.deciding_number(demo(rid=fed).resident_id) is None
    assert M.deciding_number(R.foreign("5304218")) is None   # another scheme's number


def test_a_rare_name_weighs_more_than_a_common_one():
    model = M.default_model()
    v = {"name": "exact"}
    assert model.score(v, name_frequency=1e-6) > model.score(v, name_frequency=0.004)


def test_uncertain_pair_goes_to_review():
    model = M.default_model()
    a = demo(rid=None, phone="", address="")
    b = demo(name="章三", birth="19900308", rid=None, phone="", address="")
    d = M.decide(model, a, b)
    assert d.outcome == "review", d.evidence()
    fields = d.evidence()["fields"]
    assert {k for k, f in fields.items() if f["level"] != M.MISSING} == {"name", "sex",
                                                                          "birth_date"}
    assert all(f["weight"] == 0 for f in fields.values() if f["level"] == M.MISSING)


def test_em_recovers_m_and_u_from_unlabelled_pairs():
    """Pairs drawn from known m/u: EM started from the defaults finds them again."""
    rng = random.Random(7)
    truth_m = {"name": (0.85, 0.05, 0.01, 0.05, 0.04), "sex": (0.97, 0.03),
               "birth_date": (0.9, 0.04, 0.04, 0.02)}
    truth_u = {"name": (0.01, 0.01, 0.001, 0.02, 0.959), "sex": (0.5, 0.5),
               "birth_date": (0.001, 0.002, 0.01, 0.987)}
    vectors = []
    for i in range(20000):
        match = i % 10 == 0
        table = truth_m if match else truth_u
        vectors.append({f: rng.choices(M.LEVELS[f], weights=table[f])[0] for f in table})
    start = M.default_model()
    start.fields = {f: start.fields[f] for f in truth_m}
    fitted = M.estimate(vectors, start)
    assert fitted.prior == pytest.approx(0.1, abs=0.02)
    assert fitted.fields["name"].m["exact"] == pytest.approx(0.85, abs=0.05)
    assert fitted.fields["birth_date"].u["different"] == pytest.approx(0.987, abs=0.01)


def test_numbers_of_another_scheme_are_compared_but_never_veto():
    """A social-security or passport number has no check character: two that differ may be one
    mistyped twice, so they weigh against a link but do not forbid it."""
    a = M.Demographics("NEUMANN", "MICHAELA", "", "19151111", R.foreign("5304218"))
    b = M.Demographics("NEUMANN", "MICHAELA", "", "19151111", R.foreign("5034281"))
    d = M.decide(M.default_model(), a, b)
    assert d.levels["resident_id"] == "different" and not d.vetoed
    # one typing error in such a number is a typo (no check character catches it)
    assert M.compare_resident_id(R.foreign("5304218"), R.foreign("5304219")) == "typo"
    assert M.compare_resident_id(R.foreign("5304218"), R.foreign("5034218")) == "typo"
    assert not R.foreign("5304218").checked and R.parse(ZHANG_SAN_ID).checked
    assert "id:5304218" in M.blocking_keys(a)
    assert not any(k.startswith(("idp:", "ids:")) for k in M.blocking_keys(a))

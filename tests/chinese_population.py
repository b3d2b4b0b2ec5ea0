"""A synthetic Chinese patient population for linkage tests and benchmarks (the patient-index
issue): persons with realistic names (surname frequencies of the 2020 census order, one- and
two-character given names, compound surnames), GB 11643 resident ID numbers with real region
codes, mobile phones and Beijing / Shanghai / Chengdu addresses; and, for a share of them, a
second registration at another hospital with the errors registration desks make:

- a homophone character (张/章, 丽/莉) or a traditional / variant form (張, 峯);
- the birth date with month and day exchanged, or two adjacent digits transposed;
- the ID number as a legacy 15-digit number, missing, or mistyped by one digit;
- a changed phone number, an address abbreviated (province / city dropped) or missing.

And strangers: pairs of different persons sharing a common name, the sex and the birth date
(different ID numbers, phones and addresses) — the pairs that must never be linked.

Deterministic for a given seed.  ``generate(n)`` returns (records of hospital A, records of
hospital B, the true pairs, the stranger pairs); a record is a dict with ``id``, ``family``,
``given``, ``sex``, ``birth_date``, ``resident_id``, ``phone``, ``address``.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from pix_pdq import names
from pix_pdq.resident_id import make

# surnames in rough order of frequency, weighted by a Zipf-like law
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余"
                "于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段"
                "雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔向常汤康易乔赖文施洪辛柯庄") + [
    "欧阳", "司马", "诸葛", "上官", "东方"]
GIVEN_CHARS = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国志红玉萍飞鹏辉"
                   "斌宇浩凯鑫婷雪琳晶慧颖倩欣怡梓涵子轩博文思雨佳琪晨阳欢乐春梅海燕亮成林"
                   "峰波永宁蕾莉琴云凤龙东俊彬")
COMMON_FULL_NAMES = ["张伟", "王伟", "王芳", "李伟", "李娜", "张敏", "李静", "王静", "刘伟",
                     "王秀英", "张丽", "李秀英", "王丽", "张静", "张秀英", "李强", "王敏"]
REGIONS = {"110105": ("北京市", "朝阳区"), "110108": ("北京市", "海淀区"),
           "110101": ("北京市", "东城区"), "310104": ("上海市", "徐汇区"),
           "310115": ("上海市", "浦东新区"), "510104": ("四川省成都市", "锦江区"),
           "510107": ("四川省成都市", "武侯区")}
ROADS = ["建国路", "中关村大街", "长安街", "世纪大道", "淮海中路", "人民南路", "科华北路",
         "学院路", "望京街", "天府大道"]


def _homophone_table() -> dict[str, list[str]]:
    pool = GIVEN_CHARS + [c for s in SURNAMES for c in s] + list("章莉丽立力利黎礼理")
    table: dict[str, list[str]] = {}
    for c in dict.fromkeys(pool):
        table[c] = [o for o in dict.fromkeys(pool) if o != c and names.homophone(c, o)]
    return {c: v for c, v in table.items() if v}


_TRADITIONAL = {simplified: trad for trad, simplified in names.VARIANTS.items()}


@dataclass
class Population:
    a: list[dict]
    b: list[dict]
    true_pairs: set[tuple[str, str]]
    strangers: set[tuple[str, str]]


def _birth(rng: random.Random) -> str:
    day = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 90))
    return day.strftime("%Y%m%d")


def _person(rng: random.Random, key: str, name: str | None = None, sex: str | None = None,
            birth: str | None = None) -> dict:
    sex = sex or rng.choice("MF")
    birth = birth or _birth(rng)
    if name is None:
        family = SURNAMES[min(int(rng.paretovariate(1.1)) - 1, len(SURNAMES) - 1)]
        given = "".join(rng.choice(GIVEN_CHARS) for _ in range(rng.choice((1, 2, 2, 2))))
    else:
        family, given = names.split(name)
    region = rng.choice(list(REGIONS))
    seq = rng.randrange(0, 500) * 2 + (1 if sex == "M" else 0)
    number = make(f"{region}{birth}{seq:03d}")
    province, district = REGIONS[region]
    address = f"{province}{district}{rng.choice(ROADS)}{rng.randrange(1, 300)}号"
    phone = "1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9))
    return {"id": key, "family": family, "given": given, "sex": sex, "birth_date": birth,
            "resident_id": number, "phone": phone, "address": address}


def _mutate(rng: random.Random, rec: dict, key: str, homophones: dict[str, list[str]]) -> dict:
    out = dict(rec, id=key)
    errors = rng.sample(["name", "birth", "id", "phone", "address"], k=rng.choice((1, 1, 2, 2, 3)))
    if "name" in errors:
        full = list(out["family"] + out["given"])
        at = rng.randrange(len(full))
        if rng.random() < 0.6 and full[at] in homophones:
            full[at] = rng.choice(homophones[full[at]])
        elif full[at] in _TRADITIONAL:
            full[at] = _TRADITIONAL[full[at]]
        elif full[at] in homophones:
            full[at] = rng.choice(homophones[full[at]])
        cut = len(out["family"])
        out["family"], out["given"] = "".join(full[:cut]), "".join(full[cut:])
    if "birth" in errors:
        b = out["birth_date"]
        if rng.random() < 0.5 and int(b[6:8]) <= 12 and b[4:6] != b[6:8]:
            out["birth_date"] = b[:4] + b[6:8] + b[4:6]
        else:
            i = rng.randrange(0, 7)
            if b[i] != b[i + 1]:
                out["birth_date"] = b[:i] + b[i + 1] + b[i] + b[i + 2:]
    if "id" in errors:
        roll = rng.random()
        n = out["resident_id"]
        if roll < 0.35 and n[6:8] == "19":
            out["resident_id"] = n[:6] + n[8:17]        # the legacy 15-digit number (to 1999)
        elif roll < 0.7:
            out["resident_id"] = ""
        else:
            i = rng.randrange(0, 17)
            out["resident_id"] = n[:i] + str((int(n[i]) + rng.randrange(1, 10)) % 10) + n[i + 1:]
    if "phone" in errors:
        out["phone"] = "" if rng.random() < 0.3 else \
            "1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9))
    if "address" in errors:
        roll = rng.random()
        if roll < 0.5:
            for prefix in ("四川省成都市", "北京市", "上海市"):
                if out["address"].startswith(prefix):
                    out["address"] = out["address"][len(prefix):]
        elif roll < 0.75:
            out["address"] = ""
        else:
            out["address"] = f"{REGIONS[rng.choice(list(REGIONS))][1]}{rng.choice(ROADS)}" \
                             f"{rng.randrange(1, 300)}号"          # moved house
    return out


def generate(n: int = 5000, duplicates: float = 0.5, strangers: int = 200,
             seed: int = 20261202) -> Population:
    """``n`` persons at hospital A; a share ``duplicates`` of them registered again at hospital B
    with errors, ``n * (1 - duplicates)`` other persons at B only, and ``strangers`` namesake
    pairs (same common name, sex and birth date; one at A, one at B)."""
    rng = random.Random(seed)
    homophones = _homophone_table()
    a = [_person(rng, f"A{i}") for i in range(n)]
    b, true_pairs = [], set()
    for i, rec in enumerate(a):
        if rng.random() < duplicates:
            key = f"B{i}"
            b.append(_mutate(rng, rec, key, homophones))
            true_pairs.add((rec["id"], key))
    b += [_person(rng, f"BX{i}") for i in range(n - len(b))]
    pairs = set()
    for k in range(strangers):
        name, sex, birth = rng.choice(COMMON_FULL_NAMES), rng.choice("MF"), _birth(rng)
        one = _person(rng, f"AS{k}", name, sex, birth)
        other = _person(rng, f"BS{k}", name, sex, birth)
        while other["resident_id"] == one["resident_id"]:  # two people: two numbers
            other = _person(rng, f"BS{k}", name, sex, birth)
        a.append(one)
        b.append(other)
        pairs.add((one["id"], other["id"]))
    return Population(a, b, true_pairs, pairs)


__all__ = ["Population", "generate"]

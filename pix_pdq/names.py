"""Person names for identity matching: Chinese names (characters, variant and traditional forms,
homophones through their pinyin, compound surnames, minority names written with a middle dot)
and Latin-script names, as the patient index compares them.

HL7 v2 XPN (family ^ given) and FHIR HumanName give the name in parts; many hospital systems send
the whole Chinese name in the family component.  :func:`split` recovers family and given name
from a whole name by the compound-surname list (复姓, e.g. 欧阳, 司马, 诸葛) and otherwise takes the
first character as the surname.  :func:`normalize` folds what is written differently but
names the same person: full-width forms (NFKC), blanks and the middle dots of transliterated
names (买买提·艾力), and traditional or variant characters (異體字, 繁體字) mapped to their
simplified standard form (通用规范汉字表, 2013) for the characters frequent in names.

:func:`homophone` compares two characters by their possible Mandarin readings (pinyin without
tones, every reading of a polyphonic character), which is how a clerk typing from speech makes
张/章 or 丽/莉 errors.  :func:`jaro_winkler` (Winkler 1990) measures typing errors in Latin names
and in pinyin.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache

# 复姓: two-character surnames still in use (most frequent first)
COMPOUND_SURNAMES = frozenset("""
欧阳 司马 诸葛 上官 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 令狐 夏侯 端木 独孤 南宫 西门
轩辕 呼延 申屠 太史 闻人 万俟 澹台 公冶 宗政 濮阳 淳于 单于 太叔 仲孙 钟离 羊舌 微生 梁丘
左丘 东郭 百里 谷梁 拓跋 乐正 司空 司寇 亓官 巫马 公西 漆雕 壤驷 公良 夹谷 宰父 段干 第五
""".split())

# traditional / variant forms of characters frequent in names -> the standard simplified form
_VARIANT_PAIRS = """
張张 陳陈 劉刘 黃黄 趙赵 吳吴 孫孙 馬马 鄭郑 謝谢 羅罗 許许 鄧邓 馮冯 韓韩 楊杨 葉叶 蘇苏 盧卢 蔣蒋
鍾钟 錢钱 湯汤 賀贺 龔龚 萬万 嚴严 譚谭 陸陆 魏魏 閻阎 薛薛 賈贾 鄒邹 戴戴 歐欧 陽阳 諸诸 葛葛
偉伟 國国 華华 軍军 紅红 麗丽 強强 東东 書书 龍龙 鳳凤 傑杰 蘭兰 雲云 衛卫 鵬鹏 輝辉 濤涛 納纳
靜静 敏敏 豔艳 艷艳 燕燕 玲玲 穎颖 嬌娇 鳴鸣 飛飞 寶宝 貴贵 興兴 榮荣 進进 義义 禮礼 勝胜 鋒锋
潔洁 瑩莹 慶庆 廣广 長长 門门 開开 聖圣 學学 愛爱 嶽岳 峯峰 羣群 秊年 淩凌 甯宁 綫线 裏里 喫吃
晉晋 隊队 蓮莲 維维 綺绮 緣缘 紹绍 綱纲 絲丝 環环 瓊琼 齊齐 齡龄 願愿 懷怀 憶忆 從从 儀仪 億亿
""".split()
VARIANTS = {pair[0]: pair[1] for pair in _VARIANT_PAIRS if pair[0] != pair[1]}

_SEPARATORS = frozenset(" \t\u3000·•・.．‧-_,，")


def is_chinese(text: str) -> bool:
    """True when ``text`` has a CJK unified ideograph."""
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff"
               or "\U00020000" <= c <= "\U0002ebef" for c in text)


@lru_cache(maxsize=65536)   # a feed normalizes each of its names several times
def normalize(text: str | None) -> str:
    """The comparable form of a name (see the module docstring); Latin names upper-cased."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(VARIANTS.get(c, c) for c in folded if c not in _SEPARATORS).upper()


def split(full: str) -> tuple[str, str]:
    """(family, given) of a whole Chinese name.  A transliterated minority name (written with a
    middle dot) and a Latin-script name stay whole in ``family``: their order of parts varies."""
    name = normalize(full)
    if not name:
        return "", ""
    if not is_chinese(name) or any(c in full for c in "·•・"):
        return name, ""
    if len(name) >= 3 and name[:2] in COMPOUND_SURNAMES:
        return name[:2], name[2:]
    return name[:1], name[1:]


@lru_cache(maxsize=65536)
def readings(char: str) -> frozenset[str]:
    """The Mandarin readings of one character, pinyin without tones (every reading of a
    polyphonic character: 单 -> {dan, shan, chan}); a non-Chinese character reads as itself."""
    if not is_chinese(char):
        return frozenset({char.lower()})
    from pypinyin import Style, pinyin
    found = pinyin(char, style=Style.NORMAL, heteronym=True, errors="ignore")
    values = frozenset(r for group in found for r in group if r)
    return values or frozenset({char})


def homophone(a: str, b: str) -> bool:
    """Same character, or two characters sharing a reading (张/章, 丽/莉)."""
    return a == b or bool(readings(a) & readings(b))


def pinyin_key(name: str) -> str:
    """A sortable phonetic key: the first reading of each character, joined (张伟 -> zhangwei);
    Latin names are their upper-case letters."""
    norm = normalize(name)
    if not is_chinese(norm):
        return "".join(c for c in norm if c.isalpha())
    return "".join(min(readings(c)) for c in norm)


def jaro_winkler(a: str, b: str, prefix_scale: float = 0.1) -> float:
    """Jaro-Winkler similarity of two strings (1.0 = equal, 0.0 = nothing in common)."""
    if a == b:
        return 1.0 if a else 0.0
    la, lb = len(a), len(b)
    if not la or not lb:
        return 0.0
    window = max(max(la, lb) // 2 - 1, 0)
    taken = [False] * lb
    matched_a: list[str] = []
    for i, ca in enumerate(a):
        for j in range(max(0, i - window), min(lb, i + window + 1)):
            if not taken[j] and b[j] == ca:
                taken[j] = True
                matched_a.append(ca)
                break
    m = len(matched_a)
    if not m:
        return 0.0
    matched_b = [b[j] for j in range(lb) if taken[j]]
    transpositions = sum(x != y for x, y in zip(matched_a, matched_b)) / 2
    jaro = (m / la + m / lb + (m - transpositions) / m) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4]):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * prefix_scale * (1 - jaro)


__all__ = ["COMPOUND_SURNAMES", "VARIANTS", "homophone", "is_chinese", "jaro_winkler",
           "normalize", "pinyin_key", "readings", "split"]

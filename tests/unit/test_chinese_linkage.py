"""Linkage quality of the identity core on a synthetic Chinese population
(tests/chinese_population.py): the same persons registered at a second hospital with homophone
or traditional characters, exchanged birth month and day, legacy 15-digit, missing or mistyped
ID numbers, changed phones and abbreviated addresses — linked with F1 >= 0.98 — and 200 pairs of
strangers with a common name, the same sex and the same birth date, none of them linked or even
queued for review."""
from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from pix_pdq import matching as M
from pix_pdq.resident_id import parse
from tests.chinese_population import generate


def _demographics(r: dict) -> M.Demographics:
    return M.Demographics(r["family"], r["given"], r["sex"], r["birth_date"],
                          parse(r["resident_id"]) if r["resident_id"] else None, r["phone"],
                          r["address"])


@pytest.fixture(scope="module")
def outcome():
    pop = generate(3000, strangers=200)
    left = {r["id"]: _demographics(r) for r in pop.a}
    right = {r["id"]: _demographics(r) for r in pop.b}
    names = Counter(d.full_name for d in left.values())
    blocks = defaultdict(list)
    for i, d in left.items():
        for key in M.blocking_keys(d):
            blocks[key].append(i)
    model = M.default_model()
    decided = {}
    for j, d in right.items():
        for key in M.blocking_keys(d):
            for i in blocks.get(key, ()):
                if (i, j) not in decided:
                    share = names[left[i].full_name] / len(left)
                    decided[(i, j)] = M.decide(model, left[i], d, lambda _: share)
    return pop, decided


def test_same_persons_link_with_f1_098(outcome):
    pop, decided = outcome
    linked = {p for p, d in decided.items() if d.outcome == "link"}
    tp = len(linked & pop.true_pairs)
    precision, recall = tp / len(linked), tp / len(pop.true_pairs)
    assert 2 * precision * recall / (precision + recall) >= 0.98, (precision, recall)


def test_namesakes_born_the_same_day_are_never_linked(outcome):
    pop, decided = outcome
    met = [decided[p] for p in pop.strangers if p in decided]
    assert len(met) == len(pop.strangers)  # they do share blocks: the test means something
    assert all(d.outcome == "new" for d in met), [d.evidence() for d in met if d.outcome != "new"]
    assert all(d.levels["name"] == "exact" and d.levels["birth_date"] == "exact" for d in met)


def test_every_error_kind_is_in_the_data(outcome):
    pop, decided = outcome
    levels = Counter((f, d.levels[f]) for p, d in decided.items() if p in pop.true_pairs
                     for f in ("name", "birth_date", "resident_id", "address"))
    for wanted in (("name", "homophone"), ("birth_date", "transposed"),
                   ("resident_id", "typo"), ("resident_id", "missing"),
                   ("address", "similar")):
        assert levels[wanted] > 0, wanted

"""Estimating the matching model from the index's own feeds, on SQLite and PostgreSQL: two
hospitals' registrations of a synthetic Chinese population are fed with the default model, EM
over the logged comparison vectors gives m/u and thresholds, the model file round-trips, and
relinking with it merges the persons a too-timid model left alone, without linking any namesake
stranger — F1 >= 0.98."""
from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from pix_pdq import estimation
from pix_pdq.index import Identifier, find_person, record_identity
from pix_pdq.resident_id import RESIDENT_ID_OID
from pix_pdq.tables import match as t_match
from tests.chinese_population import generate

A = "1.2.156.112604.1.5.1"
B = "1.2.156.112604.1.5.2"
NOW = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.timezone.utc)


def _feed(db, rec: dict, domain: str, model) -> None:
    ids = [Identifier(rec["id"], domain)]
    if rec["resident_id"]:
        ids.append(Identifier(rec["resident_id"], RESIDENT_ID_OID))
    demo = {"names": [{"family": rec["family"], "given": rec["given"]}], "sex": rec["sex"],
            "birth_time": rec["birth_date"], "home_phones": [{"number": rec["phone"]}],
            "addresses": [{"street": rec["address"]}]}
    with db.begin() as conn:
        record_identity(conn, ids, demo, now=NOW, source=f"test {domain}", model=model)


def _f1(db, pop) -> tuple[float, int]:
    with db.read() as conn:
        pa = {r["id"]: find_person(conn, Identifier(r["id"], A)) for r in pop.a}
        pb = {r["id"]: find_person(conn, Identifier(r["id"], B)) for r in pop.b}
    linked: set[tuple[str, str]] = set()
    by_person: dict[int, list[str]] = {}
    for a, x in pa.items():
        by_person.setdefault(x, []).append(a)
    for b, y in pb.items():
        for a in by_person.get(y, []):
            linked.add((a, b))
    tp = len(linked & pop.true_pairs)
    precision = tp / len(linked) if linked else 0.0
    recall = tp / len(pop.true_pairs)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return f1, len(linked & pop.strangers)


def test_estimate_and_relink(database, tmp_path):
    pop = generate(400, strangers=40, seed=7)
    default = estimation.load_model(tmp_path)   # no file yet: the defaults
    assert default.upper == 25.0
    # fed with a model that never links by matching: only shared identifiers join records
    timid = dataclasses.replace(default, upper=1e9, lower=1e9 - 1)
    for r in pop.a:
        _feed(database, r, A, timid)
    for r in pop.b:
        _feed(database, r, B, timid)
    before, strangers_before = _f1(database, pop)
    assert strangers_before == 0 and before < 0.95

    with database.begin() as conn:
        unchanged, none = estimation.estimate_model(conn, timid, min_vectors=10 ** 6)
        model, n = estimation.estimate_model(conn, min_vectors=50)
    assert (unchanged, none) == (timid, 0)   # too few comparisons: nothing estimated
    with database.read() as conn:
        compared = sum(sum(((e or {}).get("patterns") or {}).values())
                       for (e,) in conn.execute(sa.select(t_match.c.evidence).where(
                           t_match.c.outcome.in_(["link", "new"]))))
    # every weighed comparison of every feed was logged (pairs sharing a resident ID number
    # are joined through that identifier, and vetoed pairs are decided by rule: neither counts)
    assert n == compared > 50
    assert 0 < model.prior < 1 and model.upper > model.lower
    assert model.fields["resident_id"].m["exact"] > model.fields["resident_id"].u["exact"]
    estimation.save_model(tmp_path, model)
    again = estimation.load_model(tmp_path)
    assert (again.upper, again.prior) == (model.upper, model.prior)
    assert again.fields["name"].m == model.fields["name"].m

    with database.begin() as conn:
        merged = estimation.relink(conn, again, NOW)
    after, strangers_after = _f1(database, pop)
    assert strangers_after == 0
    assert merged > 0 and after > before and after >= 0.98, (before, after, merged)
    with database.read() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(t_match).where(
            t_match.c.outcome == "merge", t_match.c.source == "relink")).scalar()
    assert logged == merged

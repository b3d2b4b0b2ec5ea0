"""The patient index's matching model: m/u probabilities estimated from the index's own feeds
(``hie mpi estimate``), kept in ``<data dir>/mpi-model.json`` and used by every later feed.

Every feed that went through matching left the comparison vectors of all the candidates it was
weighed against in its ``pix_match`` row (``evidence.patterns``: vector -> count).  EM over those
counts (:func:`pix_pdq.matching.estimate`, Winkler 1988) gives m, u and the share of matching
pairs without any labelled data; the starting model weighs as :data:`PRIOR_WEIGHT`
pseudo-observations, so levels the feeds cannot show (pairs sharing an identifier never reach
matching) keep sensible values.  The thresholds follow from the posterior probability of a
match, P(M | score) = 1 / (1 + 2^-(score - log2((1 - p) / p))): link above
:data:`LINK_POSTERIOR`, review above :data:`REVIEW_POSTERIOR`.

``--relink`` then weighs again, with the new model, every person that matching had left on its
own, and merges it into the best candidate that now clears the upper threshold (logged in
``pix_match`` as ``merge``, source ``relink``) — what was fed before the model was good enough
is not left behind.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pix_pdq import linking
from pix_pdq import matching as M
from pix_pdq.index import Identifier
from pix_pdq.tables import ACTIVE, match as t_match, person as t_person

MODEL_FILE = "mpi-model.json"
LINK_POSTERIOR = 0.95
PRIOR_WEIGHT = 200.0   # pseudo-observations of the starting model per field (see estimate)
MIN_VECTORS = 200      # fewer comparisons than this: keep the model as it is
MIN_UPPER = 14.0       # about: exact birth date alone, or ID number alone, is not enough
REVIEW_POSTERIOR = 0.05
def model_path(data_dir: Path) -> Path:
    return Path(data_dir) / MODEL_FILE


def to_json(model: M.Model) -> dict:
    return {"upper": model.upper, "lower": model.lower, "prior": model.prior,
            "fields": {k: {"m": f.m, "u": f.u} for k, f in model.fields.items()}}


def from_json(data: dict) -> M.Model:
    base = M.default_model()
    fields = dict(base.fields)
    for name, f in (data.get("fields") or {}).items():
        if name in fields and set(f.get("m", {})) == set(fields[name].m):
            fields[name] = M.FieldModel(dict(f["m"]), dict(f["u"]))
    return dataclasses.replace(base, fields=fields, upper=float(data["upper"]),
                               lower=float(data["lower"]), prior=float(data["prior"]))


MODEL_CHECK = 1.0   # seconds between two looks at the model file's time (a feed asks each time)
# model file -> (when looked at, its mtime or None when absent, the model in use)
_cache: dict[Path, tuple[float, float | None, M.Model]] = {}


def load_model(data_dir: Path) -> M.Model:
    """The estimated model of the node, else the defaults (re-read when the file changes; a
    file written by ``hie mpi estimate`` is in use within :data:`MODEL_CHECK` seconds)."""
    path = model_path(data_dir)
    now = time.monotonic()
    seen = _cache.get(path)
    if seen is not None and now - seen[0] < MODEL_CHECK:
        return seen[2]
    try:
        mtime: float | None = path.stat().st_mtime
    except OSError:
        mtime = None
    if seen is not None and seen[1] == mtime:
        model = seen[2]
    else:
        model = M.default_model() if mtime is None else \
            from_json(json.loads(path.read_text("utf-8")))
    _cache[path] = (now, mtime, model)
    return model


def save_model(data_dir: Path, model: M.Model) -> Path:
    path = model_path(data_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_json(model), ensure_ascii=False, indent=2), "utf-8")
    tmp.replace(path)
    _cache.pop(path, None)   # this process uses it from its next feed on
    return path


def thresholds(prior: float) -> tuple[float, float]:
    """(upper, lower) scores where the posterior probability of a match is LINK_POSTERIOR and
    REVIEW_POSTERIOR — never below :data:`MIN_UPPER` / ``MIN_UPPER - 8``: a candidate set rich
    in true pairs makes the prior large and the posterior threshold low, but a link still needs
    evidence beyond one agreeing field."""
    base = math.log2((1 - prior) / prior)
    upper = max(base + math.log2(LINK_POSTERIOR / (1 - LINK_POSTERIOR)), MIN_UPPER)
    lower = min(max(base + math.log2(REVIEW_POSTERIOR / (1 - REVIEW_POSTERIOR)),
                    MIN_UPPER - 8), upper)
    return upper, lower


def observed_patterns(conn: Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (evidence,) in conn.execute(sa.select(t_match.c.evidence).where(
            t_match.c.outcome.in_(["link", "new"]))):
        for pattern, n in ((evidence or {}).get("patterns") or {}).items():
            counts[pattern] = counts.get(pattern, 0) + int(n)
    return counts


def estimate_model(conn: Connection, start: M.Model | None = None,
                   min_vectors: int = MIN_VECTORS) -> tuple[M.Model, int]:
    """(the model EM finds in the index's comparison vectors, how many vectors there were);
    with fewer than ``min_vectors``, (``start``, 0)."""
    counts = observed_patterns(conn)
    vectors = [linking.vector_of(p) for p, n in counts.items() for _ in range(n)]
    if len(vectors) < min_vectors:
        return start or M.default_model(), 0
    model = M.estimate(vectors, start or M.default_model(), prior_weight=PRIOR_WEIGHT)
    upper, lower = thresholds(model.prior)
    return dataclasses.replace(model, upper=upper, lower=lower), len(vectors)


def relink(conn: Connection, model: M.Model, now: dt.datetime,
           changed: list[int] | None = None) -> int:
    """Merge each person that matching left alone into a candidate that the model now links;
    returns how many were merged (the survivors are appended to ``changed``)."""
    lonely = conn.execute(sa.select(t_match.c.person_id).distinct().where(
        t_match.c.outcome == "new")).scalars().all()
    merged = 0
    for pid in lonely:
        row = conn.execute(sa.select(t_person.c.status, t_person.c.demographics)
                           .where(t_person.c.id == pid)).first()
        if row is None or row.status != ACTIVE:
            continue
        idents = conn.execute(sa.select(linking.t_id.c.domain_oid, linking.t_id.c.value)
                              .where(linking.t_id.c.person_id == pid,
                                     linking.t_id.c.status == ACTIVE)).all()
        ids = [Identifier(i.value, i.domain_oid) for i in idents]
        d = linking.demographics_of(ids, dict(row.demographics or {}))
        found = linking.find_match(conn, ids, d, model)
        target = found.person_id
        if target is None or target == pid:
            continue
        try:
            linking.merge_persons(conn, pid, target, now)
        except ValueError:
            continue
        conn.execute(t_match.insert().values(
            time=now, source="relink", identifiers="", person_id=target, candidate_id=pid,
            outcome="merge", score=found.decision.score if found.decision else None,
            evidence=found.decision.evidence() if found.decision else {}))
        merged += 1
        if changed is not None:
            changed.append(target)
    return merged


__all__ = ["LINK_POSTERIOR", "MODEL_FILE", "REVIEW_POSTERIOR", "estimate_model", "from_json",
           "load_model", "model_path", "relink", "save_model", "thresholds", "to_json"]

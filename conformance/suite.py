"""Conformance suites written as data (``conformance/suites/<name>.yaml``) — the model, the
loader and the run's values; sans-IO.

The NIST kit has no PIX Manager / PDQ Supplier test plans, so those suites are written here
from ITI TF-2 (and a regional suite is one more file of the same shape).  A suite file::

    suite: pix                                  # the runner's --actor
    title: PIX Manager ...
    reference: IHE ITI TF-2a 3.8, 3.9, 3.10 ...
    endpoints:                                  # names the steps send to; --endpoint NAME=URL
      v3: "${target}/pix"                       # overrides, ${target} is --target
    values:                                     # made once per run (--set NAME=VALUE overrides)
      his: oid                                  # a fresh OID under the run's root
      zhang: id                                 # a fresh identifier value
      zhang_birth: date                         # a birth date drawn for this run (YYYYMMDD)
      zhang_rid: resident_id ${zhang_birth} M   # a fresh GB 11643 number for that birth/sex
      zhang_day: date_iso ${zhang_birth}        # the same date as YYYY-MM-DD
      phone: digits 11                          # a number of 11 digits (the first 1)
      today: "${now}"                           # text, with ${...} of other values
    tests:
    - id: PIX-ITI8-01
      title: ...
      tf: ITI TF-2a 3.8.4.1.3                   # what the test checks, for the report
      steps:
      - id: feed
        mllp: |                                 # HL7 v2 over MLLP (segments one per line)
          MSH|^~\\&|...|${control}|P|2.3.1
        expect: ["MSA-1 = AA"]                   # see conformance/expect.py
        save: {pointer: DSC-1}                  # a value of the response, as ${pointer}
      - id: query
        soap: {endpoint: v3, action: "urn:hl7-org:v3:PRPA_IN201309UV02", body: "<...>"}
      - id: fhir
        http: {endpoint: fhir, method: GET, path: "/Patient?family=${family}"}
      - id: notified
        await: {mllp: "PID-3 has ${zhang}^^^&${his}&ISO", seconds: 30}   # at --listen

``${now}`` (HL7 DTM, UTC), ``${control}`` (a fresh message control id each time it is used),
``${uuid}`` and ``${target}`` are always there.  A value without a definition is an error of
the suite, reported before anything is sent.
"""
from __future__ import annotations

import datetime as dt
import itertools
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from conformance.hl7feed import resident_id

SUITES_DIR = Path(__file__).resolve().parent / "suites"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
KINDS = ("mllp", "soap", "http", "await")


class SuiteError(ValueError):
    """A suite file that cannot be run as written."""


@dataclass
class Step:
    id: str
    kind: str                          # mllp, soap, http, await
    spec: Any                          # the message text, or the mapping of the kind
    expect: list[str] = field(default_factory=list)
    save: dict[str, str] = field(default_factory=dict)
    goal: str = ""


@dataclass
class SuiteTest:
    __test__ = False   # not a pytest class
    id: str
    title: str
    tf: str
    steps: list[Step]


@dataclass
class Suite:
    name: str
    title: str
    reference: str
    endpoints: dict[str, str]
    values: dict[str, str]
    tests: list[SuiteTest]
    path: Path | None = None


def _step(raw: Mapping, where: str) -> Step:
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        raise SuiteError(f"{where}: a step has exactly one of {', '.join(KINDS)}")
    expect = raw.get("expect") or []
    if isinstance(expect, str):
        expect = [expect]
    if not all(isinstance(e, str) for e in expect):
        raise SuiteError(f"{where}: expect is a list of strings")
    save = raw.get("save") or {}
    if not isinstance(save, dict):
        raise SuiteError(f"{where}: save is a mapping name -> path")
    return Step(str(raw.get("id", kinds[0])), kinds[0], raw[kinds[0]], list(expect),
                {str(k): str(v) for k, v in save.items()}, str(raw.get("goal", "")))


def parse(text: str, path: Path | None = None) -> Suite:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path or 'suite'}: not YAML: {exc}") from None
    if not isinstance(data, dict) or "suite" not in data or "tests" not in data:
        raise SuiteError(f"{path or 'suite'}: a suite has 'suite' and 'tests'")
    tests = []
    for t in data["tests"] or []:
        tid = str(t.get("id", ""))
        steps = [_step(s, f"{tid}/{s.get('id', '?')}") for s in t.get("steps") or []]
        if not tid or not steps:
            raise SuiteError(f"{path or 'suite'}: a test without id or steps: {t!r:.200}")
        tests.append(SuiteTest(tid, str(t.get("title", "")), str(t.get("tf", "")), steps))
    ids = [t.id for t in tests]
    if len(set(ids)) != len(ids):
        raise SuiteError(f"{path or 'suite'}: test ids repeat")
    return Suite(str(data["suite"]), str(data.get("title", "")),
                 str(data.get("reference", "")),
                 {str(k): str(v) for k, v in (data.get("endpoints") or {}).items()},
                 {str(k): str(v) for k, v in (data.get("values") or {}).items()}, tests, path)


def load(name_or_path: str | Path) -> Suite:
    """A suite by name (``conformance/suites/<name>.yaml``) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise SuiteError(f"no suite {name_or_path} ({path})")
    return parse(path.read_text("utf-8"), path)


def names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


class Values:
    """The run's values: generated once, then substituted into every message."""

    def __init__(self, suite: Suite, target: str = "", overrides: Mapping[str, str] = (),
                 root: str | None = None, seed: int | None = None):
        self.stamp = int(time.time() * 1000)
        self.root = root or f"1.2.156.112604.1.98.{self.stamp}"
        self.rng = random.Random(seed if seed is not None else self.stamp)
        self._oids = itertools.count(1)
        self._ids = itertools.count(1)
        self._controls = itertools.count(1)
        self.values: dict[str, str] = {"target": target.rstrip("/")}
        overrides = dict(overrides)
        for name, definition in suite.values.items():
            self.values[name] = overrides.pop(name) if name in overrides else \
                self._make(name, definition)
        self.values.update(overrides)

    def _make(self, name: str, definition: str) -> str:
        words = definition.split()
        if words == ["oid"]:
            return f"{self.root}.{next(self._oids)}"
        if words == ["id"]:
            return f"T{self.stamp % 10**9:09d}{next(self._ids):03d}"
        if len(words) == 2 and words[0] == "digits" and words[1].isdigit():
            return "1" + "".join(str(self.rng.randrange(10)) for _ in range(int(words[1]) - 1))
        if len(words) == 2 and words[0] == "date_iso":      # YYYYMMDD -> YYYY-MM-DD (FHIR)
            d = self.expand(words[1])
            return f"{d[:4]}-{d[4:6]}-{d[6:8]}"
        if words == ["date"]:   # drawn per run, so repeated runs do not meet their own people
            day = dt.date(1940, 1, 1) + dt.timedelta(days=self.rng.randrange(365 * 65))
            return f"{day:%Y%m%d}"
        if words and words[0] == "resident_id":
            try:
                birth = dt.datetime.strptime(self.expand(words[1]), "%Y%m%d").date()
                return resident_id(birth, words[2], self.rng)
            except (IndexError, ValueError):
                raise SuiteError(f"value {name}: resident_id YYYYMMDD M|F") from None
        return self.expand(definition)

    def expand(self, text: str, extra: Mapping[str, str] = ()) -> str:
        """``text`` with every ``${name}``; raises SuiteError naming one without a value."""
        extra = dict(extra)

        def one(m: re.Match) -> str:
            name = m.group(1)
            if name == "control":
                return f"C{self.stamp % 10**8}{next(self._controls):04d}"
            if name == "now":
                return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
            if name == "uuid":
                return str(uuid.uuid4())
            if name in extra:
                return extra[name]
            if name in self.values:
                return self.values[name]
            raise SuiteError(f"no value for ${{{name}}}")
        return PLACEHOLDER.sub(one, text)


__all__ = ["SUITES_DIR", "SuiteError", "Step", "SuiteTest", "Suite", "parse", "load", "names",
           "Values"]

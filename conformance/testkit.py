"""The NIST XDS Toolkit test kit on disk: its tests, their sections and actor collections.

Layout (``../shared/standards/nist-xds-toolkit``, see its README): ``testkit/tests/<id>/``
holds ``readme.txt`` (first line the title), ``index.idx`` (the sections, in the order they
run), ``collections.txt`` (one collection name per line, e.g. ``reg``, ``rep``, ``reg_mu``) and
a folder per section with its ``testplan.xml``; ``testkit/actorcollections/<name>.txt`` names
an actor collection (its first line, e.g. "Document Registry").  A section listed in
``index.idx`` without a folder is an error of the kit and reported as such.

The runner's suites map to collections: ``reg`` is the Document Registry's required
collection, ``rep`` the Document Repository's, ``reg_mu`` the Metadata Update option
(ITI-57), ``reg_rm`` Remove Metadata (ITI-62); ``rg`` the XCA Responding Gateway's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from conformance import testplan

DEFAULT_KIT = Path(__file__).resolve().parent.parent.parent / "shared" / "standards" / \
    "nist-xds-toolkit"
KIT_ENV = "HIE_CONFORMANCE_TESTKIT"

# suite (the runner's --actor) -> the kit's collections it runs
SUITES = {
    "reg": ("reg", "reg_mu", "reg_rm"),
    "rep": ("rep",),
    "rg": ("rg",),
}
OPTIONS = {"reg_mu": "Metadata Update (ITI-57)", "reg_rm": "Remove Metadata (ITI-62)"}


class TestKitError(ValueError):
    """The kit is not where it was looked for, or a test of it is malformed."""

    __test__ = False   # not a pytest class


@dataclass
class Test:
    __test__ = False   # not a pytest class
    id: str
    title: str
    sections: list[str]
    collections: set[str]
    path: Path
    problems: list[str] = field(default_factory=list)

    def plan(self, section: str) -> testplan.TestPlan:
        """The test plan of ``section``; raises TestKitError or TestPlanError."""
        path = self.path / section / "testplan.xml"
        if not path.is_file():
            raise TestKitError(f"test {self.id}: section {section!r} has no testplan.xml")
        return testplan.load(path)

    def plans(self) -> list[testplan.TestPlan]:
        return [self.plan(s) for s in self.sections]

    def readable_plans(self):
        """(section, plan) of each section whose plan reads (the others are reported where
        the test runs)."""
        for section in self.sections:
            try:
                yield section, self.plan(section)
            except (TestKitError, testplan.TestPlanError):
                continue


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return []
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


class TestKit:
    """The kit under ``root`` (the folder holding ``testkit/``)."""

    __test__ = False   # not a pytest class

    def __init__(self, root: Path | str | None = None):
        root = Path(root or os.environ.get(KIT_ENV) or DEFAULT_KIT)
        if (root / "testkit").is_dir():
            root = root / "testkit"
        if not (root / "tests").is_dir():
            raise TestKitError(f"no NIST XDS Toolkit test kit at {root} (set {KIT_ENV} or "
                               "--testkit)")
        self.root = root

    @cached_property
    def tests(self) -> dict[str, Test]:
        out = {}
        for d in sorted((self.root / "tests").iterdir()):
            if not d.is_dir():
                continue
            title = (_lines(d / "readme.txt") or [""])[0]
            sections = _lines(d / "index.idx")
            if not sections and (d / "testplan.xml").is_file():
                sections = ["."]           # a test of one section, its plan at the top
            test = Test(d.name, title, sections, set(_lines(d / "collections.txt")), d)
            test.problems = [f"section {s!r} has no testplan.xml" for s in sections
                             if not (d / s / "testplan.xml").is_file()]
            out[d.name] = test
        return out

    def collection(self, name: str) -> list[Test]:
        """The tests of collection ``name``, by id."""
        return [t for t in self.tests.values() if name in t.collections]

    def suite(self, actor: str) -> dict[str, list[Test]]:
        """Collection name -> its tests, for the runner's ``--actor``."""
        if actor not in SUITES:
            raise TestKitError(f"no NIST suite for actor {actor!r}; known: "
                               + ", ".join(sorted(SUITES)))
        return {c: self.collection(c) for c in SUITES[actor]}

    def actor_collection_title(self, name: str) -> str:
        return (_lines(self.root / "actorcollections" / f"{name}.txt") or [OPTIONS.get(name, "")]
                )[0]

    def codes(self) -> Path:
        """The affinity-domain codes the tests' metadata uses (environment/default/codes.xml)."""
        return self.root.parent / "environment" / "default" / "codes.xml"


__all__ = ["DEFAULT_KIT", "KIT_ENV", "SUITES", "OPTIONS", "TestKitError", "Test", "TestKit"]

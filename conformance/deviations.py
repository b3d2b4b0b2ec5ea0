"""Where a NIST test plan contradicts the IHE Technical Framework — the runner's exclusions.

``conformance/DEVIATIONS.md`` holds one table; each row names a test, a section and a step
(``*``: all), the Technical Framework section the plan contradicts and why.  The runner does
not send an excluded step; a step cell ``step: Check`` (e.g. ``retrieve: ReferenceDocument``)
sends the step and waives only its checks whose name begins with ``Check`` when they fail.
Every report (console, JUnit, HTML) lists each exclusion and waiver with its reason; nothing
else is skipped.  :func:`load` reads the table (rows of five cells after a
header row ``| test | section | step | TF | reason |``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "DEVIATIONS.md"


@dataclass(frozen=True)
class Deviation:
    test: str
    section: str     # "*" or "": every section
    step: str        # "*" or "": every step
    tf: str          # e.g. "ITI TF-3 4.2.3.1.7"
    reason: str
    check: str = ""  # a verdict name prefix: only that check is waived; "": the whole step


def parse(text: str) -> list[Deviation]:
    out = []
    header = False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = False
            continue
        cells = [c.strip().strip("`").strip() for c in line.strip("|").split("|")]
        if len(cells) != 5:
            continue
        if cells[0].lower() == "test":
            header = True
            continue
        if header and not set(cells[0]) <= set("-: "):
            step, _, check = cells[2].partition(":")
            out.append(Deviation(cells[0], cells[1], step.strip(), cells[3], cells[4],
                                 check.strip()))
    return out


def load(path: Path | None = None) -> list[Deviation]:
    path = Path(path or DEFAULT)
    return parse(path.read_text("utf-8")) if path.is_file() else []


__all__ = ["DEFAULT", "Deviation", "parse", "load"]

"""What a run of test plans remembers between steps — sans-IO.

The NIST test plans chain their sections through the toolkit's log: a step records the
metadata it sent (``InputMetadata``), the response it got (``Result``), the ids it assigned
(``AssignedUids``, ``AssignedUuids``, ``AssignedPatientId``) and the values its ``Report``
elements read out with XPath; a later step takes them by ``UseId`` (``testdir="../submit"``:
another section of the same test; ``section``: which of the assigned sets; ``id``: the
symbolic id) or ``UseReport`` (``test``: another test of the kit, e.g. the patient identity
feed 15817; ``section`` and ``step``: where; ``reportName``).  :class:`RunLog` keeps those
records for one run and resolves the references, raising :class:`Unresolved` — the step then
fails with that reason, it is not sent with a placeholder in it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from lxml import etree

from conformance import xmlin
from conformance.testplan import Report, UseId, UseReport

SECTIONS = ("AssignedUids", "AssignedUuids", "AssignedPatientId")


class Unresolved(LookupError):
    """A UseId / UseReport / Report naming something the run does not have."""


@dataclass
class StepLog:
    test: str               # test id, e.g. "11990"
    section: str            # e.g. "submit"
    step: str               # e.g. "submit"
    input: bytes | None = None       # the request body sent (InputMetadata)
    output: bytes | None = None      # the response received (Result)
    assigned: dict[str, dict[str, str]] = field(default_factory=dict)   # section -> id -> value
    reports: dict[str, str] = field(default_factory=dict)
    unread: list[str] = field(default_factory=list)   # reports that found nothing, and why


def locate(testdir: str, test: str, section: str) -> tuple[str, str]:
    """(test, section) a ``testdir`` names, seen from ``test``/``section``: ``../submit`` or
    ``submit`` -> a section of this test; ``../../12346/single_doc`` -> a section of another;
    empty, ``.`` or ``THIS`` -> this section."""
    parts = [p for p in testdir.replace("\\", "/").split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    rest = parts[ups:]
    if not rest or rest == ["THIS"]:
        return test, section
    if ups >= 2:
        return rest[0], (rest[1] if len(rest) > 1 else ".")
    return test, rest[-1]


def evaluate(report: Report, log: StepLog) -> str:
    """The value ``report`` reads from ``log`` (its XPath over InputMetadata or Result): the
    text of the first node, or the value of an XPath expression that is not a node set."""
    doc = log.input if report.section == "InputMetadata" else \
        log.output if report.section == "Result" else None
    if doc is None:
        raise Unresolved(f"report {report.name}: no {report.section} in step {log.step}")
    try:
        found = xmlin.parse(doc).xpath(report.xpath)
    except (etree.XMLSyntaxError, etree.XPathError) as exc:
        raise Unresolved(f"report {report.name}: {exc}") from None
    if isinstance(found, list):
        if not found:
            raise Unresolved(f"report {report.name}: nothing at {report.xpath}")
        first = found[0]
        return first if isinstance(first, str) else "".join(first.itertext())
    if isinstance(found, bool):
        return "true" if found else "false"
    if isinstance(found, float) and found.is_integer():
        return str(int(found))
    return str(found)


class RunLog:
    """The steps of one run, by (test, section, step)."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, str, str], StepLog] = {}

    def record(self, log: StepLog, reports: Sequence[Report] = ()) -> StepLog:
        """Keep ``log`` with the values of its ``reports``; a report that reads nothing is
        noted in ``log.unread`` (a later step that uses it fails, naming it: :meth:`use_report`)."""
        self.steps[(log.test, log.section, log.step)] = log
        for r in reports:
            try:
                log.reports[r.name] = evaluate(r, log)
            except Unresolved as exc:
                log.unread.append(str(exc))
        return log

    def step(self, test: str, section: str, step: str) -> StepLog:
        found = self.steps.get((test, section, step))
        if found is None:   # a section of one step: its step name is often not repeated
            candidates = [v for (t, s, _), v in self.steps.items() if (t, s) == (test, section)]
            if len(candidates) == 1 and not step:
                found = candidates[0]
        if found is None:
            raise Unresolved(f"test {test} section {section} step {step} has not run")
        return found

    def use_id(self, test: str, section: str, use: UseId) -> str:
        """The value ``use`` names, for a step of ``test`` / ``section``."""
        if use.section not in SECTIONS:
            raise Unresolved(f"UseId section {use.section!r} is not one of {SECTIONS}")
        log = self.step(*locate(use.testdir, test, section), use.step)
        value = log.assigned.get(use.section, {}).get(use.id)
        if value is None:
            raise Unresolved(f"{use.section} of {log.test}/{log.section}/{log.step} has no "
                             f"{use.id!r}")
        return value

    def use_report(self, test: str, section: str, use: UseReport) -> str:
        log = self.step(use.test or test,
                         section if use.section in ("", "THIS") else use.section, use.step)
        if use.report_name not in log.reports:
            raise Unresolved(f"{log.test}/{log.section}/{log.step} reported no "
                             f"{use.report_name!r}")
        return log.reports[use.report_name]

    def values(self, test: str, section: str, uses_ids: list[UseId],
               uses_reports: list[UseReport]) -> dict[str, str]:
        """Placeholder -> value for a step (see :func:`conformance.prepare.substitute`)."""
        out = {u.symbol: self.use_id(test, section, u) for u in uses_ids}
        out.update({u.use_as: self.use_report(test, section, u) for u in uses_reports})
        return out


__all__ = ["SECTIONS", "Unresolved", "StepLog", "RunLog", "evaluate", "locate"]

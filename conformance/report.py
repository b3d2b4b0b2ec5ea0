"""The conformance runner's reports: console, JUnit XML, self-contained HTML.

- **Console**: a progress bar line per test as it finishes, then a summary — tests passed and
  failed, each failed step with the checks that failed, and every deviation applied
  (``conformance/DEVIATIONS.md``).
- **JUnit XML** (``junit.xml``; the schema CI servers read — Jenkins, GitLab): one
  ``testsuite`` per actor collection (prerequisites in their own), one ``testcase`` per test;
  a failed test has a ``failure`` listing its failed steps and checks; deviations are
  ``property`` elements of the testcase; ``system-out`` holds each step's verdicts.
- **HTML** (``report.html``, one file, no script, no external resource): per test and section,
  each step's request sent and response received (pretty-printed XML, HL7 v2 segments on
  lines), each check with its verdict, and the deviations applied.
"""
from __future__ import annotations

import html
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from lxml import etree

from conformance import xmlin
from conformance.engine import RunResult, StepResult, TestResult

_HTML_BODY_LIMIT = 200_000     # characters of one request / response shown in the HTML


def progress_line(result: TestResult, n: int, total: int, width: int = 30) -> str:
    """``[#####.....]  12/71 PASS 11990 title`` (a prerequisite: ``setup``)."""
    verdict = "PASS" if result.passed else "FAIL"
    if result.prerequisite:
        return f"[{'prerequisite':^{width}}]         {verdict} {result.id} {result.title}"
    filled = round(width * n / total) if total else width
    return (f"[{'#' * filled}{'.' * (width - filled)}] {n:>3}/{total:<3} {verdict} "
            f"{result.id} {result.title}")


def failures(step: StepResult) -> list[str]:
    out = [f"error: {step.error}"] if step.error else []
    out += [f"{v.what}: {v.detail}" for v in step.verdicts if not v.passed]
    return out


def summary(run: RunResult, out: TextIO = sys.stdout) -> None:
    tests = [t for t in run.tests if not t.prerequisite]
    setup = [t for t in run.tests if t.prerequisite]
    failed = [t for t in run.tests if not t.passed]
    prerequisites = (f" ({len(setup)} prerequisite tests, {sum(not t.passed for t in setup)} "
                     "failed)" if setup else "")
    print(f"\nsuite {run.actor}: {sum(t.passed for t in tests)} of {len(tests)} tests passed"
          f"{prerequisites} in {run.seconds:.1f} s", file=out)
    for t in failed:
        print(f"FAIL {t.id} {t.title}", file=out)
        for s in t.sections:
            if s.error:
                print(f"  {s.name}: {s.error}", file=out)
            for st in s.steps:
                for line in failures(st):
                    print(f"  {s.name}/{st.step} ({st.transaction or 'no transaction'}): "
                          f"{line[:400]}", file=out)
    excluded = [(t.id, x) for t in run.tests for x in t.excluded]
    if excluded:
        print("deviations applied (conformance/DEVIATIONS.md):", file=out)
        for test, x in excluded:
            print(f"  {test} {x}", file=out)


# -- JUnit XML ---------------------------------------------------------------------------------

def junit(run: RunResult) -> bytes:
    root = etree.Element("testsuites", name=f"hie conformance {run.actor}",
                         tests=str(len(run.tests)),
                         failures=str(sum(not t.passed for t in run.tests)),
                         time=f"{run.seconds:.3f}")
    groups: dict[str, list[TestResult]] = {}
    for t in run.tests:
        groups.setdefault("prerequisites" if t.prerequisite else t.collection, []).append(t)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run.started))
    for name, tests in groups.items():
        suite = etree.SubElement(root, "testsuite", name=f"{run.actor}.{name}",
                                 tests=str(len(tests)),
                                 failures=str(sum(not t.passed for t in tests)), errors="0",
                                 skipped="0", timestamp=stamp,
                                 time=f"{sum(t.seconds for t in tests):.3f}")
        for t in tests:
            case = etree.SubElement(suite, "testcase", classname=f"{run.actor}.{name}",
                                    name=f"{t.id} {t.title}".strip(), time=f"{t.seconds:.3f}")
            if t.excluded:
                props = etree.SubElement(case, "properties")
                for x in t.excluded:
                    etree.SubElement(props, "property", name="deviation", value=x)
            lines = []
            for s in t.sections:
                if s.error:
                    lines.append(f"{s.name}: {s.error}")
                for st in s.steps:
                    lines += [f"{s.name}/{st.step}: {f}" for f in failures(st)]
            if not t.passed:
                fail = etree.SubElement(case, "failure", message=(lines or ["failed"])[0][:500],
                                        type="ConformanceFailure")
                fail.text = "\n".join(lines)
            etree.SubElement(case, "system-out").text = "\n".join(
                f"{s.name}/{st.step} {st.transaction or '-'}"
                + (f" expected {st.expected}" if st.expected else "") + ": "
                + ("; ".join(f"{'ok' if v.passed else 'FAILED'} {v.what}" for v in st.verdicts)
                   or st.error or st.excluded or "no checks")
                for s in t.sections for st in s.steps)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:1.5em;
color:#222} h1{font-size:1.4em} table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
.pass{color:#176b2c}.fail{color:#b00020;font-weight:bold}.dev{color:#8a5a00}
details{margin:.3em 0 .3em 1em} summary{cursor:pointer}
pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:30em;font-size:12px}
"""


def _pretty(data: bytes) -> str:
    if not data:
        return "(nothing)"
    text = data.decode("utf-8", errors="replace")
    stripped = data.lstrip()
    if stripped.startswith(b"<"):
        try:
            return etree.tostring(xmlin.parse(stripped, huge=True), pretty_print=True,
                                  encoding="unicode")
        except etree.XMLSyntaxError:
            pass
    if text.startswith("MSH") or text.startswith("\x0b"):
        return text.replace("\r", "\n")
    return text


def _clip(text: str) -> str:
    return text if len(text) <= _HTML_BODY_LIMIT else \
        text[:_HTML_BODY_LIMIT] + f"\n[... {len(text) - _HTML_BODY_LIMIT} more characters]"


def _step_html(st: StepResult) -> str:
    e = html.escape
    cls = "pass" if st.passed else "fail"
    rows = "".join(f"<tr><td class={'pass' if v.passed else 'fail'}>"
                   f"{'✔' if v.passed else '✘'}</td><td>{e(v.what)}</td>"
                   f"<td>{e(v.detail[:2000])}</td></tr>" for v in st.verdicts)
    extra = "".join(f"<p class=dev>{e(x)}</p>" for x in [st.excluded] + st.waived if x)
    extra += "".join(f"<p>note: {e(n)}</p>" for n in st.notes)
    if st.error:
        extra += f"<p class=fail>error: {e(st.error)}</p>"
    return (f"<details{' open' if not st.passed else ''}><summary class={cls}>"
            f"{e(st.step)} — {e(st.transaction or 'no transaction')}"
            + (f", expected {e(st.expected)}" if st.expected else "")
            + f" — {'passed' if st.passed else 'FAILED'}"
            f" ({st.seconds * 1000:.0f} ms)</summary>"
            + (f"<p>{e(st.goal)}</p>" if st.goal else "")
            + (f"<p>to {e(st.url)}</p>" if st.url else "") + extra
            + (f"<table><tr><th></th><th>check</th><th>found</th></tr>{rows}</table>"
               if rows else "")
            + f"<details><summary>request sent</summary><pre>{e(_clip(_pretty(st.sent)))}</pre>"
            f"</details><details><summary>response received</summary>"
            f"<pre>{e(_clip(_pretty(st.received)))}</pre></details></details>")


def html_report(run: RunResult) -> str:
    e = html.escape
    tests = [t for t in run.tests if not t.prerequisite]
    ep = run.endpoints
    where = run.where or (
        f"Registry {ep.registry or '-'}, repository {ep.repository or '-'}, MLLP "
        f"{':'.join(map(str, ep.mllp)) if ep.mllp else '-'}, patient domain "
        f"{ep.patient_domain or '-'}")
    head = (f"<h1>HIE conformance — suite {e(run.actor)}</h1>"
            f"<p>{sum(t.passed for t in tests)} of {len(tests)} tests passed, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(run.started))}, "
            f"{run.seconds:.1f} s. {e(where)}.</p>")
    index = "".join(
        f"<tr><td class={'pass' if t.passed else 'fail'}>{'PASS' if t.passed else 'FAIL'}</td>"
        f"<td><a href='#t{e(t.id)}'>{e(t.id)}</a></td><td>{e(t.collection or 'prerequisite')}"
        f"</td><td>{e(t.title)}</td><td class=dev>{e('; '.join(t.excluded))}</td></tr>"
        for t in run.tests)
    body = []
    for t in run.tests:
        sections = "".join(
            f"<details{' open' if not s.passed else ''}><summary class="
            f"{'pass' if s.passed else 'fail'}>section {e(s.name)}</summary>"
            + (f"<p class=fail>{e(s.error)}</p>" if s.error else "")
            + "".join(_step_html(st) for st in s.steps) + "</details>"
            for s in t.sections)
        body.append(f"<h2 id='t{e(t.id)}' class={'pass' if t.passed else 'fail'}>{e(t.id)} "
                    f"{e(t.title)}</h2>{sections}")
    return (f"<!DOCTYPE html><html lang=zh-CN><head><meta charset=utf-8><title>HIE "
            f"conformance {e(run.actor)}</title><style>{_CSS}</style></head><body>{head}"
            f"<table><tr><th></th><th>test</th><th>collection</th><th>title</th>"
            f"<th>deviations</th></tr>{index}</table>{''.join(body)}</body></html>")


def write(run: RunResult, folder: Path) -> tuple[Path, Path]:
    """``junit.xml`` and ``report.html`` in ``folder`` (created)."""
    folder = Path(folder)
    os.makedirs(folder, exist_ok=True)
    j, h = folder / "junit.xml", folder / "report.html"
    j.write_bytes(junit(run))
    h.write_text(html_report(run), "utf-8")
    return j, h


__all__ = ["progress_line", "failures", "summary", "junit", "html_report", "write"]

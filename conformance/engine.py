"""The conformance runner's engine: runs NIST XDS test plans against a target over the wire.

A run takes a suite (``reg``, ``rep``: :data:`conformance.testkit.SUITES`), the target's
endpoints (:class:`Endpoints`) and a :class:`Wire` (HTTP and MLLP; the only I/O), and runs each
test's sections in the order of its ``index.idx`` and each section's steps in plan order, as
the NIST toolkit does (its test engine's semantics, ITI TF-2b transactions):

- **Prerequisites** first, once per run: the patient identity feed 15817 (the run's patient,
  fed over MLLP in ``--patient-domain``; reg and rep), and every test another test takes values from
  (``UseReport test=``, ``UseId testdir="../../12346/..."``: e.g. 12346, which loads the
  registry for the stored-query tests under the fresh patient of 15818).  A test that depends
  on a failed prerequisite fails with the value it could not have.
- **A step**: its placeholders resolved from the run's log (:mod:`conformance.log`) and
  :func:`conformance.build.builtins`; the request built (:mod:`conformance.build`); sent;
  the response checked (:mod:`conformance.checks`): ExpectedStatus / ErrorCode, ExpectedContents,
  ReferenceDocument, Report values, and Assertions over the plan's log (``THIS``: a
  ``TestResults`` document of ``TestStep/<Transaction step=>/InputMetadata|Result``, the shape
  of the toolkit's log the kit's XPaths walk).  The first failed step ends its section (later
  steps build on it); the test's other sections still run.
- **The patient id** a submission carries: the step's ``$patientid$`` if it has one, else the
  test's own (a ``NewPatientId`` step, or the feed its other steps name), else 15817's;
  ``AltPatientId``: an id in the patient domain never fed (11996 expects
  XDSUnknownPatientId); ``NoPatientId``: the metadata's own.
- **Exclusions** (:mod:`conformance.deviations`): a step excluded where its plan contradicts
  the Technical Framework is not sent, and every report shows it with its reason.

Nothing of the node is imported: the runner checks any vendor's endpoints the same way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from lxml import etree

from conformance import build, checks, hl7feed, soap_client, xmlin
from conformance.deviations import Deviation
from conformance.log import RunLog, StepLog, Unresolved, locate
from conformance.testkit import SUITES, Test, TestKit, TestKitError
from conformance.testplan import TestPlan, TestPlanError, TestStep, UseReport

PATIENT_FEED = "15817"          # the run's patient (Register and Provide tests)
FEEDING_SUITES = ("reg", "rep")  # the suites whose submissions need that patient
_LOG_LIMIT = 2_000_000          # bytes of a request / response kept for the report


@dataclass
class Endpoints:
    registry: str = ""
    repository: str = ""
    mllp: tuple[str, int] | None = None
    patient_domain: str = ""        # assigning authority OID of the fed patient ids
    repository_uid: str = ""        # $repuid$


class Wire(Protocol):
    def soap(self, url: str, request: soap_client.Request) -> tuple[int, str, bytes]: ...
    def feed(self, host: str, port: int, message: str) -> hl7feed.Ack: ...


class HttpWire:
    """HTTP (httpx) and MLLP (:func:`conformance.hl7feed.send`)."""

    def __init__(self, timeout: float = 60.0):
        import httpx
        self.client = httpx.Client(timeout=timeout)
        self.error = httpx.HTTPError

    def soap(self, url: str, request: soap_client.Request) -> tuple[int, str, bytes]:
        r = self.client.post(url, content=request.body,
                             headers={"content-type": request.content_type})
        return r.status_code, r.headers.get("content-type", ""), r.content

    def feed(self, host: str, port: int, message: str) -> hl7feed.Ack:
        return hl7feed.send(host, port, message)

    def close(self) -> None:
        self.client.close()


@dataclass
class StepResult:
    step: str
    transaction: str                 # ITI-41, ..., "" (NullTransaction), "ITI-8"
    expected: str
    goal: str = ""
    url: str = ""
    sent: bytes = b""
    received: bytes = b""
    verdicts: list[checks.Verdict] = field(default_factory=list)
    error: str = ""                  # why the step could not be run or read
    excluded: str = ""               # a deviation: not sent
    waived: list[str] = field(default_factory=list)   # deviations: checks not held against it
    notes: list[str] = field(default_factory=list)    # e.g. a Report that found nothing
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.excluded) or (not self.error and all(v.passed for v in self.verdicts))


@dataclass
class SectionResult:
    name: str
    steps: list[StepResult] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and all(s.passed for s in self.steps)


@dataclass
class TestResult:
    __test__ = False   # not a pytest class
    id: str
    title: str
    collection: str                  # "" for a prerequisite
    sections: list[SectionResult] = field(default_factory=list)
    prerequisite: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.sections)

    @property
    def excluded(self) -> list[str]:
        """Each deviation applied: a step not sent, or a check not held against a step."""
        return [f"{s.name}/{st.step}: {x}" for s in self.sections for st in s.steps
                for x in ([st.excluded] if st.excluded else []) + st.waived]


@dataclass
class RunResult:
    actor: str
    endpoints: Endpoints
    tests: list[TestResult] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    where: str = ""          # what was tested, in words (else the endpoints)

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tests)


def clip(data: bytes) -> bytes:
    """A request or response as the report keeps it (at most :data:`_LOG_LIMIT` bytes)."""
    return data if len(data) <= _LOG_LIMIT else data[:_LOG_LIMIT] + b"\n[... clipped]"


def dependencies(test: Test) -> list[str]:
    """The other tests ``test`` takes values from, in the order it names them."""
    out: list[str] = []
    for section, plan in test.readable_plans():
        for step in plan.steps:
            tx = step.transaction
            names = [u.test for u in tx.use_reports if u.test]
            names += [locate(u.testdir, test.id, section)[0] for u in tx.use_ids]
            out += [n for n in names if n != test.id and n not in out]
    return out


class Runner:
    def __init__(self, kit: TestKit, endpoints: Endpoints, wire: Wire,
                 deviations: list[Deviation] = (),
                 progress: Callable[[TestResult, int, int], None] | None = None):
        self.kit = kit
        self.endpoints = endpoints
        self.wire = wire
        self.deviations = list(deviations)
        self.progress = progress
        self.log = RunLog()
        self.done: dict[str, TestResult] = {}
        self.test_patient: dict[str, str] = {}
        self.unknown_patient = ""
        self.result: RunResult | None = None

    # -- the run ------------------------------------------------------------------------------
    def plan_tests(self, actor: str, only: list[str] | None = None) -> list[tuple[str, Test]]:
        """(collection, test) of the suite, in the kit's order; ``only``: these ids."""
        suite = self.kit.suite(actor)
        picked = [(c, t) for c, tests in suite.items() for t in tests]
        if only:
            unknown = set(only) - {t.id for _, t in picked}
            if unknown:
                raise TestKitError(f"not in suite {actor}: {', '.join(sorted(unknown))}")
            picked = [(c, t) for c, t in picked if t.id in only]
        return picked

    def run(self, actor: str, only: list[str] | None = None) -> RunResult:
        if actor not in SUITES:
            raise TestKitError(f"no suite {actor!r}")
        picked = self.plan_tests(actor, only)
        self.result = RunResult(actor, self.endpoints)
        start = time.monotonic()
        if actor in FEEDING_SUITES:
            self._prerequisite(PATIENT_FEED, len(picked))
        for n, (collection, test) in enumerate(picked, 1):
            for dep in dependencies(test):
                self._prerequisite(dep, len(picked))
            result = self._run_test(test, collection)
            self.result.tests.append(result)
            if self.progress:
                self.progress(result, n, len(picked))
        self.result.seconds = time.monotonic() - start
        return self.result

    def _prerequisite(self, test_id: str, total: int) -> None:
        if test_id in self.done:
            return
        test = self.kit.tests.get(test_id)
        if test is None:
            self.done[test_id] = TestResult(test_id, "", "", [SectionResult(
                "", error=f"test {test_id} is not in the test kit")], prerequisite=True)
            self.result.tests.append(self.done[test_id])
            return
        self.done[test_id] = TestResult(test_id, test.title, "", prerequisite=True)  # no cycles
        for dep in dependencies(test):
            self._prerequisite(dep, total)
        result = self._run_test(test, "", prerequisite=True)
        self.done[test_id] = result
        self.result.tests.append(result)
        if self.progress:
            self.progress(result, 0, total)

    def _run_test(self, test: Test, collection: str, prerequisite: bool = False) -> TestResult:
        start = time.monotonic()
        result = TestResult(test.id, test.title, collection, prerequisite=prerequisite)
        self.done.setdefault(test.id, result)
        for problem in test.problems:
            result.sections.append(SectionResult("", error=problem))
        for section in test.sections:
            sr = SectionResult(section)
            result.sections.append(sr)
            try:
                plan = test.plan(section)
            except (TestKitError, TestPlanError) as exc:
                sr.error = str(exc)
                continue
            this = etree.Element("TestResults")
            for step in plan.steps:
                res = self._run_step(test, section, plan, step, this)
                sr.steps.append(res)
                if not res.passed:
                    break
        result.seconds = time.monotonic() - start
        return result

    # -- one step -------------------------------------------------------------------------------
    def _deviations(self, test: str, section: str, step: str) -> list[Deviation]:
        return [d for d in self.deviations if d.test == test
                and d.section in ("", "*", section) and d.step in ("", "*", step)]

    def _default_patient(self, test: Test) -> str:
        """The patient of ``test``'s steps that name none: its ``NewPatientId``, else the feed
        one of its steps takes ``$patientid$`` from (12346's sections share 15818's), else
        15817's."""
        if test.id in self.test_patient:
            return self.test_patient[test.id]
        for section, plan in test.readable_plans():
            for step in plan.steps:
                for use in step.transaction.use_reports:
                    if use.test and use.use_as == "$patientid$" == use.report_name:
                        return self.log.use_report(test.id, section, use)
        return self.log.use_report(test.id, "", _feed_report(PATIENT_FEED))

    def _patient(self, test: Test, step: TestStep, values: dict[str, str]) -> str | None:
        if "NoPatientId" in step.transaction.flags:
            return None
        if "AltPatientId" in step.flags:   # 11996: a patient id the registry was never fed
            if not self.unknown_patient:
                self.unknown_patient = hl7feed.new_patient_id(self.endpoints.patient_domain,
                                                              "UNFED")
            return self.unknown_patient
        if "$patientid$" not in values:
            raise Unresolved("no patient for this submission: the patient identity feed "
                             f"{PATIENT_FEED} has not run")
        return values["$patientid$"]

    def _run_step(self, test: Test, section: str, plan: TestPlan, step: TestStep,
                  this: etree._Element) -> StepResult:
        tx = step.transaction
        res = StepResult(step.id, tx.transaction if tx.element != "PatientIdentityFeedTransaction"
                         else "ITI-8", step.expected_status, step.goal)
        deviations = self._deviations(test.id, section, step.id)
        whole = [d for d in deviations if not d.check]
        if whole:
            res.excluded = f"not sent — {whole[0].tf}: {whole[0].reason}"
            return res
        if plan.unknown:
            res.error = "the runner cannot read " + ", ".join(plan.unknown)
            return res
        if tx.wait_before_ms:
            time.sleep(tx.wait_before_ms / 1000)
        start = time.monotonic()
        record = StepLog(test.id, section, step.id)
        try:
            values = build.builtins(repository_uid=self.endpoints.repository_uid)
            values.update(self.log.values(test.id, section, tx.use_ids, tx.use_reports))
            if "$patientid$" not in values and tx.element not in (
                    "PatientIdentityFeedTransaction", "NewPatientId"):
                try:
                    values["$patientid$"] = self._default_patient(test)
                except Unresolved:    # a step that needs one fails naming $patientid$
                    pass
            record.reports.update(values)
            if tx.element in ("PatientIdentityFeedTransaction", "NewPatientId"):
                self._feed(test, step, record, res)
            elif tx.element != "NullTransaction":
                self._exchange(test, section, step, values, record, res)
            self.log.record(record, tx.reports)
            res.notes += record.unread
            _append_log(this, step, record)
            for a in tx.assertions:
                res.verdicts.append(checks.assertion(a.id, _with_values(a.xpath, values), this))
        except Unresolved as exc:
            res.error = f"a value from an earlier step is missing: {exc}"
        except build.BuildError as exc:
            res.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - transport and the like: the step fails
            res.error = step_error(exc, res.url)
        for d in deviations:       # a check the plan gets wrong is shown, not held against it
            for i, v in enumerate(res.verdicts):
                if v.what.startswith(d.check) and not v.passed:
                    res.verdicts[i] = checks.Verdict(v.what, True, f"waived: {v.detail}")
                    res.waived.append(f"{v.what} waived — {d.tf}: {d.reason}")
        res.seconds = time.monotonic() - start
        return res

    def _feed(self, test: Test, step: TestStep, record: StepLog, res: StepResult) -> None:
        ep = self.endpoints
        if ep.mllp is None or not ep.patient_domain:
            raise build.BuildError("a patient identity feed needs --mllp and --patient-domain")
        patient = hl7feed.new_patient_id(ep.patient_domain)
        message = hl7feed.adt_a01(patient)
        res.url = f"mllp://{ep.mllp[0]}:{ep.mllp[1]}"
        res.sent = message.encode("utf-8")
        ack = self.wire.feed(ep.mllp[0], ep.mllp[1], message)
        res.received = ack.message.encode("utf-8")
        res.verdicts += checks.status(step.expected_status,
                                      "Success" if ack.accepted else "Failure",
                                      [ack.code] if not ack.accepted else [], [ack.text], [], [])
        record.input, record.output = res.sent, res.received
        record.reports["$patientid$"] = patient
        if "NewPatientId" in step.flags and ack.accepted:
            self.test_patient[test.id] = patient

    def _exchange(self, test: Test, section: str, step: TestStep, values: dict[str, str],
                  record: StepLog, res: StepResult) -> None:
        tx = step.transaction
        folder = test.path / section
        patient = (self._patient(test, step, values) if tx.transaction in build.SUBMISSIONS
                   else None)
        built = build.build(tx, folder, values, patient)
        url = getattr(self.endpoints, built.endpoint)
        if not url:
            raise build.BuildError(f"{tx.transaction} goes to the {built.endpoint}: give "
                                   f"--{built.endpoint}-url")
        res.url = url
        request = (soap_client.mtom(built.action, built.body, url, built.documents,
                                    built.mime_types) if built.documents
                   else soap_client.plain(built.action, built.body, url))
        res.sent = clip(request.body)
        record.input = built.metadata
        record.assigned = built.assigned
        record.reports.update(built.reports)
        code, ctype, body = self.wire.soap(url, request)
        res.received = clip(body)
        try:
            reply = soap_client.read_reply(ctype, body)
        except soap_client.ReplyError as exc:
            raise soap_client.ReplyError(f"HTTP {code}: {exc}") from None
        if reply.is_fault:
            res.verdicts += checks.status(step.expected_status, "Fault", [], [reply.fault_reason],
                                          step.expected_error_codes,
                                          step.expected_error_messages)
        else:
            if reply.relates_to and reply.relates_to != request.message_id:
                res.verdicts.append(checks.Verdict(
                    "WS-Addressing RelatesTo", False,
                    f"{reply.relates_to} does not name the request {request.message_id}"))
            found, errors = soap_client.registry_status(reply.body)
            res.verdicts += checks.status(step.expected_status, found,
                                          [e.code for e in errors if e.severity == "Error"]
                                          + [e.code for e in errors if e.severity != "Error"],
                                          [e.context for e in errors],
                                          step.expected_error_codes,
                                          step.expected_error_messages)
            record.output = etree.tostring(reply.body)
        for name, attrs in tx.expected_contents:
            res.verdicts.append(checks.contents(name, attrs, reply.body))
        for ref in tx.reference_documents:
            uid = _with_values(ref.uid, values)
            expected = build.reference_file(folder, ref.file)
            metadata = None
            if tx.reference_metadata:
                ref_test, ref_section = locate(tx.reference_metadata[0], test.id, section)
                source = self.log.step(ref_test, ref_section, tx.reference_metadata[1])
                metadata = xmlin.parse(source.output, huge=True) if source.output else None
            res.verdicts += checks.retrieved(uid, expected, reply.body, reply.attachments,
                                             metadata)


def step_error(exc: Exception, url: str) -> str:
    """Why a step could not be done, in words, from what went wrong on the wire."""
    if isinstance(exc, soap_client.ReplyError):
        return f"the response cannot be read: {exc}"
    if isinstance(exc, hl7feed.FeedError):     # no connection, or an answer that is no block
        return f"HL7 v2: {exc}"
    if isinstance(exc, OSError):
        return f"{url or 'target'}: {exc}"
    return f"{type(exc).__name__}: {exc}"    # httpx errors and the like


def _feed_report(test: str) -> UseReport:
    """The patient id a feed test (15817, 15817b) reported."""
    return UseReport("$patientid$", "pif", "step", "$patientid$", test)


def _with_values(text: str, values: dict[str, str]) -> str:
    """Placeholders in an XPath or uid: ``$name$`` and the bare names a ``UseReport`` gives
    (``useAs="orig_uuid"``), longest first so one name inside another is not split."""
    for name in sorted(values, key=len, reverse=True):
        if name in text:
            text = text.replace(name, values[name])
    return text


def _append_log(this: etree._Element, step: TestStep, record: StepLog) -> None:
    """The step in the plan's log (``THIS``): TestStep/<Transaction step=>/InputMetadata,
    Result, as the toolkit's log.xml has them."""
    el = etree.SubElement(this, "TestStep", id=step.id)
    etree.SubElement(el, "ExpectedStatus").text = step.expected_status
    tx = etree.SubElement(el, step.transaction.element, step=step.id)
    for name, data in (("InputMetadata", record.input), ("Result", record.output)):
        part = etree.SubElement(tx, name)
        if data and data.lstrip().startswith(b"<"):
            try:
                part.append(xmlin.parse(data, huge=True))
            except etree.XMLSyntaxError:
                part.text = data.decode("utf-8", errors="replace")
        elif data:
            part.text = data.decode("utf-8", errors="replace")


__all__ = ["Endpoints", "Wire", "HttpWire", "StepResult", "SectionResult", "TestResult",
           "RunResult", "Runner", "clip", "dependencies", "PATIENT_FEED"]

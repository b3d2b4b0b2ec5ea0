"""The NIST XDS Toolkit test plan (``testplan.xml``) as typed data — sans-IO.

A test of the toolkit's test kit is a folder: ``readme.txt`` (first line the title),
``index.idx`` (the sections in order), ``collections.txt`` (the actor collections it belongs
to) and one folder per section holding ``testplan.xml`` with the metadata and documents it
sends.  A test plan is a sequence of ``TestStep`` elements; each expects a status
(``ExpectedStatus``: Success, PartialSuccess, Failure, Fault — ebRS 3.0 RegistryResponse
status, ITI TF-3 4.2.4 error reporting), perhaps error codes (``ExpectedErrorCode``, ITI TF-3
Table 4.2.4.1-2) and error text, and runs one transaction:

=============================  ===========================================================
element                        transaction (IHE ITI TF-2)
=============================  ===========================================================
RegisterTransaction            ITI-42 Register Document Set-b
ProvideAndRegisterTransaction  ITI-41 Provide and Register Document Set-b
StoredQueryTransaction         ITI-18 Registry Stored Query
RetrieveTransaction            ITI-43 Retrieve Document Set
MuTransaction                  ITI-57 Update Document Set (Metadata Update)
RemoveMetadataTransaction      ITI-62 Remove Metadata
PatientIdentityFeedTransaction ITI-8 Patient Identity Feed (HL7 v2 ADT over MLLP)
XCQTransaction                 ITI-38 Cross Gateway Query (a Responding Gateway)
XCRTransaction                 ITI-39 Cross Gateway Retrieve
NullTransaction                none: assertions over an earlier step's output
=============================  ===========================================================

Inside a transaction: ``MetadataFile`` (the request, perhaps ebRIM 2.1), ``Document`` (the
documents of an ITI-41, by id), ``AssignUuids`` / ``NoAssignUids`` (replace symbolic ids),
``NoPatientId`` (keep the metadata's patient ids), ``UseId`` / ``UseReport`` (values from
earlier sections: assigned UUIDs and uniqueIds, reported values), ``Report`` (an XPath over a
part of this step's input or output, saved under a name), ``ExpectedContents`` (named checks
of a query's result), ``Assertions`` (XPath assertions), ``ParseMetadata``, ``WaitBefore``.
Anything else is kept in :attr:`Transaction.unknown` so a runner can refuse it instead of
ignoring it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from lxml import etree as ET

from conformance import xmlin

# testplan element -> the IHE transaction it runs ("" for none)
TRANSACTIONS = {
    "RegisterTransaction": "ITI-42",
    "ProvideAndRegisterTransaction": "ITI-41",
    "StoredQueryTransaction": "ITI-18",
    "RetrieveTransaction": "ITI-43",
    "MuTransaction": "ITI-57",
    "RemoveMetadataTransaction": "ITI-62",
    "PatientIdentityFeedTransaction": "ITI-8",
    "XCQTransaction": "ITI-38",
    "XCRTransaction": "ITI-39",
    "NullTransaction": "",
}
STATUSES = ("Success", "PartialSuccess", "Failure", "Fault")
_FLAGS = {"XDSb", "AssignUuids", "NoAssignUids", "NoPatientId", "NoMetadata", "ParseMetadata",
          "CreateNewPatientId"}
_STEP_TEXT = {"Goal", "Rule"}
# step-level markers: AltPatientId (send a patient id the registry does not know), NewPatientId
# (a step of its own: allocate a new patient id, and feed it)
_STEP_FLAGS = {"AltPatientId", "NewPatientId"}


class TestPlanError(ValueError):
    """A test plan that cannot be read (not XML, or not a TestPlan)."""

    __test__ = False   # not a pytest class


@dataclass(frozen=True)
class UseId:
    """A value assigned in an earlier section (``section``: AssignedUuids or AssignedUids),
    by the symbolic ``id`` it had there, substituted for ``symbol``."""

    testdir: str
    id: str
    symbol: str
    step: str
    section: str


@dataclass(frozen=True)
class UseReport:
    """A value an earlier step reported (``reportName``), substituted for ``use_as``; ``test``
    names another test of the kit (e.g. the patient identity feed 15817), empty for this one."""

    report_name: str
    section: str
    step: str
    use_as: str
    test: str = ""


@dataclass(frozen=True)
class Report:
    """An XPath over ``section`` (InputMetadata, Result, ...) of this step, saved as ``name``."""

    name: str
    section: str
    xpath: str


@dataclass(frozen=True)
class Assertion:
    id: str
    xpath: str


@dataclass(frozen=True)
class DataRef:
    file: str    # "THIS" (this test plan's log) or another section's
    alias: str


@dataclass(frozen=True)
class ReferenceDocument:
    """ITI-43: the document expected back for ``uid`` (a placeholder), compared with ``file``."""

    uid: str
    file: str


@dataclass
class Transaction:
    element: str                        # e.g. "StoredQueryTransaction"
    transaction: str                    # e.g. "ITI-18"; "" for NullTransaction
    flags: set[str] = field(default_factory=set)
    metadata_file: str = ""
    documents: dict[str, str] = field(default_factory=dict)   # document id -> file
    use_ids: list[UseId] = field(default_factory=list)
    use_reports: list[UseReport] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    expected_contents: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    interaction: str = ""               # InteractionSequence useId (which message flavour)
    reference_documents: list[ReferenceDocument] = field(default_factory=list)
    # ITI-43: the metadata (an earlier step's query result) that says what a retrieve returns
    reference_metadata: tuple[str, str] | None = None      # (testdir, step)
    assertions: list[Assertion] = field(default_factory=list)
    data_refs: list[DataRef] = field(default_factory=list)
    wait_before_ms: int = 0
    # NoAssignUids id="Document01": keep these objects' uniqueIds (without an id: keep all)
    keep_uids: set[str] = field(default_factory=set)
    unknown: list[str] = field(default_factory=list)   # elements this reader does not know


@dataclass
class TestStep:
    __test__ = False   # not a pytest class
    id: str
    expected_status: str
    transaction: Transaction
    expected_error_codes: list[str] = field(default_factory=list)
    expected_error_messages: list[str] = field(default_factory=list)
    goal: str = ""
    unknown: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)     # AltPatientId, NewPatientId


@dataclass
class TestPlan:
    __test__ = False   # not a pytest class
    test: str                           # e.g. "11990/submit"
    steps: list[TestStep]
    rule: str = ""
    path: Path | None = None

    @property
    def unknown(self) -> list[str]:
        """Every element of the plan this reader does not know, as ``step/element``."""
        out = []
        for s in self.steps:
            out += [f"{s.id}/{u}" for u in s.unknown]
            out += [f"{s.id}/{s.transaction.element}/{u}" for u in s.transaction.unknown]
        return out


def _text(el: ET._Element | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def _transaction(el: ET._Element) -> Transaction:
    tx = Transaction(el.tag, TRANSACTIONS[el.tag])
    for c in el:
        tag = c.tag
        if not isinstance(tag, str):      # a comment
            continue
        if tag == "NoAssignUids" and c.get("id"):
            tx.keep_uids.add(c.get("id"))
        elif tag in _FLAGS:
            tx.flags.add(tag)
        elif tag == "MetadataFile":
            tx.metadata_file = _text(c)
        elif tag == "Document":
            tx.documents[c.get("id", "")] = _text(c)
        elif tag == "UseId":
            tx.use_ids.append(UseId(c.get("testdir", ""), c.get("id", ""), c.get("symbol", ""),
                                    c.get("step", ""), c.get("section", "")))
        elif tag == "UseReport":
            tx.use_reports.append(UseReport(c.get("reportName", ""), c.get("section", ""),
                                            c.get("step", ""), c.get("useAs", ""),
                                            c.get("test", "")))
        elif tag == "Report":
            tx.reports.append(Report(c.get("name", ""), c.get("section", ""), _text(c)))
        elif tag == "ExpectedContents":
            tx.expected_contents += [(g.tag, dict(g.attrib)) for g in c if isinstance(g.tag, str)]
        elif tag == "InteractionSequence":
            tx.interaction = c.get("useId", "")
        elif tag == "Assertions":
            for a in c:
                if a.tag == "Assert":
                    tx.assertions.append(Assertion(a.get("id", ""), _text(a)))
                elif a.tag == "DataRef":
                    tx.data_refs.append(DataRef(a.get("file", ""), a.get("as", "")))
                elif isinstance(a.tag, str):
                    tx.unknown.append(f"Assertions/{a.tag}")
        elif tag == "ReferenceDocument":
            tx.reference_documents.append(ReferenceDocument(c.get("uid", ""), _text(c)))
        elif tag == "ReferenceMetadata":
            tx.reference_metadata = (c.get("testdir", ""), c.get("step", ""))
        elif tag == "WaitBefore":
            tx.wait_before_ms = int(_text(c) or 0)
        else:
            tx.unknown.append(tag)
    return tx


def _step(el: ET._Element) -> TestStep:
    status, tx, unknown = "", None, []
    codes, messages, goal, flags = [], [], "", set()
    for c in el:
        tag = c.tag
        if not isinstance(tag, str):
            continue
        if tag == "ExpectedStatus":
            status = _text(c)
            if status not in STATUSES:
                unknown.append(f"ExpectedStatus={status}")
        elif tag == "ExpectedErrorCode":
            codes.append(_text(c))
        elif tag == "ExpectedErrorMessage":
            messages.append(_text(c))
        elif tag in TRANSACTIONS and tx is None:
            tx = _transaction(c)
        elif tag == "Goal":
            goal = _text(c)
        elif tag in _STEP_FLAGS:
            flags.add(tag)
        elif tag not in _STEP_TEXT:
            unknown.append(tag)
    if tx is None:
        if "NewPatientId" not in flags:
            raise TestPlanError(f"test step {el.get('id')!r} runs no transaction")
        tx = Transaction("NewPatientId", "")
    return TestStep(el.get("id", ""), status or "Success", tx, codes, messages, goal, unknown,
                    flags)


def parse(data: bytes, path: Path | None = None) -> TestPlan:
    """A test plan from the bytes of its ``testplan.xml``; raises :class:`TestPlanError`."""
    try:
        root = xmlin.parse(data)
    except Exception as exc:  # noqa: BLE001 - any XML error is the plan's
        raise TestPlanError(f"{path or 'testplan'}: not XML: {exc}") from None
    if root.tag != "TestPlan":
        raise TestPlanError(f"{path or 'testplan'}: root element {root.tag!r}, not TestPlan")
    steps = [_step(s) for s in root.findall("TestStep")]
    return TestPlan(_text(root.find("Test")), steps, _text(root.find("Rule")), path)


def load(path: Path) -> TestPlan:
    return parse(Path(path).read_bytes(), Path(path))


def symbols(plans: Sequence[TestPlan]) -> set[str]:
    """The ``$name$`` placeholders the plans' steps take from elsewhere."""
    out = set()
    for p in plans:
        for s in p.steps:
            out |= {u.symbol for u in s.transaction.use_ids}
            out |= {u.use_as for u in s.transaction.use_reports}
    return out


__all__ = ["TRANSACTIONS", "STATUSES", "TestPlanError", "UseId", "UseReport", "Report",
           "ReferenceDocument",
           "Assertion", "DataRef", "Transaction", "TestStep", "TestPlan", "parse", "load",
           "symbols"]

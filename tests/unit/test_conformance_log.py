"""The run's memory between steps (conformance/log.py): UseId and UseReport of the kit's plans
resolved from what earlier steps recorded, Report XPaths read from a step's input or output,
and every reference the run cannot satisfy reported as Unresolved."""
import pytest

from conformance.log import RunLog, StepLog, Unresolved, evaluate
from conformance.testkit import TestKit
from conformance.testplan import Report, UseId, UseReport

FOLDER = (b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" '
          b'xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"><rim:RegistryObjectList>'
          b'<rim:RegistryPackage id="urn:uuid:11111111-2222-4333-8444-555555555555">'
          b'<rim:ExternalIdentifier id="e1" registryObject="Folder01" value="P1" '
          b'identificationScheme="urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a"/>'
          b'</rim:RegistryPackage></rim:RegistryObjectList></lcm:SubmitObjectsRequest>')


@pytest.fixture(scope="module")
def kit():
    return TestKit()


def test_a_register_then_query_chain_of_the_kit(kit):
    submit, evaluate_ = kit.tests["11990"].plans()
    run = RunLog()
    run.record(StepLog("15817", "pif", "step", reports={"$patientid$": "P7^^^&1.2.156&ISO"}))
    tx = submit.steps[0].transaction
    assert run.values("11990", "submit", tx.use_ids, tx.use_reports) == {
        "$patientid$": "P7^^^&1.2.156&ISO"}
    run.record(StepLog("11990", "submit", "submit", assigned={
        "AssignedUids": {"SubmissionSet01": "1.2.156.99.1", "Document01": "1.2.156.99.2"}}))
    q = evaluate_.steps[0].transaction
    assert run.values("11990", "eval", q.use_ids, q.use_reports) == {"$ssuid$": "1.2.156.99.1"}


def test_reports_read_the_input_or_the_output(kit):
    plan = kit.tests["11999"].plan("submit")
    [folid] = [r for s in plan.steps for r in s.transaction.reports if r.name == "folid"]
    run = RunLog()
    log = run.record(StepLog("11999", "submit", "submit", input=FOLDER,
                             output=b'<r home="urn:oid:1.2.3"><n>42</n></r>'),
                     [folid, Report("home", "Result", "/r/@home"),
                      Report("n", "Result", "count(//n)"), Report("t", "Result", "//n")])
    assert log.reports == {"folid": "urn:uuid:11111111-2222-4333-8444-555555555555",
                           "home": "urn:oid:1.2.3", "n": "1", "t": "42"}
    assert log.unread == []
    missing = run.record(StepLog("11999", "x", "x", output=b"<r/>"),
                         [Report("gone", "Result", "//nothing")])
    assert missing.reports == {} and "nothing at //nothing" in missing.unread[0]
    assert run.use_report("12000", "x", UseReport("folid", "submit", "submit", "$f$",
                                                  "11999")) == log.reports["folid"]


def test_what_the_run_does_not_have_is_unresolved():
    run = RunLog()
    with pytest.raises(Unresolved, match="has not run"):
        run.use_id("1", "eval", UseId("../submit", "Document01", "$d$", "submit",
                                      "AssignedUids"))
    run.record(StepLog("1", "submit", "submit", input=b"<a/>",
                       assigned={"AssignedUuids": {"Document01": "urn:uuid:1"}}))
    assert run.use_id("1", "eval", UseId("../submit", "Document01", "$d$", "submit",
                                         "AssignedUuids")) == "urn:uuid:1"
    with pytest.raises(Unresolved, match="has no 'Document02'"):
        run.use_id("1", "eval", UseId("../submit", "Document02", "$d$", "submit",
                                      "AssignedUuids"))
    with pytest.raises(Unresolved, match="is not one of"):
        run.use_id("1", "eval", UseId("../submit", "Document01", "$d$", "submit", "Elsewhere"))
    with pytest.raises(Unresolved, match="reported no"):
        run.use_report("1", "eval", UseReport("x", "submit", "submit", "$x$"))
    log = run.steps[("1", "submit", "submit")]
    with pytest.raises(Unresolved, match="nothing at"):
        evaluate(Report("x", "InputMetadata", "//b"), log)
    with pytest.raises(Unresolved, match="no Result"):
        evaluate(Report("x", "Result", "//a"), log)
    with pytest.raises(Unresolved):
        evaluate(Report("x", "InputMetadata", "//a["), log)   # not an XPath


def test_a_report_over_a_hostile_response_expands_no_entity(tmp_path):
    """The Result comes from the target under test: a DTD is refused, so neither a file entity
    nor an internal one (the stuff of entity-expansion bombs) is read."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    log = StepLog("1", "s", "s", output=(
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}"><!ENTITY y "EXPANDED">]>'
        '<r><v>&x;</v><w>&y;</w></r>').encode())
    for path in ("string(/r/v)", "string(/r/w)"):
        with pytest.raises(Unresolved, match="DTD"):
            evaluate(Report("v", "Result", path), log)

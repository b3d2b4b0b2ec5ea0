"""The conformance runner's reading of the NIST XDS Toolkit test kit (conformance/testkit.py,
conformance/testplan.py): every test plan of the registry, repository, Metadata Update and
Remove Metadata collections read completely; what the plans say, checked on known tests; broken
plans and kits reported, not ignored; ``hie conformance list`` over the real kit and a broken
one."""
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import testplan
from conformance.testkit import SUITES, TestKit, TestKitError

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def kit():
    return TestKit()


def test_the_suites_collections_hold_the_kits_tests(kit):
    sizes = {name: len(tests) for actor in SUITES for name, tests in kit.suite(actor).items()}
    assert sizes == {"reg": 37, "reg_mu": 25, "reg_rm": 9, "rep": 13, "rg": 1}
    assert kit.tests["11990"].title == "Register single DocumentEntry"
    assert kit.tests["11990"].sections == ["submit", "eval"]
    assert kit.actor_collection_title("reg") == "Document Registry"
    assert kit.codes().is_file()
    with pytest.raises(TestKitError):
        kit.suite("xyz")


def test_every_plan_of_the_suites_is_read_completely(kit):
    seen = {}
    for actor in SUITES:
        for tests in kit.suite(actor).values():
            for t in tests:
                assert not t.problems, (t.id, t.problems)
                for plan in t.plans():
                    assert plan.unknown == [], (t.id, plan.unknown)
                    for step in plan.steps:
                        assert step.expected_status in testplan.STATUSES
                        seen[step.transaction.element] = seen.get(step.transaction.element, 0) + 1
    # every transaction the five collections use
    assert set(seen) == {"RegisterTransaction", "ProvideAndRegisterTransaction",
                         "StoredQueryTransaction", "RetrieveTransaction", "MuTransaction",
                         "RemoveMetadataTransaction", "NullTransaction", "NewPatientId",
                         "XCQTransaction"}
    # the patient identity feed they use comes from test 15817 (UseReport test="15817")
    pif = kit.tests["15817"].plan("pif").steps[0].transaction
    assert pif.transaction == "ITI-8" and "NoMetadata" in pif.flags


def test_what_a_register_and_query_test_says(kit):
    submit, evaluate = kit.tests["11990"].plans()
    assert submit.test == "11990/submit"
    [step] = submit.steps
    tx = step.transaction
    assert (tx.element, tx.transaction, step.expected_status) == (
        "RegisterTransaction", "ITI-42", "Success")
    assert tx.metadata_file == "single_doc.xml" and {"XDSb", "NoPatientId"} <= tx.flags
    assert tx.use_reports == [testplan.UseReport("$patientid$", "pif", "step", "$patientid$",
                                                 "15817")]
    query, null = evaluate.steps
    assert query.transaction.transaction == "ITI-18"
    assert query.transaction.use_ids == [testplan.UseId("../submit", "SubmissionSet01",
                                                        "$ssuid$", "submit", "AssignedUids")]
    assert query.transaction.expected_contents == [("SSwithOneDoc", {})]
    assert null.transaction.transaction == "" and null.transaction.data_refs == [
        testplan.DataRef("THIS", "output")]
    [a] = null.transaction.assertions
    assert a.id == "availabilityStatus" and a.xpath.startswith(
        "//*[local-name()='ExtrinsicObject']/@status")
    assert testplan.symbols([submit, evaluate]) == {"$patientid$", "$ssuid$"}


def test_what_repository_and_error_tests_say(kit):
    tx = kit.tests["11966"].plan("submit").steps[0].transaction
    assert tx.transaction == "ITI-41" and tx.documents == {"Document01": "my_document.txt"}
    [p] = kit.tests["11996"].plans()
    step = p.steps[0]
    assert step.flags == {"AltPatientId"} and step.expected_status == "Failure"
    assert step.expected_error_messages == ["XDSUnknownPatientId"]
    rplc = kit.tests["11998"].plan("rplc")
    assert rplc.steps[0].transaction.element == "NewPatientId"
    assert rplc.steps[1].expected_status == "Failure"


def _kit(tmp_path: Path, plan: str, index: str = "s") -> Path:
    t = tmp_path / "testkit" / "tests" / "90001"
    (t / "s").mkdir(parents=True)
    (t / "readme.txt").write_text("A broken test\nmore text\n")
    (t / "index.idx").write_text(index + "\n")
    (t / "collections.txt").write_text("reg\n")
    (t / "s" / "testplan.xml").write_text(plan)
    (tmp_path / "testkit" / "actorcollections").mkdir()
    return tmp_path


def test_broken_plans_are_errors_or_listed_as_unknown(tmp_path):
    with pytest.raises(testplan.TestPlanError):
        testplan.parse(b"<TestPlan><Test>x</Test>")                     # truncated
    with pytest.raises(testplan.TestPlanError):
        testplan.parse(b"<Plan/>")
    with pytest.raises(testplan.TestPlanError):   # a step with nothing to run
        testplan.parse(b"<TestPlan><Test>x</Test><TestStep id='a'><ExpectedStatus>Success"
                       b"</ExpectedStatus></TestStep></TestPlan>")
    plan = testplan.parse(
        b"<TestPlan><Test>x/s</Test><TestStep id='a'><ExpectedStatus>Maybe</ExpectedStatus>"
        b"<Frobnicate/><RegisterTransaction><XDSb/><Teleport/></RegisterTransaction></TestStep>"
        b"</TestPlan>")
    assert plan.unknown == ["a/ExpectedStatus=Maybe", "a/Frobnicate",
                            "a/RegisterTransaction/Teleport"]
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    with pytest.raises(testplan.TestPlanError, match="DTD"):   # no entity is read
        testplan.parse(
            f'<!DOCTYPE TestPlan [<!ENTITY x SYSTEM "file://{secret}">]><TestPlan><Test>&x;'
            '</Test><TestStep id="a"><NullTransaction/></TestStep></TestPlan>'.encode())


def test_a_kit_that_is_not_there_or_misses_a_section(tmp_path):
    with pytest.raises(TestKitError):
        TestKit(tmp_path / "nowhere")
    kit = TestKit(_kit(tmp_path, "<TestPlan><Test>90001/s</Test></TestPlan>", index="s\ngone"))
    t = kit.tests["90001"]
    assert t.title == "A broken test" and t.sections == ["s", "gone"]
    assert t.problems == ["section 'gone' has no testplan.xml"]
    with pytest.raises(TestKitError):
        t.plan("gone")


def _hie(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hie.cli", "conformance", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_conformance_list_over_the_kit():
    out = _hie("list", "--actor", "reg")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "suite reg"
    assert "  collection reg: Document Registry (37 tests)" in lines
    assert "  collection reg_mu: Metadata Update (ITI-57) (25 tests)" in lines
    i = next(n for n, ln in enumerate(lines) if ln.split()[:1] == ["11990"])
    assert lines[i].split(None, 1)[1] == "Register single DocumentEntry"
    assert lines[i + 1].split() == ["sections:", "submit", "eval"]
    assert not any("!" in ln for ln in lines)
    assert "suite rep" not in lines


def test_conformance_list_shows_the_data_suites():
    out = _hie("list")
    assert out.returncode == 0, out.stderr
    suites = [ln.split(":")[0] for ln in out.stdout.splitlines() if ln.startswith("suite ")]
    assert suites == ["suite pdq", "suite pix", "suite reg", "suite rep", "suite rg"]
    pix = _hie("list", "--actor", "pix").stdout.splitlines()
    i = next(n for n, ln in enumerate(pix) if ln.split()[:1] == ["PIX-ITI9-02"])
    assert "NF" in pix[i] and pix[i + 1].split()[-2:] == ["feed", "query"]
    assert pix[i + 1].split()[:3] == ["ITI", "TF-2a", "3.9.4.2.2.6"]


def test_conformance_list_reports_a_broken_kit(tmp_path):
    root = _kit(tmp_path, "<TestPlan><Test>90001/s</Test><TestStep id='a'><ExpectedStatus>"
                          "Success</ExpectedStatus><Frobnicate/><NullTransaction/></TestStep>"
                          "</TestPlan>")
    out = _hie("list", "--actor", "reg", "--testkit", str(root))
    assert out.returncode == 0, out.stderr
    assert "! s: cannot read a/Frobnicate" in out.stdout
    assert "1 test(s) with problems (marked !)" in out.stdout
    missing = _hie("list", "--testkit", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no NIST XDS Toolkit test kit" in missing.stderr

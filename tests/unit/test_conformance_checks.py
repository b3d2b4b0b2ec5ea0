"""The conformance runner's sans-IO parts: verdicts (conformance/checks.py), the deviations
table, the patient identity feed codec, placeholders of a run, and the engine driven through a
fake wire (prerequisites once and first, a missing value named, an unfed AltPatientId)."""
from __future__ import annotations

import datetime as dt
import random

from lxml import etree

from conformance import build, checks, deviations, engine, hl7feed, report
from conformance.log import locate
from conformance.testkit import TestKit

Q = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
R = checks.RIM
APPROVED, DEPRECATED = checks.APPROVED, checks.DEPRECATED


def response(*children: str) -> etree._Element:
    return etree.fromstring(
        f'<q:AdhocQueryResponse xmlns:q="{Q}" xmlns:rim="{R}" status="x"><rim:RegistryObjectList>'
        + "".join(children) + "</rim:RegistryObjectList></q:AdhocQueryResponse>")


def doc(i: str, status: str = APPROVED) -> str:
    return f'<rim:ExtrinsicObject id="{i}" status="{status}"/>'


def package(i: str, node: str, inside: bool = True) -> str:
    cl = (f'<rim:Classification classifiedObject="{i}" classificationNode="{node}"/>')
    return (f'<rim:RegistryPackage id="{i}" status="{APPROVED}">{cl if inside else ""}'
            f'</rim:RegistryPackage>' + ("" if inside else cl))


def test_expected_contents_counts_and_shapes():
    r = response(package("ss", checks.SUBMISSION_SET), doc("d1"),
                 package("f", checks.FOLDER, inside=False),   # classified from the list
                 '<rim:Association id="a" associationType="x" sourceObject="ss" targetObject="d1"/>')
    assert checks.contents("Documents", {"count": "1"}, r).passed
    assert not checks.contents("Documents", {"count": "2"}, r).passed
    assert checks.contents("Folders", {"count": "1"}, r).passed
    assert checks.contents("SSwithOneDocOneFol", {}, r).passed
    assert not checks.contents("SSwithOneDoc", {}, r).passed      # a folder too many
    assert not checks.contents("None", {}, r).passed
    assert checks.contents("None", {}, response()).passed
    bad = checks.contents("Documents", {"count": "many"}, r)
    assert not bad.passed and "no count" in bad.detail


def test_status_checks_are_vacuous_over_nothing_and_strict_over_some():
    assert checks.contents("DocApp", {}, response()).passed          # 30006: none returned
    assert checks.contents("DocApp", {}, response(doc("a"), doc("b"))).passed
    assert not checks.contents("DocApp", {}, response(doc("a"), doc("b", DEPRECATED))).passed
    assert checks.contents("OneDocDep", {}, response(doc("a", DEPRECATED))).passed
    assert not checks.contents("OneDocDep", {}, response()).passed


def test_an_unknown_expected_contents_name_fails_naming_itself():
    v = checks.contents("SSwithThreeDocs", {}, response())
    assert not v.passed and "does not know" in v.detail


def test_status_error_codes_and_messages():
    vs = checks.status("Failure", "Failure", ["XDSUnknownPatientId"], ["patient P1 unknown"],
                       ["XDSUnknownPatientId"], ["XDSUnknownPatientId", "P1"])
    assert all(v.passed for v in vs) and len(vs) == 4
    vs = checks.status("Failure", "Success", [], [], ["XDSRegistryMetadataError"], [])
    assert [v.passed for v in vs] == [False, False]
    assert not checks.status("Success", "Fault", [], ["boom"], [], [])[0].passed


def test_assertions_over_a_log():
    log = etree.fromstring("<TestResults><TestStep id='q'><X step='q'><Result>"
                           f"{etree.tostring(response(doc('d1'))).decode()}</Result></X>"
                           "</TestStep></TestResults>")
    assert checks.assertion("a", "count(//*[local-name()='ExtrinsicObject']) = 1", log).passed
    assert not checks.assertion("b", "//*[local-name()='ExtrinsicObject']/@id = 'd2'",
                                log).passed
    assert checks.assertion("c", "//TestStep[@id='q']//*[local-name()='ExtrinsicObject']",
                            log).passed
    bad = checks.assertion("d", "count(//*[", log)
    assert not bad.passed and "XPath" in bad.detail


def test_retrieved_document_against_metadata():
    import hashlib
    xdsb = checks.XDSB
    content = "检查报告".encode()
    resp = etree.fromstring(
        f'<x:RetrieveDocumentSetResponse xmlns:x="{xdsb}" xmlns:xop="{checks.XOP}">'
        f"<x:DocumentResponse><x:DocumentUniqueId>1.2.3</x:DocumentUniqueId>"
        f"<x:mimeType>text/plain</x:mimeType><x:Document><xop:Include href='cid:p1'/>"
        f"</x:Document></x:DocumentResponse></x:RetrieveDocumentSetResponse>")
    meta = response(
        f'<rim:ExtrinsicObject id="d" mimeType="text/xml"><rim:Slot name="hash"><rim:ValueList>'
        f'<rim:Value>{hashlib.sha1(content).hexdigest()}</rim:Value></rim:ValueList></rim:Slot>'
        f'<rim:ExternalIdentifier value="1.2.3"/></rim:ExtrinsicObject>')
    vs = {v.what.rsplit(" ", 1)[-1]: v.passed
          for v in checks.retrieved("1.2.3", content, resp, {"p1": content}, meta)}
    assert vs == {"content": True, "mimeType": False, "hash": True}
    [missing] = checks.retrieved("9.9", content, resp, {"p1": content}, None)
    assert not missing.passed and "0 DocumentResponse" in missing.detail


def test_deviations_table():
    rows = deviations.parse("intro\n\n| test | section | step | TF | reason |\n|--|--|--|--|--|\n"
                            "| 12029 | retrieve | retrieve: ReferenceDocument | ITI TF-2b 3.43.4.2.3"
                            " | the plan compares another file |\n| 1 | * | * | TF | all |\n\nafter")
    assert rows == [deviations.Deviation("12029", "retrieve", "retrieve", "ITI TF-2b 3.43.4.2.3",
                                         "the plan compares another file", "ReferenceDocument"),
                    deviations.Deviation("1", "*", "*", "TF", "all", "")]
    shipped = deviations.load()
    assert all(d.tf.startswith("ITI TF") and d.reason for d in shipped)


def test_patient_identity_feed_codec():
    cx = hl7feed.new_patient_id("1.2.156.112604.1.2.5")
    assert cx.endswith("^^^&1.2.156.112604.1.2.5&ISO") and cx != hl7feed.new_patient_id("1.2")
    msg = hl7feed.adt_a01(cx, now=dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc))
    seg = {s[:3]: s.split("|") for s in msg.split("\r") if s}
    assert seg["MSH"][8] == "ADT^A01" and seg["MSH"][11] == "2.3.1" and seg["MSH"][17] == "UNICODE UTF-8"
    assert seg["PID"][3] == cx
    family, given = seg["PID"][5].split("^")
    assert "\u4e00" <= family <= "\u9fff"
    rid = seg["PID"][19]
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    assert "10X98765432"[sum(int(c) * w for c, w in zip(rid, weights)) % 11] == rid[17]
    assert rid[6:14] == seg["PID"][7] and int(rid[16]) % 2 == (seg["PID"][8] == "M")
    assert hl7feed.frame(msg).startswith(b"\x0b") and hl7feed.unframe(hl7feed.frame(msg)) == msg
    ack = hl7feed.read_ack("MSH|^~\\&|A|B\rMSA|AE|C1|unknown domain\rERR|^^^204\r")
    assert (ack.code, ack.accepted) == ("AE", False) and "unknown domain" in ack.text
    assert hl7feed.read_ack("MSH|^~\\&\rMSA|CA|C1\r").accepted
    for bad in (b"no block", b"\x0bMSH|x"):
        try:
            hl7feed.unframe(bad)
        except hl7feed.FeedError:
            continue
        raise AssertionError(bad)
    rng = random.Random(1)
    assert hl7feed.resident_id(dt.date(1980, 2, 29), "F", rng)[6:14] == "19800229"


def test_builtins_and_locate():
    b = build.builtins(dt.datetime(2026, 12, 2, 8, 30, 5), repository_uid="1.2.3")
    assert b == {"$now$": "20261202083005", "$lastyear$": "20251202083005",
                 "$DATE$": "20261202", "$repuid$": "1.2.3"}
    assert locate("../../12346/single_doc", "11897", "x") == ("12346", "single_doc")
    assert locate("../submit", "t", "x") == locate("submit", "t", "x") == ("t", "submit")
    assert locate("", "t", "x") == locate("THIS", "t", "x") == ("t", "x")


class FakeWire:
    """Feeds are acknowledged; every SOAP request gets a Success RegistryResponse."""

    def __init__(self):
        self.feeds, self.soap_urls = [], []

    def feed(self, host, port, message):
        self.feeds.append(message)
        return hl7feed.Ack("AA", "", "MSH|^~\\&\rMSA|AA|1\r")

    def soap(self, url, request):
        self.soap_urls.append(url)
        body = ('<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
                '<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" '
                'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/>'
                "</s:Body></s:Envelope>").encode()
        return 200, "application/soap+xml", body


def test_engine_runs_prerequisites_once_and_names_what_is_missing():
    wire = FakeWire()
    seen = []
    runner = engine.Runner(TestKit(), engine.Endpoints(
        registry="http://reg", mllp=("h", 1), patient_domain="1.2.156.1"), wire, [],
        lambda r, n, t: seen.append((r.id, n, r.prerequisite)))
    result = runner.run("reg", ["11996", "11990"])
    assert [s[0] for s in seen][:1] == ["15817"] and seen[0][2]
    assert len(wire.feeds) == 1                       # 15817 once, before the tests
    by_id = {t.id: t for t in result.tests}
    # 11996 expects Failure (AltPatientId: never fed) — the fake registry said Success
    [step] = by_id["11996"].sections[0].steps
    assert not step.passed and any(v.what == "ExpectedStatus Failure" and not v.passed
                                   for v in step.verdicts)
    assert "UNFED" in step.sent.decode() and "UNFED" not in wire.feeds[0]
    # 11990's query finds nothing in the fake's answer: its ExpectedContents fails, named
    failed = [v.what for s in by_id["11990"].sections for st in s.steps for v in st.verdicts
              if not v.passed]
    assert failed == ["ExpectedContents SSwithOneDoc"]
    assert not result.passed
    junit = etree.fromstring(report.junit(result))
    assert junit.get("failures") == str(sum(not t.passed for t in result.tests))
    assert "11996" in report.html_report(result)

"""The data suites' engine, sans-IO: reading a suite file (conformance/suite.py), the run's
values (fresh OIDs, ids, dates, GB 11643 numbers), and the expectation grammar over HL7 v2,
XML and JSON responses (conformance/expect.py); the shipped pix and pdq suites read whole."""
from __future__ import annotations

import pytest
from lxml import etree

from conformance import expect, suite
from conformance.expect import Response, check
from pix_pdq.resident_id import parse as parse_resident_id

RSP = ("MSH|^~\\&|HIE|REGION|PDQ|天坛|20261202||RSP^K22^RSP_K21|X1|P|2.5\r"
       "MSA|AA|C1\rQAK|Q1|OK\r"
       "PID|||A1^^^&1.2.3&ISO^PI~B1^^^&1.2.4&ISO^PI||欧阳^锋||19800101|M\r"
       "PID|||A2^^^&1.2.3&ISO^PI||欧阳^克||19800101|M\rDSC|17|I\r")


def test_hl7_paths():
    assert expect.hl7_values(RSP, "MSH-9.2") == ["K22"]
    assert expect.hl7_values(RSP, "MSH-2") == ["^~\\&"]
    assert expect.hl7_values(RSP, "PID-3.1") == ["A1", "B1", "A2"]
    assert expect.hl7_values(RSP, "PID-3.4.2") == ["1.2.3", "1.2.4", "1.2.3"]
    assert expect.hl7_values(RSP, "PID-5.1") == ["欧阳", "欧阳"]
    assert len(expect.hl7_values(RSP, "PID")) == 2
    assert expect.hl7_values(RSP, "ERR-3") == []


@pytest.mark.parametrize("line, ok", [
    ("MSA-1 = AA", True), ("MSA-1 = AE", False), ("MSA-1 != AE", True),
    ("QAK-2 ~ ^(OK|NF)$", True), ("count(PID) = 2", True), ("count(PID) = 1", False),
    ("count(PID-3) = 3", True), ("PID-3.1 has B1", True), ("PID-3.1 has C9", False),
    ("PID-3.1 = A1", True), ("DSC-1 present", True), ("ERR absent", True),
    ("ERR present", False), ("DSC-1 >= 10", True), ("DSC-1 <= 10", False),
    ("PID-5.1 >= 1", False),                           # not a number: a failure, not a crash
    ("QAK-2 ~ (", False),                              # not a regular expression
    ("MSA-1 equals AA", False),                        # not the grammar: a failure naming it
])
def test_expectations_over_hl7(line, ok):
    v = check(line, Response(hl7=RSP))
    assert v.passed is ok, v
    if line == "MSA-1 equals AA":
        assert "cannot read" in v.detail


def test_expectations_over_json_http_and_xml():
    doc = {"resourceType": "Bundle", "total": 2, "entry": [
        {"resource": {"name": [{"family": "长孙"}], "identifier": [{"value": "A1"}]}},
        {"resource": {"name": [{"family": "欧阳"}], "identifier": [{"value": "A2"},
                                                                 {"value": "B2"}]}}]}
    r = Response(status=200, json=doc, headers={"content-type": "application/fhir+json"})
    for line, ok in [("status = 200", True), ("status = 404", False), ("json total >= 2", True),
                     ("json entry[0].resource.name[0].family = 长孙", True),
                     ("json entry[*].resource.identifier[*].value has B2", True),
                     ("json entry[5].resource.id present", False),
                     ("count(json entry) = 2", True), ("count(json nothing) = 0", True),
                     ("header content-type ~ fhir\\+json", True)]:
        assert check(line, r).passed is ok, line
    xml = etree.fromstring('<x xmlns="urn:hl7-org:v3"><acknowledgement><typeCode code="AA"/>'
                           "</acknowledgement></x>")
    assert check("xpath //hl7:acknowledgement/hl7:typeCode/@code = 'AA'", Response(xml=xml)).passed
    assert not check("xpath //hl7:acknowledgement/hl7:typeCode/@code = 'AE'",
                     Response(xml=xml)).passed
    assert not check("xpath //hl7:[", Response(xml=xml)).passed
    assert not check("xpath //x", Response(hl7=RSP)).passed          # not XML


def test_suite_file_errors_are_named():
    for text, words in [
        ("tests: []", "has 'suite' and 'tests'"),
        ("suite: x\ntests:\n- id: T1\n  steps:\n  - id: s\n    mllp: M\n    http: {}\n",
         "exactly one of"),
        ("suite: x\ntests:\n- id: T1\n  steps:\n  - id: s\n    mllp: M\n"
         "- id: T1\n  steps:\n  - id: s\n    mllp: M\n", "repeat"),
        ("suite: x\ntests:\n- id: T1\n  steps: []\n", "without id or steps"),
        ("suite: [unclosed", "not YAML"),
    ]:
        with pytest.raises(suite.SuiteError, match=words):
            suite.parse(text)


def test_values_of_a_run():
    s = suite.parse("suite: x\nvalues:\n  a: oid\n  b: oid\n  i: id\n  d: date\n"
                    "  r: resident_id ${d} F\n  iso: date_iso ${d}\n  tel: digits 11\n"
                    "  txt: 'P-${i}'\ntests:\n- id: T\n  steps:\n  - mllp: M\n")
    v = suite.Values(s, "http://h:1/", {"b": "9.9"}, root="1.2.99", seed=7)
    assert v.values["a"] == "1.2.99.1" and v.values["b"] == "9.9"
    assert v.values["target"] == "http://h:1" and v.values["txt"] == "P-" + v.values["i"]
    rid = parse_resident_id(v.values["r"])
    assert rid.valid and rid.birth_date == v.values["d"] and rid.sex == "F"
    assert v.values["iso"] == f"{v.values['d'][:4]}-{v.values['d'][4:6]}-{v.values['d'][6:]}"
    assert len(v.values["tel"]) == 11 and v.values["tel"].isdigit()
    a, b = v.expand("${control}"), v.expand("${control}")
    assert a != b and len(v.expand("${now}")) == 14
    assert v.expand("${x}", {"x": "saved"}) == "saved"
    with pytest.raises(suite.SuiteError, match=r"no value for \$\{nope\}"):
        v.expand("${nope}")


@pytest.mark.parametrize("name", ["pix", "pdq"])
def test_the_shipped_suites_read_and_every_value_is_defined(name):
    s = suite.load(name)
    assert s.name == name and len(s.tests) >= 8
    v = suite.Values(s, "http://h")
    for t in s.tests:
        assert t.tf and t.title
        for st in t.steps:
            text = st.spec if isinstance(st.spec, str) else " ".join(map(str, st.spec.values()))
            v.expand(text + " ".join(st.expect), {k: "x" for k in st.save} |
                     {k: "x" for t2 in s.tests for s2 in t2.steps for k in s2.save})
            for line in st.expect:    # every expectation is of the grammar
                assert not check(v.expand(line, {"pointer": "1"}),
                                 Response()).detail.startswith("the runner cannot read"), line


def test_the_consumers_acknowledgements():
    """What the runner answers as a PIX Consumer: ACK AA naming the ADT^A31's control id
    (ITI-10), MCCI_IN000002UV01 AA naming the PRPA_IN201302UV02's id (ITI-46)."""
    from conformance import messaging, soap_client
    ack = messaging.ack_for("MSH|^~\\&|HIE|REGION|PIXC|HIS|20261202||ADT^A31^ADT_A05|N77|P|2.5\r"
                            "EVN|A31|20261202\rPID|||A1^^^&1.2.3&ISO\r")
    assert expect.hl7_values(ack, "MSA-1") == ["AA"] and expect.hl7_values(ack, "MSA-2") == ["N77"]
    assert expect.hl7_values(ack, "MSH-9.2") == ["A31"] and expect.hl7_values(ack, "MSH-5") == ["HIE"]
    v3 = expect.NS["hl7"]
    message = etree.fromstring(f'<PRPA_IN201302UV02 xmlns="{v3}"><id root="1.2.9" extension="M5"/>'
                               "</PRPA_IN201302UV02>")
    env, _ = soap_client.envelope("urn:hl7-org:v3:PRPA_IN201302UV02", message, "http://x")
    reply = soap_client.read_reply("application/soap+xml",
                                   messaging.v3_ack_for(etree.tostring(env)))
    assert reply.action == "urn:hl7-org:v3:MCCI_IN000002UV01"
    assert reply.body.find(f"{{{v3}}}acknowledgement/{{{v3}}}typeCode").get("code") == "AA"
    target = reply.body.find(f"{{{v3}}}acknowledgement/{{{v3}}}targetMessage/{{{v3}}}id")
    assert (target.get("root"), target.get("extension")) == ("1.2.9", "M5")
    garbage = soap_client.read_reply("application/soap+xml", messaging.v3_ack_for(b"not xml"))
    assert garbage.body.find(f"{{{v3}}}acknowledgement/{{{v3}}}typeCode").get("code") == "AA"

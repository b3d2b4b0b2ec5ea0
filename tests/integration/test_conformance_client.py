"""The conformance runner's own SOAP/MTOM client (conformance/soap_client.py) against a live
node over HTTP, with the NIST kit's metadata made ready by the runner (translated, placeholders,
patient id, uniqueIds / entryUUIDs): 11990's register-then-query chain, an unknown patient
refused, 11966's document provided as MTOM and retrieved back, a SOAP Fault read as one — on
SQLite and PostgreSQL."""
import httpx
import pytest
from lxml import etree

from conformance import ebrim21, prepare, soap_client as S
from conformance.log import RunLog, StepLog
from conformance.testkit import TestKit
from tests import xdsdata as X

XDSB = S.XDSB
SOURCE_ID_SCHEME = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"   # SubmissionSet.sourceId


@pytest.fixture(scope="module")
def kit():
    return TestKit()


def _send(url: str, req: S.Request) -> S.SoapReply:
    r = httpx.post(url, content=req.body, headers={"content-type": req.content_type},
                   timeout=60)
    reply = S.read_reply(r.headers["content-type"], r.content)
    assert reply.is_fault or reply.relates_to == req.message_id
    return reply


def _ready(kit, test, section, name, values, patient_id, **kw):
    text = (kit.tests[test].path / section / name).read_text("utf-8")
    root = etree.fromstring(text.encode())
    return prepare.prepare(text, values, patient_id=patient_id,
                           translate=ebrim21.to_v3 if ebrim21.is_v21(root) else None, **kw)


def test_register_then_query_as_test_11990_says(kit, live):
    cx = X.register_patient(live.node.db)
    registry = live.http + "/xds/registry"
    run = RunLog()
    run.record(StepLog("15817", "pif", "step", reports={"$patientid$": cx}))
    submit, evaluate = kit.tests["11990"].plans()
    tx = submit.steps[0].transaction
    values = run.values("11990", "submit", tx.use_ids, tx.use_reports)
    root, assigned = _ready(kit, "11990", "submit", tx.metadata_file, values,
                            None if "NoPatientId" in tx.flags else cx, uuids=True, uids=True)
    reply = _send(registry, S.plain(S.ACTIONS["ITI-42"], root, registry))
    assert reply.action == "urn:ihe:iti:2007:RegisterDocumentSet-bResponse"
    assert S.registry_status(reply.body) == ("Success", [])
    run.record(StepLog("11990", "submit", "submit", input=etree.tostring(root),
                       assigned={"AssignedUids": assigned.uids,
                                 "AssignedUuids": assigned.uuids}))

    query = evaluate.steps[0].transaction
    values = run.values("11990", "eval", query.use_ids, query.use_reports)
    qroot, _ = _ready(kit, "11990", "eval", query.metadata_file, values, None,
                      uuids=False, uids=False)
    reply = _send(registry, S.plain(S.ACTIONS["ITI-18"], qroot, registry))
    assert S.registry_status(reply.body) == ("Success", [])
    [assertion] = evaluate.steps[1].transaction.assertions   # the plan's own XPath
    assert reply.body.xpath(assertion.xpath) is True
    ids = reply.body.xpath("//*[local-name()='ExtrinsicObject']/@id")
    assert ids == [assigned.uuids["Document01"]]


def test_an_unknown_patient_is_refused(kit, live):
    registry = live.http + "/xds/registry"
    other = "NOSUCH01^^^&" + X.AFFINITY_DOMAIN + "&ISO"
    root, _ = _ready(kit, "11996", "submit", "single_doc.xml", {"$patientid$": other}, other,
                     uuids=True, uids=True)
    status, errors = S.registry_status(_send(registry, S.plain(S.ACTIONS["ITI-42"], root,
                                                                registry)).body)
    assert status == "Failure" and "XDSUnknownPatientId" in [e.code for e in errors], errors
    assert all(e.severity == "Error" for e in errors)


def test_provide_as_mtom_then_retrieve(kit, live):
    cx = X.register_patient(live.node.db)
    repository = live.http + "/xds/repository"
    plan = kit.tests["11966"].plan("submit")
    tx = plan.steps[0].transaction
    root, assigned = _ready(kit, "11966", "submit", tx.metadata_file, {"$patientid$": cx}, cx,
                            uuids=True, uids=True)
    # the kit's sourceId 129.6.58.92.1.1 is taken as it is (dotted decimal, ITI TF-3
    # Table 4.2.3.1.7-2)
    assert [ei.get("value") for ei in root.iter(f"{{{prepare.RIM}}}ExternalIdentifier")
            if ei.get("identificationScheme") == SOURCE_ID_SCHEME] == ["129.6.58.92.1.1"]
    content = (kit.tests["11966"].path / "submit" / tx.documents["Document01"]).read_bytes()
    body = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB})
    body.append(root)
    doc = etree.SubElement(body, f"{{{XDSB}}}Document")
    doc.set("id", assigned.uuids["Document01"])
    reply = _send(repository, S.mtom(S.ACTIONS["ITI-41"], body, repository,
                                     {assigned.uuids["Document01"]: content}, {}))
    assert S.registry_status(reply.body) == ("Success", []), S.registry_status(reply.body)

    retrieve = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB})
    item = etree.SubElement(retrieve, f"{{{XDSB}}}DocumentRequest")
    etree.SubElement(item, f"{{{XDSB}}}RepositoryUniqueId").text = \
        live.settings.repository_unique_id
    etree.SubElement(item, f"{{{XDSB}}}DocumentUniqueId").text = assigned.uids["Document01"]
    reply = _send(repository, S.plain(S.ACTIONS["ITI-43"], retrieve, repository))
    assert S.registry_status(reply.body) == ("Success", [])
    [include] = reply.body.xpath("//*[local-name()='Include']")
    assert reply.attachments[include.get("href").removeprefix("cid:")] == content


def test_a_fault_is_read_as_one(live):
    registry = live.http + "/xds/registry"
    body = etree.Element("{urn:example}Nothing")
    reply = _send(registry, S.plain("urn:example:NoSuchAction", body, registry))
    assert reply.is_fault and reply.fault_code.endswith("Sender") and reply.fault_reason
    with pytest.raises(S.ReplyError):
        S.read_reply("application/soap+xml", b"<html>proxy error</html>")
    with pytest.raises(S.ReplyError, match="DTD"):   # SOAP 1.2 Part 1 5: no DTD in a message
        S.read_reply("application/soap+xml", b'<!DOCTYPE e [<!ENTITY y "x">]>'
                     b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope">'
                     b'<e:Body><r>&y;</r></e:Body></e:Envelope>')
    with pytest.raises(S.ReplyError):
        S.read_reply('multipart/related; boundary="b"; start="<r>"',
                     b"--b\r\nContent-ID: <x>\r\n\r\n<a/>\r\n--b--\r\n")

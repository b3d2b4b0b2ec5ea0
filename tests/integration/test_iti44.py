"""ITI-44 Patient Identity Feed HL7 V3 over real HTTP (uvicorn, httpx with SOAP 1.2 envelopes,
and zeep from the endpoint's own WSDL), on SQLite and PostgreSQL: add, revise and merge (the
XDS registry following the merge as it does for ADT^A40), the stored acknowledgement of a
duplicate message id, conflicting identifiers as warnings, HIE_PIX_AUTO_DOMAINS off, every
AE / AR / SOAP Fault, and the audit record."""
from __future__ import annotations

import uuid

import httpx
import pytest
import sqlalchemy as sa
import zeep
from lxml import etree

from hie.app import create_app
from hie.hl7v3 import II, parse_message
from hie.hl7v3_patient import PatientRecord, build_registration
from hie.soap import SOAP12_NS, WSA_NS, build_envelope
from hie.tables import audit_event as t_audit
from pix_pdq.index import Identifier, find_person, get_person, is_known
from pix_pdq.resident_id import RESIDENT_ID_OID, make
from pix_pdq.tables import feed_log, person as t_person
from tests.serve import serve

V3 = "urn:hl7-org:v3"
HIS = II("1.2.156.112604.1.2.3", "HIS")      # the hospital HIS's device
HIE = II("1.2.156.9999.1")
HIS_OID = "1.2.156.112604.1.1.101.2"         # the HIS patient-id domain
ZHANG_ID = make("11010519900307123")
ADDRESS = {"street": "东华门街道1号", "city": "北京市", "state": "北京市", "zip": "100010",
           "county": "东城区", "type": "H"}


def zhang(**over):
    demo = {"names": [{"family": "张", "given": "三", "type": "L"}], "sex": "M",
            "birth_time": "19900307", "addresses": [ADDRESS],
            "home_phones": [{"number": "13800001111", "use": "PRN", "equipment": "CP"}]}
    demo.update(over)
    return demo


def feed_message(interaction: str = "PRPA_IN201301UV02", ids=None, demo=None, prior=(),
                 msg_id: str | None = None, sender: II = HIS, person_ids=None):
    rec = PatientRecord(ids=list(ids if ids is not None else [II(HIS_OID, "H0001")]),
                        person_ids=list(person_ids if person_ids is not None
                                        else [II(RESIDENT_ID_OID, ZHANG_ID)]),
                        demographics=zhang() if demo is None else demo)
    return build_registration(interaction, rec, list(prior), sender=sender, receiver=HIE,
                              message_id=II("1.2.156.112604.1.9", msg_id or uuid.uuid4().hex))


def post(base: str, path: str, action: str, body, raw: bytes | None = None):
    """POST a SOAP 1.2 envelope; (HTTP status, response action, first Body child)."""
    if raw is None:
        raw = etree.tostring(build_envelope(action, body, to=base + path), encoding="UTF-8")
    r = httpx.post(base + path, content=raw, timeout=30,
                   headers={"Content-Type": "application/soap+xml; charset=UTF-8"})
    env = etree.fromstring(r.content)
    act = env.find(f"{{{SOAP12_NS}}}Header/{{{WSA_NS}}}Action")
    return r.status_code, act.text if act is not None else None, \
        env.find(f"{{{SOAP12_NS}}}Body")[0]


def ack_of(el):
    return parse_message(el).acknowledgement


@pytest.fixture
def base(node):
    with serve(create_app(node)) as url:
        yield url


def send(base, el, interaction=None):
    interaction = interaction or etree.QName(el).localname
    status, action, body = post(base, "/pix", f"urn:hl7-org:v3:{interaction}", el)
    assert status == 200 and action == "urn:hl7-org:v3:MCCI_IN000002UV01", (status, action)
    return body


def person(database, domain, value):
    with database.read() as c:
        pid = find_person(c, Identifier(value, domain))
        return get_person(c, pid) if pid else None


def test_add_records_the_patient_and_audits(base, node, database):
    body = send(base, feed_message(msg_id="A1"))
    ack = ack_of(body)
    assert ack.type_code == "AA" and ack.target == II("1.2.156.112604.1.9", "A1")
    assert parse_message(body).transmission.receivers == (HIS,)   # answered to the sender
    p = person(database, HIS_OID, "H0001")
    assert p.name == "张三" and p.birth_date == "19900307" and p.sex == "M"
    assert {(i.domain, i.value) for i in p.identifiers} == {(HIS_OID, "H0001"),
                                                          (RESIDENT_ID_OID, ZHANG_ID)}
    assert p.demographics["addresses"] == [ADDRESS]
    with database.read() as c:
        audit = c.execute(sa.select(t_audit.c.transaction, t_audit.c.outcome,
                                    t_audit.c.patient_id, t_audit.c.message_id)).all()
        log = c.execute(sa.select(feed_log.c.message_type, feed_log.c.ack_code)).all()
    assert [tuple(a) for a in audit] == [("ITI-44", 0, f"H0001^^^&{HIS_OID}&ISO",
                                          "1.2.156.112604.1.9^A1")]
    assert [tuple(x) for x in log] == [("PRPA_IN201301", "AA")]


def test_revise_updates_and_keeps_what_is_not_sent(base, database):
    assert ack_of(send(base, feed_message())).type_code == "AA"
    demo = {"names": [{"family": "张", "given": "山", "type": "L"}],
            "addresses": [dict(ADDRESS, street="王府井大街2号")]}
    assert ack_of(send(base, feed_message("PRPA_IN201302UV02", demo=demo,
                                          person_ids=[]))).type_code == "AA"
    p = person(database, HIS_OID, "H0001")
    assert p.name == "张山" and p.birth_date == "19900307"       # birth time not sent: kept
    assert p.demographics["addresses"][0]["street"] == "王府井大街2号"


def test_duplicate_message_id_returns_the_stored_ack(base, database):
    first = send(base, feed_message(msg_id="D1"))
    again = send(base, feed_message(msg_id="D1", demo=zhang(names=[{"family": "李",
                                                                    "given": "四"}])))
    assert etree.tostring(first) == etree.tostring(again)      # the stored acknowledgement
    assert person(database, HIS_OID, "H0001").name == "张三"     # not applied twice
    other = send(base, feed_message(msg_id="D1", sender=II("1.2.156.7.7", "LIS"),
                                    demo=zhang(names=[{"family": "李", "given": "四"}])))
    assert ack_of(other).type_code == "AA"
    assert person(database, HIS_OID, "H0001").name == "李四"     # another sender's D1
    with database.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(feed_log)).scalar() == 2


def test_identifier_of_another_patient_is_a_warning(base, database):
    send(base, feed_message(ids=[II(HIS_OID, "H0001")]))
    other = make("11010519850412157")
    ack = ack_of(send(base, feed_message(ids=[II(HIS_OID, "H0002")],
                                         person_ids=[II(RESIDENT_ID_OID, other)],
                                         demo=zhang(names=[{"family": "王", "given": "芳"}],
                                                    sex="F", birth_time="19850412"))))
    assert ack.type_code == "AA" and not ack.details
    clash = ack_of(send(base, feed_message(ids=[II(HIS_OID, "H0002"),
                                                II(RESIDENT_ID_OID, ZHANG_ID)], person_ids=[],
                                           demo={})))
    assert clash.type_code == "AA"
    [w] = clash.details
    assert (w.type_code, w.code) == ("W", "205") and w.location.endswith("/patient/id[2]")


def test_merge_and_the_registry_follows(base, node, database):
    from tests import xdsdata as X
    from tests.integration import iti18_support as Q
    from tests.integration.test_merge import APPROVED, _register
    from xds_registry import iti42
    from xds_registry.query_find import FIND_DOCUMENTS
    aff = node.settings.affinity_domain
    for eid, mid in (("WF0001", "M1"), ("WF0002", "M2")):
        ack = ack_of(send(base, feed_message(ids=[II(aff, eid)], person_ids=[], msg_id=mid,
                                             demo=zhang(names=[{"family": "王", "given": "芳"}],
                                                        sex="F", birth_time="19750612"))))
        assert ack.type_code == "AA"
    first, second = f"WF0001^^^&{aff}&ISO", f"WF0002^^^&{aff}&ISO"
    before, after = _register(node, first), _register(node, second)
    merge = feed_message("PRPA_IN201304UV02", ids=[II(aff, "WF0001")], person_ids=[], demo={},
                         prior=[II(aff, "WF0002")])
    ack = ack_of(send(base, merge))
    assert ack.type_code == "AA" and not ack.details
    with database.read() as c:
        assert is_known(c, first) and not is_known(c, second)
        statuses = sorted(c.execute(sa.select(t_person.c.status)).scalars())
    assert statuses == ["active", "merged"]
    docs = Q.query(node.db, FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": [Q.q(first)],
                                             "$XDSDocumentEntryStatus": [Q.q(APPROVED)]},
                   st=Q.settings())
    assert set(docs.of("DocumentEntry")) == set(before.documents) | set(after.documents)
    refused = iti42.register(X.registry_context(node), X.Submission(patient_id=second).build())
    assert refused.codes == ["XDSUnknownPatientId"]
    unknown = ack_of(send(base, feed_message("PRPA_IN201304UV02", ids=[II(aff, "WF0001")],
                                             person_ids=[], demo={},
                                             prior=[II(aff, "WF9999")])))
    assert unknown.type_code == "AA" and [(d.type_code, d.code) for d in unknown.details] == \
        [("W", "204")]


@pytest.fixture
def strict(tmp_path, database):
    """A node with HIE_PIX_AUTO_DOMAINS off (only the HIS domain registered)."""
    from hie.node import Node
    from hie.settings import load_settings
    from pix_pdq.index import register_domains
    from tests.xdsdata import AFFINITY_DOMAIN
    settings = load_settings(env={"HIE_PIX_AUTO_DOMAINS": "false"}, data_dir=tmp_path / "s",
                             database_url=database.url, affinity_domain=AFFINITY_DOMAIN)
    with database.begin() as c:
        register_domains(c, [Identifier("x", HIS_OID)], auto=True)
    n = Node(settings, create_schema=False)
    try:
        with serve(create_app(n)) as url:
            yield url
    finally:
        n.close()


def test_unknown_domain_is_refused_when_auto_domains_is_off(strict, database):
    el = feed_message(ids=[II(HIS_OID, "H0005"), II("1.2.156.5555", "X1")], person_ids=[],
                      msg_id="U1")
    ack = ack_of(send(strict, el))
    assert ack.type_code == "AE"
    [d] = ack.details
    assert d.code == "204" and d.location.endswith("/subject1/patient/id[2]/@root")
    assert person(database, HIS_OID, "H0005") is None           # nothing half-written
    assert etree.tostring(send(strict, el)) is not None          # replayed, still AE
    with database.read() as c:
        assert c.execute(sa.select(feed_log.c.ack_code)).scalars().all() == ["AE"]
    ok = ack_of(send(strict, feed_message(ids=[II(HIS_OID, "H0006")], person_ids=[])))
    assert ok.type_code == "AA"


@pytest.mark.parametrize("mutate, type_code, code, where", [
    (lambda el: el.find(f".//{{{V3}}}patient").remove(el.find(f".//{{{V3}}}patient/{{{V3}}}id")),
     "AE", "101", "/patient/id"),
    (lambda el: el.remove(el.find(f"{{{V3}}}controlActProcess")), "AE", "101",
     "/PRPA_IN201301UV02/controlActProcess"),
    (lambda el: el.find(f"{{{V3}}}processingCode").set("code", "X"), "AR", "202",
     "/processingCode/@code"),
    (lambda el: el.remove(el.find(f"{{{V3}}}sender")), "AE", "101", "/sender/device/id"),
])
def test_bad_messages_get_an_error_ack(base, database, mutate, type_code, code, where):
    el = feed_message()
    mutate(el)
    ack = ack_of(send(base, el, "PRPA_IN201301UV02"))
    assert ack.type_code == type_code
    assert ack.details[0].code == code and ack.details[0].location.endswith(where)
    with database.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(t_person)).scalar() == 0
        outcomes = c.execute(sa.select(t_audit.c.outcome)).scalars().all()
    assert outcomes == [8]


def test_wrong_interaction_for_the_action_and_invalid_resident_id(base):
    status, _, body = post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201302UV02", feed_message())
    ack = ack_of(body)
    assert status == 200 and ack.type_code == "AR" and ack.details[0].code == "201"
    bad = ZHANG_ID[:17] + ("0" if ZHANG_ID[17] != "0" else "1")
    ack = ack_of(send(base, feed_message(ids=[II(RESIDENT_ID_OID, bad)], person_ids=[])))
    assert ack.type_code == "AE" and ack.details[0].code == "102"


def test_not_v3_is_a_soap_fault(base):
    status, action, body = post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201301UV02",
                                etree.Element("{urn:example}Hello"))
    assert status == 400 and body.tag == f"{{{SOAP12_NS}}}Fault"
    assert "not an HL7 v3 interaction" in etree.tostring(body).decode()
    status, _, body = post(base, "/pix", "", None, raw=b"<soap:Envelope xmlns:soap=\"" +
                           SOAP12_NS.encode() + b"\"><soap:Body><PRPA")
    assert status == 400 and body.tag == f"{{{SOAP12_NS}}}Fault"
    r = httpx.post(base + "/pix", content=b"", timeout=10,
                   headers={"Content-Type": "application/soap+xml"})
    assert r.status_code == 400 and b"Traceback" not in r.content


def test_wsdl_and_zeep_client(base, database):
    r = httpx.get(base + "/pix?wsdl", timeout=10)
    assert r.status_code == 200
    text = r.text
    for name in ("PRPA_IN201301UV02", "PRPA_IN201304UV02", "PRPA_IN201309UV02",
                 "PRPA_IN201311UV02", "HIPMessageServer"):
        assert name in text
    client = zeep.Client(base + "/pix?wsdl")
    el = feed_message(ids=[II(HIS_OID, "Z0001")], person_ids=[])
    op = client.service["PatientIdentifierCross-referenceManager_PRPA_IN201301UV02"]
    answer = op(_value_1=list(el), _attr_1={"ITSVersion": "XML_1.0"})
    [ack] = [e for e in answer["_value_1"] if e.tag == f"{{{V3}}}acknowledgement"]
    assert ack.find(f"{{{V3}}}typeCode").get("code") == "AA"
    assert person(database, HIS_OID, "Z0001").name == "张三"

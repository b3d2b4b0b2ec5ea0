"""ITI-47 PDQV3 over real HTTP, on SQLite and PostgreSQL (ITI TF-2b 3.47): Chinese family-name
wildcards that fold traditional characters but never homophones, a whole name, each query
parameter, otherIDsScopingOrganization (and AE 204 for an unknown domain), QE for unsupported or
malformed parameters, NF, and continuation / cancel across two server processes' worth of nodes
sharing one database."""
from __future__ import annotations

import pytest
from lxml import etree

from hie.app import create_app
from hie.hl7v3 import II, parse_message
from hie.hl7v3_query import build_continuation, build_pdq_query
from hie.node import Node
from pix_pdq.resident_id import RESIDENT_ID_OID, make
from tests.integration.test_iti44 import (HIE, HIS, HIS_OID, V3, base,  # noqa: F401
                                          feed_message, post, send, zhang)
from tests.serve import serve

ZHANG_WEI_ID = make("11010519850412157")
FENGTAI = {"street": "天坛街道5号", "city": "北京市丰台区", "state": "北京市", "zip": "100050",
           "county": "丰台区", "type": "H"}


@pytest.fixture
def people(base, node):
    aff = node.settings.affinity_domain
    rows = [
        ("H0001", "张", "三", "19800101", "M", [], {}),
        ("H0002", "张", "伟", "19850412", "M", [II(RESIDENT_ID_OID, ZHANG_WEI_ID)], {}),
        ("H0003", "章", "三", "19800101", "M", [], {"addresses": [FENGTAI]}),
        ("H0004", "張", "小紅", "19920304", "F", [], {}),
        ("H0005", "王", "芳", "19750612", "F", [],
         {"home_phones": [{"number": "13912345678", "use": "PRN", "equipment": "CP"}]}),
    ]
    for mrn, fam, giv, birth, sex, pids, extra in rows:
        demo = zhang(names=[{"family": fam, "given": giv, "type": "L"}], birth_time=birth,
                     sex=sex, **{"home_phones": [], **extra})
        assert send(base, feed_message(ids=[II(HIS_OID, mrn), II(aff, "E" + mrn[1:])],
                                       person_ids=pids, demo=demo)) is not None
    return base, aff


def pdq(base, path="/pdq", **kw):
    el = build_pdq_query(sender=HIS, receiver=HIE, query_id=kw.pop("query_id", II("1.2.3", "Q")),
                         **kw)
    status, action, body = post(base, path, "urn:hl7-org:v3:PRPA_IN201305UV02", el)
    assert status == 200 and action == "urn:hl7-org:v3:PRPA_IN201306UV02", (status, action)
    return parse_message(body), names(body)


def names(body) -> list[str]:
    out = []
    for person in body.iterfind(f".//{{{V3}}}subject/{{{V3}}}registrationEvent//"
                                f"{{{V3}}}patientPerson"):
        n = person.find(f"{{{V3}}}name")
        out.append("".join(n.itertext()).replace(" ", "").replace("\n", ""))
    return out


def test_family_name_wildcard_folds_variants_but_not_homophones(people):
    base, _ = people
    msg, found = pdq(base, name={"family": "张*"})
    assert msg.acknowledgement.type_code == "AA" and msg.query_ack.response_code == "OK"
    assert sorted(found) == sorted(["张三", "张伟", "張小紅"])
    q = msg.query_ack
    assert (q.total, q.current, q.remaining) == (3, 3, 0)


@pytest.mark.parametrize("kw, expected", [
    (dict(name="张三"), ["张三"]),
    (dict(name="張*"), ["张三", "张伟", "張小紅"]),
    (dict(name={"family": "张", "given": "三"}), ["张三"]),
    (dict(birth="19850412"), ["张伟"]),
    (dict(name={"family": "張*"}, gender="F"), ["張小紅"]),
    (dict(gender="2"), ["張小紅", "王芳"]),                         # GB/T 2261.1 女
    (dict(ids=[II(RESIDENT_ID_OID, ZHANG_WEI_ID[:6] + ZHANG_WEI_ID[8:17])]), ["张伟"]),
    (dict(ids=[II(HIS_OID, "H0003")]), ["章三"]),
    (dict(address={"city": "北京市丰台区"}), ["章三"]),
    (dict(address={"county": "丰台区"}), ["章三"]),
    (dict(telecom="tel:+86-139-1234-5678"), ["王芳"]),
])
def test_each_parameter(people, kw, expected):
    msg, found = pdq(people[0], **kw)
    assert msg.query_ack.response_code == "OK" and sorted(found) == sorted(expected)


def test_nf(people):
    msg, found = pdq(people[0], name="李四")
    assert (msg.acknowledgement.type_code, msg.query_ack.response_code, found) == ("AA", "NF", [])


def test_scoping_organization_limits_identifiers(people):
    base, aff = people
    msg, _ = pdq(base, birth="19850412", scoping=[HIS_OID])
    patient = msg.root.find(f".//{{{V3}}}subject1/{{{V3}}}patient")
    ids = [(i.get("root"), i.get("extension")) for i in patient.iter(f"{{{V3}}}id")
           if i.get("root")]
    assert ids == [(HIS_OID, "H0002")]
    msg, _ = pdq(base, birth="19850412")
    text = etree.tostring(msg.root).decode()
    assert ZHANG_WEI_ID in text and aff in text     # all domains, resident ID as Person.id


def test_unknown_scoping_domain_is_ae_204(people):
    msg, found = pdq(people[0], name="张三", scoping=[HIS_OID, "1.2.156.4444"])
    assert (msg.acknowledgement.type_code, msg.query_ack.response_code, found) == ("AE", "AE", [])
    [d] = msg.acknowledgement.details
    assert d.code == "204" and d.location.endswith(
        "/parameterList/otherIDsScopingOrganization[2]/value")


def test_unsupported_parameter_is_qe(people):
    base, _ = people
    el = build_pdq_query(sender=HIS, receiver=HIE, name="张三")
    plist = el.find(f".//{{{V3}}}parameterList")
    etree.SubElement(etree.SubElement(plist, f"{{{V3}}}mothersMaidenName"), f"{{{V3}}}value")
    _, _, body = post(base, "/pdq", "urn:hl7-org:v3:PRPA_IN201305UV02", el)
    msg = parse_message(body)
    assert msg.acknowledgement.type_code == "AE" and msg.query_ack.response_code == "QE"
    assert msg.acknowledgement.details[0].code == "103"


def cont(base, qid, quantity=None, cancel=False):
    el = build_continuation(qid, quantity, cancel, sender=HIS, receiver=HIE)
    action = "urn:hl7-org:v3:QUQI_IN000003UV01_" + ("Cancel" if cancel else "Continue")
    status, resp_action, body = post(base, "/pdq", action, el)
    assert status == 200
    return resp_action, body


def test_continuation_across_nodes_and_cancel(people, settings):
    base, _ = people
    qid = II("1.2.3", "CONT-1")
    msg, first = pdq(base, name={"family": "张*"}, initial_quantity=1, query_id=qid)
    assert (msg.query_ack.total, msg.query_ack.current, msg.query_ack.remaining) == (3, 1, 2)
    other = Node(settings, create_schema=False)      # another worker process's node
    try:
        with serve(create_app(other)) as base2:
            action, body = cont(base2, qid, 1)
            assert action == "urn:hl7-org:v3:PRPA_IN201306UV02"
            second = parse_message(body)
            assert second.query_ack.response_code == "OK"
            assert (second.query_ack.current, second.query_ack.remaining) == (1, 1)
            _, body3 = cont(base, qid)               # default: the initial quantity
            third = parse_message(body3)
            assert third.query_ack.remaining == 0
            found = first + names(body) + names(body3)
            assert sorted(found) == sorted(["张三", "张伟", "張小紅"])
            _, gone = cont(base2, qid)                # finished: forgotten
            g = parse_message(gone)
            assert (g.acknowledgement.type_code, g.query_ack.response_code) == ("AE", "AE")
            assert g.acknowledgement.details[0].location.endswith("/queryContinuation/queryId")
    finally:
        other.close()
    qid2 = II("1.2.3", "CONT-2")
    pdq(base, name={"family": "张*"}, initial_quantity=2, query_id=qid2)
    action, body = cont(base, qid2, cancel=True)
    ack = parse_message(body)
    assert action == "urn:hl7-org:v3:MCCI_IN000002UV01" and ack.acknowledgement.type_code == "AA"
    _, body = cont(base, qid2)
    assert parse_message(body).query_ack.response_code == "AE"
    _, body = cont(base, qid2, cancel=True)
    assert parse_message(body).acknowledgement.type_code == "AE"

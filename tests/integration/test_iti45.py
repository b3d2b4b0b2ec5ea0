"""ITI-45 PIXV3 Query over real HTTP, on SQLite and PostgreSQL (ITI TF-2b 3.45.4.2.3): OK with
every cross-referenced identifier or those of the dataSource domains, NF, AE with code 204 at
the patientIdentifier / dataSource location for unknown domains and identifiers, QE for a
malformed query, the legacy 15-digit resident ID number, and the audit record."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from lxml import etree

from hie.hl7v3 import II, parse_message
from hie.hl7v3_query import build_pix_query
from hie.tables import audit_event as t_audit
from pix_pdq.resident_id import RESIDENT_ID_OID
from tests.integration.test_iti44 import (HIE, HIS, HIS_OID, V3, ZHANG_ID, base,  # noqa: F401
                                          feed_message, post, send, zhang)

LIS_OID = "1.2.156.112604.1.1.202.7"


@pytest.fixture
def fed(base, node):
    aff = node.settings.affinity_domain
    send(base, feed_message(ids=[II(HIS_OID, "H0001"), II(aff, "E0001")]))
    send(base, feed_message(ids=[II(LIS_OID, "L0009")], person_ids=[],
                            demo=zhang(names=[{"family": "李", "given": "四"}],
                                       birth_time="19700101")))
    return base, aff


def query(base, patient: II, sources=()):
    el = build_pix_query(patient, sources, sender=HIS, receiver=HIE, query_id=II("1.2.3", "Q1"))
    status, action, body = post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201309UV02", el)
    assert status == 200 and action == "urn:hl7-org:v3:PRPA_IN201310UV02"
    msg = parse_message(body)
    ids = [(i.get("root"), i.get("extension"))
           for i in body.iterfind(f".//{{{V3}}}subject1/{{{V3}}}patient/{{{V3}}}id")]
    return msg, ids


def test_ok_lists_every_other_identifier(fed, database):
    base, aff = fed
    msg, ids = query(base, II(HIS_OID, "H0001"))
    assert msg.acknowledgement.type_code == "AA" and msg.query_ack.response_code == "OK"
    assert msg.query_ack.query_id == II("1.2.3", "Q1")
    assert sorted(ids) == sorted([(aff, "E0001"), (RESIDENT_ID_OID, ZHANG_ID)])
    assert msg.control_act.find(f"{{{V3}}}queryByParameter") is not None   # echoed
    name = msg.root.find(f".//{{{V3}}}patientPerson/{{{V3}}}name")
    assert name.get("nullFlavor") == "NA"
    with database.read() as c:
        rows = c.execute(sa.select(t_audit.c.transaction, t_audit.c.outcome,
                                   t_audit.c.patient_id).where(
            t_audit.c.transaction == "ITI-45")).all()
    assert [tuple(r) for r in rows] == [("ITI-45", 0, f"H0001^^^&{HIS_OID}&ISO")]


def test_data_source_limits_the_domains(fed):
    base, aff = fed
    _, ids = query(base, II(HIS_OID, "H0001"), [aff])
    assert ids == [(aff, "E0001")]
    legacy = ZHANG_ID[:6] + ZHANG_ID[8:17]
    msg, ids = query(base, II(RESIDENT_ID_OID, legacy), [HIS_OID])
    assert msg.query_ack.response_code == "OK" and ids == [(HIS_OID, "H0001")]


def test_nf_when_no_identifier_in_the_wanted_domain(fed):
    base, _ = fed
    msg, ids = query(base, II(HIS_OID, "H0001"), [LIS_OID])
    assert (msg.acknowledgement.type_code, msg.query_ack.response_code, ids) == ("AA", "NF", [])


@pytest.mark.parametrize("patient, sources, where", [
    (II("1.2.156.4444", "H0001"), (), "/parameterList/patientIdentifier/value"),
    (II(HIS_OID, "H9999"), (), "/parameterList/patientIdentifier/value"),
    (II(HIS_OID, "H0001"), (LIS_OID, "1.2.156.4444"), "/parameterList/dataSource[2]/value"),
])
def test_ae_for_unknown_domains_and_identifiers(fed, database, patient, sources, where):
    base, _ = fed
    msg, ids = query(base, patient, sources)
    assert (msg.acknowledgement.type_code, msg.query_ack.response_code, ids) == ("AE", "AE", [])
    [d] = msg.acknowledgement.details
    assert (d.type_code, d.code) == ("E", "204")
    assert d.location == "/PRPA_IN201309UV02/controlActProcess/queryByParameter" + where
    with database.read() as c:
        assert c.execute(sa.select(t_audit.c.outcome).where(
            t_audit.c.transaction == "ITI-45")).scalars().all() == [8]


def test_malformed_query_is_qe_and_garbage_a_fault(fed):
    base, _ = fed
    el = build_pix_query(II(HIS_OID, "H0001"), sender=HIS, receiver=HIE)
    pi = el.find(f".//{{{V3}}}patientIdentifier")
    pi.getparent().remove(pi)
    status, _, body = post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201309UV02", el)
    msg = parse_message(body)
    assert status == 200 and msg.query_ack.response_code == "QE"
    assert msg.acknowledgement.type_code == "AE" and msg.acknowledgement.details[0].code == "101"
    status, _, body = post(base, "/pix", "urn:hl7-org:v3:PRPA_IN201309UV02",
                           etree.Element(f"{{{V3}}}notAMessage"))
    assert status == 400 and etree.QName(body).localname == "Fault"

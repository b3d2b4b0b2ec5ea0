"""Imaging under the enterprise identity (dicom_qr.patients), on SQLite and PostgreSQL, with DCMTK
as the PACS: instances stored with storescu are tied to the patient index (fed over MLLP like a
hospital's HIS would), and findscu / getscu by the enterprise ID, another hospital's MRN or the
resident ID number find every hospital's studies of that person."""
from __future__ import annotations

import sqlalchemy as sa
from pydicom.uid import generate_uid

from dicom_qr.tables import dicom_patient
from pix_pdq.tables import identifier as t_id, person as t_person
from tests.dicom_support import find, instance, run
from tests.live import live_with
from tests.mllp_support import MllpClient, resident_id
from tests.xdsdata import AFFINITY_DOMAIN

XH_OID = "1.2.156.112604.1.3.1"      # 北京协和医院's MRN domain (namespace XH)
TT_OID = "1.2.156.112604.1.3.2"      # 北京天坛医院's (namespace TT)
IDCARD = "2.16.156.10011.1.3"


def adt(mrn: str, eid: str, idcard: str, name: str = "王^小明") -> bytes:
    msg = "\r".join([
        "MSH|^~\\&|HIS|XH|HIE|REGION|20261202083000+0800||ADT^A01^ADT_A01|"
        f"C{mrn}|P|2.5||||||UNICODE UTF-8",
        "EVN|A01|20261202083000",
        f"PID|1||{eid}^^^&{AFFINITY_DOMAIN}&ISO^PI~{mrn}^^^XH&{XH_OID}&ISO^MR~"
        f"{idcard}^^^&{IDCARD}&ISO^NI||{name}||19800101|M",
        "PV1|1|O"]) + "\r"
    return msg.encode("utf-8")


def feed(live, message: bytes) -> None:
    with MllpClient(live.node.listeners["mllp"]) as c:
        ack = c.request(message)
    assert b"MSA|AA" in ack, ack


def store(live, *paths, aet: str = "STORESCU") -> None:
    host, port = live.node.listeners["dicom"]
    done = run("storescu", "-aet", aet, "-aec", live.settings.dicom_ae_title, host, str(port),
               *map(str, paths))
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def studies(live, tmp_path, patient_id: str, issuer: str) -> set[str]:
    answers = find(live, tmp_path, "QueryRetrieveLevel=STUDY", f"PatientID={patient_id}",
                   f"IssuerOfPatientID={issuer}", "StudyInstanceUID")
    return {str(a.StudyInstanceUID) for a in answers}


def test_a_pacs_patient_known_to_the_index_is_found_by_the_enterprise_id(live, tmp_path):
    idcard = resident_id("110101", "19800101", "011")
    feed(live, adt("XH0001", "E0001", idcard))
    study = generate_uid()
    store(live, instance(tmp_path, "a.dcm", patient_id="XH0001", patient_name="王^小明",
                         charset="ISO_IR 192", study=study, series=generate_uid(),
                         issuer="XH"))
    with live.node.db.read() as c:   # the namespace the HIS sent with its OID: that domain
        assert c.execute(sa.select(dicom_patient.c.domain)).scalar_one() == XH_OID
        persons = c.execute(sa.select(sa.func.count()).select_from(t_person)).scalar()
    assert persons == 1                                  # the index was not given a second one
    assert studies(live, tmp_path, "E0001", AFFINITY_DOMAIN) == {study}
    assert studies(live, tmp_path, idcard, IDCARD) == {study}
    assert studies(live, tmp_path, "XH0001", XH_OID) == {study}
    assert studies(live, tmp_path, "E0002", AFFINITY_DOMAIN) == set()


def test_two_hospitals_studies_of_one_person_are_found_by_either_mrn(live, tmp_path):
    """天坛's PACS sends its own MRN, as an OID-qualified issuer, with the resident ID number in
    OtherPatientIDsSequence: the index links it to the patient 协和 registered."""
    idcard = resident_id("110101", "19800101", "027")
    feed(live, adt("XH0002", "E0002", idcard, name="李^娜"))
    xh, tt = generate_uid(), generate_uid()
    store(live, instance(tmp_path, "xh.dcm", patient_id="XH0002", patient_name="李^娜",
                         charset="ISO_IR 192", study=xh, series=generate_uid(), issuer="XH"),
          instance(tmp_path, "tt.dcm", patient_id="TT7788", patient_name="李^娜",
                   charset="GB18030", study=tt, series=generate_uid(), issuer=TT_OID,
                   other_ids=((idcard, IDCARD),)))
    assert studies(live, tmp_path, "TT7788", TT_OID) == {xh, tt}
    assert studies(live, tmp_path, "XH0002", "XH") == {xh, tt}      # namespace: resolved
    assert studies(live, tmp_path, "E0002", AFFINITY_DOMAIN) == {xh, tt}
    with live.node.db.read() as c:
        owner = c.execute(sa.select(t_id.c.person_id).where(
            t_id.c.domain_oid == TT_OID, t_id.c.value == "TT7788")).scalar_one()
        eid_owner = c.execute(sa.select(t_id.c.person_id).where(
            t_id.c.value == "E0002")).scalar_one()
    assert owner == eid_owner


def test_a_patient_the_index_does_not_know_is_fed_to_it_with_its_demographics(live, tmp_path):
    study = generate_uid()
    store(live, instance(tmp_path, "n.dcm", patient_id="TT9001", patient_name="Zhao^Lei=赵^磊",
                         charset="ISO_IR 192", study=study, series=generate_uid(),
                         issuer=TT_OID))
    with live.node.db.read() as c:
        person = c.execute(sa.select(t_person).join(t_id, t_id.c.person_id == t_person.c.id)
                           .where(t_id.c.value == "TT9001")).mappings().one()
    assert person["family_name"] == "赵" and person["sex"] == "M"
    assert person["birth_date"].startswith("19800101")
    assert studies(live, tmp_path, "TT9001", TT_OID) == {study}


def test_a_pacs_that_sends_no_issuer_gets_the_domain_configured_for_its_ae(node, tmp_path):
    with live_with(node, dicom_issuers=f"CT_XH={XH_OID},MR_TT=TT") as ln:
        feed(ln, adt("XH0003", "E0003", resident_id("110101", "19800101", "035")))
        study, other = generate_uid(), generate_uid()
        store(ln, instance(tmp_path, "a.dcm", patient_id="XH0003", patient_name="王^小明",
                           charset="ISO_IR 192", study=study, series=generate_uid(),
                           issuer=None), aet="CT_XH")
        store(ln, instance(tmp_path, "b.dcm", patient_id="XH0003", patient_name="王^小明",
                           charset="ISO_IR 192", study=other, series=generate_uid(),
                           issuer=None), aet="NOBODY")
        assert studies(ln, tmp_path, "E0003", AFFINITY_DOMAIN) == {study}
        # the configured issuer is the instance's; the unmapped PACS's patient: stored, untied
        with ln.node.db.read() as c:
            domains = dict(c.execute(sa.select(dicom_patient.c.issuer,
                                               dicom_patient.c.domain)).all())
        assert domains == {XH_OID: XH_OID, "": ""}
        answers = find(ln, tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=XH0003",
                       "StudyInstanceUID")
        assert {str(a.StudyInstanceUID) for a in answers} == {study, other}


def test_an_issuer_the_index_refuses_keeps_the_instance_untied(node, tmp_path):
    with live_with(node, pix_auto_domains=False) as ln:
        study = generate_uid()
        store(ln, instance(tmp_path, "u.dcm", patient_id="U1", patient_name="孙^悟空",
                           charset="ISO_IR 192", study=study, series=generate_uid(),
                           issuer="1.2.156.999.9"))
        with ln.node.db.read() as c:
            assert c.execute(sa.select(sa.func.count()).select_from(t_id)).scalar() == 0
        # not in the index: the issuer key matches the stored issuer as any other key
        assert studies(ln, tmp_path, "U1", "1.2.156.999.9") == {study}


def test_getscu_by_the_enterprise_id_retrieves_every_hospitals_instances(live, tmp_path):
    idcard = resident_id("110101", "19800101", "043")
    feed(live, adt("XH0004", "E0004", idcard, name="周^杰"))
    paths = [instance(tmp_path, "g1.dcm", patient_id="XH0004", patient_name="周^杰",
                      charset="ISO_IR 192", study=generate_uid(), series=generate_uid(),
                      issuer="XH"),
             instance(tmp_path, "g2.dcm", patient_id="TT0404", patient_name="周^杰",
                      charset="ISO_IR 192", study=generate_uid(), series=generate_uid(),
                      issuer=TT_OID, other_ids=((idcard, IDCARD),))]
    store(live, *paths)
    out = tmp_path / "got"
    out.mkdir()
    host, port = live.node.listeners["dicom"]
    done = run("getscu", "-P", "-aec", live.settings.dicom_ae_title, "-od", str(out),
               "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=E0004",
               "-k", f"IssuerOfPatientID={AFFINITY_DOMAIN}", host, str(port))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert len(list(out.iterdir())) == 2

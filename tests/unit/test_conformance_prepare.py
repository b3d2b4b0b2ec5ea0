"""A test plan's metadata made ready to send (conformance/prepare.py): placeholders, the run's
patient id, fresh uniqueIds and entryUUIDs with every reference moved along, reported by
symbolic id for later steps; the result still valid ebRIM 3.0."""
import pytest
from lxml import etree

from conformance import ebrim21, prepare
from conformance.testkit import TestKit
from tests.schemas import errors

NS = {"rim": prepare.RIM}
PID = "330102199003071234^^^&2.16.156.10011.1.3&ISO"   # a resident ID number as patient id


@pytest.fixture(scope="module")
def kit():
    return TestKit()


def _text(kit, test: str, section: str, name: str) -> str:
    return (kit.tests[test].path / section / name).read_text("utf-8")


def test_placeholders_are_replaced_escaped_or_reported():
    assert prepare.substitute("<a v='$x$'>$y$</a>", {"$x$": "1&2", "$y$": "<张三>"}) == \
        "<a v='1&amp;2'>&lt;张三&gt;</a>"
    assert prepare.substitute("<a/>", {}) == "<a/>"
    with pytest.raises(prepare.PreparationError, match=r"no value for \$a\$, \$b\$"):
        prepare.substitute("$b$ $a$ $c$", {"$c$": "3"})


def _ids(root):
    return {el.get("id") for el in root.iter() if el.get("id")}


def test_a_2_1_submission_made_ready(kit):
    uids = iter(f"1.2.156.112604.1.99.7.{n}" for n in range(1, 50))
    root, assigned = prepare.prepare(
        _text(kit, "11990", "submit", "single_doc.xml"), {"$patientid$": "unused"},
        patient_id=PID, uuids=True, uids=True, translate=ebrim21.to_v3,
        new_uid=lambda: next(uids))
    assert errors(root) == []
    ids = _ids(root)
    assert all(i.startswith("urn:uuid:") for i in ids)
    for el in root.iter():   # every reference names an object of the submission (or a UUID)
        for attr in ("classifiedObject", "registryObject", "sourceObject", "targetObject"):
            if el.get(attr) is not None:
                assert el.get(attr) in ids, (attr, el.get(attr))
    assert set(assigned.uuids) >= {"Document01", "SubmissionSet01"}
    doc = root.find(".//rim:ExtrinsicObject", NS)
    assert doc.get("id") == assigned.uuids["Document01"]
    assert assigned.uids == {"Document01": "1.2.156.112604.1.99.7.1",
                             "SubmissionSet01": "1.2.156.112604.1.99.7.2"}
    unique = root.xpath("//rim:ExternalIdentifier[@identificationScheme="
                        "'urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab']/@value", namespaces=NS)
    assert unique == ["1.2.156.112604.1.99.7.1"]
    pids = [ei.get("value") for ei in root.iter(f"{{{prepare.RIM}}}ExternalIdentifier")
            if ei.get("identificationScheme") in prepare.PATIENT_ID_SCHEMES]
    assert pids == [PID, PID]


def test_no_patient_id_no_assign_uids_and_symbolic_ids_are_kept(kit):
    root, assigned = prepare.prepare(
        _text(kit, "11990", "submit", "single_doc.xml"), {"$patientid$": "P9^^^&1.2.3&ISO"},
        patient_id=None, uuids=False, uids=False, translate=ebrim21.to_v3)
    assert assigned.uids == assigned.uuids == {}
    # AssignedPatientId: what the metadata carries, by object
    assert assigned.patients == {"Document01": "P9^^^&1.2.3&ISO",
                                 "SubmissionSet01": "P9^^^&1.2.3&ISO"}
    assert {"Document01", "SubmissionSet01"} <= _ids(root)
    values = root.xpath("//rim:ExternalIdentifier/@value", namespaces=NS)
    assert "P9^^^&1.2.3&ISO" in values and "Document01" in values   # as the file says


def test_a_3_0_submission_and_bad_metadata(kit):
    text = _text(kit, "15800", "original", "single_doc.xml")
    values = {p: "x" for p in prepare.PLACEHOLDER.findall(text)}
    root, assigned = prepare.prepare(text, values, patient_id=PID, uuids=True, uids=True)
    assert errors(root) == [] and assigned.uids
    with pytest.raises(prepare.PreparationError, match="not XML"):
        prepare.prepare("<rim:x", {}, patient_id=None, uuids=True, uids=True)
    assert isinstance(root, etree._Element)

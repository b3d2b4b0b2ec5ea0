"""ebRIM 3.0 <-> XDS models (ITI TF-3 4.2.3, 4.2.5): every object round-trips through
from_ebrim/to_ebrim, every output is valid against the official schemas, unknown metadata is kept,
and the NIST XDS toolkit's ebRIM 3.0 samples all parse."""
from __future__ import annotations

import glob

import pytest
from hypothesis import given, settings, strategies as st
from lxml import etree

from hie.errors import STATUS_FAILURE, ErrorCollector, RegistryError, XDS
from tests import xdsdata as X
from tests.schemas import STANDARDS, assert_valid
from xds_registry import vocab as V
from xds_registry.ebrim import (Classification, ExternalIdentifier, LocalizedString,
                                Slot)
from xds_registry.messages import (LCM, RegistryResponse, SubmitObjects, parse_remove_objects,
                                   parse_submit_objects, remove_objects_request)
from xds_registry.model import (Association, Author, Code, DocumentEntry, Folder, ObjectRef,
                                SubmissionSet)

NIST = STANDARDS / "nist-xds-toolkit" / "testkit"


def parse(req) -> SubmitObjects:
    ec = ErrorCollector()
    so = parse_submit_objects(req, ec)
    assert not ec.errors, ec.errors
    return so


def roundtrip(obj):
    el = obj.to_ebrim()
    assert_valid(el)
    again = type(obj).from_ebrim(el)
    assert again == obj
    # and a second trip is byte-stable once sub-object ids are assigned
    assert etree.tostring(again.to_ebrim()) == etree.tostring(type(obj).from_ebrim(
        again.to_ebrim()).to_ebrim())
    return again


# --------------------------------------------------------------------------------------------
# models built in Python
# --------------------------------------------------------------------------------------------

def full_document_entry() -> DocumentEntry:
    return DocumentEntry(
        id=X.new_uuid(), mime_type="text/xml", object_type=V.DE_STABLE,
        title="出院小结", comments=[LocalizedString("患者出院时的病情总结", "zh-CN")],
        patient_id=X.patient_cx(), unique_id="1.2.156.112604.1.1.101.20.1^CDA01",
        class_code=Code("18842-5", X.LOINC, "出院小结"),
        type_code=Code("18842-5", X.LOINC, "出院小结"),
        format_code=Code("urn:ihe:pcc:xds-ms:2007", "1.3.6.1.4.1.19376.1.2.3", "CDA"),
        hcft_code=Code("22232009", X.SNOMED, "医院"),
        practice_code=Code("394579002", X.SNOMED, "心血管内科"),
        confidentiality_codes=[Code("N", X.CONF_OID, "正常"), Code("R", X.CONF_OID, "受限")],
        event_codes=[Code("I20.801", X.ICD10, "稳定型心绞痛")],
        authors=[Author("D1024^王^建国^^^^^^&1.2.156.112604.1.1.101.3&ISO",
                        ["北京市第一人民医院^^^^^&1.2.156.112604.1.1&ISO^^^^101"],
                        ["主治医师"], ["心血管内科"], ["^^Internet^wjg@bjfh.example.cn"]),
                 Author(None, ["北京市第一人民医院"])],
        creation_time="20240315083000", service_start_time="20240305",
        service_stop_time="20240315", hash="da39a3ee5e6b4b0d3255bfef95601890afd80709", size=0,
        language_code="zh-CN", legal_authenticator="D1001^李^明",
        source_patient_id="MR2024000101^^^&1.2.156.112604.1.1.101.2&ISO",
        source_patient_info=["PID-3|MR2024000101^^^&1.2.156.112604.1.1.101.2&ISO",
                             "PID-5|张^三^^^", "PID-7|19900307", "PID-8|M"],
        repository_unique_id=X.REPOSITORY_ID,
        uri="https://repo.example.cn/docs/" + "长" * 300,
        availability=V.AVAILABILITY_ONLINE,
        reference_ids=["ACC1^^^&1.2.156.112604.1.1.101.5&ISO^urn:ihe:iti:xds:2013:accession"],
        lid=None, version="1", home="urn:oid:1.2.156.112604.9",
        extra_slots=[Slot("urn:hie:emr:catalog", ["C0101", "C0102"])],
        extra_classifications=[Classification("x", "urn:uuid:11111111-2222-3333-4444-555555555555",
                                              None, "K1", (Slot("codingScheme", ("1.2.3",)),),
                                              "自定义分类")],
        extra_external_identifiers=[ExternalIdentifier("x", "urn:uuid:99999999-2222-3333-4444-"
                                                       "555555555555", "住院号 ZY001", "住院号")])


def test_document_entry_roundtrip_every_attribute():
    de = roundtrip(full_document_entry())
    assert de.entry_type == "stable"
    assert len(de.uri) > 256   # split into n|part values and joined again
    assert de.extra_slots[0].values == ("C0101", "C0102")
    assert de.extra_classifications[0].node_representation == "K1"
    assert de.comments[0].lang == "zh-CN" and de.title_text == "出院小结"


def test_on_demand_document_entry():
    de = DocumentEntry(id="Document01", object_type=V.DE_ON_DEMAND, mime_type="text/xml",
                       patient_id=X.patient_cx(), unique_id="1.2.3")
    assert roundtrip(de).is_on_demand


def test_limited_metadata_flag_roundtrips():
    de = DocumentEntry(id="Document01", mime_type="text/xml", limited=True)
    assert roundtrip(de).limited


def test_submission_set_roundtrip():
    ss = SubmissionSet(
        id="SubmissionSet01", home="urn:oid:1.2.156.112604.9", title="出院文档提交",
        comments="由医院信息系统自动提交", submission_time="20240315090000",
        intended_recipients=["北京市卫生健康委员会^^^^^&1.2.156.112604&ISO^^^^1|^赵^六"],
        authors=[Author("^王^建国", ["北京市第一人民医院"])],
        content_type=Code("34133-9", X.LOINC, "诊疗过程摘要"), patient_id=X.patient_cx(),
        source_id=X.SOURCE_ID, unique_id="1.2.156.112604.1.1.101.20.2",
        extra_slots=[Slot("urn:hie:batch", ["B01"])])
    again = roundtrip(ss)
    el = again.to_ebrim()
    nodes = [c.get("classificationNode") for c in el.iter(f"{{{X.RIM}}}Classification")]
    assert V.SUBMISSION_SET_NODE in nodes


def test_folder_roundtrip():
    fd = Folder(id="Folder01", title="2024年3月住院资料", comments="心血管内科",
                codes=[Code("INPATIENT", "1.2.156.112604.1.9.1", "住院资料")],
                last_update_time="20240315090000", patient_id=X.patient_cx(),
                unique_id="1.2.156.112604.1.1.101.20.3", lid="Folder01", version="2")
    again = roundtrip(fd)
    assert V.FOLDER_NODE in etree.tostring(again.to_ebrim()).decode()


def test_association_roundtrip():
    a = Association("Assoc01", type=V.HAS_MEMBER, source="SubmissionSet01", target="Document01",
                    extra_slots=[Slot("SubmissionSetStatus", ["Original"])])
    again = roundtrip(a)
    assert again.ss_status == "Original" and again.type_short == "HasMember"
    u = Association("Assoc02", type=V.UPDATE_AVAILABILITY_STATUS, source="SubmissionSet01",
                    target=X.new_uuid(), extra_slots=[Slot("OriginalStatus", [V.APPROVED]),
                                                      Slot("NewStatus", [V.DEPRECATED])],
                    title="作废")
    again = roundtrip(u)
    assert (again.original_status, again.new_status) == (V.APPROVED, V.DEPRECATED)


def test_object_ref():
    r = ObjectRef(X.new_uuid(), "urn:oid:1.2.3")
    assert_valid(r.to_ebrim())
    assert ObjectRef.from_ebrim(r.to_ebrim()) == r


def test_constructors_validate():
    with pytest.raises(ValueError):
        DocumentEntry(id="")
    with pytest.raises(ValueError):
        DocumentEntry(id="d", object_type="urn:uuid:00000000-0000-0000-0000-000000000000")
    with pytest.raises(ValueError):
        DocumentEntry(id="d", size=-1)
    with pytest.raises(ValueError):
        DocumentEntry(id="d", size="12a")
    with pytest.raises(ValueError):
        Folder(id="f", status="Approved")          # status is the URN
    with pytest.raises(ValueError):
        Association("a", type=V.HAS_MEMBER, source="", target="t")
    with pytest.raises(ValueError):
        Slot("", ["x"])
    with pytest.raises(ValueError):
        Classification("obj")                      # neither scheme nor node
    with pytest.raises(ValueError):
        ExternalIdentifier("obj", "", "v")
    assert DocumentEntry(id="d", size="42").size == 42


# --------------------------------------------------------------------------------------------
# whole requests
# --------------------------------------------------------------------------------------------

def test_builder_request_parses_and_roundtrips():
    sub = X.submission(3, folder=True, symbolic=True)
    sub.replace(X.new_uuid())
    req = sub.build()
    assert_valid(req)
    so = parse(req)
    assert len(so.documents) == 4 and len(so.folders) == 1
    assert so.submission_set.id == "SubmissionSet01"
    assert so.submission_set.unique_id == sub.ss_unique_id
    assert len(so.object_refs) == 1
    for o in so.entries():
        roundtrip(o)
    out = so.to_ebrim()
    assert_valid(out)
    assert parse(out).by_id() == so.by_id()


def test_top_level_classification_attached():
    so = parse(X.submission(1, folder=True).build())
    assert so.submission_set.node_classification_id
    assert so.folders[0].node_classification_id


def test_classification_inside_package():
    sub = X.Submission(ss_classification_inside=True)
    sub.folder(classification_inside=True)
    so = parse(sub.build())
    assert so.submission_set is not None and len(so.folders) == 1


def test_unknown_slots_and_attributes_roundtrip():
    sub = X.Submission(ss_extra_slots={"urn:hie:region": ["北京市朝阳区"]})
    did = sub.document(extra_slots={"urn:hie:emr:catalog": ["C0101"]})
    req = sub.build()
    X.find(req, did).set("isOpaque", "false")
    so = parse(req)
    de = so.documents[0]
    assert de.extra_slots[0] == Slot("urn:hie:emr:catalog", ("C0101",))
    assert de.extra_attrs == {"isOpaque": "false"}
    el = de.to_ebrim()
    assert el.get("isOpaque") == "false"
    assert so.submission_set.extra_slots[0].values == ("北京市朝阳区",)


def test_package_without_classification_is_an_error():
    req = X.submit_objects_request(1)
    for c in list(req.iter(f"{{{X.RIM}}}Classification")):
        if c.get("classificationNode") == X.SS_NODE:
            c.getparent().remove(c)
    ec = ErrorCollector()
    so = parse_submit_objects(req, ec)
    assert so.submission_set is None
    assert [e.error_code for e in ec.errors] == [XDS.RegistryMetadataError]


def test_structural_errors_are_collected():
    req = X.submit_objects_request(2)
    des = list(req.iter(f"{{{X.RIM}}}ExtrinsicObject"))
    X.set_slot(des[0], "creationTime", "20240101", "20240102")   # single-valued slot twice
    des[1].set("objectType", "urn:uuid:00000000-0000-0000-0000-000000000000")
    ec = ErrorCollector()
    parse_submit_objects(req, ec)
    assert len(ec.errors) == 2
    assert {e.location for e in ec.errors} == {des[0].get("id"), des[1].get("id")}


def test_wrong_root_and_missing_list():
    ec = ErrorCollector()
    parse_submit_objects(etree.Element("{urn:x}Foo"), ec)
    parse_submit_objects(etree.Element(LCM + "SubmitObjectsRequest"), ec)
    assert [e.error_code for e in ec.errors] == [XDS.RegistryMetadataError] * 2


def test_remove_objects_request():
    ids = [X.new_uuid(), X.new_uuid()]
    req = remove_objects_request(ids)
    assert_valid(req)
    ec = ErrorCollector()
    assert [r.id for r in parse_remove_objects(req, ec)] == ids and not ec.errors
    req.set("deletionScope", "urn:oasis:names:tc:ebxml-regrep:DeletionScopeType:DeleteRepositoryItemOnly")
    parse_remove_objects(req, ec)
    assert ec.errors[0].error_code == XDS.InvalidRequestException


def test_registry_response():
    ok = RegistryResponse()
    assert_valid(ok.to_ebrim())
    bad = RegistryResponse.from_errors([
        RegistryError(XDS.RegistryMetadataError, "DocumentEntry Document01: classCode 缺失",
                      location="Document01"),
        RegistryError(XDS.ExtraMetadataNotSaved, "x",
                      "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning")])
    el = bad.to_ebrim()
    assert_valid(el)
    assert bad.status == STATUS_FAILURE
    assert RegistryResponse.from_ebrim(el) == bad
    warn_only = RegistryResponse.from_errors(bad.errors[1:])
    assert warn_only.ok
    assert_valid(warn_only.to_ebrim())


# --------------------------------------------------------------------------------------------
# the NIST toolkit's ebRIM 3.0 metadata
# --------------------------------------------------------------------------------------------

def _nist_requests():
    out = []
    for f in sorted(glob.glob(str(NIST / "**" / "*.xml"), recursive=True)):
        try:
            root = etree.parse(f).getroot()
        except etree.XMLSyntaxError:
            continue
        out += [(f, r) for r in root.iter(LCM + "SubmitObjectsRequest")]
    return out


@pytest.mark.skipif(not NIST.exists(), reason="NIST testkit not available")
def test_nist_samples_parse_roundtrip_and_stay_valid():
    reqs = _nist_requests()
    assert len(reqs) > 100
    parsed = 0
    for f, req in reqs:
        ec = ErrorCollector()
        so = parse_submit_objects(req, ec)
        parsed += bool(so.documents or so.folders or so.associations)
        for o in so.entries():
            again = type(o).from_ebrim(o.to_ebrim())
            assert again == o, (f, o.id)
        assert_valid(so.to_ebrim())
    assert parsed > 100


# --------------------------------------------------------------------------------------------
# property: slots and strings survive any text
# --------------------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                max_size=40)


@settings(max_examples=60, deadline=None)
@given(name=_text, values=st.lists(_text, max_size=4), title=_text)
def test_any_slot_and_title_roundtrip(name, values, title):
    de = DocumentEntry(id="Document01", mime_type="text/plain", title=title,
                       extra_slots=[Slot("x:" + name, values)])
    again = DocumentEntry.from_ebrim(etree.fromstring(etree.tostring(de.to_ebrim())))
    assert again == de

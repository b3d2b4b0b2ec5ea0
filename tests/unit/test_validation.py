"""Metadata validation of a Register Document Set-b request (ITI TF-2b 3.42.4.1.3, ITI TF-3 4.2):
required attributes, formats, codingScheme, one patient, uniqueIds in the message, membership,
symbolic id resolution.  No database."""
from __future__ import annotations

import pytest

from hie.errors import XDS, ErrorCollector
from tests import xdsdata as X
from xds_registry.messages import parse_submit_objects
from xds_registry.validation import resolve_ids, validate_register

META = XDS.RegistryMetadataError


def check(req):
    ec = ErrorCollector()
    so = parse_submit_objects(req, ec)
    if not ec.errors:
        validate_register(so, ec)
        resolve_ids(so, ec)
    return so, ec.errors


def codes(req):
    return [e.error_code for e in check(req)[1]]


def contexts(req):
    return " | ".join(e.code_context for e in check(req)[1])


def first_doc(req):
    return req.find(f".//{{{X.RIM}}}ExtrinsicObject")


def ss_el(req):
    return X.find(req, req.find(f".//{{{X.RIM}}}RegistryPackage").get("id"))


def test_valid_requests_have_no_error():
    for req in (X.submit_objects_request(1), X.submit_objects_request(3, folder=True),
                X.submit_objects_request(2, folder=True, symbolic=True)):
        assert check(req)[1] == []


# -- required attributes ----------------------------------------------------------------------

@pytest.mark.parametrize("slot_name", ["creationTime", "hash", "size", "languageCode",
                                       "repositoryUniqueId", "sourcePatientId"])
def test_document_entry_required_slot(slot_name):
    req = X.submit_objects_request(1)
    X.remove_slot(first_doc(req), slot_name)
    assert codes(req) == [META]
    assert slot_name in contexts(req)


@pytest.mark.parametrize("scheme,name", [(X.DE_CLASS, "classCode"), (X.DE_TYPE, "typeCode"),
                                         (X.DE_FORMAT, "formatCode"),
                                         (X.DE_HCFT, "healthcareFacilityTypeCode"),
                                         (X.DE_PRACTICE, "practiceSettingCode"),
                                         (X.DE_CONF, "confidentialityCode")])
def test_document_entry_required_code(scheme, name):
    req = X.submit_objects_request(1)
    X.remove_classification(first_doc(req), scheme)
    assert codes(req) == [META] and name in contexts(req)


@pytest.mark.parametrize("scheme,name", [(X.DE_PID, "patientId"), (X.DE_UID, "uniqueId")])
def test_document_entry_required_identifier(scheme, name):
    req = X.submit_objects_request(1)
    X.set_external_id(first_doc(req), scheme, None)
    assert META in codes(req) and name in contexts(req)


def test_mime_type_required():
    req = X.submit_objects_request(1)
    del first_doc(req).attrib["mimeType"]
    assert codes(req) == [META] and "mimeType" in contexts(req)


def test_optional_attributes_may_be_absent():
    sub = X.Submission(title=None, comments=None, authors=())
    sub.document(title=None, comments=None, service_start=None, service_stop=None,
                 legal_authenticator=None, source_patient_info=(), event_codes=(), authors=())
    assert check(sub.build())[1] == []


@pytest.mark.parametrize("scheme,name", [(X.SS_UID, "uniqueId"), (X.SS_SOURCE, "sourceId"),
                                         (X.SS_PID, "patientId")])
def test_submission_set_required_identifier(scheme, name):
    req = X.submit_objects_request(1)
    X.set_external_id(ss_el(req), scheme, None)
    assert META in codes(req) and name in contexts(req)


def test_submission_set_required_time_and_content_type():
    req = X.submit_objects_request(1)
    X.remove_slot(ss_el(req), "submissionTime")
    X.remove_classification(ss_el(req), X.SS_CONTENT)
    assert codes(req) == [META, META]
    assert "submissionTime" in contexts(req) and "contentTypeCode" in contexts(req)


def test_folder_required_title_and_code_list():
    sub = X.Submission()
    f = sub.folder(title=None, codes=())
    d = sub.document()
    sub.add_to_folder(f, d)
    text = contexts(sub.build())
    assert "title" in text and "codeList" in text


def test_on_demand_entry_must_not_have_hash_or_size():
    sub = X.Submission()
    sub.document(on_demand=True, hash="da39a3ee5e6b4b0d3255bfef95601890afd80709", size=0)
    assert codes(sub.build()) == [META]
    sub = X.Submission()
    sub.document(on_demand=True)
    assert codes(sub.build()) == []


def test_limited_metadata_is_refused():
    req = X.submit_objects_request(1)
    X.rim("Classification", first_doc(req), id=X.new_uuid(),
          classifiedObject=first_doc(req).get("id"),
          classificationNode="urn:uuid:ab9b591b-83ab-4d03-8f5d-f93b1fb92e85")
    assert "limitedMetadata" in contexts(req)


# -- formats ---------------------------------------------------------------------------------

@pytest.mark.parametrize("slot_name,value,word", [
    ("creationTime", "2024-03-15", "DTM"), ("creationTime", "20240230", "DTM"),
    ("serviceStartTime", "202403151", "DTM"), ("hash", "xyz", "SHA-1"),
    ("languageCode", "zh_CN", "language"), ("repositoryUniqueId", "repo-1", "OID"),
    ("sourcePatientId", "MR2024000101", "sourcePatientId"),
    ("legalAuthenticator", "^^明", "XCN"),
    ("sourcePatientInfo", "张三", "sourcePatientInfo"),
    ("urn:ihe:iti:xds:2013:referenceIdList", "ACC1^^^&1.2.3&ISO", "referenceIdList"),
    ("documentAvailability", "Online", "documentAvailability"),
])
def test_document_entry_formats(slot_name, value, word):
    req = X.submit_objects_request(1)
    X.set_slot(first_doc(req), slot_name, value)
    assert META in codes(req)
    assert word in contexts(req)


def test_service_stop_before_start():
    sub = X.Submission()
    sub.document(service_start="20240315", service_stop="20240301")
    assert "serviceStopTime" in contexts(sub.build())


def test_patient_id_format():
    bad = "RHIN0000001^^^1.2.156.112604.1.2.1"      # authority without &...&ISO
    req = X.submit_objects_request(1, patient_id=bad)
    assert set(codes(req)) == {META}
    assert "patientId" in contexts(req)


def test_unique_id_formats():
    sub = X.Submission(ss_unique_id="SS-2024-001")
    sub.document(unique_id="not an oid")
    text = contexts(sub.build())
    assert "SubmissionSet" in text and "DocumentEntry" in text


def test_author_formats():
    sub = X.Submission(authors=(X.Author(person="^^", institutions=("^^^^^&1.2.3&ISO",),
                                         telecoms=("13800138000",)),))
    text = contexts(sub.build())
    assert "authorPerson" in text and "authorInstitution" in text
    assert "authorTelecommunication" in text


def test_author_needs_person_institution_or_telecom():
    sub = X.Submission()
    sub.document(authors=(X.Author(person=None, institutions=(), telecoms=(),
                                   roles=("主治医师",)),))
    assert "authorPerson, authorInstitution" in contexts(sub.build())


def test_author_person_single_value():
    req = X.submit_objects_request(1)
    author = [c for c in first_doc(req).findall(f"{{{X.RIM}}}Classification")
              if c.get("classificationScheme") == X.DE_AUTHOR][0]
    X.set_slot(author, "authorPerson", "^王^建国", "^李^明")
    assert "single value" in contexts(req)


def test_intended_recipient_format():
    sub = X.Submission(intended_recipients=("北京市卫生健康委员会^^^^^&1.2.156.112604&ISO^^^^1|^赵^六",
                                            "|||"))
    sub.document()
    assert codes(sub.build()) == [META]


def test_code_needs_coding_scheme():
    sub = X.Submission()
    sub.document(class_code=X.Code("18842-5", "", "出院小结"))
    assert codes(sub.build()) == [META]
    assert "codingScheme" in contexts(sub.build())


def test_home_community_id_format():
    sub = X.Submission(home="1.2.156.112604.9")
    sub.document()
    assert "homeCommunityId" in contexts(sub.build())


# -- across the submission ------------------------------------------------------------------

def test_patient_id_does_not_match():
    sub = X.Submission()
    sub.document(patient_id=X.patient_cx(X.LI_SI))
    f = sub.folder(patient_id=X.patient_cx(X.WANG_WU))
    assert codes(sub.build()) == [XDS.PatientIdDoesNotMatch] * 2
    assert f in contexts(sub.build())


def test_duplicate_unique_id_in_message():
    sub = X.Submission()
    sub.document(unique_id="1.2.3.4")
    sub.folder(unique_id="1.2.3.4")
    assert codes(sub.build()) == [XDS.RegistryDuplicateUniqueIdInMessage]


def test_exactly_one_submission_set():
    sub = X.submission(1)
    req = sub.build()
    ss = ss_el(req)
    ss.getparent().remove(ss)
    for c in list(req[0].findall(f"{{{X.RIM}}}Classification")):
        if c.get("classifiedObject") == sub.ss_id:
            req[0].remove(c)
    assert META in codes(req)
    assert "exactly one SubmissionSet" in contexts(req)


def test_document_must_be_member_of_submission_set():
    sub = X.Submission()
    sub.document(member=False)
    assert "not a member" in contexts(sub.build())


def test_submission_set_status_original_required():
    sub = X.Submission()
    sub.document(ss_status=None)
    assert "SubmissionSetStatus=Original" in contexts(sub.build())
    sub = X.Submission()
    sub.document(ss_status="Copy")
    assert "Original or Reference" in contexts(sub.build())


def test_folder_membership_must_be_in_submission_set():
    sub = X.Submission()
    f = sub.folder()
    d = sub.document()
    sub.add_to_folder(f, d, ss_member=False)
    assert "must itself be a member" in contexts(sub.build())


def test_unknown_association_type():
    sub = X.submission(1)
    sub.associate("urn:example:AssociationType:LikedBy", sub.documents[0], sub.ss_id)
    assert "unknown associationType" in contexts(sub.build())


def test_iti57_associations_refused_in_iti42():
    sub = X.submission(1)
    X.update_availability(sub, X.new_uuid())
    assert "not allowed" in contexts(sub.build())
    sub = X.Submission()
    X.update_document(sub, X.new_uuid(), 1)
    assert "PreviousVersion" in contexts(sub.build())


def test_relationship_source_must_be_new_document():
    sub = X.submission(1)
    sub.associate(X.RPLC, X.new_uuid(), sub.documents[0])
    assert "source of a RPLC" in contexts(sub.build())


def test_first_version_lid_and_version():
    sub = X.Submission()
    sub.document(lid=X.new_uuid(), version="2")
    text = contexts(sub.build())
    assert "logicalID" in text and "version 1" in text


# -- symbolic ids ------------------------------------------------------------------------------

def test_symbolic_ids_resolved():
    sub = X.submission(2, folder=True, symbolic=True)
    so, errs = check(sub.build())
    assert errs == []
    ids = {o.id for o in so.entries()}
    assert all(i.startswith("urn:uuid:") for i in ids)
    for a in so.associations:
        assert a.source in ids and a.target in ids
    for de in so.documents:
        assert all(c.id.startswith("urn:uuid:") for c in de.confidentiality_codes)
        assert all(a.id.startswith("urn:uuid:") for a in de.authors)
        assert de.class_code.id.startswith("urn:uuid:")
        assert all(v.startswith("urn:uuid:") for v in de.ei_ids.values())
    assert so.submission_set.node_classification_id.startswith("urn:uuid:")


def test_uuid_ids_kept():
    sub = X.submission(1)
    so, _ = check(sub.build())
    assert so.documents[0].id == sub.documents[0]


def test_unresolved_symbolic_reference():
    sub = X.submission(1, symbolic=True)
    sub.associate(X.HAS_MEMBER, "Folder99", sub.documents[0], ss_member=True)
    assert XDS.UnresolvedReferenceException in codes(sub.build())


def test_duplicate_ids_in_message():
    sub = X.Submission(symbolic=True)
    sub.document(id="Doc")
    sub.document(id="Doc", title="入院记录")
    assert "more than one object" in contexts(sub.build())


def test_foreign_object_kinds_refused():
    req = X.submit_objects_request(1)
    rol = req[0]
    X.rim("ExternalLink", rol, id="link01", externalURI="https://example.cn/")
    assert "not an XDS metadata object" in contexts(req)


def test_value_lengths():
    sub = X.Submission()
    sub.document(source_patient_info=("PID-5|" + "张" * 300,),
                 class_code=X.Code("C" * 300, X.LOINC, "出院小结"), mime_type="text/" + "x" * 130)
    text = contexts(sub.build())
    assert "sourcePatientInfo: value longer than 256" in text
    assert "longer than 256" in text and "mimeType" in text

"""ITI-18 patient-scoped stored queries end to end (registered data -> SOAP handler -> schema-valid
AdhocQueryResponse), on SQLite and PostgreSQL: FindDocuments and every one of its parameter
families, FindDocumentsByReferenceId, FindSubmissionSets, FindFolders, GetAll
(ITI TF-2a 3.18.4.1.2.3.7.1-.4, .14)."""
from __future__ import annotations

import datetime as dt

import pytest

from tests import xdsdata as X
from tests.integration.iti18_support import (assocs, code, load_find_data, q, query, register,
                                             set_status)
from xds_registry import vocab
from xds_registry.queries import QUERY_IDS

FIND_DOCUMENTS = QUERY_IDS["FindDocuments"]
APPROVED = q(vocab.APPROVED)
BOTH = q(vocab.APPROVED, vocab.DEPRECATED)


@pytest.fixture
def data(database):
    return load_find_data(database)


def find(db, data, return_type="LeafClass", **params):
    """FindDocuments for 张三 (Approved unless given) with ``params`` (names without the
    ``$XDSDocumentEntry`` prefix)."""
    raw = {"$XDSDocumentEntryPatientId": [q(data.pid)], "$XDSDocumentEntryStatus": [APPROVED]}
    raw.update({f"$XDSDocumentEntry{k}": v if isinstance(v, list) else [v]
                for k, v in params.items()})
    ans = query(db, FIND_DOCUMENTS, raw, return_type)
    assert ans.status == "Success", ans.errors
    return ans


def docs(db, data, **params) -> set[str]:
    return set(find(db, data, **params).of("DocumentEntry"))


# -- FindDocuments ---------------------------------------------------------------------------------

def test_find_documents_leafclass(database, data):
    ans = find(database, data)
    assert set(ans.of("DocumentEntry")) == {data.a, data.b, data.d}  # stable only, 张三 only
    a = ans.obj(data.a)
    assert a.get("status") == vocab.APPROVED
    assert a.get("home") == "urn:oid:1.2.156.112604.1.100"
    assert a.get("lid") == data.a
    assert a.find(f"{{{vocab.RIM_NS}}}VersionInfo").get("versionName") == "1"
    title = a.find(f"{{{vocab.RIM_NS}}}Name/{{{vocab.RIM_NS}}}LocalizedString").get("value")
    assert title == "出院小结"
    assert ans.ctx.patient_ids == [data.pid]
    assert set(ans.ctx.object_ids) == {data.a, data.b, data.d}


def test_find_documents_objectref(database, data):
    ans = find(database, data, "ObjectRef")
    assert set(ans.of("ObjectRef")) == {data.a, data.b, data.d}
    assert {o.get("home") for o in ans.objects} == {"urn:oid:1.2.156.112604.1.100"}


def test_unknown_patient_finds_nothing(database, data):
    ans = query(database, FIND_DOCUMENTS, {
        "$XDSDocumentEntryPatientId": [q(X.new_patient())],
        "$XDSDocumentEntryStatus": [APPROVED]})
    assert ans.status == "Success" and ans.objects == []


def test_entry_type(database, data):
    assert docs(database, data, Type=q(vocab.DE_ON_DEMAND)) == {data.c}
    assert docs(database, data, Type=q(vocab.DE_STABLE, vocab.DE_ON_DEMAND)) == {
        data.a, data.b, data.c, data.d}
    assert docs(database, data, Type=q(vocab.DE_STABLE)) == {data.a, data.b, data.d}


def test_status(database, data):
    set_status(database, data.d, "Deprecated")
    assert docs(database, data) == {data.a, data.b}
    assert docs(database, data, Status=q(vocab.DEPRECATED)) == {data.d}
    assert docs(database, data, Status=BOTH) == {data.a, data.b, data.d}


def test_class_code(database, data):
    assert docs(database, data, ClassCode=q(code(X.CLASS_LAB))) == {data.b}
    assert docs(database, data, ClassCode=q(code(X.CLASS_LAB), code(X.CLASS_DISCHARGE))) == {
        data.a, data.b, data.d}
    # code^^^scheme is read like code^^scheme; the scheme must match too
    assert docs(database, data, ClassCode=q(f"{X.CLASS_LAB.code}^^^{X.CLASS_LAB.scheme}")) == {
        data.b}
    assert docs(database, data, ClassCode=q(f"{X.CLASS_LAB.code}^^1.2.3.4")) == set()
    # spread over several Values of one Slot: still OR
    spread = [[q(code(X.CLASS_LAB)), q(code(X.CLASS_DISCHARGE))]]
    assert docs(database, data, ClassCode=spread) == {data.a, data.b, data.d}


def test_type_practice_hcft_format_codes(database, data):
    assert docs(database, data, TypeCode=q(code(X.TYPE_DISCHARGE))) == {data.a, data.b, data.d}
    assert docs(database, data, PracticeSettingCode=q(code(data.internal))) == {data.d}
    assert docs(database, data, PracticeSettingCode=q(code(X.PRACTICE_CARDIO),
                                                      code(data.internal))) == {data.a, data.b,
                                                                                data.d}
    assert docs(database, data, HealthcareFacilityTypeCode=q(code(X.HCFT_HOSPITAL))) == {
        data.a, data.b, data.d}
    assert docs(database, data, FormatCode=q(code(data.text_format))) == {data.d}
    assert docs(database, data, FormatCode=q(code(X.FORMAT_CDA))) == {data.a, data.b}
    assert docs(database, data, ClassCode=q(code(X.CLASS_DISCHARGE)),
                PracticeSettingCode=q(code(X.PRACTICE_CARDIO))) == {data.a}


def test_creation_time_precisions(database, data):
    # a: 20240315083000, b: 20240320 (day), d: 2023 (year)
    assert docs(database, data, CreationTimeFrom="20240315") == {data.a, data.b}
    assert docs(database, data, CreationTimeFrom="20240315083000") == {data.a, data.b}  # inclusive
    assert docs(database, data, CreationTimeFrom="20240315083001") == {data.b}
    assert docs(database, data, CreationTimeTo="20240315083000") == {data.d}  # exclusive
    assert docs(database, data, CreationTimeTo="20240320") == {data.a, data.d}  # b = 20240320000000
    assert docs(database, data, CreationTimeTo="2024032000") == {data.a, data.d}
    assert docs(database, data, CreationTimeTo="2024032001") == {data.a, data.b, data.d}
    assert docs(database, data, CreationTimeFrom="2023", CreationTimeTo="2024") == {data.d}
    assert docs(database, data, CreationTimeFrom="202301", CreationTimeTo="20230101000001") == {
        data.d}
    assert docs(database, data, CreationTimeFrom="202403", CreationTimeTo="202404") == {data.a,
                                                                                      data.b}
    # NIST 11897 style: unquoted numbers down to the minute
    assert docs(database, data, CreationTimeFrom="202401010934",
                CreationTimeTo="202403200856") == {data.a, data.b}


def test_service_times(database, data):
    # a: 20240305090000-20240315080000, b: 2024031008-2024031010, d: none
    assert docs(database, data, ServiceStartTimeFrom="20240306") == {data.b}
    assert docs(database, data, ServiceStartTimeTo="2024031008") == {data.a}
    assert docs(database, data, ServiceStopTimeFrom="20240311") == {data.a}
    assert docs(database, data, ServiceStopTimeTo="20240311") == {data.b}
    assert docs(database, data, ServiceStartTimeFrom="2024", ServiceStopTimeTo="2025") == {
        data.a, data.b}


def test_event_code_list_and_or(database, data):
    angina, hyper = code(X.EVENT_ANGINA), code(data.hypertension)
    assert docs(database, data, EventCodeList=q(angina)) == {data.a, data.b}
    assert docs(database, data, EventCodeList=q(hyper)) == {data.b}
    assert docs(database, data, EventCodeList=q(angina, hyper)) == {data.a, data.b}      # OR
    assert docs(database, data, EventCodeList=[[q(angina)], [q(hyper)]]) == {data.b}      # AND
    assert docs(database, data, EventCodeList=[[q(angina, hyper)], [q(hyper)]]) == {data.b}
    assert docs(database, data, EventCodeList=[[q(angina)], [q("none^^1.2")]]) == set()


def test_confidentiality_code_and_or(database, data):
    n, r = code(X.CONF_NORMAL), code(X.CONF_RESTRICTED)
    assert docs(database, data, ConfidentialityCode=q(r)) == {data.b, data.d}
    assert docs(database, data, ConfidentialityCode=q(n, r)) == {data.a, data.b, data.d}
    assert docs(database, data, ConfidentialityCode=[[q(n)], [q(r)]]) == {data.d}


def test_author_wildcards(database, data):
    assert docs(database, data, AuthorPerson=q("%王%")) == {data.a}
    assert docs(database, data, AuthorPerson=q("D2048^%")) == {data.b, data.d}
    assert docs(database, data, AuthorPerson=q("D10_4^王^建国%")) == {data.a}
    assert docs(database, data, AuthorPerson=q("D10_^%")) == set()   # _ is exactly one character
    assert docs(database, data, AuthorPerson=q("%王%", "%李^明%")) == {data.a, data.b, data.d}
    assert docs(database, data, AuthorPerson=q("d1024%")) == set()   # case-sensitive, as SQL LIKE
    full = "D1024^王^建国^^^^^^&1.2.156.112604.1.1.101.3&ISO"
    assert docs(database, data, AuthorPerson=q(full)) == {data.a}    # no wildcard: equality
    assert docs(database, data, AuthorPerson=q("D1024")) == set()


def test_all_parameters_together(database, data):
    assert docs(database, data, ClassCode=q(code(X.CLASS_LAB)), TypeCode=q(code(X.TYPE_DISCHARGE)),
                PracticeSettingCode=q(code(X.PRACTICE_CARDIO)),
                HealthcareFacilityTypeCode=q(code(X.HCFT_HOSPITAL)),
                FormatCode=q(code(X.FORMAT_CDA)), CreationTimeFrom="2024",
                CreationTimeTo="2025", ServiceStartTimeFrom="2024", ServiceStartTimeTo="2025",
                ServiceStopTimeFrom="2024", ServiceStopTimeTo="2025",
                EventCodeList=q(code(data.hypertension)),
                ConfidentialityCode=q(code(X.CONF_RESTRICTED)), AuthorPerson=q("%李%"),
                Type=q(vocab.DE_STABLE), Status=BOTH) == {data.b}


def test_ignores_unknown_parameters(database, data):
    # NIST 11897/practicesetting_scheme: unknown parameters are ignored
    assert docs(database, data, PracticeSettingCodeScheme=q("whatever")) == {data.a, data.b,
                                                                             data.d}


@pytest.mark.parametrize("params, error", [
    ({"ClassCode": q("Dialysis")}, "XDSRegistryError"),           # not CE (NIST old_scheme)
    ({"ClassCode": q(code(X.CLASS_LAB), "a^^")}, "XDSRegistryError"),  # scheme missing
    ({"CreationTimeFrom": q("2024-03-15")}, "XDSRegistryError"),
    ({"Status": q("Approved'")}, "XDSRegistryError"),
    ({"Type": q("urn:uuid:00000000-0000-0000-0000-000000000000")}, "XDSRegistryError"),
    ({"CreationTimeFrom": "(2023, 2024)"}, "XDSStoredQueryParamNumber"),
    ({"ClassCode": [[q(code(X.CLASS_LAB))], [q(code(X.CLASS_LAB))]]}, "XDSStoredQueryParamNumber"),
    ({"PatientId": [[q("a")], [q("b")]]}, "XDSStoredQueryParamNumber"),
])
def test_parameter_errors(database, data, params, error):
    raw = {"$XDSDocumentEntryPatientId": [q(data.pid)], "$XDSDocumentEntryStatus": [APPROVED]}
    for k, v in params.items():
        key = f"$XDSDocumentEntry{k}"
        if k == "PatientId":
            raw[key] = v
        else:
            raw[key] = v if isinstance(v, list) else [v]
    ans = query(database, FIND_DOCUMENTS, raw)
    assert ans.status == "Failure" and ans.codes == [error] and ans.objects == []


@pytest.mark.parametrize("missing", ["$XDSDocumentEntryPatientId", "$XDSDocumentEntryStatus"])
def test_required_parameters(database, data, missing):
    raw = {"$XDSDocumentEntryPatientId": [q(data.pid)], "$XDSDocumentEntryStatus": [APPROVED]}
    del raw[missing]
    ans = query(database, FIND_DOCUMENTS, raw)
    assert ans.status == "Failure"
    assert ans.errors == [("XDSStoredQueryMissingParam", missing)]
    assert ans.ctx.outcome == 8


# -- FindDocumentsByReferenceId --------------------------------------------------------------------

def test_find_documents_by_reference_id(database, data):
    qid = QUERY_IDS["FindDocumentsByReferenceId"]
    base = {"$XDSDocumentEntryPatientId": [q(data.pid)], "$XDSDocumentEntryStatus": [APPROVED]}
    ans = query(database, qid, {**base, "$XDSDocumentEntryReferenceIdList": [q(data.ref_id)]})
    assert ans.of("DocumentEntry") == [data.b]
    ans = query(database, qid, {**base, "$XDSDocumentEntryReferenceIdList": [
        q("nothing^^^&1.2&ISO^urn:ihe:iti:xds:2013:order", data.ref_id)],
        "$XDSDocumentEntryClassCode": [q(code(X.CLASS_LAB))]})
    assert ans.of("DocumentEntry") == [data.b]
    ans = query(database, qid, {**base, "$XDSDocumentEntryReferenceIdList": [
        [q(data.ref_id)], [q("nothing^^^&1.2&ISO")]]})
    assert ans.of("DocumentEntry") == []
    ans = query(database, qid, base)
    assert ans.codes == ["XDSStoredQueryMissingParam"]


# -- FindSubmissionSets ----------------------------------------------------------------------------

def find_ss(db, data, **params):
    raw = {"$XDSSubmissionSetPatientId": [q(data.pid)], "$XDSSubmissionSetStatus": [APPROVED]}
    raw.update({f"$XDSSubmissionSet{k}": [v] for k, v in params.items()})
    ans = query(db, QUERY_IDS["FindSubmissionSets"], raw)
    assert ans.status == "Success", ans.errors
    return set(ans.of("SubmissionSet"))


def test_find_submission_sets(database, data):
    s1, s2 = data.s1.ss_id, data.s2.ss_id
    assert find_ss(database, data) == {s1, s2}
    assert find_ss(database, data, SourceId=q(X.SOURCE_ID)) == {s1}
    assert find_ss(database, data, SourceId=q(X.SOURCE_ID, "1.2.156.112604.1.1.103.10")) == {s1, s2}
    assert find_ss(database, data, SubmissionTimeFrom="2024") == {s1}
    assert find_ss(database, data, SubmissionTimeFrom="20230105",
                   SubmissionTimeTo="20240316100000") == {s2}
    assert find_ss(database, data, SubmissionTimeTo="20240316100001") == {s1, s2}
    assert find_ss(database, data, AuthorPerson=q("%李^明%")) == {s2}
    assert find_ss(database, data, AuthorPerson=q("%王%")) == {s1}
    assert find_ss(database, data, ContentType=q(code(X.CONTENT_TYPE))) == {s1}
    assert find_ss(database, data, ContentType=q(code(X.CONTENT_TYPE), "11369-6^^" + X.LOINC)) == {
        s1, s2}
    set_status(database, s2, "Deprecated")
    assert find_ss(database, data) == {s1}
    assert find_ss(database, data, Status=BOTH) == {s1, s2}


def test_find_submission_sets_errors(database, data):
    qid = QUERY_IDS["FindSubmissionSets"]
    ans = query(database, qid, {"$XDSSubmissionSetPatientId": [q(data.pid)]})
    assert ans.codes == ["XDSStoredQueryMissingParam"]
    ans = query(database, qid, {"$XDSSubmissionSetPatientId": [q(data.pid)],
                                "$XDSSubmissionSetStatus": [APPROVED],
                                "$XDSSubmissionSetAuthorPerson": [q("%王%", "%李%")]})
    assert ans.codes == ["XDSStoredQueryParamNumber"]


# -- FindFolders -----------------------------------------------------------------------------------

def find_folders(db, data, **params):
    raw = {"$XDSFolderPatientId": [q(data.pid)], "$XDSFolderStatus": [APPROVED]}
    raw.update({f"$XDSFolder{k}": v if isinstance(v, list) else [v] for k, v in params.items()})
    ans = query(db, QUERY_IDS["FindFolders"], raw)
    assert ans.status == "Success", ans.errors
    return set(ans.of("Folder"))


def test_find_folders(database, data):
    f1, f2 = data.f1, data.f2
    inpatient, outpatient = code(X.FOLDER_CODE), "OUTPATIENT^^1.2.156.112604.1.9.1"
    assert find_folders(database, data) == {f1, f2}
    assert find_folders(database, data, CodeList=q(outpatient)) == {f2}
    assert find_folders(database, data, CodeList=q(inpatient, outpatient)) == {f1, f2}
    assert find_folders(database, data, CodeList=[[q(inpatient)], [q(outpatient)]]) == {f2}
    # lastUpdateTime is set by the registry at registration
    now = dt.datetime.now(dt.timezone.utc)
    today = now.strftime("%Y%m%d")
    tomorrow = (now + dt.timedelta(days=1)).strftime("%Y%m%d")
    assert find_folders(database, data, LastUpdateTimeFrom=today,
                        LastUpdateTimeTo=tomorrow) == {f1, f2}
    assert find_folders(database, data, LastUpdateTimeTo=today) == set()
    assert find_folders(database, data, LastUpdateTimeFrom=tomorrow) == set()
    set_status(database, f1, "Deprecated")
    assert find_folders(database, data) == {f2}
    assert find_folders(database, data, Status=q(vocab.DEPRECATED)) == {f1}
    ans = query(database, QUERY_IDS["FindFolders"], {"$XDSFolderStatus": [APPROVED]})
    assert ans.codes == ["XDSStoredQueryMissingParam"]


# -- GetAll ----------------------------------------------------------------------------------------

def get_all(db, data, return_type="LeafClass", **extra):
    raw = {"$patientId": [q(data.pid)], "$XDSDocumentEntryStatus": [BOTH],
           "$XDSSubmissionSetStatus": [APPROVED], "$XDSFolderStatus": [APPROVED], **extra}
    ans = query(db, QUERY_IDS["GetAll"], raw, return_type)
    assert ans.status == "Success", ans.errors
    return ans


def test_get_all(database, data):
    ans = get_all(database, data)
    s1, s2 = data.s1, data.s2
    assert set(ans.of("SubmissionSet")) == {s1.ss_id, s2.ss_id}
    assert set(ans.of("Folder")) == {data.f1, data.f2}
    assert set(ans.of("DocumentEntry")) == {data.a, data.b, data.d}
    # every association of both submissions except the one to the on-demand entry c
    [(to_c, *_)] = assocs(database, target=data.c)
    assert set(ans.of("Association")) == (set(s1.associations) | set(s2.associations)) - {to_c}
    assert len(ans.of("Association")) == 7 + 4  # s1: 8 less SS HasMember c; s2: 4
    # order: SubmissionSets, Folders, DocumentEntries, Associations
    kinds = [o.tag.rsplit("}", 1)[1] for o in ans.objects]
    assert kinds.index("ExtrinsicObject") > max(i for i, k in enumerate(kinds)
                                                if k == "RegistryPackage")
    assert kinds[-1] == "Association"


def test_get_all_filters(database, data):
    ans = get_all(database, data, **{"$XDSDocumentEntryFormatCode": [q(code(data.text_format))]})
    assert set(ans.of("DocumentEntry")) == {data.d}
    # associations to a, b are gone; folder f1 stays (its own membership in s1 too)
    assoc = {(o.get("sourceObject"), o.get("targetObject")) for o in ans.objects
             if o.tag.endswith("Association")}
    assert (data.s1.ss_id, data.f1) in assoc
    assert all(t not in (data.a, data.b) for _, t in assoc)
    ans = get_all(database, data, **{"$XDSDocumentEntryConfidentialityCode": [
        [q(code(X.CONF_NORMAL))], [q(code(X.CONF_RESTRICTED))]]})
    assert set(ans.of("DocumentEntry")) == {data.d}
    ans = get_all(database, data, **{"$XDSDocumentEntryType": [q(vocab.DE_ON_DEMAND)],
                                     "$XDSFolderStatus": [q(vocab.DEPRECATED)]})
    assert set(ans.of("DocumentEntry")) == {data.c} and ans.of("Folder") == []
    leaf, refs = get_all(database, data), get_all(database, data, "ObjectRef")
    assert refs.of("ObjectRef") == leaf.ids


def test_get_all_requires_every_status(database, data):
    ans = query(database, QUERY_IDS["GetAll"], {"$patientId": [q(data.pid)],
                                                "$XDSDocumentEntryStatus": [APPROVED]})
    assert sorted(ans.errors) == [("XDSStoredQueryMissingParam", "$XDSFolderStatus"),
                                  ("XDSStoredQueryMissingParam", "$XDSSubmissionSetStatus")]


def test_other_patient(database, data):
    ans = query(database, FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": [q(data.pid2)],
                                           "$XDSDocumentEntryStatus": [APPROVED],
                                           "$XDSDocumentEntryAuthorPerson": [q("%赵^敏%")]})
    assert ans.of("DocumentEntry") == [data.e]
    e = ans.obj(data.e)
    inst = e.xpath(".//rim:Slot[@name='authorInstitution']/rim:ValueList/rim:Value/text()",
                   namespaces={"rim": vocab.RIM_NS})
    assert inst == ["北京协和医院^^^^^&1.2.156.112604.1.1&ISO^^^^102"]


def test_many_documents_one_patient(database):
    sub = X.submission(30, patient_id=X.new_patient())
    register(database, sub)
    ans = query(database, FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": [q(sub.patient_id)],
                                           "$XDSDocumentEntryStatus": [APPROVED]})
    assert ans.of("DocumentEntry") == sub.documents  # registration order

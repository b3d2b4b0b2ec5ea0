"""ITI-18 stored queries by identifier end to end, on SQLite and PostgreSQL (ITI TF-2a
3.18.4.1.2.3.7.5-.13): GetDocuments, GetFolders, GetAssociations, GetDocumentsAndAssociations,
GetSubmissionSets, GetSubmissionSetAndContents, GetFolderAndContents, GetFoldersForDocument,
GetRelatedDocuments; $XDSDocumentEntryLogicalID / $XDSFolderLogicalID, $MetadataLevel,
$homeCommunityId; XDSResultNotSinglePatient (LeafClass only) and XDSStoredQueryParamNumber."""
from __future__ import annotations

import pytest

from tests import xdsdata as X
from tests.integration.iti18_support import (HOME, assocs, code, load_get_data, q, query,
                                             set_status, update)
from xds_registry import vocab
from xds_registry.queries import QUERY_IDS

RIM = vocab.RIM_NS


@pytest.fixture
def data(database):
    return load_get_data(database)


def run(db, name, params, return_type="LeafClass", ok=True):
    ans = query(db, QUERY_IDS[name], {k: v if isinstance(v, list) else [v]
                                      for k, v in params.items()}, return_type)
    if ok:
        assert ans.status == "Success", ans.errors
    return ans


def ids_of(rows) -> set[str]:
    return {r[0] for r in rows}


def touching(db, *objs) -> set[str]:
    out: set[str] = set()
    for o in objs:
        out |= ids_of(assocs(db, source=o)) | ids_of(assocs(db, target=o))
    return out


def one(rows) -> str:
    assert len(rows) == 1, rows
    return rows[0][0]


# -- GetDocuments ----------------------------------------------------------------------------------

def test_get_documents_by_uuid(database, data):
    ans = run(database, "GetDocuments", {"$XDSDocumentEntryEntryUUID": q(data.a, data.b)})
    assert set(ans.of("DocumentEntry")) == {data.a, data.b}
    assert ans.obj(data.a).get("status") == vocab.DEPRECATED  # replaced by a2; Get ignores status
    assert ans.obj(data.b).get("status") == vocab.APPROVED
    assert ans.obj(data.a).get("home") == HOME
    # several Values in one Slot (CP 295) and unknown ids
    ans = run(database, "GetDocuments", {"$XDSDocumentEntryEntryUUID": [[q(data.a), q(data.c)]]})
    assert set(ans.of("DocumentEntry")) == {data.a, data.c}
    ans = run(database, "GetDocuments", {"$XDSDocumentEntryEntryUUID": q(X.new_uuid())})
    assert ans.objects == []
    # a Folder's entryUUID is no DocumentEntry
    assert run(database, "GetDocuments", {"$XDSDocumentEntryEntryUUID": q(data.f)}).objects == []


def test_get_documents_by_unique_id_and_logical_id(database, data):
    uid_a, uid_b = data.s1.unique_ids[data.a], data.s1.unique_ids[data.b]
    ans = run(database, "GetDocuments", {"$XDSDocumentEntryUniqueId": q(uid_a, uid_b)})
    assert set(ans.of("DocumentEntry")) == {data.a, data.b}
    ans = run(database, "GetDocuments", {"$XDSDocumentEntryLogicalID": q(data.b)}, "ObjectRef")
    assert ans.of("ObjectRef") == [data.b]
    # $homeCommunityId is accepted and ignored by a Document Registry (NIST 11901)
    ans = run(database, "GetDocuments", {"$XDSDocumentEntryUniqueId": q(uid_a),
                                         "$homeCommunityId": q("urn:oid:1.2.3")})
    assert ans.of("DocumentEntry") == [data.a]


@pytest.mark.parametrize("params", [
    {},
    {"$XDSDocumentEntryEntryUUID": "'x'", "$XDSDocumentEntryUniqueId": "'1.2'"},
    {"$XDSDocumentEntryEntryUUID": "'x'", "$XDSDocumentEntryLogicalID": "'y'"},
    {"$homeCommunityId": "'urn:oid:1.2.3'"},
])
def test_get_documents_needs_exactly_one_identifier(database, data, params):
    ans = run(database, "GetDocuments", params, ok=False)
    assert ans.status == "Failure" and ans.codes == ["XDSStoredQueryParamNumber"]


def test_result_not_single_patient(database, data):
    ans = run(database, "GetDocuments", {"$XDSDocumentEntryEntryUUID": q(data.a, data.e)}, ok=False)
    assert ans.status == "Failure" and ans.codes == ["XDSResultNotSinglePatient"]
    assert ans.objects == []
    # ObjectRefs disclose no metadata: allowed (NIST 12368)
    ans = run(database, "GetDocuments", {"$XDSDocumentEntryEntryUUID": q(data.a, data.e)},
              "ObjectRef")
    assert set(ans.of("ObjectRef")) == {data.a, data.e}
    ans = run(database, "GetFolders", {"$XDSFolderEntryUUID": q(data.f, data.g)}, ok=False)
    assert ans.codes == ["XDSResultNotSinglePatient"]
    ans = run(database, "GetSubmissionSets", {"$uuid": q(data.a, data.e)}, ok=False)
    assert ans.codes == ["XDSResultNotSinglePatient"]
    ans = run(database, "GetSubmissionSets", {"$uuid": q(data.a, data.e)}, "ObjectRef")
    assert len(ans.of("ObjectRef")) == 4  # two SubmissionSets and their HasMembers
    ans = run(database, "GetDocumentsAndAssociations",
              {"$XDSDocumentEntryEntryUUID": q(data.b, data.e)}, ok=False)
    assert ans.codes == ["XDSResultNotSinglePatient"]


# -- GetFolders ------------------------------------------------------------------------------------

def test_get_folders(database, data):
    ans = run(database, "GetFolders", {"$XDSFolderEntryUUID": q(data.f)})
    assert ans.of("Folder") == [data.f]
    f = ans.obj(data.f)
    assert f.get("status") == vocab.APPROVED
    assert f.find(f"{{{RIM}}}VersionInfo").get("versionName") == "1"
    ans = run(database, "GetFolders", {"$XDSFolderUniqueId": q(data.s3.unique_ids[data.g])})
    assert ans.of("Folder") == [data.g]
    ans = run(database, "GetFolders", {"$XDSFolderLogicalID": q(data.f)}, "ObjectRef")
    assert ans.of("ObjectRef") == [data.f]
    assert run(database, "GetFolders", {"$XDSFolderEntryUUID": q(data.a)}).objects == []
    ans = run(database, "GetFolders", {"$XDSFolderEntryUUID": q(data.f),
                                       "$XDSFolderUniqueId": q("1.2")}, ok=False)
    assert ans.codes == ["XDSStoredQueryParamNumber"]


# -- GetAssociations / GetDocumentsAndAssociations -------------------------------------------------

def test_get_associations(database, data):
    ans = run(database, "GetAssociations", {"$uuid": q(data.a)})
    assert set(ans.of("Association")) == touching(database, data.a)
    assert len(ans.of("Association")) == 3  # SS1 HasMember a, f HasMember a, a2 RPLC a
    assert ans.of("DocumentEntry") == []
    ans = run(database, "GetAssociations", {"$uuid": q(data.f, data.b)})
    assert set(ans.of("Association")) == touching(database, data.f, data.b)
    a = ans.obj(one(assocs(database, source=data.b2, target=data.b)))
    assert a.get("associationType") == vocab.APND and a.get("status") == vocab.APPROVED
    assert a.find(f"{{{RIM}}}VersionInfo") is None  # Associations are not versioned
    ans = run(database, "GetAssociations", {}, ok=False)
    assert ans.codes == ["XDSStoredQueryMissingParam"]


def test_get_documents_and_associations(database, data):
    ans = run(database, "GetDocumentsAndAssociations",
              {"$XDSDocumentEntryUniqueId": q(data.s1.unique_ids[data.a],
                                              data.s1.unique_ids[data.b])})
    assert set(ans.of("DocumentEntry")) == {data.a, data.b}
    assert set(ans.of("Association")) == touching(database, data.a, data.b)
    ans = run(database, "GetDocumentsAndAssociations", {"$XDSDocumentEntryEntryUUID": q(data.e)})
    assert ans.of("DocumentEntry") == [data.e]
    assert set(ans.of("Association")) == touching(database, data.e)
    assert len(ans.of("Association")) == 2   # SS3 HasMember e, g HasMember e


def test_metadata_level(database, data):
    uas = set_status(database, data.b, "Deprecated")  # ITI-57: UpdateAvailabilityStatus -> b
    level1 = run(database, "GetAssociations", {"$uuid": q(data.b)})
    assert uas not in level1.ids
    level2 = run(database, "GetAssociations", {"$uuid": q(data.b), "$MetadataLevel": "2"})
    assert set(level2.ids) == set(level1.ids) | {uas}
    assert level2.obj(uas).get("associationType") == vocab.UPDATE_AVAILABILITY_STATUS
    docs = run(database, "GetDocumentsAndAssociations", {"$XDSDocumentEntryEntryUUID": q(data.b),
                                                         "$MetadataLevel": "2"})
    assert uas in docs.ids and docs.obj(data.b).get("status") == vocab.DEPRECATED
    ans = run(database, "GetAssociations", {"$uuid": q(data.a), "$MetadataLevel": "3"}, ok=False)
    assert ans.codes == ["XDSRegistryError"]


# -- GetSubmissionSets -----------------------------------------------------------------------------

def test_get_submission_sets(database, data):
    ss1, ss2 = data.s1.ss_id, data.s2.ss_id
    ans = run(database, "GetSubmissionSets", {"$uuid": q(data.a)})
    assert ans.of("SubmissionSet") == [ss1]
    assert ans.of("Association") == [one(assocs(database, source=ss1, target=data.a))]
    ss = ans.obj(ss1)
    assert ss.get("status") == vocab.APPROVED and ss.get("home") == HOME
    ans = run(database, "GetSubmissionSets", {"$uuid": q(data.a2, data.b)})
    assert set(ans.of("SubmissionSet")) == {ss1, ss2}
    assert set(ans.of("Association")) == {one(assocs(database, source=ss2, target=data.a2)),
                                          one(assocs(database, source=ss1, target=data.b))}
    ans = run(database, "GetSubmissionSets", {"$uuid": q(data.f)}, "ObjectRef")
    assert set(ans.ids) == {ss1, one(assocs(database, source=ss1, target=data.f))}
    assert run(database, "GetSubmissionSets", {"$uuid": q(X.new_uuid())}).objects == []


# -- GetSubmissionSetAndContents -------------------------------------------------------------------

def test_get_submission_set_and_contents(database, data):
    ss1 = data.s1.ss_id
    ans = run(database, "GetSubmissionSetAndContents", {"$XDSSubmissionSetEntryUUID": q(ss1)})
    assert ans.of("SubmissionSet") == [ss1]
    assert ans.of("Folder") == [data.f]
    assert set(ans.of("DocumentEntry")) == {data.a, data.b}          # c is on-demand
    fa = one(assocs(database, source=data.f, target=data.a))
    expected = {one(assocs(database, source=ss1, target=t)) for t in (data.a, data.b, data.f, fa)}
    assert set(ans.of("Association")) == expected | {fa}
    by_uid = run(database, "GetSubmissionSetAndContents",
                 {"$XDSSubmissionSetUniqueId": q(data.s1.ss_unique_id)})
    assert by_uid.ids == ans.ids
    refs = run(database, "GetSubmissionSetAndContents",
               {"$XDSSubmissionSetEntryUUID": q(ss1)}, "ObjectRef")
    assert refs.of("ObjectRef") == ans.ids


def test_get_submission_set_and_contents_filters(database, data):
    ss1 = data.s1.ss_id
    ans = run(database, "GetSubmissionSetAndContents", {
        "$XDSSubmissionSetEntryUUID": q(ss1),
        "$XDSDocumentEntryFormatCode": q(code(data.text_format))})
    assert ans.of("DocumentEntry") == [data.b] and ans.of("Folder") == [data.f]
    assert set(ans.of("Association")) == {one(assocs(database, source=ss1, target=data.b)),
                                          one(assocs(database, source=ss1, target=data.f))}
    ans = run(database, "GetSubmissionSetAndContents", {
        "$XDSSubmissionSetEntryUUID": q(ss1),
        "$XDSDocumentEntryConfidentialityCode": q(code(X.CONF_NORMAL))})
    assert ans.of("DocumentEntry") == [data.a]
    ans = run(database, "GetSubmissionSetAndContents", {
        "$XDSSubmissionSetEntryUUID": q(ss1),
        "$XDSDocumentEntryConfidentialityCode": [[q(code(X.CONF_NORMAL))],
                                                 [q(code(X.CONF_RESTRICTED))]]})
    assert ans.of("DocumentEntry") == []
    ans = run(database, "GetSubmissionSetAndContents", {
        "$XDSSubmissionSetEntryUUID": q(ss1),
        "$XDSDocumentEntryType": q(vocab.DE_STABLE, vocab.DE_ON_DEMAND)})
    assert set(ans.of("DocumentEntry")) == {data.a, data.b, data.c}
    fc = one(assocs(database, source=data.f, target=data.c))
    assert fc in ans.of("Association")
    # the SubmissionSet of the replacement: a2, b2, and not f (not one of its members)
    ans = run(database, "GetSubmissionSetAndContents",
              {"$XDSSubmissionSetEntryUUID": q(data.s2.ss_id)})
    assert set(ans.of("DocumentEntry")) == {data.a2, data.b2} and ans.of("Folder") == []
    ans = run(database, "GetSubmissionSetAndContents",
              {"$XDSSubmissionSetEntryUUID": q(ss1, data.s2.ss_id)}, ok=False)
    assert ans.codes == ["XDSStoredQueryParamNumber"]
    ans = run(database, "GetSubmissionSetAndContents", {}, ok=False)
    assert ans.codes == ["XDSStoredQueryParamNumber"]


# -- GetFolderAndContents --------------------------------------------------------------------------

def test_get_folder_and_contents(database, data):
    ans = run(database, "GetFolderAndContents", {"$XDSFolderEntryUUID": q(data.f)})
    assert ans.of("Folder") == [data.f]
    # a (replaced, still a member), a2 (put in by the registry); c is on-demand
    assert set(ans.of("DocumentEntry")) == {data.a, data.a2}
    assert set(ans.of("Association")) == {one(assocs(database, source=data.f, target=d))
                                          for d in (data.a, data.a2)}
    ans = run(database, "GetFolderAndContents", {
        "$XDSFolderUniqueId": q(data.s1.unique_ids[data.f]),
        "$XDSDocumentEntryType": q(vocab.DE_ON_DEMAND)})
    assert ans.of("DocumentEntry") == [data.c]
    ans = run(database, "GetFolderAndContents", {
        "$XDSFolderEntryUUID": q(data.f),
        "$XDSDocumentEntryConfidentialityCode": q(code(X.CONF_RESTRICTED))})
    assert ans.ids == [data.f]
    ans = run(database, "GetFolderAndContents", {
        "$XDSFolderEntryUUID": q(data.f), "$XDSDocumentEntryFormatCode": q(code(X.FORMAT_CDA))},
        "ObjectRef")
    assert len(ans.ids) == 5
    ans = run(database, "GetFolderAndContents", {"$XDSFolderEntryUUID": q(X.new_uuid())})
    assert ans.objects == []


def test_removed_membership_is_not_followed(database, data):
    """A HasMember deprecated by Metadata Update (ITI-57) no longer puts a2 in f."""
    set_status(database, one(assocs(database, source=data.f, target=data.a2)), "Deprecated")
    ans = run(database, "GetFolderAndContents", {"$XDSFolderEntryUUID": q(data.f)})
    assert set(ans.of("DocumentEntry")) == {data.a}
    ans = run(database, "GetFoldersForDocument", {"$XDSDocumentEntryEntryUUID": q(data.a2)})
    assert ans.objects == []


# -- GetFoldersForDocument -------------------------------------------------------------------------

def test_get_folders_for_document(database, data):
    for doc, folder in ((data.a, data.f), (data.a2, data.f), (data.c, data.f), (data.e, data.g)):
        ans = run(database, "GetFoldersForDocument", {"$XDSDocumentEntryEntryUUID": q(doc)})
        assert ans.ids == [folder]
    ans = run(database, "GetFoldersForDocument",
              {"$XDSDocumentEntryUniqueId": q(data.s1.unique_ids[data.a])})
    assert ans.of("Folder") == [data.f] and ans.of("Association") == []
    assert run(database, "GetFoldersForDocument",
               {"$XDSDocumentEntryEntryUUID": q(data.b)}).objects == []
    ans = run(database, "GetFoldersForDocument", {}, ok=False)
    assert ans.codes == ["XDSStoredQueryParamNumber"]


# -- GetRelatedDocuments ---------------------------------------------------------------------------

def test_get_related_documents(database, data):
    rplc = one(assocs(database, source=data.a2, target=data.a))
    for doc in (data.a, data.a2):
        ans = run(database, "GetRelatedDocuments", {"$XDSDocumentEntryEntryUUID": q(doc),
                                                    "$AssociationTypes": q(vocab.RPLC)})
        assert set(ans.of("DocumentEntry")) == {data.a, data.a2}
        assert ans.of("Association") == [rplc]
    ans = run(database, "GetRelatedDocuments", {
        "$XDSDocumentEntryUniqueId": q(data.s1.unique_ids[data.b]),
        "$AssociationTypes": q(vocab.RPLC, vocab.APND, vocab.XFRM)})
    assert set(ans.of("DocumentEntry")) == {data.b, data.b2}
    assert ans.of("Association") == [one(assocs(database, source=data.b2, target=data.b))]
    # no related documents of that type: nothing, not even the document itself
    assert run(database, "GetRelatedDocuments", {"$XDSDocumentEntryEntryUUID": q(data.b),
                                                 "$AssociationTypes": q(vocab.RPLC)}).objects == []
    # HasMember leads to a Folder / SubmissionSet: not returned (NIST 11909 near_folder)
    assert run(database, "GetRelatedDocuments", {"$XDSDocumentEntryEntryUUID": q(data.a),
                                                 "$AssociationTypes": q(vocab.HAS_MEMBER)}
               ).objects == []
    assert run(database, "GetRelatedDocuments", {"$XDSDocumentEntryEntryUUID": q(X.new_uuid()),
                                                 "$AssociationTypes": q(vocab.RPLC)}).objects == []


def test_get_related_documents_errors(database, data):
    ans = run(database, "GetRelatedDocuments", {"$XDSDocumentEntryEntryUUID": q(data.a)}, ok=False)
    assert ans.errors == [("XDSStoredQueryMissingParam", "$AssociationTypes")]
    ans = run(database, "GetRelatedDocuments", {
        "$XDSDocumentEntryEntryUUID": q(data.a),
        "$AssociationTypes": q("urn:ihe:iti:2007:AssociationType:NOPE")}, ok=False)
    assert ans.codes == ["XDSRegistryError"]
    ans = run(database, "GetRelatedDocuments", {
        "$XDSDocumentEntryEntryUUID": q(data.a), "$XDSDocumentEntryUniqueId": q("1.2"),
        "$AssociationTypes": q(vocab.RPLC)}, ok=False)
    assert ans.codes == ["XDSStoredQueryParamNumber"]


# -- versions (ITI-57 Update DocumentEntry metadata) -----------------------------------------------

def test_document_versions(database, data):
    """A new version shares logicalId and uniqueId; GetDocuments by $XDSDocumentEntryLogicalID
    returns every version with its versionName; by uniqueId the latest at Metadata Level 1 and
    every version at Level 2 (NIST 15800, 20000e); FindDocuments only the Approved one."""
    sub = X.Submission(patient_id=data.pid)
    v2 = X.update_document(sub, data.b, 1, unique_id=data.s1.unique_ids[data.b],
                           content=data.s1.contents[data.b], title="检验报告（修订）",
                           class_code=X.CLASS_LAB, confidentiality=(X.CONF_RESTRICTED,),
                           format_code=data.text_format)
    update(database, sub)
    ans = run(database, "GetDocuments", {"$XDSDocumentEntryLogicalID": q(data.b)})
    assert ans.of("DocumentEntry") == [data.b, v2]
    versions = {i: (ans.obj(i).get("lid"), ans.obj(i).get("status"),
                    ans.obj(i).find(f"{{{RIM}}}VersionInfo").get("versionName")) for i in ans.ids}
    assert versions == {data.b: (data.b, vocab.DEPRECATED, "1"), v2: (data.b, vocab.APPROVED, "2")}
    by_uid = run(database, "GetDocuments",
                 {"$XDSDocumentEntryUniqueId": q(data.s1.unique_ids[data.b])}, "ObjectRef")
    assert by_uid.ids == [v2]
    by_uid = run(database, "GetDocuments",
                 {"$XDSDocumentEntryUniqueId": q(data.s1.unique_ids[data.b]),
                  "$MetadataLevel": "2"}, "ObjectRef")
    assert by_uid.ids == [data.b, v2]
    found = query(database, QUERY_IDS["FindDocuments"], {
        "$XDSDocumentEntryPatientId": [q(data.pid)],
        "$XDSDocumentEntryStatus": [q(vocab.APPROVED)],
        "$XDSDocumentEntryClassCode": [q(code(X.CLASS_LAB))]})
    assert found.of("DocumentEntry") == [v2]

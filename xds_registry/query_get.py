"""The stored queries by identifier: GetDocuments, GetFolders, GetAssociations,
GetDocumentsAndAssociations, GetSubmissionSets, GetSubmissionSetAndContents, GetFolderAndContents,
GetFoldersForDocument and GetRelatedDocuments (ITI TF-2a 3.18.4.1.2.3.7.5 to .13, with the
$XDSDocumentEntryLogicalID / $XDSFolderLogicalID and $MetadataLevel parameters of Metadata Update,
ITI TF-2b 3.57.4.1.3.3.x / ITI TF-2a 3.18.4.1.2.3.7.5).

They look objects up by entryUUID, uniqueId or logicalId (primary key / unique indexes) and follow
associations through the source_id / target_id indexes, so their cost is the size of the answer.
Get queries return objects whatever their status.  Where a query offers a choice of identifying
parameters exactly one must be given, else XDSStoredQueryParamNumber.  $homeCommunityId is
accepted and ignored: it addresses a community, which a Document Registry is not (ITI TF-2a
3.18.4.1.3).

Answers:

- GetSubmissionSetAndContents: the SubmissionSet; its HasMember DocumentEntries (after the
  $XDSDocumentEntryFormatCode / ConfidentialityCode / Type filters) and Folders; the SubmissionSet's
  HasMember Associations to those; and Folder-DocumentEntry Associations registered in that
  SubmissionSet (those it has a HasMember to) between returned objects, with that HasMember;
- GetFolderAndContents: the Folder, its HasMember DocumentEntries (filtered), and those
  Associations;
- GetRelatedDocuments: the DocumentEntry, the DocumentEntries related to it by the requested
  association types (either direction) whose status is one of $XDSAssociationStatus (Metadata
  Update; Approved when not given — a deprecated APND is not followed, NIST 20001), and those
  Associations; nothing if there are none;
- GetFoldersForDocument: the Folders with a HasMember to the DocumentEntry;
- GetSubmissionSets: the SubmissionSets with a HasMember to one of $uuid, and those Associations;
- GetAssociations / GetDocumentsAndAssociations: every Association whose source or target is one of
  the given objects (Metadata Level 1 leaves out UpdateAvailabilityStatus / SubmitAssociation).

Membership removed by Metadata Update (a Deprecated HasMember) is not followed.
"""
from __future__ import annotations

from xds_registry.query_find import (DE_CONF, DE_FORMAT, DE_TYPE, HOME, METADATA_LEVEL,
                                     ASSOCIATION_TYPES, entry_types)
from xds_registry.query_params import (ASSOC_TYPE, CODE, ENTRY_TYPE, LEVEL, STATUS, STRING,
                                       Param, Params, StoredQuery)
from xds_registry.query_sql import (ASSOCIATION, DOCUMENT_ENTRY, FOLDER, SUBMISSION_SET,
                                    DocumentFilter, QueryContext, association_rows, associations,
                                    filter_documents, ids_by, kinds, unique)
from xds_registry.tables import document_entry, folder, submission_set

DE_UUID = "$XDSDocumentEntryEntryUUID"
DE_UNIQUE_ID = "$XDSDocumentEntryUniqueId"
DE_LOGICAL_ID = "$XDSDocumentEntryLogicalID"
FD_UUID = "$XDSFolderEntryUUID"
FD_UNIQUE_ID = "$XDSFolderUniqueId"
FD_LOGICAL_ID = "$XDSFolderLogicalID"
SS_UUID = "$XDSSubmissionSetEntryUUID"
SS_UNIQUE_ID = "$XDSSubmissionSetUniqueId"
UUID = "$uuid"
ASSOCIATION_STATUS = "$XDSAssociationStatus"
HAS_MEMBER = ["HasMember"]

GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
GET_FOLDERS = "urn:uuid:5737b14c-8a1a-4539-b659-e03a34a5e1e4"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
GET_DOCUMENTS_AND_ASSOCIATIONS = "urn:uuid:bab9529a-4a10-40b3-a01f-f68a615d247a"
GET_SUBMISSION_SETS = "urn:uuid:51224314-5390-4169-9b91-b1980040715a"
GET_SUBMISSION_SET_AND_CONTENTS = "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83"
GET_FOLDER_AND_CONTENTS = "urn:uuid:b909a503-523d-4517-8acf-8e5834dfc4c7"
GET_FOLDERS_FOR_DOCUMENT = "urn:uuid:10cae35a-c7f9-4cf5-b61e-fc3278ffb578"
GET_RELATED_DOCUMENTS = "urn:uuid:d90e5407-b356-4d91-a89f-873917b4b0e6"

COMMON = (Param(HOME, STRING), Param(METADATA_LEVEL, LEVEL))
CONTENT_FILTER = (Param(DE_FORMAT, CODE, multiple=True), Param(DE_CONF, CODE, and_or=True),
                  Param(DE_TYPE, ENTRY_TYPE, multiple=True))


def level(p: Params) -> int:
    return p.get(METADATA_LEVEL, 1)


def _lookup(qc: QueryContext, p: Params, table, by_uuid: str, by_unique: str,
            by_lid: str | None = None) -> list[str]:
    """The objects a query names.  By uniqueId, which every version of a logical object shares,
    Metadata Level 1 finds the latest version only, Level 2 every version (ITI TF-2a
    3.18.4.1.2.3.5; NIST 20000e: GetFolderAndContents by uniqueId after a Folder update is the
    new version alone at Level 1, both at Level 2)."""
    if by_uuid in p:
        return ids_by(qc, table, "id", p.list(by_uuid))
    if by_unique in p:
        return ids_by(qc, table, "unique_id", p.list(by_unique), latest_only=level(p) == 1)
    if by_lid is not None and by_lid in p:
        return ids_by(qc, table, "lid", p.list(by_lid))
    return []


def documents(qc: QueryContext, p: Params) -> list[str]:
    return _lookup(qc, p, document_entry, DE_UUID, DE_UNIQUE_ID, DE_LOGICAL_ID)


def folders(qc: QueryContext, p: Params) -> list[str]:
    return _lookup(qc, p, folder, FD_UUID, FD_UNIQUE_ID, FD_LOGICAL_ID)


def content_filter(p: Params) -> DocumentFilter:
    return DocumentFilter(entry_types=entry_types(p), format_codes=p.list(DE_FORMAT),
                          conf_groups=p.groups(DE_CONF))


# -- 3.18.4.1.2.3.7.5 GetDocuments, .6 GetFolders ---------------------------------------------

GetDocuments = StoredQuery(
    GET_DOCUMENTS, "GetDocuments",
    (Param(DE_UUID, STRING, multiple=True), Param(DE_UNIQUE_ID, STRING, multiple=True),
     Param(DE_LOGICAL_ID, STRING, multiple=True)) + COMMON,
    documents, exactly_one=((DE_UUID, DE_UNIQUE_ID, DE_LOGICAL_ID),))

GetFolders = StoredQuery(
    GET_FOLDERS, "GetFolders",
    (Param(FD_UUID, STRING, multiple=True), Param(FD_UNIQUE_ID, STRING, multiple=True),
     Param(FD_LOGICAL_ID, STRING, multiple=True)) + COMMON,
    folders, exactly_one=((FD_UUID, FD_UNIQUE_ID, FD_LOGICAL_ID),))


# -- 3.18.4.1.2.3.7.7 GetAssociations, .8 GetDocumentsAndAssociations --------------------------

def run_get_associations(qc: QueryContext, p: Params) -> list[str]:
    uuids = p.list(UUID)
    return [a.id for a in associations(qc, sources=uuids, targets=uuids,
                                       metadata_level=level(p))]


GetAssociations = StoredQuery(
    GET_ASSOCIATIONS, "GetAssociations",
    (Param(UUID, STRING, required=True, multiple=True),) + COMMON,
    run_get_associations)


def run_get_documents_and_associations(qc: QueryContext, p: Params) -> list[str]:
    docs = documents(qc, p)
    return docs + [a.id for a in associations(qc, sources=docs, targets=docs,
                                              metadata_level=level(p))]


GetDocumentsAndAssociations = StoredQuery(
    GET_DOCUMENTS_AND_ASSOCIATIONS, "GetDocumentsAndAssociations",
    (Param(DE_UUID, STRING, multiple=True), Param(DE_UNIQUE_ID, STRING, multiple=True)) + COMMON,
    run_get_documents_and_associations, exactly_one=((DE_UUID, DE_UNIQUE_ID),))


# -- 3.18.4.1.2.3.7.9 GetSubmissionSets -------------------------------------------------------

def run_get_submission_sets(qc: QueryContext, p: Params) -> list[str]:
    members = associations(qc, targets=p.list(UUID), types=HAS_MEMBER, metadata_level=level(p))
    kind = kinds(qc, [a.source for a in members])
    members = [a for a in members if kind.get(a.source) == SUBMISSION_SET]
    return unique(a.source for a in members) + [a.id for a in members]


GetSubmissionSets = StoredQuery(
    GET_SUBMISSION_SETS, "GetSubmissionSets",
    (Param(UUID, STRING, required=True, multiple=True),) + COMMON,
    run_get_submission_sets)


# -- 3.18.4.1.2.3.7.10 GetSubmissionSetAndContents --------------------------------------------

def run_get_submission_set_and_contents(qc: QueryContext, p: Params) -> list[str]:
    sets = _lookup(qc, p, submission_set, SS_UUID, SS_UNIQUE_ID)
    if not sets:
        return []
    members = associations(qc, sources=sets, types=HAS_MEMBER, active_only=True,
                           metadata_level=level(p))
    kind = kinds(qc, [a.target for a in members])
    targets = unique(a.target for a in members)
    docs = filter_documents(qc, [t for t in targets if kind.get(t) == DOCUMENT_ENTRY],
                            content_filter(p))
    fols = [t for t in targets if kind.get(t) == FOLDER]
    returned = set(sets) | set(docs) | set(fols)
    direct = [a for a in members if a.target in returned]
    inner = [x for x in association_rows(
                 qc, [t for t in targets if kind.get(t) == ASSOCIATION], active_only=True,
                 metadata_level=level(p))
             if x.source in returned and x.target in returned]
    inner_ids = {x.id for x in inner}
    to_inner = [a for a in members if a.target in inner_ids]
    return sets + fols + docs + [a.id for a in direct + inner + to_inner]


GetSubmissionSetAndContents = StoredQuery(
    GET_SUBMISSION_SET_AND_CONTENTS, "GetSubmissionSetAndContents",
    (Param(SS_UUID, STRING), Param(SS_UNIQUE_ID, STRING))
    + CONTENT_FILTER + COMMON,
    run_get_submission_set_and_contents, exactly_one=((SS_UUID, SS_UNIQUE_ID),))


# -- 3.18.4.1.2.3.7.11 GetFolderAndContents ---------------------------------------------------

def run_get_folder_and_contents(qc: QueryContext, p: Params) -> list[str]:
    fols = _lookup(qc, p, folder, FD_UUID, FD_UNIQUE_ID)
    if not fols:
        return []
    members = associations(qc, sources=fols, types=HAS_MEMBER, active_only=True,
                           metadata_level=level(p))
    docs = filter_documents(qc, unique(a.target for a in members), content_filter(p))
    returned = set(docs)
    return fols + docs + [a.id for a in members if a.target in returned]


GetFolderAndContents = StoredQuery(
    GET_FOLDER_AND_CONTENTS, "GetFolderAndContents",
    (Param(FD_UUID, STRING), Param(FD_UNIQUE_ID, STRING))
    + CONTENT_FILTER + COMMON,
    run_get_folder_and_contents, exactly_one=((FD_UUID, FD_UNIQUE_ID),))


# -- 3.18.4.1.2.3.7.12 GetFoldersForDocument --------------------------------------------------

def run_get_folders_for_document(qc: QueryContext, p: Params) -> list[str]:
    docs = documents(qc, p)
    if not docs:
        return []
    members = associations(qc, targets=docs, types=HAS_MEMBER, active_only=True,
                           metadata_level=level(p))
    sources = unique(a.source for a in members)
    kind = kinds(qc, sources)
    return [s for s in sources if kind.get(s) == FOLDER]


GetFoldersForDocument = StoredQuery(
    GET_FOLDERS_FOR_DOCUMENT, "GetFoldersForDocument",
    (Param(DE_UUID, STRING), Param(DE_UNIQUE_ID, STRING)) + COMMON,
    run_get_folders_for_document, exactly_one=((DE_UUID, DE_UNIQUE_ID),))


# -- 3.18.4.1.2.3.7.13 GetRelatedDocuments ----------------------------------------------------

def run_get_related_documents(qc: QueryContext, p: Params) -> list[str]:
    docs = documents(qc, p)
    if not docs:
        return []
    originals = set(docs)
    rel = associations(qc, sources=docs, targets=docs, types=p.list(ASSOCIATION_TYPES),
                       metadata_level=level(p),
                       statuses=p.list(ASSOCIATION_STATUS) or ["Approved"])

    def other(a) -> str:
        return a.target if a.source in originals else a.source

    related = set(filter_documents(qc, unique(other(a) for a in rel),
                                   DocumentFilter(entry_types=entry_types(p))))
    rel = [a for a in rel if other(a) in related]
    if not rel:
        return []
    ends = {a.source for a in rel} | {a.target for a in rel}
    others = unique(other(a) for a in rel if other(a) not in originals)
    return [d for d in docs if d in ends] + others + [a.id for a in rel]


GetRelatedDocuments = StoredQuery(
    GET_RELATED_DOCUMENTS, "GetRelatedDocuments",
    (Param(DE_UUID, STRING), Param(DE_UNIQUE_ID, STRING),
     Param(ASSOCIATION_TYPES, ASSOC_TYPE, required=True, multiple=True),
     Param(ASSOCIATION_STATUS, STATUS, multiple=True),
     Param(DE_TYPE, ENTRY_TYPE, multiple=True)) + COMMON,
    run_get_related_documents, exactly_one=((DE_UUID, DE_UNIQUE_ID),))


GET_QUERIES = (GetDocuments, GetFolders, GetAssociations, GetDocumentsAndAssociations,
               GetSubmissionSets, GetSubmissionSetAndContents, GetFolderAndContents,
               GetFoldersForDocument, GetRelatedDocuments)

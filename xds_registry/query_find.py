"""The patient-scoped stored queries: FindDocuments, FindDocumentsByReferenceId, FindSubmissionSets,
FindFolders and GetAll (ITI TF-2a 3.18.4.1.2.3.7.1, .2, .3, .4, .14 with their parameter tables)
and the Multi-Patient Stored Queries FindDocumentsForMultiplePatients and
FindFoldersForMultiplePatients (ITI TF-2b 3.51.4.1.2.1-2).

Each one is driven by the ``(patient_id, status, ...)`` index of its table; all other parameters
filter the rows found there (see ``query_sql``).  The patient ID asked for stands for itself and
the IDs merged into it (:func:`patients`).  $XDSDocumentEntryType defaults to stable
DocumentEntries only (ITI TF-2a 3.18.4.1.2.3.6.2).
"""
from __future__ import annotations

import sqlalchemy as sa

from xds_registry.query_params import (CODE, ENTRY_TYPE, LEVEL, PATTERN, STATUS,
                                       STRING, TIME, Param, Params, StoredQuery)
from xds_registry.query_sql import (DocumentFilter, QueryContext, associations, code_in,
                                    find_documents, has_author, has_codes, time_range)
from xds_registry.tables import folder, submission_set

# -- parameter names (ITI TF-2a 3.18.4.1.2.3.7) -----------------------------------------------
DE_PATIENT = "$XDSDocumentEntryPatientId"
DE_CLASS = "$XDSDocumentEntryClassCode"
DE_TYPE_CODE = "$XDSDocumentEntryTypeCode"
DE_PRACTICE = "$XDSDocumentEntryPracticeSettingCode"
DE_CREATION_FROM = "$XDSDocumentEntryCreationTimeFrom"
DE_CREATION_TO = "$XDSDocumentEntryCreationTimeTo"
DE_START_FROM = "$XDSDocumentEntryServiceStartTimeFrom"
DE_START_TO = "$XDSDocumentEntryServiceStartTimeTo"
DE_STOP_FROM = "$XDSDocumentEntryServiceStopTimeFrom"
DE_STOP_TO = "$XDSDocumentEntryServiceStopTimeTo"
DE_HCFT = "$XDSDocumentEntryHealthcareFacilityTypeCode"
DE_EVENT = "$XDSDocumentEntryEventCodeList"
DE_CONF = "$XDSDocumentEntryConfidentialityCode"
DE_AUTHOR = "$XDSDocumentEntryAuthorPerson"
DE_FORMAT = "$XDSDocumentEntryFormatCode"
DE_STATUS = "$XDSDocumentEntryStatus"
DE_TYPE = "$XDSDocumentEntryType"
DE_REFERENCE_ID = "$XDSDocumentEntryReferenceIdList"
SS_PATIENT = "$XDSSubmissionSetPatientId"
SS_SOURCE = "$XDSSubmissionSetSourceId"
SS_TIME_FROM = "$XDSSubmissionSetSubmissionTimeFrom"
SS_TIME_TO = "$XDSSubmissionSetSubmissionTimeTo"
SS_AUTHOR = "$XDSSubmissionSetAuthorPerson"
SS_CONTENT_TYPE = "$XDSSubmissionSetContentType"
SS_STATUS = "$XDSSubmissionSetStatus"
FD_PATIENT = "$XDSFolderPatientId"
FD_TIME_FROM = "$XDSFolderLastUpdateTimeFrom"
FD_TIME_TO = "$XDSFolderLastUpdateTimeTo"
FD_CODES = "$XDSFolderCodeList"
FD_STATUS = "$XDSFolderStatus"
PATIENT = "$patientId"
HOME = "$homeCommunityId"
METADATA_LEVEL = "$MetadataLevel"
ASSOCIATION_TYPES = "$AssociationTypes"

# -- query ids --------------------------------------------------------------------------------
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_DOCUMENTS_BY_REFERENCE_ID = "urn:uuid:12941a89-e02e-4be5-967c-ce4bfc8fe492"
FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
FIND_FOLDERS = "urn:uuid:958f3006-baad-4929-a4de-ff1114824431"
GET_ALL = "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3"
FIND_DOCUMENTS_MPQ = "urn:uuid:3d1bdb10-39a2-11de-89c2-2f44d94eaa9f"
FIND_FOLDERS_MPQ = "urn:uuid:50d3f5ac-39a2-11de-a1ca-b366239e58df"

# the DocumentEntry attribute parameters FindDocuments shares with its relatives
DOCUMENT_FILTER_PARAMS = (
    Param(DE_CLASS, CODE, multiple=True),
    Param(DE_TYPE_CODE, CODE, multiple=True),
    Param(DE_PRACTICE, CODE, multiple=True),
    Param(DE_CREATION_FROM, TIME), Param(DE_CREATION_TO, TIME),
    Param(DE_START_FROM, TIME), Param(DE_START_TO, TIME),
    Param(DE_STOP_FROM, TIME), Param(DE_STOP_TO, TIME),
    Param(DE_HCFT, CODE, multiple=True),
    Param(DE_EVENT, CODE, and_or=True),
    Param(DE_CONF, CODE, and_or=True),
    Param(DE_AUTHOR, PATTERN, multiple=True),
    Param(DE_FORMAT, CODE, multiple=True),
    Param(DE_STATUS, STATUS, required=True, multiple=True),
    Param(DE_TYPE, ENTRY_TYPE, multiple=True),
)


def entry_types(p: Params) -> list[str]:
    return p.list(DE_TYPE) or ["stable"]


def document_filter(p: Params, statuses: bool = True) -> DocumentFilter:
    """The DocumentEntry filter of whichever of the FindDocuments parameters ``p`` holds."""
    return DocumentFilter(
        statuses=p.list(DE_STATUS) if statuses else (),
        entry_types=entry_types(p),
        class_codes=p.list(DE_CLASS), type_codes=p.list(DE_TYPE_CODE),
        practice_codes=p.list(DE_PRACTICE), hcft_codes=p.list(DE_HCFT),
        format_codes=p.list(DE_FORMAT),
        event_groups=p.groups(DE_EVENT), conf_groups=p.groups(DE_CONF),
        reference_id_groups=p.groups(DE_REFERENCE_ID),
        authors=p.list(DE_AUTHOR),
        creation=(p.get(DE_CREATION_FROM), p.get(DE_CREATION_TO)),
        service_start=(p.get(DE_START_FROM), p.get(DE_START_TO)),
        service_stop=(p.get(DE_STOP_FROM), p.get(DE_STOP_TO)))


# -- FindDocuments / FindDocumentsByReferenceId (3.18.4.1.2.3.7.1 / .14) ----------------------

def patients(qc: QueryContext, pid: str) -> list[str]:
    """``pid`` and the patient IDs merged into it (ADT A40, ITI TF-2a 3.8.4.2): a query by the
    surviving ID also returns what was registered under the subsumed ones.  The patient index
    answers (another actor: imported here, the one place the queries ask it)."""
    from pix_pdq.index import patient_aliases
    ids = patient_aliases(qc.conn, pid)
    if len(ids) > 1:
        qc.merged_ids.update(ids)
    return ids


def _one_of(column: sa.ColumnElement, values: list[str]) -> sa.ColumnElement:
    return column == values[0] if len(values) == 1 else column.in_(values)


def run_find_documents(qc: QueryContext, p: Params) -> list[str]:
    return find_documents(qc, patients(qc, p.get(DE_PATIENT)), document_filter(p))


FindDocuments = StoredQuery(
    FIND_DOCUMENTS, "FindDocuments",
    (Param(DE_PATIENT, STRING, required=True),) + DOCUMENT_FILTER_PARAMS,
    run_find_documents)

FindDocumentsByReferenceId = StoredQuery(
    FIND_DOCUMENTS_BY_REFERENCE_ID, "FindDocumentsByReferenceId",
    (Param(DE_PATIENT, STRING, required=True),
     Param(DE_REFERENCE_ID, STRING, required=True, and_or=True)) + DOCUMENT_FILTER_PARAMS,
    run_find_documents)


# -- FindSubmissionSets (3.18.4.1.2.3.7.2) ----------------------------------------------------

def submission_set_where(qc: QueryContext, p: Params) -> list[sa.ColumnElement]:
    ss = submission_set.c
    w = [ss.status.in_(p.list(SS_STATUS))]
    if SS_SOURCE in p:
        w.append(ss.source_id.in_(p.list(SS_SOURCE)))
    w += time_range(ss.submission_time, p.get(SS_TIME_FROM), p.get(SS_TIME_TO))
    if SS_CONTENT_TYPE in p:
        w.append(code_in(ss.content_type_code, ss.content_type_scheme, p.list(SS_CONTENT_TYPE)))
    if SS_AUTHOR in p:
        w.append(has_author(ss.id, [p.get(SS_AUTHOR)], qc.dialect))
    return w


def run_find_submission_sets(qc: QueryContext, p: Params) -> list[str]:
    ss = submission_set.c
    stmt = sa.select(ss.id).where(_one_of(ss.patient_id, patients(qc, p.get(SS_PATIENT))),
                                  *submission_set_where(qc, p))
    return qc.ids(stmt, "SubmissionSets")


FindSubmissionSets = StoredQuery(
    FIND_SUBMISSION_SETS, "FindSubmissionSets",
    (Param(SS_PATIENT, STRING, required=True),
     Param(SS_SOURCE, STRING, multiple=True),
     Param(SS_TIME_FROM, TIME), Param(SS_TIME_TO, TIME),
     Param(SS_AUTHOR, PATTERN),
     Param(SS_CONTENT_TYPE, CODE, multiple=True),
     Param(SS_STATUS, STATUS, required=True, multiple=True)),
    run_find_submission_sets)


# -- FindFolders (3.18.4.1.2.3.7.3) and FindFoldersForMultiplePatients (ITI-51) ----------------

def find_folders(qc: QueryContext, patient_ids: list[str] | None, p: Params) -> list[str]:
    f = folder.c
    stmt = sa.select(f.id).where(f.status.in_(p.list(FD_STATUS)),
                                 *time_range(f.last_update_time, p.get(FD_TIME_FROM),
                                             p.get(FD_TIME_TO)),
                                 *has_codes(f.id, "folder", p.groups(FD_CODES)))
    if patient_ids is not None:
        stmt = stmt.where(_one_of(f.patient_id, patient_ids))
    return qc.ids(stmt, "Folders")


FOLDER_FILTER_PARAMS = (
    Param(FD_TIME_FROM, TIME), Param(FD_TIME_TO, TIME),
    Param(FD_CODES, CODE, and_or=True),
    Param(FD_STATUS, STATUS, required=True, multiple=True),
)

FindFolders = StoredQuery(
    FIND_FOLDERS, "FindFolders",
    (Param(FD_PATIENT, STRING, required=True),) + FOLDER_FILTER_PARAMS,
    lambda qc, p: find_folders(qc, patients(qc, p.get(FD_PATIENT)), p))


# -- GetAll (3.18.4.1.2.3.7.4) ----------------------------------------------------------------

def run_get_all(qc: QueryContext, p: Params) -> list[str]:
    """All SubmissionSets, DocumentEntries and Folders of the patient in the requested statuses,
    and the Associations among them: those whose source and target are both returned, plus those
    (SubmissionSet HasMember Association) that point at a returned Association."""
    pids = patients(qc, p.get(PATIENT))
    flt = DocumentFilter(statuses=p.list(DE_STATUS), entry_types=entry_types(p),
                         format_codes=p.list(DE_FORMAT), conf_groups=p.groups(DE_CONF))
    docs = find_documents(qc, pids, flt)
    ss = submission_set.c
    sets = qc.ids(sa.select(ss.id).where(_one_of(ss.patient_id, pids),
                                         ss.status.in_(p.list(SS_STATUS))), "SubmissionSets")
    f = folder.c
    folders = qc.ids(sa.select(f.id).where(_one_of(f.patient_id, pids),
                                           f.status.in_(p.list(FD_STATUS))), "Folders")
    objects = sets + folders + docs
    qc.check_count(len(objects))
    returned = set(objects)
    candidates = associations(qc, sources=objects, metadata_level=p.get(METADATA_LEVEL, 1))
    linked = [a for a in candidates if a.target in returned]
    linked_ids = {a.id for a in linked}
    linked += [a for a in candidates if a.target in linked_ids]
    return objects + [a.id for a in linked]


GetAll = StoredQuery(
    GET_ALL, "GetAll",
    (Param(PATIENT, STRING, required=True),
     Param(DE_STATUS, STATUS, required=True, multiple=True),
     Param(SS_STATUS, STATUS, required=True, multiple=True),
     Param(FD_STATUS, STATUS, required=True, multiple=True),
     Param(DE_FORMAT, CODE, multiple=True),
     Param(DE_CONF, CODE, and_or=True),
     Param(DE_TYPE, ENTRY_TYPE, multiple=True),
     Param(HOME, STRING), Param(METADATA_LEVEL, LEVEL)),
    run_get_all)


# -- ITI-51 Multi-Patient Stored Query (ITI TF-2b 3.51.4.1.2) ----------------------------------

FindDocumentsForMultiplePatients = StoredQuery(
    FIND_DOCUMENTS_MPQ, "FindDocumentsForMultiplePatients",
    (Param(DE_PATIENT, STRING, multiple=True),) + DOCUMENT_FILTER_PARAMS,
    lambda qc, p: find_documents(qc, p.list(DE_PATIENT) or None, document_filter(p)),
    at_least_one=((DE_PATIENT, DE_CLASS, DE_EVENT, DE_HCFT),),
    single_patient=False)

FindFoldersForMultiplePatients = StoredQuery(
    FIND_FOLDERS_MPQ, "FindFoldersForMultiplePatients",
    (Param(FD_PATIENT, STRING, multiple=True),) + FOLDER_FILTER_PARAMS,
    lambda qc, p: find_folders(qc, p.list(FD_PATIENT) or None, p),
    at_least_one=((FD_PATIENT, FD_CODES),),
    single_patient=False)

FIND_QUERIES = (FindDocuments, FindDocumentsByReferenceId, FindSubmissionSets, FindFolders,
                GetAll)
MULTI_PATIENT_QUERIES = (FindDocumentsForMultiplePatients, FindFoldersForMultiplePatients)

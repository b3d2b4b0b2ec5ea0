"""XDS metadata vocabulary: the UUIDs and URNs that give ebRIM 3.0 objects their XDS meaning.

Sources:

- ITI TF-3 4.2.5 (Table 4.2.5-1 "Classification and ExternalIdentifier UUIDs"),
  ITI TF-3 4.2.3.2 (DocumentEntry attributes), 4.2.3.3 (SubmissionSet), 4.2.3.4 (Folder);
- ITI TF-3 4.2.2.2 (Association types), 4.2.2.1.3 (stable / on-demand objectType);
- ebRIM 3.0 §2.4 (status types, object types), ITI TF-2b 3.57.4.1.3.3 (UpdateAvailabilityStatus,
  SubmitAssociation) and ITI TF-3 4.2.3.2.29 (documentAvailability).
"""
from __future__ import annotations

RIM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RS_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
QUERY_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
RMD_NS = "urn:ihe:iti:rmd:2017"
XDSB_NS = "urn:ihe:iti:xds-b:2007"

# -- object types (ITI TF-3 4.2.2.1.3, ebRIM 3.0 canonical ObjectType scheme) ------------------
DE_STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
DE_ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
DE_TYPES = {DE_STABLE: "stable", DE_ON_DEMAND: "on-demand"}

_OT = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:"
OT_REGISTRY_PACKAGE = _OT + "RegistryPackage"
OT_CLASSIFICATION = _OT + "Classification"
OT_EXTERNAL_IDENTIFIER = _OT + "ExternalIdentifier"
OT_ASSOCIATION = _OT + "Association"
OT_EXTRINSIC_OBJECT = _OT + "ExtrinsicObject"

# -- classification nodes for RegistryPackages (ITI TF-3 4.2.5) ---------------------------------
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER_NODE = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"

# -- DocumentEntry -----------------------------------------------------------------------------
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT_CODE = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_HCFT_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_LIMITED = "urn:uuid:ab9b591b-83ab-4d03-8f5d-f93b1fb92e85"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"

# -- SubmissionSet -----------------------------------------------------------------------------
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_LIMITED = "urn:uuid:5003a9db-8d8d-49e6-bf0c-990e34ac7707"

# -- Folder ------------------------------------------------------------------------------------
FD_CODE_LIST = "urn:uuid:1ba97051-7806-41a8-a48b-8fce7af683c5"
FD_PATIENT_ID = "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a"
FD_UNIQUE_ID = "urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a"
FD_LIMITED = "urn:uuid:2c144a76-29a9-4b7c-af54-b25409fe7d03"

# -- Association -------------------------------------------------------------------------------
ASSOC_DOCUMENTATION = "urn:uuid:abd807a3-4432-4053-87b4-fd82c643d1f3"

HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
XFRM = "urn:ihe:iti:2007:AssociationType:XFRM"
APND = "urn:ihe:iti:2007:AssociationType:APND"
XFRM_RPLC = "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
IS_SNAPSHOT_OF = "urn:ihe:iti:2010:AssociationType:IsSnapshotOf"
UPDATE_AVAILABILITY_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
SUBMIT_ASSOCIATION = "urn:ihe:iti:2010:AssociationType:SubmitAssociation"

ASSOCIATION_TYPES = {
    HAS_MEMBER: "HasMember", RPLC: "RPLC", XFRM: "XFRM", APND: "APND",
    XFRM_RPLC: "XFRM_RPLC", SIGNS: "signs", IS_SNAPSHOT_OF: "IsSnapshotOf",
    UPDATE_AVAILABILITY_STATUS: "UpdateAvailabilityStatus",
    SUBMIT_ASSOCIATION: "SubmitAssociation",
}
ASSOCIATION_URNS = {short: urn for urn, short in ASSOCIATION_TYPES.items()}
# document relationships (ITI TF-3 4.2.2.2): source is the new DocumentEntry
RELATIONSHIPS = frozenset({RPLC, XFRM, APND, XFRM_RPLC, SIGNS, IS_SNAPSHOT_OF})
REPLACING = frozenset({RPLC, XFRM_RPLC})

# -- status (ebRIM 3.0 StatusType) --------------------------------------------------------------
_ST = "urn:oasis:names:tc:ebxml-regrep:StatusType:"
APPROVED = _ST + "Approved"
DEPRECATED = _ST + "Deprecated"
SUBMITTED = _ST + "Submitted"
STATUS_URNS = {"Approved": APPROVED, "Deprecated": DEPRECATED, "Submitted": SUBMITTED}
STATUS_SHORT = {urn: short for short, urn in STATUS_URNS.items()}

# -- slots with fixed names ---------------------------------------------------------------------
SLOT_REFERENCE_ID_LIST = "urn:ihe:iti:xds:2013:referenceIdList"
SLOT_SS_STATUS = "SubmissionSetStatus"
SLOT_PREVIOUS_VERSION = "PreviousVersion"
SLOT_ORIGINAL_STATUS = "OriginalStatus"
SLOT_NEW_STATUS = "NewStatus"
SLOT_ASSOCIATION_PROPAGATION = "AssociationPropagation"

AVAILABILITY_ONLINE = "urn:ihe:iti:2010:DocumentAvailability:Online"
AVAILABILITY_OFFLINE = "urn:ihe:iti:2010:DocumentAvailability:Offline"

# Names of the ExternalIdentifiers and Classifications, as written in rim:Name (ITI TF-3 4.2.5)
EI_NAMES = {
    DE_PATIENT_ID: "XDSDocumentEntry.patientId", DE_UNIQUE_ID: "XDSDocumentEntry.uniqueId",
    SS_PATIENT_ID: "XDSSubmissionSet.patientId", SS_SOURCE_ID: "XDSSubmissionSet.sourceId",
    SS_UNIQUE_ID: "XDSSubmissionSet.uniqueId",
    FD_PATIENT_ID: "XDSFolder.patientId", FD_UNIQUE_ID: "XDSFolder.uniqueId",
}

"""Transaction descriptors: one small frozen record per IHE transaction (id, name, actor, SOAP
actions or HL7 message type, ATNA audit event), so transports dispatch through tables, not if-chains.

Actions are those of ITI TF-2a/2b (e.g. ITI TF-2a 3.18.5.1 for ITI-18) and ITI TF-2b 3.41.5 /
3.43.5; audit event ids are the DICOM PS3.15 A.5 / ITI TF-2a 3.20 codes (EV(110106, DCM, ...)).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Transaction:
    id: str                    # "ITI-18"
    name: str                  # "Registry Stored Query"
    actor: str                 # the actor we play: "Document Registry"
    action: str = ""           # request wsa:Action (SOAP transactions)
    response_action: str = ""  # response wsa:Action
    message_type: str = ""     # HL7 v2 message type, e.g. "ADT^A01"
    audit_event: str = ""      # e.g. "110112^DCM^Query"
    # a bounded, read-only query whose handler may run on the event loop (no thread hand-off)
    inline: bool = False


ITI_18 = Transaction("ITI-18", "Registry Stored Query", "Document Registry",
                     "urn:ihe:iti:2007:RegistryStoredQuery",
                     "urn:ihe:iti:2007:RegistryStoredQueryResponse",
                     audit_event="110112^DCM^Query", inline=True)
ITI_42 = Transaction("ITI-42", "Register Document Set-b", "Document Registry",
                     "urn:ihe:iti:2007:RegisterDocumentSet-b",
                     "urn:ihe:iti:2007:RegisterDocumentSet-bResponse",
                     audit_event="110107^DCM^Import")
ITI_57 = Transaction("ITI-57", "Update Document Set", "Document Registry",
                     "urn:ihe:iti:2010:UpdateDocumentSet",
                     "urn:ihe:iti:2010:UpdateDocumentSetResponse",
                     audit_event="110107^DCM^Import")
ITI_62 = Transaction("ITI-62", "Delete Document Set", "Document Registry",
                     "urn:ihe:iti:2010:DeleteDocumentSet",
                     "urn:ihe:iti:2010:DeleteDocumentSetResponse",
                     audit_event="110105^DCM^DICOM Study Deleted")
ITI_51 = Transaction("ITI-51", "Multi-Patient Stored Query", "Document Registry",
                     "urn:ihe:iti:2009:MultiPatientStoredQuery",
                     "urn:ihe:iti:2009:MultiPatientStoredQueryResponse",
                     audit_event="110112^DCM^Query", inline=True)
ITI_41 = Transaction("ITI-41", "Provide and Register Document Set-b", "Document Repository",
                     "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
                     "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse",
                     audit_event="110107^DCM^Import")
ITI_43 = Transaction("ITI-43", "Retrieve Document Set", "Document Repository",
                     "urn:ihe:iti:2007:RetrieveDocumentSet",
                     "urn:ihe:iti:2007:RetrieveDocumentSetResponse",
                     audit_event="110106^DCM^Export")
# XCA, this node's Responding Gateway (ITI TF-2b 3.38.5.1 / 3.39.5.1)
ITI_38 = Transaction("ITI-38", "Cross Gateway Query", "Responding Gateway",
                     "urn:ihe:iti:2007:CrossGatewayQuery",
                     "urn:ihe:iti:2007:CrossGatewayQueryResponse",
                     audit_event="110112^DCM^Query", inline=True)
ITI_39 = Transaction("ITI-39", "Cross Gateway Retrieve", "Responding Gateway",
                     "urn:ihe:iti:2007:CrossGatewayRetrieve",
                     "urn:ihe:iti:2007:CrossGatewayRetrieveResponse",
                     audit_event="110106^DCM^Export")
ITI_8 = Transaction("ITI-8", "Patient Identity Feed", "Document Registry",
                    message_type="ADT", audit_event="110110^DCM^Patient Record")

ITI_9 = Transaction("ITI-9", "PIX Query", "Patient Identifier Cross-reference Manager",
                    message_type="QBP", audit_event="110112^DCM^Query")

ITI_21 = Transaction("ITI-21", "Patient Demographics Query", "Patient Demographics Supplier",
                     message_type="QBP", audit_event="110112^DCM^Query")

# HL7 v3 (PIXV3 / PDQV3, ITI TF-2b 3.44 / 3.45 / 3.46 / 3.47): request actions are those of the
# interactions; ITI-44 accepts three (add, revise, merge) and the national interaction services
# of the interoperability maturity evaluation add PRPA_IN201311UV02 / PRPA_IN201314UV02.
ITI_44 = Transaction("ITI-44", "Patient Identity Feed HL7 V3",
                     "Patient Identifier Cross-reference Manager",
                     "urn:hl7-org:v3:PRPA_IN201301UV02", "urn:hl7-org:v3:MCCI_IN000002UV01",
                     audit_event="110110^DCM^Patient Record")
ITI_45 = Transaction("ITI-45", "PIXV3 Query", "Patient Identifier Cross-reference Manager",
                     "urn:hl7-org:v3:PRPA_IN201309UV02", "urn:hl7-org:v3:PRPA_IN201310UV02",
                     audit_event="110112^DCM^Query")
ITI_46 = Transaction("ITI-46", "PIXV3 Update Notification",
                     "Patient Identifier Cross-reference Manager",
                     "urn:hl7-org:v3:PRPA_IN201302UV02", "urn:hl7-org:v3:MCCI_IN000002UV01",
                     audit_event="110110^DCM^Patient Record")
ITI_47 = Transaction("ITI-47", "Patient Demographics Query HL7 V3",
                     "Patient Demographics Supplier",
                     "urn:hl7-org:v3:PRPA_IN201305UV02", "urn:hl7-org:v3:PRPA_IN201306UV02",
                     audit_event="110112^DCM^Query")
ITI_10 = Transaction("ITI-10", "PIX Update Notification",
                     "Patient Identifier Cross-reference Manager", message_type="ADT^A31",
                     audit_event="110110^DCM^Patient Record")
# FHIR (PIXm / PDQm, ITI TF-2 3.83 / 3.78; Patient Identity Feed FHIR, ITI-104)
ITI_78 = Transaction("ITI-78", "Mobile Patient Demographics Query", "Patient Demographics Supplier",
                     audit_event="110112^DCM^Query")
ITI_83 = Transaction("ITI-83", "Mobile Patient Identifier Cross-reference Query",
                     "Patient Identifier Cross-reference Manager",
                     audit_event="110112^DCM^Query")
ITI_104 = Transaction("ITI-104", "Patient Identity Feed FHIR",
                      "Patient Identifier Cross-reference Manager",
                      audit_event="110110^DCM^Patient Record")

# DICOM (PS3.4): the imaging node's services, audited as DICOM PS3.15 A.5 has them
DICOM_C_STORE = Transaction("C-STORE", "Storage", "Storage SCP",
                            audit_event="110104^DCM^DICOM Instances Transferred")
DICOM_C_FIND = Transaction("C-FIND", "Query", "Query/Retrieve SCP",
                           audit_event="110112^DCM^Query")
DICOM_C_MOVE = Transaction("C-MOVE", "Retrieve (move)", "Query/Retrieve SCP",
                           audit_event="110106^DCM^Export")
DICOM_C_GET = Transaction("C-GET", "Retrieve (get)", "Query/Retrieve SCP",
                          audit_event="110106^DCM^Export")
DICOM_FORWARD = Transaction("C-STORE-FWD", "Forwarding (C-STORE as SCU)", "Storage SCU",
                            audit_event="110106^DCM^Export")
# DICOMweb (PS3.18), audited like their DIMSE counterparts
QIDO_RS = Transaction("QIDO-RS", "Search (DICOMweb)", "Image Manager",
                      audit_event="110112^DCM^Query")
WADO_RS = Transaction("WADO-RS", "Retrieve (DICOMweb)", "Image Manager",
                      audit_event="110106^DCM^Export")
STOW_RS = Transaction("STOW-RS", "Store (DICOMweb)", "Image Manager",
                      audit_event="110104^DCM^DICOM Instances Transferred")
RAD_69 = Transaction("RAD-69", "Retrieve Imaging Document Set", "Imaging Document Source",
                     "urn:ihe:rad:2009:RetrieveImagingDocumentSet",
                     "urn:ihe:iti:2007:RetrieveDocumentSetResponse",
                     audit_event="110106^DCM^Export")

ALL = {t.id: t for t in (ITI_18, ITI_42, ITI_57, ITI_62, ITI_51, ITI_41, ITI_43, ITI_38, ITI_39,
                         ITI_8, ITI_9, ITI_21, ITI_44, ITI_45, ITI_46, ITI_47, ITI_10, ITI_78,
                         ITI_83, ITI_104, DICOM_C_STORE, DICOM_C_FIND,
                         DICOM_C_MOVE, DICOM_C_GET, DICOM_FORWARD, QIDO_RS,
                         WADO_RS, STOW_RS, RAD_69)}

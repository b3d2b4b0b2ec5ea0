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
ITI_8 = Transaction("ITI-8", "Patient Identity Feed", "Document Registry",
                    message_type="ADT", audit_event="110110^DCM^Patient Record")

ITI_9 = Transaction("ITI-9", "PIX Query", "Patient Identifier Cross-reference Manager",
                    message_type="QBP", audit_event="110112^DCM^Query")

ITI_21 = Transaction("ITI-21", "Patient Demographics Query", "Patient Demographics Supplier",
                     message_type="QBP", audit_event="110112^DCM^Query")

ALL = {t.id: t for t in (ITI_18, ITI_42, ITI_57, ITI_62, ITI_51, ITI_41, ITI_43, ITI_8, ITI_9,
                         ITI_21)}

"""Errors as data: the one place where the node's protocol errors are drawn.

Every error a handler raises carries the response it should produce; the transports (SOAP over
HTTP, MLLP, DICOM) only render it.  Codes come from the standards:

- SOAP 1.2 Part 1 §5.4.6 fault codes (Sender, Receiver, ...) and WS-Addressing 1.0 SOAP Binding §6
  subcodes (wsa:ActionNotSupported, wsa:MessageAddressingHeaderRequired, ...);
- ebXML RegRep 3.0 RegistryError and the XDS error codes of ITI TF-3 Table 4.2.4.1-2;
- HL7 v2.5 acknowledgement codes (Table 0008) and error codes (Table 0357).
"""
from __future__ import annotations

from dataclasses import dataclass, field


class HieError(Exception):
    """Base of every error the node raises on purpose."""


# --------------------------------------------------------------------------------------------
# SOAP 1.2 faults
# --------------------------------------------------------------------------------------------

WSA_NS = "http://www.w3.org/2005/08/addressing"


class SoapFault(HieError):
    """A SOAP 1.2 fault.  ``code`` is ``Sender`` (the peer's fault) or ``Receiver`` (ours).

    ``subcode`` is a qualified name as ``(namespace, local)`` or None; ``reason`` is human text that
    never carries a stack trace.
    """

    def __init__(self, code: str, reason: str, subcode: tuple[str, str] | None = None,
                 detail: str | None = None):
        super().__init__(reason)
        if code not in ("Sender", "Receiver", "MustUnderstand", "VersionMismatch",
                        "DataEncodingUnknown"):
            raise ValueError(f"not a SOAP 1.2 fault code: {code}")
        self.code = code
        self.reason = reason
        self.subcode = subcode
        self.detail = detail

    @classmethod
    def sender(cls, reason: str, subcode: tuple[str, str] | None = None) -> "SoapFault":
        return cls("Sender", reason, subcode)

    @classmethod
    def receiver(cls, reason: str = "internal error") -> "SoapFault":
        return cls("Receiver", reason)

    @classmethod
    def action_not_supported(cls, action: str | None) -> "SoapFault":
        return cls("Sender", f"action not supported: {action}", (WSA_NS, "ActionNotSupported"))

    @classmethod
    def addressing_header_required(cls, header: str) -> "SoapFault":
        return cls("Sender", f"WS-Addressing header required: {header}",
                   (WSA_NS, "MessageAddressingHeaderRequired"))


# --------------------------------------------------------------------------------------------
# ebRS 3.0 / XDS registry errors
# --------------------------------------------------------------------------------------------

SEVERITY_ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
SEVERITY_WARNING = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"

STATUS_SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
STATUS_FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
STATUS_PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"


class XDS:
    """XDS error codes, ITI TF-3 Table 4.2.4.1-2 (and ITI TF-2b 3.57 / 3.62)."""

    RegistryError = "XDSRegistryError"
    RegistryMetadataError = "XDSRegistryMetadataError"
    RepositoryError = "XDSRepositoryError"
    RepositoryMetadataError = "XDSRepositoryMetadataError"
    RepositoryBusy = "XDSRepositoryBusy"
    RegistryBusy = "XDSRegistryBusy"
    RegistryOutOfResources = "XDSRegistryOutOfResources"
    RepositoryOutOfResources = "XDSRepositoryOutOfResources"
    RegistryNotAvailable = "XDSRegistryNotAvailable"
    PatientIdDoesNotMatch = "XDSPatientIdDoesNotMatch"
    UnknownPatientId = "XDSUnknownPatientId"
    RegistryDuplicateUniqueIdInMessage = "XDSRegistryDuplicateUniqueIdInMessage"
    RepositoryDuplicateUniqueIdInMessage = "XDSRepositoryDuplicateUniqueIdInMessage"
    DuplicateUniqueIdInRegistry = "XDSDuplicateUniqueIdInRegistry"
    NonIdenticalHash = "XDSNonIdenticalHash"
    NonIdenticalSize = "XDSNonIdenticalSize"
    RegistryDeprecatedDocumentError = "XDSRegistryDeprecatedDocumentError"
    MissingDocument = "XDSMissingDocument"
    MissingDocumentMetadata = "XDSMissingDocumentMetadata"
    DocumentUniqueIdError = "XDSDocumentUniqueIdError"
    UnknownRepositoryId = "XDSUnknownRepositoryId"
    UnknownCommunity = "XDSUnknownCommunity"
    MissingHomeCommunityId = "XDSMissingHomeCommunityId"
    UnknownStoredQuery = "XDSUnknownStoredQuery"
    StoredQueryParamNumber = "XDSStoredQueryParamNumber"
    StoredQueryMissingParam = "XDSStoredQueryMissingParam"
    TooManyResults = "XDSTooManyResults"
    ResultNotSinglePatient = "XDSResultNotSinglePatient"
    ExtraMetadataNotSaved = "XDSExtraMetadataNotSaved"
    MetadataUpdateError = "XDSMetadataUpdateError"
    MetadataUpdateOperationError = "XDSMetadataUpdateOperationError"
    MetadataVersionError = "XDSMetadataVersionError"
    MetadataAnnotationError = "XDSMetadataAnnotationError"
    PatientIDReconciliationError = "XDSPatientIDReconciliationError"
    ReplacementNotAllowed = "XDSReplacementNotAllowed"
    UnresolvedReferenceException = "UnresolvedReferenceException"
    ReferencesExistException = "ReferencesExistException"
    ObjectNotFound = "ObjectNotFoundException"  # ebRS 3.0 / RMD (ITI-62)
    # the XDS code of the Remove Metadata option (the NIST toolkit and its tests 30001-30003)
    UnreferencedObjectException = "XDSUnreferencedObjectException"
    InvalidRequestException = "InvalidRequestException"


@dataclass(frozen=True)
class RegistryError:
    """One ``rs:RegistryError`` of a RegistryErrorList."""

    error_code: str
    code_context: str
    severity: str = SEVERITY_ERROR
    location: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity == SEVERITY_ERROR


class RegistryErrors(HieError):
    """Raised to fail a registry/repository transaction as a whole: the handler's transport turns
    it into the transaction's response with status Failure and this RegistryErrorList.  Nothing the
    transaction wrote may survive it (the unit of work rolls back)."""

    def __init__(self, errors: list[RegistryError] | RegistryError):
        if isinstance(errors, RegistryError):
            errors = [errors]
        if not errors:
            raise ValueError("RegistryErrors needs at least one error")
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.error_code}: {e.code_context}" for e in self.errors))

    @classmethod
    def one(cls, code: str, context: str, location: str = "") -> "RegistryErrors":
        return cls([RegistryError(code, context, SEVERITY_ERROR, location)])


@dataclass
class ErrorCollector:
    """Collects registry errors and warnings while validating; ``raise_if_errors`` fails at once."""

    errors: list[RegistryError] = field(default_factory=list)

    def error(self, code: str, context: str, location: str = "") -> None:
        self.errors.append(RegistryError(code, context, SEVERITY_ERROR, location))

    def warning(self, code: str, context: str, location: str = "") -> None:
        self.errors.append(RegistryError(code, context, SEVERITY_WARNING, location))

    @property
    def has_errors(self) -> bool:
        return any(e.is_error for e in self.errors)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise RegistryErrors(self.errors)


# --------------------------------------------------------------------------------------------
# HL7 v2 acknowledgements
# --------------------------------------------------------------------------------------------

class HL7:
    """HL7 v2.5 Table 0357 message error condition codes."""

    SEGMENT_SEQUENCE_ERROR = "100"
    REQUIRED_FIELD_MISSING = "101"
    DATA_TYPE_ERROR = "102"
    TABLE_VALUE_NOT_FOUND = "103"
    UNSUPPORTED_MESSAGE_TYPE = "200"
    UNSUPPORTED_EVENT_CODE = "201"
    UNSUPPORTED_PROCESSING_ID = "202"
    UNSUPPORTED_VERSION_ID = "203"
    UNKNOWN_KEY_IDENTIFIER = "204"
    DUPLICATE_KEY_IDENTIFIER = "205"
    APPLICATION_RECORD_LOCKED = "206"
    APPLICATION_INTERNAL_ERROR = "207"


class Hl7Error(HieError):
    """Fails an HL7 v2 transaction: rendered as ACK with MSA-1 = ``ack_code`` (AE or AR) and an ERR
    segment carrying ``error_code`` (Table 0357) and ``location`` (ERR-2, e.g. ``PID^1^3``)."""

    def __init__(self, ack_code: str, error_code: str, text: str, location: str = ""):
        super().__init__(text)
        if ack_code not in ("AE", "AR", "CE", "CR"):
            raise ValueError(f"not an error acknowledgement code: {ack_code}")
        self.ack_code = ack_code
        self.error_code = error_code
        self.text = text
        self.location = location

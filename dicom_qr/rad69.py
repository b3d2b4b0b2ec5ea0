"""RAD-69 Retrieve Imaging Document Set, Imaging Document Source side (IHE RAD TF-3 4.69), at
``POST /xds/imaging``: the instances a KOS manifest (:mod:`dicom_qr.xdsi`) references, as DICOM
files in an MTOM response.

Request (RAD TF-3 4.69.4.1.2, namespace ``urn:ihe:rad:xdsi-b:2009``):
``RetrieveImagingDocumentSetRequest`` > ``StudyRequest/@studyInstanceUID`` >
``SeriesRequest/@seriesInstanceUID`` > ``xdsb:DocumentRequest`` (``RepositoryUniqueId`` — the
RetrieveLocationUID of the manifest, this node's repository unique id —, ``DocumentUniqueId``
— a SOP Instance UID), then ``TransferSyntaxUIDList`` (the syntaxes the consumer takes, in its
order of preference).

Response (4.69.4.2.2): ``xdsb:RetrieveDocumentSetResponse`` as ITI-43 gives it, each
``DocumentResponse`` with ``mimeType`` application/dicom and the PS3.10 file: as stored when
its transfer syntax is in the list, re-encoded when it is stored in Implicit VR Little Endian
and Explicit VR Little Endian is asked for.  Per document not returned, one RegistryError:
``XDSUnknownRepositoryId`` (another repository), ``XDSDocumentUniqueIdError`` (no such
instance in that study and series), ``XDSRepositoryError`` (its bytes are lost, or none of the
transfer syntaxes can be given).  Success / PartialSuccess / Failure as ITI-43.
"""
from __future__ import annotations

from dataclasses import dataclass

from lxml import etree
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_qr import cfind, retrieve, wado
from hie.blobs import BlobNotFound
from hie.context import MINOR_FAILURE, SERIOUS_FAILURE, Context
from hie.errors import STATUS_FAILURE, STATUS_PARTIAL, STATUS_SUCCESS, XDS, ErrorCollector
from hie.errors import SoapFault
from hie.mtom import new_content_id, xop_include
from hie.soap import Attachment, SoapRequest, SoapResponse
from xds_registry import vocab as V
from xds_registry.messages import RegistryResponse

XDSI_NS = "urn:ihe:rad:xdsi-b:2009"
XDSI = "{%s}" % XDSI_NS
XDSB = "{%s}" % V.XDSB_NS
MIME = "application/dicom"


@dataclass(frozen=True)
class ImageRequest:
    study: str
    series: str
    repository: str
    sop_uid: str
    home: str = ""


def parse_request(body: etree._Element) -> tuple[list[ImageRequest], list[str]]:
    """The instances asked for and the transfer syntaxes taken; SoapFault for another body."""
    if body.tag != XDSI + "RetrieveImagingDocumentSetRequest":
        raise SoapFault.sender("RAD-69 expects xdsiB:RetrieveImagingDocumentSetRequest, not "
                               f"{etree.QName(body).localname}")
    out = []
    for study in body.iterchildren(XDSI + "StudyRequest"):
        for series in study.iterchildren(XDSI + "SeriesRequest"):
            for doc in series.iterchildren(XDSB + "DocumentRequest"):
                out.append(ImageRequest(
                    (study.get("studyInstanceUID") or "").strip(),
                    (series.get("seriesInstanceUID") or "").strip(),
                    _text(doc, "RepositoryUniqueId"), _text(doc, "DocumentUniqueId"),
                    _text(doc, "HomeCommunityId")))
    syntaxes = [(t.text or "").strip() for t in body.iter(XDSI + "TransferSyntaxUID")
                if (t.text or "").strip()]
    return out, syntaxes


def _text(parent: etree._Element, local: str) -> str:
    el = parent.find(XDSB + local)
    return (el.text or "").strip() if el is not None else ""


def _syntax(stored: str, taken: list[str]) -> str | None:
    if not taken or stored in taken:
        return stored
    if stored == ImplicitVRLittleEndian and ExplicitVRLittleEndian in taken:
        return ExplicitVRLittleEndian
    return None


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    requests, taken = parse_request(req.body)
    repo_id = ctx.settings.repository_unique_id
    errors = ErrorCollector()
    if not requests:
        errors.error(XDS.RepositoryError, "RetrieveImagingDocumentSetRequest names no document")
    returned: list[tuple[ImageRequest, Attachment]] = []
    with ctx.db.read() as conn:
        for r in requests:
            if r.repository != repo_id:
                errors.error(XDS.UnknownRepositoryId, f"repository {r.repository or '(none)'} "
                             f"is not this Imaging Document Source ({repo_id})", r.repository)
                continue
            found = retrieve.instances(conn, cfind.Query(cfind.STUDY_ROOT, "IMAGE", {
                "StudyInstanceUID": r.study, "SeriesInstanceUID": r.series,
                "SOPInstanceUID": r.sop_uid})) if r.study and r.series and r.sop_uid else []
            if not found:
                errors.error(XDS.DocumentUniqueIdError, f"instance {r.sop_uid or '(none)'} is "
                             f"not in series {r.series} of study {r.study}", r.sop_uid)
                continue
            attachment = _attachment(ctx, found[0], taken, errors)
            if attachment is not None:
                returned.append((r, attachment))
    ctx.note(None, [r.sop_uid for r, _a in returned])
    if not returned:
        status = STATUS_FAILURE
        ctx.fail(SERIOUS_FAILURE, "; ".join(e.code_context for e in errors.errors)[:4000])
    elif errors.errors:
        status = STATUS_PARTIAL
        ctx.fail(MINOR_FAILURE, "; ".join(e.code_context for e in errors.errors)[:4000])
    else:
        status = STATUS_SUCCESS
    root = etree.Element(XDSB + "RetrieveDocumentSetResponse",
                         nsmap={"xdsb": V.XDSB_NS, "rs": V.RS_NS})
    root.append(RegistryResponse(status, errors.errors).to_ebrim())
    for r, attachment in returned:
        dr = etree.SubElement(root, XDSB + "DocumentResponse")
        if r.home:
            etree.SubElement(dr, XDSB + "HomeCommunityId").text = r.home
        etree.SubElement(dr, XDSB + "RepositoryUniqueId").text = repo_id
        etree.SubElement(dr, XDSB + "DocumentUniqueId").text = r.sop_uid
        etree.SubElement(dr, XDSB + "mimeType").text = MIME
        etree.SubElement(dr, XDSB + "Document").append(xop_include(attachment.content_id))
    return SoapResponse(root, [a for _r, a in returned], mtom=True)


def _attachment(ctx: Context, stored: retrieve.Stored, taken: list[str],
                errors: ErrorCollector) -> Attachment | None:
    syntax = _syntax(stored.transfer_syntax, taken)
    if syntax is None:
        errors.error(XDS.RepositoryError, f"instance {stored.sop_uid} is stored in "
                     f"{stored.transfer_syntax}, none of {', '.join(taken)}", stored.sop_uid)
        return None
    try:
        path = ctx.blobs.path(stored.blob_key)
    except BlobNotFound:
        path = None
    if path is None:
        errors.error(XDS.RepositoryError, f"instance {stored.sop_uid} cannot be read from "
                     "storage", stored.sop_uid)
        return None
    if syntax == stored.transfer_syntax:
        return Attachment(new_content_id(), MIME, path=path)
    return Attachment(new_content_id(), MIME, data=wado.reencoded(path, syntax))


__all__ = ["XDSI_NS", "ImageRequest", "parse_request", "handle"]

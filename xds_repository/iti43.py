"""ITI-43 Retrieve Document Set, Document Repository side (ITI TF-2b 3.43).

Request (ITI TF-2b 3.43.4.1.2, XDS.b_DocumentRepository.xsd): ``xdsb:RetrieveDocumentSetRequest``
with one or more ``DocumentRequest`` (optional ``HomeCommunityId``, ``RepositoryUniqueId``,
``DocumentUniqueId``).

Response (ITI TF-2b 3.43.4.2.2): ``xdsb:RetrieveDocumentSetResponse`` = ``rs:RegistryResponse``
then one ``DocumentResponse`` per document found (``HomeCommunityId`` echoed when the request
gave it, ``RepositoryUniqueId``, ``DocumentUniqueId``, ``mimeType``, ``Document``).  Status
(ITI TF-2b 3.43.4.2.3): Success when every document is returned, PartialSuccess when some are,
Failure when none; each document not returned has one RegistryError:

- ``XDSUnknownRepositoryId`` — the request names another repository than this one;
- ``XDSDocumentUniqueIdError`` — this repository has no document with that uniqueId;
- ``XDSRepositoryError`` — the document is registered here but its bytes cannot be read.

Each ``Document`` is an ``xop:Include`` of an MTOM part (ITI TF-2b 3.43.5, the response is
MTOM-encoded) whose attachment streams from the blob store — from the blob's file when the store
has one (the transport can send it without copying), else through ``BlobStore.open`` — so a 1 GB
document never sits in memory.
"""
from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from hie.blobs import BlobNotFound, BlobStore
from hie.context import MINOR_FAILURE, SERIOUS_FAILURE, Context
from hie.errors import (STATUS_FAILURE, STATUS_PARTIAL, STATUS_SUCCESS, XDS, ErrorCollector,
                        SoapFault)
from hie.mtom import new_content_id, xop_include
from hie.soap import Attachment, SoapRequest, SoapResponse
from xds_registry import vocab as V
from xds_registry.messages import RegistryResponse
from xds_repository import store
from xds_repository.store import StoredDocument

XDSB = "{%s}" % V.XDSB_NS


@dataclass(frozen=True)
class DocumentRequest:
    repository_unique_id: str
    document_unique_id: str
    home_community_id: str | None = None


def parse_request(body: etree._Element) -> list[DocumentRequest]:
    if body.tag != XDSB + "RetrieveDocumentSetRequest":
        raise SoapFault.sender(f"ITI-43 expects xdsb:RetrieveDocumentSetRequest, not "
                               f"{etree.QName(body).localname}")
    out: list[DocumentRequest] = []
    for dr in body.iterchildren(XDSB + "DocumentRequest"):
        out.append(DocumentRequest(_text(dr, "RepositoryUniqueId"),
                                   _text(dr, "DocumentUniqueId"),
                                   _text(dr, "HomeCommunityId") or None))
    return out


def _text(parent: etree._Element, local: str) -> str:
    el = parent.find(XDSB + local)
    return (el.text or "").strip() if el is not None else ""


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    requests = parse_request(req.body)
    repo_id = ctx.settings.repository_unique_id
    errors = ErrorCollector()
    if not requests:
        errors.error(XDS.RepositoryError, "RetrieveDocumentSetRequest has no DocumentRequest")

    wanted = [r.document_unique_id for r in requests
              if r.repository_unique_id == repo_id and r.document_unique_id]
    found: dict[str, StoredDocument] = {}
    if wanted:
        with ctx.db.read() as conn:
            found = store.find(conn, repo_id, wanted)

    returned: list[tuple[DocumentRequest, StoredDocument, Attachment]] = []
    for r in requests:
        uid = r.document_unique_id
        if r.repository_unique_id != repo_id:
            errors.error(XDS.UnknownRepositoryId,
                         f"repository {r.repository_unique_id or '(none)'} is not this "
                         f"repository ({repo_id})", r.repository_unique_id)
            continue
        doc = found.get(uid) if uid else None
        if doc is None:
            errors.error(XDS.DocumentUniqueIdError,
                         f"document {uid or '(no DocumentUniqueId)'} is not in repository "
                         f"{repo_id}", uid)
            continue
        attachment = blob_attachment(ctx.blobs, doc)
        if attachment is None:
            errors.error(XDS.RepositoryError, f"document {uid} cannot be read from storage",
                         uid)
            continue
        returned.append((r, doc, attachment))

    ctx.note(None, [d.document_unique_id for _, d, _ in returned])
    if not returned:
        status = STATUS_FAILURE
        ctx.fail(SERIOUS_FAILURE, _summary(errors))
    elif errors.errors:
        status = STATUS_PARTIAL
        ctx.fail(MINOR_FAILURE, _summary(errors))
    else:
        status = STATUS_SUCCESS

    root = etree.Element(XDSB + "RetrieveDocumentSetResponse",
                         nsmap={"xdsb": V.XDSB_NS, "rs": V.RS_NS})
    root.append(RegistryResponse(status, errors.errors).to_ebrim())
    for r, doc, attachment in returned:
        dr = etree.SubElement(root, XDSB + "DocumentResponse")
        if r.home_community_id:
            etree.SubElement(dr, XDSB + "HomeCommunityId").text = r.home_community_id
        etree.SubElement(dr, XDSB + "RepositoryUniqueId").text = doc.repository_unique_id
        etree.SubElement(dr, XDSB + "DocumentUniqueId").text = doc.document_unique_id
        etree.SubElement(dr, XDSB + "mimeType").text = doc.mime_type
        etree.SubElement(dr, XDSB + "Document").append(xop_include(attachment.content_id))
    return SoapResponse(root, [a for _, _, a in returned], mtom=True)


def blob_attachment(blobs: BlobStore, doc: StoredDocument) -> Attachment | None:
    """An attachment that streams ``doc`` from ``blobs`` when the response is sent (None when the
    blob is gone)."""
    cid = new_content_id()
    try:
        path = blobs.path(doc.blob_key)
    except BlobNotFound:
        return None
    if path is not None:
        return Attachment(cid, doc.mime_type, path=path, size=doc.size)
    key = doc.blob_key
    if not blobs.exists(key):
        return None
    return Attachment(cid, doc.mime_type, opener=lambda: blobs.open(key), size=doc.size)


def _summary(errors: ErrorCollector) -> str:
    return "; ".join(f"{e.error_code}: {e.code_context}" for e in errors.errors)[:4000]


__all__ = ["handle", "parse_request", "DocumentRequest", "blob_attachment"]

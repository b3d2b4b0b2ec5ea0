"""ITI-41 Provide and Register Document Set-b, Document Repository side (ITI TF-2b 3.41).

Request (ITI TF-2b 3.41.4.1.2, XDS.b_DocumentRepository.xsd): ``xdsb:ProvideAndRegisterDocument-
SetRequest`` = one ``lcm:SubmitObjectsRequest`` + one ``xdsb:Document id="..."`` per
DocumentEntry, its content an ``xop:Include`` of an MTOM part or inline base64.

Expected actions (ITI TF-2b 3.41.4.1.3), in order:

1. every ``xdsb:Document`` has an ``rim:ExtrinsicObject`` with its id (else
   ``XDSMissingDocumentMetadata``) and every ExtrinsicObject a Document (else
   ``XDSMissingDocument``); DocumentEntry uniqueIds are unique in the message
   (``XDSRepositoryDuplicateUniqueIdInMessage``);
2. each document goes into the node's blob store (fsync'ed) while its SHA-1 and size are
   computed (ITI TF-3 4.2.3.2.10 hash, 4.2.3.2.19 size) — a part the MTOM reader spooled to disk
   is adopted by the store without copying it (:func:`xds_repository.store.put_blob`); a ``hash``
   or ``size`` slot supplied by the Document Source that disagrees is
   ``XDSRepositoryMetadataError``; a document whose uniqueId this repository already holds with
   other content is ``XDSNonIdenticalHash`` / ``XDSNonIdenticalSize`` (identical re-submission
   is accepted);
3. the slots ``repositoryUniqueId`` (ITI TF-3 4.2.3.2.18), ``hash`` and ``size`` are added to (or
   replace those of) each ExtrinsicObject;
4. the metadata is registered with ITI-42 — in-process with the node's own registry, the
   ``repo_document`` rows in the same database transaction, or with the remote registry of
   ``HIE_REGISTRY_URL`` (rows committed first and removed again when it refuses);
5. the response is the registry's ``rs:RegistryResponse`` (status and errors passed through).

When anything fails nothing stays stored: rows roll back (or are removed) and the blobs this
request created that no other row names are deleted.

Cost (in-process registry): the metadata is parsed and validated before the unit of work
begins; inside it, one statement reads the repository's rows for these uniqueIds, the registry
checks and writes (:func:`xds_registry.iti42.register`, no SAVEPOINT: a Failure rolls the whole
unit back) and one INSERT adds the rows — about a dozen statements for a one-document
submission, whatever its number of codes and authors.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from lxml import etree

from hie.blobs import BlobInfo
from hie.context import SERIOUS_FAILURE, Context
from hie.errors import STATUS_FAILURE, XDS, ErrorCollector, RegistryErrors, SoapFault
from hie.soap import Attachment, SoapRequest, SoapResponse
from xds_registry import iti42
from xds_registry import vocab as V
from xds_registry.messages import RegistryResponse
from xds_registry import client as registry_client
from xds_repository import store
from xds_repository.store import StoredDocument

log = logging.getLogger("xds_repository.iti41")

XDSB = "{%s}" % V.XDSB_NS
LCM = "{%s}" % V.LCM_NS
RIM = "{%s}" % V.RIM_NS
MAX_UNIQUE_ID = 256   # repo_document.document_unique_id
MAX_MIME_TYPE = 128   # repo_document.mime_type
REPO_META = XDS.RepositoryMetadataError


@dataclass
class _Doc:
    """One document of the request: its ExtrinsicObject, content and, once stored, blob."""

    entry_id: str
    extrinsic: etree._Element
    attachment: Attachment
    unique_id: str
    mime_type: str
    blob: BlobInfo | None = None
    existing: StoredDocument | None = None
    supplied_hash: list[str] | None = None   # the Document Source's own hash / size slots
    supplied_size: list[str] | None = None


# --------------------------------------------------------------------------------------------
# the handler
# --------------------------------------------------------------------------------------------

def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    """ITI-41: store, register, answer with the registry's RegistryResponse."""
    response = provide_and_register(ctx, req)
    if response.status == STATUS_FAILURE:
        ctx.fail(SERIOUS_FAILURE, "; ".join(f"{e.error_code}: {e.code_context}"
                                            for e in response.errors if e.is_error)[:4000])
    return SoapResponse(response.to_ebrim())


def provide_and_register(ctx: Context, req: SoapRequest) -> RegistryResponse:
    """Steps 1-5 of the module docstring.  Raises :class:`RegistryErrors` for the repository's
    own refusals (the transport answers them as a Failure RegistryResponse); returns the
    registry's response otherwise, Failure included."""
    _note_submission(ctx, req.body)
    sor, docs = parse_request(req)
    ctx.note(None, [d.unique_id for d in docs])
    written: list[tuple[BlobInfo, Attachment]] = []
    ok = False
    try:
        for doc in docs:
            doc.blob = store.put_blob(ctx.blobs, doc.attachment)
            written.append((doc.blob, doc.attachment))
        response = _register(ctx, sor, docs)
        ok = response.status != STATUS_FAILURE
        if ok:
            store.restore_missing(ctx.blobs, written)
        return response
    finally:
        ctx.object_ids[:] = list(dict.fromkeys(ctx.object_ids))  # the registry notes the SS too
        if not ok:
            store.discard_blobs(ctx.db, ctx.blobs, written)


# --------------------------------------------------------------------------------------------
# step 1: the request
# --------------------------------------------------------------------------------------------

def parse_request(req: SoapRequest) -> tuple[etree._Element, list[_Doc]]:
    """The SubmitObjectsRequest element and the documents paired with their ExtrinsicObjects."""
    root = req.body
    if root.tag != XDSB + "ProvideAndRegisterDocumentSetRequest":
        raise SoapFault.sender(f"ITI-41 expects xdsb:ProvideAndRegisterDocumentSetRequest, not "
                               f"{etree.QName(root).localname}")
    errors = ErrorCollector()
    sor = root.find(LCM + "SubmitObjectsRequest")
    if sor is None:
        raise RegistryErrors.one(REPO_META, "ProvideAndRegisterDocumentSetRequest has no "
                                 "lcm:SubmitObjectsRequest")

    contents: dict[str, Attachment] = {}
    for el in root.iterchildren(XDSB + "Document"):
        doc_id = (el.get("id") or "").strip()
        if not doc_id:
            errors.error(REPO_META, "xdsb:Document without an id attribute")
            continue
        if doc_id in contents:
            errors.error(REPO_META, f"two xdsb:Document elements with id {doc_id}", doc_id)
            continue
        contents[doc_id] = req.document(el)

    extrinsics = extrinsic_objects(sor)
    unique_ids = _unique_ids(sor)
    docs: list[_Doc] = []
    seen_uid: dict[str, str] = {}
    for eo_id, eo in extrinsics.items():
        if eo.get("objectType") == V.DE_ON_DEMAND:
            errors.error(REPO_META, f"ExtrinsicObject {eo_id} is an On-Demand DocumentEntry; "
                         "those are registered with ITI-61, not provided with ITI-41", eo_id)
            continue
        att = contents.get(eo_id)
        if att is None:
            errors.error(XDS.MissingDocument, f"ExtrinsicObject {eo_id} has no xdsb:Document "
                         "with this id", eo_id)
            continue
        uids = unique_ids.get(eo_id, [])
        if len(uids) != 1 or not uids[0]:
            errors.error(REPO_META, f"ExtrinsicObject {eo_id} needs exactly one "
                         "XDSDocumentEntry.uniqueId ExternalIdentifier", eo_id)
            continue
        uid = uids[0]
        if len(uid) > MAX_UNIQUE_ID:
            errors.error(REPO_META, f"XDSDocumentEntry.uniqueId of {eo_id} is longer than "
                         f"{MAX_UNIQUE_ID} characters", eo_id)
            continue
        if uid in seen_uid:
            errors.error(XDS.RepositoryDuplicateUniqueIdInMessage,
                         f"DocumentEntries {seen_uid[uid]} and {eo_id} have the same uniqueId "
                         f"{uid}", uid)
            continue
        seen_uid[uid] = eo_id
        mime = (eo.get("mimeType") or "").strip()
        if not mime or len(mime) > MAX_MIME_TYPE:
            errors.error(REPO_META, f"ExtrinsicObject {eo_id} needs a mimeType (at most "
                         f"{MAX_MIME_TYPE} characters)", eo_id)
            continue
        docs.append(_Doc(eo_id, eo, att, uid, mime))
    for doc_id in contents:
        if doc_id not in extrinsics:
            errors.error(XDS.MissingDocumentMetadata, f"xdsb:Document {doc_id} has no "
                         "ExtrinsicObject with this id", doc_id)
    errors.raise_if_errors()
    return sor, docs


def extrinsic_objects(sor: etree._Element) -> dict[str, etree._Element]:
    """The ExtrinsicObjects (DocumentEntries) of a SubmitObjectsRequest, by id."""
    out: dict[str, etree._Element] = {}
    rol = sor.find(RIM + "RegistryObjectList")
    if rol is None:
        return out
    for eo in rol.iterchildren(RIM + "ExtrinsicObject"):
        eo_id = eo.get("id") or ""
        if eo_id in out:
            raise RegistryErrors.one(REPO_META, f"two ExtrinsicObjects with id {eo_id}", eo_id)
        out[eo_id] = eo
    return out


def _external_ids(sor: etree._Element, scheme: str) -> dict[str, list[str]]:
    """ExternalIdentifier values of ``scheme`` by the object they identify (nested or top-level,
    ebRIM 3.0 §2.11)."""
    out: dict[str, list[str]] = {}
    rol = sor.find(RIM + "RegistryObjectList")
    if rol is None:
        return out
    for ei in rol.iter(RIM + "ExternalIdentifier"):
        if ei.get("identificationScheme") != scheme:
            continue
        parent = ei.getparent()
        owner = ei.get("registryObject") or (parent.get("id") if parent is not rol else None)
        if owner:
            out.setdefault(owner, []).append((ei.get("value") or "").strip())
    return out


def _unique_ids(sor: etree._Element) -> dict[str, list[str]]:
    return _external_ids(sor, V.DE_UNIQUE_ID)


def _note_submission(ctx: Context, root: etree._Element) -> None:
    """Tell the audit event the patient (the SubmissionSet's, else the first DocumentEntry's) and
    the SubmissionSet uniqueId — before validation, so refused submissions are attributed too."""
    sor = root.find(LCM + "SubmitObjectsRequest")
    if sor is None:
        return
    ss_pids = [v for vs in _external_ids(sor, V.SS_PATIENT_ID).values() for v in vs if v]
    de_pids = [v for vs in _external_ids(sor, V.DE_PATIENT_ID).values() for v in vs if v]
    ss_uids = [v for vs in _external_ids(sor, V.SS_UNIQUE_ID).values() for v in vs if v]
    ctx.note((ss_pids or de_pids or [None])[0], ss_uids[:1])


# --------------------------------------------------------------------------------------------
# steps 2-3: hash, size, repositoryUniqueId
# --------------------------------------------------------------------------------------------

def _annotate(ctx: Context, docs: list[_Doc]) -> None:
    """Step 3, keeping what the Document Source supplied for :func:`_check`."""
    repo_id = ctx.settings.repository_unique_id
    for d in docs:
        assert d.blob is not None
        d.supplied_hash = _slot_values(d.extrinsic, "hash")
        d.supplied_size = _slot_values(d.extrinsic, "size")
        set_slot(d.extrinsic, "repositoryUniqueId", repo_id)
        set_slot(d.extrinsic, "hash", d.blob.sha1)
        set_slot(d.extrinsic, "size", str(d.blob.size))


def _check(ctx: Context, conn, docs: list[_Doc]) -> None:
    """Step 2's errors: supplied hash / size slots against the bytes, and documents this
    repository already holds under the same uniqueId (read in the registration's unit of
    work)."""
    repo_id = ctx.settings.repository_unique_id
    errors = ErrorCollector()
    existing = store.find(conn, repo_id, [d.unique_id for d in docs])
    for d in docs:
        assert d.blob is not None
        supplied_hash, supplied_size = d.supplied_hash, d.supplied_size
        if supplied_hash and (len(supplied_hash) > 1
                              or supplied_hash[0].strip().lower() != d.blob.sha1):
            errors.error(REPO_META, f"DocumentEntry {d.unique_id}: hash slot "
                         f"{'/'.join(supplied_hash)} differs from the document's SHA-1 "
                         f"{d.blob.sha1}", d.unique_id)
        if supplied_size and (len(supplied_size) > 1
                              or _int(supplied_size[0]) != d.blob.size):
            errors.error(REPO_META, f"DocumentEntry {d.unique_id}: size slot "
                         f"{'/'.join(supplied_size)} differs from the document's size "
                         f"{d.blob.size}", d.unique_id)
        old = existing.get(d.unique_id)
        if old is not None:
            if old.sha1 != d.blob.sha1:
                errors.error(XDS.NonIdenticalHash, f"document {d.unique_id} is already stored in "
                             f"repository {repo_id} with another hash ({old.sha1})", d.unique_id)
            elif old.size != d.blob.size:
                errors.error(XDS.NonIdenticalSize, f"document {d.unique_id} is already stored "
                             f"in repository {repo_id} with another size ({old.size})",
                             d.unique_id)
            else:
                d.existing = old
    errors.raise_if_errors()


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _slot_values(obj: etree._Element, name: str) -> list[str]:
    for s in obj.iterchildren(RIM + "Slot"):
        if s.get("name") == name:
            return [(v.text or "") for v in s.iter(RIM + "Value")]
    return []


def set_slot(obj: etree._Element, name: str, value: str) -> None:
    """Give ``obj`` the single-valued slot ``name`` = ``value``, replacing any slot of that name.
    New slots go after the existing ones (rim:RegistryObjectType: Slot* comes first)."""
    slots = [s for s in obj.iterchildren(RIM + "Slot")]
    same = [s for s in slots if s.get("name") == name]
    for extra in same[1:]:
        obj.remove(extra)
    if same:
        slot = same[0]
        for child in list(slot):
            slot.remove(child)
    else:
        slot = etree.Element(RIM + "Slot", name=name)
        if slots:
            slots[-1].addnext(slot)
        else:
            obj.insert(0, slot)
    value_list = etree.SubElement(slot, RIM + "ValueList")
    etree.SubElement(value_list, RIM + "Value").text = value


# --------------------------------------------------------------------------------------------
# step 4: registration
# --------------------------------------------------------------------------------------------

def _rows(ctx: Context, docs: list[_Doc]) -> list[StoredDocument]:
    repo_id = ctx.settings.repository_unique_id
    rows: list[StoredDocument] = []
    for d in docs:
        if d.existing is None:
            assert d.blob is not None
            rows.append(StoredDocument(repo_id, d.unique_id, d.blob.key, d.blob.sha1,
                                       d.blob.size, d.mime_type))
    return rows


def _insert(conn, rows: list[StoredDocument], ctx: Context) -> None:
    try:
        store.insert_rows(conn, rows, ctx.now())
    except sa.exc.IntegrityError:
        raise RegistryErrors.one(XDS.RepositoryBusy, "another submission is storing one of these "
                                 "documents right now; submit again") from None


class _Refused(Exception):
    """Rolls the unit of work back when the in-process registry refuses the submission."""

    def __init__(self, response: RegistryResponse):
        super().__init__("registration refused")
        self.response = response


def _register(ctx: Context, sor: etree._Element, docs: list[_Doc]) -> RegistryResponse:
    _annotate(ctx, docs)
    url = ctx.settings.registry_url
    if url:
        return _register_remote(ctx, url, sor, docs)
    # parsing and validating the metadata needs no database: done before the write lock
    prepared = iti42.prepare(ctx, sor)
    try:
        with ctx.db.begin() as conn:
            _check(ctx, conn, docs)
            # the registry takes its write lock before its first registry statement
            # (xds_registry.store.lock_registry); the rows join the same unit of work, so both
            # are committed or neither is: any Failure rolls all of it back, hence no SAVEPOINT
            response = iti42.register(ctx, sor, conn=conn, prepared=prepared, nested=False)
            if response.status == STATUS_FAILURE:
                raise _Refused(response)
            _insert(conn, _rows(ctx, docs), ctx)
    except _Refused as refused:
        return refused.response
    return response


def _register_remote(ctx: Context, url: str, sor: etree._Element,
                     docs: list[_Doc]) -> RegistryResponse:
    repo_id = ctx.settings.repository_unique_id
    with ctx.db.begin() as conn:
        _check(ctx, conn, docs)
        rows = _rows(ctx, docs)
        _insert(conn, rows, ctx)
    response: RegistryResponse | None = None
    try:
        response = registry_client.register(url, sor)
        return response
    finally:
        if response is None or response.status == STATUS_FAILURE:
            with ctx.db.begin() as conn:
                store.delete_rows(conn, repo_id, [r.document_unique_id for r in rows])


__all__ = ["handle", "provide_and_register", "parse_request", "extrinsic_objects", "set_slot"]

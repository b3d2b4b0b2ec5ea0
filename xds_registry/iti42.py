"""ITI-42 Register Document Set-b, Document Registry side (ITI TF-2b 3.42.4.1.3 "Expected
Actions", 3.42.4.2 "Register Document Set-b Response").

:func:`handle` is the SOAP handler (``lcm:SubmitObjectsRequest`` in, ``rs:RegistryResponse``
out); :func:`register` is the same for the Document Repository in-process (ITI-41 forwards its
metadata here) and optionally joins the caller's unit of work.

Steps: parse (ebRIM → models), validate the metadata (:mod:`xds_registry.validation`), replace
symbolic ids (:func:`prepare`, no database), then in one unit of work: the patient is known to
the patient index, and under the registry write lock: check against the registry (uniqueIds,
references, document relationships — one statement, :func:`prefetch`), store every object
Approved (one INSERT per table), deprecate replaced documents (and their addenda/
transformations), link replacements into the folders of the originals and keep
Folder.lastUpdateTime.  Any error leaves the registry untouched and is answered as status
Failure with a RegistryErrorList.

Decisions on points the TF leaves open:

- A DocumentEntry whose uniqueId is already registered with the same hash and size and for the
  same patient is accepted as a further DocumentEntry (re-submission of the same document, NIST
  test 12004 "Document Resubmission"); a different hash is XDSNonIdenticalHash, a different size
  XDSNonIdenticalSize, a different patient XDSPatientIdDoesNotMatch.
- RPLC, XFRM_RPLC, APND and XFRM on a target that is not Approved: XDSRegistryDeprecatedDocument
  Error.  Replacing deprecates the original and the Approved documents that append to or transform
  it (CP 117, NIST test 12022).
- A UUID entryUUID that is already registered: XDSRegistryMetadataError.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Iterator

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Connection

from hie.context import MAJOR_FAILURE, SERIOUS_FAILURE, Context
from hie.errors import XDS, ErrorCollector, RegistryError, RegistryErrors
from hie.soap import SoapRequest, SoapResponse
from xds_registry import forward, store
from xds_registry import vocab as V
from xds_registry.ebrim import new_id
from xds_registry.messages import RegistryResponse, SubmitObjects, parse_submit_objects
from xds_registry.model import Association, DocumentEntry
from xds_registry.store import APPROVED, DEPRECATED, Existing
from xds_registry.validation import resolve_ids, validate_register

log = logging.getLogger("hie.xds_registry")
META = XDS.RegistryMetadataError
# relationships whose target must be Approved (ITI TF-2b 3.42.4.1.3.5)
NEEDS_APPROVED_TARGET = frozenset({V.RPLC, V.XFRM_RPLC, V.APND, V.XFRM})


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    """SOAP handler for urn:ihe:iti:2007:RegisterDocumentSet-b."""
    return SoapResponse(register(ctx, req.body).to_ebrim())


@dataclass
class Prepared:
    """A SubmitObjectsRequest parsed, validated and with its symbolic ids replaced; when valid,
    also the rows of its objects (all but their registration numbers), so that the work under
    the registry lock is the checks and the INSERTs."""

    so: SubmitObjects
    errors: ErrorCollector
    rows: store.Rows | None = None
    now: dt.datetime | None = None


def prepare(ctx: Context, request: etree._Element) -> Prepared:
    """The steps of :func:`register` that need no database (parse, validate, resolve ids), so a
    caller can run them before its unit of work takes the write lock."""
    errors = ErrorCollector()
    so = parse_submit_objects(request, errors)
    if not errors.has_errors:
        validate_register(so, errors)
        resolve_ids(so, errors)
    ss = so.submission_set
    if ss is not None and ss.patient_id:
        ctx.note(ss.patient_id, [ss.unique_id] if ss.unique_id else [])
    prepared = Prepared(so, errors)
    if not errors.has_errors:
        prepared.rows, prepared.now = build_rows(so)
    return prepared


def register(ctx: Context, request: etree._Element | None,
             conn: Connection | None = None, *, prepared: Prepared | None = None,
             nested: bool = True) -> RegistryResponse:
    """Register the metadata of ``request`` (an ``lcm:SubmitObjectsRequest``), or of the
    ``prepared`` result of :func:`prepare`.

    With ``conn`` the work joins the caller's unit of work, inside a SAVEPOINT so a failure leaves
    the caller's other writes alone — unless ``nested=False``, for a caller that rolls its whole
    unit of work back whenever the response is a Failure; otherwise it runs in its own
    ``ctx.db.begin()``."""
    if prepared is None:
        assert request is not None
        prepared = prepare(ctx, request)
    so, errors = prepared.so, prepared.errors
    if errors.has_errors:
        return failure(ctx, errors.errors)
    try:
        with unit_of_work(ctx, conn, nested) as c:
            # the patient index is not guarded by the registry lock: asked before taking it,
            # which keeps a round trip out of the serialized part
            assert so.submission_set is not None
            check_patient(ctx, c, so.submission_set.patient_id, errors)
            store.lock_for_register(c, lock_names(so))
            plan = check_register(ctx, c, so, errors)
            errors.raise_if_errors()
            write_register(c, so, plan, prepared.rows, prepared.now)
            forward.enqueue(ctx, c, so)
    except RegistryErrors as e:
        return failure(ctx, e.errors)
    except sa.exc.SQLAlchemyError:
        return database_failure(ctx)
    ctx.extra["entry_uuids"] = [o.id for o in so.entries()]
    return RegistryResponse.from_errors(errors.errors)


def database_failure(ctx: Context) -> RegistryResponse:
    """The answer when the registry's database fails mid-transaction: logged with its
    traceback here, XDSRegistryError to the peer (its unit of work has rolled back)."""
    log.exception("%s: registry database error", ctx.transaction.id)
    ctx.fail(MAJOR_FAILURE, "registry database error")
    return RegistryResponse.from_errors([RegistryError(XDS.RegistryError,
                                                       "registry database error")])


def failure(ctx: Context, errors) -> RegistryResponse:
    resp = RegistryResponse.from_errors(list(errors))
    if not resp.ok:
        ctx.fail(SERIOUS_FAILURE, "; ".join(f"{e.error_code}: {e.code_context}"
                                            for e in resp.errors if e.is_error)[:1000])
    return resp


@contextlib.contextmanager
def unit_of_work(ctx: Context, conn: Connection | None, nested: bool = True
                 ) -> Iterator[Connection]:
    if conn is None:
        with ctx.db.begin() as c:
            yield c
    elif nested:
        with conn.begin_nested():
            yield conn
    else:
        yield conn


# --------------------------------------------------------------------------------------------
# checks against the registry
# --------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What the write step does besides inserting the submitted objects."""

    deprecate: list[str] = field(default_factory=list)
    extra_associations: list[Association] = field(default_factory=list)
    touched_folders: list[str] = field(default_factory=list)
    existing: dict[str, Existing] = field(default_factory=dict)


def check_patient(ctx: Context, conn: Connection, patient_id: str | None,
                  errors: ErrorCollector) -> None:
    """XDSUnknownPatientId unless the patient index knows ``patient_id`` (ITI TF-2b
    3.42.4.1.3.2), when ``settings.validate_patient_id`` is on."""
    if not patient_id or not getattr(ctx.settings, "validate_patient_id", True):
        return
    from pix_pdq.index import is_known  # the patient index (another actor) answers
    if not is_known(conn, patient_id, domain=ctx.settings.affinity_domain or None):
        errors.error(XDS.UnknownPatientId, f"patient {patient_id} is not known to the registry's "
                     "patient identity source (affinity domain)", patient_id)


def check_new_ids(conn: Connection, so: SubmitObjects, errors: ErrorCollector,
                  found: store.Lookup | None = None) -> None:
    """(``found``: the objects already read by :func:`prefetch`.)"""
    own = [o.id for o in so.entries()]
    if found is None:
        taken = store.load(conn, own)
    else:
        taken = {i: found.by_id[i] for i in dict.fromkeys(own) if i in found.by_id}
    for oid, ex in taken.items():
        errors.error(META, f"entryUUID {oid} is already registered (as {ex.kind})", oid)


def check_unique_ids(conn: Connection, so: SubmitObjects, errors: ErrorCollector,
                     found: store.Lookup | None = None) -> None:
    """ITI TF-2b 3.42.4.1.3.4 / 3.42.4.1.3.6: SubmissionSet and Folder uniqueIds are new;
    a DocumentEntry uniqueId is new or names the same document (hash, size) of the same patient."""
    for kind, objs in (("SubmissionSet", so.submission_sets), ("Folder", so.folders)):
        if found is None:
            packages = store.package_unique_ids(conn, kind, [o.unique_id for o in objs])
        else:
            packages = found.submission_sets if kind == "SubmissionSet" else found.folders
        for o in objs:
            if o.unique_id in packages:
                errors.error(XDS.DuplicateUniqueIdInRegistry,
                             f"{kind} uniqueId {o.unique_id} is already registered", o.id)
    found_docs = (store.documents_by_unique_id(conn, [d.unique_id for d in so.documents])
                  if found is None else found.documents)
    for d in so.documents:
        for ex in found_docs.get(d.unique_id, []):
            check_same_document(d, ex, errors)


def check_same_document(d: DocumentEntry, ex: Existing, errors: ErrorCollector) -> bool:
    """Is ``d`` the same document as the registered ``ex`` (same uniqueId)?"""
    if d.hash is None or ex.hash is None:
        errors.error(XDS.DuplicateUniqueIdInRegistry,
                     f"DocumentEntry uniqueId {d.unique_id} is already registered", d.id)
        return False
    if d.hash.lower() != ex.hash.lower():
        errors.error(XDS.NonIdenticalHash, f"DocumentEntry uniqueId {d.unique_id} is already "
                     f"registered with a different hash ({ex.hash})", d.id)
        return False
    if d.size is not None and ex.size is not None and d.size != ex.size:
        errors.error(XDS.NonIdenticalSize, f"DocumentEntry uniqueId {d.unique_id} is already "
                     f"registered with a different size ({ex.size})", d.id)
        return False
    if ex.patient_id != d.patient_id:
        errors.error(XDS.PatientIdDoesNotMatch, f"DocumentEntry uniqueId {d.unique_id} is "
                     f"already registered for another patient", d.id)
        return False
    return True


def referenced(so: SubmitObjects) -> set[str]:
    """Ids the submission's associations reference without defining them.  (rim:ObjectRefs by
    themselves are only declarations — submitters also list classification schemes there — so
    only association ends must resolve.)"""
    own = set(so.by_id())
    refs: set[str] = set()
    for a in so.associations:
        refs.update((a.source, a.target))
    return refs - own


def check_references(conn: Connection, so: SubmitObjects, errors: ErrorCollector,
                     found: store.Lookup | None = None) -> dict[str, Existing]:
    ext = referenced(so)
    if found is None:
        known = store.load(conn, ext)
    else:
        known = {i: found.by_id[i] for i in ext if i in found.by_id}
    for missing in sorted(ext - set(known)):
        errors.error(XDS.UnresolvedReferenceException,
                     f"{missing} is neither in the submission nor in the registry", missing)
    return known


def lock_names(so: SubmitObjects) -> list[str]:
    """What a registration claims or touches (``store.lock_for_register``): its entryUUIDs, its
    uniqueIds and the registered objects its associations reference."""
    names = [f"id:{o.id}" for o in so.entries()]
    names += [f"id:{i}" for i in referenced(so)]
    names += [f"uid:{o.unique_id}" for o in (*so.documents, *so.submission_sets, *so.folders)
              if o.unique_id]
    return names


def prefetch(conn: Connection, so: SubmitObjects) -> store.Lookup:
    """Everything :func:`check_new_ids`, :func:`check_unique_ids` and :func:`check_references`
    read from the registry, in one statement."""
    return store.lookup(conn, ids=[*(o.id for o in so.entries()), *referenced(so)],
                        document_uids=[d.unique_id for d in so.documents],
                        submission_set_uids=[o.unique_id for o in so.submission_sets],
                        folder_uids=[o.unique_id for o in so.folders])


def check_register(ctx: Context, conn: Connection, so: SubmitObjects,
                   errors: ErrorCollector) -> Plan:
    """The checks against the registry, under its write lock (the patient is checked before)."""
    found = prefetch(conn, so)
    check_new_ids(conn, so, errors, found)
    check_unique_ids(conn, so, errors, found)
    plan = Plan(existing=check_references(conn, so, errors, found))
    check_associations(conn, so, plan, errors)
    return plan


def _kind_patient(so_objs: dict, existing: dict[str, Existing], oid: str
                  ) -> tuple[str | None, str | None, str | None]:
    """(kind, patient id, status short) of ``oid`` in the submission or the registry."""
    o = so_objs.get(oid)
    if o is not None:
        return o.KIND, getattr(o, "patient_id", None), APPROVED
    ex = existing.get(oid)
    if ex is not None:
        return ex.kind, ex.patient_id, ex.status
    return None, None, None


def check_associations(conn: Connection, so: SubmitObjects, plan: Plan,
                       errors: ErrorCollector) -> None:
    """HasMember and document-relationship rules that need the registry (ITI TF-2b
    3.42.4.1.3.5, ITI TF-3 4.2.2)."""
    ss = so.submission_set
    assert ss is not None
    objs = so.by_id()
    ex = plan.existing
    replaced: dict[str, str] = {}
    for a in so.associations:
        skind, spat, _ = _kind_patient(objs, ex, a.source)
        tkind, tpat, tstatus = _kind_patient(objs, ex, a.target)
        if skind is None or tkind is None:
            continue  # already reported as unresolved
        if a.type == V.HAS_MEMBER:
            if a.source == ss.id:
                if tkind in ("DocumentEntry", "Folder") and tpat != ss.patient_id:
                    errors.error(XDS.PatientIdDoesNotMatch, f"Association {a.id}: {tkind} "
                                 f"{a.target} belongs to patient {tpat}, the SubmissionSet to "
                                 f"{ss.patient_id}", a.id)
            elif skind == "Folder":
                if tkind != "DocumentEntry":
                    errors.error(META, f"Association {a.id}: a Folder's members are "
                                 f"DocumentEntries, not {tkind}", a.id)
                elif spat != tpat:
                    errors.error(XDS.PatientIdDoesNotMatch, f"Association {a.id}: Folder "
                                 f"{a.source} ({spat}) and DocumentEntry {a.target} ({tpat}) "
                                 "belong to different patients", a.id)
                elif a.source in ex and ex[a.source].status != APPROVED:
                    errors.error(META, f"Association {a.id}: Folder {a.source} is "
                                 f"{ex[a.source].status}", a.id)
                if a.source in ex:
                    plan.touched_folders.append(a.source)
            else:
                errors.error(META, f"Association {a.id}: HasMember source must be the "
                             f"SubmissionSet or a Folder, not {skind} {a.source}", a.id)
        elif a.type in V.RELATIONSHIPS:
            if tkind != "DocumentEntry":
                errors.error(META, f"Association {a.id}: the target of {a.type_short} must be a "
                             f"DocumentEntry, not {tkind}", a.id)
                continue
            if a.target in objs and a.type != V.SIGNS:
                errors.error(META, f"Association {a.id}: the target of {a.type_short} must be a "
                             "registered DocumentEntry, not one of this submission", a.id)
                continue
            if spat != tpat:
                errors.error(XDS.PatientIdDoesNotMatch, f"Association {a.id}: {a.type_short} "
                             f"source ({spat}) and target ({tpat}) belong to different "
                             "patients", a.id)
            if a.type in NEEDS_APPROVED_TARGET and tstatus != APPROVED:
                errors.error(XDS.RegistryDeprecatedDocumentError, f"Association {a.id}: "
                             f"{a.type_short} target {a.target} is {tstatus}", a.id)
            if a.type in V.REPLACING:
                if a.target in replaced:
                    errors.error(META, f"DocumentEntry {a.target} is replaced twice in one "
                                 "submission", a.id)
                replaced[a.target] = a.source
    if not errors.has_errors and replaced:
        plan_replacements(conn, ss.id, replaced, plan)


def plan_replacements(conn: Connection, ss_id: str, replaced: dict[str, str], plan: Plan) -> None:
    """Deprecate each replaced original and its Approved addenda/transformations; link each
    replacement into the folders of its original (ITI TF-2b 3.42.4.1.3.5, NIST 12022/12327)."""
    originals = list(replaced)
    plan.deprecate.extend(originals)
    for a in store.associations_of(conn, originals, as_source=False,
                                   types=["APND", "XFRM"]):
        plan.deprecate.append(a.source)
    for a in store.associations_of(conn, originals, as_source=False, types=["HasMember"]):
        folder = store.load(conn, [a.source]).get(a.source)
        if folder is None or folder.kind != "Folder" or folder.status != APPROVED:
            continue
        member = Association(new_id(), type=V.HAS_MEMBER, source=a.source,
                             target=replaced[a.target])
        plan.extra_associations.append(member)
        plan.extra_associations.append(Association(new_id(), type=V.HAS_MEMBER, source=ss_id,
                                                   target=member.id))
        plan.touched_folders.append(a.source)
    still_approved = store.load(conn, plan.deprecate)
    plan.deprecate = [i for i in dict.fromkeys(plan.deprecate)
                      if i in still_approved and still_approved[i].status == APPROVED]


# --------------------------------------------------------------------------------------------
# write
# --------------------------------------------------------------------------------------------

def build_rows(so: SubmitObjects) -> tuple[store.Rows, dt.datetime]:
    """The rows of the submitted objects, all Approved, as of now (which also becomes the new
    Folders' lastUpdateTime, ITI TF-3 4.2.3.4.3: set by the registry); numbered later."""
    now = store.now_utc()
    when = now.strftime("%Y%m%d%H%M%S")
    for fd in so.folders:
        fd.last_update_time = when
    rows = store.Rows()
    for entry in so.entries():
        rows.add(entry, seq=None, status=APPROVED, created_at=now)
    return rows, now


def write_register(conn: Connection, so: SubmitObjects, plan: Plan,
                   rows: store.Rows | None = None, now: dt.datetime | None = None) -> None:
    """Store the submission: ``rows`` / ``now`` from :func:`build_rows` (built before the lock by
    :func:`prepare`), else built here; plus the plan's extra associations, deprecations and
    Folder updates."""
    if rows is None or now is None:
        rows, now = build_rows(so)
    when = now.strftime("%Y%m%d%H%M%S")
    for extra in plan.extra_associations:
        rows.add(extra, seq=None, status=APPROVED, created_at=now)
    rows.number(store.next_seqs(conn, rows.count()))
    rows.write(conn)
    if plan.deprecate:
        store.set_status(conn, plan.deprecate, DEPRECATED)
    store.touch_folders(conn, [f for f in plan.touched_folders
                               if f not in {fd.id for fd in so.folders}], when)

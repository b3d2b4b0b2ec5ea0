"""ITI-57 Update Document Set, Document Registry side (ITI TF-2b 3.57.4.1.3 "Expected Actions";
the XDS Metadata Update option, ITI TF-1 10.2.5).

One SubmitObjectsRequest carries a SubmissionSet and operations, each recognised by its trigger
(ITI TF-2b 3.57.4.1.3.3):

- **Update DocumentEntry / Folder metadata**: a new version (new entryUUID, ``lid`` = the
  logicalID of the registered object) that is a SubmissionSet HasMember target carrying the
  ``PreviousVersion`` slot (DocumentEntries also SubmissionSetStatus=Original).  It becomes
  version N+1 with the status of the version it replaces, which is Deprecated.  With
  ``AssociationPropagation`` yes (the default) the associations of the previous version (folder
  memberships, document relationships) are copied to the new one (3.57.4.1.3.3.1.x);
- **Update availabilityStatus**: an UpdateAvailabilityStatus association from the SubmissionSet to
  a DocumentEntry, Folder or Association, with OriginalStatus and NewStatus slots;
- **Submit Association**: a SubmitAssociation association from the SubmissionSet to a new
  association of the submission (e.g. Folder HasMember DocumentEntry, APND).

Errors: XDSMetadataVersionError (PreviousVersion is not the latest version, unknown logicalID,
status update of an older version), XDSMetadataUpdateError (an object that belongs to no
operation, malformed operation slots, changing uniqueId/objectType, two operations on
one logical object, OriginalStatus not the current status, associating deprecated objects),
XDSPatientIDReconciliationError (a patient ID change of an object that is a Folder member, has
members or document relationships, 3.57.4.1.3.3.1.7 / 3.57.4.1.3.3.3.7).  The whole transaction is
applied or nothing (one unit of work under the registry write lock).

Decision: a new version of a Deprecated latest version stays Deprecated (the status is carried
over); of an Approved one, it is Approved (NIST tests 12319, 20004).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Connection

from hie import hl7types as T
from hie.context import Context
from hie.errors import XDS, ErrorCollector, RegistryErrors
from hie.soap import SoapRequest, SoapResponse
from xds_registry import store
from xds_registry import vocab as V
from xds_registry.ebrim import deserialize, new_id
from xds_registry.iti42 import (check_new_ids, check_patient, check_references,
                                database_failure, failure, unit_of_work)
from xds_registry.messages import RegistryResponse, SubmitObjects, parse_submit_objects
from xds_registry.model import Association, DocumentEntry, Folder
from xds_registry.store import APPROVED, DEPRECATED, Existing
from xds_registry.validation import resolve_ids, validate_objects

log = logging.getLogger("hie.xds_registry")
UPD = XDS.MetadataUpdateError
VER = XDS.MetadataVersionError
ALL_TYPES = frozenset(V.ASSOCIATION_TYPES)
NOT_PROPAGATED = {"UpdateAvailabilityStatus", "SubmitAssociation"}


@dataclass
class VersionOp:
    entry: DocumentEntry | Folder
    member: Association
    previous_version: int
    propagate: bool
    previous: Existing | None = None
    new_status: str = APPROVED


@dataclass
class StatusOp:
    assoc: Association
    original: str
    new: str


@dataclass
class AddOp:
    submit: Association     # SubmissionSet --SubmitAssociation--> assoc
    assoc: Association


@dataclass
class Operations:
    versions: list[VersionOp] = field(default_factory=list)
    statuses: list[StatusOp] = field(default_factory=list)
    adds: list[AddOp] = field(default_factory=list)
    touched_folders: list[str] = field(default_factory=list)


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    """SOAP handler for urn:ihe:iti:2010:UpdateDocumentSet."""
    return SoapResponse(update(ctx, req.body).to_ebrim())


def update(ctx: Context, request: etree._Element,
           conn: Connection | None = None) -> RegistryResponse:
    errors = ErrorCollector()
    so = parse_submit_objects(request, errors)
    ops = Operations()
    if not errors.has_errors:
        validate_objects(so, errors, ALL_TYPES)
        if so.submission_set is not None:
            ops = plan_operations(so, errors)
        resolve_ids(so, errors)
    ss = so.submission_set
    if ss is not None and ss.patient_id:
        ctx.note(ss.patient_id, [ss.unique_id] if ss.unique_id else [])
    if errors.has_errors:
        return failure(ctx, errors.errors)
    try:
        with unit_of_work(ctx, conn) as c:
            store.lock_registry(c)
            check_patient(ctx, c, ss.patient_id, errors)
            check_new_ids(c, so, errors)
            if store.package_unique_ids(c, "SubmissionSet", [ss.unique_id]):
                errors.error(XDS.DuplicateUniqueIdInRegistry,
                             f"SubmissionSet uniqueId {ss.unique_id} is already registered", ss.id)
            existing = check_references(c, so, errors)
            check_operations(c, so, ops, existing, errors)
            errors.raise_if_errors()
            apply(c, so, ops)
    except RegistryErrors as e:
        return failure(ctx, e.errors)
    except sa.exc.SQLAlchemyError:
        return database_failure(ctx)
    ctx.extra["entry_uuids"] = [o.id for o in so.entries()]
    return RegistryResponse.from_errors(errors.errors)


# --------------------------------------------------------------------------------------------
# recognising the operations (message only)
# --------------------------------------------------------------------------------------------

def _status_slot(a: Association, name: str, errors: ErrorCollector) -> str | None:
    vals = a.slot_values(name)
    if vals is None or len(vals) != 1:
        errors.error(UPD, f"Association {a.id}: UpdateAvailabilityStatus needs exactly one "
                     f"{name} value", a.id)
        return None
    short = V.STATUS_SHORT.get(vals[0])
    if short is None:
        errors.error(UPD, f"Association {a.id}: {name} {vals[0]!r} is not an ebRIM status URN",
                     a.id)
    return short


def plan_operations(so: SubmitObjects, errors: ErrorCollector) -> Operations:
    ss = so.submission_set
    assert ss is not None
    ops = Operations()
    entries = {o.id: o for o in [*so.documents, *so.folders]}
    assocs = {a.id: a for a in so.associations}
    accounted: set[str] = set()
    for a in so.associations:
        if a.type == V.HAS_MEMBER and a.source == ss.id and a.target in entries:
            accounted.add(a.id)
            op = _version_op(entries[a.target], a, errors)
            if op is not None:
                ops.versions.append(op)
        elif a.type == V.UPDATE_AVAILABILITY_STATUS:
            accounted.add(a.id)
            if a.source != ss.id:
                errors.error(UPD, f"Association {a.id}: the source of UpdateAvailabilityStatus "
                             "is the SubmissionSet", a.id)
            orig, new = (_status_slot(a, V.SLOT_ORIGINAL_STATUS, errors),
                         _status_slot(a, V.SLOT_NEW_STATUS, errors))
            if new is not None and new not in (APPROVED, DEPRECATED):
                errors.error(UPD, f"Association {a.id}: NewStatus must be Approved or "
                             "Deprecated", a.id)
            elif orig and new:
                ops.statuses.append(StatusOp(a, orig, new))
        elif a.type in (V.SUBMIT_ASSOCIATION, V.HAS_MEMBER) and a.source == ss.id \
                and a.target in assocs:
            accounted.update((a.id, a.target))
            target = assocs[a.target]
            if target.type in (V.UPDATE_AVAILABILITY_STATUS, V.SUBMIT_ASSOCIATION) or \
                    ss.id in (target.source, target.target):
                errors.error(UPD, f"Association {target.id} cannot be submitted as a new "
                             "association", target.id)
            else:
                ops.adds.append(AddOp(a, target))
        elif a.type == V.SUBMIT_ASSOCIATION:
            accounted.add(a.id)
            errors.error(UPD, f"Association {a.id}: SubmitAssociation goes from the "
                         "SubmissionSet to a new association of the submission", a.id)
    for o in entries.values():
        if not any(op.entry is o for op in ops.versions) and \
                not any(a.target == o.id and a.source == ss.id for a in so.associations):
            errors.error(UPD, f"{o.KIND} {o.id} belongs to no update operation (a first "
                         "version is submitted with ITI-42, not ITI-57)", o.id)
    for a in so.associations:
        if a.id not in accounted:
            errors.error(UPD, f"Association {a.id} ({a.type_short or a.type}) belongs to no "
                         "update operation", a.id)
    lids: set[str] = set()
    for op in ops.versions:
        if op.entry.lid in lids:
            errors.error(UPD, f"logicalID {op.entry.lid} is updated twice in one submission",
                         op.entry.id)
        lids.add(op.entry.lid or "")
    propagated = {op.entry.id for op in ops.versions if op.propagate}
    for add in ops.adds:
        if add.assoc.source in propagated or add.assoc.target in propagated:
            errors.error(UPD, f"Association {add.assoc.id} is submitted for an object updated "
                         "with AssociationPropagation in the same submission", add.assoc.id)
    return ops


def _version_op(entry: DocumentEntry | Folder, member: Association,
                errors: ErrorCollector) -> VersionOp | None:
    ok = True
    pv = member.previous_version
    if pv is None:
        errors.error(UPD, f"{entry.KIND} {entry.id} has no PreviousVersion slot on its "
                     "SubmissionSet HasMember: ITI-57 updates registered objects (a first "
                     "version is submitted with ITI-42)", entry.id)
        return None
    if len(member.slot_values(V.SLOT_PREVIOUS_VERSION) or ()) != 1 or not pv.isdigit() \
            or int(pv) < 1:
        errors.error(UPD, f"Association {member.id}: PreviousVersion must be one positive "
                     f"integer, not {pv!r}", member.id)
        ok = False
    if isinstance(entry, DocumentEntry) and member.ss_status != "Original":
        errors.error(UPD, f"Association {member.id}: SubmissionSetStatus must be Original for a "
                     "new DocumentEntry version", member.id)
        ok = False
    prop = member.slot_values(V.SLOT_ASSOCIATION_PROPAGATION)
    if prop is not None and (len(prop) != 1 or prop[0] not in ("yes", "no")):
        errors.error(UPD, f"Association {member.id}: AssociationPropagation must be 'yes' or "
                     "'no'", member.id)
        ok = False
    if not entry.lid or not T.is_uuid_urn(entry.lid) or entry.lid == entry.id:
        errors.error(UPD, f"{entry.KIND} {entry.id}: a new version carries the logicalID (lid) "
                     "of the registered object", entry.id)
        ok = False
    if not ok:
        return None
    return VersionOp(entry, member, int(pv), prop is None or prop[0] == "yes")


# --------------------------------------------------------------------------------------------
# checks against the registry
# --------------------------------------------------------------------------------------------

def check_operations(conn: Connection, so: SubmitObjects, ops: Operations,
                     existing: dict[str, Existing], errors: ErrorCollector) -> None:
    status: dict[str, str] = {}       # objects of this submission: their status once applied
    kinds: dict[str, tuple[str, str | None]] = {}  # id -> (kind, patient)
    updated_lids: set[str] = set()
    vers = store.versions(conn, [op.entry.lid for op in ops.versions if op.entry.lid])
    for op in ops.versions:
        _check_version(conn, op, vers.get(op.entry.lid or "", []), errors)
        updated_lids.add(op.entry.lid or "")
        status[op.entry.id] = op.new_status
        kinds[op.entry.id] = (op.entry.KIND, op.entry.patient_id)
    for add in ops.adds:
        _check_add(add.assoc, kinds, existing, errors, ops)
        _check_not_registered(conn, add.assoc, errors)
        status[add.assoc.id] = APPROVED
        kinds[add.assoc.id] = ("Association", None)
    for st in ops.statuses:
        target = st.assoc.target
        if target in status:
            current = status[target]
        elif target in existing:
            ex = existing[target]
            if ex.kind == "SubmissionSet":
                errors.error(UPD, f"Association {st.assoc.id}: the availabilityStatus of a "
                             "SubmissionSet cannot be updated", st.assoc.id)
                continue
            if ex.kind in ("DocumentEntry", "Folder"):
                latest = store.versions(conn, [ex.lid]).get(ex.lid, [])
                if (latest and latest[-1].id != ex.id) or ex.lid in updated_lids:
                    errors.error(VER, f"Association {st.assoc.id}: {target} is not the latest "
                                 f"version of {ex.lid}", st.assoc.id)
                    continue
            current = ex.status
        else:
            errors.error(UPD, f"Association {st.assoc.id}: {target} cannot have its status "
                         "updated", st.assoc.id)
            continue
        if current != st.original:
            errors.error(UPD, f"Association {st.assoc.id}: OriginalStatus {st.original} is not "
                         f"the current status ({current}) of {target}", st.assoc.id)
        status[target] = st.new


def _check_version(conn: Connection, op: VersionOp, versions: list[Existing],
                   errors: ErrorCollector) -> None:
    e = op.entry
    if not versions or versions[-1].kind != e.KIND:
        errors.error(VER, f"{e.KIND} {e.id}: no registered {e.KIND} has logicalID {e.lid}", e.id)
        return
    latest = versions[-1]
    if latest.version != op.previous_version:
        errors.error(VER, f"{e.KIND} {e.id}: PreviousVersion {op.previous_version} is not the "
                     f"latest version ({latest.version}) of {e.lid}", e.id)
        return
    op.previous = latest
    op.new_status = DEPRECATED if latest.status == DEPRECATED else APPROVED
    if e.unique_id != latest.unique_id:
        errors.error(UPD, f"{e.KIND} {e.id}: uniqueId cannot change ({latest.unique_id} -> "
                     f"{e.unique_id})", e.id)
    if isinstance(e, DocumentEntry):
        xml = store.load_xml(conn, latest.id)
        prev = DocumentEntry.from_ebrim(deserialize(xml)) if xml else None
        if prev is not None:
            if prev.object_type != e.object_type:
                errors.error(UPD, f"DocumentEntry {e.id}: objectType cannot change", e.id)
            # hash and size may change: no rule of 3.57.4.1.3.3.1 keeps them (NIST 15800,
            # 15801/hash update them and expect Success)
    if e.patient_id != latest.patient_id:
        _check_patient_change(conn, e, latest, errors)


def _check_patient_change(conn: Connection, e, latest: Existing,
                          errors: ErrorCollector) -> None:
    """A patient ID change is allowed only for an unconnected object (ITI TF-2b
    3.57.4.1.3.3.1.7 for DocumentEntries, 3.57.4.1.3.3.3.7 for Folders)."""
    links = store.associations_of(conn, [latest.id])
    ends = store.load(conn, [x for a in links for x in (a.source, a.target)])
    for a in links:
        other = a.target if a.source == latest.id else a.source
        kind = ends[other].kind if other in ends else None
        if a.type == "HasMember" and kind == "SubmissionSet":
            continue
        if a.type in ("UpdateAvailabilityStatus", "SubmitAssociation"):
            continue
        errors.error(XDS.PatientIDReconciliationError,
                     f"{e.KIND} {e.id}: the patient ID of {latest.lid} cannot change while it is "
                     f"connected to {kind} {other} ({a.type})", e.id)
        return


def _check_not_registered(conn: Connection, a: Association, errors: ErrorCollector) -> None:
    """A submitted association is new: one of the same type between the same objects that is
    registered and Approved is not submitted again (3.57.4.1.3.3.3; NIST test 20008 submits
    an existing Folder HasMember DocumentEntry again)."""
    for ex in store.associations_of(conn, [a.source], as_target=False, types=[a.type_short]):
        if ex.target == a.target:
            errors.error(UPD, f"Association {a.id}: {a.type_short} {a.source} -> {a.target} is "
                         f"already registered (Association {ex.id})", a.id)
            return


def _check_add(a: Association, kinds: dict, existing: dict[str, Existing],
               errors: ErrorCollector, ops: Operations) -> None:
    def end(i: str):
        if i in kinds:
            return kinds[i][0], kinds[i][1], APPROVED
        ex = existing.get(i)
        return (ex.kind, ex.patient_id, ex.status) if ex else (None, None, None)
    sk, sp, ss_ = end(a.source)
    tk, tp, ts = end(a.target)
    if sk is None or tk is None:
        return  # reported as unresolved
    if ss_ != APPROVED or ts != APPROVED:
        errors.error(UPD, f"Association {a.id}: source and target must be Approved "
                     f"({a.source}: {ss_}, {a.target}: {ts})", a.id)
    if a.type == V.HAS_MEMBER:
        if sk != "Folder" or tk != "DocumentEntry":
            errors.error(UPD, f"Association {a.id}: a submitted HasMember links a Folder to a "
                         f"DocumentEntry, not {sk} to {tk}", a.id)
        else:
            ops.touched_folders.append(a.source)
    elif a.type in V.RELATIONSHIPS and (sk != "DocumentEntry" or tk != "DocumentEntry"):
        errors.error(UPD, f"Association {a.id}: {a.type_short} links two DocumentEntries", a.id)
    if sp and tp and sp != tp:
        errors.error(XDS.PatientIdDoesNotMatch, f"Association {a.id}: {a.source} and {a.target} "
                     "belong to different patients", a.id)


# --------------------------------------------------------------------------------------------
# apply
# --------------------------------------------------------------------------------------------

def apply(conn: Connection, so: SubmitObjects, ops: Operations) -> None:
    now = store.now_utc()
    when = now.strftime("%Y%m%d%H%M%S")
    ss = so.submission_set
    assert ss is not None

    def put(entry, **kw):
        store.insert(conn, entry, seq=store.next_seq(conn), created_at=now, **kw)

    put(ss)
    touched = list(ops.touched_folders)
    for op in ops.versions:
        prev = op.previous
        assert prev is not None
        if isinstance(op.entry, Folder):
            op.entry.last_update_time = when
        put(op.entry, status=op.new_status, version=prev.version + 1)
        store.set_status(conn, [prev.id], DEPRECATED)
        put(op.member)
        if op.propagate:
            for copy in _propagated(conn, prev.id, op.entry.id, touched):
                put(copy)
    for add in ops.adds:
        put(add.assoc)
        put(add.submit)
    for st in ops.statuses:
        store.set_status(conn, [st.assoc.target], st.new)
        put(st.assoc)
    store.touch_folders(conn, [f for f in touched
                               if f not in {op.entry.id for op in ops.versions}], when)


def _propagated(conn: Connection, old: str, new: str, touched: list[str]
                ) -> list[Association]:
    """Copies of the previous version's associations for the new version (ITI TF-2b
    3.57.4.1.3.3.1.x AssociationPropagation).  The SubmissionSet gets no HasMember of its own
    to them: ITI-57 asks for none (ITI-64 3.64.4.1.3.1.6 does, for a patient ID change), and a
    GetAssociations of the update's SubmissionSet returns its one member (NIST 20000d)."""
    links = [a for a in store.associations_of(conn, [old]) if a.type not in NOT_PROPAGATED]
    ends = store.load(conn, [x for a in links for x in (a.source, a.target)])
    out: list[Association] = []
    for a in links:
        other = a.target if a.source == old else a.source
        if ends.get(other) is not None and ends[other].kind == "SubmissionSet":
            continue
        copy = Association(new_id(), type=V.ASSOCIATION_URNS[a.type],
                           source=new if a.source == old else a.source,
                           target=new if a.target == old else a.target)
        out.append(copy)
        if a.type == "HasMember" and a.target == old:
            touched.append(a.source)
    return out

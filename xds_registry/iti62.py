"""ITI-62 Delete Document Set, Document Registry side (ITI TF-2b 3.62.4.1.3 "Expected Actions",
3.62.4.2 response; ebRS 3.0 §5.3.4 RemoveObjectsRequest).

The request is an ``lcm:RemoveObjectsRequest`` whose ``rim:ObjectRefList`` names the entryUUIDs of
DocumentEntries, Folders, SubmissionSets and Associations to remove.  The registry removes all of
them or none:

- an id that is not in the registry: UnresolvedReferenceException;
- an object that an association *not* in the request still references (as source or target):
  ReferencesExistException — the metadata model stays closed, no association dangles;
- a SubmissionSet that would be left with no member while some of its members are removed:
  XDSUnreferencedObjectException (remove the SubmissionSet too, NIST tests 30001-30003).

Removal deletes the rows of the objects only (no cascade to other objects); the documents in the
repositories are not touched (that is ITI-86).
"""
from __future__ import annotations

import logging

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Connection

from hie.context import Context
from hie.errors import XDS, ErrorCollector, RegistryErrors
from hie.soap import SoapRequest, SoapResponse
from xds_registry import store
from xds_registry.iti42 import database_failure, failure, unit_of_work
from xds_registry.messages import RegistryResponse, parse_remove_objects

log = logging.getLogger("hie.xds_registry")


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    """SOAP handler for urn:ihe:iti:2010:DeleteDocumentSet."""
    return SoapResponse(delete(ctx, req.body).to_ebrim())


def delete(ctx: Context, request: etree._Element,
           conn: Connection | None = None) -> RegistryResponse:
    errors = ErrorCollector()
    refs = parse_remove_objects(request, errors)
    if errors.has_errors:
        return failure(ctx, errors.errors)
    ids = list(dict.fromkeys(r.id.lower() if r.id.lower().startswith("urn:uuid:") else r.id
                             for r in refs))
    try:
        with unit_of_work(ctx, conn) as c:
            store.lock_registry(c)
            found = check_removal(c, ids, errors)
            for ex in found.values():
                if ex.patient_id:
                    ctx.note(ex.patient_id)
            ctx.note(None, ids)
            errors.raise_if_errors()
            store.delete(c, ids)
    except RegistryErrors as e:
        return failure(ctx, e.errors)
    except sa.exc.SQLAlchemyError:
        return database_failure(ctx)
    return RegistryResponse.from_errors(errors.errors)


def check_removal(conn: Connection, ids: list[str], errors: ErrorCollector) -> dict:
    found = store.load(conn, ids)
    for i in ids:
        if i not in found:
            errors.error(XDS.UnresolvedReferenceException,
                         f"{i} is not in the registry", i)
    removing = set(ids)
    links = store.associations_of(conn, list(found), status=None)
    for a in links:
        if a.id in removing:
            continue
        for end in (a.source, a.target):
            if end in removing:
                errors.error(XDS.ReferencesExistException,
                             f"{end} is still referenced by Association {a.id} ({a.type} "
                             f"{a.source} -> {a.target}), which is not removed", end)
    # SubmissionSets that would be left empty
    removed_members = [ex for ex in found.values()
                       if ex.kind == "Association" and ex.type == "HasMember"]
    sets = {ex.source for ex in removed_members} - removing
    if sets:
        kinds = store.load(conn, sets)
        for ss_id in sets:
            if kinds.get(ss_id) is None or kinds[ss_id].kind != "SubmissionSet":
                continue
            remaining = [a for a in store.associations_of(conn, [ss_id], as_target=False,
                                                          types=["HasMember"], status=None)
                         if a.id not in removing]
            if not remaining:
                errors.error(XDS.UnreferencedObjectException,
                             f"SubmissionSet {ss_id} would be left without members; remove it "
                             "too", ss_id)
    return found

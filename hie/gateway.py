"""XCA Responding Gateway for the node's own community: ITI-38 Cross Gateway Query and ITI-39
Cross Gateway Retrieve (ITI TF-2b 3.38, 3.39; CONTRACT.md ``POST /xca/query``,
``POST /xca/retrieve``).

Another community's Initiating Gateway asks this node as it would ask a registry and a
repository, naming the community it means (homeCommunityId, ``urn:oid:`` + HIE_HOME_COMMUNITY_ID):

- **ITI-38** (3.38.4.1.3): the ``home`` attribute of ``rim:AdhocQuery``.  Another community's id
  is ``XDSUnknownCommunity``; none, on a stored query that names no patient (the Get… queries,
  which only an id addresses: 3.38.4.1.2.1), is ``XDSMissingHomeCommunityId``.  Otherwise the
  query is the local registry's ITI-18 stored query, whose answer already carries this
  community's id on every object (ITI TF-3 4.2.3.1.5 ``home``), audited as ITI-38.
- **ITI-39** (3.39.4.1.3): each ``DocumentRequest`` names its ``HomeCommunityId``; a request for
  another community is ``XDSUnknownCommunity``, one without ``XDSMissingHomeCommunityId``; the
  others are retrieved by the local repository's ITI-43 (which echoes the HomeCommunityId in
  each DocumentResponse), and the errors join its RegistryResponse (PartialSuccess when some
  documents came back, Failure when none did).

The gateway is given the registry's and repository's handlers by the composition root
(:mod:`hie.app`): the kernel imports no actor.  What the mission adds to cross-community access
(borrowing approval, patient authorisation) is not here yet.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Callable, Iterable

from hie.context import Context
from hie.errors import (SEVERITY_ERROR, STATUS_FAILURE, STATUS_PARTIAL, STATUS_SUCCESS, XDS,
                        RegistryError, RegistryErrors)
from hie.soap import SoapRequest, SoapResponse
from hie.soap_http import registry_error_list

Handler = Callable[[Context, SoapRequest], SoapResponse]
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
MISSING = XDS.MissingHomeCommunityId     # ITI TF-3 Table 4.2.4.1-2


def home_community(ctx: Context) -> str:
    hc = getattr(ctx.settings, "home_community_id", "") or ""
    return hc if not hc or hc.startswith("urn:oid:") else f"urn:oid:{hc}"


def query(registry_query: Handler, patient_queries: Iterable[str]) -> Handler:
    """The ITI-38 handler: the community check, then ``registry_query`` (ITI-18's handler);
    ``patient_queries``: the stored query ids that name a patient (FindDocuments, …)."""
    by_patient = frozenset(patient_queries)

    def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
        adhoc = req.body.find(f"{{{RIM}}}AdhocQuery") if req.body is not None else None
        if adhoc is not None:
            home, ours = (adhoc.get("home") or "").strip(), home_community(ctx)
            if home and home != ours:
                raise RegistryErrors.one(XDS.UnknownCommunity, f"community {home} is not this "
                                         f"community ({ours})", home)
            if not home and adhoc.get("id") not in by_patient:
                raise RegistryErrors.one(MISSING, f"stored query {adhoc.get('id')} names no "
                                         "patient: the AdhocQuery's home attribute must name "
                                         f"the community ({ours})", adhoc.get("id") or "")
        return registry_query(ctx, req)
    return handle


def retrieve(repository_retrieve: Handler) -> Handler:
    """The ITI-39 handler: per DocumentRequest the community check, then ITI-43's handler."""
    def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
        if req.body is None:
            return repository_retrieve(ctx, req)
        ours = home_community(ctx)
        body = copy.deepcopy(req.body)
        errors: list[RegistryError] = []
        for dr in body.findall(f"{{{XDSB}}}DocumentRequest"):
            home = (dr.findtext(f"{{{XDSB}}}HomeCommunityId") or "").strip()
            uid = (dr.findtext(f"{{{XDSB}}}DocumentUniqueId") or "").strip()
            if home == ours:
                continue
            errors.append(RegistryError(
                XDS.UnknownCommunity if home else MISSING,
                f"document {uid}: community {home} is not this community ({ours})" if home
                else f"document {uid}: the DocumentRequest names no HomeCommunityId", SEVERITY_ERROR,
                home or uid))
            body.remove(dr)
        if not errors:
            return repository_retrieve(ctx, req)
        if body.find(f"{{{XDSB}}}DocumentRequest") is None:
            raise RegistryErrors(errors)
        resp = repository_retrieve(ctx, dataclasses.replace(req, body=body))
        _add_errors(resp, errors)
        return resp
    return handle


def _add_errors(resp: SoapResponse, errors: list[RegistryError]) -> None:
    """Join ``errors`` to the RegistryResponse of a RetrieveDocumentSetResponse."""
    rr = resp.body.find(f"{{{RS}}}RegistryResponse") if resp.body is not None else None
    if rr is None:
        return
    ours = registry_error_list(RegistryErrors(errors))     # the transports' own rendering
    lst = rr.find(f"{{{RS}}}RegistryErrorList")
    if lst is None:
        rr.append(ours)
    else:
        lst.set("highestSeverity", SEVERITY_ERROR)
        lst.extend(list(ours))
    returned = resp.body.find(f"{{{XDSB}}}DocumentResponse") is not None
    if rr.get("status") == STATUS_SUCCESS or returned:
        rr.set("status", STATUS_PARTIAL if returned else STATUS_FAILURE)


__all__ = ["MISSING", "home_community", "query", "retrieve"]

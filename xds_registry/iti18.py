"""Registry Stored Query [ITI-18], Document Registry side (ITI TF-2a 3.18): the SOAP handler.

Request: ``query:AdhocQueryRequest`` (ITI TF-2a 3.18.4.1.2, ebRS 3.0 §6.3.1) with a
``query:ResponseOption returnType`` (LeafClass or ObjectRef) and a ``rim:AdhocQuery`` whose id is
one of the stored query ids and whose Slots are the parameters.  Response:
``query:AdhocQueryResponse`` (ITI TF-2a 3.18.4.1.3) with status Success / Failure /
PartialSuccess, the ``rim:RegistryObjectList`` and, on errors, the ``rs:RegistryErrorList``.

The handler only decodes the request, runs :func:`xds_registry.queries.run_query` in a read
unit of work and renders the answer, as bytes (``SoapResponse.body_bytes``: the stored objects
are spliced in without being parsed again, see ``xds_registry.query_result``); a body that is not
an AdhocQueryRequest is a SOAP Sender fault.  The audit record (ITI TF-2a 3.18.5.1, Query
event) names the patients asked for or found and the returned objects; a Failure answer is
recorded as a serious failure.
"""
from __future__ import annotations

from typing import Mapping

from hie.context import MINOR_FAILURE, SERIOUS_FAILURE, Context
from hie.errors import STATUS_FAILURE, STATUS_PARTIAL, RegistryErrors, SoapFault
from hie.soap import SoapRequest, SoapResponse
from xds_registry.queries import ITI18_QUERIES, QueryResult, asked_patients, home_of, run_query
from xds_registry.query_params import QUERY, AdhocQueryRequest, StoredQuery
from xds_registry.query_result import LEAF_CLASS


def answer(ctx: Context, req: SoapRequest, catalog: Mapping[str, StoredQuery]) -> QueryResult:
    """Decode ``req``, run the stored query, note the audit details; the :class:`QueryResult`."""
    if req.body is None or req.body.tag != f"{{{QUERY}}}AdhocQueryRequest":
        tag = getattr(req.body, "tag", None)
        raise SoapFault.sender(f"{ctx.transaction.id} expects query:AdhocQueryRequest, not {tag}")
    try:
        request = AdhocQueryRequest.from_element(req.body)
    except RegistryErrors as e:
        result = QueryResult("", LEAF_CLASS, home_of(ctx.settings), errors=list(e.errors))
        patients: list[str] = []
    else:
        ctx.extra["query_id"] = request.query_id
        with ctx.db.read() as conn:
            result = run_query(conn, ctx.settings, request.query_id, request.params,
                               request.return_type, catalog=catalog)
        patients = asked_patients(request.params)
    for pid in patients + result.patient_ids:
        ctx.note(pid)
    ctx.note(None, result.ids)
    if result.status == STATUS_FAILURE:
        ctx.fail(SERIOUS_FAILURE, "; ".join(f"{e.error_code}: {e.code_context}"
                                            for e in result.errors))
    elif result.status == STATUS_PARTIAL:
        ctx.fail(MINOR_FAILURE, "; ".join(e.error_code for e in result.errors))
    return result


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    return SoapResponse(None, body_bytes=answer(ctx, req, ITI18_QUERIES).to_bytes())

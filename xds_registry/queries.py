"""The stored query catalogs and :func:`run_query`, the one entry point that runs a stored query by
id over a database connection (ITI TF-2a 3.18.4.1.2.3.7, 3.18.4.1.3 "Expected Actions"; ITI TF-2b
3.51.4.1.2 for the Multi-Patient Stored Queries).

``run_query`` is transport-free, so the Registry Stored Query [ITI-18], the Multi-Patient Stored
Query [ITI-51] and later the responding gateway (XCA Cross Gateway Query) all share it.  It
validates the parameters, runs the query, applies XDSTooManyResults (above
``settings.max_query_results`` objects) and XDSResultNotSinglePatient (a LeafClass answer of an
ITI-18 query that spans several patients; ObjectRef answers disclose no metadata and are not
restricted), fetches the answer's objects in one query (or takes them from the query itself, as
FindDocuments reads them) and returns a :class:`QueryResult`; problems come back as its
``errors`` (status Failure), never as exceptions.
"""
from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy.engine import Connection

from hie.errors import XDS, RegistryErrors
from xds_registry.query_find import (DE_PATIENT, FD_PATIENT, FIND_QUERIES, MULTI_PATIENT_QUERIES,
                                     PATIENT, SS_PATIENT)
from xds_registry.query_get import GET_QUERIES
from xds_registry.query_params import (STRING, Param, ParamTable, RawParams, StoredQuery,
                                       parse_params)
from xds_registry.query_result import (LEAF_CLASS, OBJECT_REF, RETURN_TYPES, FoundObject,
                                       QueryResult, answer_order)
from xds_registry.query_sql import QueryContext, fetch_objects, unique

ITI18_QUERIES: dict[str, StoredQuery] = {q.id: q for q in FIND_QUERIES + GET_QUERIES}
ITI51_QUERIES: dict[str, StoredQuery] = {q.id: q for q in MULTI_PATIENT_QUERIES}
QUERY_IDS: dict[str, str] = {q.name: q.id for q in FIND_QUERIES + GET_QUERIES
                             + MULTI_PATIENT_QUERIES}
PATIENT_PARAMS = (DE_PATIENT, SS_PATIENT, FD_PATIENT, PATIENT)

__all__ = ["run_query", "QueryResult", "FoundObject", "ITI18_QUERIES", "ITI51_QUERIES",
           "QUERY_IDS", "LEAF_CLASS", "OBJECT_REF"]


def home_of(settings: Any) -> str:
    hc = getattr(settings, "home_community_id", "") or ""
    return hc if not hc or hc.startswith("urn:oid:") else f"urn:oid:{hc}"


_PATIENT_SPECS = ParamTable(Param(n, STRING, multiple=True) for n in PATIENT_PARAMS)


def asked_patients(params: RawParams) -> list[str]:
    """The patient ids a request names (for the audit record, even when nothing matched)."""
    try:
        parsed = parse_params(_PATIENT_SPECS, params)
    except RegistryErrors:
        return []
    return unique(pid for n in PATIENT_PARAMS for pid in parsed.list(n))


def run_query(conn: Connection, settings: Any, query_id: str, params: RawParams,
              return_type: str = LEAF_CLASS, *,
              catalog: Mapping[str, StoredQuery] | None = None) -> QueryResult:
    """Run stored query ``query_id``.

    ``params`` maps a parameter name to its Slots, each a list of ``rim:Value`` texts encoded as
    ITI TF-2a 3.18.4.1.2.3.5 says (``["'pid^^^&1.2&ISO'"]``, ``[["('a^^s')"], ["('b^^s')"]]``);
    a bare string stands for a Slot with that one Value.  ``return_type`` is ``LeafClass`` or
    ``ObjectRef``.  ``settings`` needs ``max_query_results`` and ``home_community_id``.
    ``catalog`` defaults to the ITI-18 queries (:data:`ITI51_QUERIES` for ITI-51).
    """
    catalog = ITI18_QUERIES if catalog is None else catalog
    result = QueryResult(query_id, return_type, home_of(settings))
    try:
        query = catalog.get(query_id)
        if query is None:
            raise RegistryErrors.one(XDS.UnknownStoredQuery,
                                     f"unknown stored query id {query_id!r}", query_id)
        if return_type not in RETURN_TYPES:
            raise RegistryErrors.one(XDS.RegistryError,
                                     f"returnType must be LeafClass or ObjectRef, not "
                                     f"{return_type!r}", "returnType")
        p = query.parse(params)
        leaf = return_type == LEAF_CLASS
        qc = QueryContext(conn, int(settings.max_query_results), with_xml=leaf)
        ids = unique(query.run(qc, p))
        qc.check_count(len(ids))
        objects = answer_order(fetch_objects(conn, ids, with_xml=leaf, found=qc.found))
        if return_type == LEAF_CLASS and query.single_patient:
            patients = unique(o.patient_id for o in objects if o.patient_id)
            if len(patients) > 1 and not set(patients) <= qc.merged_ids:  # merged: one
                raise RegistryErrors.one(
                    XDS.ResultNotSinglePatient,
                    f"the answer concerns {len(patients)} patients; LeafClass answers must "
                    f"concern one (ask for ObjectRef, or one patient's objects)")
        result.objects = objects
    except RegistryErrors as e:
        result.errors = list(e.errors)
        result.objects = []
    return result

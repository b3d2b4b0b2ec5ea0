"""Multi-Patient Stored Query [ITI-51], Document Registry side (ITI TF-2b 3.51): the SOAP handler.

The same ``query:AdhocQueryRequest`` / ``query:AdhocQueryResponse`` exchange as ITI-18 (ITI TF-2b
3.51.4.1.2 refers to ITI TF-2a 3.18.4.1.2), with its own two stored queries
(FindDocumentsForMultiplePatients, FindFoldersForMultiplePatients, see
``xds_registry.query_find``): the patient id parameter is optional and multi-valued, and answers
may span patients (no XDSResultNotSinglePatient).  Any other query id is XDSUnknownStoredQuery.
Access to such cross-patient answers is for the site policy to restrict (ITI TF-1 "MPQ" security
considerations); the audit record lists every patient found.
"""
from __future__ import annotations

from hie.context import Context
from hie.soap import SoapRequest, SoapResponse
from xds_registry.iti18 import answer
from xds_registry.queries import ITI51_QUERIES


def handle(ctx: Context, req: SoapRequest) -> SoapResponse:
    return SoapResponse(None, body_bytes=answer(ctx, req, ITI51_QUERIES).to_bytes())

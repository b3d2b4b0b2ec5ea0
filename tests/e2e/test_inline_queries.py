"""ITI-18 answers the same whether its handler runs on the event loop (the default for bounded
read-only queries) or in a worker thread (``HIE_INLINE_QUERIES=false``); other transactions
always run in a thread."""
import dataclasses

import httpx
import pytest

from hie.soap import build_envelope, parse_envelope
from hie.transactions import ITI_18
from hie.xmlsafe import to_bytes
from tests import xdsdata as X
from tests.live import live_node
from xds_registry.iti42 import register
from xds_registry.query_params import build_request
from xds_registry.queries import QUERY_IDS


@pytest.mark.parametrize("inline", [True, False])
def test_find_documents_inline_or_threaded(node, inline):
    X.register_patient(node.db)
    sub = X.submission(docs=3)
    assert register(X.registry_context(node), sub.build()).ok
    node.settings = dataclasses.replace(node.settings, inline_queries=inline)
    with live_node(node.settings, node) as live:
        q = build_request(QUERY_IDS["FindDocuments"], {
            "$XDSDocumentEntryPatientId": [f"'{sub.patient_id}'"],
            "$XDSDocumentEntryStatus": ["('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"]},
            "ObjectRef")
        env = build_envelope(ITI_18.action, q, message_id="urn:uuid:0-inline")
        r = httpx.post(live.http + "/xds/registry", content=to_bytes(env), timeout=30,
                       headers={"Content-Type": "application/soap+xml; charset=UTF-8"})
    assert r.status_code == 200
    body = parse_envelope(r.content).body
    ids = {o.get("id") for o in body.iter("{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}ObjectRef")}
    assert ids == set(sub.documents)

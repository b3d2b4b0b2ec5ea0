"""The whole XDS.b story over real sockets, as a hospital integration engineer would run it, on
SQLite and on PostgreSQL: the HIS feeds 张三 over MLLP (ITI-8); the archive system provides and
registers two documents with zeep as the SOAP client (ITI-41, inline base64 — zeep does not send
MTOM); a consumer finds them with zeep (ITI-18), retrieves them with raw HTTP (ITI-43, MTOM),
replaces one (ITI-42 RPLC), deprecates and deletes (ITI-57, ITI-62).  Every response is checked
against the official schemas and every transaction leaves one audit event."""
import uuid

import httpx
import sqlalchemy as sa
import zeep
from lxml import etree

from hie.hl7v2 import parse
from hie.mtom import MtomParser
from hie.soap import build_envelope, parse_envelope
from hie.tables import audit_event
from hie.transactions import ITI_42, ITI_43, ITI_57, ITI_62
from hie.xmlsafe import to_bytes
from tests import xdsdata as X
from tests.live import live_node
from tests.mllp_support import MllpClient
from tests.schemas import assert_valid
from xds_registry.query_params import build_request
from xds_registry.queries import QUERY_IDS

RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"


def _adt(person: X.Person) -> bytes:
    segs = ["MSH|^~\\&|HIS|北京市第一人民医院|HIE|REGION|20240501083000+0800||ADT^A01^ADT_A01|"
            f"{uuid.uuid4().hex[:20]}|P|2.5||||||UNICODE UTF-8",
            "EVN|A01|20240501083000",
            f"PID|1||{person.mpi}^^^&{X.AFFINITY_DOMAIN}&ISO^PI~{person.mrn}^^^HIS&"
            f"{X.HOSPITAL_PID_OID}&ISO^MR~{person.id_card}^^^&{X.ID_CARD_OID}&ISO^NI||"
            f"{person.family}^{person.given}^^^^^L||{person.birth}|{person.sex}|||"
            "建国路1号^^北京市^北京市^100022^CHN", "PV1|1|I"]
    return ("\r".join(segs) + "\r").encode()


def _soap(url: str, action: str, body: etree._Element) -> etree._Element:
    env = build_envelope(action, body, message_id=f"urn:uuid:{uuid.uuid4()}")
    r = httpx.post(url, content=to_bytes(env), timeout=60, headers={
        "Content-Type": f'application/soap+xml; charset=UTF-8; action="{action}"'})
    assert r.status_code == 200, r.text
    resp = parse_envelope(r.content).body
    assert_valid(resp)
    return resp


def test_hospital_story(node, tmp_path):
    with live_node(node.settings, node) as live:
        reg, rep = live.http + "/xds/registry", live.http + "/xds/repository"
        # ITI-8: the HIS feeds the patient over MLLP; before that the registry refuses him
        sub = X.submission(docs=1, person=X.ZHANG_SAN)
        resp = _soap(reg, ITI_42.action, sub.build())
        assert "XDSUnknownPatientId" in etree.tostring(resp).decode()
        with MllpClient(live.mllp) as mllp:
            ack = parse(mllp.request(_adt(X.ZHANG_SAN)))
        assert ack.get("MSA-1") == "AA"

        # ITI-41 with zeep, from the repository's own WSDL
        client = zeep.Client(rep + "?wsdl")
        pnr = X.Submission(person=X.ZHANG_SAN)
        d1 = pnr.document(title="出院小结", mime_type="text/xml")
        d2 = pnr.document(title="检验报告", content="血常规：正常。".encode(),
                          mime_type="text/plain", class_code=X.CLASS_LAB)
        body = pnr.provide_and_register(inline=True)
        provide = client.service["DocumentRepository_ProvideAndRegisterDocumentSet-b"]
        answer = provide(_value_1=list(body))
        assert answer["_attr_1"]["status"] == SUCCESS

        # ITI-18 with zeep: FindDocuments finds both, LeafClass
        q = build_request(QUERY_IDS["FindDocuments"], {
            "$XDSDocumentEntryPatientId": [f"'{X.patient_cx(X.ZHANG_SAN)}'"],
            "$XDSDocumentEntryStatus": [f"('{APPROVED}')"]}, "LeafClass")
        reg_client = zeep.Client(reg + "?wsdl")
        found = reg_client.service.DocumentRegistry_RegistryStoredQuery(_value_1=list(q))
        assert found["_attr_1"]["status"] == SUCCESS
        [rol] = found["_value_1"]
        entries = {e.get("id"): e for e in rol}
        assert len(entries) == 2
        uids = {}
        for e in entries.values():
            for ext in e.iter(f"{{{RIM}}}ExternalIdentifier"):
                if ext.get("identificationScheme") == X.DE_UID:
                    uids[e.get("id")] = ext.get("value")
        assert sorted(uids.values()) == sorted(pnr.unique_ids[d] for d in (d1, d2))

        # ITI-43 with raw HTTP: both documents back, byte for byte, as MTOM
        repo_id = live.settings.repository_unique_id
        rq = etree.Element(f"{{{X.XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": X.XDSB})
        for uid in uids.values():
            dr = etree.SubElement(rq, f"{{{X.XDSB}}}DocumentRequest")
            etree.SubElement(dr, f"{{{X.XDSB}}}RepositoryUniqueId").text = repo_id
            etree.SubElement(dr, f"{{{X.XDSB}}}DocumentUniqueId").text = uid
        env = build_envelope(ITI_43.action, rq, message_id=f"urn:uuid:{uuid.uuid4()}")
        r = httpx.post(rep, content=to_bytes(env), timeout=60,
                       headers={"Content-Type": "application/soap+xml; charset=UTF-8"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related")
        parser = MtomParser(r.headers["content-type"], tmp_path / "spool")
        parser.feed(r.content)
        root, parts = parser.close()
        got = parse_envelope(root, parts, mtom=True)
        by_uid = {}
        for dresp in got.body.iterfind(f"{{{X.XDSB}}}DocumentResponse"):
            uid = dresp.findtext(f"{{{X.XDSB}}}DocumentUniqueId")
            by_uid[uid] = got.document(dresp.find(f"{{{X.XDSB}}}Document")).read()
        assert by_uid == {pnr.unique_ids[d]: pnr.contents[d] for d in (d1, d2)}

        # ITI-42 RPLC: a corrected discharge summary deprecates the original
        d1_uuid = next(i for i, u in uids.items() if u == pnr.unique_ids[d1])
        corr = X.Submission(person=X.ZHANG_SAN)
        corr.replace(d1_uuid, title="出院小结（更正）")
        assert _soap(reg, ITI_42.action, corr.build()).get("status") == SUCCESS
        found = _soap(reg, "urn:ihe:iti:2007:RegistryStoredQuery", build_request(
            QUERY_IDS["GetDocuments"], {"$XDSDocumentEntryEntryUUID": [f"('{d1_uuid}')"]},
            "LeafClass"))
        [eo] = found.iter(f"{{{RIM}}}ExtrinsicObject")
        assert eo.get("status") == DEPRECATED

        # ITI-57: the lab report is deprecated by its administrator; ITI-62 deletes the original
        d2_uuid = next(i for i, u in uids.items() if u == pnr.unique_ids[d2])
        upd = X.Submission(person=X.ZHANG_SAN)
        X.update_availability(upd, d2_uuid)
        assert _soap(reg, ITI_57.action, upd.build()).get("status") == SUCCESS
        found = _soap(reg, "urn:ihe:iti:2007:RegistryStoredQuery", build_request(
            QUERY_IDS["FindDocuments"], {
                "$XDSDocumentEntryPatientId": [f"'{X.patient_cx(X.ZHANG_SAN)}'"],
                "$XDSDocumentEntryStatus": [f"('{APPROVED}')"]}, "ObjectRef"))
        approved = [o.get("id") for o in found.iter(f"{{{RIM}}}ObjectRef")]
        assert d2_uuid not in approved and d1_uuid not in approved and len(approved) == 1

        # ITI-62: a document registered by mistake is removed with its SubmissionSet
        wrong = X.submission(docs=1, person=X.ZHANG_SAN)
        assert _soap(reg, ITI_42.action, wrong.build()).get("status") == SUCCESS
        ids = [wrong.ss_id, *wrong.documents, *wrong.associations]
        assert _soap(reg, ITI_62.action,
                     X.remove_objects_request(ids)).get("status") == SUCCESS
        gone = _soap(reg, "urn:ihe:iti:2007:RegistryStoredQuery", build_request(
            QUERY_IDS["GetDocuments"], {"$XDSDocumentEntryEntryUUID": [f"('{ids[1]}')"]},
            "ObjectRef"))
        assert list(gone.iter(f"{{{RIM}}}ObjectRef")) == []

        # the audit trail names every transaction, each with its outcome
        live.node.audit.stop()  # flush the batched writer
        with live.node.db.read() as c:
            rows = c.execute(sa.select(audit_event.c.transaction, audit_event.c.outcome)).all()
        seen = {(t, o) for t, o in rows}
        for expected in [("ITI-42", 8), ("ITI-8", 0), ("ITI-41", 0), ("ITI-18", 0),
                         ("ITI-43", 0), ("ITI-42", 0), ("ITI-57", 0), ("ITI-62", 0)]:
            assert expected in seen, (expected, seen)
        live.node.audit.start()

"""ADT^A40 patient merge over MLLP and the XDS registry following it (ITI TF-2a 3.8.4.2), on
SQLite and PostgreSQL: after 王芳's second enterprise ID is merged into her first, FindDocuments,
FindSubmissionSets, FindFolders and GetAll on the surviving ID return what was registered under
both; the subsumed ID is no longer known (new registrations under it get XDSUnknownPatientId);
an unknown MRG-1 is a warning, a missing MRG an AE."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from pix_pdq.index import is_known
from pix_pdq.tables import person as t_person
from tests import xdsdata as X
from tests.integration import iti18_support as Q
from tests.integration.test_iti8 import adt, aff, mllp, send  # noqa: F401 - fixtures
from xds_registry import iti42
from xds_registry.query_find import FIND_DOCUMENTS, FIND_FOLDERS, FIND_SUBMISSION_SETS, GET_ALL

pytestmark = pytest.mark.usefixtures("index_age")

APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"


def a40(aff_oid: str, survivor: str, prior: str, control_id: str = "M0001",
        with_mrg: bool = True) -> str:
    text = adt(aff_oid, event="A40", control_id=control_id, eid=survivor, mrn="",
               name="王^芳^^^^^L", msg_type="ADT^A40^ADT_A39")
    if with_mrg:
        text = text.replace("PV1|1|O\r", f"MRG|{prior}^^^&{aff_oid}&ISO\r")
    return text


def _register(node, cx: str, folder: bool = False) -> X.Submission:
    sub = X.Submission(patient_id=cx)
    sub.document()
    if folder:
        sub.folder()
    resp = iti42.register(X.registry_context(node), sub.build())
    assert resp.ok, resp.errors
    return sub


def test_registry_follows_a_merge(node, mllp, aff):
    for eid, cid in (("WF0001", "C0001"), ("WF0002", "C0002")):
        ack = send(mllp, adt(aff, control_id=cid, eid=eid, mrn="", name="王^芳^^^^^L",
                             birth="19750612", sex="F"))
        assert ack.get("MSA-1") == "AA"
    first = f"WF0001^^^&{aff}&ISO"
    second = f"WF0002^^^&{aff}&ISO"
    before = _register(node, first)
    after = _register(node, second, folder=True)

    ack = send(mllp, a40(aff, "WF0001", "WF0002"))
    assert ack.get("MSA-1") == "AA" and ack.segment("ERR") is None

    with node.db.read() as conn:
        assert is_known(conn, first) and not is_known(conn, second)
        statuses = dict(conn.execute(sa.select(t_person.c.id, t_person.c.status)).all())
    assert sorted(statuses.values()) == ["active", "merged"]

    st = Q.settings()
    docs = Q.query(node.db, FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": [Q.q(first)],
                                             "$XDSDocumentEntryStatus": [Q.q(APPROVED)]}, st=st)
    assert docs.status == "Success", (docs.status, docs.errors)
    assert set(docs.of("DocumentEntry")) == set(before.documents) | set(after.documents)
    sets = Q.query(node.db, FIND_SUBMISSION_SETS, {
        "$XDSSubmissionSetPatientId": [Q.q(first)],
        "$XDSSubmissionSetStatus": [Q.q(APPROVED)]}, st=st)
    assert len(sets.of("SubmissionSet")) == 2
    folders = Q.query(node.db, FIND_FOLDERS, {"$XDSFolderPatientId": [Q.q(first)],
                                              "$XDSFolderStatus": [Q.q(APPROVED)]}, st=st)
    assert len(folders.of("Folder")) == 1
    everything = Q.query(node.db, GET_ALL, {
        "$patientId": [Q.q(first)], "$XDSDocumentEntryStatus": [Q.q(APPROVED)],
        "$XDSSubmissionSetStatus": [Q.q(APPROVED)], "$XDSFolderStatus": [Q.q(APPROVED)]}, st=st)
    assert set(before.documents) | set(after.documents) <= set(everything.ids)

    refused = iti42.register(X.registry_context(node), X.Submission(patient_id=second).build())
    assert refused.codes == ["XDSUnknownPatientId"]


def test_merging_an_unknown_identifier_is_a_warning(node, mllp, aff):
    send(mllp, adt(aff, control_id="C0003", eid="WF0003", mrn=""))
    ack = send(mllp, a40(aff, "WF0003", "WF9999", control_id="M0003"))
    assert ack.get("MSA-1") == "AA"
    err = ack.segment("ERR")
    assert err.value(3) == "204" and err.value(4) == "W" and err[2].encode() == "MRG^1^1^1"


def test_a40_without_mrg_is_refused(node, mllp, aff):
    ack = send(mllp, a40(aff, "WF0004", "", control_id="M0004", with_mrg=False))
    assert ack.get("MSA-1") == "AE" and ack.segment("ERR").value(3) == "100"

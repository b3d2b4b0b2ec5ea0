"""The node's own DICOM Upper Layer over real sockets (PS3.8 Sections 7 and 9, PS3.7 Annex D): what
an association requester gets when it asks for what the node does not take, sends a PDU out of
turn, stays silent, cancels a C-FIND (PS3.7 9.3.2.3), asks a C-GET without taking the SCP role
(PS3.4 C.4.3.1), or comes when the listener is full — on SQLite and PostgreSQL where a node is
involved."""
from __future__ import annotations

import socket
import time

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

from dicom_qr import acse, dimse, part10, pdu, ul
from tests.dicom_support import instance, run

FIND = "1.2.840.10008.5.1.4.1.2.2.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


def _stored(live, tmp_path, studies: int) -> dict[str, str]:
    """``studies`` studies of one instance each, stored with storescu: study → SOP UID."""
    uids = [generate_uid() for _ in range(studies)]
    paths = [instance(tmp_path, f"s{k}.dcm", patient_id="P700", patient_name="钱^多",
                      charset="ISO_IR 192", study=uid, series=generate_uid())
             for k, uid in enumerate(uids)]
    host, port = live.node.listeners["dicom"]
    done = run("storescu", "-aec", live.settings.dicom_ae_title, host, str(port),
               *map(str, paths))
    assert done.returncode == 0, done.stderr
    return {uid: str(pydicom.dcmread(p).SOPInstanceUID) for uid, p in zip(uids, paths)}


def _associate(live, contexts) -> ul.Association:
    host, port = live.node.listeners["dicom"]
    return ul.request_association(host, port, "TESTER", live.settings.dicom_ae_title, contexts)


def _query(level: str = "STUDY") -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = level
    q.PatientID, q.StudyInstanceUID = "P700", ""
    return q


def _responses(assoc: ul.Association, message_id: int) -> list[dimse.Message]:
    out = [assoc.response(message_id)]
    while out[-1].command["Status"] in (0xFF00, 0xFF01):
        out.append(assoc.response(message_id))
    return out


def test_a_c_cancel_stops_a_c_find_before_its_answers(live, tmp_path):
    _stored(live, tmp_path, 3)
    assoc = _associate(live, [(FIND, [part10.IMPLICIT_LE])])
    try:
        cx = next(iter(assoc.agreed.contexts.values()))
        find = dimse.Message(cx.id, {"AffectedSOPClassUID": FIND, "CommandField": dimse.C_FIND_RQ,
                                     "MessageID": 5, "Priority": 0},
                             part10.write(_query(), cx.transfer_syntax))
        cancel = dimse.Message(cx.id, {"CommandField": dimse.C_CANCEL_RQ,
                                       "MessageIDBeingRespondedTo": 5})
        # both in one write: the cancel is there before the first answer would leave
        assoc.sock.sendall(b"".join(dimse.fragments(find, 0) + dimse.fragments(cancel, 0)))
        got = _responses(assoc, 5)
        assert [m.command["Status"] for m in got] == [0xFE00]
        # the association goes on: the same query again gets its three answers
        got = list(assoc.exchange(dimse.Message(cx.id, dict(find.command), find.data)))
        assert [m.command["Status"] for m in got] == [0xFF00] * 3 + [0x0000]
    finally:
        assoc.release()


def test_a_request_on_another_service_s_context_is_refused_with_its_status(live):
    assoc = _associate(live, [(CT, [part10.EXPLICIT_LE])])
    try:
        cx = next(iter(assoc.agreed.contexts.values()))
        assoc.send(dimse.Message(cx.id, {"AffectedSOPClassUID": CT,
                                         "CommandField": dimse.C_FIND_RQ, "MessageID": 1,
                                         "Priority": 0},
                                 part10.write(_query(), cx.transfer_syntax)))
        [answer] = _responses(assoc, 1)
        assert answer.command["Status"] == 0x0122
        assert answer.command["CommandField"] == dimse.C_FIND_RSP
    finally:
        assoc.release()


def test_a_c_get_whose_requester_took_no_scp_role_fails_its_sub_operations(live, tmp_path):
    [(study, sop_uid)] = _stored(live, tmp_path, 1).items()
    scu = AE(ae_title="NOROLE")
    scu.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    scu.add_requested_context(CTImageStorage)          # proposed without role selection
    host, port = live.node.listeners["dicom"]
    assoc = scu.associate(host, port, ae_title=live.settings.dicom_ae_title)
    assert assoc.is_established
    q = Dataset()
    q.QueryRetrieveLevel, q.StudyInstanceUID = "STUDY", study
    statuses = [(s.Status, ident) for s, ident in
                assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    status, ident = statuses[-1]
    assert status == 0xA702                             # every sub-operation failed
    assert ident.FailedSOPInstanceUIDList == sop_uid


def _raw(live) -> socket.socket:
    return socket.create_connection(live.node.listeners["dicom"], timeout=5)


def test_an_unknown_application_context_is_rejected_and_a_stray_pdv_aborts(live):
    rq = pdu.AssociateRQ(live.settings.dicom_ae_title, "TESTER", "1.2.3.4",
                         [pdu.ProposedContext(1, CT, [part10.IMPLICIT_LE])],
                         pdu.UserInformation(max_length=16384))
    with _raw(live) as sock:
        sock.sendall(pdu.encode(rq))
        answer = ul.read_pdu(sock, 1 << 20)
    assert answer == pdu.AssociateRJ(pdu.REJECTED_PERMANENT, pdu.RJ_USER,
                                     pdu.CONTEXT_NOT_SUPPORTED)
    rq.application_context = pdu.APPLICATION_CONTEXT
    with _raw(live) as sock:
        sock.sendall(pdu.encode(rq))
        assert isinstance(ul.read_pdu(sock, 1 << 20), pdu.AssociateAC)
        # a PDV on context 3, which was never proposed
        sock.sendall(pdu.encode(pdu.PData([pdu.Pdv(3, True, True, b"\x00" * 12)])))
        answer = ul.read_pdu(sock, 1 << 20)
        assert isinstance(answer, pdu.Abort) and answer.source == pdu.ABORT_PROVIDER
        assert sock.recv(10) == b""                      # and the node closed the connection


def test_a_connection_that_never_asks_for_an_association_is_closed(live, monkeypatch):
    monkeypatch.setattr(ul, "ARTIM", 0.5)
    with _raw(live) as sock:
        sock.settimeout(10)
        started = time.monotonic()
        assert sock.recv(10) == b""
        assert time.monotonic() - started < 9


def test_an_association_silent_too_long_is_aborted(live, monkeypatch):
    monkeypatch.setattr(ul, "IDLE", 0.5)
    assoc = _associate(live, [(CT, [part10.EXPLICIT_LE])])
    assoc.sock.settimeout(10)
    answer = ul.read_pdu(assoc.sock, 1 << 20)
    assert isinstance(answer, pdu.Abort) and answer.source == pdu.ABORT_PROVIDER
    assert assoc.sock.recv(10) == b""
    assoc.sock.close()


def test_beyond_its_limit_the_listener_rejects_associations_transiently():
    seen = []

    def echo(assoc, message):
        seen.append(assoc.calling)
        assoc.send(dimse.Message(message.context_id,
                                 dimse.response(message, dimse.C_ECHO_RSP, 0)))
    offer = acse.Offer({"1.2.840.10008.1.1": (part10.IMPLICIT_LE,)}, frozenset(), 16384)
    listener = ul.Listener(offer, {dimse.C_ECHO_RQ: echo}, max_associations=1)
    host, port = listener.start("127.0.0.1", 0)
    try:
        first = ul.request_association(host, port, "FIRST", "HIE",
                                       [("1.2.840.10008.1.1", [part10.IMPLICIT_LE])])
        with pytest.raises(ul.Refused, match="AssociateRJ"):
            ul.request_association(host, port, "SECOND", "HIE",
                                   [("1.2.840.10008.1.1", [part10.IMPLICIT_LE])])
        reply = first.request(dimse.Message(1, {"AffectedSOPClassUID": "1.2.840.10008.1.1",
                                                "CommandField": dimse.C_ECHO_RQ}))
        assert reply.command["Status"] == 0 and seen == ["FIRST"]
        first.release()
        deadline = time.monotonic() + 5
        while True:                                        # the slot is free again
            try:
                again = ul.request_association(host, port, "THIRD", "HIE",
                                               [("1.2.840.10008.1.1", [part10.IMPLICIT_LE])])
                break
            except ul.Refused:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        again.release()
    finally:
        listener.stop()

"""The DICOM listener under bad input and across a restart, on SQLite and PostgreSQL: a context for
a SOP class the node does not serve is refused, garbage bytes, a PDU that claims 4 GB and an
association broken off in the middle of a C-STORE cost the listener nothing (it goes on
answering C-ECHO, nothing half-written is indexed); what was stored before a restart is found
and retrieved by the node that starts next."""
from __future__ import annotations

import io
import socket
import struct
import time

import pydicom
import sqlalchemy as sa
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import CTImageStorage

from dicom_qr.tables import dicom_instance
from hie.node import Node
from tests.dicom_support import find, instance, run
from tests.live import live_node


def echo(live) -> None:
    host, port = live.node.listeners["dicom"]
    done = run("echoscu", "-aec", live.settings.dicom_ae_title, host, str(port))
    assert done.returncode == 0, done.stderr


def raw(live, data: bytes, wait: float = 0.5) -> bytes:
    """Send ``data`` on a plain socket; what comes back before the peer closes or ``wait``."""
    with socket.create_connection(live.node.listeners["dicom"], timeout=5) as s:
        s.sendall(data)
        s.settimeout(wait)
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return got


def indexed(live) -> int:
    with live.node.db.read() as c:
        return c.execute(sa.select(sa.func.count()).select_from(dicom_instance)).scalar()


def test_a_sop_class_the_node_does_not_serve_is_refused(live):
    scu = AE(ae_title="ODD")
    scu.add_requested_context("1.2.3.4.5.6.7")        # no such SOP class
    scu.add_requested_context(CTImageStorage)
    host, port = live.node.listeners["dicom"]
    assoc = scu.associate(host, port, ae_title=live.settings.dicom_ae_title)
    assert assoc.is_established
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    rejected = {str(cx.abstract_syntax) for cx in assoc.rejected_contexts}
    assoc.release()
    assert accepted == {CTImageStorage} and rejected == {"1.2.3.4.5.6.7"}
    echo(live)


def test_garbage_and_a_pdu_claiming_four_gigabytes_cost_the_listener_nothing(live):
    raw(live, b"\x00\x01\x02 this is not DICOM \xff" * 10)
    # an A-ASSOCIATE-RQ whose length says 4 GB, then the connection closes
    raw(live, b"\x01\x00" + struct.pack(">I", 0xFFFFFFF0) + b"\x00\x01" + b"\x00" * 60)
    # a P-DATA-TF before any association: the node answers with an A-ABORT (PDU type 0x07)
    # or simply closes
    answer = raw(live, b"\x04\x00" + struct.pack(">I", 6) + b"\x00\x00\x00\x02\x01\x03")
    assert answer == b"" or answer[:1] == b"\x07"
    echo(live)
    assert indexed(live) == 0


def test_an_association_broken_off_during_a_c_store_leaves_nothing_half_written(live, tmp_path):
    path = instance(tmp_path, "x.dcm", patient_id="P900", patient_name="王^断",
                    charset="ISO_IR 192", study=generate_uid(), series=generate_uid())
    ds = pydicom.dcmread(path)
    scu = AE(ae_title="BREAKER")
    scu.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    host, port = live.node.listeners["dicom"]
    assoc = scu.associate(host, port, ae_title=live.settings.dicom_ae_title, max_pdu=256)
    assert assoc.is_established
    # the command and the first fragments of the data set, then the TCP connection is cut
    sock = assoc.dul.socket.socket
    cx = assoc.accepted_contexts[0]
    req = C_STORE()
    req.MessageID, req.AffectedSOPClassUID = 1, ds.SOPClassUID
    req.AffectedSOPInstanceUID, req.Priority = ds.SOPInstanceUID, 2
    req.DataSet = io.BytesIO(path.read_bytes()[400:])
    msg = C_STORE_RQ()
    msg.primitive_to_message(req)
    pdus = list(msg.encode_msg(cx.context_id, 256))
    assert len(pdus) >= 3                     # command, then data set fragments
    for primitive in pdus[:-1]:               # all but the one that completes the message
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        sock.sendall(pdu.encode())
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    time.sleep(0.5)
    assoc.abort()
    echo(live)
    assert indexed(live) == 0


def test_what_was_stored_is_found_and_retrieved_after_a_restart(node, tmp_path):
    study = generate_uid()
    paths = [instance(tmp_path, f"r{k}.dcm", patient_id="P901", patient_name="赵^云",
                      charset="ISO_IR 192", study=study, series=generate_uid(), number=k)
             for k in range(2)]
    with live_node(node.settings, node) as first:
        host, port = first.node.listeners["dicom"]
        done = run("storescu", "-aec", first.settings.dicom_ae_title, host, str(port),
                   *map(str, paths))
        assert done.returncode == 0
    node.close()
    again = Node(node.settings, create_schema=False)
    try:
        with live_node(again.settings, again) as second:
            answers = find(second, tmp_path, "QueryRetrieveLevel=STUDY",
                           f"StudyInstanceUID={study}", "NumberOfStudyRelatedInstances",
                           "PatientName")
            assert [str(a.NumberOfStudyRelatedInstances) for a in answers] == ["2"]
            assert str(answers[0].PatientName) == "赵^云"
            out = tmp_path / "got"
            out.mkdir()
            host, port = second.node.listeners["dicom"]
            got = run("getscu", "-S", "-aec", second.settings.dicom_ae_title, "-od", str(out),
                      "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                      host, str(port))
            assert got.returncode == 0, got.stderr
            sent = {d.SOPInstanceUID: d for d in map(pydicom.dcmread, paths)}
            for f in out.iterdir():
                ds = pydicom.dcmread(f)
                assert ds.PixelData == sent[ds.SOPInstanceUID].PixelData
                assert ds.PatientName == "赵^云"
            assert len(list(out.iterdir())) == 2
    finally:
        again.close()

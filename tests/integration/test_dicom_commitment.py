"""Storage Commitment Push Model (dicom_qr.commitment), on SQLite and PostgreSQL: a modality —
a pynetdicom AE, since DCMTK has no storage commitment tool — stores with DCMTK's storescu,
asks for commitment by N-ACTION and receives the N-EVENT-REPORT on an association the node
opens (role selection: the node as SCP), through the outbox: retried while the modality is
down.  Malformed requests get their N-ACTION failure status."""
from __future__ import annotations

import queue
import time

import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

from hie.settings import Peer
from hie.tables import outbox as t_outbox
from tests.dicom_support import CT, SC, free_port, instance, run
from tests.live import live_with

WELL_KNOWN = "1.2.840.10008.1.20.1.1"


class Modality:
    """The modality's side: an SCP that takes N-EVENT-REPORTs (the node's reports)."""

    def __init__(self, port: int):
        self.port, self.reports, self.server = port, queue.Queue(), None

    def start(self) -> "Modality":
        ae = AE(ae_title="MODALITY")
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_N_EVENT_REPORT, self._report)])
        return self

    def _report(self, event):
        self.reports.put((event.request.EventTypeID, event.event_information,
                          str(event.assoc.requestor.ae_title)))
        return 0x0000, None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


@pytest.fixture
def modality_port():
    return free_port()


@pytest.fixture
def live(node, modality_port):
    with live_with(node, dicom_peers=(Peer("MODALITY", "127.0.0.1", modality_port),)) as ln:
        yield ln


def n_action(live, refs, *, calling: str = "MODALITY", action_type: int = 1,
             instance_uid: str = WELL_KNOWN, transaction: str | None = "auto") -> int:
    scu = AE(ae_title=calling)
    scu.add_requested_context(StorageCommitmentPushModel)
    host, port = live.node.listeners["dicom"]
    assoc = scu.associate(host, port, ae_title=live.settings.dicom_ae_title)
    assert assoc.is_established
    info = Dataset()
    if transaction is not None:
        info.TransactionUID = generate_uid() if transaction == "auto" else transaction
    items = []
    for cls, uid in refs:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = cls, uid
        items.append(item)
    info.ReferencedSOPSequence = items
    try:
        status, _reply = assoc.send_n_action(info, action_type, StorageCommitmentPushModel,
                                             instance_uid)
    finally:
        assoc.release()
    return int(status.Status)


def stored(live, tmp_path, n: int = 2) -> list[tuple[str, str]]:
    study, series = generate_uid(), generate_uid()
    paths = [instance(tmp_path, f"i{k}.dcm", patient_id="P300", patient_name="陈^静",
                      charset="ISO_IR 192", study=study, series=series, number=k)
             for k in range(n)]
    host, port = live.node.listeners["dicom"]
    done = run("storescu", "-aet", "MODALITY", "-aec", live.settings.dicom_ae_title, host,
               str(port), *map(str, paths))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    import pydicom
    return [(CT, str(pydicom.dcmread(p).SOPInstanceUID)) for p in paths]


def commit(live, port: int, refs, **kw):
    """N-ACTION (accepted), then the report the modality listening on ``port`` receives."""
    modality = Modality(port).start()
    try:
        assert n_action(live, refs, **kw) == 0x0000
        return modality.reports.get(timeout=20)
    finally:
        modality.stop()


def test_every_instance_held_is_reported_committed(live, tmp_path, modality_port):
    refs = stored(live, tmp_path)
    event_type, info, caller = commit(live, modality_port, refs)
    assert event_type == 1 and caller == live.settings.dicom_ae_title
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID)
            for i in info.ReferencedSOPSequence] == refs
    assert "FailedSOPSequence" not in info
    assert info.ReferencedSOPSequence[0].RetrieveAETitle == live.settings.dicom_ae_title


def test_missing_and_mismatched_instances_are_reported_failed(live, tmp_path, modality_port):
    refs = stored(live, tmp_path)
    unknown = (CT, generate_uid())
    wrong_class = (SC, refs[1][1])
    event_type, info, _ = commit(live, modality_port, [refs[0], unknown, wrong_class],
                                 transaction="1.2.3.99")
    assert event_type == 2 and info.TransactionUID == "1.2.3.99"
    assert [i.ReferencedSOPInstanceUID for i in info.ReferencedSOPSequence] == [refs[0][1]]
    failed = {i.ReferencedSOPInstanceUID: i.FailureReason for i in info.FailedSOPSequence}
    assert failed == {unknown[1]: 0x0112, refs[1][1]: 0x0119}


def test_a_lost_blob_is_not_committed(live, tmp_path, modality_port):
    refs = stored(live, tmp_path, n=1)
    from dicom_qr.tables import dicom_instance
    with live.node.db.read() as c:
        key = c.execute(sa.select(dicom_instance.c.blob_key)).scalar_one()
    live.node.blobs.path(key).unlink()
    event_type, info, _ = commit(live, modality_port, refs)
    assert event_type == 2 and info.FailedSOPSequence[0].FailureReason == 0x0112


def test_the_report_waits_in_the_outbox_until_the_modality_answers(live, tmp_path,
                                                                   modality_port):
    refs = stored(live, tmp_path, n=1)
    assert n_action(live, refs) == 0x0000          # the modality is not listening yet
    deadline = time.time() + 20
    row = None
    while time.time() < deadline:
        with live.node.db.read() as c:
            row = c.execute(sa.select(t_outbox).where(
                t_outbox.c.kind == "dicom-storage-commitment")).mappings().one()
        if row["attempts"] >= 1:
            break
        time.sleep(0.1)
    assert row["attempts"] >= 1 and row["status"] == "pending" and row["last_error"]
    modality = Modality(modality_port).start()
    try:
        event_type, info, _ = modality.reports.get(timeout=30)
    finally:
        modality.stop()
    assert event_type == 1 and info.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == refs[0][1]


@pytest.mark.parametrize("kwargs, status", [
    ({"calling": "STRANGER"}, 0x0110),            # cannot be called back
    ({"action_type": 2}, 0x0123),
    ({"instance_uid": "1.2.3.4"}, 0x0112),
    ({"transaction": None}, 0x0115),
    ({"refs": []}, 0x0115),
])
def test_bad_requests_get_their_failure_status_and_queue_nothing(live, kwargs, status):
    kwargs = dict(kwargs)                     # shared by the database parameters
    refs = kwargs.pop("refs", [(CT, generate_uid())])
    assert n_action(live, refs, **kwargs) == status
    with live.node.db.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(t_outbox)).scalar() == 0

"""The node's DICOM listener with DCMTK from Debian as the peer (echoscu, storescu, findscu —
by absolute path: pynetdicom installs console scripts of the same names), on SQLite and
PostgreSQL: C-ECHO; C-STORE keeping the bytes as received and indexing them; C-FIND in the
Patient and Study Root models at every level with the matching rules, Chinese names in
UTF-8 / GB18030 / ISO 2022 IR 58 (``张*`` finds 张 and 張, never 章), answers in the query's
character set or in ISO_IR 192; bad input (no UIDs, no QueryRetrieveLevel) gets a DICOM
failure status from a pynetdicom SCU and nothing is indexed; a large instance is moved from its
file a PDU at a time and, received, spooled to a file that becomes its blob."""
from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from dicom_qr import dimse, part10
from dicom_qr.tables import dicom_instance, dicom_patient, dicom_study
from hie.tables import audit_event as t_audit
from tests.dicom_support import CT, DCMTK, SC, find, instance, run
from tests.live import live_node

@pytest.fixture
def stored(live, tmp_path):
    """Four patients' studies sent with storescu, in three character sets (the traditional
    張小紅 in UTF-8: GB 2312, ISO 2022 IR 58's set, has no traditional characters)."""
    files = tmp_path / "files"
    files.mkdir()
    s1, s2, s3, s4 = (generate_uid() for _ in range(4))
    paths = [
        instance(files, "a1.dcm", patient_id="P001", patient_name="Zhang^San=张^三",
                 charset="ISO_IR 192", study=s1, series=generate_uid(), accession="A1"),
        instance(files, "a2.dcm", patient_id="P001", patient_name="Zhang^San=张^三",
                 charset="ISO_IR 192", study=s1, series=generate_uid(), modality="SR",
                 sop_class=SC, number=2, implicit=True),
        instance(files, "b1.dcm", patient_id="P002", patient_name="章^三", charset="GB18030",
                 study=s2, series=generate_uid(), study_date="20250315"),
        instance(files, "c1.dcm", patient_id="P003", patient_name="Zhang^Xiaohong=张^小红",
                 charset="\\ISO 2022 IR 58", study=s3, series=generate_uid(), modality="MR",
                 study_date="20261120"),
        instance(files, "d1.dcm", patient_id="P004", patient_name="張^小紅",
                 charset="ISO_IR 192", study=s4, series=generate_uid(), modality="DX",
                 study_date="20240601"),
    ]
    host, port = live.node.listeners["dicom"]
    done = run("storescu", "-aec", live.settings.dicom_ae_title, host, str(port),
               *map(str, paths))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return {"paths": paths, "studies": (s1, s2, s3, s4), "tmp": tmp_path}


def test_echo(live):
    host, port = live.node.listeners["dicom"]
    done = run("echoscu", "-aec", live.settings.dicom_ae_title, host, str(port))
    assert done.returncode == 0, done.stderr


def test_store_keeps_the_bytes_as_received_and_indexes_them(live, stored):
    db, blobs = live.node.db, live.node.blobs
    with db.read() as c:
        rows = c.execute(sa.select(dicom_instance)).mappings().all()
        names = dict(c.execute(sa.select(dicom_patient.c.patient_id,
                                         dicom_patient.c.patient_name)).all())
    assert len(rows) == 5
    assert names == {"P001": "Zhang^San=张^三", "P002": "章^三",
                     "P003": "Zhang^Xiaohong=张^小红", "P004": "張^小紅"}
    for path in stored["paths"]:
        sent = pydicom.dcmread(path)
        [row] = [r for r in rows if r["sop_uid"] == sent.SOPInstanceUID]
        data = blobs.open(row["blob_key"]).read()
        kept = pydicom.dcmread(blobs.path(row["blob_key"]))
        assert row["transfer_syntax"] == str(sent.file_meta.TransferSyntaxUID)
        # the data set bytes after the file meta are the file's own, byte for byte
        original = path.read_bytes()
        assert data[-(len(original) - _meta_end(original)):] == original[_meta_end(original):]
        assert kept.SOPInstanceUID == sent.SOPInstanceUID and row["size"] == len(data)
        assert row["source_ae"] == "STORESCU"


def _meta_end(data: bytes) -> int:
    """Offset of the data set in a PS3.10 file (after the group 0002 elements)."""
    import struct
    length = struct.unpack("<I", data[140:144])[0]       # (0002,0000) group length value
    return 144 + length


def test_find_study_level_chinese_wildcard_and_return_keys(live, stored):
    s1, s2, s3, s4 = stored["studies"]
    answers = find(live, stored["tmp"], "QueryRetrieveLevel=STUDY",
                   "SpecificCharacterSet=ISO_IR 192", "PatientName=张*", "StudyInstanceUID",
                   "PatientID", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
                   "NumberOfStudyRelatedSeries", "StudyDescription", "AccessionNumber")
    by_study = {a.StudyInstanceUID: a for a in answers}
    assert set(by_study) == {s1, s3, s4}                  # 张 and 張, never 章
    a1 = by_study[s1]
    assert a1.SpecificCharacterSet == "ISO_IR 192" and str(a1.PatientName) == "Zhang^San=张^三"
    assert a1.PatientID == "P001" and a1.AccessionNumber == "A1"
    assert sorted(a1.ModalitiesInStudy) == ["CT", "SR"]
    assert (a1.NumberOfStudyRelatedInstances, a1.NumberOfStudyRelatedSeries) == (2, 2)
    assert a1.StudyDescription == "胸部CT平扫" and a1.RetrieveAETitle == live.settings.dicom_ae_title


@pytest.mark.parametrize("key, expected", [
    ("StudyDate=20260101-20261231", {0, 2}),
    ("StudyDate=-20251231", {1, 3}),
    ("StudyDate=20261120", {2}),
    ("ModalitiesInStudy=MR", {2}),
    ("ModalitiesInStudy=S*", {0}),
    ("ModalitiesInStudy=MR\\DX", {2, 3}),
    ("PatientName=章三", {1}),
    ("PatientName=张小红", {2, 3}),                       # 張小紅 folded
    ("PatientName=ZHANG*", {0, 2}),
    ("PatientName=*", {0, 1, 2, 3}),
    ("PatientID=P00?", {0, 1, 2, 3}),
    ("AccessionNumber=A1", {0}),
])
def test_find_matching_rules(live, stored, key, expected):
    studies = stored["studies"]
    answers = find(live, stored["tmp"], "QueryRetrieveLevel=STUDY",
                   "SpecificCharacterSet=ISO_IR 192", "StudyInstanceUID", key)
    assert {studies.index(a.StudyInstanceUID) for a in answers} == expected


def test_find_uid_list_and_image_level_with_only_the_study(live, stored):
    s1, s2, s3, s4 = stored["studies"]
    answers = find(live, stored["tmp"], "QueryRetrieveLevel=STUDY",
                   f"StudyInstanceUID={s1}\\{s2}")
    assert {a.StudyInstanceUID for a in answers} == {s1, s2}
    images = find(live, stored["tmp"], "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={s1}",
                  "SOPInstanceUID", "SOPClassUID", "InstanceNumber")
    assert sorted(str(a.InstanceNumber) for a in images) == ["1", "2"]
    assert {a.SOPClassUID for a in images} == {CT, SC}


def test_find_patient_root_patient_level(live, stored):
    answers = find(live, stored["tmp"], "QueryRetrieveLevel=PATIENT", "PatientID=P001",
                   "PatientName", "NumberOfPatientRelatedStudies",
                   "NumberOfPatientRelatedInstances", "PatientBirthDate", model="-P")
    [a] = answers
    assert (a.NumberOfPatientRelatedStudies, a.NumberOfPatientRelatedInstances) == (1, 2)
    assert a.PatientBirthDate == "19800101"


def test_find_answers_in_the_query_character_set_when_it_can(live, stored):
    # GB18030 can write 章三: the answer stays in GB18030
    [gb] = find(live, stored["tmp"], "QueryRetrieveLevel=PATIENT", "SpecificCharacterSet=GB18030",
                "PatientID=P002", "PatientName", model="-P")
    assert gb.SpecificCharacterSet == "GB18030" and str(gb.PatientName) == "章^三"
    # the default repertoire cannot: ISO_IR 192, and the name is kept
    [plain] = find(live, stored["tmp"], "QueryRetrieveLevel=PATIENT", "PatientID=P004",
                   "PatientName", model="-P")
    assert plain.SpecificCharacterSet == "ISO_IR 192" and str(plain.PatientName) == "張^小紅"
    # ISO 2022 IR 58 (GB 2312) writes 张小红 but not 張小紅
    [ir58] = find(live, stored["tmp"], "QueryRetrieveLevel=PATIENT",
                  "SpecificCharacterSet=\\ISO 2022 IR 58", "PatientID=P003", "PatientName",
                  model="-P")
    assert list(ir58.SpecificCharacterSet) == ["", "ISO 2022 IR 58"]
    assert str(ir58.PatientName) == "Zhang^Xiaohong=张^小红"


def test_bad_input_gets_dicom_failure_statuses(live, tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
    host, port = live.node.listeners["dicom"]
    ae = AE(ae_title="NEGATIVE")
    ae.add_requested_context(CT)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(host, port, ae_title=live.settings.dicom_ae_title)
    assert assoc.is_established
    try:
        bad = Dataset()
        bad.file_meta = FileMetaDataset()
        bad.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        bad.SOPClassUID, bad.SOPInstanceUID = CT, generate_uid()
        bad.PatientID, bad.PatientName = "P404", "无^名"
        bad.SpecificCharacterSet = "ISO_IR 192"
        status = assoc.send_c_store(bad)                  # no Study / Series UID
        assert status.Status == 0xC000
        query = Dataset()
        query.PatientName = "*"                           # no QueryRetrieveLevel
        [(status, identifier)] = list(assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind))
        assert status.Status == 0xA900 and identifier is None
    finally:
        assoc.release()
    with live.node.db.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(dicom_study)).scalar() == 0
    done = run("echoscu", "-aec", live.settings.dicom_ae_title, host, str(port))
    assert done.returncode == 0                           # the listener goes on
    live.node.audit.stop()              # flushes the batched audit writer (joins it)
    with live.node.db.read() as c:
        audited = c.execute(sa.select(t_audit.c.transaction, t_audit.c.outcome).where(
            t_audit.c.transaction.in_(["C-STORE", "C-FIND"]))).all()
    assert sorted(tuple(a) for a in audited) == [("C-FIND", 8), ("C-STORE", 8)]


def test_store_and_find_are_audited(live, stored):
    find(live, stored["tmp"], "QueryRetrieveLevel=STUDY", "PatientID=P001", "StudyInstanceUID")
    live.node.audit.stop()              # flushes the batched audit writer (joins it)
    with live.node.db.read() as c:
        rows = c.execute(sa.select(t_audit.c.transaction, t_audit.c.outcome,
                                   t_audit.c.patient_id)).all()
    stores = [r for r in rows if r.transaction == "C-STORE"]
    assert len(stores) == 5 and all(r.outcome == 0 for r in stores)
    assert {r.patient_id for r in stores} >= {"P001^^^BJXH"}
    assert [(r.outcome, r.patient_id) for r in rows if r.transaction == "C-FIND"] == \
        [(0, "P001")]


# -- C-MOVE and C-GET ------------------------------------------------------------------------

@pytest.fixture
def with_peer(settings, tmp_path):
    """A node whose HIE_DICOM_PEERS names DCMTK's storescp (DEST), listening into a folder."""
    import dataclasses
    import socket
    import time
    from hie.node import Node
    from hie.settings import Peer
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    received = tmp_path / "received"
    received.mkdir()
    scp = subprocess.Popen([str(DCMTK / "storescp"), "-aet", "DEST", "-od", str(received),
                            str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while run("echoscu", "-aec", "DEST", "127.0.0.1", str(port)).returncode != 0:
        assert time.time() < deadline, "storescp did not start"
        time.sleep(0.1)
    configured = dataclasses.replace(settings, dicom_peers=(Peer("DEST", "127.0.0.1", port),))
    node = Node(configured, create_schema=False)
    try:
        with live_node(configured, node) as ln:
            yield ln, received
    finally:
        node.close()
        scp.terminate()
        scp.wait(10)


def _store_two_studies(live, folder: Path) -> tuple[str, str, list[Path]]:
    s1, s2 = generate_uid(), generate_uid()
    series = generate_uid()
    paths = [instance(folder, f"m{n}.dcm", patient_id="P010", patient_name="王^小明",
                      charset="ISO_IR 192", study=s1, series=series, number=n) for n in (1, 2, 3)]
    paths.append(instance(folder, "m9.dcm", patient_id="P011", patient_name="李^四",
                          charset="ISO_IR 192", study=s2, series=generate_uid()))
    host, port = live.node.listeners["dicom"]
    done = run("storescu", "-aec", live.settings.dicom_ae_title, host, str(port), *map(str, paths))
    assert done.returncode == 0, done.stderr
    return s1, s2, paths


def test_move_sends_the_study_to_a_known_peer(with_peer, tmp_path):
    live, received = with_peer
    s1, _, paths = _store_two_studies(live, tmp_path)
    host, port = live.node.listeners["dicom"]
    done = run("movescu", "-S", "-aec", live.settings.dicom_ae_title, "-aem", "DEST",
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={s1}", host, str(port))
    assert done.returncode == 0, done.stderr
    got = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in received.iterdir()}
    sent = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in paths[:3]}
    assert set(got) == set(sent)                      # the study's three, not P011's
    for uid, ds in got.items():
        assert str(ds.PatientName) == "王^小明" and ds.PixelData == sent[uid].PixelData


def test_move_to_an_unknown_destination_is_a801_and_get_returns_instances(with_peer, tmp_path):
    from pynetdicom import AE, build_role
    from pynetdicom.sop_class import (StudyRootQueryRetrieveInformationModelGet,
                                      StudyRootQueryRetrieveInformationModelMove)
    live, _ = with_peer
    s1, s2, paths = _store_two_studies(live, tmp_path)
    host, port = live.node.listeners["dicom"]
    ae = AE(ae_title="RETRIEVER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CT)
    got: list = []

    def on_store(event):
        got.append(event.dataset)
        return 0x0000
    from pynetdicom import evt
    assoc = ae.associate(host, port, ae_title=live.settings.dicom_ae_title,
                         ext_neg=[build_role(CT, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        query = Dataset()
        query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", s2
        [(status, _)] = list(assoc.send_c_move(query, "NOBODY",
                                               StudyRootQueryRetrieveInformationModelMove))
        assert status.Status == 0xA801
        answers = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
        assert answers[-1][0].Status == 0x0000
        assert answers[-1][0].NumberOfCompletedSuboperations == 1
        nothing = Dataset()
        nothing.QueryRetrieveLevel, nothing.StudyInstanceUID = "STUDY", generate_uid()
        final = list(assoc.send_c_get(nothing, StudyRootQueryRetrieveInformationModelGet))[-1][0]
        assert final.Status == 0x0000 and final.get("NumberOfCompletedSuboperations", 0) == 0
    finally:
        assoc.release()
    assert [str(d.PatientName) for d in got] == ["李^四"]
    live.node.audit.stop()              # flushes the batched audit writer (joins it)
    with live.node.db.read() as c:
        audited = c.execute(sa.select(t_audit.c.transaction, t_audit.c.outcome).where(
            t_audit.c.transaction.in_(["C-MOVE", "C-GET"]))).all()
    assert sorted(tuple(a) for a in audited) == [("C-GET", 0), ("C-GET", 0), ("C-MOVE", 8)]


def test_getscu_retrieves_a_series(with_peer, tmp_path):
    live, _ = with_peer
    s1, _, paths = _store_two_studies(live, tmp_path)
    series = pydicom.dcmread(paths[0]).SeriesInstanceUID
    out = tmp_path / "got"
    out.mkdir()
    host, port = live.node.listeners["dicom"]
    done = run("getscu", "-S", "-aec", live.settings.dicom_ae_title, "-od", str(out),
               "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={s1}",
               "-k", f"SeriesInstanceUID={series}", host, str(port))
    assert done.returncode == 0, done.stderr
    assert len(list(out.iterdir())) == 3


def test_a_large_instance_is_moved_from_its_file_a_pdu_at_a_time(with_peer, tmp_path,
                                                                  monkeypatch):
    from dicom_qr import retrieve
    live, received = with_peer
    monkeypatch.setattr(retrieve, "READ_WHOLE", 100_000)      # 320 KB counts as large here
    path = instance(tmp_path, "big.dcm", patient_id="P012", patient_name="赵^云",
                    charset="ISO_IR 192", study=generate_uid(), series=generate_uid())
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 400
    ds.PixelData = bytes(range(256)) * 1250                  # 320,000 octets of pixels
    ds.save_as(path, enforce_file_format=True)
    host, port = live.node.listeners["dicom"]
    done = run("storescu", "-aec", live.settings.dicom_ae_title, host, str(port), str(path))
    assert done.returncode == 0, done.stderr
    reads: list[int] = []
    real_open = live.node.blobs.open

    class Counted:
        def __init__(self, fh):
            self._fh = fh

        def read(self, size=-1):
            got = self._fh.read(size)
            reads.append(len(got))
            return got

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    monkeypatch.setattr(live.node.blobs, "open", lambda key: Counted(real_open(key)))
    done = run("movescu", "-S", "-aec", live.settings.dicom_ae_title, "-aem", "DEST",
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
               host, str(port))
    assert done.returncode == 0, done.stderr
    [got] = list(received.iterdir())
    assert pydicom.dcmread(got).PixelData == ds.PixelData
    assert sum(reads) > 320_000 and max(reads) <= 16384     # storescp's Maximum Length


def test_a_data_set_past_the_spill_size_is_spooled_not_held(with_peer, tmp_path, monkeypatch):
    from dicom_qr import receive
    live, _ = with_peer
    monkeypatch.setattr(live.server.dicom.server, "spill_at", 100_000)   # new associations
    spools: list = []
    real = receive.Spool

    class Watched(real):
        def __init__(self, *args):
            super().__init__(*args)
            spools.append(self)

    monkeypatch.setattr(receive, "Spool", Watched)
    big = instance(tmp_path, "big.dcm", patient_id="P013", patient_name="马^超",
                   charset="ISO_IR 192", study=generate_uid(), series=generate_uid())
    ds = pydicom.dcmread(big)
    ds.Rows = ds.Columns = 400
    ds.PixelData = bytes(range(256)) * 1250                  # 320,000 octets: past 100,000
    ds.save_as(big, enforce_file_format=True)
    small = instance(tmp_path, "small.dcm", patient_id="P013", patient_name="马^超",
                     charset="ISO_IR 192", study=ds.StudyInstanceUID,
                     series=ds.SeriesInstanceUID, number=2)
    host, port = live.node.listeners["dicom"]
    done = run("storescu", "-aec", live.settings.dicom_ae_title, host, str(port), str(big),
               str(small))
    assert done.returncode == 0, done.stderr
    assert len(spools) == 1                                  # the big one only
    assert not Path(spools[0].path).exists()                 # removed once served
    with live.node.db.read() as c:
        rows = dict(c.execute(sa.select(dicom_instance.c.sop_uid,
                                        dicom_instance.c.blob_key)).all())
    with live.node.blobs.open(rows[str(ds.SOPInstanceUID)]) as fh:
        kept = fh.read()
    assert part10.data_set(kept)[1] == part10.data_set(big.read_bytes())[1]   # as sent
    assert pydicom.dcmread(io.BytesIO(kept)).PatientName == "马^超"
    assert str(pydicom.dcmread(io.BytesIO(kept)).file_meta.SourceApplicationEntityTitle) \
        == "STORESCU"
    assert not list(live.node.blobs.temp_folder.glob("spool-*"))


def test_an_association_that_ends_mid_data_set_leaves_no_spool(with_peer, tmp_path,
                                                               monkeypatch):
    import socket as _socket
    from dicom_qr import pdu as _pdu, ul as _ul
    live, _ = with_peer
    monkeypatch.setattr(live.server.dicom.server, "spill_at", 10_000)
    host, port = live.node.listeners["dicom"]
    assoc = _ul.request_association(host, port, "CUTSHORT", live.settings.dicom_ae_title,
                                    [(CT, ["1.2.840.10008.1.2.1"])])
    command = dimse.encode_command({"AffectedSOPClassUID": CT, "CommandField": dimse.C_STORE_RQ,
                                    "MessageID": 1, "Priority": 0,
                                    "AffectedSOPInstanceUID": generate_uid(),
                                    "CommandDataSetType": dimse.HAS_DATA_SET})
    assoc.sock.sendall(_pdu.encode_pdata([_pdu.Pdv(1, True, True, command)]))
    for _ in range(4):                                      # 4 × 8,000 octets, never the last
        assoc.sock.sendall(_pdu.encode_pdata([_pdu.Pdv(1, False, False, b"\x00" * 8000)]))
    deadline = time.time() + 10
    while not list(live.node.blobs.temp_folder.glob("spool-*")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(live.node.blobs.temp_folder.glob("spool-*"))     # spooling, mid-message
    assoc.sock.shutdown(_socket.SHUT_RDWR)
    assoc.sock.close()
    while list(live.node.blobs.temp_folder.glob("spool-*")) and time.time() < deadline:
        time.sleep(0.05)
    assert not list(live.node.blobs.temp_folder.glob("spool-*"))

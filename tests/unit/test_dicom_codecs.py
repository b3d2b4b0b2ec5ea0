"""The node's DICOM Upper Layer codecs in memory: PDUs (PS3.8 9.3), DIMSE command sets and their
fragmentation (PS3.7 6.3, E; PS3.8 Annex E), association negotiation (PS3.8 9.3.2 - 9.3.4,
PS3.7 D.3.3.4) and the PS3.10 framing of received data sets — checked against pynetdicom's and
pydicom's own encoders, which were written independently from the same standard."""
from __future__ import annotations

import struct
from io import BytesIO

import pydicom
import pytest
from hypothesis import given, settings, strategies as st
from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_FIND_RSP as PN_C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.pdu import A_ASSOCIATE_RQ as PN_A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (A_ASSOCIATE, MaximumLengthNotification,
                                       SCP_SCU_RoleSelectionNegotiation)
from pynetdicom.presentation import build_context

from dicom_qr import acse, dimse, part10, pdu, ul

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
VERIFICATION = "1.2.840.10008.1.1"


def _pynetdicom_rq(contexts, roles=()) -> bytes:
    """An A-ASSOCIATE-RQ as pynetdicom encodes it."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title, primitive.called_ae_title = "MODALITY", "HIE"
    cxs = []
    for n, (abstract, syntaxes) in enumerate(contexts):
        cx = build_context(abstract, syntaxes)
        cx.context_id = 2 * n + 1
        cxs.append(cx)
    primitive.presentation_context_definition_list = cxs
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    user = [max_length]
    for sop_class, scu, scp in roles:
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid, role.scu_role, role.scp_role = sop_class, scu, scp
        user.append(role)
    primitive.user_information = user
    rq = PN_A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    return rq.encode()


def _decode(raw: bytes):
    kind, length = pdu.header(raw[:6], 1 << 20)
    assert length == len(raw) - 6
    return pdu.decode(kind, raw[6:])


def test_an_association_request_of_pynetdicom_is_read():
    rq = _decode(_pynetdicom_rq([(CT, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]),
                                 (FIND, ["1.2.840.10008.1.2"])], roles=[(CT, False, True)]))
    assert isinstance(rq, pdu.AssociateRQ)
    assert (rq.called, rq.calling, rq.version) == ("HIE", "MODALITY", 1)
    assert rq.application_context == pdu.APPLICATION_CONTEXT
    assert [(c.id, c.abstract_syntax, c.transfer_syntaxes) for c in rq.contexts] == [
        (1, CT, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]), (3, FIND, ["1.2.840.10008.1.2"])]
    assert rq.user.max_length == 16384
    assert rq.user.roles == [pdu.Role(CT, False, True)]


def test_every_pdu_survives_encoding_and_decoding():
    user = pdu.UserInformation(max_length=65536, implementation_class="1.2.3.4",
                               implementation_version="HIE_TEST", window=(1, 1),
                               roles=[pdu.Role(CT, True, True)], other=[(0x58, b"\x01\x00")])
    pdus = [
        pdu.AssociateRQ("HIE", "CT01", pdu.APPLICATION_CONTEXT,
                        [pdu.ProposedContext(1, CT, ["1.2.840.10008.1.2"])], user),
        pdu.AssociateAC("HIE", "CT01", pdu.APPLICATION_CONTEXT,
                        [pdu.AcceptedContext(1, 0, "1.2.840.10008.1.2"),
                         pdu.AcceptedContext(3, 3, "1.2.840.10008.1.2")], user),
        pdu.AssociateRJ(1, 1, 7), pdu.ReleaseRQ(), pdu.ReleaseRP(), pdu.Abort(2, 6),
    ]
    for p in pdus:
        assert _decode(pdu.encode(p)) == p
    pdata = pdu.PData([pdu.Pdv(1, True, True, b"\x01\x02"), pdu.Pdv(1, False, False, b"xyz0")])
    got = _decode(pdu.encode(pdata))
    assert [(v.context_id, v.command, v.last, bytes(v.data)) for v in got.pdvs] == [
        (1, True, True, b"\x01\x02"), (1, False, False, b"xyz0")]


@pytest.mark.parametrize("raw, reason", [
    (b"\x09\x00" + struct.pack(">I", 4) + bytes(4), pdu.UNRECOGNIZED_PDU),      # no such type
    (b"\x05\x00" + struct.pack(">I", 6) + bytes(6), pdu.INVALID_PARAMETER),     # RELEASE of 6
    (b"\x04\x00" + struct.pack(">I", 0), pdu.INVALID_PARAMETER),                # no PDV
    (b"\x04\x00" + struct.pack(">I", 6) + struct.pack(">I", 9) + b"\x01\x03",   # PDV too long
     pdu.INVALID_PARAMETER),
    (b"\x01\x00" + struct.pack(">I", 10) + bytes(10), pdu.INVALID_PARAMETER),   # RQ too short
])
def test_bytes_that_are_no_pdu_are_refused_with_their_abort_reason(raw, reason):
    with pytest.raises(pdu.PduError) as caught:
        kind, _ = pdu.header(raw[:6], 1 << 20)
        pdu.decode(kind, raw[6:])
    assert caught.value.reason == reason


def test_a_pdu_larger_than_the_node_takes_is_refused_from_its_header():
    with pytest.raises(pdu.PduError):
        pdu.header(b"\x01\x00" + struct.pack(">I", 0xFFFFFFF0), 1 << 20)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_no_bytes_make_the_decoders_fail_otherwise_than_with_their_own_errors(raw):
    for kind in (1, 2, 3, 4, 5, 6, 7):
        try:
            pdu.decode(kind, raw)
        except pdu.PduError:
            pass
    try:
        dimse.decode_command(raw)
    except dimse.DimseError:
        pass


def test_a_command_set_reads_as_pynetdicom_writes_it_and_the_other_way():
    primitive = C_FIND()
    primitive.MessageIDBeingRespondedTo, primitive.AffectedSOPClassUID = 7, FIND
    primitive.Status = 0xFF00
    msg = PN_C_FIND_RSP()
    msg.primitive_to_message(primitive)
    pn_bytes = msg.encode_msg(1, 0)
    command_pdv = next(iter(pn_bytes)).presentation_data_value_list[0][1][1:]
    got = dimse.decode_command(command_pdv)
    assert got["CommandField"] == dimse.C_FIND_RSP and got["Status"] == 0xFF00
    assert got["MessageIDBeingRespondedTo"] == 7 and got["AffectedSOPClassUID"] == FIND
    ours = dimse.encode_command({"AffectedSOPClassUID": FIND, "CommandField": dimse.C_FIND_RSP,
                                 "MessageIDBeingRespondedTo": 7, "Status": 0xFF00,
                                 "CommandDataSetType": dimse.HAS_DATA_SET})
    ds = pydicom.filereader.read_dataset(BytesIO(ours), True, True)
    assert ds.CommandGroupLength == len(ours) - 12
    assert (ds.CommandField, ds.Status, ds.AffectedSOPClassUID) == (0x8020, 0xFF00, FIND)


@pytest.mark.parametrize("max_length", [0, 64, 100, 4096])
def test_a_message_cut_into_pdvs_is_put_together_again(max_length):
    data = bytes(range(256)) * 3 + b"\x00"
    message = dimse.Message(5, {"AffectedSOPClassUID": CT, "CommandField": dimse.C_STORE_RQ,
                                "MessageID": 9, "Priority": 0,
                                "AffectedSOPInstanceUID": "1.2.3.4.5"}, data)
    raws = dimse.fragments(message, max_length)
    assembler, done = dimse.Assembler(), []
    for raw in raws:
        p = _decode(raw)
        assert not max_length or len(raw) - 6 <= max_length
        done += assembler.feed(p)
    assert len(done) == 1
    assert done[0].data == data and done[0].context_id == 5
    assert done[0].command["AffectedSOPInstanceUID"] == "1.2.3.4.5"
    assert done[0].message_id == 9 and done[0].field == dimse.C_STORE_RQ
    if max_length == 0:
        assert len(raws) == 1           # command and data set in one PDU


@pytest.mark.parametrize("max_length", [0, 64, 100, 4096, 1 << 20])
@pytest.mark.parametrize("size", [0, 1, 769, 70_000])
def test_a_data_set_sent_from_its_file_makes_the_same_pdus(max_length, size, tmp_path):
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    path = tmp_path / "instance"
    path.write_bytes(b"HEAD" * 10 + data + b"TAIL")
    command = {"AffectedSOPClassUID": CT, "CommandField": dimse.C_STORE_RQ, "MessageID": 3,
               "Priority": 0, "AffectedSOPInstanceUID": "1.2.3"}
    with open(path, "rb") as fh:
        region = ul.Region(fh, 40, size)
        streamed = list(dimse.pdus(dimse.Message(1, command, region), max_length))
    assert streamed == dimse.fragments(dimse.Message(1, command, data), max_length)


class _MemorySpool:
    def __init__(self):
        self.buffer, self.discarded = BytesIO(), False

    def write(self, data):
        self.buffer.write(data)

    def region(self):
        return ul.Region(self.buffer, 0, len(self.buffer.getvalue()), "spool")

    def discard(self):
        self.discarded = True


@pytest.mark.parametrize("take", [True, False])
def test_a_data_set_past_the_spill_size_goes_on_into_the_spool(take):
    data = bytes(range(256)) * 40
    message = dimse.Message(1, {"AffectedSOPClassUID": CT, "CommandField": dimse.C_STORE_RQ,
                                "MessageID": 2, "Priority": 0,
                                "AffectedSOPInstanceUID": "1.2.3"}, data)
    spools: list[_MemorySpool] = []

    def spool(msg):
        assert msg.command["AffectedSOPInstanceUID"] == "1.2.3"
        spools.append(_MemorySpool())
        return spools[-1] if take else None

    assembler, done = dimse.Assembler(spill_at=3000, spool=spool), []
    for raw in dimse.fragments(message, 1024):
        done += assembler.feed(_decode(raw))
    [got] = done
    if take:
        assert len(spools) == 1 and isinstance(got.data, ul.Region)
        assert got.data.read(0, got.data.length) == data
    else:
        assert len(spools) == 1 and got.data == data     # asked once, then kept in memory
    # the next message starts afresh: small, in memory
    for raw in dimse.fragments(dimse.Message(1, message.command, b"small"), 1024):
        done += assembler.feed(_decode(raw))
    assert done[-1].data == b"small"


def test_a_spool_left_unfinished_is_discarded():
    spool = _MemorySpool()
    message = dimse.Message(1, {"AffectedSOPClassUID": CT, "CommandField": dimse.C_STORE_RQ,
                                "MessageID": 2, "Priority": 0,
                                "AffectedSOPInstanceUID": "1.2.3"}, b"x" * 5000)
    assembler = dimse.Assembler(spill_at=1000, spool=lambda m: spool)
    for raw in dimse.fragments(message, 1024)[:-1]:        # never the last fragment
        assert assembler.feed(_decode(raw)) == []
    assembler.discard()
    assert spool.discarded


def test_a_file_shorter_than_its_region_is_an_os_error(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"x" * 100)
    with open(path, "rb") as fh:
        message = dimse.Message(1, {"CommandField": dimse.C_STORE_RQ, "MessageID": 1},
                                ul.Region(fh, 0, 5000))
        with pytest.raises(OSError):
            list(dimse.pdus(message, 1024))


def test_a_data_set_fragment_before_its_command_is_refused():
    with pytest.raises(dimse.DimseError):
        dimse.Assembler().feed(pdu.PData([pdu.Pdv(1, False, True, b"\x00\x00")]))


def _offer() -> acse.Offer:
    syntaxes = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50")
    return acse.Offer({CT: syntaxes, FIND: syntaxes[:2], VERIFICATION: syntaxes[:2]},
                      frozenset({CT}), 1 << 20)


def _rq(contexts, roles=(), app=pdu.APPLICATION_CONTEXT, version=1) -> pdu.AssociateRQ:
    return pdu.AssociateRQ("HIE", "CT01", app,
                           [pdu.ProposedContext(2 * n + 1, a, ts)
                            for n, (a, ts) in enumerate(contexts)],
                           pdu.UserInformation(max_length=32768, roles=list(roles)), version)


def test_negotiation_takes_the_node_s_preferred_syntax_and_refuses_what_it_does_not_serve():
    ac, agreed = acse.negotiate(_rq([
        (CT, ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1"]),    # → explicit (node's order)
        (CT, ["1.2.840.10008.1.2.4.50"]),                           # → JPEG baseline as sent
        ("1.2.3.4", ["1.2.840.10008.1.2"]),                         # not served
        (FIND, ["1.2.840.10008.1.2.2"]),                            # no syntax the node takes
    ], roles=[pdu.Role(CT, False, True), pdu.Role(FIND, True, False)]), _offer())
    assert [(c.id, c.result, c.transfer_syntax) for c in ac.contexts] == [
        (1, 0, "1.2.840.10008.1.2.1"), (3, 0, "1.2.840.10008.1.2.4.50"),
        (5, pdu.ABSTRACT_SYNTAX_NOT_SUPPORTED, "1.2.840.10008.1.2"),
        (7, pdu.TRANSFER_SYNTAXES_NOT_SUPPORTED, "1.2.840.10008.1.2.2")]
    assert set(agreed.contexts) == {1, 3} and agreed.peer_max_length == 32768
    # the storage class's role is answered (a C-GET may send on it); FIND's is not
    assert ac.user.roles == [pdu.Role(CT, False, True)] and agreed.requester_scp == {CT}
    assert ac.user.implementation_class == part10.IMPLEMENTATION_CLASS_UID


@pytest.mark.parametrize("rq, busy, expected", [
    (_rq([(CT, ["1.2.840.10008.1.2"])], app="1.2.3"), False,
     pdu.AssociateRJ(pdu.REJECTED_PERMANENT, pdu.RJ_USER, pdu.CONTEXT_NOT_SUPPORTED)),
    (_rq([(CT, ["1.2.840.10008.1.2"])], version=2), False,
     pdu.AssociateRJ(pdu.REJECTED_PERMANENT, pdu.RJ_ACSE, pdu.PROTOCOL_VERSION_NOT_SUPPORTED)),
    (_rq([(CT, ["1.2.840.10008.1.2"])]), True,
     pdu.AssociateRJ(pdu.REJECTED_TRANSIENT, pdu.RJ_PRESENTATION, pdu.LOCAL_LIMIT_EXCEEDED)),
])
def test_negotiation_rejects_as_ps3_8_says(rq, busy, expected):
    answer, agreed = acse.negotiate(rq, _offer(), busy=busy)
    assert answer == expected and agreed is None


def test_a_received_data_set_becomes_a_dicom_file_unchanged_and_is_found_in_it_again():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID = "张^三", "P001"
    ds.SOPClassUID, ds.SOPInstanceUID = CT, "1.2.3.4.5.6"
    ds.PixelData = b"\x00\x01" * 8
    ds["PixelData"].VR = "OW"
    for syntax in (part10.IMPLICIT_LE, part10.EXPLICIT_LE, part10.DEFLATED_LE,
                   part10.EXPLICIT_BE):
        data = part10.write(ds, syntax)
        kept = part10.file_bytes(CT, "1.2.3.4.5.6", syntax, data, "CT01")
        assert part10.data_set(kept) == (syntax, memoryview(data))
        read = pydicom.dcmread(BytesIO(kept))
        assert read.file_meta.TransferSyntaxUID == syntax
        assert read.file_meta.SourceApplicationEntityTitle == "CT01"
        assert read.file_meta.ImplementationClassUID == part10.IMPLEMENTATION_CLASS_UID
        assert read.PatientName == "张^三" and read.PixelData == ds.PixelData
        header = part10.read(data, syntax, stop_before_pixels=True)
        assert header.PatientName == "张^三" and "PixelData" not in header
    with pytest.raises(ValueError):
        part10.data_set(b"\x00" * 200)


@pytest.mark.parametrize("charset, name", [
    ("ISO_IR 192", "Zhang^San=张^三"), ("GB18030", "章^三"),
    ("\\ISO 2022 IR 58", "Zhang^Xiaohong=张^小红"),
    ("", "ZHANG^SAN"),
])
def test_an_answer_written_by_the_node_is_byte_for_byte_what_pydicom_writes(charset, name):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = name, "P001", ""
    ds.StudyInstanceUID, ds.StudyDate = "1.2.156.3", "20261202"
    ds.StudyDescription = "胸部CT平扫" if charset else "CHEST"
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.NumberOfStudyRelatedInstances = "12"
    ds.RetrieveAETitle = "HIE"
    for syntax in (part10.IMPLICIT_LE, part10.EXPLICIT_LE):
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = syntax == part10.IMPLICIT_LE, True
        write_dataset(fp, ds)
        assert part10.write(ds, syntax) == fp.getvalue()
        assert part10.read(part10.write(ds, syntax), syntax).PatientName == name


@pytest.mark.parametrize("charset, name, description", [
    ("ISO_IR 192", "Zhang^San=张^三", "胸部CT平扫"), ("GB18030", "章^三", "头颅MR"),
    ("\\ISO 2022 IR 58", "Zhang^Xiaohong=张^小红", "腹部"), ("", "WANG^WU", "CHEST"),
])
def test_the_index_reads_raw_elements_as_pydicom_decodes_them(charset, name, description):
    from dicom_qr.attrs import index_values
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = name, " P001 ", "BJXH"
    ds.PatientBirthDate, ds.PatientSex = "19800101", "M"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.156.3", "1.2.156.3.1"
    ds.SOPInstanceUID, ds.SOPClassUID = "1.2.156.3.1.1", CT
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20261202", "093000", "A1"
    ds.StudyDescription, ds.ReferringPhysicianName = description, name
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, 12
    for syntax in (part10.IMPLICIT_LE, part10.EXPLICIT_LE):
        raw = part10.read(part10.write(ds, syntax), syntax)
        fresh = index_values(raw)                      # from the raw bytes
        decoded = part10.read(part10.write(ds, syntax), syntax)
        for _ in decoded:                              # every element decoded by pydicom
            pass
        assert fresh == index_values(decoded)
        assert fresh["patient"]["patient_name"] == name
        assert fresh["patient"]["patient_id"] == "P001"
        assert fresh["study"]["description"] == description
        assert fresh["series"]["series_number"] == "3"
        assert fresh["study"]["charset"] == charset

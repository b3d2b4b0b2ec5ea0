"""The index's elements read straight from a data set's bytes (dicom_qr.header) against pydicom's
reading of the same bytes — implicit and explicit VR little endian, sequences and items of
defined and undefined length, an explicit UN of undefined length, Chinese names in GB18030 — and
its refusals: truncated data, syntaxes it does not walk, bytes that are no data set."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from dicom_qr import attrs, header, part10, receive

IMPLICIT, EXPLICIT = part10.IMPLICIT_LE, part10.EXPLICIT_LE


def _instance(charset: str = "GB18030", undefined: bool = False) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.156.1.2.3.4.5"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.Modality = "20261207", "083000", "A9", "CT"
    ds.StudyDescription = "胸部CT平扫"
    ds.ReferringPhysicianName = "李^医生"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "1", "99HIE", "胸部"
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3"
    inner.PurposeOfReferenceCodeSequence = Sequence([code])
    ds.ReferencedImageSequence = Sequence([inner, Dataset()])
    ds.PatientName = "WANG^XIAOMING=王^小明"
    ds.PatientID, ds.IssuerOfPatientID = "110101199003077777", "BJXH"
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = "H0001", "1.2.156.112604.1"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.PatientBirthDate, ds.PatientSex = "19900307", "M"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.156.1.2", "1.2.156.1.2.3"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "S1", 2, 7
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.SamplesPerPixel = 16, 1
    ds.PixelData = b"\x00\x01" * 4
    if undefined:
        for keyword in ("ReferencedImageSequence", "OtherPatientIDsSequence"):
            ds[keyword].is_undefined_length = True
            for item in ds[keyword].value:
                item.is_undefined_length_sequence_item = True
        inner["PurposeOfReferenceCodeSequence"].is_undefined_length = True
    return ds


def _elements(data, syntax, wanted):
    return header.walk(data, syntax, wanted)[0]


def _bytes(ds: Dataset, syntax: str) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, syntax == IMPLICIT
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT])
@pytest.mark.parametrize("undefined", [False, True])
def test_the_walk_gives_what_pydicom_reads(syntax, undefined):
    data = _bytes(_instance(undefined=undefined), syntax)
    if undefined:
        assert b"\xfe\xff\xdd\xe0" in data            # sequence delimiters really written
    raw = _elements(data, syntax, attrs.INDEXED_TAGS)
    expected = attrs.index_values(part10.read(data, syntax, stop_before_pixels=True))
    assert attrs.index_values(raw) == expected
    assert expected["patient"]["name_norm"] == "王小明"
    assert expected["study"]["description"] == "胸部CT平扫"
    assert expected["instance"]["instance_number"] == "7"
    _, end = header.walk(data, syntax, attrs.INDEXED_TAGS)
    assert end < data.index(b"\xe0\x7f\x10\x00")     # stopped before the pixel data
    assert attrs.index_values(part10.read(data[:end], syntax)) == expected


def test_a_beginning_that_does_not_walk_is_read_whole():
    data = _bytes(_instance(undefined=True), IMPLICIT)
    whole = receive.Received.read(data, IMPLICIT)
    asked: list[int] = []
    cut = receive.Received.read(data[:150], IMPLICIT,
                                lambda: asked.append(1) or data)     # cut inside an element
    assert asked == [1] and cut.levels == whole.levels
    assert str(cut.dataset().PatientName) == str(whole.dataset().PatientName)


def test_an_explicit_un_of_undefined_length_is_stepped_over():
    # (0009,1010) UN of undefined length holding one item of Implicit VR LE (PS3.5 6.2.2)
    item = struct.pack("<HHI", 0x0009, 0x1011, 4) + b"abcd"
    un = (struct.pack("<HH2sHI", 0x0009, 0x1010, b"UN", 0, 0xFFFFFFFF)
          + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + item
          + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    uid = b"1.2.3.4\x00"
    data = (struct.pack("<HH2sH", 0x0008, 0x0018, b"UI", len(uid)) + uid + un
            + struct.pack("<HH2sH", 0x0010, 0x0020, b"LO", 4) + b"P001")
    assert _elements(data, EXPLICIT, attrs.INDEXED_TAGS) == {0x00080018: uid,
                                                                     0x00100020: b"P001"}


def test_the_walk_stops_after_the_last_wanted_tag():
    data = _bytes(_instance(), EXPLICIT)
    # whatever follows (0020,0013) is never read: a broken tail does not matter
    assert _elements(data + b"\xff" * 7, EXPLICIT, attrs.INDEXED_TAGS)[0x00200013] == b"7 "


@pytest.mark.parametrize("cut", [3, 10, 100, 200])
def test_a_truncated_data_set_does_not_walk(cut):
    data = _bytes(_instance(undefined=True), IMPLICIT)
    with pytest.raises(header.HeaderError):
        _elements(data[:cut], IMPLICIT, attrs.INDEXED_TAGS | {0x7FE00010})


@pytest.mark.parametrize("syntax", [part10.DEFLATED_LE, part10.EXPLICIT_BE])
def test_syntaxes_not_walked_are_left_to_pydicom(syntax):
    with pytest.raises(header.HeaderError):
        _elements(b"", syntax, attrs.INDEXED_TAGS)


def test_an_item_where_an_element_belongs_does_not_walk():
    data = struct.pack("<HHI", 0x0008, 0x1140, 0xFFFFFFFF) + struct.pack("<HHI", 0x0008,
                                                                          0x0018, 4) + b"1.2\x00"
    with pytest.raises(header.HeaderError):
        _elements(data, IMPLICIT, attrs.INDEXED_TAGS)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([IMPLICIT, EXPLICIT]))
def test_any_bytes_walk_or_raise_header_error(data, syntax):
    try:
        found = _elements(data, syntax, attrs.INDEXED_TAGS)
    except header.HeaderError:
        return
    assert set(found) <= attrs.INDEXED_TAGS


@pytest.mark.parametrize("charset, name, description", [
    ("ISO_IR 192", "王^小明=王^小明", "胸部CT平扫"),
    ("GB18030", "WANG^XIAOMING=王^小明", "胸部CT平扫"),
    ("GBK", "欧阳^娜娜", "头颅MR增强"),
    ("ISO 2022 IR 6\\ISO 2022 IR 58", "Zhang^San=张^三", "腹部CT"),   # code extensions
    ("", "ZHANG^SAN", "CHEST"),                                        # the default repertoire
])
def test_names_and_texts_decode_as_pydicom_decodes_them(charset, name, description):
    ds = _instance(charset)
    ds.PatientName, ds.StudyDescription = name, description
    if not charset:
        del ds.SpecificCharacterSet
        ds.ReferringPhysicianName = "LI^YISHENG"
        ds.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence[0].CodeMeaning = "CHEST"
    data = _bytes(ds, EXPLICIT)
    values = attrs.index_values(_elements(data, EXPLICIT, attrs.INDEXED_TAGS))
    decoded = part10.read(data, EXPLICIT, stop_before_pixels=True)
    decoded.decode()                                   # pydicom's own decoding of every value
    assert values["patient"]["patient_name"] == str(decoded.PatientName) == name
    assert values["study"]["description"] == str(decoded.StudyDescription) == description
    assert values["study"]["referring"] == str(decoded.ReferringPhysicianName)

"""HL7 v2 codec (HL7 v2.5 chapter 2): delimiters from MSH, escape sequences, repetitions /
components / subcomponents, MSH-18 character sets (UTF-8, GB 18030, 8859, ASCII), building
messages and ACKs with MSA and v2.5 ERR; cross-checked against python-hl7's parser."""
import datetime as dt

import hl7
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from hie.errors import HL7, Hl7Error
from hie.hl7v2 import (DEFAULT_DELIMITERS, Delimiters, ErrorDetail, Field, Hl7ParseError,
                       Repeat, Segment, ack_for_error, build_ack, build_message,
                       build_msh, codec_for, parse, parse_header, parse_text)

ADT = ("MSH|^~\\&|HIS|北京协和医院|HIE|REGION|20240501083000+0800||ADT^A01^ADT_A01|MSG0001|P|2.5"
       "||||||UNICODE UTF-8\r"
       "EVN|A01|20240501083000\r"
       "PID|1||H0001^^^HIS&1.2.156.1&ISO^PI~110101198001010016^^^&2.16.156.10011.1.5&ISO^NI"
       "||张^三^^^^^L~ZHANG^SAN^^^^^P||19800101|M|||东华门街道^^北京市^北京市^100010^CHN^H\r"
       "PV1|1|O\r")


def test_parse_structure_and_paths():
    msg = parse(ADT.encode("utf-8"))
    assert [s.name for s in msg.segments] == ["MSH", "EVN", "PID", "PV1"]
    assert msg.delimiters == DEFAULT_DELIMITERS
    assert msg.encoding == "utf-8" and msg.charset == "UNICODE UTF-8"
    assert (msg.message_type, msg.trigger_event, msg.control_id) == ("ADT", "A01", "MSG0001")
    assert msg.version == "2.5" and msg.processing_id == "P"
    assert msg.get("MSH-1") == "|" and msg.get("MSH-2") == "^~\\&"
    assert msg.get("MSH-4") == "北京协和医院"
    assert msg.get("MSH-9.3") == "ADT_A01"
    assert msg.get("PID-3") == "H0001"
    assert msg.get("PID-3.4.2") == "1.2.156.1"
    assert msg.get("PID-3[2]") == "110101198001010016"
    assert msg.get("PID-3[2].4.1") == "" and msg.get("PID-3[2].4.2") == "2.16.156.10011.1.5"
    assert msg.get("PID-5.1") == "张" and msg.get("PID-5.2") == "三"
    assert msg.get("PID-5[2].1") == "ZHANG"
    assert msg.get("PID-11.3") == "北京市"
    assert msg.get("PID-99") == "" and msg.get("OBX-1") == "" and msg.get("PID[2]-3") == ""
    pid = msg.segment("PID")
    assert len(pid[3].repetitions) == 2
    assert pid[3].component(4).value(1, 2) == "1.2.156.1"
    with pytest.raises(ValueError):
        msg.get("pid-3")


def test_round_trip_is_exact_for_normal_messages():
    msg = parse(ADT.encode("utf-8"))
    assert msg.to_text() == ADT
    assert parse(msg.encode()) == msg


def test_python_hl7_reads_the_same_fields():
    ours = parse(ADT.encode("utf-8"))
    theirs = hl7.parse(ADT)
    assert str(theirs.segment("PID")[3][1][3][1]) == ours.get("PID-3[2].4.2")  # 0-based reps
    assert str(theirs.segment("PID")[5][0][0]) == ours.get("PID-5.1")
    assert str(theirs.segment("MSH")[10]) == ours.control_id


def test_lf_and_crlf_segment_terminators_are_tolerated():
    text = ADT.replace("\r", "\r\n")
    assert parse(text.encode()).segments == parse(ADT.encode()).segments
    assert [s.name for s in parse(ADT.replace("\r", "\n").encode()).segments][-1] == "PV1"


def test_custom_delimiters_from_msh():
    text = "MSH*!@#$*A*B*C*D*20240101**ADT!A08*X1*P*2.5\rPID*1**ID1!!!NS$1.2.3$ISO@ID2!!!NS2*\r"
    msg = parse(text.encode())
    d = msg.delimiters
    assert (d.field, d.component, d.repetition, d.escape, d.subcomponent) == tuple("*!@#$")
    assert msg.trigger_event == "A08"
    assert msg.get("PID-3.4.2") == "1.2.3" and msg.get("PID-3[2].4") == "NS2"
    assert msg.to_text() == text.replace("*\r", "\r")  # trailing empty field dropped
    ack = build_ack(msg, "AA")
    assert ack.to_text().startswith("MSH*!@#$*")
    assert parse(ack.encode()).get("MSA-2") == "X1"


def test_truncation_character_of_v27_is_accepted():
    msg = parse(b"MSH|^~\\&#|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||a\\P\\b^^^X\r")
    assert msg.delimiters.truncation == "#"
    assert msg.get("PID-3") == "a#b"
    assert parse(msg.encode()) == msg


@pytest.mark.parametrize("raw,value", [
    (r"A\F\B", "A|B"), (r"A\S\B", "A^B"), (r"A\T\B", "A&B"), (r"A\R\B", "A~B"),
    (r"C:\E\temp", "C:\\temp"), (r"\H\bold\N\ text", "bold text"),
    ("\\XE5BCA0\\\\XE4B889\\", "张三"), (r"line1\.br\line2", "line1\nline2"),
    (r"x\.sp 2\y", "x\n\ny"), (r"\.ce\title", "title"), (r"a\Zlocal\b", "ab"),
    (r"a\C2842\b", "ab"), (r"lone \ backslash", "lone \\ backslash"),
    ("\\Q\\", "\\Q\\"), ("\\XZZ\\", "\\XZZ\\"), ("no escapes", "no escapes"),
])
def test_unescape(raw, value):
    assert Field.parse(raw).value() == value


def test_escape_then_parse_gives_the_value_back():
    value = "a|b^c&d~e\\f\rg\nh 张三"
    seg = Segment.of("NTE", {3: value})
    encoded = seg.encode(DEFAULT_DELIMITERS)
    assert encoded == "NTE|||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X0D\\g\\X0A\\h 张三"
    msg = build_message([build_msh(message_type=("ADT", "A01")), seg])
    assert parse(msg.encode()).get("NTE-3") == value


def test_hex_escape_decodes_in_the_message_charset():
    gb = "张".encode("gb18030").hex().upper()
    text = f"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5||||||GB 18030-2000\rPID|1||\\X{gb}\\^^^X\r"
    assert parse(text.encode("gb18030")).get("PID-3") == "张"


def test_field_model():
    f = Field.of(Repeat([("1", None, None, ("", "1.2.3", "ISO")), "2"]))
    assert f.encode() == "1^^^&1.2.3&ISO~2"
    assert f.value(1, 4, 2) == "1.2.3" and f.value(2) == "2" and f.value(3) == ""
    assert f.value(0) == ""
    assert Field.parse("a^^~~") == Field.of("a")
    assert not Field.parse("") and not Field.of(None) and Field.of("x")
    assert Field.of(Field.of("x")) == Field.of("x")
    assert str(Field.of(("a", "b"))) == "a^b"


def test_segment_model():
    seg = Segment.of("PID", {3: "X", 5: ("张", "三")})
    assert seg.encode() == "PID|||X||张^三"
    seg[8] = "F"
    assert seg.value(8) == "F" and seg[20] == Field()
    with pytest.raises(ValueError):
        Segment.of("pid")
    with pytest.raises(IndexError):
        seg[0] = "x"


# -- character sets (MSH-18, HL7 Table 0211) ---------------------------------------------------

def _adt(charset: str, name: str = "张三") -> str:
    return (f"MSH|^~\\&|HIS|H|HIE|R|20240101||ADT^A01|C1|P|2.5||||||{charset}\r"
            f"PID|1||1^^^&1.2.3&ISO||{name[0]}^{name[1:]}\r")


def test_gb18030_message():
    raw = _adt("GB 18030-2000").encode("gb18030")
    msg = parse(raw)
    assert msg.encoding == "gb18030" and msg.get("PID-5") == "张"
    assert msg.encode() == raw
    ack = build_ack(msg, "AA")
    assert ack.encoding == "gb18030" and parse(ack.encode()).charset == "GB 18030-2000"


@pytest.mark.parametrize("label", ["GB18030", "gb 18030", "GB 18030-2005", "GBK"])
def test_gb18030_label_variants(label):
    assert parse(_adt(label).encode("gb18030")).get("PID-5.2") == "三"


def test_gb18030_trail_byte_equal_to_a_delimiter_before_msh18():
    # "亅" is 0x81 0x7C in GB 18030: its second byte is '|'
    text = "MSH|^~\\&|亅乗|H|HIE|R|20240101||ADT^A01|C1|P|2.5||||||GB 18030-2000\rPID|1||1^^^X\r"
    msg = parse(text.encode("gb18030"))
    assert msg.get("MSH-3") == "亅乗" and msg.encoding == "gb18030" and msg.control_id == "C1"


def test_no_msh18_utf8_then_gb18030_fallback():
    assert parse(_adt("").encode("utf-8")).encoding == "utf-8"
    msg = parse(_adt("", "李四").encode("gb18030"))
    assert msg.encoding == "gb18030" and msg.get("PID-5") == "李"


def test_8859_and_ascii():
    raw = _adt("8859/1", "Jé").encode("latin-1")
    assert parse(raw).get("PID-5.2") == "é"
    assert parse(_adt("ASCII", "Li").encode("ascii")).encoding == "ascii"
    with pytest.raises(Hl7ParseError) as ei:
        parse(_adt("ASCII").encode("utf-8"))
    assert ei.value.error_code == HL7.DATA_TYPE_ERROR and ei.value.location == "MSH^1^18"
    assert ei.value.header is not None and ei.value.header.control_id == "C1"


def test_unsupported_or_wrong_charset_is_a_parse_error():
    with pytest.raises(Hl7ParseError) as ei:
        parse(_adt("ISO IR87", "Li").encode("ascii"))
    assert ei.value.error_code == HL7.TABLE_VALUE_NOT_FOUND and ei.value.ack_code == "AR"
    assert ei.value.header.control_id == "C1"
    with pytest.raises(Hl7ParseError):
        parse(_adt("UNICODE UTF-8").encode("gb18030"))
    with pytest.raises(Hl7ParseError):
        parse(_adt("").encode("utf-16"))
    assert codec_for("unicode utf-8") == "utf-8" and codec_for("UNICODE UTF-16") is None


def test_utf8_bom_is_skipped():
    assert parse(b"\xef\xbb\xbf" + _adt("UNICODE UTF-8").encode()).control_id == "C1"


# -- unreadable messages -------------------------------------------------------------------

@pytest.mark.parametrize("raw,code", [
    (b"", HL7.SEGMENT_SEQUENCE_ERROR),
    (b"\r\n\r", HL7.SEGMENT_SEQUENCE_ERROR),
    (b"PID|1||X\r", HL7.SEGMENT_SEQUENCE_ERROR),
    (b"MSH|^~", HL7.DATA_TYPE_ERROR),
    (b"MSHA^~\\&A|B\r", HL7.DATA_TYPE_ERROR),  # alphanumeric separator
    (b"MSH|^~\\|A|B\r", HL7.DATA_TYPE_ERROR),  # MSH-2 too short
    (b"MSH|^~^&|A|B\r", HL7.DATA_TYPE_ERROR),  # repeated delimiter
    (b"MSH| ~\\&|A|B\r", HL7.DATA_TYPE_ERROR),  # blank as delimiter
    (b"\x00\xff\xfe garbage", HL7.SEGMENT_SEQUENCE_ERROR),
])
def test_parse_errors(raw, code):
    with pytest.raises(Hl7ParseError) as ei:
        parse(raw)
    assert ei.value.error_code == code and ei.value.ack_code == "AR"
    assert isinstance(ei.value, Hl7Error)


def test_bad_segment_after_a_good_msh_keeps_the_header():
    with pytest.raises(Hl7ParseError) as ei:
        parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|K9|P|2.5\rpid|1\r")
    assert ei.value.header.control_id == "K9"
    ack = ack_for_error(None, ei.value)
    assert ack.get("MSA-1") == "AR" and ack.get("MSA-2") == "K9"
    with pytest.raises(Hl7ParseError):
        parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|K9|P|2.5\rPIDX|1\r")


def test_parse_header_best_effort():
    assert parse_header(b"MSH|^~\\&|A|B|C|D|x||ADT^A01|Z1|P|2.5\r\x00\x01").control_id == "Z1"
    assert parse_header(b"garbage") is None
    assert parse_header("MSH|^~\\&|A|B|C|D|x||ADT^A01|Z2|P\rPID").control_id == "Z2"


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_parse_errors(data):
    try:
        parse(data)
    except Hl7ParseError:
        pass
    try:
        parse(b"MSH|^~\\&|" + data)
    except Hl7ParseError:
        pass


# -- building ------------------------------------------------------------------------------

def test_build_message_and_msh():
    when = dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    msh = build_msh(sending_application="HIS", sending_facility=("H", "1.2.3", "ISO"),
                    message_type=("ADT", "A04", "ADT_A01"), control_id="M1", timestamp=when,
                    charset="GB 18030-2000")
    msg = build_message([msh, Segment.of("PID", {3: ("1", None, None, (None, "1.2", "ISO")),
                                                 5: ("李", "四")})])
    assert msg.encoding == "gb18030"
    text = msg.encode().decode("gb18030")
    assert text.startswith("MSH|^~\\&|HIS|H^1.2.3^ISO|||20240501083000+0800||ADT^A04^ADT_A01|M1|P|2.5")
    assert text.endswith("||||||GB 18030-2000\rPID|||1^^^&1.2&ISO||李^四\r")
    assert parse(msg.encode()) == msg
    with pytest.raises(ValueError):
        build_message([Segment.of("PID")])
    with pytest.raises(ValueError):
        build_message([msh], charset="EBCDIC")


def test_ack_aa():
    req = parse(ADT.encode())
    when = dt.datetime(2024, 5, 1, 0, 0, tzinfo=dt.timezone.utc)
    ack = build_ack(req, "AA", control_id="ACK1", timestamp=when)
    assert ack.to_text() == ("MSH|^~\\&|HIE|REGION|HIS|北京协和医院|20240501000000+0000||"
                             "ACK^A01^ACK|ACK1|P|2.5||||||UNICODE UTF-8\rMSA|AA|MSG0001\r")
    assert str(hl7.parse(ack.to_text()).segment("MSA")[2]) == "MSG0001"


def test_ack_ae_with_v25_err():
    req = parse(ADT.encode())
    ack = build_ack(req, "AE", [ErrorDetail(HL7.REQUIRED_FIELD_MISSING, "PID-3 is missing",
                                            "PID^1^3"),
                                ErrorDetail(HL7.DUPLICATE_KEY_IDENTIFIER, "dup", "PID^1^3^2", "W")],
                    sending_application="PIX", sending_facility=("HIE", "1.2.3", "ISO"))
    back = parse(ack.encode())
    assert back.get("MSH-3") == "PIX" and back.get("MSH-4.2") == "1.2.3"
    assert back.get("MSA-1") == "AE" and back.get("MSA-2") == "MSG0001"
    assert back.get("MSA-3") == "PID-3 is missing"
    errs = back.all("ERR")
    assert len(errs) == 2
    assert errs[0][2].encode() == "PID^1^3"
    assert errs[0][3].encode() == "101^Required field missing^HL70357"
    assert errs[0].value(4) == "E" and errs[0].value(8) == "PID-3 is missing"
    assert not errs[0][1]  # ERR-1 only for v2.3 / v2.4 peers
    assert errs[1].value(4) == "W" and errs[1].value(3) == "205"
    theirs = hl7.parse(ack.to_text())
    assert str(theirs.segment("ERR")[3][0][0]) == "101"


def test_ack_for_v231_fills_err1():
    req = parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|Q1|P|2.3.1\rPID|1\r")
    ack = build_ack(req, "AE", [ErrorDetail("101", "missing", "PID^1^3")])
    err = ack.segment("ERR")
    assert err[1].encode() == "PID^1^3^101&Required field missing&HL70357"
    assert err[2].encode() == "PID^1^3" and ack.get("MSH-12") == "2.3.1"


def test_ack_without_request():
    ack = ack_for_error(None, Hl7ParseError("unreadable"))
    assert ack.get("MSA-1") == "AR" and ack.get("MSA-2") == "" and ack.get("MSH-9") == "ACK"
    assert ack.get("ERR-3") == "100" and ack.encoding == "utf-8"
    assert parse(ack.encode()).get("MSH-12") == "2.5"
    with pytest.raises(ValueError):
        build_ack(None, "XX")
    with pytest.raises(ValueError):
        ErrorDetail("101", severity="X")


def test_delimiters_validation():
    with pytest.raises(ValueError):
        Delimiters(field="a")
    with pytest.raises(ValueError):
        Delimiters(component="|")
    with pytest.raises(ValueError):
        Delimiters.from_msh("MSH|^~")
    assert Delimiters.from_msh("MSH|^~\\&|X").encoding_characters == "^~\\&"


# -- property: build -> encode -> parse is the identity -------------------------------------

_DELIMS = st.permutations(list("|^~\\&*!@#$%")).map(lambda p: Delimiters(*p[:5]))
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_COMP = st.one_of(_TEXT, st.lists(_TEXT, max_size=3).map(tuple))
_REP = st.one_of(_TEXT, st.lists(_COMP, max_size=4).map(tuple))
_VALUE = st.one_of(st.none(), _REP, st.lists(_REP, max_size=3).map(Repeat))


@hsettings(max_examples=200, deadline=None)
@given(_DELIMS, st.lists(st.lists(_VALUE, max_size=8), min_size=1, max_size=4),
       st.sampled_from(["UNICODE UTF-8", "GB 18030-2000", ""]))
def test_round_trip_property(delims, segs, charset):
    segments = [build_msh(message_type=("ADT", "A01"), control_id="R1", charset=charset or None)]
    segments += [Segment.of("ZXY", vals) for vals in segs]
    msg = build_message(segments, delimiters=delims)
    try:
        raw = msg.encode()
    except UnicodeEncodeError:
        return  # a character GB 18030 cannot carry (none in practice; surrogates excluded)
    back = parse(raw)
    assert back == msg
    assert parse_text(msg.to_text(), msg.encoding) == msg

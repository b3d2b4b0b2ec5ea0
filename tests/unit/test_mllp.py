"""MLLP framing (HL7 v2.5 Appendix C.4): the sans-IO decoder in memory — complete frames, any
chunking, resynchronisation after garbage, truncated blocks, bad end blocks and oversized blocks;
with hypothesis, arbitrary bytes in arbitrary chunks never raise anything but MllpError and yield
the same frames however they are split."""
import pytest
from hypothesis import given, settings, strategies as st

from hie.mllp import (END_BLOCK, START_BLOCK, MllpBadEndBlock, MllpDecoder, MllpError,
                      MllpFrameTooLarge, MllpGarbage, MllpTruncatedFrame, frame)

MSG = "MSH|^~\\&|HIS|H|HIE|R|20240101||ADT^A01|1|P|2.5\rPID|1||1^^^&1.2&ISO||张^三\r".encode()


def drain(dec: MllpDecoder):
    """(frames, errors) until the decoder needs more data."""
    frames, errors = [], []
    while True:
        try:
            f = dec.next_frame()
        except MllpError as exc:
            errors.append(type(exc))
            continue
        if f is None:
            return frames, errors
        frames.append(f)


def decode(chunks, max_frame_size=1024):
    dec = MllpDecoder(max_frame_size)
    frames, errors = [], []
    for c in chunks:
        dec.feed(c)
        f, e = drain(dec)
        frames += f
        errors += e
    return frames, errors, dec


def test_frame_bytes():
    assert frame(b"abc") == b"\x0babc\x1c\x0d"
    assert START_BLOCK == b"\x0b" and END_BLOCK == b"\x1c\r"


def test_one_and_several_frames():
    frames, errors, dec = decode([frame(MSG) + frame(b"second") + frame(b"")])
    assert frames == [MSG, b"second", b""] and errors == [] and not dec.in_frame
    assert dec.buffered == 0


def test_byte_by_byte():
    data = frame(MSG) + b"\r\n" + frame(b"x")
    frames, errors, _ = decode([data[i:i + 1] for i in range(len(data))])
    assert frames == [MSG, b"x"] and errors == []


def test_end_block_split_between_fs_and_cr():
    dec = MllpDecoder()
    dec.feed(b"\x0babc\x1c")
    assert dec.next_frame() is None and dec.in_frame
    dec.feed(b"\r")
    assert dec.next_frame() == b"abc"


def test_whitespace_between_frames_is_silent_and_garbage_is_reported():
    frames, errors, _ = decode([b" \r\n\t" + frame(b"a") + b"junk!" + frame(b"b") + b"tail"])
    assert frames == [b"a", b"b"]
    assert errors == [MllpGarbage, MllpGarbage]


def test_start_block_inside_a_block_truncates_it():
    frames, errors, _ = decode([b"\x0bpartial MSH|" + frame(b"whole")])
    assert frames == [b"whole"] and errors == [MllpTruncatedFrame]


def test_end_block_without_cr_discards_the_block():
    frames, errors, _ = decode([b"\x0bbad\x1cX" + frame(b"good")])
    assert frames == [b"good"] and errors == [MllpBadEndBlock, MllpGarbage]
    frames, errors, _ = decode([b"\x0bbad\x1c" + frame(b"good")])  # <FS><VT>: next block
    assert frames == [b"good"] and errors == [MllpBadEndBlock]


@pytest.mark.parametrize("chunk", [1, 7, 100, 10_000])
def test_too_large_is_discarded_up_to_its_end_block(chunk):
    data = frame(b"A" * 50) + frame(b"B" * 3000) + frame(b"C" * 10)
    frames, errors, _ = decode([data[i:i + chunk] for i in range(0, len(data), chunk)],
                               max_frame_size=1024)
    assert frames == [b"A" * 50, b"C" * 10]
    assert errors == [MllpFrameTooLarge]


def test_frame_of_exactly_the_limit_passes():
    frames, errors, _ = decode([frame(b"x" * 1024)], max_frame_size=1024)
    assert frames == [b"x" * 1024] and errors == []


def test_eof_inside_a_block():
    dec = MllpDecoder()
    dec.feed(b"\x0bMSH|^~\\&|")
    assert dec.next_frame() is None and dec.in_frame
    with pytest.raises(MllpTruncatedFrame) as ei:
        dec.eof()
    assert ei.value.received == 9 and not dec.in_frame
    dec.eof()  # nothing open: no error


def test_frames_iterator_skips_errors():
    dec = MllpDecoder()
    dec.feed(b"junk" + frame(b"a") + b"\x0bcut" + frame(b"b"))
    assert list(dec.frames()) == [b"a", b"b"]


def test_bad_limit():
    with pytest.raises(ValueError):
        MllpDecoder(0)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


_MLLP_BYTES = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(
    [b"\x0b", b"\x1c", b"\r", b"\x1c\r", b"\x0bMSH|", b"\n"])), max_size=30).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=600), _MLLP_BYTES),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
       st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_any_chunking(data, cuts, limit):
    whole, _, _ = decode([data], max_frame_size=limit)
    dec = MllpDecoder(limit)
    frames = []
    for chunk in _split(data, cuts):
        dec.feed(chunk)
        while True:
            try:
                f = dec.next_frame()
            except MllpError:
                continue  # the typed error is the only one allowed
            if f is None:
                break
            frames.append(f)
    try:
        dec.eof()
    except MllpError:
        pass
    assert frames == whole
    for f in frames:
        assert len(f) <= limit and b"\x0b" not in f and b"\x1c" not in f


_PAYLOAD = st.binary(max_size=200).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_PAYLOAD, st.sampled_from([b"", b"\r\n", b"\n", b" "])), max_size=8),
       st.lists(st.integers(min_value=0, max_value=5000), max_size=30))
def test_valid_stream_any_chunking_gives_the_payloads(items, cuts):
    data = b"".join(frame(p) + ws for p, ws in items)
    frames, errors, dec = decode(_split(data, cuts), max_frame_size=1024)
    assert frames == [p for p, _ in items] and errors == [] and not dec.in_frame

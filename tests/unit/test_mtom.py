"""hie.mtom: streaming multipart/related reader and writer (RFC 2046 / 2387, XOP, MTOM)."""
import base64
import io
import os
import random
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st
from lxml import etree

from hie.errors import HieError
from hie.mtom import (MtomError, MtomParser, cid_url, inline_xop, mtom_stream, new_content_id,
                      parse_content_type, strip_cid, xop_include)
from hie.soap import XDSB_NS, XOP_NS, Attachment, build_envelope, parse_envelope

CT = 'multipart/related; boundary="MIMEBoundary_x"; type="application/xop+xml"; start="<root@x>"'
ROOT_XML = b'<?xml version="1.0"?><r xmlns="urn:r">\xe5\xbc\xa0\xe4\xb8\x89</r>'


def part(headers: str, body: bytes, nl=b"\r\n") -> bytes:
    return headers.replace("\n", nl.decode()).encode() + nl + nl + body


def package(parts, boundary=b"MIMEBoundary_x", nl=b"\r\n", preamble=b"", epilogue=b"",
            padding=b""):
    out = preamble + (nl if preamble else b"")
    for i, p in enumerate(parts):
        out += (nl if i else b"") + b"--" + boundary + padding + nl + p
    return out + nl + b"--" + boundary + b"--" + epilogue


def feed_all(parser: MtomParser, data: bytes, sizes=None):
    i = 0
    rnd = random.Random(len(data))
    while i < len(data):
        n = sizes.pop(0) if sizes else rnd.randint(1, 97)
        parser.feed(data[i:i + max(n, 1)])
        i += max(n, 1)
    return parser.close()


def test_error_type():
    assert issubclass(MtomError, HieError)


# -- content type / cid helpers -------------------------------------------------------------------

def test_parse_content_type():
    mime, p = parse_content_type(
        'Multipart/Related; boundary="MIME;b=1"; TYPE=application/xop+xml; '
        'start="<0.urn:uuid:1@apache.org>"; start-info="application/soap+xml; action=\\"urn:a\\""')
    assert mime == "multipart/related"
    assert p == {"boundary": "MIME;b=1", "type": "application/xop+xml",
                 "start": "<0.urn:uuid:1@apache.org>",
                 "start-info": 'application/soap+xml; action="urn:a"'}
    assert parse_content_type("application/soap+xml") == ("application/soap+xml", {})
    assert parse_content_type("") == ("", {})


@pytest.mark.parametrize("bad", ['a/b; x', 'a/b; ="v"', 'a/b; x="unterminated',
                                 'a/b; x="v" junk'])
def test_parse_content_type_malformed(bad):
    with pytest.raises(MtomError):
        parse_content_type(bad)


def test_cid_helpers():
    assert strip_cid(" <a@b> ") == "a@b" and strip_cid("a@b") == "a@b" and strip_cid(None) is None
    cid = "1.urn:uuid:5 6@apache.org"
    assert cid_url(cid) == "cid:1.urn:uuid:5%206@apache.org"
    inc = xop_include(cid)
    assert inc.tag == f"{{{XOP_NS}}}Include" and inc.get("href") == cid_url(cid)
    assert new_content_id() != new_content_id()


# -- reading ---------------------------------------------------------------------------------------

def test_basic_package_any_split(tmp_path):
    data = package([
        part('Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\n'
             "Content-Transfer-Encoding: binary\nContent-ID: <root@x>", ROOT_XML),
        part("Content-Type: application/pdf\nContent-Transfer-Encoding: binary\n"
             "Content-ID: <doc1@x>", b"%PDF\r\n--MIMEBoundary_y\r\n\x00\xff"),
        part("Content-Type: text/plain\nContent-ID: doc2@x", b""),
    ])
    for split in (1, 2, 3, 7, 64, len(data)):
        p = MtomParser(CT, tmp_path)
        root, atts = feed_all(p, data, [split] * (len(data) // split + 1))
        assert root == ROOT_XML
        assert p.root_content_type.startswith("application/xop+xml")
        assert atts["doc1@x"].read() == b"%PDF\r\n--MIMEBoundary_y\r\n\x00\xff"
        assert atts["doc1@x"].content_type == "application/pdf"
        assert atts["doc2@x"].read() == b"" and atts["doc2@x"].content_type == "text/plain"
    for cut in range(len(data)):  # every two-chunk split
        p = MtomParser(CT, tmp_path)
        p.feed(data[:cut])
        p.feed(data[cut:])
        root, atts = p.close()
        assert root == ROOT_XML and atts["doc1@x"].size == 26


def test_first_part_is_root_without_start(tmp_path):
    data = package([part("Content-ID: <a>", b"<a/>"), part("Content-ID: <b>", b"B")])
    root, atts = feed_all(MtomParser('multipart/related; boundary=MIMEBoundary_x', tmp_path), data)
    assert root == b"<a/>" and list(atts) == ["b"]


def test_start_may_name_a_later_part(tmp_path):
    data = package([part("Content-ID: <b>", b"B"), part("Content-ID: <root@x>", b"<a/>")])
    root, atts = feed_all(MtomParser(CT, tmp_path), data)
    assert root == b"<a/>" and atts["b"].read() == b"B"


def test_lf_only_preamble_epilogue_padding_folding(tmp_path):
    data = package([part("Content-ID:\n <root@x>\nContent-Type: application/xop+xml", b"<a/>", b"\n"),
                    part("content-id: <b>", b"BB", b"\n")],
                   nl=b"\n", preamble=b"This is a preamble --MIMEBoundary_x not a boundary",
                   epilogue=b"\nepilogue --MIMEBoundary_x junk", padding=b" \t")
    root, atts = feed_all(MtomParser(CT, tmp_path), data)
    assert root == b"<a/>" and atts["b"].read() == b"BB"


def test_boundary_prefix_inside_content_is_content(tmp_path):
    body = b"x\r\n--MIMEBoundary_xyz\r\nmore"
    data = package([part("Content-ID: <root@x>", b"<a/>"), part("Content-ID: <b>", body)])
    root, atts = feed_all(MtomParser(CT, tmp_path), data)
    assert atts["b"].read() == body


def test_base64_part(tmp_path):
    payload = os.urandom(5000)
    enc = base64.encodebytes(payload)
    data = package([part("Content-ID: <root@x>\nContent-Transfer-Encoding: base64",
                         base64.encodebytes(b"<a/>")),
                    part("Content-ID: <b>\nContent-Transfer-Encoding: BASE64", enc)])
    root, atts = feed_all(MtomParser(CT, tmp_path, spool_threshold=1000), data)
    assert root == b"<a/>" and atts["b"].read() == payload and atts["b"].path is not None


def test_base64_without_padding_tolerated(tmp_path):
    data = package([part("Content-ID: <root@x>", b"<a/>"),
                    part("Content-ID: <b>\nContent-Transfer-Encoding: base64", b"QUJD RA")])
    _, atts = feed_all(MtomParser(CT, tmp_path), data)
    assert atts["b"].read() == b"ABCD"


def test_spooling_and_cleanup(tmp_path):
    big = os.urandom(300_000)
    data = package([part("Content-ID: <root@x>", b"<a/>"),
                    part("Content-ID: <big>", big), part("Content-ID: <small>", b"s")])
    p = MtomParser(CT, tmp_path / "spool", spool_threshold=100_000)
    _, atts = feed_all(p, data, [65536] * 10)
    assert atts["big"].path.parent == tmp_path / "spool" and atts["big"].size == len(big)
    assert atts["big"].read() == big and atts["small"].data == b"s"
    assert p.spooled == [atts["big"].path]
    # the spooled file is the transport's private copy: a blob store may adopt it (hie.blobs)
    assert atts["big"].spooled and not atts["small"].spooled
    p.cleanup()
    assert not list((tmp_path / "spool").iterdir())


def test_memory_budget_spools_many_small_parts(tmp_path):
    parts = [part("Content-ID: <root@x>", b"<a/>")]
    parts += [part(f"Content-ID: <p{i}>", bytes([i]) * 1000) for i in range(20)]
    p = MtomParser(CT, tmp_path, spool_threshold=5000, max_memory=10_000)
    _, atts = feed_all(p, package(parts), [4096] * 100)
    on_disk = [a for a in atts.values() if a.path is not None]
    assert len(on_disk) >= 10
    assert all(atts[f"p{i}"].read() == bytes([i]) * 1000 for i in range(20))


def test_errors_delete_spool_files(tmp_path):
    data = package([part("Content-ID: <root@x>", b"<a/>"),
                    part("Content-ID: <big>", b"x" * 50_000)])[:-30]  # truncated
    p = MtomParser(CT, tmp_path, spool_threshold=1000)
    p.feed(data)
    assert p.spooled
    with pytest.raises(MtomError, match="closing boundary"):
        p.close()
    assert not list(tmp_path.iterdir())
    with pytest.raises(MtomError):
        p.feed(b"more")


@pytest.mark.parametrize("ct,match", [
    ("application/soap+xml", "not a multipart/related"),
    ("multipart/related", "boundary"),
    ('multipart/related; boundary=""', "boundary"),
    ("multipart/related; boundary=\u00e9", "ASCII"),
])
def test_bad_content_type(tmp_path, ct, match):
    with pytest.raises(MtomError, match=match):
        MtomParser(ct, tmp_path)


@pytest.mark.parametrize("data,match", [
    (b"", "closing boundary"),
    (b"no boundary at all", "closing boundary"),
    (b"--MIMEBoundary_x--", "no parts"),
    (b"--MIMEBoundary_x\r\nContent-ID: <root@x>\r\n\r\n<a/>", "closing boundary"),
    (b"--MIMEBoundary_x\r\nbad header line\r\n\r\n<a/>\r\n--MIMEBoundary_x--", "header line"),
    (b"--MIMEBoundary_x\r\n continuation\r\n\r\n<a/>\r\n--MIMEBoundary_x--", "continuation"),
    (b"--MIMEBoundary_x\r\nContent-ID: <a>\r\n\r\n<a/>\r\n--MIMEBoundary_x--", "no root part"),
    (b"--MIMEBoundary_x\r\nContent-ID: <root@x>\r\nContent-Transfer-Encoding: quoted-printable"
     b"\r\n\r\n<a/>\r\n--MIMEBoundary_x--", "Content-Transfer-Encoding"),
    (b"--MIMEBoundary_x\r\nContent-ID: <root@x>\r\nContent-Transfer-Encoding: base64"
     b"\r\n\r\n!!!!\r\n--MIMEBoundary_x--", "base64"),
    (b"--MIMEBoundary_x\r\nContent-ID: <root@x>\r\n\r\n<a/>\r\n--MIMEBoundary_x\r\n"
     b"Content-ID: <b>\r\n\r\n1\r\n--MIMEBoundary_x\r\nContent-ID: <b>\r\n\r\n2\r\n"
     b"--MIMEBoundary_x--", "duplicate"),
    (b"--MIMEBoundary_x\r\n" + b"X-Long: " + b"a" * 20_000, "headers too large"),
    (b"--MIMEBoundary_x" + b" " * 300 + b"\r\n", "padding"),
])
def test_malformed(tmp_path, data, match):
    p = MtomParser(CT, tmp_path)
    with pytest.raises(MtomError, match=match):
        p.feed(data)
        p.close()


def test_root_size_bound(tmp_path):
    data = package([part("Content-ID: <root@x>", b"<a>" + b"x" * 1000 + b"</a>")])
    with pytest.raises(MtomError, match="larger than 100"):
        feed_all(MtomParser(CT, tmp_path, max_root_bytes=100), data)


def test_part_count_bound(tmp_path):
    parts = [part(f"Content-ID: <p{i}>", b"") for i in range(6)]
    with pytest.raises(MtomError, match="more than 5"):
        feed_all(MtomParser('multipart/related; boundary="MIMEBoundary_x"', tmp_path,
                            max_parts=5), package(parts))


def test_parser_memory_is_constant(tmp_path):
    """20 MB through the parser in 64 KiB chunks: traced allocations stay far below that."""
    chunk = os.urandom(65536)
    p = MtomParser(CT, tmp_path, spool_threshold=1024 * 1024)
    tracemalloc.start()
    try:
        p.feed(b"--MIMEBoundary_x\r\nContent-ID: <root@x>\r\n\r\n<a/>\r\n--MIMEBoundary_x\r\n"
               b"Content-ID: <big>\r\n\r\n")
        for _ in range(320):
            p.feed(chunk)
        p.feed(b"\r\n--MIMEBoundary_x--\r\n")
        _, atts = p.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert atts["big"].size == 320 * 65536
    assert peak < 4 * 1024 * 1024, peak
    p.cleanup()


# -- writing ---------------------------------------------------------------------------------------

def _pnr_envelope(atts):
    body = etree.Element(f"{{{XDSB_NS}}}ProvideAndRegisterDocumentSetRequest")
    for a in atts:
        d = etree.SubElement(body, f"{{{XDSB_NS}}}Document", id=a.content_id)
        d.append(xop_include(a.content_id))
    return build_envelope("urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b", body)


def test_writer_round_trip_through_parser_and_envelope(tmp_path):
    f = tmp_path / "doc.bin"
    f.write_bytes(os.urandom(200_000))
    atts = [Attachment(new_content_id(), "application/pdf", path=f),
            Attachment("urn:uuid:1 2@x", "text/xml; charset=UTF-8", data="<CDA>张三</CDA>".encode()),
            Attachment("opened@x", opener=lambda: io.BytesIO(b"opened"), size=6)]
    ct, chunks = mtom_stream(_pnr_envelope(atts), atts, chunk_size=10_000)
    mime, params = parse_content_type(ct)
    assert mime == "multipart/related" and params["type"] == "application/xop+xml"
    assert params["start-info"] == "application/soap+xml"
    pieces = list(chunks)
    assert max(len(c) for c in pieces[1:]) <= 10_000 + 200
    p = MtomParser(ct, tmp_path / "spool", spool_threshold=50_000)
    root, got = feed_all(p, b"".join(pieces), [8191] * 100)
    assert "application/xop+xml" in p.root_content_type
    assert 'type="application/soap+xml' in p.root_content_type
    req = parse_envelope(root, got)
    docs = req.body.findall(f"{{{XDSB_NS}}}Document")
    assert [req.document(d).read() for d in docs] == [a.read() for a in atts]
    assert got[atts[1].content_id].content_type == "text/xml; charset=UTF-8"
    p.cleanup()


def test_writer_streams_lazily():
    opened = []

    def opener():
        opened.append(1)
        return io.BytesIO(b"z" * 200_000)

    ct, chunks = mtom_stream(build_envelope("urn:a", None), [Attachment("a@b", opener=opener)])
    assert not opened
    first = next(chunks)
    assert b"application/xop+xml" in first and not opened
    rest = list(chunks)
    assert opened and rest[-1].endswith(b"--\r\n")
    assert max(len(c) for c in rest) <= 65536 + 200


def test_writer_memory_is_constant(tmp_path):
    class Zeros(io.RawIOBase):
        def __init__(self, n):
            self.left = n

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    att = Attachment("z@x", opener=lambda: io.BufferedReader(Zeros(30 * 1024 * 1024)))
    tracemalloc.start()
    try:
        _, chunks = mtom_stream(build_envelope("urn:a", None), [att])
        total = sum(len(c) for c in chunks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total > 30 * 1024 * 1024 and peak < 2 * 1024 * 1024, peak


def test_writer_explicit_boundary_and_action():
    ct, chunks = mtom_stream(build_envelope("urn:a", None), [], boundary="B1", action="urn:a")
    body = b"".join(chunks)
    assert 'boundary="B1"' in ct and body.startswith(b"--B1\r\n") and body.endswith(b"--B1--\r\n")
    assert b'action=\\"urn:a\\"' in body


def test_inline_xop():
    atts = [Attachment("a@x", data=b"hello"), Attachment("b@x", data=b"")]
    env = _pnr_envelope(atts)
    extra = etree.SubElement(env.find(f".//{{{XDSB_NS}}}ProvideAndRegisterDocumentSetRequest"),
                             f"{{{XDSB_NS}}}Document")
    extra.append(xop_include("unknown@x"))
    inline_xop(env, {a.content_id: a for a in atts})
    docs = env.findall(f".//{{{XDSB_NS}}}Document")
    assert docs[0].text == base64.b64encode(b"hello").decode() and len(docs[0]) == 0
    assert (docs[1].text or "") == ""
    assert docs[2].find(f"{{{XOP_NS}}}Include") is not None  # unknown reference left alone


# -- fuzzing ---------------------------------------------------------------------------------------

def _try(ct: str, data: bytes, splits: list[int], tmp) -> None:
    try:
        p = MtomParser(ct, tmp, spool_threshold=64, max_root_bytes=10_000)
        i = 0
        for n in splits:
            p.feed(data[i:i + n])
            i += n
        p.feed(data[i:])
        root, atts = p.close()
        assert isinstance(root, bytes)
        for a in atts.values():
            a.read()
        p.cleanup()
    except MtomError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500), st.lists(st.integers(0, 60), max_size=10))
def test_fuzz_random_bytes(tmp_path_factory, data, splits):
    tmp = tmp_path_factory.mktemp("fz", numbered=True)
    _try(CT, data, splits, tmp)
    _try('multipart/related; boundary="a"', data, splits, tmp)
    assert not list(tmp.iterdir())


VALID = package([part('Content-ID: <root@x>\nContent-Type: application/xop+xml', ROOT_XML),
                 part("Content-ID: <b>\nContent-Transfer-Encoding: base64",
                      base64.encodebytes(b"payload" * 30)),
                 part("Content-ID: <c>", b"c" * 200)])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID)), st.integers(0, 5), st.binary(max_size=5)),
                max_size=5),
       st.lists(st.integers(1, 80), max_size=20))
def test_fuzz_mutated_valid_package(tmp_path_factory, edits, splits):
    data = bytearray(VALID)
    for pos, cut, insert in edits:
        data[pos:pos + cut] = insert
    tmp = tmp_path_factory.mktemp("fm", numbered=True)
    _try(CT, bytes(data), splits, tmp)
    assert not list(tmp.iterdir())


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=3000), st.lists(st.integers(1, 700), max_size=12),
       st.sampled_from(["binary", "base64"]))
def test_fuzz_round_trip_any_payload_any_split(tmp_path_factory, payload, splits, cte):
    body = base64.encodebytes(payload) if cte == "base64" else payload
    data = package([part("Content-ID: <root@x>", b"<a/>"),
                    part(f"Content-ID: <p>\nContent-Transfer-Encoding: {cte}", body)])
    tmp = tmp_path_factory.mktemp("rt", numbered=True)
    p = MtomParser(CT, tmp, spool_threshold=100)
    i = 0
    for n in splits:
        p.feed(data[i:i + n])
        i += n
    p.feed(data[i:])
    root, atts = p.close()
    assert root == b"<a/>" and atts["p"].read() == payload
    p.cleanup()


def test_preamble_and_epilogue_are_bounded(tmp_path):
    p = MtomParser(CT, tmp_path)
    with pytest.raises(MtomError, match="no multipart boundary"):
        for _ in range(20):
            p.feed(b"x" * 65536 + b"\n")
    data = package([part("Content-ID: <root@x>", b"<a/>")])
    p = MtomParser(CT, tmp_path)
    p.feed(data)
    with pytest.raises(MtomError, match="after the closing boundary"):
        for _ in range(20):
            p.feed(b"e" * 65536)

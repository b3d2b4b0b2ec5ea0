"""hie.xmlsafe: no DTD, no entity expansion, bounded size and depth, typed errors only."""
import time

import pytest
from hypothesis import given, settings, strategies as st
from lxml import etree

from hie.errors import HieError
from hie.xmlsafe import XmlError, parse_xml, to_bytes

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
               for i in range(1, 10))
    + b"]><lolz>&lol9;</lolz>"
)


def test_parses_and_serialises_utf8():
    root = parse_xml("<患者><姓名>张三</姓名></患者>".encode())
    assert root.find("姓名").text == "张三"
    out = to_bytes(root)
    assert out.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert "张三".encode() in out


def test_error_is_a_hie_error():
    assert issubclass(XmlError, HieError)


@pytest.mark.parametrize("doc", [
    b'<!DOCTYPE a><a/>',
    b'<?xml version="1.0"?>\n<!-- c --><!DOCTYPE a [<!ELEMENT a ANY>]><a/>',
    b'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
    b'<!DOCTYPE foo SYSTEM "http://127.0.0.1:9/evil.dtd"><foo/>',
    b'<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><x/>',
    b"\xef\xbb\xbf<!DOCTYPE a><a/>",
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a><a/>'.encode("utf-16"),
    '<!DOCTYPE a><a/>'.encode("utf-16-le"),
])
def test_doctype_rejected(doc):
    with pytest.raises(XmlError, match="DOCTYPE"):
        parse_xml(doc)


def test_xxe_never_reads_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    doc = f'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file://{secret}">]><foo>&xxe;</foo>'.encode()
    with pytest.raises(XmlError) as exc:
        parse_xml(doc)
    assert "TOPSECRET" not in str(exc.value)


def test_billion_laughs_rejected_fast():
    t0 = time.monotonic()
    with pytest.raises(XmlError):
        parse_xml(BILLION_LAUGHS)
    assert time.monotonic() - t0 < 1.0


def test_undeclared_entity_is_an_error():
    with pytest.raises(XmlError, match="not well-formed"):
        parse_xml(b"<a>&nbsp;</a>")


def test_predefined_entities_work():
    assert parse_xml(b"<a>&lt;&amp;&#x5F20;</a>").text == "<&张"


def _nested(n: int) -> bytes:
    return b"<a>" * n + b"</a>" * n


def test_depth_bound_default():
    parse_xml(_nested(200))
    with pytest.raises(XmlError, match="deeper"):
        parse_xml(_nested(300))
    with pytest.raises(XmlError):
        parse_xml(_nested(100_000))


def test_depth_bound_custom():
    parse_xml(_nested(10), max_depth=10)
    with pytest.raises(XmlError, match="deeper than 10"):
        parse_xml(_nested(11), max_depth=10)


def test_depth_bound_with_huge_tree():
    with pytest.raises(XmlError, match="deeper than 256"):
        parse_xml(_nested(300), huge_tree=True)


def test_size_bound():
    parse_xml(b"<a>" + b"x" * 100 + b"</a>", max_bytes=107)
    with pytest.raises(XmlError, match="larger than"):
        parse_xml(b"<a>" + b"x" * 100 + b"</a>", max_bytes=106)


def test_huge_text_node_needs_huge_tree():
    doc = b"<a>" + b"A" * 10_000_001 + b"</a>"
    with pytest.raises(XmlError):
        parse_xml(doc)
    assert len(parse_xml(doc, huge_tree=True).text) == 10_000_001


@pytest.mark.parametrize("doc", [b"", b"   ", b"<a>", b"<a></b>", b"not xml", b"<a/><b/>",
                                 b'<?xml version="1.0" encoding="NOPE"?><a/>', b"\x00\x01\x02"])
def test_malformed(doc):
    with pytest.raises(XmlError) as exc:
        parse_xml(doc)
    assert "Traceback" not in str(exc.value)


def test_non_bytes_rejected():
    with pytest.raises(XmlError):
        parse_xml("<a/>")  # type: ignore[arg-type]


def test_comments_and_pis_allowed_in_prolog():
    root = parse_xml(b'<?xml version="1.0"?><!-- hi --><?pi x?><a/>')
    assert root.tag == "a"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    try:
        root = parse_xml(data)
    except XmlError:
        return
    assert isinstance(root, etree._Element)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<>!?/=\"'&;#x-[]% aDOCTYPEENTITYSYSTEM张\n", max_size=200))
def test_fuzz_markup_soup(text):
    try:
        parse_xml(text.encode())
    except XmlError:
        pass


@pytest.mark.parametrize("enc", ["GBK", "GB18030", "UTF-16"])
def test_declared_encodings(enc):
    doc = f'<?xml version="1.0" encoding="{enc}"?><a>张三</a>'.encode(enc)
    assert parse_xml(doc).text == "张三"
    assert parse_xml(doc, charset="ISO-8859-1").text == "张三"  # the declaration wins


def test_transport_charset_used_without_declaration():
    doc = "<a>李四</a>".encode("gbk")
    assert parse_xml(doc, charset="GBK").text == "李四"
    assert parse_xml("<a>李四</a>".encode(), charset="utf-8").text == "李四"
    with pytest.raises(XmlError, match="unknown charset"):
        parse_xml(doc, charset="no-such-charset")
    with pytest.raises(XmlError, match="not valid"):
        parse_xml(b"<a>\x81</a>", charset="gb2312")

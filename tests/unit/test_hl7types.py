"""HL7 v2.5 data types of XDS metadata (ITI TF-3 Table 4.2.3.1.7-2)."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, strategies as st

from hie import hl7types as T


# -- CX (patient ids) ---------------------------------------------------------------------------

def test_patient_id_ok():
    cx = T.parse_patient_id("RHIN0000001^^^&1.2.156.112604.1.2.1&ISO")
    assert cx.id == "RHIN0000001"
    assert cx.authority_oid == "1.2.156.112604.1.2.1"
    assert str(cx) == "RHIN0000001^^^&1.2.156.112604.1.2.1&ISO"
    assert T.CX.of("110105199003071239", "2.16.156.10011.1.3") == T.parse_patient_id(
        "110105199003071239^^^&2.16.156.10011.1.3&ISO")


@pytest.mark.parametrize("text,why", [
    ("", "empty"),
    ("RHIN1", "CX.4"),
    ("^^^&1.2.3&ISO", "CX.1"),
    ("RHIN1^^^1.2.3", "namespace"),
    ("RHIN1^^^&1.2.3&L", "ISO"),
    ("RHIN1^^^&abc&ISO", "OID"),
    ("RHIN1^^^HOSP&1.2.3&ISO", "namespace"),
    ("RHIN1^^^&1.2.3&ISO^PI", "CX.5"),
    ("RHIN1^5^M11^&1.2.3&ISO", "CX.2"),
    (" RHIN1^^^&1.2.3&ISO", "blanks"),
    ("RHIN1~RHIN2^^^&1.2.3&ISO", "repetition"),
])
def test_patient_id_rejected(text, why):
    with pytest.raises(ValueError, match=why):
        T.parse_patient_id(text)


def test_general_cx_keeps_components():
    cx = T.CX.parse("MR2024000101^^^HIS&1.2.156.112604.1.1.101.2&ISO^MR")
    assert cx.assigning_authority.namespace_id == "HIS"
    assert cx.identifier_type_code == "MR"
    assert str(cx) == "MR2024000101^^^HIS&1.2.156.112604.1.1.101.2&ISO^MR"


# -- CXi ------------------------------------------------------------------------------------------

def test_cxi():
    v = T.parse_cxi("ACC20240315001^^^&1.2.156.112604.1.1.101.5&ISO^urn:ihe:iti:xds:2013:accession")
    assert v.id == "ACC20240315001" and v.type_code == "urn:ihe:iti:xds:2013:accession"
    assert str(v) == ("ACC20240315001^^^&1.2.156.112604.1.1.101.5&ISO^"
                      "urn:ihe:iti:xds:2013:accession")
    T.parse_cxi("WF-1^^^^urn:ihe:iti:xdw:2013:workflowInstanceId")


@pytest.mark.parametrize("text", [
    "ACC1^^^&1.2.3&ISO",                              # no type code
    "^^^&1.2.3&ISO^urn:ihe:iti:xds:2013:accession",   # no id
    "ACC1^x^^&1.2.3&ISO^urn:ihe:iti:xds:2013:order",  # CXi.2
    "ACC1^^^&1.2.3&L^urn:ihe:iti:xds:2013:order",     # not ISO
    "1.2.3^^^^urn:ihe:iti:xds:2013:uniqueId",          # uniqueId needs an authority
])
def test_cxi_rejected(text):
    with pytest.raises(ValueError):
        T.parse_cxi(text)


# -- XCN / XON / XTN ----------------------------------------------------------------------------

def test_xcn():
    p = T.parse_xcn("D1024^王^建国^^^^^^&1.2.156.112604.1.1.101.3&ISO")
    assert (p.id, p.family, p.given, p.display) == ("D1024", "王", "建国", "王建国")
    assert T.parse_xcn("^张^三").display == "张三"
    assert T.parse_xcn("D1024").display == "D1024"


@pytest.mark.parametrize("text", ["", "^^建国", "D1^王^^^^^^^&1.2.3&XX", "D1^王^^^^^^^&bad&ISO"])
def test_xcn_rejected(text):
    with pytest.raises(ValueError):
        T.parse_xcn(text)


def test_xon():
    o = T.parse_xon("北京市第一人民医院^^^^^&1.2.156.112604.1.1&ISO^^^^101")
    assert o.name == "北京市第一人民医院" and o.organization_id == "101"
    assert o.assigning_authority.universal_id == "1.2.156.112604.1.1"
    assert T.parse_xon("北京市第一人民医院").name == "北京市第一人民医院"
    assert T.parse_xon("北京市第一人民医院^^^^^^^^^1.2.156.112604.1.1.101").organization_id


@pytest.mark.parametrize("text", [
    "",                                             # no name
    "北京市第一人民医院^^^^^^^^^101",                  # XON.10 not an OID and no XON.6
    "北京市第一人民医院^L^^^^&1.2.3&ISO^^^^101",       # XON.2
    "北京市第一人民医院^^^^^&1.2.3&L^^^^101",          # XON.6 not ISO
])
def test_xon_rejected(text):
    with pytest.raises(ValueError):
        T.parse_xon(text)


def test_xtn():
    assert T.parse_xtn("^^Internet^wangjianguo@bjfh.example.cn").email.endswith("example.cn")
    t = T.parse_xtn("^WPN^PH^^86^10^65123456")
    assert (t.country_code, t.area_code, t.local_number) == ("86", "10", "65123456")
    with pytest.raises(ValueError):
        T.parse_xtn("^^Internet")            # no address
    with pytest.raises(ValueError):
        T.parse_xtn("^^Internet^not-an-email")
    with pytest.raises(ValueError):
        T.parse_xtn("^WPN^^^86^10^65123456")   # no equipment type
    with pytest.raises(ValueError):
        T.parse_xtn("(010)65123456")          # XTN.1 only
    with pytest.raises(ValueError):
        T.parse_xtn("^WPN^PH^^86^10")          # no number


# -- DTM ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["2024", "202403", "20240315", "2024031508", "202403150830",
                                  "20240315083000", "20240229"])
def test_dtm_ok(text):
    assert T.parse_dtm(text).text == text


@pytest.mark.parametrize("text", ["", "24", "20241", "2024031", "20240230", "20241301",
                                  "20240315250000", "20240315083060", "2024-03-15",
                                  "20240315083000+0800", "20240315083000.5", "２０２４",
                                  "202403150830001"])
def test_dtm_rejected(text):
    with pytest.raises(ValueError):
        T.parse_dtm(text)


def test_dtm_lower_bound():
    assert T.parse_dtm("2024").lower() == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert T.parse_dtm("202403151230").lower() == dt.datetime(2024, 3, 15, 12, 30,
                                                              tzinfo=dt.timezone.utc)
    assert str(T.DTM.from_datetime(dt.datetime(2024, 3, 15, 16, 30, tzinfo=dt.timezone(
        dt.timedelta(hours=8))))) == "20240315083000"


@given(st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31)),
       st.sampled_from(T.DTM_LENGTHS))
def test_dtm_property(value, n):
    text = value.strftime("%Y%m%d%H%M%S")[:n]
    assert T.parse_dtm(text).lower() <= value.replace(tzinfo=dt.timezone.utc)


# -- OIDs, UUIDs, uniqueIds -----------------------------------------------------------------------

def test_oid():
    assert T.parse_oid("2.16.156.10011.1.3") == "2.16.156.10011.1.3"
    # dotted decimal as ITI TF-3 Table 4.2.3.1.7-2 has it: the first arc is not held to
    # X.660's 0-2 (the NIST kit's sourceId 129.6.58.92.1.1 is accepted)
    assert T.parse_oid("129.6.58.92.1.1") == "129.6.58.92.1.1"
    assert T.is_oid("3.1")
    for bad in ("", "1", "01.2", "1.02", "1..2", "1.2.", "urn:oid:1.2", "1.2.a", ".1.2",
                "1." + "1234567890." * 7 + "1"):
        with pytest.raises(ValueError):
            T.parse_oid(bad)
    assert T.parse_oid_urn("urn:oid:1.2.156.112604") == "urn:oid:1.2.156.112604"
    with pytest.raises(ValueError):
        T.parse_oid_urn("1.2.156.112604")


def test_uuid_urn():
    u = "urn:uuid:7EDCA82F-054D-47F2-A032-9B2A5B5186C1"
    assert T.parse_uuid_urn(u) == u.lower()
    assert T.is_uuid_urn(u)
    for bad in ("Document01", "7edca82f-054d-47f2-a032-9b2a5b5186c1", "urn:uuid:xyz"):
        assert not T.is_uuid_urn(bad)
        with pytest.raises(ValueError):
            T.parse_uuid_urn(bad)


def test_document_unique_id():
    assert T.parse_document_unique_id("1.2.156.112604.1.1.101.20.7")
    assert T.parse_document_unique_id("1.2.156.112604.1.1.101.20^CDA0001")
    for bad in ("", "abc", "1.2.3^", "1.2.3^" + "x" * 17, "1.2.3^a^b"):
        with pytest.raises(ValueError):
            T.parse_document_unique_id(bad)


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=10**6))
def test_oid_property(arcs, first):
    text = ".".join(str(a) for a in [first, *arcs])
    if len(text) <= T.OID_MAX:
        assert T.parse_oid(text) == text

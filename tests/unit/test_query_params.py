"""Stored query parameter parsing (ITI TF-2a 3.18.4.1.2.3.5-3.18.4.1.2.3.7): value syntax, typed
conversion, multiplicity, AND/OR Slots, required and either/or parameters, the request element."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from hie.errors import XDS, RegistryErrors
from xds_registry import vocab
from xds_registry.queries import ITI18_QUERIES, ITI51_QUERIES, QUERY_IDS
from xds_registry.query_params import (CODE, STATUS, STRING, TIME, AdhocQueryRequest, Code,
                                       Param, ParamError, build_request, normalize_time,
                                       parse_assoc_type, parse_code, parse_entry_type,
                                       parse_level, parse_params, parse_status, quote,
                                       split_slot, split_value)
from xds_registry.query_sql import like_to_glob

PID = "RHIN0000001^^^&1.2.156.112604.1.2.1&ISO"


def codes_of(exc: pytest.ExceptionInfo) -> list[str]:
    return [e.error_code for e in exc.value.errors]


# -- value syntax ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, items", [
    ("'a'", ["a"]),
    ("  'a'  ", ["a"]),
    ("('a')", ["a"]),
    ("('a','b')", ["a", "b"]),
    ("( 'a' ,\n 'b' )", ["a", "b"]),
    ("'O''Brien'", ["O'Brien"]),
    ("('张三^^^&1.2&ISO', '李四')", ["张三^^^&1.2&ISO", "李四"]),
    ("200412", ["200412"]),
    ("(2004, 2005)", ["2004", "2005"]),
    ("'a, b (c)'", ["a, b (c)"]),
    ("''''", ["'"]),
])
def test_split_value(text, items):
    assert split_value(text) == items


@pytest.mark.parametrize("text", ["", "   ", "()", "('a'", "'a')", "'a", "('a',)", "('a' 'b')",
                                  "(,'a')", "a b", "('a'))", None])
def test_split_value_rejects(text):
    with pytest.raises(ParamError):
        split_value(text)


def test_split_slot_unions_values_and_joins_split_lists():
    assert split_slot(["('a')", "('b', 'c')"]) == ["a", "b", "c"]
    assert split_slot(["('a',", "'b')"]) == ["a", "b"]  # one list spread over two Values
    with pytest.raises(ParamError):
        split_slot([])
    with pytest.raises(ParamError):
        split_slot(["('a',", "'b'"])


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1)
                .filter(lambda s: s.strip()), min_size=1, max_size=5))
def test_quote_round_trips(values):
    assert split_value(quote(*values)) == values


# -- typed values ---------------------------------------------------------------------------------

def test_codes():
    assert parse_code("18842-5^^2.16.840.1.113883.6.1") == Code("18842-5", "2.16.840.1.113883.6.1")
    assert parse_code("18842-5^^^2.16.840.1.113883.6.1") == Code("18842-5", "2.16.840.1.113883.6.1")
    assert parse_code("N^正常^2.16.840.1.113883.5.25") == Code("N", "2.16.840.1.113883.5.25")
    for bad in ("Dialysis", "a^^", "^^scheme", "a^scheme", "a^^b^c^d"):
        with pytest.raises(ParamError):
            parse_code(bad)


@pytest.mark.parametrize("text, norm", [
    ("2004", "20040101000000"), ("200412", "20041201000000"), ("20041224", "20041224000000"),
    ("2004122408", "20041224080000"), ("200412240830", "20041224083000"),
    ("20041224083015", "20041224083015"),
])
def test_times_normalise_to_first_instant(text, norm):
    assert normalize_time(text) == norm


@pytest.mark.parametrize("bad", ["04", "20041", "2004-12-24", "20041224083015.5",
                                 "200412240830+0800", "200412240830151", "abcd"])
def test_bad_times(bad):
    with pytest.raises(ParamError):
        normalize_time(bad)


def test_status_type_level():
    assert parse_status(vocab.APPROVED) == "Approved"
    assert parse_status(vocab.DEPRECATED) == "Deprecated"
    assert parse_status("Approved") == "Approved"
    assert parse_status("urn:ihe:iti:2010:StatusType:DeferredCreation") == "DeferredCreation"
    with pytest.raises(ParamError):
        parse_status("urn:example:Approved")
    assert parse_entry_type(vocab.DE_STABLE) == "stable"
    assert parse_entry_type(vocab.DE_ON_DEMAND) == "on-demand"
    with pytest.raises(ParamError):
        parse_entry_type("urn:uuid:00000000-0000-0000-0000-000000000000")
    assert parse_assoc_type(vocab.RPLC) == "RPLC"
    assert parse_assoc_type(vocab.HAS_MEMBER) == "HasMember"
    assert parse_assoc_type("XFRM_RPLC") == "XFRM_RPLC"
    with pytest.raises(ParamError):
        parse_assoc_type("urn:ihe:iti:2007:AssociationType:Nonsense")
    assert parse_level("1") == 1 and parse_level("2") == 2
    with pytest.raises(ParamError):
        parse_level("3")


# -- parameters -----------------------------------------------------------------------------------

SPECS = (Param("$pid", STRING, required=True), Param("$codes", CODE, multiple=True),
         Param("$events", CODE, and_or=True), Param("$from", TIME),
         Param("$status", STATUS, required=True, multiple=True))


def test_parse_params_types_and_shapes():
    p = parse_params(SPECS, {
        "$pid": [f"'{PID}'"],
        "$codes": ["('a^^s1', 'b^^s1')", "('a^^s1')"][:1],
        "$events": [["('e1^^s')"], ["('e2^^s', 'e3^^s')"]],
        "$from": ["20240101"],
        "$status": [quote(vocab.APPROVED, vocab.DEPRECATED)],
        "$unknown": ["whatever, ignored"],
    })
    assert p.get("$pid") == PID
    assert p.list("$pid") == [PID]
    assert p.list("$codes") == [Code("a", "s1"), Code("b", "s1")]
    assert p.groups("$events") == [[Code("e1", "s")], [Code("e2", "s"), Code("e3", "s")]]
    assert p.get("$from") == "20240101000000"
    assert p.list("$status") == ["Approved", "Deprecated"]
    assert "$unknown" not in p and p.list("$missing") == [] and p.groups("$missing") == []


def test_parameter_names_match_case_insensitively():
    p = parse_params(SPECS, {"$PID": [f"'{PID}'"], "$STATUS": ["'Approved'"]})
    assert p.get("$pid") == PID


def test_missing_required():
    with pytest.raises(RegistryErrors) as exc:
        parse_params(SPECS, {"$status": ["'Approved'"]})
    assert codes_of(exc) == [XDS.StoredQueryMissingParam]
    assert exc.value.errors[0].location == "$pid"


def test_several_values_for_a_single_valued_parameter():
    with pytest.raises(RegistryErrors) as exc:
        parse_params(SPECS, {"$pid": [f"('{PID}', 'other')"], "$status": ["'Approved'"]})
    assert codes_of(exc) == [XDS.StoredQueryParamNumber]
    with pytest.raises(RegistryErrors) as exc:  # two Values of one Slot: the same
        parse_params(SPECS, {"$pid": [[f"'{PID}'", "'other'"]], "$status": ["'Approved'"]})
    assert codes_of(exc) == [XDS.StoredQueryParamNumber]


def test_repeated_slot_only_for_and_or_parameters():
    with pytest.raises(RegistryErrors) as exc:
        parse_params(SPECS, {"$pid": [f"'{PID}'"], "$status": ["'Approved'"],
                             "$codes": [["('a^^s')"], ["('b^^s')"]]})
    assert codes_of(exc) == [XDS.StoredQueryParamNumber]
    # the same parameter name spelled twice in the request (case) also counts as two Slots
    with pytest.raises(RegistryErrors) as exc:
        parse_params(SPECS, {"$pid": [f"'{PID}'"], "$PID": [f"'{PID}'"], "$status": ["'Approved'"]})
    assert codes_of(exc) == [XDS.StoredQueryParamNumber]


def test_format_errors_are_registry_errors_and_all_are_reported():
    with pytest.raises(RegistryErrors) as exc:
        parse_params(SPECS, {"$pid": ["'unterminated"], "$status": ["'Approved'"],
                             "$codes": ["('Dialysis')"], "$from": ["2024-01-01"]})
    assert sorted(codes_of(exc)) == [XDS.RegistryError] * 3
    assert {e.location for e in exc.value.errors} == {"$pid", "$codes", "$from"}


def test_exactly_one_and_at_least_one():
    get_docs = ITI18_QUERIES[QUERY_IDS["GetDocuments"]]
    with pytest.raises(RegistryErrors) as exc:
        get_docs.parse({})
    assert codes_of(exc) == [XDS.StoredQueryParamNumber]
    with pytest.raises(RegistryErrors) as exc:
        get_docs.parse({"$XDSDocumentEntryEntryUUID": ["'urn:uuid:1'"],
                        "$XDSDocumentEntryUniqueId": ["'1.2.3'"]})
    assert codes_of(exc) == [XDS.StoredQueryParamNumber]
    assert get_docs.parse({"$XDSDocumentEntryUniqueId": ["('1.2.3', '1.2.4')"]}).list(
        "$XDSDocumentEntryUniqueId") == ["1.2.3", "1.2.4"]
    mpq = ITI51_QUERIES[QUERY_IDS["FindDocumentsForMultiplePatients"]]
    with pytest.raises(RegistryErrors) as exc:
        mpq.parse({"$XDSDocumentEntryStatus": [quote(vocab.APPROVED)]})
    assert codes_of(exc) == [XDS.StoredQueryMissingParam]


def test_catalog_holds_every_query_id():
    expected = {
        "FindDocuments": "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d",
        "FindDocumentsByReferenceId": "urn:uuid:12941a89-e02e-4be5-967c-ce4bfc8fe492",
        "FindSubmissionSets": "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9",
        "FindFolders": "urn:uuid:958f3006-baad-4929-a4de-ff1114824431",
        "GetAll": "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3",
        "GetDocuments": "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4",
        "GetFolders": "urn:uuid:5737b14c-8a1a-4539-b659-e03a34a5e1e4",
        "GetAssociations": "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155",
        "GetDocumentsAndAssociations": "urn:uuid:bab9529a-4a10-40b3-a01f-f68a615d247a",
        "GetSubmissionSets": "urn:uuid:51224314-5390-4169-9b91-b1980040715a",
        "GetSubmissionSetAndContents": "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83",
        "GetFolderAndContents": "urn:uuid:b909a503-523d-4517-8acf-8e5834dfc4c7",
        "GetFoldersForDocument": "urn:uuid:10cae35a-c7f9-4cf5-b61e-fc3278ffb578",
        "GetRelatedDocuments": "urn:uuid:d90e5407-b356-4d91-a89f-873917b4b0e6",
    }
    assert {q.name: q.id for q in ITI18_QUERIES.values()} == expected
    assert {q.name for q in ITI51_QUERIES.values()} == {"FindDocumentsForMultiplePatients",
                                                        "FindFoldersForMultiplePatients"}


# -- the request element --------------------------------------------------------------------------

def test_request_round_trip():
    el = build_request(QUERY_IDS["FindDocuments"], {
        "$XDSDocumentEntryPatientId": [f"'{PID}'"],
        "$XDSDocumentEntryEventCodeList": [["('a^^s')"], ["('b^^s')"]],
    }, "ObjectRef")
    req = AdhocQueryRequest.from_element(etree.fromstring(etree.tostring(el)))
    assert req.query_id == QUERY_IDS["FindDocuments"]
    assert req.return_type == "ObjectRef"
    assert req.params == {"$XDSDocumentEntryPatientId": [[f"'{PID}'"]],
                          "$XDSDocumentEntryEventCodeList": [["('a^^s')"], ["('b^^s')"]]}


def test_request_structure_errors():
    q = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
    with pytest.raises(RegistryErrors):
        AdhocQueryRequest.from_element(etree.Element(f"{{{q}}}AdhocQueryRequest"))
    with pytest.raises(RegistryErrors):
        AdhocQueryRequest.from_element(etree.Element("other"))


def test_like_to_glob():
    assert like_to_glob("%王%") == "*王*"
    assert like_to_glob("D10_4^*[x]?") == "D10?4^[*][[]x][?]"

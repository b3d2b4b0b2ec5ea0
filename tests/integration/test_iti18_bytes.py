"""The Registry Stored Query response written as bytes (ITI TF-2a 3.18.4.1.3, ebRS 3.0 §6.3.2):
``QueryResult.to_bytes`` — the stored ebRIM with ``status`` / ``home`` spliced in — carries the
same infoset as the lxml tree of ``QueryResult.to_element`` (status, lid, home, VersionInfo written
in), on SQLite and PostgreSQL, for a mix of objects with Chinese text and characters that need
escaping; stored elements not in the form ``store.insert`` writes take the tree path.  Also the
FindDocuments statement that reads the objects itself, above and below ``FUSED_XML_ROWS``."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from lxml import etree

from tests import xdsdata as X
from tests.integration.iti18_support import q, query, register, set_status, settings
from tests.schemas import assert_valid
from xds_registry import query_sql, vocab
from xds_registry.queries import QUERY_IDS, run_query
from xds_registry.query_result import leaf_bytes, leaf_element
from xds_registry.tables import registry_object

APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
STATUSES = q(APPROVED, DEPRECATED)
TRICKY = '出院小结 & "引号" <尖括号> \'单引号\' ]]> 张三'


def canonical(xml: bytes | etree._Element) -> bytes:
    """The canonical form (C14N 1.0: attribute order and redundant namespace declarations do
    not count; whitespace does)."""
    if not isinstance(xml, bytes):
        xml = etree.tostring(xml, encoding="UTF-8")
    return etree.tostring(etree.fromstring(xml), method="c14n")


@pytest.fixture
def data(database):
    pid = X.patient_cx(X.ZHANG_SAN)
    sub = X.Submission(patient_id=pid, title="提交 & <测试>",
                       comments='注释 "一"\n第二行\t制表', home="urn:oid:1.2.156.112604.1.999")
    a = sub.document(title=TRICKY, comments="第一行\n第二行\t制表 &amp; 实体",
                     extra_slots={"urn:example:备注": ["a<b & c>d", '"引号"']})
    b = sub.document(title="检验报告", home="urn:oid:1.2.156.112604.1.998")
    c = sub.document(title="影像报告 <CT>", class_code=X.CLASS_LAB)
    f = sub.folder(title="住院资料 & 影像")
    sub.add_to_folder(f, a)
    build = sub.build

    def pretty_printed():   # b with an extra child (kept raw) and layout whitespace around it
        el = build()
        eo = X.find(el, b)
        eo[-1].tail = "\n  "
        etree.SubElement(eo, f"{{{vocab.RIM_NS}}}ContentVersionInfo", versionName="1").tail = "\n"
        return el

    sub.build = pretty_printed
    register(database, sub)
    set_status(database, c, "Deprecated")
    return type("Data", (), {"pid": pid, "ss": sub.ss_id, "a": a, "b": b, "c": c, "f": f})


def both(database, query_name, params, return_type="LeafClass", home=None):
    st = settings() if home is None else settings(home=home)
    with database.read() as conn:
        result = run_query(conn, st, QUERY_IDS[query_name], params, return_type)
    tree, data = result.to_element(), result.to_bytes()
    assert_valid(data)
    assert canonical(data) == canonical(tree)
    return result, data


@pytest.mark.parametrize("home", [None, ""])
@pytest.mark.parametrize("return_type", ["LeafClass", "ObjectRef"])
def test_bytes_equal_tree(database, data, home, return_type):
    result, out = both(database, "GetAll", {
        "$patientId": [q(data.pid)], "$XDSDocumentEntryStatus": [STATUSES],
        "$XDSSubmissionSetStatus": [STATUSES], "$XDSFolderStatus": [STATUSES]},
        return_type, home)
    kinds = {o.kind for o in result.objects}
    assert kinds == {"SubmissionSet", "Folder", "DocumentEntry", "Association"}
    assert {data.a, data.b, data.c, data.f, data.ss} <= set(result.ids)
    if return_type == "LeafClass":
        assert TRICKY.encode() not in out    # escaped, not raw
        el = etree.fromstring(out)
        rim = {"rim": vocab.RIM_NS}
        [title] = el.xpath(f"//rim:ExtrinsicObject[@id='{data.a}']/rim:Name/rim:LocalizedString/"
                           "@value", namespaces=rim)
        assert title == TRICKY
        [status] = el.xpath(f"//rim:ExtrinsicObject[@id='{data.c}']/@status", namespaces=rim)
        assert status == DEPRECATED
        homes = set(el.xpath("//rim:RegistryObjectList/*/@home", namespaces=rim))
        # the registry's home everywhere; without one, the submitted home is kept
        assert homes == ({settings().home_community_id} if home is None else
                         {"urn:oid:1.2.156.112604.1.999", "urn:oid:1.2.156.112604.1.998"})


def test_find_documents_bytes(database, data):
    result, out = both(database, "FindDocuments", {"$XDSDocumentEntryPatientId": [q(data.pid)],
                                                   "$XDSDocumentEntryStatus": [STATUSES]})
    assert set(result.ids) == {data.a, data.b, data.c}
    b = next(o for o in result.objects if o.id == data.b)
    assert b"ContentVersionInfo" in b.xml and b"\n" not in b.xml   # stored without layout
    assert b"ContentVersionInfo" in out


def test_stored_forms_the_splice_does_not_handle(database, data):
    """Rows whose XML already has a status, a different lid or version, or none, still answer
    like the tree (through it)."""
    with database.read() as conn:
        xml = conn.execute(sa.select(registry_object.c.xml)
                           .where(registry_object.c.id == data.a)).scalar()
    head, rest = xml.split(b" ", 1)
    variants = [
        head + b' status="urn:oasis:names:tc:ebxml-regrep:StatusType:Submitted" ' + rest,
        xml.replace(b' lid="', b' lid="urn:uuid:other', 1),
        xml.replace(b'<rim:VersionInfo versionName="1"/>', b""),
        xml.replace(b'<rim:VersionInfo versionName="1"/>',
                    b'<rim:VersionInfo versionName="1" comment="&lt;&amp;"/>'),
        xml.replace(b"<rim:Name>", b"\n  <rim:Name>", 1),   # blank text (pretty-printed)
        xml,
    ]
    # the form store.insert writes is spliced: the stored bytes follow the tag name unchanged
    spliced = leaf_bytes(xml, "Approved", 1, data.a, "urn:oid:1.2.3&4")
    assert spliced.startswith(head + b' status="' + APPROVED.encode() + b'" home="urn:oid:1.2.3'
                              b'&amp;4" ') and spliced.endswith(rest)
    for v in variants:
        for home in ("", "urn:oid:1.2.3&4", 'urn:"x"'):
            for version in (1, 2, None):
                got = leaf_bytes(v, "Approved", version, data.a, home)
                assert canonical(got) == canonical(leaf_element(v, "Approved", version, data.a,
                                                                home))


def test_find_documents_above_fused_rows(database, data, monkeypatch):
    """More DocumentEntries than FUSED_XML_ROWS: ids first, XML fetched afterwards; same answer."""
    params = {"$XDSDocumentEntryPatientId": [q(data.pid)], "$XDSDocumentEntryStatus": [STATUSES]}
    small = both(database, "FindDocuments", params)[1]
    monkeypatch.setattr(query_sql, "FUSED_XML_ROWS", 1)
    result, big = both(database, "FindDocuments", params)
    assert canonical(big) == canonical(small)
    assert all(o.xml for o in result.objects)
    ans = query(database, QUERY_IDS["FindDocuments"], params, st=settings(max_query_results=2))
    assert ans.codes == ["XDSTooManyResults"]
    ans = query(database, QUERY_IDS["FindDocuments"], params, "ObjectRef")
    assert set(ans.ids) == {data.a, data.b, data.c}

"""The test kit's ebRIM 2.1 submissions translated to ebRIM 3.0 (conformance/ebrim21.py): every
2.1 metadata file of the registry, repository, Metadata Update and Remove Metadata suites
becomes a SubmitObjectsRequest the official ebRS 3.0 schema accepts, and says what it said."""
from lxml import etree
import pytest

from conformance import ebrim21
from conformance.testkit import SUITES, TestKit
from tests.schemas import errors

NS = {"rim": ebrim21.RIM, "lcm": ebrim21.LCM}
DOC_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"


@pytest.fixture(scope="module")
def kit():
    return TestKit()


def _v21_files(kit):
    for actor in SUITES:
        for tests in kit.suite(actor).values():
            for t in tests:
                for s in t.sections:
                    for step in t.plan(s).steps:
                        name = step.transaction.metadata_file
                        if name:
                            root = etree.parse(str(t.path / s / name)).getroot()
                            if ebrim21.is_v21(root):
                                yield f"{t.id}/{s}/{name}", root


def test_every_2_1_submission_of_the_suites_becomes_valid_ebrim_3_0(kit):
    files = dict(_v21_files(kit))
    assert len(files) == 155   # distinct files (some steps send the same one)
    for name, root in files.items():
        out = ebrim21.to_v3(root)
        assert out.tag == f"{{{ebrim21.LCM}}}SubmitObjectsRequest"
        assert errors(out) == [], name


def test_what_a_translated_submission_says(kit):
    root = etree.parse(str(kit.tests["11990"].path / "submit" / "single_doc.xml")).getroot()
    ids = iter(f"urn:uuid:00000000-0000-4000-8000-{n:012d}" for n in range(1, 100))
    out = ebrim21.to_v3(root, lambda: next(ids))
    objects = out.find("rim:RegistryObjectList", NS)
    assert [etree.QName(e).localname for e in objects] == [
        "ExtrinsicObject", "RegistryPackage", "Classification", "Association"]   # no ObjectRef
    doc = objects.find("rim:ExtrinsicObject", NS)
    assert doc.get("id") == "Document01" and doc.get("mimeType") == "text/plain"
    kinds = [etree.QName(c).localname for c in doc]
    assert kinds == sorted(kinds, key=["Slot", "Name", "Description", "Classification",
                                       "ExternalIdentifier"].index)          # 3.0's order
    assert doc.find("rim:Name/rim:LocalizedString", NS).get("value") == "Physical"
    pid = doc.xpath("rim:Slot[@name='sourcePatientId']/rim:ValueList/rim:Value/text()",
                    namespaces=NS)
    assert pid == ["89765a87b^^^&1.3.4.5&ISO"]
    [uid] = doc.xpath(f"rim:ExternalIdentifier[@identificationScheme='{DOC_UNIQUE_ID}']",
                      namespaces=NS)
    assert uid.get("registryObject") == "Document01" and uid.get("value") == "Document01"
    assert uid.get("id").startswith("urn:uuid:00000000-0000-4000-8000-")
    assert all(c.get("id") and c.get("classifiedObject") == "Document01"
               for c in doc.findall("rim:Classification", NS))
    ss = objects.find("rim:RegistryPackage", NS)
    assert ss.xpath("rim:ExternalIdentifier/@value", namespaces=NS)[-1] == "$patientid$"
    assoc = objects.find("rim:Association", NS)
    assert assoc.get("associationType") == \
        "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
    assert (assoc.get("sourceObject"), assoc.get("targetObject")) == ("SubmissionSet01",
                                                                      "Document01")
    assert assoc.xpath("rim:Slot[@name='SubmissionSetStatus']//rim:Value/text()",
                       namespaces=NS) == ["Original"]


def test_xds_a_association_types_become_urns(kit):
    root = etree.parse(str(kit.tests["11992"].path / "rplc" / "metadata.xml")).getroot()
    types = ebrim21.to_v3(root).xpath("//rim:Association/@associationType", namespaces=NS)
    assert "urn:ihe:iti:2007:AssociationType:RPLC" in types
    assert all(t.startswith("urn:") for t in types)


def test_only_2_1_submissions_are_translated():
    with pytest.raises(ebrim21.TranslationError):
        ebrim21.to_v3(etree.fromstring(
            b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"/>'))
    with pytest.raises(ebrim21.TranslationError):
        ebrim21.to_v3(etree.fromstring(
            f'<rs:SubmitObjectsRequest xmlns:rs="{ebrim21.RS21}"><rs:Other/>'
            '</rs:SubmitObjectsRequest>'.encode()))

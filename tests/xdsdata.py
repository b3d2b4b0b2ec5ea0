"""Test-data builder for XDS.b metadata (ITI TF-3 4.2, ebRIM 3.0): valid Register Document Set-b
(ITI-42), Provide and Register (ITI-41), Update Document Set (ITI-57) and Delete Document Set
(ITI-62) requests with Chinese data, built as plain lxml elements, independent of the registry's own
model so they test the parser rather than mirror it.

Quick use::

    req = submit_objects_request(docs=2, folder=True)           # lcm:SubmitObjectsRequest

    sub = Submission(patient_id=patient_cx(ZHANG_SAN))          # more control
    d1 = sub.document(title="出院小结")                          # returns the entry id
    f1 = sub.folder(title="2024年住院资料")
    sub.add_to_folder(f1, d1)
    sub.replace("urn:uuid:...", title="出院小结（更正）")           # new doc + RPLC
    req = sub.build()                                           # or sub.provide_and_register()
    sub.unique_ids[d1], sub.contents[d1], sub.ss_id ...

Ids are fresh ``urn:uuid:`` values unless ``symbolic=True`` (then ``Document01``, ``Folder01``,
``SubmissionSet01``, ... which the registry must replace).  Every builder call takes keyword
overrides; pass ``None`` to leave an optional attribute out, and use :func:`set_slot`,
:func:`remove_slot`, :func:`set_external_id`, :func:`remove_classification` to break things.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from lxml import etree

from pix_pdq.resident_id import make

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
NSMAP = {"rim": RIM, "lcm": LCM, "rs": RS}

# ---- vocabulary (ITI TF-3 4.2.5), written out here on purpose (independent of the code) -------
DE_STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
DE_ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
SS_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FD_NODE = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONF = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_HCFT = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
FD_CODES = "urn:uuid:1ba97051-7806-41a8-a48b-8fce7af683c5"
FD_PID = "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a"
FD_UID = "urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
APND = "urn:ihe:iti:2007:AssociationType:APND"
XFRM = "urn:ihe:iti:2007:AssociationType:XFRM"
XFRM_RPLC = "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
UPDATE_AVAILABILITY = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
_OT = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:"

# ---- realistic Chinese identifiers ------------------------------------------------------------
AFFINITY_DOMAIN = "1.2.156.112604.1.2.1"       # regional MPI (affinity domain) assigning authority
ID_CARD_OID = "2.16.156.10011.1.3"             # 居民身份证号 (WS 363 / WS/T 500 OID)
HOSPITAL_OID = "1.2.156.112604.1.1.101"        # 北京市第一人民医院
HOSPITAL_PID_OID = HOSPITAL_OID + ".2"          # the hospital's own patient numbers
REPOSITORY_ID = "1.2.156.112604.1.3.1"         # 区域文档库
SOURCE_ID = HOSPITAL_OID + ".10"               # the hospital's document source
UID_ROOT = HOSPITAL_OID + ".20"


def gb11643(body17: str) -> str:
    """An 18-character 居民身份证号 with its GB 11643-1999 check character."""
    return make(body17)


@dataclass(frozen=True)
class Person:
    name: str            # 张三
    family: str          # 张
    given: str           # 三
    id_card: str         # GB 11643
    birth: str           # YYYYMMDD
    sex: str             # M / F
    mpi: str             # the affinity-domain (regional MPI) id
    mrn: str             # hospital medical record number
    address: str = "建国路1号^^北京市^北京市^100022^CHN"


ZHANG_SAN = Person("张三", "张", "三", gb11643("11010519900307123"), "19900307", "M",
                   "RHIN0000001", "MR2024000101")
LI_SI = Person("李四", "李", "四", gb11643("31010419851122456"), "19851122", "F",
               "RHIN0000002", "MR2024000102", "淮海中路100号^^上海市^上海市^200021^CHN")
WANG_WU = Person("王五", "王", "五", gb11643("44030419700101789"), "19700101", "M",
                 "RHIN0000003", "MR2024000103", "深南大道3号^^深圳市^广东省^518000^CHN")
PATIENTS = (ZHANG_SAN, LI_SI, WANG_WU)


def patient_cx(person: Person = ZHANG_SAN, domain: str = AFFINITY_DOMAIN) -> str:
    """The XDS patientId (``id^^^&oid&ISO``) of ``person`` in the affinity domain."""
    return f"{person.mpi}^^^&{domain}&ISO"


def new_patient(domain: str = AFFINITY_DOMAIN) -> str:
    """A fresh affinity-domain patient id nobody else uses."""
    return f"RHIN{uuid.uuid4().int % 10**12:012d}^^^&{domain}&ISO"


_seq = itertools.count(1)


def new_oid(root: str = UID_ROOT) -> str:
    """A fresh OID under ``root`` (unique across test runs)."""
    now = dt.datetime.now(dt.timezone.utc)
    return f"{root}.{now:%Y%m%d%H%M%S}.{uuid.uuid4().int % 10**9}.{next(_seq)}"


def new_uuid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def now_dtm(seconds: bool = True) -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S" if seconds else "%Y%m%d%H%M")


@dataclass(frozen=True)
class Code:
    code: str
    scheme: str
    display: str


@dataclass(frozen=True)
class Author:
    person: str | None = "D1024^王^建国^^^^^^&1.2.156.112604.1.1.101.3&ISO"
    institutions: tuple[str, ...] = ("北京市第一人民医院^^^^^&1.2.156.112604.1.1&ISO^^^^101",)
    roles: tuple[str, ...] = ("主治医师",)
    specialties: tuple[str, ...] = ("心血管内科",)
    telecoms: tuple[str, ...] = ("^^Internet^wangjianguo@bjfh.example.cn",)


LOINC, SNOMED, ICD10, CONF_OID = ("2.16.840.1.113883.6.1", "2.16.840.1.113883.6.96",
                                 "2.16.840.1.113883.6.3", "2.16.840.1.113883.5.25")
CLASS_DISCHARGE = Code("18842-5", LOINC, "出院小结")
TYPE_DISCHARGE = Code("18842-5", LOINC, "出院小结")
CLASS_LAB = Code("11502-2", LOINC, "检验报告")
CONF_NORMAL = Code("N", CONF_OID, "正常")
CONF_RESTRICTED = Code("R", CONF_OID, "受限")
FORMAT_CDA = Code("urn:ihe:pcc:xds-ms:2007", "1.3.6.1.4.1.19376.1.2.3", "出院小结 CDA 文档")
HCFT_HOSPITAL = Code("22232009", SNOMED, "医院")
PRACTICE_CARDIO = Code("394579002", SNOMED, "心血管内科")
EVENT_ANGINA = Code("I20.801", ICD10, "稳定型心绞痛")
CONTENT_TYPE = Code("34133-9", LOINC, "诊疗过程摘要")
FOLDER_CODE = Code("INPATIENT", "1.2.156.112604.1.9.1", "住院资料")


def cda_document(person: Person = ZHANG_SAN, title: str = "出院小结") -> bytes:
    """A small CDA-looking document for repository tests (UTF-8, Chinese text)."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
            f"<title>{title}</title><recordTarget><patientRole><id extension=\"{person.id_card}\" "
            f"root=\"{ID_CARD_OID}\"/><patient><name>{person.name}</name></patient></patientRole>"
            f"</recordTarget><component><text>患者{person.name}，诊断：稳定型心绞痛。{uuid.uuid4()}"
            f"</text></component></ClinicalDocument>").encode("utf-8")


# ---- element helpers --------------------------------------------------------------------------

def rim(tag: str, parent: etree._Element | None = None, **attrs: str | None) -> etree._Element:
    a = {k: v for k, v in attrs.items() if v is not None}
    if parent is None:
        return etree.Element(f"{{{RIM}}}{tag}", a, nsmap=NSMAP)
    return etree.SubElement(parent, f"{{{RIM}}}{tag}", a)


def slot(parent: etree._Element, name: str, *values: str) -> etree._Element:
    s = rim("Slot", parent, name=name)
    vl = rim("ValueList", s)
    for v in values:
        rim("Value", vl).text = v
    return s


def name_el(parent: etree._Element, text: str | None, tag: str = "Name") -> None:
    if text is not None:
        rim("LocalizedString", rim(tag, parent), value=text,
            **{"{http://www.w3.org/XML/1998/namespace}lang": "zh-CN", "charset": "UTF-8"})


def classification(parent: etree._Element, scheme: str, obj: str, code: Code | None,
                   id: str | None = None) -> etree._Element:
    c = rim("Classification", parent, id=id or new_uuid(), classificationScheme=scheme,
            classifiedObject=obj, nodeRepresentation=code.code if code else "",
            objectType=_OT + "Classification")
    if code is not None:
        slot(c, "codingScheme", code.scheme)
        name_el(c, code.display)
    return c


def author_classification(parent: etree._Element, scheme: str, obj: str, a: Author) -> None:
    c = rim("Classification", parent, id=new_uuid(), classificationScheme=scheme,
            classifiedObject=obj, nodeRepresentation="", objectType=_OT + "Classification")
    if a.person:
        slot(c, "authorPerson", a.person)
    if a.institutions:
        slot(c, "authorInstitution", *a.institutions)
    if a.roles:
        slot(c, "authorRole", *a.roles)
    if a.specialties:
        slot(c, "authorSpecialty", *a.specialties)
    if a.telecoms:
        slot(c, "authorTelecommunication", *a.telecoms)


def external_id(parent: etree._Element, scheme: str, obj: str, value: str, label: str) -> None:
    e = rim("ExternalIdentifier", parent, id=new_uuid(), registryObject=obj,
            identificationScheme=scheme, value=value, objectType=_OT + "ExternalIdentifier")
    name_el(e, label)


def find(root: etree._Element, id: str) -> etree._Element:
    """The element with ``id`` anywhere under ``root``."""
    hits = root.xpath("//*[@id=$id]", id=id)
    if not hits:
        raise KeyError(id)
    return hits[0]


def set_slot(obj: etree._Element, name: str, *values: str) -> None:
    """Replace (or add) slot ``name`` of ``obj`` keeping schema order (slots come first)."""
    remove_slot(obj, name)
    s = rim("Slot", None, name=name)
    vl = rim("ValueList", s)
    for v in values:
        rim("Value", vl).text = v
    slots = obj.findall(f"{{{RIM}}}Slot")
    obj.insert(len(slots), s) if slots else obj.insert(0, s)


def remove_slot(obj: etree._Element, name: str) -> None:
    for s in obj.findall(f"{{{RIM}}}Slot"):
        if s.get("name") == name:
            obj.remove(s)


def set_external_id(obj: etree._Element, scheme: str, value: str | None) -> None:
    """Change the value of an ExternalIdentifier (``None`` removes it)."""
    for e in obj.findall(f"{{{RIM}}}ExternalIdentifier"):
        if e.get("identificationScheme") == scheme:
            if value is None:
                obj.remove(e)
            else:
                e.set("value", value)


def remove_classification(obj: etree._Element, scheme: str) -> None:
    for c in obj.findall(f"{{{RIM}}}Classification"):
        if c.get("classificationScheme") == scheme:
            obj.remove(c)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# ---- the builder ------------------------------------------------------------------------------

@dataclass
class Submission:
    """One SubmissionSet and its members; build with :meth:`build` (ITI-42) or
    :meth:`provide_and_register` (ITI-41)."""

    patient_id: str = field(default_factory=lambda: patient_cx(ZHANG_SAN))
    symbolic: bool = False
    person: Person = ZHANG_SAN
    ss_unique_id: str | None = None
    source_id: str = SOURCE_ID
    submission_time: str | None = None
    title: str | None = "北京市第一人民医院 出院文档提交"
    comments: str | None = "由医院信息系统自动提交"
    authors: Sequence[Author] = (Author(),)
    content_type: Code | None = CONTENT_TYPE
    intended_recipients: Sequence[str] = ()
    home: str | None = None
    ss_extra_slots: dict[str, Sequence[str]] = field(default_factory=dict)
    ss_classification_inside: bool = False   # put the SS classification inside the package

    def __post_init__(self) -> None:
        self._n = itertools.count(1)
        self.ss_id = "SubmissionSet01" if self.symbolic else new_uuid()
        self.ss_unique_id = self.ss_unique_id or new_oid()
        self.submission_time = self.submission_time or now_dtm()
        self.objects: list[etree._Element] = []    # top-level objects after the SS
        self.refs: list[str] = []                   # rim:ObjectRef ids
        self.unique_ids: dict[str, str] = {}        # entry id -> uniqueId (docs and folders)
        self.contents: dict[str, bytes] = {}        # doc id -> document bytes
        self.documents: list[str] = []
        self.folders: list[str] = []
        self.associations: list[str] = []

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._n):02d}" if self.symbolic else new_uuid()

    # -- DocumentEntry ------------------------------------------------------------------------
    def document(self, *, id: str | None = None, unique_id: str | None = None,
                 patient_id: str | None = None, title: str | None = "出院小结",
                 comments: str | None = "患者出院时的病情总结",
                 content: bytes | None = None, hash: str | None | bool = True,
                 size: int | None | bool = True, repository_unique_id: str | None = REPOSITORY_ID,
                 mime_type: str = "text/xml", on_demand: bool = False,
                 creation_time: str | None = "20240315083000",
                 service_start: str | None = "20240305090000",
                 service_stop: str | None = "20240315080000",
                 language: str | None = "zh-CN",
                 source_patient_id: str | None = "",
                 source_patient_info: Sequence[str] | None = None,
                 legal_authenticator: str | None = "D1001^李^明^^^^^^&1.2.156.112604.1.1.101.3&ISO",
                 class_code: Code | None = CLASS_DISCHARGE, type_code: Code | None = TYPE_DISCHARGE,
                 format_code: Code | None = FORMAT_CDA, hcft_code: Code | None = HCFT_HOSPITAL,
                 practice_code: Code | None = PRACTICE_CARDIO,
                 confidentiality: Sequence[Code] = (CONF_NORMAL,),
                 event_codes: Sequence[Code] = (EVENT_ANGINA,),
                 authors: Sequence[Author] = (Author(),),
                 reference_ids: Sequence[str] = (),
                 uri: str | None = None, availability: str | None = None,
                 lid: str | None = None, version: str | None = None,
                 extra_slots: dict[str, Sequence[str]] | None = None,
                 ss_status: str | None = "Original", member: bool = True,
                 home: str | None = None) -> str:
        """Add a DocumentEntry (plus its SS HasMember unless ``member=False``); returns its id."""
        did = id or self._id("Document")
        uid = unique_id or new_oid()
        pid = patient_id or self.patient_id
        if content is None and not on_demand:
            content = cda_document(self.person, title or "文档")
        if content is not None:
            self.contents[did] = content
        eo = rim("ExtrinsicObject", None, id=did, mimeType=mime_type,
                 objectType=DE_ON_DEMAND if on_demand else DE_STABLE, lid=lid, home=home)
        if creation_time and not on_demand:
            slot(eo, "creationTime", creation_time)
        if hash is True and content is not None and not on_demand:
            slot(eo, "hash", sha1(content))
        elif isinstance(hash, str):
            slot(eo, "hash", hash)
        if size is True and content is not None and not on_demand:
            slot(eo, "size", str(len(content)))
        elif isinstance(size, int) and size is not True and size is not False:
            slot(eo, "size", str(size))
        if language:
            slot(eo, "languageCode", language)
        if legal_authenticator:
            slot(eo, "legalAuthenticator", legal_authenticator)
        if repository_unique_id:
            slot(eo, "repositoryUniqueId", repository_unique_id)
        if service_start:
            slot(eo, "serviceStartTime", service_start)
        if service_stop:
            slot(eo, "serviceStopTime", service_stop)
        if source_patient_id == "":
            source_patient_id = f"{self.person.mrn}^^^&{HOSPITAL_PID_OID}&ISO"
        if source_patient_id:
            slot(eo, "sourcePatientId", source_patient_id)
        if source_patient_info is None:
            p = self.person
            source_patient_info = (f"PID-3|{p.mrn}^^^&{HOSPITAL_PID_OID}&ISO",
                                   f"PID-3|{p.id_card}^^^&{ID_CARD_OID}&ISO",
                                   f"PID-5|{p.family}^{p.given}^^^", f"PID-7|{p.birth}",
                                   f"PID-8|{p.sex}", f"PID-11|{p.address}")
        if source_patient_info:
            slot(eo, "sourcePatientInfo", *source_patient_info)
        if uri:
            slot(eo, "URI", uri)
        if availability:
            slot(eo, "documentAvailability", availability)
        if reference_ids:
            slot(eo, "urn:ihe:iti:xds:2013:referenceIdList", *reference_ids)
        for k, vs in (extra_slots or {}).items():
            slot(eo, k, *vs)
        name_el(eo, title)
        name_el(eo, comments, "Description")
        if version is not None:
            rim("VersionInfo", eo, versionName=version)
        for a in authors:
            author_classification(eo, DE_AUTHOR, did, a)
        for scheme, code in ((DE_CLASS, class_code),):
            if code:
                classification(eo, scheme, did, code)
        for c in confidentiality:
            classification(eo, DE_CONF, did, c)
        for c in event_codes:
            classification(eo, DE_EVENT, did, c)
        for scheme, code in ((DE_FORMAT, format_code), (DE_HCFT, hcft_code),
                             (DE_PRACTICE, practice_code), (DE_TYPE, type_code)):
            if code:
                classification(eo, scheme, did, code)
        external_id(eo, DE_PID, did, pid, "XDSDocumentEntry.patientId")
        external_id(eo, DE_UID, did, uid, "XDSDocumentEntry.uniqueId")
        self.objects.append(eo)
        self.unique_ids[did] = uid
        self.documents.append(did)
        if member:
            self.associate(HAS_MEMBER, self.ss_id, did,
                           slots={"SubmissionSetStatus": [ss_status]} if ss_status else {})
        return did

    # -- Folder ---------------------------------------------------------------------------------
    def folder(self, *, id: str | None = None, unique_id: str | None = None,
               patient_id: str | None = None, title: str | None = "2024年3月住院资料",
               comments: str | None = "心血管内科住院期间的全部文档",
               codes: Sequence[Code] = (FOLDER_CODE,), last_update_time: str | None = None,
               lid: str | None = None, version: str | None = None,
               extra_slots: dict[str, Sequence[str]] | None = None,
               member: bool = True, classification_inside: bool = False) -> str:
        fid = id or self._id("Folder")
        uid = unique_id or new_oid()
        rp = rim("RegistryPackage", None, id=fid, objectType=_OT + "RegistryPackage", lid=lid)
        if last_update_time:
            slot(rp, "lastUpdateTime", last_update_time)
        for k, vs in (extra_slots or {}).items():
            slot(rp, k, *vs)
        name_el(rp, title)
        name_el(rp, comments, "Description")
        if version is not None:
            rim("VersionInfo", rp, versionName=version)
        if classification_inside:
            rim("Classification", rp, id=new_uuid(), classifiedObject=fid,
                classificationNode=FD_NODE, objectType=_OT + "Classification")
        for c in codes:
            classification(rp, FD_CODES, fid, c)
        external_id(rp, FD_PID, fid, patient_id or self.patient_id, "XDSFolder.patientId")
        external_id(rp, FD_UID, fid, uid, "XDSFolder.uniqueId")
        self.objects.append(rp)
        if not classification_inside:
            self.objects.append(rim("Classification", None, id=self._id("FolderClass"),
                                    classifiedObject=fid, classificationNode=FD_NODE,
                                    objectType=_OT + "Classification"))
        self.unique_ids[fid] = uid
        self.folders.append(fid)
        if member:
            self.associate(HAS_MEMBER, self.ss_id, fid)
        return fid

    # -- Associations -----------------------------------------------------------------------
    def associate(self, assoc_type: str, source: str, target: str, *,
                  slots: dict[str, Sequence[str]] | None = None, id: str | None = None,
                  ss_member: bool = False, status: str | None = None) -> str:
        aid = id or self._id("Assoc")
        a = rim("Association", None, id=aid, associationType=assoc_type, sourceObject=source,
                targetObject=target, objectType=_OT + "Association", status=status)
        for k, vs in (slots or {}).items():
            slot(a, k, *vs)
        self.objects.append(a)
        self.associations.append(aid)
        if ss_member:
            self.associate(HAS_MEMBER, self.ss_id, aid)
        return aid

    def add_to_folder(self, folder_id: str, doc_id: str, *, ss_member: bool = True) -> str:
        """Folder HasMember document, itself a member of the SubmissionSet (ITI TF-3 4.2.2.1.7)."""
        return self.associate(HAS_MEMBER, folder_id, doc_id, ss_member=ss_member)

    def relate(self, assoc_type: str, original: str, **doc_kw) -> str:
        """A new DocumentEntry related to ``original`` (RPLC, APND, XFRM, XFRM_RPLC, signs)."""
        did = self.document(**doc_kw)
        self.associate(assoc_type, did, original)
        if original.startswith("urn:uuid:") and original not in self.refs:
            self.refs.append(original)
        return did

    def replace(self, original: str, **doc_kw) -> str:
        return self.relate(RPLC, original, **doc_kw)

    def object_ref(self, id: str) -> None:
        if id not in self.refs:
            self.refs.append(id)

    # -- output -----------------------------------------------------------------------------
    def submission_set(self) -> etree._Element:
        ss = rim("RegistryPackage", None, id=self.ss_id, objectType=_OT + "RegistryPackage",
                 home=self.home)
        slot(ss, "submissionTime", self.submission_time)
        if self.intended_recipients:
            slot(ss, "intendedRecipient", *self.intended_recipients)
        for k, vs in self.ss_extra_slots.items():
            slot(ss, k, *vs)
        name_el(ss, self.title)
        name_el(ss, self.comments, "Description")
        if self.ss_classification_inside:
            rim("Classification", ss, id=new_uuid(), classifiedObject=self.ss_id,
                classificationNode=SS_NODE, objectType=_OT + "Classification")
        for a in self.authors:
            author_classification(ss, SS_AUTHOR, self.ss_id, a)
        if self.content_type:
            classification(ss, SS_CONTENT, self.ss_id, self.content_type)
        external_id(ss, SS_UID, self.ss_id, self.ss_unique_id, "XDSSubmissionSet.uniqueId")
        external_id(ss, SS_SOURCE, self.ss_id, self.source_id, "XDSSubmissionSet.sourceId")
        external_id(ss, SS_PID, self.ss_id, self.patient_id, "XDSSubmissionSet.patientId")
        return ss

    def registry_object_list(self) -> etree._Element:
        rol = rim("RegistryObjectList", None)
        for r in self.refs:
            rim("ObjectRef", rol, id=r)
        rol.append(self.submission_set())
        if not self.ss_classification_inside:
            rim("Classification", rol, id=self._id("SubmissionSetClass"),
                classifiedObject=self.ss_id, classificationNode=SS_NODE,
                objectType=_OT + "Classification")
        for o in self.objects:
            rol.append(_copy(o))
        return rol

    def build(self) -> etree._Element:
        """The ``lcm:SubmitObjectsRequest`` (ITI-42 body)."""
        req = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap=NSMAP)
        req.append(self.registry_object_list())
        return req

    def provide_and_register(self, inline: bool = True) -> etree._Element:
        """The ``xdsb:ProvideAndRegisterDocumentSetRequest`` (ITI-41 body) with each document as
        inline base64 ``xdsb:Document`` (MTOM packaging is the transport's job)."""
        root = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest",
                             nsmap={"xdsb": XDSB, **NSMAP})
        root.append(self.build())
        for did, data in self.contents.items():
            d = etree.SubElement(root, f"{{{XDSB}}}Document", id=did)
            d.text = base64.b64encode(data).decode("ascii") if inline else ""
        return root


def _copy(el: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(el))


def submit_objects_request(docs: int = 1, folder: bool = False, *,
                           patient_id: str | None = None, symbolic: bool = False,
                           **doc_kw) -> etree._Element:
    """A valid ITI-42 request: ``docs`` DocumentEntries, optionally in one new Folder."""
    return submission(docs, folder, patient_id=patient_id, symbolic=symbolic, **doc_kw).build()


def submission(docs: int = 1, folder: bool = False, *, patient_id: str | None = None,
               symbolic: bool = False, person: Person = ZHANG_SAN, **doc_kw) -> Submission:
    """Like :func:`submit_objects_request` but returns the builder (ids, uniqueIds, contents)."""
    sub = Submission(patient_id=patient_id or patient_cx(person), symbolic=symbolic,
                     person=person)
    titles = ["出院小结", "入院记录", "检验报告", "手术记录", "病程记录"]
    ids = [sub.document(**{"title": titles[i % len(titles)], **doc_kw}) for i in range(docs)]
    if folder:
        f = sub.folder()
        for d in ids:
            sub.add_to_folder(f, d)
    return sub


# ---- ITI-57 / ITI-62 ------------------------------------------------------------------------

def update_availability(sub: Submission, target_uuid: str, original: str = APPROVED,
                        new: str = DEPRECATED) -> str:
    """Add an UpdateAvailabilityStatus association (ITI TF-2b 3.57.4.1.3.3.3) to ``sub``."""
    return sub.associate(UPDATE_AVAILABILITY, sub.ss_id, target_uuid,
                         slots={"OriginalStatus": [original], "NewStatus": [new]})


def update_document(sub: Submission, lid: str, previous_version: int, *,
                    association_propagation: bool | None = None, **doc_kw) -> str:
    """A new version of a DocumentEntry (ITI TF-2b 3.57.4.1.3.3.1): same logicalId, SS HasMember
    with a PreviousVersion slot.  Pass the same ``unique_id`` as the previous version."""
    did = sub.document(lid=lid, member=False, **doc_kw)
    slots = {"SubmissionSetStatus": ["Original"], "PreviousVersion": [str(previous_version)]}
    if association_propagation is not None:
        slots["AssociationPropagation"] = ["yes" if association_propagation else "no"]
    sub.associate(HAS_MEMBER, sub.ss_id, did, slots=slots)
    return did


def update_folder(sub: Submission, lid: str, previous_version: int, **folder_kw) -> str:
    fid = sub.folder(lid=lid, member=False, **folder_kw)
    sub.associate(HAS_MEMBER, sub.ss_id, fid,
                  slots={"PreviousVersion": [str(previous_version)]})
    return fid


def remove_objects_request(ids: Iterable[str]) -> etree._Element:
    """``lcm:RemoveObjectsRequest`` with an ObjectRefList (ITI TF-2b 3.62.4.1.2)."""
    req = etree.Element(f"{{{LCM}}}RemoveObjectsRequest", nsmap=NSMAP)
    orl = rim("ObjectRefList", req)
    for i in ids:
        rim("ObjectRef", orl, id=i)
    return req


# ---- registry test plumbing -------------------------------------------------------------------

def register_patient(db, cx: str | None = None, person: Person = ZHANG_SAN) -> str:
    """Make the patient index know ``cx`` (default: ``person`` in the affinity domain) so the
    registry's XDSUnknownPatientId check passes; returns the CX."""
    from pix_pdq.index import Identifier, record_identity
    cx = cx or patient_cx(person)
    with db.begin() as conn:
        record_identity(conn, [Identifier.parse(cx)],
                        {"names": [{"family": person.family, "given": person.given,
                                    "type": "L"}],
                         "birth_time": person.birth, "sex": person.sex},
                        affinity_domain=AFFINITY_DOMAIN)
    return cx


class StubNode:
    """The part of hie.node.Node a registry handler uses (``db``, ``settings``)."""

    def __init__(self, db, settings):
        self.db = db
        self.settings = settings
        self.blobs = None
        self.outbox = None


def registry_context(node, transaction=None):
    """A :class:`hie.context.Context` for calling a registry handler directly."""
    from hie.context import Context
    from hie.transactions import ITI_42
    return Context(node=node, transaction=transaction or ITI_42, remote_addr="127.0.0.1")

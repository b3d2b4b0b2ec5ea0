"""Helpers for the ITI-18 / ITI-51 integration tests: register test data (``tests.xdsdata``
submissions) and run stored queries through the SOAP handler, validating every response against
the ebRS 3.0 schema (``tests.schemas``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Mapping, Sequence

from lxml import etree

from hie.context import Context
from hie.soap import SoapRequest
from hie.transactions import ITI_18, ITI_51
from tests.schemas import assert_valid
from tests import xdsdata as X
from tests.xdsdata import Submission
from xds_registry import iti18, iti51, vocab
from xds_registry.query_params import build_request, quote

RIM, RS, QUERY = vocab.RIM_NS, vocab.RS_NS, vocab.QUERY_NS
HOME = "urn:oid:1.2.156.112604.1.100"


# -- registration -------------------------------------------------------------------------------

def register(db, sub: Submission) -> None:
    """Register ``sub`` through the registry's own ITI-42 handler (the patient is fed to the
    patient index first), so every query test reads what a real submission wrote."""
    from hie.transactions import ITI_42
    from tests.xdsdata import StubNode, register_patient, registry_context
    from xds_registry import iti42
    register_patient(db, sub.patient_id, person=sub.person)
    ctx = registry_context(StubNode(db, settings()), ITI_42)
    resp = iti42.handle(ctx, SoapRequest(ITI_42.action, sub.build()))
    status = resp.body.get("status", "")
    assert status.endswith(":Success"), etree.tostring(resp.body, encoding="unicode")


def update(db, sub: Submission) -> None:
    """Send ``sub`` as ITI-57 Update Document Set through the registry's own handler."""
    from hie.transactions import ITI_57
    from tests.xdsdata import StubNode, registry_context
    from xds_registry import iti57
    ctx = registry_context(StubNode(db, settings()), ITI_57)
    resp = iti57.handle(ctx, SoapRequest(ITI_57.action, sub.build()))
    status = resp.body.get("status", "")
    assert status.endswith(":Success"), etree.tostring(resp.body, encoding="unicode")


def set_status(db, object_id: str, status: str) -> str | None:
    """Change an object's availabilityStatus through ITI-57 (an UpdateAvailabilityStatus
    association, whose id is returned).  SubmissionSets, whose status ITI-57 cannot change, are
    changed in the tables directly (returns None)."""
    import sqlalchemy as sa
    from tests import xdsdata as X
    from xds_registry import store
    from xds_registry.tables import registry_object as o
    with db.read() as conn:
        kind, current = conn.execute(sa.select(o.c.kind, o.c.status)
                                     .where(o.c.id == object_id)).one()
    if kind == "SubmissionSet":
        with db.begin() as conn:
            store.set_status(conn, [object_id], status)
        return None
    sub = X.Submission()
    assoc = X.update_availability(sub, object_id, original=vocab.STATUS_URNS[current],
                                  new=vocab.STATUS_URNS[status])
    update(db, sub)
    return assoc


# -- querying -------------------------------------------------------------------------------------

def settings(max_query_results: int = 10000, home: str = HOME):
    from hie.settings import load_settings
    return load_settings(env={}, persist_ids=False, home_community_id=home,
                         max_query_results=max_query_results, validate_patient_id=True,
                         affinity_domain=X.AFFINITY_DOMAIN)


@dataclass
class Answer:
    """A parsed AdhocQueryResponse."""

    element: etree._Element
    ctx: Context
    status: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)   # (errorCode, location)

    def __post_init__(self) -> None:
        self.status = self.element.get("status", "").rsplit(":", 1)[-1]
        self.errors = [(e.get("errorCode"), e.get("location", ""))
                       for e in self.element.iter(f"{{{RS}}}RegistryError")]

    @property
    def codes(self) -> list[str]:
        return [c for c, _ in self.errors]

    @property
    def objects(self) -> list[etree._Element]:
        rol = self.element.find(f"{{{RIM}}}RegistryObjectList")
        return [] if rol is None else list(rol)

    @property
    def ids(self) -> list[str]:
        return [o.get("id") for o in self.objects]

    def of(self, kind: str) -> list[str]:
        """ids of the returned objects of ``kind``: DocumentEntry, SubmissionSet, Folder,
        Association, ObjectRef."""
        out = []
        for o in self.objects:
            local = etree.QName(o).localname
            if kind == "DocumentEntry" and local == "ExtrinsicObject":
                out.append(o.get("id"))
            elif kind == "Association" and local == "Association":
                out.append(o.get("id"))
            elif kind == "ObjectRef" and local == "ObjectRef":
                out.append(o.get("id"))
            elif local == "RegistryPackage" and kind in ("SubmissionSet", "Folder"):
                node = vocab.SUBMISSION_SET_NODE if kind == "SubmissionSet" else vocab.FOLDER_NODE
                if o.xpath("rim:Classification/@classificationNode", namespaces={"rim": RIM}) \
                        and node in o.xpath("rim:Classification/@classificationNode",
                                            namespaces={"rim": RIM}):
                    out.append(o.get("id"))
                elif not o.xpath("rim:Classification[@classificationNode]",
                                 namespaces={"rim": RIM}):
                    # node classification kept outside the package: tell by the external ids
                    ei = o.xpath("rim:ExternalIdentifier/@identificationScheme",
                                 namespaces={"rim": RIM})
                    want = vocab.SS_UNIQUE_ID if kind == "SubmissionSet" else vocab.FD_UNIQUE_ID
                    if want in ei:
                        out.append(o.get("id"))
        return out

    def obj(self, id: str) -> etree._Element:
        return next(o for o in self.objects if o.get("id") == id)


def query(db, query_id: str, params: Mapping[str, Sequence], return_type: str = "LeafClass",
          *, mpq: bool = False, st=None) -> Answer:
    """Send an AdhocQueryRequest through the ITI-18 (or ITI-51) handler."""
    tx = ITI_51 if mpq else ITI_18
    node = SimpleNamespace(db=db, settings=st or settings(), blobs=None, outbox=None)
    ctx = Context(node, tx)
    body = build_request(query_id, params, return_type)
    resp = (iti51 if mpq else iti18).handle(ctx, SoapRequest(tx.action, body))
    answer = resp.element()   # parsed from body_bytes
    assert_valid(answer)
    return Answer(answer, ctx)


def q(*values: str) -> str:
    return quote(*values)


def code(c) -> str:
    """A tests.xdsdata Code as a query value ``code^^scheme``."""
    return f"{c.code}^^{c.scheme}"


# -- a shared data set ----------------------------------------------------------------------------

def load_find_data(db):
    """Two patients' documents with distinct attributes (Chinese data):

    - 张三, submission 1: ``a`` 出院小结 (discharge class, cardiology, N, angina, 王建国,
      created 20240315083000), ``b`` 检验报告 (lab class, R, angina + hypertension, 李明, created
      20240320 — day precision, reference id), ``c`` an on-demand 检验报告; folder ``f1``
      (住院资料) holding ``a`` and ``b``;
    - 张三, submission 2 (another source, 2023): ``d`` 入院记录 (created 2023, year precision,
      text/plain format, internal medicine);
    - 李四, submission 3: ``e`` 出院小结 at 北京协和医院.
    """
    from tests import xdsdata as X
    hypertension = X.Code("I10", X.ICD10, "原发性高血压")
    pumch = X.Author(person="D3001^赵^敏^^^^^^&1.2.156.112604.1.1.102.3&ISO",
                     institutions=("北京协和医院^^^^^&1.2.156.112604.1.1&ISO^^^^102",),
                     roles=("主任医师",), specialties=("内分泌科",))
    li_ming = X.Author(person="D2048^李^明^^^^^^&1.2.156.112604.1.1.101.3&ISO")
    text_format = X.Code("urn:ihe:iti:xds:2017:mimeTypeSufficient", "1.3.6.1.4.1.19376.1.2.3",
                         "文本")
    internal = X.Code("419192003", X.SNOMED, "内科")
    ref_id = "ORD20240310001^^^&1.2.156.112604.1.1.101.5&ISO^urn:ihe:iti:xds:2013:order"

    pid = X.patient_cx(X.ZHANG_SAN)
    s1 = X.Submission(patient_id=pid, submission_time="20240316100000")
    a = s1.document(title="出院小结")
    b = s1.document(title="检验报告", class_code=X.CLASS_LAB, confidentiality=(X.CONF_RESTRICTED,),
                    event_codes=(X.EVENT_ANGINA, hypertension), authors=(li_ming,),
                    creation_time="20240320", service_start="2024031008",
                    service_stop="2024031010", reference_ids=(ref_id,))
    c = s1.document(title="检验报告（按需）", class_code=X.CLASS_LAB, on_demand=True)
    f1 = s1.folder(title="2024年3月住院资料")
    s1.add_to_folder(f1, a)
    s1.add_to_folder(f1, b)
    register(db, s1)

    s2 = X.Submission(patient_id=pid, submission_time="20230105",
                      source_id="1.2.156.112604.1.1.103.10",
                      content_type=X.Code("11369-6", X.LOINC, "免疫记录"),
                      authors=(li_ming,))
    d = s2.document(title="入院记录", format_code=text_format, practice_code=internal,
                    creation_time="2023", service_start=None, service_stop=None,
                    event_codes=(), confidentiality=(X.CONF_NORMAL, X.CONF_RESTRICTED),
                    authors=(li_ming,))
    f2 = s2.folder(title="2023年门诊资料", codes=(X.FOLDER_CODE, X.Code("OUTPATIENT",
                   "1.2.156.112604.1.9.1", "门诊资料")))
    s2.add_to_folder(f2, d)
    register(db, s2)

    s3 = X.Submission(patient_id=X.patient_cx(X.LI_SI), person=X.LI_SI, authors=(pumch,))
    e = s3.document(title="出院小结", authors=(pumch,))
    register(db, s3)
    return SimpleNamespace(pid=pid, pid2=X.patient_cx(X.LI_SI), s1=s1, s2=s2, s3=s3, a=a, b=b,
                           c=c, d=d, e=e, f1=f1, f2=f2, ref_id=ref_id, hypertension=hypertension,
                           text_format=text_format, internal=internal)


def load_get_data(db):
    """Data for the Get* queries:

    - 张三, submission 1: ``a`` 出院小结 (N), ``b`` 检验报告 (R, text format), ``c`` on-demand;
      folder ``f`` with ``a`` and ``c``;
    - 张三, submission 2: ``a2`` replaces ``a`` (RPLC; the registry puts ``a2`` into ``f``),
      ``b2`` appends to ``b`` (APND);
    - 李四, submission 3: ``e`` in folder ``g``.
    """
    from tests import xdsdata as X
    text_format = X.Code("urn:ihe:iti:xds:2017:mimeTypeSufficient", "1.3.6.1.4.1.19376.1.2.3",
                         "文本")
    pid = X.patient_cx(X.ZHANG_SAN)
    s1 = X.Submission(patient_id=pid)
    a = s1.document(title="出院小结")
    b = s1.document(title="检验报告", class_code=X.CLASS_LAB, confidentiality=(X.CONF_RESTRICTED,),
                    format_code=text_format)
    c = s1.document(title="检验报告（按需）", on_demand=True)
    f = s1.folder(title="2024年3月住院资料")
    s1.add_to_folder(f, a)
    s1.add_to_folder(f, c)
    register(db, s1)
    s2 = X.Submission(patient_id=pid)
    a2 = s2.replace(a, title="出院小结（更正）")
    b2 = s2.relate(X.APND, b, title="检验报告补充说明")
    register(db, s2)
    s3 = X.Submission(patient_id=X.patient_cx(X.LI_SI), person=X.LI_SI)
    e = s3.document(title="出院小结")
    g = s3.folder(title="李四住院资料")
    s3.add_to_folder(g, e)
    register(db, s3)
    return SimpleNamespace(pid=pid, s1=s1, s2=s2, s3=s3, a=a, b=b, c=c, f=f, a2=a2, b2=b2, e=e,
                           g=g, text_format=text_format)


def assocs(db, *, source: str | None = None, target: str | None = None,
           type: str | None = None) -> list[tuple[str, str, str, str]]:
    """(id, type, source, target) of the stored associations matching (the test oracle)."""
    import sqlalchemy as sa
    from xds_registry.tables import association as t
    stmt = sa.select(t.c.id, t.c.type, t.c.source_id, t.c.target_id)
    if source:
        stmt = stmt.where(t.c.source_id == source)
    if target:
        stmt = stmt.where(t.c.target_id == target)
    if type:
        stmt = stmt.where(t.c.type == type)
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(stmt)]

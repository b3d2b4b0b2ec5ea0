"""HL7 v3 patient queries, sans-IO: PIXV3 Query (ITI TF-2b 3.45: PRPA_IN201309UV02 Patient
Registry Get Identifiers Query -> PRPA_IN201310UV02 Get Identifiers Query Response), PDQV3
(ITI TF-2b 3.47: PRPA_IN201305UV02 Find Candidates Query -> PRPA_IN201306UV02 Find Candidates
Response, QUQI_IN000003UV01 continuation and cancel, 3.47.4.3 / 3.47.4.4) and the national 个人信息
查询 service, which uses the same PRPA_IN201305UV02 (with ``semanticsText`` labels, ignored here).

Parsed queries are typed models: :class:`PixQuery` (queryId, the patient identifier, the
``dataSource`` domains), :class:`PdqQuery` (queryId, ``initialQuantity``, the parameters in the
patient index's PDQ vocabulary — ``family``, ``given``, ``name`` (a whole name), ``birth``,
``sex``, ``id`` / ``id_oid``, ``resident_id``, ``street``, ``other``, ``city``, ``state``,
``zip``, ``county``, ``country``, ``phone`` — and the ``otherIDsScopingOrganization`` domains) and
:class:`Continuation`.  Each identifier or domain keeps the XPath of its ``value`` element, which
the AE answers of ITI TF-2b 3.45.4.2.3 / 3.47.4.2.3 name in ``acknowledgementDetail/location``.
A query parameter that is missing, malformed or not supported raises :class:`hie.hl7v3.V3Error`
with queryResponseCode ``QE``.

:func:`build_query_response` writes PRPA_IN201310UV02 / PRPA_IN201306UV02 (acknowledgement,
one ``subject/registrationEvent`` per patient with its custodian, ``queryAck`` with
queryResponseCode and the result quantities, and the request's ``queryByParameter`` echoed);
the request builders serve consumers and tests.
"""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from lxml import etree

from hie.errors import HL7
from hie.hl7v3 import (H, II, Acknowledgement, AckDetail, QueryAck, V3Error, V3Message,
                       add_acknowledgement, add_ii, add_query_ack, build_control_act,
                       build_transmission, child, children, new_id, read_iis, read_text,
                       reply_wrapper, valid_ts)
from hie.hl7v3_patient import (RESIDENT_ID_ROOT, _SEX_IN, PatientRecord, add_address,
                               add_name, add_registration, read_address, read_name)

PIX_QUERY, PIX_RESPONSE = "PRPA_IN201309UV02", "PRPA_IN201310UV02"
PDQ_QUERY, PDQ_RESPONSE = "PRPA_IN201305UV02", "PRPA_IN201306UV02"
CONTINUATION = "QUQI_IN000003UV01"
TRIGGERS = {PIX_QUERY: "PRPA_TE201309UV02", PIX_RESPONSE: "PRPA_TE201310UV02",
            PDQ_QUERY: "PRPA_TE201305UV02", PDQ_RESPONSE: "PRPA_TE201306UV02",
            CONTINUATION: "PRPA_TE000003UV01"}
SUPPORTED_PDQ = ("livingSubjectName", "livingSubjectAdministrativeGender",
                 "livingSubjectBirthTime", "livingSubjectId", "otherIDsScopingOrganization",
                 "patientAddress", "patientTelecom")


def _qerror(code: str, text: str, location: str) -> V3Error:
    return V3Error(AckDetail(code, text, location), "AE", "QE")


def _query_part(msg: V3Message, name: str) -> tuple[etree._Element, str, II]:
    """controlActProcess/``name`` (queryByParameter, queryContinuation), its XPath and its
    queryId; raises the query error for either missing."""
    part = child(msg.control_act, name)
    where = msg.path("controlActProcess", name)
    if part is None:
        raise _qerror(HL7.REQUIRED_FIELD_MISSING, f"controlActProcess/{name} is missing", where)
    qid = read_iis(child(part, "queryId"))
    if not qid or not qid[0].root:
        raise _qerror(HL7.REQUIRED_FIELD_MISSING, f"{name}/queryId is missing",
                      where + "/queryId")
    return part, where, qid[0]


def _query_by_parameter(msg: V3Message) -> tuple[etree._Element, str, II]:
    return _query_part(msg, "queryByParameter")


def query_id_of(msg: V3Message) -> II | None:
    """The queryId of a query or continuation, if it can be read (for error answers)."""
    for path in (("queryByParameter", "queryId"), ("queryContinuation", "queryId")):
        found = read_iis(child(msg.control_act, *path))
        if found:
            return found[0]
    return None


# ============================================================================================
# ITI-45
# ============================================================================================

@dataclass
class PixQuery:
    message: V3Message
    query_id: II
    patient: II
    patient_location: str
    data_sources: list[tuple[str, str]] = field(default_factory=list)  # (domain, location)
    query_by_parameter: etree._Element | None = None


def parse_pix_query(msg: V3Message) -> PixQuery:
    qbp, where, qid = _query_by_parameter(msg)
    plist = child(qbp, "parameterList")
    params = children(plist, "patientIdentifier")
    loc = where + "/parameterList/patientIdentifier/value"
    if len(params) != 1:
        raise _qerror(HL7.REQUIRED_FIELD_MISSING if not params else HL7.DATA_TYPE_ERROR,
                      "parameterList needs exactly one patientIdentifier", loc)
    ids = read_iis(child(params[0], "value"))
    if len(ids) != 1 or not ids[0].root or not ids[0].extension:
        raise _qerror(HL7.REQUIRED_FIELD_MISSING, "patientIdentifier/value needs a root "
                      "(assigning authority) and an extension (the id)", loc)
    out = PixQuery(msg, qid, ids[0], loc, query_by_parameter=qbp)
    for n, ds in enumerate(children(plist, "dataSource"), start=1):
        dloc = f"{where}/parameterList/dataSource[{n}]/value"
        values = read_iis(child(ds, "value"))
        if not values or not values[0].root:
            raise _qerror(HL7.REQUIRED_FIELD_MISSING, "dataSource/value/@root is missing", dloc)
        out.data_sources.extend((v.root, dloc) for v in values)
    return out


def build_pix_query(patient: II, data_sources: Sequence[str] = (), *,
                    sender: "II | Sequence[II]", receiver: "II | Sequence[II]",
                    query_id: II | None = None, message_id: II | None = None,
                    now: dt.datetime | None = None) -> etree._Element:
    root = build_transmission(PIX_QUERY, message_id=message_id, creation_time=now,
                              sender=sender, receiver=receiver, accept_ack="AL")
    cap = build_control_act(root, TRIGGERS[PIX_QUERY])
    qbp = etree.SubElement(cap, H + "queryByParameter")
    add_ii(qbp, "queryId", query_id or new_id())
    etree.SubElement(qbp, H + "statusCode", code="new")
    etree.SubElement(qbp, H + "responsePriorityCode", code="I")
    plist = etree.SubElement(qbp, H + "parameterList")
    for domain in data_sources:
        ds = etree.SubElement(plist, H + "dataSource")
        etree.SubElement(ds, H + "value", root=domain)
        etree.SubElement(ds, H + "semanticsText").text = "DataSource.id"
    pi = etree.SubElement(plist, H + "patientIdentifier")
    add_ii(pi, "value", patient)
    etree.SubElement(pi, H + "semanticsText").text = "Patient.Id"
    return root


# ============================================================================================
# ITI-47
# ============================================================================================

@dataclass
class PdqQuery:
    message: V3Message
    query_id: II
    params: dict[str, str] = field(default_factory=dict)
    scoping: list[tuple[str, str]] = field(default_factory=list)   # (domain, location)
    initial_quantity: int | None = None
    query_by_parameter: etree._Element | None = None


def _whole_name(value: etree._Element) -> bool:
    item = (value.findall(H + "item") or [value])[0]
    parts = item.findall(H + "part")
    if parts:
        return all(not p.get("type") for p in parts)
    return item.find(H + "family") is None and item.find(H + "given") is None


def parse_pdq_query(msg: V3Message) -> PdqQuery:
    qbp, where, qid = _query_by_parameter(msg)
    out = PdqQuery(msg, qid, query_by_parameter=qbp)
    iq = child(qbp, "initialQuantity")
    if iq is not None:
        raw = (iq.get("value") or "").strip()
        if not raw.isdigit() or int(raw) < 1:
            raise _qerror(HL7.DATA_TYPE_ERROR, "initialQuantity must be a positive integer",
                          where + "/initialQuantity/@value")
        out.initial_quantity = int(raw)
    plist = child(qbp, "parameterList")
    if plist is None:
        raise _qerror(HL7.REQUIRED_FIELD_MISSING, "queryByParameter/parameterList is missing",
                      where + "/parameterList")
    p = out.params
    counts: dict[str, int] = {}
    for param in plist:
        if not isinstance(param.tag, str) or not param.tag.startswith(H):
            continue
        name = param.tag[len(H):]
        counts[name] = counts.get(name, 0) + 1
        loc = f"{where}/parameterList/{name}[{counts[name]}]/value"
        if name == "id":
            continue
        if name not in SUPPORTED_PDQ:
            raise _qerror(HL7.TABLE_VALUE_NOT_FOUND, f"query parameter {name} is not "
                          "supported by this Patient Demographics Supplier", loc)
        values = children(param, "value")
        if not values:
            raise _qerror(HL7.REQUIRED_FIELD_MISSING, f"{name} has no value", loc)
        value = values[0]
        if name == "livingSubjectName":
            if _whole_name(value):
                item = (value.findall(H + "item") or [value])[0]
                parts = item.findall(H + "part")
                text = "".join(read_text(x) for x in parts) if parts else \
                    "".join(item.itertext()).strip()
                if text:
                    p["name"] = text
            else:
                n = read_name(value)
                p.update({k: n[k] for k in ("family", "given") if n.get(k)})
            if not any(k in p for k in ("name", "family", "given")):
                raise _qerror(HL7.REQUIRED_FIELD_MISSING, "livingSubjectName/value is empty",
                              loc)
        elif name == "livingSubjectAdministrativeGender":
            code = (value.get("code") or "").strip().upper()
            if code not in _SEX_IN:
                raise _qerror(HL7.TABLE_VALUE_NOT_FOUND, f"unknown gender code {code!r}",
                              loc + "/@code")
            p["sex"] = _SEX_IN[code]
        elif name == "livingSubjectBirthTime":
            raw = (value.get("value") or "").strip()
            if not raw and child(value, "center") is not None:
                raw = (child(value, "center").get("value") or "").strip()
            if not raw or not valid_ts(raw):
                raise _qerror(HL7.DATA_TYPE_ERROR, f"birth time {raw!r} is not an HL7 TS",
                              loc + "/@value")
            p["birth"] = raw[:8]
        elif name == "livingSubjectId":
            for ii in (i for v in values for i in read_iis(v)):
                if not ii.root or not ii.extension:
                    raise _qerror(HL7.REQUIRED_FIELD_MISSING, "livingSubjectId/value needs a "
                                  "root and an extension", loc)
                if ii.root == RESIDENT_ID_ROOT:
                    p["resident_id"] = ii.extension
                elif "id" in p and (p["id"], p["id_oid"]) != (ii.extension, ii.root):
                    raise _qerror(HL7.DATA_TYPE_ERROR, "only one livingSubjectId besides the "
                                  "resident ID number is supported", loc)
                else:
                    p["id"], p["id_oid"] = ii.extension, ii.root
        elif name == "otherIDsScopingOrganization":
            for ii in (i for v in values for i in read_iis(v)):
                if not ii.root:
                    raise _qerror(HL7.REQUIRED_FIELD_MISSING, "otherIDsScopingOrganization/"
                                  "value/@root is missing", loc)
                out.scoping.append((ii.root, loc))
        elif name == "patientAddress":
            a = read_address(value)
            a.pop("type", None)
            if not a:
                raise _qerror(HL7.REQUIRED_FIELD_MISSING, "patientAddress/value is empty", loc)
            p.update(a)
        elif name == "patientTelecom":
            raw = (value.get("value") or "").strip()
            number = raw.split(":", 1)[1] if ":" in raw else raw
            if not number:
                raise _qerror(HL7.REQUIRED_FIELD_MISSING, "patientTelecom/value/@value is "
                              "missing", loc)
            p["phone"] = number
    if not p:
        raise _qerror(HL7.REQUIRED_FIELD_MISSING, "parameterList holds no query parameter with "
                      "a value", where + "/parameterList")
    return out


def build_pdq_query(*, sender: "II | Sequence[II]", receiver: "II | Sequence[II]",
                    name: Mapping[str, str] | str | None = None, gender: str = "",
                    birth: str = "", ids: Sequence[II] = (),
                    address: Mapping[str, str] | None = None, telecom: str = "",
                    scoping: Sequence[str] = (), initial_quantity: int | None = None,
                    query_id: II | None = None, message_id: II | None = None,
                    now: dt.datetime | None = None, r2: bool = False) -> etree._Element:
    """A PRPA_IN201305UV02 (consumers, tests).  ``name``: {family, given} or a whole name."""
    root = build_transmission(PDQ_QUERY, message_id=message_id, creation_time=now,
                              sender=sender, receiver=receiver, accept_ack="AL", r2=r2)
    cap = build_control_act(root, TRIGGERS[PDQ_QUERY])
    qbp = etree.SubElement(cap, H + "queryByParameter")
    add_ii(qbp, "queryId", query_id or new_id())
    etree.SubElement(qbp, H + "statusCode", code="new")
    etree.SubElement(qbp, H + "responseModalityCode", code="R")
    etree.SubElement(qbp, H + "responsePriorityCode", code="I")
    if initial_quantity is not None:
        etree.SubElement(qbp, H + "initialQuantity", value=str(initial_quantity))
    plist = etree.SubElement(qbp, H + "parameterList")

    def param(tag: str) -> etree._Element:
        return etree.SubElement(plist, H + tag)

    if gender:
        etree.SubElement(param("livingSubjectAdministrativeGender"), H + "value",
                         code=gender)
    if birth:
        etree.SubElement(param("livingSubjectBirthTime"), H + "value", value=birth)
    for ii in ids:
        add_ii(param("livingSubjectId"), "value", ii)
    if name:
        holder = param("livingSubjectName")
        if isinstance(name, str):
            etree.SubElement(holder, H + "value").text = name
        else:
            add_name(holder, name, r2, whole=False)
            holder[-1].tag = H + "value"
    for domain in scoping:
        etree.SubElement(param("otherIDsScopingOrganization"), H + "value", root=domain)
    if address:
        holder = param("patientAddress")
        add_address(holder, address, tag="value", r2=r2)
    if telecom:
        etree.SubElement(param("patientTelecom"), H + "value", value=telecom)
    for el in plist:
        etree.SubElement(el, H + "semanticsText").text = el.tag[len(H):]
    return root


# ============================================================================================
# continuation / cancel (QUQI_IN000003UV01)
# ============================================================================================

@dataclass
class Continuation:
    message: V3Message
    query_id: II
    status: str                 # waitContinuedQueryResponse | aborted
    quantity: int | None = None


def parse_continuation(msg: V3Message) -> Continuation:
    qc, where, query_id = _query_part(msg, "queryContinuation")
    status = child(qc, "statusCode")
    quantity = None
    cq = child(qc, "continuationQuantity")
    if cq is not None:
        raw = (cq.get("value") or "").strip()
        if not raw.isdigit() or int(raw) < 1:
            raise _qerror(HL7.DATA_TYPE_ERROR, "continuationQuantity must be a positive "
                          "integer", where + "/continuationQuantity/@value")
        quantity = int(raw)
    return Continuation(msg, query_id, (status.get("code") or "") if status is not None else "",
                        quantity)


def build_continuation(query_id: II, quantity: int | None = None, cancel: bool = False, *,
                       sender: "II | Sequence[II]", receiver: "II | Sequence[II]",
                       message_id: II | None = None, now: dt.datetime | None = None
                       ) -> etree._Element:
    root = build_transmission(CONTINUATION, message_id=message_id, creation_time=now,
                              sender=sender, receiver=receiver, accept_ack="AL")
    cap = build_control_act(root, TRIGGERS[CONTINUATION])
    qc = etree.SubElement(cap, H + "queryContinuation")
    add_ii(qc, "queryId", query_id)
    etree.SubElement(qc, H + "statusCode",
                     code="aborted" if cancel else "waitContinuedQueryResponse")
    if quantity is not None and not cancel:
        etree.SubElement(qc, H + "continuationQuantity", value=str(quantity))
    return root


# ============================================================================================
# responses
# ============================================================================================

def build_query_response(interaction: str, request: V3Message, ack: Acknowledgement,
                         query_ack: QueryAck, patients: Sequence[PatientRecord] = (), *,
                         node_device: II, custodian: II | None = None,
                         query_by_parameter: etree._Element | None = None,
                         now: dt.datetime | None = None, national: bool = False
                         ) -> etree._Element:
    """PRPA_IN201310UV02 / PRPA_IN201306UV02: the acknowledgement, one
    ``subject/registrationEvent/subject1/patient`` per record (with ``custodian``), the
    ``queryAck`` and the echoed ``queryByParameter``."""
    national = national or request.national
    r2 = request.transmission.r2
    root = reply_wrapper(interaction, request.transmission, node_device=node_device, now=now,
                         national=national)
    add_acknowledgement(root, ack, national)
    cap = build_control_act(root, TRIGGERS.get(interaction))
    for rec in patients:
        add_registration(cap, rec, custodian, national, r2)
    add_query_ack(cap, query_ack)
    if query_by_parameter is not None:
        cap.append(copy.deepcopy(query_by_parameter))
    return root


__all__ = ["PIX_QUERY", "PIX_RESPONSE", "PDQ_QUERY", "PDQ_RESPONSE", "CONTINUATION",
           "TRIGGERS", "SUPPORTED_PDQ", "PixQuery", "PdqQuery", "Continuation",
           "parse_pix_query", "parse_pdq_query", "parse_continuation", "build_pix_query",
           "build_pdq_query", "build_continuation", "build_query_response", "query_id_of"]

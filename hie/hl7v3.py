"""HL7 Version 3 messaging, sans-IO: the transmission wrapper, the control act wrapper, the
application acknowledgement MCCI_IN000002UV01 and the query acknowledgement (HL7 V3 Normative
Edition 2008, Transmission Infrastructure MCCI_MT000100UV01 / MCCI_MT000300UV01, Message Control
Act Infrastructure MFMI_MT700701UV01 / QUQI_MT021001UV01; as profiled by ITI TF-2b 3.44-3.47 and
ITI TF-2x Appendix O, "HL7 V3 Transmission and Trigger Event Control Act wrappers").

Pure functions over lxml elements and frozen dataclasses; no socket, no database.

- :func:`parse_message` reads an interaction (any ``urn:hl7-org:v3`` element named like
  ``PRPA_IN201301UV02``) into a :class:`V3Message`: its :class:`Transmission` (``id``
  root/extension, ``creationTime``, ``interactionId``, ``processingCode``,
  ``processingModeCode``, ``acceptAckCode``, receiver and sender device ids), its
  ``controlActProcess`` element, and, in a response, its :class:`Acknowledgement` and
  :class:`QueryAck`.  An element that is not an HL7 v3 interaction raises :class:`NotV3`
  (transports answer it with their own transport error, e.g. a SOAP Sender fault); a v3 message
  missing a required part raises :class:`V3Error`, which carries the ``AE`` / ``AR``
  acknowledgement and its ``acknowledgementDetail`` entries (code, text, XPath location).
- :func:`build_transmission`, :func:`build_control_act`, :func:`build_ack` (the whole
  MCCI_IN000002UV01), :func:`add_acknowledgement` and :func:`add_query_ack` build them.

Two datatype flavours are read, because Chinese platforms use both: the HL7 V3 Data Types R1 of
the 2008 Normative Edition that IHE uses (``<id root=".." extension=".."/>``, ``<name><family>``),
and the collection forms of the national interoperability specifications, which follow the R2
data types (``<id><item root=".." extension=".."/></id>``, ``<name><item><part value=".."/>``,
``<displayName value=".."/>``, ``<acknowledgement typeCode="AA">`` with ``<text value=".."/>``).
A message read in the national form is answered in it (:attr:`V3Message.national`,
:attr:`Transmission.r2`).

Error codes in ``acknowledgementDetail/code`` are HL7 Table 0357 (the codes ITI TF-2b prescribes,
e.g. 204 Unknown Key Identifier), code system 2.16.840.1.113883.12.357.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Iterable, Sequence

from lxml import etree

from hie.errors import HL7, HieError
from hie.xmlsafe import XmlError, parse_xml

V3_NS = "urn:hl7-org:v3"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
H = "{%s}" % V3_NS
INTERACTION_ID_ROOT = "2.16.840.1.113883.1.6"     # HL7 interaction and trigger event ids
ERROR_CODE_SYSTEM = "2.16.840.1.113883.12.357"    # HL7 Table 0357 message error condition codes
INTERACTION_RE = re.compile(r"^[A-Z]{4}_IN\d{6}(UV\d{2}|UV)?$")

ACK_TYPES = ("AA", "AE", "AR", "CA", "CE", "CR")
QUERY_RESPONSE_CODES = ("OK", "NF", "AE", "QE")
PROCESSING_CODES = ("P", "D", "T")      # HL7 ProcessingID: production, debugging, training


class NotV3(HieError):
    """The input is not an HL7 v3 interaction at all (not XML, or another document)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AckDetail:
    """One ``acknowledgementDetail``: ``type_code`` E (error) / W (warning) / I (information),
    ``code`` from HL7 Table 0357, human ``text`` and the XPath ``location`` of the culprit."""

    code: str
    text: str
    location: str = ""
    type_code: str = "E"


class V3Error(HieError):
    """Fails a v3 interaction: rendered as an acknowledgement with ``type_code`` (AE or AR) and
    these details (and, for a query, queryResponseCode ``query_code``)."""

    def __init__(self, details: "AckDetail | Sequence[AckDetail]", type_code: str = "AE",
                 query_code: str = "QE"):
        details = (details,) if isinstance(details, AckDetail) else tuple(details)
        super().__init__("; ".join(d.text for d in details))
        if type_code not in ("AE", "AR"):
            raise ValueError(f"not an error acknowledgement code: {type_code}")
        self.details = details
        self.type_code = type_code
        self.query_code = query_code

    @classmethod
    def missing(cls, what: str, location: str) -> "V3Error":
        return cls(AckDetail(HL7.REQUIRED_FIELD_MISSING, f"{what} is missing", location))

    @classmethod
    def invalid(cls, text: str, location: str, code: str = HL7.DATA_TYPE_ERROR) -> "V3Error":
        return cls(AckDetail(code, text, location))


# ============================================================================================
# datatypes
# ============================================================================================

@dataclass(frozen=True)
class II:
    """Instance identifier: ``root`` (an OID or UUID) and ``extension``; for a patient
    identifier the root is the assigning authority and the extension the id."""

    root: str
    extension: str = ""
    assigning_authority_name: str = ""

    def __str__(self) -> str:
        return f"{self.root}^{self.extension}" if self.extension else self.root


@dataclass(frozen=True)
class Coded:
    """CD/CE/CS: ``code`` in ``system`` with its ``display`` name."""

    code: str
    system: str = ""
    display: str = ""


def v3(local: str) -> str:
    return H + local


def child(el: etree._Element | None, *path: str) -> etree._Element | None:
    """The first descendant along ``path`` (v3 namespace local names), None when absent."""
    for name in path:
        if el is None:
            return None
        el = el.find(H + name)
    return el


def children(el: etree._Element | None, name: str) -> list[etree._Element]:
    return [] if el is None else el.findall(H + name)


def is_null(el: etree._Element | None) -> bool:
    return el is not None and el.get("nullFlavor") is not None


def _items(el: etree._Element) -> list[etree._Element]:
    """The R2 collection items of ``el`` (``<x><item/>...</x>``), else ``[el]``."""
    items = el.findall(H + "item")
    return items if items else [el]


def read_iis(el: etree._Element | None) -> list[II]:
    """The identifiers of an ``id`` element: its own root/extension (R1) or its ``item``s (R2);
    items with a nullFlavor and no root are left out."""
    if el is None:
        return []
    out = []
    for item in _items(el):
        root = (item.get("root") or "").strip()
        if not root and item.get("nullFlavor") is not None:
            continue
        out.append(II(root, (item.get("extension") or "").strip(),
                      (item.get("assigningAuthorityName") or "").strip()))
    return out


def read_id_list(parent: etree._Element | None, name: str, path: str = ""
                 ) -> list[tuple[II, str]]:
    """Every identifier of the ``name`` children of ``parent`` (repeated R1 elements or R2
    items), each with its XPath below ``path``."""
    out = []
    for n, el in enumerate(children(parent, name), start=1):
        items = el.findall(H + "item")
        for k, ii in enumerate(read_iis(el), start=1):
            out.append((ii, f"{path}/{name}/item[{k}]" if items else f"{path}/{name}[{n}]"))
    return out


def read_text(el: etree._Element | None) -> str:
    """A string value: the ``value`` attribute (R2 ST / national) or the text content."""
    if el is None:
        return ""
    value = el.get("value")
    if value is not None:
        return value.strip()
    return "".join(el.itertext()).strip()


def read_coded(el: etree._Element | None) -> Coded | None:
    if el is None or is_null(el):
        return None
    item = _items(el)[0]
    display = item.get("displayName")
    if display is None:
        display = read_text(child(item, "displayName")) or None
    code = (item.get("code") or "").strip()
    if not code:
        return None
    return Coded(code, (item.get("codeSystem") or "").strip(), (display or "").strip())


def add_ii(parent: etree._Element, tag: str, ii: II | Sequence[II] | None,
           r2: bool = False) -> etree._Element:
    """``<tag root=".." extension=".."/>`` (or, with ``r2``, ``<tag><item .../></tag>``);
    ``nullFlavor="NA"`` when there is no identifier."""
    el = etree.SubElement(parent, H + tag)
    iis = [ii] if isinstance(ii, II) else list(ii or [])
    if not iis:
        el.set("nullFlavor", "NA")
        return el
    if not r2 and len(iis) == 1:
        _set_ii(el, iis[0])
        return el
    if r2:
        for one in iis:
            _set_ii(etree.SubElement(el, H + "item"), one)
        return el
    parent.remove(el)
    for one in iis:
        _set_ii(etree.SubElement(parent, H + tag), one)
    return el


def _set_ii(el: etree._Element, ii: II) -> None:
    el.set("root", ii.root)
    if ii.extension:
        el.set("extension", ii.extension)
    if ii.assigning_authority_name:
        el.set("assigningAuthorityName", ii.assigning_authority_name)


def add_coded(parent: etree._Element, tag: str, c: Coded, r2: bool = False) -> etree._Element:
    el = etree.SubElement(parent, H + tag, code=c.code)
    if c.system:
        el.set("codeSystem", c.system)
    if c.display:
        if r2:
            etree.SubElement(el, H + "displayName", value=c.display)
        else:
            el.set("displayName", c.display)
    return el


def ts(when: dt.datetime | dt.date | str) -> str:
    """An HL7 TS value: ``YYYYMMDDHHMMSS+ZZZZ`` for an aware datetime, ``YYYYMMDD`` for a date."""
    if isinstance(when, str):
        return when
    if isinstance(when, dt.datetime):
        text = when.strftime("%Y%m%d%H%M%S")
        return text + when.strftime("%z") if when.tzinfo else text
    return when.strftime("%Y%m%d")


_TS_RE = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")


def valid_ts(value: str) -> bool:
    return bool(_TS_RE.match(value or ""))


def new_id(root: str | None = None) -> II:
    """A fresh message id: a UUID root, or ``root`` with a UUID extension."""
    if root:
        return II(root, uuid.uuid4().hex)
    return II(str(uuid.uuid4()))


# ============================================================================================
# the transmission wrapper
# ============================================================================================

@dataclass(frozen=True)
class Transmission:
    """The transmission wrapper (MCCI_MT000100UV01 / MCCI_MT000300UV01)."""

    interaction: str
    id: II
    creation_time: str = ""
    processing_code: str = "P"
    processing_mode: str = "T"
    accept_ack: str = ""
    receivers: tuple[II, ...] = ()
    senders: tuple[II, ...] = ()
    r2: bool = False            # device / message ids as R2 collections (national form)

    @property
    def sender(self) -> II | None:
        return self.senders[0] if self.senders else None


@dataclass(frozen=True)
class Acknowledgement:
    type_code: str
    target: II | None = None
    details: tuple[AckDetail, ...] = ()


@dataclass(frozen=True)
class QueryAck:
    query_id: II | None
    response_code: str
    total: int | None = None
    current: int | None = None
    remaining: int | None = None


@dataclass
class V3Message:
    root: etree._Element
    transmission: Transmission
    control_act: etree._Element | None
    acknowledgement: Acknowledgement | None = None
    query_ack: QueryAck | None = None
    national: bool = False      # national interoperability form: answer in it

    @property
    def interaction(self) -> str:
        return self.transmission.interaction

    def path(self, *parts: str) -> str:
        """An XPath location inside this message, e.g. ``/PRPA_IN201309UV02/controlActProcess``."""
        return "/" + "/".join((self.interaction,) + parts)


def interaction_of(el: etree._Element) -> str | None:
    """The interaction name of a v3 message element, None when it is not one."""
    if not isinstance(el.tag, str) or not el.tag.startswith(H):
        return None
    local = el.tag[len(H):]
    return local if INTERACTION_RE.match(local) else None


def _device_ids(msg: etree._Element, role: str) -> tuple[list[II], bool]:
    ids: list[II] = []
    r2 = False
    for party in children(msg, role):
        el = child(party, "device", "id")
        if el is not None and el.find(H + "item") is not None:
            r2 = True
        ids.extend(read_iis(el))
    return ids, r2


def parse_message(data: "bytes | etree._Element", expected: Iterable[str] | None = None,
                  max_bytes: int = 16 * 1024 * 1024) -> V3Message:
    """Read an HL7 v3 interaction.  ``expected``: the interactions accepted here (another one is
    an ``AR`` with code 200 / 201).  Raises :class:`NotV3` or :class:`V3Error`."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            root = parse_xml(bytes(data), max_bytes=max_bytes)
        except XmlError as exc:
            raise NotV3(exc.reason) from None
    else:
        root = data
    name = interaction_of(root)
    if name is None:
        tag = root.tag if isinstance(root.tag, str) else "?"
        raise NotV3(f"not an HL7 v3 interaction: {tag}")
    where = "/" + name
    expected = tuple(expected or ())
    if expected and name not in expected:
        raise V3Error(AckDetail(HL7.UNSUPPORTED_EVENT_CODE,
                                f"interaction {name} is not accepted here; expected "
                                + " or ".join(expected), where), "AR")
    ids = read_iis(child(root, "id"))
    id_el = child(root, "id")
    if not ids or not ids[0].root:
        raise V3Error.missing("the message id (id/@root)", where + "/id")
    iid = read_iis(child(root, "interactionId"))
    if not iid or not iid[0].extension:
        raise V3Error.missing("interactionId/@extension", where + "/interactionId")
    if iid[0].extension != name:
        raise V3Error(AckDetail(HL7.UNSUPPORTED_MESSAGE_TYPE,
                                f"interactionId {iid[0].extension} does not name this "
                                f"message ({name})", where + "/interactionId/@extension"),
                      "AR")
    created = (child(root, "creationTime").get("value") or "").strip() \
        if child(root, "creationTime") is not None else ""
    if not created:
        raise V3Error.missing("creationTime/@value", where + "/creationTime")
    if not valid_ts(created):
        raise V3Error.invalid(f"creationTime {created!r} is not an HL7 TS value",
                              where + "/creationTime/@value")
    pc = (child(root, "processingCode").get("code") or "").strip() \
        if child(root, "processingCode") is not None else ""
    if not pc:
        raise V3Error.missing("processingCode/@code", where + "/processingCode")
    if pc not in PROCESSING_CODES:
        raise V3Error(AckDetail(HL7.UNSUPPORTED_PROCESSING_ID,
                                f"unsupported processingCode {pc!r}",
                                where + "/processingCode/@code"), "AR")
    mode_el = child(root, "processingModeCode")
    ack_el = child(root, "acceptAckCode")
    receivers, r2_rcv = _device_ids(root, "receiver")
    senders, r2_snd = _device_ids(root, "sender")
    if not senders:
        raise V3Error.missing("the sender device id (sender/device/id)",
                              where + "/sender/device/id")
    if not children(root, "receiver"):   # an id with a nullFlavor is accepted (unknown peer)
        raise V3Error.missing("the receiver device id (receiver/device/id)",
                              where + "/receiver/device/id")
    r2 = r2_rcv or r2_snd or (id_el is not None and id_el.find(H + "item") is not None)
    tx = Transmission(name, ids[0], created, pc,
                      (mode_el.get("code") or "T").strip() if mode_el is not None else "T",
                      (ack_el.get("code") or "").strip() if ack_el is not None else "",
                      tuple(receivers), tuple(senders), r2)
    msg = V3Message(root, tx, child(root, "controlActProcess"), national=r2)
    ack = child(root, "acknowledgement")
    if ack is not None:
        msg.acknowledgement = parse_acknowledgement(ack)
    if msg.control_act is not None and child(msg.control_act, "queryAck") is not None:
        msg.query_ack = parse_query_ack(child(msg.control_act, "queryAck"))
    return msg


def peek_transmission(root: etree._Element) -> Transmission:
    """What can be read of a wrapper that failed :func:`parse_message` (to address the error
    acknowledgement to its sender): never raises."""
    ids = read_iis(child(root, "id"))
    receivers, r2_rcv = _device_ids(root, "receiver")
    senders, r2_snd = _device_ids(root, "sender")
    pc_el = child(root, "processingCode")
    pc = (pc_el.get("code") or "") if pc_el is not None else ""
    return Transmission(interaction_of(root) or "", ids[0] if ids else II(""), "",
                        pc if pc in PROCESSING_CODES else "P", "T", "", tuple(receivers),
                        tuple(senders), r2_rcv or r2_snd)


def build_transmission(interaction: str, *, message_id: II | None = None,
                       creation_time: "dt.datetime | str | None" = None,
                       sender: "II | Sequence[II]" = (), receiver: "II | Sequence[II]" = (),
                       processing_code: str = "P", processing_mode: str = "T",
                       accept_ack: str = "NE", r2: bool = False) -> etree._Element:
    """The message element with its transmission wrapper, ready for an acknowledgement and a
    control act.  ``accept_ack``: AL (always), ER, NE (never)."""
    root = etree.Element(H + interaction, nsmap={None: V3_NS, "xsi": XSI_NS})
    root.set("ITSVersion", "XML_1.0")
    add_ii(root, "id", message_id or new_id(), r2=False)
    etree.SubElement(root, H + "creationTime",
                     value=ts(creation_time or dt.datetime.now(dt.timezone.utc)))
    etree.SubElement(root, H + "interactionId", root=INTERACTION_ID_ROOT, extension=interaction)
    etree.SubElement(root, H + "processingCode", code=processing_code)
    etree.SubElement(root, H + "processingModeCode", code=processing_mode)
    etree.SubElement(root, H + "acceptAckCode", code=accept_ack)
    for role, type_code, ids in (("receiver", "RCV", receiver), ("sender", "SND", sender)):
        party = etree.SubElement(root, H + role, typeCode=type_code)
        device = etree.SubElement(party, H + "device", classCode="DEV",
                                  determinerCode="INSTANCE")
        add_ii(device, "id", ids, r2=r2)
    return root


def build_control_act(parent: etree._Element, trigger_event: str | None = None
                      ) -> etree._Element:
    """``controlActProcess classCode="CACT" moodCode="EVN"`` with the trigger event code."""
    cap = etree.SubElement(parent, H + "controlActProcess", classCode="CACT", moodCode="EVN")
    if trigger_event:
        etree.SubElement(cap, H + "code", code=trigger_event, codeSystem=INTERACTION_ID_ROOT)
    return cap


# ============================================================================================
# acknowledgements
# ============================================================================================

def parse_acknowledgement(el: etree._Element) -> Acknowledgement:
    type_el = child(el, "typeCode")
    code = (el.get("typeCode") or (type_el.get("code") if type_el is not None else "") or "")
    target = read_iis(child(el, "targetMessage", "id"))
    details = []
    for d in children(el, "acknowledgementDetail"):
        c = read_coded(child(d, "code"))
        details.append(AckDetail(c.code if c else "", read_text(child(d, "text")),
                                 read_text(child(d, "location")), d.get("typeCode") or "E"))
    return Acknowledgement(code.strip(), target[0] if target else None, tuple(details))


def add_acknowledgement(parent: etree._Element, ack: Acknowledgement,
                        national: bool = False) -> etree._Element:
    """The ``acknowledgement`` of a response (MCCI_MT000200UV01): IHE form
    ``<typeCode code="AA"/>``, national form ``typeCode="AA"`` with ``<text value=".."/>``."""
    if ack.type_code not in ACK_TYPES:
        raise ValueError(f"not an acknowledgement code: {ack.type_code}")
    el = etree.SubElement(parent, H + "acknowledgement")
    if national:
        el.set("typeCode", ack.type_code)
    else:
        etree.SubElement(el, H + "typeCode", code=ack.type_code)
    target = etree.SubElement(el, H + "targetMessage")
    add_ii(target, "id", ack.target)
    for d in ack.details:
        det = etree.SubElement(el, H + "acknowledgementDetail", typeCode=d.type_code)
        if d.code:
            etree.SubElement(det, H + "code", code=d.code, codeSystem=ERROR_CODE_SYSTEM,
                             codeSystemName="HL7 Table 0357")
        if national:
            etree.SubElement(det, H + "text", value=d.text)
        else:
            etree.SubElement(det, H + "text").text = d.text
        if d.location:
            etree.SubElement(det, H + "location").text = d.location
    return el


def reply_wrapper(interaction: str, request: Transmission | None, *, node_device: II,
                  message_id: II | None = None, now: dt.datetime | None = None,
                  national: bool = False) -> etree._Element:
    """A response's transmission wrapper addressed back to the sender of ``request``."""
    return build_transmission(
        interaction, message_id=message_id or new_id(), creation_time=now,
        sender=node_device, receiver=list(request.senders) if request else [],
        processing_code=request.processing_code if request else "P", accept_ack="NE",
        r2=bool(request and request.r2) or national)


def build_ack(ack: Acknowledgement, request: Transmission | None, *, node_device: II,
              message_id: II | None = None, now: dt.datetime | None = None,
              national: bool = False) -> etree._Element:
    """MCCI_IN000002UV01, the application acknowledgement of ``request``."""
    root = reply_wrapper("MCCI_IN000002UV01", request, node_device=node_device,
                         message_id=message_id, now=now, national=national)
    add_acknowledgement(root, ack, national)
    return root


# ============================================================================================
# query acknowledgement
# ============================================================================================

def _int_value(el: etree._Element | None) -> int | None:
    if el is None:
        return None
    try:
        return int((el.get("value") or "").strip())
    except ValueError:
        return None


def parse_query_ack(el: etree._Element) -> QueryAck:
    qid = read_iis(child(el, "queryId"))
    code = child(el, "queryResponseCode")
    return QueryAck(qid[0] if qid else None, (code.get("code") or "") if code is not None else "",
                    _int_value(child(el, "resultTotalQuantity")),
                    _int_value(child(el, "resultCurrentQuantity")),
                    _int_value(child(el, "resultRemainingQuantity")))


def add_query_ack(parent: etree._Element, qa: QueryAck) -> etree._Element:
    if qa.response_code not in QUERY_RESPONSE_CODES:
        raise ValueError(f"not a query response code: {qa.response_code}")
    el = etree.SubElement(parent, H + "queryAck")
    add_ii(el, "queryId", qa.query_id)
    status = ("aborted" if qa.response_code in ("AE", "QE") else
              "waitContinuedQueryResponse" if qa.remaining else "deliveredResponse")
    etree.SubElement(el, H + "statusCode", code=status)
    etree.SubElement(el, H + "queryResponseCode", code=qa.response_code)
    for tag, value in (("resultTotalQuantity", qa.total), ("resultCurrentQuantity", qa.current),
                       ("resultRemainingQuantity", qa.remaining)):
        if value is not None:
            etree.SubElement(el, H + tag, value=str(value))
    return el


__all__ = ["V3_NS", "XSI_NS", "INTERACTION_ID_ROOT", "INTERACTION_RE", "ERROR_CODE_SYSTEM",
           "NotV3", "V3Error", "AckDetail", "II", "Coded", "Transmission", "Acknowledgement",
           "QueryAck", "V3Message", "parse_message", "peek_transmission", "build_transmission",
           "build_control_act", "build_ack", "reply_wrapper", "add_acknowledgement",
           "parse_acknowledgement", "add_query_ack", "parse_query_ack", "add_ii", "add_coded",
           "read_iis", "read_id_list", "read_text", "read_coded", "child", "children", "is_null",
           "interaction_of", "ts", "valid_ts", "new_id", "v3"]

"""DICOM Upper Layer protocol data units (DICOM PS3.8 Section 9.3), sans-IO: bytes in, typed PDUs
out, and back.

- A-ASSOCIATE-RQ (9.3.2) and A-ASSOCIATE-AC (9.3.3): application context (9.3.2.1), presentation
  contexts (9.3.2.2, 9.3.3.2) and the user information item (9.3.2.3, PS3.7 Annex D.3.3):
  Maximum Length (D.3.3.1), Implementation Class UID / Version Name (D.3.3.2), Asynchronous
  Operations Window (D.3.3.3), SCP/SCU Role Selection (D.3.3.4); other sub-items (extended
  negotiation, user identity) are kept as raw bytes.
- A-ASSOCIATE-RJ (9.3.4), P-DATA-TF (9.3.5, its PDVs with their message control header,
  9.3.5.1 and Annex E), A-RELEASE-RQ / -RP (9.3.6, 9.3.7), A-ABORT (9.3.8).

:func:`header` reads a PDU's type and length and refuses one larger than the node takes
(:class:`PduError`, which the transport answers with an A-ABORT, PS3.8 9.2.2 / 9.3.8);
:func:`decode` reads the rest.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"     # the DICOM Application Context Name (PS3.7 A.2.1)
HEADER = struct.Struct(">BBI")

# A-ABORT source (9.3.8): 0 service user, 2 service provider; reasons of the provider
ABORT_USER, ABORT_PROVIDER = 0, 2
UNRECOGNIZED_PDU, UNEXPECTED_PDU, UNRECOGNIZED_PARAMETER = 1, 2, 4
UNEXPECTED_PARAMETER, INVALID_PARAMETER = 5, 6
# A-ASSOCIATE-RJ (9.3.4): result, source, reason
REJECTED_PERMANENT, REJECTED_TRANSIENT = 1, 2
RJ_USER, RJ_ACSE, RJ_PRESENTATION = 1, 2, 3
NO_REASON, CONTEXT_NOT_SUPPORTED, CALLING_AE_NOT_RECOGNIZED = 1, 2, 3
CALLED_AE_NOT_RECOGNIZED = 7
PROTOCOL_VERSION_NOT_SUPPORTED = 2                 # source 2 (ACSE)
LOCAL_LIMIT_EXCEEDED = 2                           # source 3 (presentation), transient
# presentation context results (9.3.3.2)
ACCEPTANCE, USER_REJECTION, NO_REASON_GIVEN = 0, 1, 2
ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED = 3, 4


class PduError(ValueError):
    """Bytes that are not a PDU this node takes; ``reason`` is the A-ABORT reason (9.3.8)."""

    def __init__(self, message: str, reason: int = INVALID_PARAMETER):
        super().__init__(message)
        self.reason = reason


@dataclass
class ProposedContext:
    id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]


@dataclass
class AcceptedContext:
    id: int
    result: int
    transfer_syntax: str = ""


@dataclass
class Role:
    """SCP/SCU Role Selection (PS3.7 D.3.3.4) for one SOP class."""
    sop_class: str
    scu: bool
    scp: bool


@dataclass
class UserInformation:
    max_length: int = 0                    # 0: no limit (D.3.3.1)
    implementation_class: str = ""
    implementation_version: str = ""
    window: tuple[int, int] | None = None  # (invoked, performed) operations (D.3.3.3)
    roles: list[Role] = field(default_factory=list)
    other: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class AssociateRQ:
    called: str
    calling: str
    application_context: str
    contexts: list[ProposedContext]
    user: UserInformation
    version: int = 1


@dataclass
class AssociateAC:
    called: str
    calling: str
    application_context: str
    contexts: list[AcceptedContext]
    user: UserInformation
    version: int = 1


@dataclass(frozen=True)
class AssociateRJ:
    result: int
    source: int
    reason: int


@dataclass(frozen=True)
class Pdv:
    """One presentation data value: its context, whether it is a command fragment and the
    last fragment (the message control header, PS3.8 E.2), and the fragment."""
    context_id: int
    command: bool
    last: bool
    data: bytes | memoryview


@dataclass
class PData:
    pdvs: list[Pdv]


@dataclass(frozen=True)
class ReleaseRQ:
    pass


@dataclass(frozen=True)
class ReleaseRP:
    pass


@dataclass(frozen=True)
class Abort:
    source: int = ABORT_USER
    reason: int = 0


Pdu = AssociateRQ | AssociateAC | AssociateRJ | PData | ReleaseRQ | ReleaseRP | Abort


# -- decoding -------------------------------------------------------------------------------

def _text(raw: bytes | memoryview) -> str:
    return bytes(raw).rstrip(b"\x00 ").decode("ascii", "replace").strip()


def _items(body: memoryview, start: int):
    """(item type, item value) of the items of ``body`` from ``start`` (9.3.2: type, reserved,
    2-byte length)."""
    at = start
    while at < len(body):
        if at + 4 > len(body):
            raise PduError("an item runs past its PDU")
        kind, length = body[at], int.from_bytes(body[at + 2:at + 4], "big")
        value = body[at + 4:at + 4 + length]
        if len(value) != length:
            raise PduError(f"item 0x{kind:02X} runs past its PDU")
        yield kind, value
        at += 4 + length


def _user_information(value: memoryview) -> UserInformation:
    user = UserInformation()
    for kind, sub in _items(value, 0):
        if kind == 0x51:
            if len(sub) != 4:
                raise PduError("Maximum Length sub-item is not 4 bytes")
            user.max_length = int.from_bytes(sub, "big")
        elif kind == 0x52:
            user.implementation_class = _text(sub)
        elif kind == 0x55:
            user.implementation_version = _text(sub)
        elif kind == 0x53 and len(sub) == 4:
            user.window = (int.from_bytes(sub[:2], "big"), int.from_bytes(sub[2:], "big"))
        elif kind == 0x54:
            n = int.from_bytes(sub[:2], "big")
            if len(sub) != n + 4:
                raise PduError("Role Selection sub-item of a wrong length")
            user.roles.append(Role(_text(sub[2:2 + n]), bool(sub[2 + n]), bool(sub[3 + n])))
        else:
            user.other.append((kind, bytes(sub)))
    return user


def _associate(body: memoryview, request: bool) -> AssociateRQ | AssociateAC:
    if len(body) < 68:
        raise PduError("A-ASSOCIATE PDU shorter than its fixed fields")
    version = int.from_bytes(body[0:2], "big")
    called, calling = _text(body[4:20]), _text(body[20:36])
    app, user, proposed, accepted = "", UserInformation(), [], []
    for kind, value in _items(body, 68):
        if kind == 0x10:
            app = _text(value)
        elif kind == 0x20 and request:
            abstract, syntaxes = "", []
            for sub_kind, sub in _items(value, 4):
                if sub_kind == 0x30:
                    abstract = _text(sub)
                elif sub_kind == 0x40:
                    syntaxes.append(_text(sub))
            proposed.append(ProposedContext(value[0], abstract, syntaxes))
        elif kind == 0x21 and not request:
            syntax = next((_text(sub) for k, sub in _items(value, 4) if k == 0x40), "")
            accepted.append(AcceptedContext(value[0], value[2], syntax))
        elif kind == 0x50:
            user = _user_information(value)
        else:
            raise PduError(f"unexpected item 0x{kind:02X}", UNEXPECTED_PARAMETER)
    if request:
        return AssociateRQ(called, calling, app, proposed, user, version)
    return AssociateAC(called, calling, app, accepted, user, version)


def _pdata(body: memoryview) -> PData:
    pdvs, at = [], 0
    while at < len(body):
        if at + 6 > len(body):
            raise PduError("a PDV item runs past its PDU")
        length = int.from_bytes(body[at:at + 4], "big")
        if length < 2 or at + 4 + length > len(body):
            raise PduError("a PDV item of a wrong length")
        control = body[at + 5]
        pdvs.append(Pdv(body[at + 4], bool(control & 1), bool(control & 2),
                        body[at + 6:at + 4 + length]))
        at += 4 + length
    if not pdvs:
        raise PduError("a P-DATA-TF without any PDV")
    return PData(pdvs)


def decode(kind: int, body: bytes | bytearray | memoryview) -> Pdu:
    """The PDU of type ``kind`` whose variable part (after the 6-byte header) is ``body``."""
    view = memoryview(body)
    try:
        if kind == P_DATA_TF:
            return _pdata(view)
        if kind in (ASSOCIATE_RQ, ASSOCIATE_AC):
            return _associate(view, kind == ASSOCIATE_RQ)
        if kind == ASSOCIATE_RJ and len(view) == 4:
            return AssociateRJ(view[1], view[2], view[3])
        if kind == RELEASE_RQ and len(view) == 4:
            return ReleaseRQ()
        if kind == RELEASE_RP and len(view) == 4:
            return ReleaseRP()
        if kind == ABORT and len(view) == 4:
            return Abort(view[2], view[3])
    except (IndexError, ValueError) as exc:
        if isinstance(exc, PduError):
            raise
        raise PduError(f"PDU 0x{kind:02X} cannot be read: {exc}") from exc
    if kind in (ASSOCIATE_RJ, RELEASE_RQ, RELEASE_RP, ABORT):
        raise PduError(f"PDU 0x{kind:02X} of length {len(view)}, not 4")
    raise PduError(f"unrecognized PDU type 0x{kind:02X}", UNRECOGNIZED_PDU)


def header(raw: bytes | bytearray | memoryview, limit: int) -> tuple[int, int]:
    """(PDU type, length) of a 6-byte PDU header; :class:`PduError` for an unknown type or a
    PDU longer than ``limit`` (the node's Maximum Length plus room for PDV headers, or the
    bound of an association request)."""
    kind, _, length = HEADER.unpack_from(raw)
    if kind not in (ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ,
                    RELEASE_RP, ABORT):
        raise PduError(f"unrecognized PDU type 0x{kind:02X}", UNRECOGNIZED_PDU)
    if length > limit:
        raise PduError(f"a PDU of {length} bytes, more than the {limit} taken")
    return kind, length


# -- encoding -------------------------------------------------------------------------------

def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(value)) + value


def _ae(title: str) -> bytes:
    return title.encode("ascii", "replace")[:16].ljust(16)


def _user_bytes(user: UserInformation) -> bytes:
    out = _item(0x51, struct.pack(">I", user.max_length))
    out += _item(0x52, user.implementation_class.encode("ascii"))
    if user.window is not None:
        out += _item(0x53, struct.pack(">HH", *user.window))
    for role in user.roles:
        uid = role.sop_class.encode("ascii")
        out += _item(0x54, struct.pack(">H", len(uid)) + uid + bytes([role.scu, role.scp]))
    if user.implementation_version:
        out += _item(0x55, user.implementation_version.encode("ascii")[:16])
    for kind, value in user.other:
        out += _item(kind, value)
    return _item(0x50, out)


def encode(pdu: Pdu) -> bytes:
    """The bytes of ``pdu``, header included."""
    if isinstance(pdu, PData):
        return encode_pdata(pdu.pdvs)
    if isinstance(pdu, (AssociateRQ, AssociateAC)):
        body = struct.pack(">HH", pdu.version, 0) + _ae(pdu.called) + _ae(pdu.calling)
        body += bytes(32) + _item(0x10, pdu.application_context.encode("ascii"))
        for cx in pdu.contexts:
            if isinstance(cx, ProposedContext):
                subs = _item(0x30, cx.abstract_syntax.encode("ascii")) + b"".join(
                    _item(0x40, ts.encode("ascii")) for ts in cx.transfer_syntaxes)
                body += _item(0x20, bytes([cx.id, 0, 0, 0]) + subs)
            else:
                syntax = _item(0x40, cx.transfer_syntax.encode("ascii"))
                body += _item(0x21, bytes([cx.id, 0, cx.result, 0]) + syntax)
        body += _user_bytes(pdu.user)
        kind = ASSOCIATE_RQ if isinstance(pdu, AssociateRQ) else ASSOCIATE_AC
        return HEADER.pack(kind, 0, len(body)) + body
    if isinstance(pdu, AssociateRJ):
        return HEADER.pack(ASSOCIATE_RJ, 0, 4) + bytes([0, pdu.result, pdu.source, pdu.reason])
    if isinstance(pdu, ReleaseRQ):
        return HEADER.pack(RELEASE_RQ, 0, 4) + bytes(4)
    if isinstance(pdu, ReleaseRP):
        return HEADER.pack(RELEASE_RP, 0, 4) + bytes(4)
    if isinstance(pdu, Abort):
        return HEADER.pack(ABORT, 0, 4) + bytes([0, 0, pdu.source, pdu.reason])
    raise TypeError(f"not a PDU: {pdu!r}")


def encode_pdata(pdvs: list[Pdv]) -> bytes:
    parts = []
    for p in pdvs:
        parts.append(struct.pack(">IBB", len(p.data) + 2, p.context_id,
                                 (1 if p.command else 0) | (2 if p.last else 0)))
        parts.append(p.data)
    body = b"".join(parts)
    return HEADER.pack(P_DATA_TF, 0, len(body)) + body


__all__ = ["PduError", "header", "ProposedContext", "AcceptedContext", "Role",
           "UserInformation", "AssociateRQ", "AssociateAC", "AssociateRJ", "Pdv", "PData",
           "ReleaseRQ", "ReleaseRP", "Abort", "Pdu", "decode", "encode", "encode_pdata",
           "APPLICATION_CONTEXT"]

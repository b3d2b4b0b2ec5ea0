"""DIMSE messages (DICOM PS3.7 Chapters 6, 9, 10 and Annex E), sans-IO: the command set of each
message encoded and decoded (always Implicit VR Little Endian, group 0000, PS3.7 6.3.1), the
message cut into P-DATA-TF PDVs within the peer's Maximum Length and put together again from
them (PS3.8 Annex E: command fragments first, then the data set's, each ending with its "last"
bit).

A command is a ``dict`` keyword → value over the command dictionary :data:`FIELDS` (E.1);
an element this node does not know is kept under its tag.  The data set stays bytes in the
presentation context's transfer syntax: the services decode what they need of it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from dicom_qr.pdu import PData, Pdv, encode_pdata

# command fields (E.1-1)
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP = 0x0100, 0x8100
N_ACTION_RQ, N_ACTION_RSP = 0x0130, 0x8130
C_CANCEL_RQ = 0x0FFF
NO_DATA_SET = 0x0101                 # CommandDataSetType (E.1-1)
HAS_DATA_SET = 0x0000
# statuses shared by every service (PS3.7 C)
SUCCESS, PENDING, PENDING_WARNING, CANCEL = 0x0000, 0xFF00, 0xFF01, 0xFE00
UNRECOGNIZED_OPERATION, MISTYPED_ARGUMENT, PROCESSING_FAILURE = 0x0211, 0x0212, 0x0110

# (tag element, keyword, VR) of group 0000 (PS3.7 E.1-1, E.2-1)
FIELDS = [
    (0x0000, "CommandGroupLength", "UL"),
    (0x0002, "AffectedSOPClassUID", "UI"),
    (0x0003, "RequestedSOPClassUID", "UI"),
    (0x0100, "CommandField", "US"),
    (0x0110, "MessageID", "US"),
    (0x0120, "MessageIDBeingRespondedTo", "US"),
    (0x0600, "MoveDestination", "AE"),
    (0x0700, "Priority", "US"),
    (0x0800, "CommandDataSetType", "US"),
    (0x0900, "Status", "US"),
    (0x0901, "OffendingElement", "AT"),
    (0x0902, "ErrorComment", "LO"),
    (0x0903, "ErrorID", "US"),
    (0x1000, "AffectedSOPInstanceUID", "UI"),
    (0x1001, "RequestedSOPInstanceUID", "UI"),
    (0x1002, "EventTypeID", "US"),
    (0x1005, "AttributeIdentifierList", "AT"),
    (0x1008, "ActionTypeID", "US"),
    (0x1020, "NumberOfRemainingSuboperations", "US"),
    (0x1021, "NumberOfCompletedSuboperations", "US"),
    (0x1022, "NumberOfFailedSuboperations", "US"),
    (0x1023, "NumberOfWarningSuboperations", "US"),
    (0x1030, "MoveOriginatorApplicationEntityTitle", "AE"),
    (0x1031, "MoveOriginatorMessageID", "US"),
]
_BY_ELEMENT = {e: (k, vr) for e, k, vr in FIELDS}
_BY_KEYWORD = {k: (e, vr) for e, k, vr in FIELDS}
_ELEMENT = struct.Struct("<HHI")


class DimseError(ValueError):
    """A command set or a PDV sequence that is not a DIMSE message."""


class Source(Protocol):
    """A data set not in memory (a file: :class:`dicom_qr.ul.Region`): its length, and
    ``read(at, size)`` giving ``size`` octets from ``at``.  A message carrying one is cut into
    PDUs as they are asked for (:func:`pdus`), so a gigabyte costs a PDU's worth of memory.
    The codecs here only call it; what it reads is the caller's business."""

    def __len__(self) -> int: ...

    def read(self, at: int, size: int) -> bytes: ...


def _in_memory(data: Any) -> bool:
    return isinstance(data, (bytes, bytearray, memoryview))


@dataclass
class Message:
    context_id: int
    command: dict[str, Any]
    data: bytes | Source | None = None

    @property
    def field(self) -> int:
        return int(self.command.get("CommandField", -1))

    @property
    def message_id(self) -> int:
        return int(self.command.get("MessageID", 0))


# -- the command set ------------------------------------------------------------------------

def _value(vr: str, raw: memoryview) -> Any:
    if vr == "US":
        return int.from_bytes(raw[:2], "little") if len(raw) >= 2 else 0
    if vr == "UL":
        return int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
    if vr == "AT":
        return [(int.from_bytes(raw[i:i + 2], "little") << 16) |
                int.from_bytes(raw[i + 2:i + 4], "little") for i in range(0, len(raw) - 3, 4)]
    return bytes(raw).rstrip(b"\x00 ").decode("ascii", "replace").strip()


def decode_command(raw: bytes | memoryview) -> dict[str, Any]:
    """The command set ``raw`` (Implicit VR Little Endian) as keyword → value."""
    view, at, out = memoryview(raw), 0, {}
    while at < len(view):
        if at + 8 > len(view):
            raise DimseError("a command element runs past the command set")
        group, element, length = _ELEMENT.unpack_from(view, at)
        if group != 0x0000:
            raise DimseError(f"element ({group:04X},{element:04X}) in a command set")
        if length == 0xFFFFFFFF or at + 8 + length > len(view):
            raise DimseError(f"command element (0000,{element:04X}) of a wrong length")
        keyword, vr = _BY_ELEMENT.get(element, (element, "OB"))
        value = view[at + 8:at + 8 + length]
        out[keyword] = _value(vr, value) if vr != "OB" else bytes(value)
        at += 8 + length
    if "CommandField" not in out:
        raise DimseError("a command set without its CommandField")
    return out


def _encode_value(vr: str, value: Any) -> bytes:
    if vr == "US":
        return struct.pack("<H", int(value) & 0xFFFF)
    if vr == "UL":
        return struct.pack("<I", int(value))
    if vr == "AT":
        tags = value if isinstance(value, (list, tuple)) else [value]
        return b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in tags)
    if isinstance(value, bytes):
        raw = value
    else:
        raw = str(value).encode("ascii", "replace")
    if vr == "AE":
        raw = raw[:16]
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


def encode_command(command: dict[str, Any]) -> bytes:
    """The command set of ``command`` (keywords of :data:`FIELDS`, or element numbers), its
    elements in tag order, CommandGroupLength first."""
    elements = []
    for key, value in command.items():
        if key == "CommandGroupLength" or value is None:
            continue
        element, vr = _BY_KEYWORD[key] if isinstance(key, str) else (key, "OB")
        elements.append((element, vr, value))
    body = b"".join(_ELEMENT.pack(0, e, len(v)) + v
                    for e, v in sorted((e, _encode_value(vr, value))
                                       for e, vr, value in elements))
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<I", len(body)) + body


# -- messages over PDVs ---------------------------------------------------------------------

def fragments(message: Message, max_length: int) -> list[bytes]:
    """P-DATA-TF PDUs carrying ``message`` for a peer whose Maximum Length is ``max_length``
    (0: no limit).  The command and a data set that fit together go in one PDU."""
    return list(pdus(message, max_length))


def pdus(message: Message, max_length: int) -> Iterator[bytes]:
    """:func:`fragments` one PDU at a time; a :class:`Source` is read as each PDU is made."""
    command = encode_command({**message.command,
                              "CommandDataSetType": NO_DATA_SET if message.data is None
                              else HAS_DATA_SET})
    room = (max_length - 6) if max_length else 0   # a PDV's own header is 6 bytes
    cid, data = message.context_id, message.data
    size = len(data) if data is not None else 0
    if not room or len(command) + 6 + size + 6 <= max_length:
        pdvs = [Pdv(cid, True, True, command)]
        if data is not None:
            pdvs.append(Pdv(cid, False, True,
                            data if _in_memory(data) else data.read(0, size)))
        yield encode_pdata(pdvs)
        return
    view = memoryview(command)
    for at in range(0, max(len(view), 1), room):
        yield encode_pdata([Pdv(cid, True, at + room >= len(view), view[at:at + room])])
    if data is None:
        return
    read = (lambda at, n, view=memoryview(data): view[at:at + n]) if _in_memory(data) \
        else data.read
    for at in range(0, max(size, 1), room):
        yield encode_pdata([Pdv(cid, False, at + room >= size, read(at, min(room, size - at)))])


class Spool(Protocol):
    """Where the data set of a message grown past :attr:`Assembler.spill_at` goes on."""

    def write(self, data: bytes | memoryview) -> None: ...

    def region(self) -> Source: ...

    def discard(self) -> None: ...


@dataclass
class Assembler:
    """Puts messages together from the PDVs of P-DATA-TF PDUs (PS3.8 Annex E): :meth:`feed` a
    P-DATA, get the messages it completes.  With ``spool`` (message → :class:`Spool`, or None
    to keep it in memory), a data set that grows past ``spill_at`` octets goes on into the
    spool as it arrives, and the message carries what the spool gives back; :meth:`discard`
    drops a spool left unfinished (an association that ended mid-message)."""
    command: list[bytes] = field(default_factory=list)
    data: list[bytes | memoryview] = field(default_factory=list)
    pending: Message | None = None
    context_id: int = 0
    spill_at: int = 0
    spool: Callable[[Message], Spool | None] | None = None
    size: int = 0
    spooling: Spool | None = None
    declined: bool = False          # the spool would not take this message: memory it is

    def feed(self, pdata: PData) -> list[Message]:
        done = []
        for pdv in pdata.pdvs:
            if self.command or self.pending is None:
                if not pdv.command:
                    raise DimseError("a data set fragment where a command was expected")
                if self.command and pdv.context_id != self.context_id:
                    raise DimseError("a command's fragments on two presentation contexts")
                self.context_id = pdv.context_id
                self.command.append(bytes(pdv.data))
                if pdv.last:
                    command = decode_command(b"".join(self.command))
                    self.command = []
                    msg = Message(pdv.context_id, command)
                    if command.get("CommandDataSetType", NO_DATA_SET) == NO_DATA_SET:
                        done.append(msg)
                    else:
                        self.pending = msg
                continue
            if pdv.command or pdv.context_id != self.pending.context_id:
                raise DimseError("a message's data set interrupted")
            if self.spooling is not None:
                self.spooling.write(pdv.data)
            else:
                self.data.append(pdv.data)
                self.size += len(pdv.data)
                if self.spill_at and self.size > self.spill_at and self.spool is not None \
                        and not self.declined:
                    self._spill()
            if pdv.last:
                if self.spooling is not None:
                    self.pending.data, self.spooling = self.spooling.region(), None
                else:
                    parts, self.data = self.data, []
                    self.pending.data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
                self.size, self.declined = 0, False
                done.append(self.pending)
                self.pending = None
        return done

    def _spill(self) -> None:
        spooling = self.spool(self.pending)
        if spooling is None:
            self.declined = True
            return
        for part in self.data:
            spooling.write(part)
        self.data, self.spooling = [], spooling

    def discard(self) -> None:
        if self.spooling is not None:
            self.spooling.discard()
            self.spooling = None


def response(request: Message, field_: int, status: int, **more: Any) -> dict[str, Any]:
    """The command of the response ``field_`` to ``request`` with ``status`` (PS3.7 9.3,
    10.3): its SOP class and instance echoed as the Affected ones."""
    cmd = request.command
    out: dict[str, Any] = {"AffectedSOPClassUID": cmd.get("AffectedSOPClassUID") or
                           cmd.get("RequestedSOPClassUID"),
                           "CommandField": field_,
                           "MessageIDBeingRespondedTo": request.message_id,
                           "Status": status}
    instance = cmd.get("AffectedSOPInstanceUID") or cmd.get("RequestedSOPInstanceUID")
    if instance and field_ in (C_STORE_RSP, N_ACTION_RSP, N_EVENT_REPORT_RSP):
        out["AffectedSOPInstanceUID"] = instance
    out.update(more)
    return out


__all__ = ["Message", "Source", "Spool", "DimseError", "Assembler",
           "decode_command", "encode_command", "fragments", "pdus", "response", "FIELDS"]

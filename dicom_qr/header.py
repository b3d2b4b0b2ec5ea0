"""The elements the index reads, taken straight from a received data set's bytes — sans-IO, no
pydicom Dataset built (DICOM PS3.5 7.1 Data Elements, 7.5 Nesting of Data Sets, A.1 Implicit VR
Little Endian, A.2 Explicit VR Little Endian; the encapsulated syntaxes of A.4 are Explicit VR
Little Endian outside their pixel data).

A data set's elements come in increasing tag order (PS3.5 7.1), so the walk stops at the first
element past the last tag wanted: for the imaging index, group 0020, long before the pixel data.
Nested data sets (sequences and items of defined or undefined length, 7.5; an explicit UN of
undefined length holds Implicit VR Little Endian, 6.2.2) are stepped over, not read.
:func:`walk` gives each wanted top-level element's value bytes as they are.

Anything that does not walk — a length past the end, an item tag where an element should be, a
transfer syntax this reader does not walk (deflated, big endian) — raises :class:`HeaderError`;
the caller then reads the data set with pydicom, which decodes it or refuses it.
"""
from __future__ import annotations

import struct

IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1)
_LONG = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                   b"UR", b"UT", b"UV"))
_TAG_LENGTH = struct.Struct("<HHI").unpack_from          # implicit VR; items and delimiters
_TAG_VR_SHORT = struct.Struct("<HH2sH").unpack_from      # explicit VR, 2-byte length
_LENGTH = struct.Struct("<I").unpack_from


class HeaderError(ValueError):
    """The data set does not walk here (see the module docstring)."""


def walk(data: bytes | memoryview, syntax: str, wanted: frozenset[int]
         ) -> tuple[dict[int, bytes], int]:
    """(tag -> value bytes of the top-level elements of ``data`` — a data set in transfer
    syntax ``syntax`` — whose tag is in ``wanted``, elements absent being absent; where the
    walk stopped: the offset of the first element past the last tag wanted, or the end of
    ``data``).  Everything before that offset is whole in ``data``, which may be only the
    beginning of a data set."""
    if syntax in (DEFLATED_LE, EXPLICIT_BE):
        raise HeaderError(f"{syntax} is not walked here")
    explicit = syntax != IMPLICIT_LE
    last, end, at = max(wanted), len(data), 0
    found: dict[int, bytes] = {}
    try:
        while at < end:
            start = at
            tag, vr, length, at = _element(data, at, explicit)
            if tag > last:
                return found, start
            if length == UNDEFINED:
                at = _skip_sequence(data, at, explicit and vr != b"UN")
                continue
            stop = at + length
            if stop > end:
                raise HeaderError(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the "
                                  "end of the data set")
            if tag in wanted:
                found[tag] = bytes(data[at:stop])
            at = stop
    except (struct.error, RecursionError) as exc:
        raise HeaderError(f"the data set ends inside an element or nests too deep: {exc}") \
            from None
    return found, end


def _element(data, at: int, explicit: bool) -> tuple[int, bytes, int, int]:
    """(tag, VR or b"", value length, where the value starts) of the element header at ``at``."""
    if not explicit:
        group, number, length = _TAG_LENGTH(data, at)
        return group << 16 | number, b"", length, at + 8
    group, number, vr, length = _TAG_VR_SHORT(data, at)
    if group == 0xFFFE:                  # items and delimiters carry no VR (PS3.5 7.5)
        return group << 16 | number, b"", _LENGTH(data, at + 4)[0], at + 8
    vr = bytes(vr)
    if vr in _LONG:
        return group << 16 | number, vr, _LENGTH(data, at + 8)[0], at + 12
    if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        raise HeaderError(f"no VR at offset {at}")
    return group << 16 | number, vr, length, at + 8


def _skip_sequence(data, at: int, explicit: bool) -> int:
    """Past the items and delimiter of a sequence of undefined length starting at ``at``."""
    while True:
        tag, length = _item(data, at)
        at += 8
        if tag == SEQUENCE_END:
            return at
        if tag != ITEM:
            raise HeaderError(f"no item at offset {at - 8}")
        if length != UNDEFINED:
            at += length
            continue
        while True:                       # an item of undefined length: its elements, then
            tag, _vr, length, at = _element(data, at, explicit)   # its delimiter
            if tag == ITEM_END:
                break
            if tag in (ITEM, SEQUENCE_END):
                raise HeaderError(f"an item delimiter missing before offset {at - 8}")
            at = _skip_sequence(data, at, explicit and _vr != b"UN") \
                if length == UNDEFINED else at + length
        if at > len(data):
            raise HeaderError("an item runs past the end of the data set")


def _item(data, at: int) -> tuple[int, int]:
    group, number, length = _TAG_LENGTH(data, at)
    return group << 16 | number, length


__all__ = ["HeaderError", "walk"]

"""HL7 v2 codec, sans-IO: bytes in, typed :class:`Message` out, and back.

Implements the encoding rules of HL7 v2.5 chapter 2:

- 2.5 / 2.6 message construction: segments end with <CR>; the delimiters are declared by the
  message itself in MSH-1 (field separator) and MSH-2 (component, repetition, escape and
  subcomponent characters, in that order; v2.7's fifth, truncation character is accepted);
- 2.7 escape sequences in text: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` (delimiters), ``\\Xhh..\\`` (hex data, in
  the message's character set), ``\\H\\ \\N\\`` (highlighting), ``\\Cxxyy\\ \\Mxxyyzz\\`` (ISO 2022
  character-set switching) and ``\\Z..\\`` (locally defined) are recognised; formatting commands of
  FT fields (``\\.br\\``, ``\\.sp\\``) become line breaks;
- 2.15.9.18 MSH-18 character set (HL7 Table 0211): ``UNICODE UTF-8`` (and ``UNICODE``),
  ``GB 18030-2000``, ``ASCII``, ``8859/1`` .. ``8859/15``, ``BIG-5``, ``KS X 1001``.  With MSH-18
  empty HL7 means 7-bit ASCII; this node reads UTF-8 then, and — because Chinese HIS products
  commonly omit MSH-18 while sending GBK — falls back to GB 18030 when the bytes are not UTF-8;
- 2.9 / 2.14.1 acknowledgements: :func:`build_ack` makes an ``ACK`` with MSA and one ERR per
  error (v2.5 2.15.5: ERR-2 location as ERL, ERR-3 HL7 error code from Table 0357 as CWE, ERR-4
  severity from Table 0516, ERR-8 user message; ERR-1 as well when acknowledging v2.3/v2.4).

The model: a :class:`Message` is a list of :class:`Segment`; a segment holds :class:`Field` values,
numbered from 1 as in the standard (for MSH, MSH-1 is the field separator and MSH-2 the encoding
characters); a field is repetitions of components of subcomponents, kept *unescaped*.  Escaping
happens only in :meth:`Message.encode`, so ``parse(msg.encode()) == msg``.

Errors are data: bytes that are not a readable message raise :class:`Hl7ParseError`, an
:class:`~hie.errors.Hl7Error` with acknowledgement code AR that carries whatever of the MSH could
be read (:attr:`Hl7ParseError.header`) so the ACK can still echo the control id.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from dataclasses import dataclass, field as dc_field
from typing import Any, Iterable, Mapping, Sequence

from hie.errors import HL7, Hl7Error

SEGMENT_TERMINATOR = "\r"
_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")  # <CR> per 2.5; LF and CRLF tolerated
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_UTF8_BOM = b"\xef\xbb\xbf"

# HL7 Table 0357 (message error condition codes), texts for ERR-3.2
TABLE_0357 = {
    "0": "Message accepted",
    HL7.SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    HL7.REQUIRED_FIELD_MISSING: "Required field missing",
    HL7.DATA_TYPE_ERROR: "Data type error",
    HL7.TABLE_VALUE_NOT_FOUND: "Table value not found",
    HL7.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    HL7.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    HL7.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    HL7.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    HL7.UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    HL7.DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    HL7.APPLICATION_RECORD_LOCKED: "Application record locked",
    HL7.APPLICATION_INTERNAL_ERROR: "Application internal error",
}
SEVERITIES = ("E", "W", "I")  # HL7 Table 0516 (ERR-4)
ACK_CODES = ("AA", "AE", "AR", "CA", "CE", "CR")  # HL7 Table 0008 (MSA-1)

# HL7 Table 0211 (MSH-18) -> Python codec.  Keys are normalised: upper case, no blanks/underscores.
_CHARSETS = {
    "ASCII": "ascii",
    "UNICODE": "utf-8",  # v2.5 leaves the encoding form open; UTF-8 in practice
    "UNICODEUTF-8": "utf-8",
    "UTF-8": "utf-8",
    "GB18030-2000": "gb18030",
    "GB18030-2005": "gb18030",
    "GB18030-2022": "gb18030",
    "GB18030": "gb18030",
    "GBK": "gb18030",      # not in Table 0211, seen in the field; GB 18030 is a superset
    "GB2312": "gb18030",
    "BIG-5": "big5",
    "BIG5": "big5",
    "KSX1001": "euc_kr",
    **{f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
}


def _charset_key(label: str) -> str:
    return label.upper().replace(" ", "").replace("_", "")


def codec_for(label: str) -> str | None:
    """The Python codec for an MSH-18 value (HL7 Table 0211), ``None`` if not supported."""
    return _CHARSETS.get(_charset_key(label))


class Hl7ParseError(Hl7Error):
    """The bytes are not an HL7 v2 message this codec can read.  Acknowledged with AR; ``header``
    is the message's MSH alone (as a :class:`Message`) when it could be read, else None."""

    def __init__(self, text: str, error_code: str = HL7.SEGMENT_SEQUENCE_ERROR,
                 location: str = "", header: "Message | None" = None):
        super().__init__("AR", error_code, text, location)
        self.header = header


# --------------------------------------------------------------------------------------------
# delimiters and escaping (HL7 v2.5 2.5.4, 2.7)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""  # v2.7 MSH-2 fifth character; never used for splitting

    def __post_init__(self) -> None:
        chars = [self.field, self.component, self.repetition, self.escape, self.subcomponent]
        if self.truncation:
            chars.append(self.truncation)
        for c in chars:
            if len(c) != 1 or c.isalnum() or c in "\r\n \t" or not c.isprintable():
                raise ValueError(f"not a usable HL7 delimiter: {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("HL7 delimiters must be distinct")

    @property
    def encoding_characters(self) -> str:
        """MSH-2."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation

    @classmethod
    def from_msh(cls, segment: str) -> "Delimiters":
        """Read MSH-1 and MSH-2 from the MSH segment text; ValueError when they are unusable."""
        if len(segment) < 8 or not segment.startswith("MSH"):
            raise ValueError("MSH segment too short to declare its delimiters")
        sep = segment[3]
        enc = segment[4:].split(sep, 1)[0]
        if len(enc) not in (4, 5):
            raise ValueError(f"MSH-2 must hold 4 encoding characters, not {enc!r}")
        return cls(sep, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) == 5 else "")

    # -- escaping ------------------------------------------------------------------------------

    def escape_text(self, text: str) -> str:
        """Escape one leaf value (2.7.1): delimiters become \\F\\ \\S\\ \\T\\ \\R\\ \\E\\; CR and LF,
        which cannot appear inside a segment, become \\X0D\\ and \\X0A\\."""
        if self._specials.isdisjoint(text):
            return text
        return text.translate(self._escape_table)

    @functools.cached_property
    def _specials(self) -> frozenset[str]:
        return frozenset(self._escape_map)

    @functools.cached_property
    def _escape_table(self) -> dict[int, str]:
        return str.maketrans(self._escape_map)

    @functools.cached_property
    def _structure(self) -> frozenset[str]:
        """The characters that split or escape a field's text (a text without them is one
        value)."""
        return frozenset((self.repetition, self.component, self.subcomponent, self.escape))

    @functools.cached_property
    def _escape_map(self) -> dict[str, str]:
        e = self.escape
        m = {self.escape: f"{e}E{e}", self.field: f"{e}F{e}", self.component: f"{e}S{e}",
             self.subcomponent: f"{e}T{e}", self.repetition: f"{e}R{e}",
             "\r": f"{e}X0D{e}", "\n": f"{e}X0A{e}"}
        if self.truncation:
            m[self.truncation] = f"{e}P{e}"
        return m

    def unescape_text(self, text: str, encoding: str = "utf-8") -> str:
        """Undo 2.7 escape sequences in one leaf value.  A lone escape character (no closing one)
        and unknown sequences are kept literally; hex data is decoded in ``encoding``."""
        e = self.escape
        if e not in text:
            return text
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            j = text.find(e, i)
            if j < 0:
                out.append(text[i:])
                break
            out.append(text[i:j])
            k = text.find(e, j + 1)
            if k < 0:  # unterminated: literal
                out.append(text[j:])
                break
            out.append(self._unescape_one(text[j + 1:k], text[j:k + 1], encoding))
            i = k + 1
        return "".join(out)

    def _unescape_one(self, seq: str, literal: str, encoding: str) -> str:
        simple = {"F": self.field, "S": self.component, "T": self.subcomponent,
                  "R": self.repetition, "E": self.escape, "P": self.truncation or literal,
                  "H": "", "N": ""}
        if seq in simple:
            return simple[seq]
        head = seq[:1]
        if head == "X":
            hexdata = seq[1:]
            try:
                return bytes.fromhex(hexdata).decode(encoding, "replace")
            except ValueError:
                return literal
        if head in ("C", "M", "Z"):  # character-set switching / local: no text of their own
            return ""
        if head == ".":
            cmd = seq[1:].split(" ")[0].strip().lower()
            if cmd == "br":
                return "\n"
            if cmd == "sp":
                arg = seq[3:].strip()
                return "\n" * (int(arg) if arg.isdigit() and 0 < int(arg) < 100 else 1)
            if cmd in ("fi", "nf", "in", "ti", "sk", "ce"):
                return ""
        return literal


DEFAULT_DELIMITERS = Delimiters()


# --------------------------------------------------------------------------------------------
# fields
# --------------------------------------------------------------------------------------------

Tree = tuple  # tuple[tuple[tuple[str, ...], ...], ...]: repetitions -> components -> subcomponents


class Repeat(tuple):
    """Marks a field value with repetitions: ``Repeat([rep1, rep2])``; each repetition is a str or
    a sequence of components (see :meth:`Field.of`)."""


def _norm_comp(subs: Iterable[str]) -> tuple[str, ...]:
    subs = list(subs)
    while subs and subs[-1] == "":
        subs.pop()
    return tuple(subs)


def _norm_rep(comps: Iterable[tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    comps = list(comps)
    while comps and not comps[-1]:
        comps.pop()
    return tuple(comps)


def _norm_field(reps: Iterable[tuple]) -> Tree:
    reps = list(reps)
    while reps and not reps[-1]:
        reps.pop()
    return tuple(reps)


def _value_comp(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return _norm_comp((value,))
    if isinstance(value, (tuple, list)):
        return _norm_comp("" if s is None else str(s) for s in value)
    return _norm_comp((str(value),))


def _value_rep(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (tuple, list)) and not isinstance(value, Repeat):
        return _norm_rep(_value_comp(c) for c in value)
    return _norm_rep((_value_comp(value),))


@dataclass(frozen=True)
class Field:
    """One field: ``reps`` is repetitions -> components -> subcomponents, unescaped, with trailing
    empty parts removed (so an empty field is ``()``).  Positions are 1-based, as in HL7."""

    reps: Tree = ()

    @classmethod
    def of(cls, value: Any) -> "Field":
        """A field from a Python value: None (empty), a str (one value), a tuple/list of components
        (each a str, None, or a tuple/list of subcomponents), :class:`Repeat` of such, or a Field."""
        if isinstance(value, Field):
            return value
        if value is None:
            return cls(())
        if isinstance(value, Repeat):
            return cls(_norm_field(_value_rep(v) for v in value))
        return cls(_norm_field((_value_rep(value),)))

    @classmethod
    def parse(cls, raw: str, d: Delimiters = DEFAULT_DELIMITERS,
              encoding: str = "utf-8") -> "Field":
        """A field from its encoded text (still escaped)."""
        if not raw:
            return cls(())
        if d._structure.isdisjoint(raw):   # most fields: one value, nothing escaped
            return cls((((raw,),),))
        un = d.unescape_text
        return cls(_norm_field(
            _norm_rep(_norm_comp(un(s, encoding) for s in comp.split(d.subcomponent))
                      for comp in rep.split(d.component))
            for rep in raw.split(d.repetition)))

    def encode(self, d: Delimiters = DEFAULT_DELIMITERS) -> str:
        reps = self.reps
        if len(reps) == 1 and len(reps[0]) == 1 and len(reps[0][0]) == 1:   # one value
            return d.escape_text(reps[0][0][0])
        esc = d.escape_text
        return d.repetition.join(
            d.component.join(d.subcomponent.join(esc(s) for s in comp) for comp in rep)
            for rep in self.reps)

    def value(self, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """The leaf at (repetition, component, subcomponent), "" when absent."""
        try:
            return self.reps[rep - 1][comp - 1][sub - 1] if min(rep, comp, sub) > 0 else ""
        except IndexError:
            return ""

    def component(self, comp: int, rep: int = 1) -> "Field":
        """Component ``comp`` of repetition ``rep`` as a field of its own (its subcomponents become
        components), e.g. the HD inside CX-4."""
        try:
            subs = self.reps[rep - 1][comp - 1]
        except IndexError:
            return Field(())
        return Field(_norm_field((_norm_rep((s,) if s else () for s in subs),)))

    @property
    def repetitions(self) -> list["Field"]:
        return [Field((r,)) if r else Field(()) for r in self.reps]

    def __bool__(self) -> bool:
        return bool(self.reps)

    def __str__(self) -> str:
        return self.encode(DEFAULT_DELIMITERS)


# --------------------------------------------------------------------------------------------
# segments and messages
# --------------------------------------------------------------------------------------------

@dataclass
class Segment:
    """A segment: ``fields[0]`` is field 1.  For MSH, MSH-1 and MSH-2 are written from the
    message's delimiters when encoding, whatever ``fields`` holds for them."""

    name: str
    fields: list[Field] = dc_field(default_factory=list)

    @classmethod
    def of(cls, name: str, values: Mapping[int, Any] | Sequence[Any] = ()) -> "Segment":
        """A segment from values by field number (``{3: ..., 5: ...}``) or in order from field 1."""
        if not _SEGMENT_ID.match(name):
            raise ValueError(f"not an HL7 segment id: {name!r}")
        if isinstance(values, Mapping):
            top = max(values, default=0)
            items = [values.get(i) for i in range(1, top + 1)]
        else:
            items = list(values)
        if name == "MSH":
            while len(items) < 2:
                items.append(None)
        return cls(name, [Field.of(v) for v in items])

    def __getitem__(self, n: int) -> Field:
        if n < 1 or n > len(self.fields):
            return Field(())
        return self.fields[n - 1]

    def __setitem__(self, n: int, value: Any) -> None:
        if n < 1:
            raise IndexError(n)
        while len(self.fields) < n:
            self.fields.append(Field(()))
        self.fields[n - 1] = Field.of(value)

    def value(self, n: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        return self[n].value(rep, comp, sub)

    def encode(self, d: Delimiters = DEFAULT_DELIMITERS) -> str:
        if self.name == "MSH":
            rest = [f.encode(d) for f in self.fields[2:]]
            while rest and not rest[-1]:
                rest.pop()
            return d.field.join(["MSH" + d.field + d.encoding_characters, *rest])
        parts = [f.encode(d) for f in self.fields]
        while parts and not parts[-1]:
            parts.pop()
        return d.field.join([self.name, *parts])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segment):
            return NotImplemented
        return self.name == other.name and _trim(self) == _trim(other)


def _trim(seg: Segment) -> list[Field]:
    fields = list(seg.fields[2:] if seg.name == "MSH" else seg.fields)
    while fields and not fields[-1]:
        fields.pop()
    return fields


_PATH = re.compile(r"([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:-(\d+)(?:\[(\d+)\])?"
                   r"(?:\.(\d+)(?:\.(\d+))?)?)?\Z")


@functools.lru_cache(maxsize=1024)   # the paths are the handlers' constants
def _terse_path(path: str) -> tuple[str, int, int | None, int, int, int]:
    m = _PATH.match(path)
    if not m:
        raise ValueError(f"not an HL7 path: {path!r}")
    name, occ, fld, rep, comp, sub = m.groups()
    return (name, int(occ or 1), int(fld) if fld is not None else None, int(rep or 1),
            int(comp or 1), int(sub or 1))


@dataclass
class Message:
    """A parsed or built HL7 v2 message.  ``encoding`` is the Python codec the bytes are in (from
    MSH-18, see :func:`codec_for`)."""

    segments: list[Segment]
    delimiters: Delimiters = DEFAULT_DELIMITERS
    encoding: str = "utf-8"

    # -- access ------------------------------------------------------------------------------

    def segment(self, name: str, occurrence: int = 1) -> Segment | None:
        """The ``occurrence``-th segment called ``name`` (1-based), None if there is none."""
        seen = 0
        for seg in self.segments:
            if seg.name == name:
                seen += 1
                if seen == occurrence:
                    return seg
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def get(self, path: str) -> str:
        """The leaf at a terse path: ``SEG[occurrence]-field[repetition].component.subcomponent``,
        e.g. ``MSH-9.2``, ``PID-3[2].4.2``, ``OBX[3]-5``; "" when absent."""
        name, occ, n, rep, comp, sub = _terse_path(path)
        seg = self.segment(name, occ)
        if seg is None or n is None:
            return ""
        if name == "MSH" and n in (1, 2):
            return self.delimiters.field if n == 1 else self.delimiters.encoding_characters
        return seg.value(n, rep, comp, sub)

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def message_type(self) -> str:
        return self.get("MSH-9.1")

    @property
    def trigger_event(self) -> str:
        return self.get("MSH-9.2")

    @property
    def control_id(self) -> str:
        return self.get("MSH-10")

    @property
    def processing_id(self) -> str:
        return self.get("MSH-11")

    @property
    def version(self) -> str:
        return self.get("MSH-12")

    @property
    def charset(self) -> str:
        """MSH-18 as sent (first repetition), "" when absent."""
        return self.get("MSH-18")

    # -- encoding ------------------------------------------------------------------------------

    def to_text(self) -> str:
        d = self.delimiters
        return "".join(s.encode(d) + SEGMENT_TERMINATOR for s in self.segments)

    def encode(self) -> bytes:
        """The message in its character set; UnicodeEncodeError if it holds characters the
        character set cannot carry (a local misuse: choose MSH-18 accordingly)."""
        return self.to_text().encode(self.encoding)


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------

def _split_segment(line: str, d: Delimiters, encoding: str) -> Segment:
    name = line[:3]
    if not _SEGMENT_ID.match(name) or (len(line) > 3 and line[3] != d.field):
        raise Hl7ParseError(f"not an HL7 segment: {line[:20]!r}", HL7.SEGMENT_SEQUENCE_ERROR)
    if name == "MSH":
        parts = line.split(d.field)
        fields = [Field.of(d.field), Field.of(d.encoding_characters)]
        fields += [Field.parse(p, d, encoding) for p in parts[2:]]
        return Segment("MSH", fields)
    parts = line.split(d.field)[1:]
    return Segment(name, [Field.parse(p, d, encoding) for p in parts])


def parse_text(text: str, encoding: str = "utf-8") -> Message:
    """Parse an already decoded message.  ``encoding`` is kept for re-encoding and hex escapes."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = [ln for ln in _SEGMENT_SPLIT.split(text) if ln.strip()]
    if not lines:
        raise Hl7ParseError("empty message", HL7.SEGMENT_SEQUENCE_ERROR, "MSH")
    first = lines[0].lstrip()
    if not first.startswith("MSH"):
        raise Hl7ParseError("the message does not start with an MSH segment",
                            HL7.SEGMENT_SEQUENCE_ERROR, "MSH")
    try:
        d = Delimiters.from_msh(first)
    except ValueError as exc:
        raise Hl7ParseError(f"MSH delimiters unusable: {exc}", HL7.DATA_TYPE_ERROR,
                            "MSH^1^2") from None
    msh = _split_segment(first, d, encoding)
    header = Message([msh], d, encoding)
    segments = [msh]
    for i, line in enumerate(lines[1:], start=2):
        try:
            segments.append(_split_segment(line, d, encoding))
        except Hl7ParseError as exc:
            raise Hl7ParseError(f"segment {i}: {exc.text}", exc.error_code,
                                header=header) from None
    return Message(segments, d, encoding)


def _bootstrap_charset(data: bytes) -> str:
    """MSH-18 read from the raw bytes before decoding (every supported character set is
    ASCII-compatible in its single-byte range)."""
    end = len(data)
    for t in (b"\r", b"\n"):
        k = data.find(t)
        if 0 <= k < end:
            end = k
    line = data[:end].decode("latin-1")
    if len(line) < 8 or not line.startswith("MSH"):
        return ""
    sep = line[3]
    parts = line.split(sep)
    if len(parts) < 18:
        return ""
    enc = parts[1]
    rep = enc[1] if len(enc) > 1 else "~"
    comp = enc[0] if enc else "^"
    return parts[17].split(rep)[0].split(comp)[0].strip()


def _decode(data: bytes, label: str) -> tuple[str, str]:
    """(text, codec) for the message bytes, given the MSH-18 label read from them."""
    if not label:
        for codec in ("utf-8", "gb18030"):
            try:
                return data.decode(codec), codec
            except UnicodeDecodeError:
                continue
        raise Hl7ParseError("the message is neither UTF-8 nor GB 18030 and MSH-18 is empty",
                            HL7.DATA_TYPE_ERROR, "MSH^1^18")
    codec = codec_for(label)
    if codec is None:
        raise Hl7ParseError(f"unsupported character set in MSH-18: {label!r}",
                            HL7.TABLE_VALUE_NOT_FOUND, "MSH^1^18")
    try:
        return data.decode(codec), codec
    except UnicodeDecodeError:
        raise Hl7ParseError(f"the message bytes are not valid {label}", HL7.DATA_TYPE_ERROR,
                            "MSH^1^18") from None


def parse(data: bytes | str) -> Message:
    """Parse one HL7 v2 message; :class:`Hl7ParseError` (AR) if it cannot be read."""
    if isinstance(data, str):
        msg = parse_text(data)
        msg.encoding = codec_for(msg.charset) or "utf-8"
        return msg
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    data = data.lstrip(b" \t\r\n")
    if not data.startswith(b"MSH"):
        raise Hl7ParseError("the message does not start with an MSH segment",
                            HL7.SEGMENT_SEQUENCE_ERROR, "MSH")
    label = _bootstrap_charset(data)
    try:
        # an unknown label may be a mis-read (a GB 18030 trail byte equal to a delimiter before
        # MSH-18): detect the encoding, then trust MSH-18 as parsed from the decoded text
        try:
            text, codec = _decode(data, label if codec_for(label) else "")
        except Hl7ParseError:
            if label and codec_for(label) is None:
                raise Hl7ParseError(f"unsupported character set in MSH-18: {label!r}",
                                    HL7.TABLE_VALUE_NOT_FOUND, "MSH^1^18") from None
            raise
        msg = parse_text(text, codec)
        declared = msg.charset
        if declared and codec_for(declared) is None:
            raise Hl7ParseError(f"unsupported character set in MSH-18: {declared!r}",
                                HL7.TABLE_VALUE_NOT_FOUND, "MSH^1^18", Message([msg.msh],
                                msg.delimiters, codec))
        if declared and codec_for(declared) != codec:
            text, codec = _decode(data, declared)
            msg = parse_text(text, codec)
    except Hl7ParseError as exc:
        if exc.header is None:
            exc.header = parse_header(data)
        raise
    return msg


def parse_header(data: bytes | str) -> Message | None:
    """Best effort: the MSH segment alone (to acknowledge a message that cannot be parsed as a
    whole), or None when even the MSH is unreadable."""
    if isinstance(data, bytes):
        if data.startswith(_UTF8_BOM):
            data = data[len(_UTF8_BOM):]
        end = len(data)
        for t in (b"\r", b"\n"):
            k = data.find(t)
            if 0 <= k < end:
                end = k
        line_bytes = data[:end]
        codec = codec_for(_bootstrap_charset(line_bytes)) or "utf-8"
        try:
            line = line_bytes.decode(codec)
        except UnicodeDecodeError:
            line = line_bytes.decode(codec, "replace")
    else:
        line, codec = _SEGMENT_SPLIT.split(data.lstrip("\ufeff"), 1)[0], "utf-8"
    line = line.lstrip()
    try:
        d = Delimiters.from_msh(line)
        msh = _split_segment(line, d, codec)
    except (ValueError, Hl7ParseError):
        return None
    return Message([msh], d, codec)


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------

def hl7_timestamp(when: dt.datetime | None = None) -> str:
    """A DTM (v2.5 2.A.22) to the second with the UTC offset, e.g. ``20240501083000+0800``."""
    when = when or dt.datetime.now(dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.strftime("%Y%m%d%H%M%S%z")


def new_control_id() -> str:
    """A message control id (MSH-10, at most 20 characters in v2.5)."""
    return uuid.uuid4().hex[:20]


def build_msh(*, sending_application: Any = None, sending_facility: Any = None,
              receiving_application: Any = None, receiving_facility: Any = None,
              message_type: Any, control_id: str | None = None, processing_id: Any = "P",
              version: Any = "2.5", charset: str | None = None,
              timestamp: dt.datetime | None = None) -> Segment:
    """An MSH segment (v2.5 2.15.9); ``message_type`` like ``("ADT", "A01", "ADT_A01")``."""
    return Segment.of("MSH", {
        3: sending_application, 4: sending_facility, 5: receiving_application,
        6: receiving_facility, 7: hl7_timestamp(timestamp), 9: message_type,
        10: control_id or new_control_id(), 11: processing_id, 12: version,
        18: charset or None})


def build_message(segments: Sequence[Segment], *, charset: str | None = None,
                  delimiters: Delimiters = DEFAULT_DELIMITERS) -> Message:
    """A message from segments (the first must be MSH).  ``charset`` (an MSH-18 value) decides
    the encoding; by default MSH-18 of the MSH given, else UTF-8."""
    if not segments or segments[0].name != "MSH":
        raise ValueError("a message starts with MSH")
    label = charset if charset is not None else segments[0].value(18)
    codec = codec_for(label) if label else "utf-8"
    if codec is None:
        raise ValueError(f"unsupported character set: {label!r}")
    return Message(list(segments), delimiters, codec)


@dataclass(frozen=True)
class ErrorDetail:
    """One ERR segment: Table 0357 ``code``, ERL ``location`` (``PID^1^3``), Table 0516
    ``severity`` and the user message ``text``."""

    code: str
    text: str = ""
    location: str = ""
    severity: str = "E"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"ERR-4 severity must be one of {SEVERITIES}")

    @classmethod
    def from_error(cls, err: Hl7Error) -> "ErrorDetail":
        return cls(err.error_code, err.text, err.location, "E")


def _version_tuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def build_err(error: ErrorDetail, version: str = "2.5") -> Segment:
    """The ERR segment (v2.5 2.15.5); for v2.3/2.4 peers ERR-1 (ELD) is filled too."""
    code_text = TABLE_0357.get(error.code, "")
    location = tuple(error.location.split("^")) if error.location else None
    values: dict[int, Any] = {
        2: location,
        3: (error.code, code_text, "HL70357"),
        4: error.severity,
        8: error.text or None,
    }
    v = _version_tuple(version)
    if v and v < (2, 5):
        loc = list(error.location.split("^")[:3]) if error.location else []
        loc += [""] * (3 - len(loc))
        values[1] = (*loc, (error.code, code_text, "HL70357"))
    return Segment.of("ERR", values)


def build_ack(request: Message | None, ack_code: str, errors: Sequence[ErrorDetail] = (), *,
              sending_application: Any = None, sending_facility: Any = None,
              control_id: str | None = None, timestamp: dt.datetime | None = None,
              text: str = "", default_version: str = "2.5") -> Message:
    """The general acknowledgement (v2.5 2.14.1 ACK: MSH, MSA, ERR*) answering ``request`` (or
    only its header, or None when nothing of it is readable).

    MSH-5/6 echo the request's MSH-3/4; MSH-3/4 default to the request's MSH-5/6; MSH-9 is
    ``ACK^<trigger>^ACK``; MSH-11, MSH-12 and MSH-18 echo the request; MSA-2 its MSH-10.
    """
    if ack_code not in ACK_CODES:
        raise ValueError(f"not an acknowledgement code: {ack_code}")
    req_msh = request.msh if request is not None and request.segments else Segment("MSH", [])
    version = req_msh.value(12) or default_version
    charset = req_msh[18].value() if request is not None else ""
    encoding = request.encoding if request is not None else "utf-8"
    if charset and codec_for(charset) is None:
        charset, encoding = "", "utf-8"
    trigger = req_msh.value(9, comp=2)
    msh = Segment.of("MSH", {
        3: sending_application if sending_application is not None else req_msh[5],
        4: sending_facility if sending_facility is not None else req_msh[6],
        5: req_msh[3], 6: req_msh[4],
        7: hl7_timestamp(timestamp),
        9: ("ACK", trigger, "ACK") if trigger else "ACK",
        10: control_id or new_control_id(),
        11: req_msh[11] or "P",
        12: req_msh[12] or default_version,
        18: charset or None,
    })
    msa_text = text or ("; ".join(e.text for e in errors if e.severity == "E" and e.text)[:80])
    segments = [msh, Segment.of("MSA", {1: ack_code, 2: req_msh.value(10), 3: msa_text or None})]
    segments += [build_err(e, version) for e in errors]
    delimiters = request.delimiters if request is not None else DEFAULT_DELIMITERS
    return Message(segments, delimiters, encoding)


def ack_for_error(request: Message | None, error: Hl7Error, **kw: Any) -> Message:
    """The ACK rendering an :class:`~hie.errors.Hl7Error` (its ack code, one ERR)."""
    if isinstance(error, Hl7ParseError) and request is None:
        request = error.header
    return build_ack(request, error.ack_code, [ErrorDetail.from_error(error)], **kw)


def query_response(request: Message, message_type: tuple[str, str, str], ack_code: str,
                   query_status: str, errors: Sequence[ErrorDetail] = (),
                   segments: Sequence[Segment] = (), *, hits: int | None = None,
                   **kw: Any) -> Message:
    """A query response (v2.5 5.3.1, e.g. RSP^K23^RSP_K23): the acknowledgement of ``request``
    (MSA, ERR*) with MSH-9 = ``message_type``, then QAK (QAK-1 the request's query tag, QAK-2
    ``query_status``, QAK-4/5 ``hits``), the request's QPD echoed, and ``segments``."""
    rsp = build_ack(request, ack_code, errors, **kw)
    rsp.segments[0][9] = message_type
    qpd = request.segment("QPD")
    tag = (qpd.value(2) or None) if qpd is not None else None
    count = str(hits) if hits else None
    rsp.segments.append(Segment.of("QAK", {1: tag, 2: query_status, 4: count, 5: count}))
    if qpd is not None:
        rsp.segments.append(qpd)
    rsp.segments.extend(segments)
    return rsp


__all__ = [
    "Delimiters", "DEFAULT_DELIMITERS", "Field", "Repeat", "Segment", "Message", "ErrorDetail",
    "Hl7ParseError", "TABLE_0357", "codec_for", "parse", "parse_text", "parse_header",
    "build_msh", "build_message", "build_ack", "build_err", "ack_for_error", "hl7_timestamp",
    "new_control_id", "query_response",
]

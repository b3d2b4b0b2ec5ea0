"""MTOM/XOP packages: a streaming, sans-IO multipart/related reader and writer (RFC 2046 §5.1,
RFC 2387 multipart/related, RFC 2045 §6 Content-Transfer-Encoding, RFC 2392 cid: URLs, W3C XOP 1.0
§3-§4, W3C SOAP MTOM §3 (HTTP SOAP Transmission Optimization Feature), ITI TF-2x Appendix V.3.6).

Reading.  :class:`MtomParser` is fed the HTTP body chunk by chunk, in any split (a boundary may
straddle two chunks), and never holds more than one bounded window of it:

- the root part (named by the ``start`` parameter, else the first part) is kept in memory, at
  most ``max_root_bytes``;
- every other part is kept in memory while small, and spooled to a temporary file in
  ``spool_dir`` (unbuffered writes, constant memory) once it passes ``spool_threshold`` bytes,
  or when the in-memory parts together pass ``max_memory``;
- part headers: ``Content-ID`` with or without ``<>``, ``Content-Type``,
  ``Content-Transfer-Encoding`` binary / 8bit / 7bit / base64 (decoded as it streams);
- delimiters are ``CRLF--boundary`` (a bare LF is tolerated), transport padding after the
  boundary is skipped, preamble and epilogue are ignored (RFC 2046 §5.1.1; at most 1 MiB each);
- bounds: root part size, part count (``max_parts``), header block size (``max_header_bytes``).

Anything malformed raises :class:`MtomError` (a :class:`hie.errors.HieError`), which the SOAP
transport answers with an ``env:Sender`` fault.  On an error the parser deletes its own spool
files; after a successful :meth:`MtomParser.close` the caller owns them (``cleanup()``).  Their
attachments are marked ``spooled`` (private files nobody writes to again), so the blob store may
hard-link them instead of copying (:meth:`hie.blobs.FileBlobStore.adopt`).

Writing.  :func:`mtom_stream` yields the package for an envelope: the root part as
``application/xop+xml; charset=UTF-8; type="application/soap+xml"``, then each attachment
streamed from its file in 64 KiB chunks.  The handler references attachments from the body with
:func:`xop_include` (``<xop:Include href="cid:..."/>``).  :func:`inline_xop` turns such
references back into inline base64 for peers that cannot take MTOM.
"""
from __future__ import annotations

import base64
import binascii
import os
import tempfile
import uuid
from pathlib import Path
from typing import Iterable, Iterator, Mapping
from urllib.parse import quote, unquote

from lxml import etree

from hie.errors import HieError
from hie.soap import XOP_NS, Attachment
from hie.xmlsafe import to_bytes

CHUNK = 64 * 1024
MAX_PREAMBLE = 1024 * 1024  # bound on the ignored preamble and on the ignored epilogue
_XOP_INCLUDE = "{%s}Include" % XOP_NS


class MtomError(HieError):
    """The multipart/related body is malformed or exceeds a bound."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Header values (RFC 2045 §5.1 Content-Type syntax)
# --------------------------------------------------------------------------------------------

_TSPECIALS = set('()<>@,;:\\"/[]?=')


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``"multipart/related; boundary=x; type=\\"a/b\\""`` -> ``("multipart/related",
    {"boundary": "x", "type": "a/b"})``.  Media type and parameter names are lower-cased;
    values keep their case.  Raises :class:`MtomError` on a malformed value."""
    text = value or ""
    i, n = 0, len(text)
    semi = text.find(";")
    mime = (text if semi < 0 else text[:semi]).strip().lower()
    params: dict[str, str] = {}
    if semi < 0:
        return mime, params
    i = semi + 1
    while i < n:
        while i < n and text[i] in " \t\r\n;":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise MtomError(f"malformed Content-Type parameter in {value!r}")
        name = text[i:eq].strip().lower()
        if not name or any(c in _TSPECIALS or c.isspace() for c in name):
            raise MtomError(f"malformed Content-Type parameter name in {value!r}")
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            out = []
            while True:
                if i >= n:
                    raise MtomError(f"unterminated quoted string in {value!r}")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    out.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    out.append(c)
                    i += 1
            val = "".join(out)
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] != ";":
                raise MtomError(f"junk after quoted parameter in {value!r}")
        else:
            end = text.find(";", i)
            end = n if end < 0 else end
            val = text[i:end].strip()
            i = end
        params[name] = val
    return mime, params


def strip_cid(value: str | None) -> str | None:
    """A Content-ID (or ``start`` parameter) without its angle brackets."""
    if value is None:
        return None
    v = value.strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1].strip()
    return v


def new_content_id() -> str:
    """A fresh globally unique Content-ID (RFC 2392 addr-spec form)."""
    return f"{uuid.uuid4().hex}@hie.node"


def cid_url(content_id: str) -> str:
    """The ``cid:`` URL of a Content-ID (RFC 2392 §2: URL-encoded)."""
    return "cid:" + quote(content_id, safe="@.-_~!$&'()*+,;=:")


def xop_include(content_id: str) -> etree._Element:
    """``<xop:Include href="cid:..."/>`` for the attachment with ``content_id``; append it to the
    (otherwise empty) xs:base64Binary element, e.g. ``xdsb:Document``."""
    inc = etree.Element(_XOP_INCLUDE, nsmap={"xop": XOP_NS})
    inc.set("href", cid_url(content_id))
    return inc


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

_PREAMBLE, _HEADERS, _BODY, _END = range(4)
_NEED_MORE = object()
_NO_MATCH = object()


class _Base64Decoder:
    """Incremental RFC 2045 §6.8 base64 decoding (line breaks and blanks ignored)."""

    def __init__(self) -> None:
        self.rest = b""

    def feed(self, data: bytes) -> bytes:
        s = self.rest + bytes(data).translate(None, b" \t\r\n")
        n = len(s) // 4 * 4
        self.rest = s[n:]
        return self._decode(s[:n])

    def close(self) -> bytes:
        rest, self.rest = self.rest, b""
        if not rest:
            return b""
        if len(rest) == 1:
            raise MtomError("truncated base64 part")
        return self._decode(rest + b"=" * (-len(rest) % 4))

    @staticmethod
    def _decode(s: bytes) -> bytes:
        if not s:
            return b""
        try:
            return binascii.a2b_base64(s, strict_mode=True)
        except (binascii.Error, ValueError):
            raise MtomError("invalid base64 in a MIME part") from None


class _Part:
    def __init__(self, headers: dict[str, str], index: int, is_root: bool):
        self.headers = headers
        self.index = index
        self.is_root = is_root
        self.content_id = strip_cid(headers.get("content-id"))
        self.content_type = headers.get("content-type", "text/plain; charset=us-ascii")
        cte = headers.get("content-transfer-encoding", "binary").strip().lower()
        if cte not in ("binary", "8bit", "7bit", "base64"):
            raise MtomError(f"unsupported Content-Transfer-Encoding: {cte}")
        self.decoder = _Base64Decoder() if cte == "base64" else None
        self.mem = bytearray()
        self.file = None
        self.path: Path | None = None
        self.size = 0


class MtomParser:
    """Streaming multipart/related (MTOM/XOP) reader.  ``feed()`` chunks, then ``close()``."""

    def __init__(self, content_type_header: str, spool_dir: str | os.PathLike,
                 spool_threshold: int = 1024 * 1024, max_root_bytes: int = 64 * 1024 * 1024, *,
                 max_memory: int | None = None, max_parts: int = 10_000,
                 max_header_bytes: int = 16 * 1024):
        mime, params = parse_content_type(content_type_header)
        if mime != "multipart/related":
            raise MtomError(f"not a multipart/related body: {mime or 'no Content-Type'}")
        boundary = params.get("boundary", "")
        if not boundary or len(boundary) > 200 or any(c in boundary for c in "\r\n"):
            raise MtomError("multipart/related without a valid boundary parameter")
        try:
            self._delim = b"--" + boundary.encode("ascii")
        except UnicodeEncodeError:
            raise MtomError("boundary must be ASCII") from None
        self._nl_delim = b"\n" + self._delim
        self.params = params
        self.start = strip_cid(params.get("start")) or None
        self.spool_dir = Path(spool_dir)
        self.spool_threshold = spool_threshold
        self.max_root_bytes = max_root_bytes
        self.max_memory = max_memory if max_memory is not None else max(4 * spool_threshold,
                                                                         16 * 1024 * 1024)
        self.max_parts = max_parts
        self.max_header_bytes = max_header_bytes
        self._buf = bytearray()
        self._state = _PREAMBLE
        self._scan = 0
        self._skipped = 0  # preamble / epilogue bytes discarded
        self._bof = True
        self._part: _Part | None = None
        self._nparts = 0
        self._memory = 0
        self._root: bytes | None = None
        self.root_content_type: str | None = None
        self.attachments: dict[str, Attachment] = {}
        self.spooled: list[Path] = []
        self._failed = False
        self._closed = False

    # -- public -----------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        if self._failed:
            raise MtomError("parser already failed")
        if self._closed:
            raise MtomError("feed() after close()")
        try:
            self._buf += chunk
            self._run()
        except BaseException:
            self.abort()
            raise

    def close(self) -> tuple[bytes, dict[str, Attachment]]:
        if self._failed:
            raise MtomError("parser already failed")
        try:
            if self._state != _END:
                raise MtomError("multipart body ended before its closing boundary")
            if self._root is None:
                which = f"<{self.start}>" if self.start else "first"
                raise MtomError(f"multipart/related has no root part ({which})")
            self._closed = True
            return self._root, self.attachments
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Give up: close and delete every spooled file."""
        self._failed = True
        part = self._part
        if part is not None and part.file is not None:
            try:
                part.file.close()
            except OSError:
                pass
        self.cleanup()

    def cleanup(self) -> None:
        """Delete the spooled attachment files (after the response went out)."""
        for path in self.spooled:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:  # pragma: no cover - best effort
                pass
        self.spooled.clear()

    # -- the state machine --------------------------------------------------------------------
    def _delimiter_tail(self, at: int):
        """Classify what follows a boundary string that ends at ``at``: close delimiter, a
        delimiter line (returns the offset after its line break), not a delimiter, or unknown."""
        buf = self._buf
        if len(buf) - at < 2:
            return _NEED_MORE
        if buf[at:at + 2] == b"--":
            return ("close", at + 2)
        j = at
        while j < len(buf) and buf[j] in (0x20, 0x09):
            j += 1
            if j - at > 256:
                raise MtomError("too much transport padding after a boundary")
        if j >= len(buf):
            return _NEED_MORE
        if buf[j] == 0x0A:
            return ("open", j + 1)
        if buf[j] == 0x0D:
            if j + 1 >= len(buf):
                return _NEED_MORE
            if buf[j + 1] == 0x0A:
                return ("open", j + 2)
        return _NO_MATCH

    def _run(self) -> None:
        buf = self._buf
        while True:
            if self._state == _PREAMBLE:
                if self._bof and buf.startswith(self._delim):
                    pos = 0  # the first delimiter may open the body without a line break
                else:
                    i = buf.find(self._nl_delim, self._scan)
                    if i < 0:
                        keep = len(self._nl_delim)
                        if len(buf) > keep:
                            self._skipped += len(buf) - keep
                            del buf[:len(buf) - keep]
                            self._bof = False
                        if self._skipped > MAX_PREAMBLE:
                            raise MtomError("no multipart boundary found at the start of the body")
                        self._scan = 0
                        return
                    pos = i + 1
                tail = self._delimiter_tail(pos + len(self._delim))
                if tail is _NEED_MORE:
                    if pos > 1:
                        del buf[:pos - 1]
                        self._bof = False
                    self._scan = 0
                    return
                if tail is _NO_MATCH:
                    self._bof = False
                    self._scan = pos
                    continue
                kind, end = tail
                del buf[:end]
                self._scan = 0
                self._skipped = 0
                if kind == "close":
                    raise MtomError("multipart/related body has no parts")
                self._state = _HEADERS
            elif self._state == _HEADERS:
                if buf.startswith(b"\r\n"):
                    block, end = b"", 2
                elif buf.startswith(b"\n"):
                    block, end = b"", 1
                else:
                    # the blank line ends the headers within max_header_bytes: look no further
                    # (the buffer may already hold a megabyte of the part's body)
                    lim = min(len(buf), self.max_header_bytes + 4)
                    a, b = buf.find(b"\r\n\r\n", 0, lim), buf.find(b"\n\n", 0, lim)
                    cands = [(x, ln) for x, ln in ((a, 4), (b, 2)) if x >= 0]
                    if not cands:
                        if len(buf) > self.max_header_bytes:
                            raise MtomError("MIME part headers too large")
                        return
                    x, ln = min(cands)
                    if x > self.max_header_bytes:
                        raise MtomError("MIME part headers too large")
                    block, end = bytes(buf[:x]), x + ln
                del buf[:end]
                self._start_part(_parse_headers(block))
                self._state = _BODY
            elif self._state == _BODY:
                i = buf.find(self._nl_delim, self._scan)
                if i < 0:
                    keep = len(self._nl_delim) + 1  # a possible CR before the LF
                    if len(buf) > keep:
                        self._emit(buf[:len(buf) - keep])
                        del buf[:len(buf) - keep]
                    self._scan = 0
                    return
                tail = self._delimiter_tail(i + len(self._nl_delim))
                if tail is _NEED_MORE:
                    cut = max(i - 1, 0)
                    if cut:
                        self._emit(buf[:cut])
                        del buf[:cut]
                    self._scan = 0
                    return
                if tail is _NO_MATCH:
                    self._scan = i + 1
                    continue
                kind, end = tail
                content_end = i - 1 if i > 0 and buf[i - 1] == 0x0D else i
                self._emit(buf[:content_end])
                del buf[:end]
                self._scan = 0
                self._end_part()
                self._state = _END if kind == "close" else _HEADERS
            else:  # _END: the epilogue is ignored (but bounded)
                self._skipped += len(buf)
                buf.clear()
                if self._skipped > MAX_PREAMBLE:
                    raise MtomError("too much data after the closing boundary")
                return

    # -- parts --------------------------------------------------------------------------------
    def _start_part(self, headers: dict[str, str]) -> None:
        if self._nparts >= self.max_parts:
            raise MtomError(f"more than {self.max_parts} MIME parts")
        index = self._nparts
        self._nparts += 1
        cid = strip_cid(headers.get("content-id"))
        if self.start is not None:
            is_root = cid == self.start and self._root is None
        else:
            is_root = index == 0
        part = _Part(headers, index, is_root)
        if not is_root:
            key = part.content_id or f"part-{index}@hie.node"
            if not part.content_id:
                part.content_id = key
            if key in self.attachments or (self.start is not None and key == self.start):
                raise MtomError(f"duplicate Content-ID <{key}>")
        self._part = part

    def _emit(self, data) -> None:
        if not data:
            return
        part = self._part
        assert part is not None
        if part.decoder is not None:
            data = part.decoder.feed(data)
            if not data:
                return
        self._write(part, data)

    def _write(self, part: _Part, data) -> None:
        n = len(data)
        part.size += n
        if part.is_root:
            if part.size > self.max_root_bytes:
                raise MtomError(f"SOAP envelope (root part) larger than {self.max_root_bytes} bytes")
            part.mem += data
            return
        if part.file is None and (part.size > self.spool_threshold
                                  or self._memory + n > self.max_memory):
            self._spool(part)
        if part.file is not None:
            _write_all(part.file, data)
        else:
            part.mem += data
            self._memory += n

    def _spool(self, part: _Part) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="mtom-", suffix=".part", dir=self.spool_dir)
        part.path = Path(name)
        self.spooled.append(part.path)
        part.file = os.fdopen(fd, "wb", buffering=0)
        if part.mem:
            _write_all(part.file, part.mem)
            self._memory -= len(part.mem)
            part.mem = bytearray()

    def _end_part(self) -> None:
        part = self._part
        assert part is not None
        if part.decoder is not None:
            tail = part.decoder.close()
            if tail:
                self._write(part, tail)
        self._part = None
        if part.is_root:
            self._root = bytes(part.mem)
            self.root_content_type = part.content_type
            return
        if part.file is not None:
            part.file.close()
            att = Attachment(part.content_id, _clean_type(part.content_type), path=part.path,
                             size=part.size, spooled=True)
        else:
            att = Attachment(part.content_id, _clean_type(part.content_type),
                             data=bytes(part.mem))
        self.attachments[part.content_id] = att


def _write_all(fh, data) -> None:
    view = memoryview(data)
    while view:
        written = fh.write(view)
        view = view[written:]


def _clean_type(value: str) -> str:
    return " ".join(value.split()) or "application/octet-stream"


def _parse_headers(block: bytes) -> dict[str, str]:
    """RFC 822 / RFC 2045 part headers (folded lines joined), names lower-cased."""
    text = block.decode("utf-8", "replace").replace("\r\n", "\n")
    headers: dict[str, str] = {}
    last = None
    for line in text.split("\n"):
        if not line:
            continue
        if line[0] in " \t":
            if last is None:
                raise MtomError("MIME header continuation without a header")
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or any(c.isspace() for c in name):
            raise MtomError(f"malformed MIME part header line: {line[:80]!r}")
        headers[name] = value.strip()
        last = name
    return headers


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def _header_value(value: str) -> str:
    return " ".join(str(value).replace("\r", " ").replace("\n", " ").split())


def mtom_stream(envelope_el: etree._Element,
                attachments: "Iterable[Attachment] | Mapping[str, Attachment]",
                boundary: str | None = None, chunk_size: int = CHUNK,
                action: str | None = None) -> tuple[str, Iterator[bytes]]:
    """The MTOM package for ``envelope_el`` and ``attachments``: ``(Content-Type header value,
    iterator of body chunks)``.  The envelope is serialised now; the attachments are read lazily,
    ``chunk_size`` bytes at a time, while the iterator is consumed."""
    atts = list(attachments.values()) if isinstance(attachments, Mapping) else list(attachments)
    boundary = boundary or f"MIMEBoundary_{uuid.uuid4().hex}"
    root_cid = f"root.message.{uuid.uuid4().hex}@hie.node"
    root = to_bytes(envelope_el)
    start_info = "application/soap+xml"
    soap_type = start_info if not action else f'{start_info}; action=\\"{_header_value(action)}\\"'
    content_type = (f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
                    f'start="<{root_cid}>"; start-info="{start_info}"')
    delim = b"--" + boundary.encode("ascii")

    def chunks() -> Iterator[bytes]:
        yield (delim + b"\r\n"
               + f'Content-Type: application/xop+xml; charset=UTF-8; type="{soap_type}"\r\n'
                 "Content-Transfer-Encoding: binary\r\n"
                 f"Content-ID: <{root_cid}>\r\n\r\n".encode("ascii")
               + root)
        for att in atts:
            yield (b"\r\n" + delim + b"\r\n"
                   + (f"Content-Type: {_header_value(att.content_type)}\r\n"
                      "Content-Transfer-Encoding: binary\r\n"
                      f"Content-ID: <{_header_value(att.content_id)}>\r\n\r\n").encode("utf-8"))
            with att.open() as fh:
                while True:
                    block = fh.read(chunk_size)
                    if not block:
                        break
                    yield block
        yield b"\r\n" + delim + b"--\r\n"

    return content_type, chunks()


def inline_xop(root: etree._Element,
               attachments: "Iterable[Attachment] | Mapping[str, Attachment]") -> etree._Element:
    """Replace every ``xop:Include`` under ``root`` that references one of ``attachments`` with
    the attachment's content as inline base64 text (for a plain, non-MTOM message)."""
    atts = list(attachments.values()) if isinstance(attachments, Mapping) else list(attachments)
    by_cid = {a.content_id: a for a in atts}
    for inc in list(root.iter(_XOP_INCLUDE)):
        href = (inc.get("href") or "").strip()
        if not href.lower().startswith("cid:"):
            continue
        att = by_cid.get(unquote(href[4:])) or by_cid.get(href[4:])
        if att is None:
            continue
        parent = inc.getparent()
        if parent is None:
            continue
        parent.remove(inc)
        parent.text = base64.b64encode(att.read()).decode("ascii")
    return root


__all__ = ["MtomError", "MtomParser", "mtom_stream", "inline_xop", "xop_include", "cid_url",
           "new_content_id", "parse_content_type", "strip_cid"]

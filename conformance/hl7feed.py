"""The runner's patient identity feed: HL7 v2.3.1 ADT^A01 over MLLP (ITI TF-2a 3.8 Patient
Identity Feed; MLLP: ITI TF-2x Appendix C.2.1).

The NIST XDS test plans begin with a ``PatientIdentityFeedTransaction`` (tests 15817, 15817b,
15818, and ``NewPatientId`` steps): the toolkit allocates a patient id in the affinity domain
and feeds it to the registry's patient identity source, so that submissions for it pass the
``XDSUnknownPatientId`` check (ITI TF-2b 3.42.4.1.3.2).  The runner does the same with its own
codec — it imports nothing of the node — : :func:`new_patient_id` allocates a CX
``value^^^&oid&ISO`` in ``--patient-domain``, :func:`adt_a01` writes the message (MSH, EVN,
PID with a Chinese name and a GB 11643 resident ID number, PV1), :func:`frame` / :func:`unframe`
are MLLP's block characters, :func:`read_ack` reads MSA-1 and ERR / MSA-3 text, and
:func:`exchange` / :func:`send` are the functions here that do I/O (a message and its answer;
the data suites' HL7 v2 steps use :func:`exchange` too).
"""
from __future__ import annotations

import datetime as dt
import itertools
import random
import socket
import time
from dataclasses import dataclass

START, END = b"\x0b", b"\x1c\x0d"
_serial = itertools.count(1)
# GB 11643-1999 check digit weights and characters
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_FAMILIES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ("伟", "芳", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
          "涛", "明", "超", "秀兰", "霞", "平")


class FeedError(RuntimeError):
    """The feed could not be sent, or its ACK is not AA/CA."""


@dataclass(frozen=True)
class Ack:
    code: str          # MSA-1: AA, AE, AR (original mode) or CA, CE, CR
    text: str          # MSA-3 / ERR, for the report
    message: str       # the whole ACK, for the report

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")


def new_patient_id(domain: str, prefix: str = "NIST") -> str:
    """A patient id not used before in ``domain`` (an OID): ``PREFIX<ms><serial>^^^&domain&ISO``."""
    return f"{prefix}{int(time.time() * 1000)}{next(_serial):03d}^^^&{domain}&ISO"


def resident_id(birth: dt.date, sex: str, rng: random.Random) -> str:
    """A GB 11643 citizen identity number (Beijing Dongcheng, 110101) for ``birth`` and ``sex``
    (the order code is odd for a man, even for a woman)."""
    body = f"110101{birth:%Y%m%d}{rng.randrange(500) * 2 + (sex == 'M'):03d}"
    return body + _CHECK[sum(int(c) * w for c, w in zip(body, _WEIGHTS)) % 11]


def _escape(text: str) -> str:
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
            .replace("&", "\\T\\").replace("~", "\\R\\"))


def adt_a01(patient_id: str, *, sending: str = "HIE_CONFORMANCE", receiving: str = "",
            now: dt.datetime | None = None, rng: random.Random | None = None) -> str:
    """ADT^A01 (v2.3.1, ITI TF-2a 3.8.4.1.2) registering ``patient_id`` (a CX); the person is
    generated: a Chinese name, sex, birth date, a Beijing address and a resident ID number in
    PID-19 (where Chinese sites carry it; not in PID-3, which would link it as a second
    identifier)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    rng = rng or random.Random(patient_id)
    stamp = now.strftime("%Y%m%d%H%M%S")
    control = f"C{int(now.timestamp() * 1000)}{next(_serial)}"
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 60))
    sex = rng.choice("MF")
    family, given = rng.choice(_FAMILIES), rng.choice(_GIVEN)
    value, _, authority = patient_id.partition("^^^")
    segments = [
        f"MSH|^~\\&|{sending}|NIST|{receiving}||{stamp}||ADT^A01|{control}|P|2.3.1|||||CHN|UNICODE UTF-8",
        f"EVN|A01|{stamp}",
        f"PID|||{_escape(value)}^^^{authority}||{family}^{given}||{birth:%Y%m%d}|{sex}|||"
        f"东城区东华门大街{rng.randrange(1, 99)}号^^北京市^^100010^CHN||||||||"
        f"{resident_id(birth, sex, rng)}",
        "PV1||O",
    ]
    return "\r".join(segments) + "\r"


def frame(message: str) -> bytes:
    return START + message.encode("utf-8") + END


def unframe(data: bytes) -> str:
    """The message inside one MLLP block; raises :class:`FeedError` if ``data`` is not one."""
    start = data.find(START)
    end = data.find(END, start + 1)
    if start < 0 or end < 0:
        raise FeedError("the reply is not an MLLP block")
    return data[start + 1:end].decode("utf-8", errors="replace")


def read_ack(message: str) -> Ack:
    """MSA-1 and the error text of an HL7 v2 ACK."""
    segments = {}
    for seg in message.replace("\n", "\r").split("\r"):
        if seg[:3] and seg[:3] not in segments:
            segments[seg[:3]] = seg.split("|")
    msa = segments.get("MSA")
    if msa is None or len(msa) < 2:
        raise FeedError(f"the reply has no MSA segment: {message!r}")
    text = " ".join(x for x in (msa[3] if len(msa) > 3 else "",
                                "|".join(segments.get("ERR", [])[1:])) if x)
    return Ack(msa[1], text, message)


def exchange(host: str, port: int, message: str, timeout: float = 30.0) -> str:
    """Send ``message`` over MLLP and return the message that answers it."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(frame(message))
            data = b""
            while END not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise FeedError(f"MLLP {host}:{port}: {exc}") from None
    return unframe(data)


def send(host: str, port: int, message: str, timeout: float = 30.0) -> Ack:
    """Send ``message`` over MLLP and read its ACK."""
    return read_ack(exchange(host, port, message, timeout))


__all__ = ["FeedError", "Ack", "new_patient_id", "resident_id", "adt_a01", "frame", "unframe",
           "read_ack", "exchange", "send"]

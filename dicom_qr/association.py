"""What the DICOM services learn of the association a request came on — the requester's AE title
and address, for the audit record (DICOM PS3.15 A.5.3: the active participants) — and the
presentation contexts the node proposes when it sends stored instances (PS3.8 9.3.2.2), on its
own associations (:mod:`dicom_qr.ul`) or pynetdicom's (:class:`NodeAE`)."""
from __future__ import annotations

from typing import Any, Iterable

from pynetdicom import AE, build_context

from dicom_qr.part10 import EXPLICIT_LE, IMPLICIT_LE
from dicom_qr.ul import no_delay
from hie.context import Context
from hie.transactions import Transaction


def context(node: Any, assoc: Any, transaction: Transaction) -> Context:
    """The node's transaction context of a DICOM request (principal: the calling AE title)."""
    return Context(node, transaction, remote_addr=assoc.address,
                   principal=assoc.calling or None)


UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE)


def sending_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(SOP Class, transfer syntaxes) of the presentation contexts to send instances of (SOP
    Class, transfer syntax) ``pairs``: one context per pair with that syntax alone — an
    acceptor picks one syntax per context, so a syntax proposed beside others may lose to them
    — and one per SOP class with the two uncompressed syntaxes, to fall back on (the sender
    then encodes the decoded data set)."""
    out, classes = [], {}
    for sop_class, syntax in dict.fromkeys(pairs):
        out.append((sop_class, [syntax]))
        classes.setdefault(sop_class, set()).add(syntax)
    for sop_class, syntaxes in classes.items():
        if not set(UNCOMPRESSED) <= syntaxes:
            out.append((sop_class, list(UNCOMPRESSED)))
    return out


def sending_contexts(pairs: Iterable[tuple[str, str]]) -> list:
    """:func:`sending_pairs` as pynetdicom's presentation contexts."""
    return [build_context(sop_class, syntaxes) for sop_class, syntaxes in sending_pairs(pairs)]


def context_count(pairs: Iterable[tuple[str, str]]) -> int:
    return len(sending_pairs(pairs))


class NodeAE(AE):
    """pynetdicom's AE (the node as an SCU: forwarding, import, back-fill, commitment reports)
    with TCP_NODELAY on the associations it opens: a DIMSE message is a command PDU and then a
    data set PDU, and with Nagle's algorithm the second waits for the peer's delayed ACK."""

    def associate(self, *args, **kwargs):
        assoc = super().associate(*args, **kwargs)
        if assoc.is_established:
            no_delay(getattr(getattr(assoc.dul, "socket", None), "socket", None))
        return assoc


__all__ = ["context", "UNCOMPRESSED", "sending_pairs", "sending_contexts", "context_count",
           "NodeAE"]

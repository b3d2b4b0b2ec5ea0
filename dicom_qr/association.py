"""What the DICOM handlers learn of the association a request came on: the requester's AE title
and address, for the audit record (DICOM PS3.15 A.5.3: the active participants); and the
presentation contexts the node proposes when it sends stored instances (PS3.8 9.3.2.2)."""
from __future__ import annotations

from typing import Any, Iterable

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context

from hie.context import Context
from hie.transactions import Transaction


def requestor(event) -> str:
    """The calling AE title of ``event``'s association ("" when unknown)."""
    try:
        return str(event.assoc.requestor.ae_title).strip()
    except AttributeError:
        return ""


def context(node: Any, event, transaction: Transaction) -> Context:
    """The node's transaction context of a DICOM request (principal: the calling AE title)."""
    try:
        address = str(event.assoc.requestor.address)
    except AttributeError:
        address = ""
    return Context(node, transaction, remote_addr=address, principal=requestor(event) or None)


UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def sending_contexts(pairs: Iterable[tuple[str, str]]) -> list:
    """Presentation contexts to send instances of (SOP Class, transfer syntax) ``pairs``: one
    context per pair with that syntax alone — an acceptor picks one syntax per context, so a
    syntax proposed beside others may lose to them — and one per SOP class with the two
    uncompressed syntaxes, to fall back on (the sender then encodes the decoded data set)."""
    out, classes = [], {}
    for sop_class, syntax in dict.fromkeys(pairs):
        out.append(build_context(sop_class, [syntax]))
        classes.setdefault(sop_class, set()).add(syntax)
    for sop_class, syntaxes in classes.items():
        if not set(UNCOMPRESSED) <= syntaxes:
            out.append(build_context(sop_class, list(UNCOMPRESSED)))
    return out


def context_count(pairs: Iterable[tuple[str, str]]) -> int:
    return len(sending_contexts(pairs))


__all__ = ["requestor", "context", "UNCOMPRESSED", "sending_contexts", "context_count"]

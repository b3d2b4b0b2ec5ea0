"""What the DICOM handlers learn of the association a request came on: the requester's AE title
and address, for the audit record (DICOM PS3.15 A.5.3: the active participants)."""
from __future__ import annotations

from typing import Any

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


__all__ = ["requestor", "context"]

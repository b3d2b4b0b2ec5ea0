"""Forwarding registrations to an upstream registry (``HIE_FORWARD_REGISTRY_URL``): a hospital's
node, or a district platform, keeps its own registry and passes every accepted Register Document
Set-b (ITI TF-2b 3.42) on to the regional platform's registry.

The forwarded ``lcm:SubmitObjectsRequest`` carries the entryUUIDs this registry assigned, so both
registries name the objects alike.  It is written to the durable outbox inside the registration's
own unit of work — it exists exactly when the registration does — and delivered by the outbox
worker with retry and back-off (DESIGN.md principle 5).  Delivery outcomes:

- the upstream accepts (Success or PartialSuccess): delivered;
- the upstream already has the submission (XDSDuplicateUniqueIdInRegistry only): delivered —
  forwarding is idempotent when a delivery is retried after a lost response;
- the upstream cannot be reached or answers a failure: retried (the patient feed may not have
  reached it yet), and parked as ``dead`` after the outbox's last attempt, for an operator.
"""
from __future__ import annotations

from sqlalchemy.engine import Connection

from hie.errors import XDS, RegistryErrors
from hie.outbox import DeliveryError, Message
from hie.xmlsafe import parse_xml, to_bytes

KIND = "xds.forward-register"


def enqueue(ctx, conn: Connection, submit_objects) -> bool:
    """Queue ``submit_objects`` (a :class:`xds_registry.messages.SubmitObjects` with final ids)
    for the upstream registry, if one is configured."""
    url = ctx.settings.forward_registry_url
    outbox = getattr(ctx.node, "outbox", None)
    if not url or outbox is None:
        return False
    outbox.enqueue(conn, KIND, url, to_bytes(submit_objects.to_ebrim()),
                   {"transaction": "ITI-42", "message_id": ctx.message_id or ""})
    return True


def deliver(msg: Message) -> None:
    from xds_registry.client import register
    try:
        response = register(msg.destination, parse_xml(msg.payload))
    except RegistryErrors as exc:
        raise DeliveryError(str(exc)) from None
    if response.ok:
        return
    errors = [e for e in response.errors if e.is_error]
    if errors and all(e.error_code == XDS.DuplicateUniqueIdInRegistry for e in errors):
        return
    raise DeliveryError("upstream registry refused the submission: " + "; ".join(
        f"{e.error_code}: {e.code_context}" for e in errors)[:1500])


def install(outbox) -> None:
    outbox.register(KIND, deliver)

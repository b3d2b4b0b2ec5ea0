"""Association negotiation of the node's listener (DICOM PS3.8 7.1, 9.3.2 - 9.3.4; PS3.7 Annex D),
sans-IO: an A-ASSOCIATE-RQ in, the A-ASSOCIATE-AC or -RJ to answer with out.

- The DICOM Application Context Name is required (else rejected permanently by the service
  user, reason 2), and protocol version 1 (else by the ACSE, reason 2).  Any called AE title
  is taken — the node answers to every title a PACS was configured with.
- Each presentation context: accepted with the first of the node's transfer syntaxes, in the
  node's order of preference, that the requester proposes (uncompressed little endian first:
  a sender that proposes its file's own syntax in a context of its own, as DCMTK's storescu
  does beside the others, gets it accepted there and sends the file unchanged); "abstract
  syntax not supported" (3) for a SOP class the node does not serve, "transfer syntaxes not
  supported" (4) when it takes none of them.
- SCP/SCU Role Selection (D.3.3.4): for a SOP class the node serves in both roles (the
  storage classes, so a C-GET can send back on the requester's association) the proposed
  roles are accepted and answered; for others the item is left unanswered (default roles).
- An association beyond the node's limit is rejected transiently (presentation, reason 2
  "local limit exceeded").
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dicom_qr import pdu
from dicom_qr.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION


@dataclass(frozen=True)
class Offer:
    """What the node serves: abstract syntax → transfer syntaxes it takes (in its order of
    preference), the SOP classes it takes in both roles, and its Maximum Length (0: no
    limit)."""
    syntaxes: dict[str, tuple[str, ...]]
    both_roles: frozenset[str]
    max_length: int


@dataclass(frozen=True)
class Context:
    """An accepted presentation context."""
    id: int
    abstract_syntax: str
    transfer_syntax: str


@dataclass
class Agreement:
    """What an accepted association agreed: contexts by id, the SOP classes for which the
    requester took the SCP role (it accepts C-STORE sub-operations), the peer's Maximum Length."""
    calling: str
    called: str
    contexts: dict[int, Context] = field(default_factory=dict)
    requester_scp: set[str] = field(default_factory=set)
    peer_max_length: int = 0


def negotiate(rq: pdu.AssociateRQ, offer: Offer, *, busy: bool = False
              ) -> tuple[pdu.AssociateAC | pdu.AssociateRJ, Agreement | None]:
    """The answer to ``rq`` and, when it accepts, what was agreed."""
    if not rq.version & 1:
        return pdu.AssociateRJ(pdu.REJECTED_PERMANENT, pdu.RJ_ACSE,
                               pdu.PROTOCOL_VERSION_NOT_SUPPORTED), None
    if rq.application_context != pdu.APPLICATION_CONTEXT:
        return pdu.AssociateRJ(pdu.REJECTED_PERMANENT, pdu.RJ_USER,
                               pdu.CONTEXT_NOT_SUPPORTED), None
    if busy:
        return pdu.AssociateRJ(pdu.REJECTED_TRANSIENT, pdu.RJ_PRESENTATION,
                               pdu.LOCAL_LIMIT_EXCEEDED), None
    agreed = Agreement(rq.calling, rq.called, peer_max_length=rq.user.max_length)
    answers = []
    for cx in rq.contexts:
        taken = offer.syntaxes.get(cx.abstract_syntax)
        if taken is None:
            answers.append(pdu.AcceptedContext(cx.id, pdu.ABSTRACT_SYNTAX_NOT_SUPPORTED,
                                               cx.transfer_syntaxes[0]
                                               if cx.transfer_syntaxes else ""))
            continue
        syntax = next((ts for ts in taken if ts in cx.transfer_syntaxes), None)
        if syntax is None:
            answers.append(pdu.AcceptedContext(cx.id, pdu.TRANSFER_SYNTAXES_NOT_SUPPORTED,
                                               cx.transfer_syntaxes[0]
                                               if cx.transfer_syntaxes else ""))
            continue
        answers.append(pdu.AcceptedContext(cx.id, pdu.ACCEPTANCE, syntax))
        agreed.contexts[cx.id] = Context(cx.id, cx.abstract_syntax, syntax)
    roles = []
    served = {c.abstract_syntax for c in agreed.contexts.values()}
    for role in rq.user.roles:
        if role.sop_class in offer.both_roles and role.sop_class in served:
            roles.append(pdu.Role(role.sop_class, role.scu, role.scp))
            if role.scp:
                agreed.requester_scp.add(role.sop_class)
    user = pdu.UserInformation(max_length=offer.max_length,
                               implementation_class=IMPLEMENTATION_CLASS_UID,
                               implementation_version=IMPLEMENTATION_VERSION, roles=roles)
    return pdu.AssociateAC(rq.called, rq.calling, rq.application_context, answers, user), agreed


__all__ = ["Offer", "Context", "Agreement", "negotiate"]

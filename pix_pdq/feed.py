"""Applying one patient identity feed to the index, whatever carried it: ITI-8 (HL7 v2 ADT,
ITI TF-2a 3.8), ITI-44 (HL7 v3 PRPA_IN201301/201302/201304UV02 and the national
PRPA_IN201311/201314UV02, ITI TF-2b 3.44) and ITI-104 (FHIR Patient create / update).

A transport decodes its message into a :class:`Feed` (identifiers, demographics in the index's
dictionary form — see :func:`pix_pdq.iti8.demographics_from_pid` for the keys — and, for a merge,
the prior identifiers), then calls :func:`apply_feed` inside its unit of work and renders the
:class:`FeedResult` (or :class:`UnknownDomains`) in its own protocol.  :func:`run` retries the
unit of work when a concurrent feed wins a unique key (ITI TF-2a 3.8.4.1.3: the expected actions
are the same whichever transaction delivered the identity).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from hie.context import Context
from hie.db import needs_transaction
from pix_pdq import linking, notify
from pix_pdq.estimation import load_model
from pix_pdq.index import Identifier, merge_identifiers, record_identity, register_domains
from pix_pdq.tables import feed_log

log = logging.getLogger("pix_pdq.feed")

ATTEMPTS = 3  # units of work retried when a concurrent feed wins a unique key
T = TypeVar("T")


@dataclass(frozen=True)
class Feed:
    """What an identity feed says about the patient."""

    event: str                             # e.g. "A01", "A08", "A40", "PRPA_IN201301UV02"
    identifiers: tuple[Identifier, ...]
    demographics: dict[str, Any]
    prior: tuple[Identifier, ...] = ()     # a merge: the identifiers merged away

    @property
    def is_merge(self) -> bool:
        return bool(self.prior)


@dataclass(frozen=True)
class FeedResult:
    person_id: int
    created: bool
    conflicts: tuple[Identifier, ...] = ()      # recorded for another person: left there
    unknown_prior: tuple[Identifier, ...] = ()  # merge: prior identifiers the index does not know


class UnknownDomains(Exception):
    """Rolls the unit of work back: the feed names assigning authorities the index does not
    know and ``HIE_PIX_AUTO_DOMAINS`` is off."""

    def __init__(self, identifiers: Sequence[Identifier]):
        super().__init__("unknown assigning authorities: "
                         + ", ".join(i.domain for i in identifiers))
        self.identifiers = tuple(identifiers)


LogRow = Callable[[Sequence[Identifier], Sequence[Identifier]], dict[str, Any]]


def apply_feed(ctx: Context, conn: Connection, feed: Feed, source: str,
               log: LogRow | None = None) -> FeedResult:
    """Record ``feed`` in the caller's unit of work; raises :class:`UnknownDomains`,
    :class:`pix_pdq.index.InvalidIdentity`, or IntegrityError (a concurrent writer: retry).

    ``log(conflicts, unknown_prior)``: the feed's ``pix_feed_log`` row (without ``person_id``),
    written with the person — in the same statement when the feed is not a merge, so that a
    unit of work run with ``one_statement`` (:meth:`hie.db.Database.begin`) applies an ordinary
    feed in one statement.  A merge, a feed to notify consumers of, a feed naming a new domain
    or one received while the index is young raise :class:`hie.db.NeedsTransaction` there,
    before anything is written."""
    if _several_writes(ctx, feed):
        needs_transaction(conn)
    affinity = ctx.settings.affinity_domain
    source = source[:256]
    unknown = register_domains(conn, feed.identifiers, auto=ctx.settings.pix_auto_domains,
                               affinity_domain=affinity, source=source, now=ctx.now())
    if unknown:
        raise UnknownDomains(unknown)
    rows = None
    if log is not None and not feed.prior:
        def log_rows(conflicts):
            return [(feed_log, log([ident for ident, _owner in conflicts], ()))]
        rows = log_rows
    result = record_identity(conn, feed.identifiers, feed.demographics,
                             affinity_domain=affinity, now=ctx.now(), source=source,
                             register=False, model=load_model(ctx.settings.data_dir), rows=rows)
    unknown_prior: Sequence[Identifier] = ()
    if feed.prior:
        unknown_prior = merge_identifiers(conn, result.person_id, feed.prior, ctx.now(),
                                          f"{source} merge"[:256])
        if log is not None:
            conn.execute(feed_log.insert(), dict(
                log([ident for ident, _owner in result.conflicts], unknown_prior),
                person_id=result.person_id))
    if result.created or result.added or len(unknown_prior) < len(feed.prior):
        notify.changed(ctx.node, conn, [result.person_id])  # ITI-10 / ITI-46, via the outbox
    return FeedResult(result.person_id, result.created,
                      tuple(ident for ident, _owner in result.conflicts), tuple(unknown_prior))


def _several_writes(ctx: Context, feed: Feed) -> bool:
    """A merge, or a feed whose consumers are to be notified: more than one statement writes."""
    return bool(feed.prior or notify.consumers(ctx.settings))


def one_statement_first(ctx: Context, feed: Feed) -> bool:
    """Whether a unit of work applying ``feed`` should try the one-statement way first (see
    :func:`apply_feed`): not when it writes more than once, nor while the index is known to be
    young — those would raise :class:`hie.db.NeedsTransaction` anyway."""
    return not (_several_writes(ctx, feed) or linking.known_young(str(ctx.db.engine.url)))


def run(ctx: Context, unit: Callable[[], T], what: str = "") -> T:
    """Call ``unit`` (which opens and commits its own unit of work) until it does not lose a
    unique-key race to a concurrent feed, at most :data:`ATTEMPTS` times."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return unit()
        except IntegrityError:
            if attempt == ATTEMPTS:
                raise
            log.info("%s %s: concurrent update, retrying (%d)", ctx.transaction.id, what,
                     attempt)
    raise AssertionError("unreachable")


def note_applied(ctx: Context, feed: Feed, result: FeedResult, warnings: Sequence[str]) -> None:
    """What the audit event of an applied feed says: the person, whether it was created, the
    patient, and the warnings given to the sender."""
    ctx.extra["person_id"] = result.person_id
    ctx.extra["created"] = result.created
    note_patient(ctx, feed.identifiers)
    if warnings:
        ctx.detail = "; ".join(warnings)[:4000]


def note_patient(ctx: Context, identifiers: Sequence[Identifier]) -> None:
    """The audit event's patient: the affinity-domain identifier(s), else the first one."""
    affinity = ctx.settings.affinity_domain
    usable = [i for i in identifiers if i.value and i.domain]
    in_domain = [i for i in usable if affinity and i.oid == affinity]
    for ident in in_domain or usable[:1]:
        ctx.note(ident.cx)


__all__ = ["Feed", "FeedResult", "UnknownDomains", "apply_feed", "one_statement_first", "run",
           "note_applied", "note_patient"]

"""The node: the services every transaction shares, assembled once from :class:`Settings`.

``Node`` owns the database, the blob store, the durable outbox, the audit trail and the metrics.
Actor packages receive it through :class:`hie.context.Context`; only the composition root
(``hie.app``, ``hie.cli``) builds it.
"""
from __future__ import annotations

import logging

from hie.audit import Audit
from hie.blobs import FileBlobStore
from hie.db import Database, all_tables_imported
from hie.metrics import Metrics
from hie.outbox import Outbox
from hie.settings import Settings

log = logging.getLogger("hie.node")


class Node:
    def __init__(self, settings: Settings, create_schema: bool = True):
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.database)
        if create_schema:
            from hie.migrations import upgrade
            upgrade(self.db)
        all_tables_imported()
        self.blobs = FileBlobStore(settings.data_dir / "documents")
        self.outbox = Outbox(self.db, max_attempts=settings.outbox_max_attempts)
        self.audit = Audit(self.db)
        self.metrics = Metrics()
        self.metrics.gauge("hie_outbox_pending", "Outbox messages waiting for delivery.",
                           self.outbox.depth)
        # name -> (host, port) of every listener, filled in by the server once bound
        self.listeners: dict[str, tuple[str, int]] = {}

    def start(self) -> None:
        """Start the background workers (outbox delivery, batched audit writer)."""
        self.outbox.start()
        self.audit.start()

    def close(self) -> None:
        self.outbox.stop()
        self.audit.stop()
        self.db.dispose()

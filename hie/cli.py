"""``hie``: the node's command line (CONTRACT.md "Commands").

    hie serve                  run every listener in one process
    hie db upgrade|current     apply / show the schema migrations
    hie config                 print the effective settings
    hie outbox status|retry    inspect the durable outbox, re-queue dead messages
    hie mpi estimate [--relink]
    hie mpi reindex              file every person again under the current blocking keys
                               estimate the patient index's matching model from its feeds
    hie dicom sync --from AE@host:port [--patient|--study|--since]
                               back-fill from a PACS: C-MOVE what the index lacks
"""
from __future__ import annotations

import argparse
import json
import sys

from hie import logs
from hie.settings import load_settings


def _settings(args):
    return load_settings(getattr(args, "config", None))


def cmd_serve(args) -> int:
    from hie.server import run
    settings = _settings(args)
    logs.setup(settings.log_level)
    return run(settings)


def cmd_db(args) -> int:
    from hie import migrations
    from hie.db import Database
    settings = _settings(args)
    logs.setup(settings.log_level)
    db = Database(settings.database)
    try:
        if args.action == "upgrade":
            migrations.upgrade(db)
            print(f"database at {migrations.current(db)}")
        elif args.action == "current":
            print(migrations.current(db) or "(empty)")
        elif args.action == "revision":
            migrations.revision(db, args.message or "schema change")
    finally:
        db.dispose()
    return 0


def cmd_config(args) -> int:
    settings = _settings(args)
    out = {k: (str(v) if not isinstance(v, (int, bool, str)) else v)
           for k, v in vars(settings).items()}
    out["database"] = settings.database
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def cmd_outbox(args) -> int:
    import sqlalchemy as sa
    from hie.node import Node
    from hie.tables import outbox
    node = Node(_settings(args))
    try:
        if args.action == "retry":
            print(f"re-queued {node.outbox.retry_dead()} message(s)")
        else:
            with node.db.read() as conn:
                rows = conn.execute(sa.select(outbox.c.status, sa.func.count())
                                    .group_by(outbox.c.status)).all()
            for status, n in rows:
                print(f"{status}\t{n}")
    finally:
        node.close()
    return 0


def cmd_mpi(args) -> int:
    import datetime as dt

    from hie.node import Node
    from pix_pdq import estimation
    settings = _settings(args)
    node = Node(settings)
    if args.action == "reindex":
        from pix_pdq import linking
        try:
            print(f"filed {linking.reindex(node.db)} person(s) under the current blocking keys")
        finally:
            node.close()
        return 0
    try:
        with node.db.begin() as conn:
            model, n = estimation.estimate_model(conn, estimation.load_model(settings.data_dir))
            if not n:
                print(f"fewer than {estimation.MIN_VECTORS} comparison vectors logged: feed "
                      "more identities first; the model is unchanged")
                return 1
            path = estimation.save_model(settings.data_dir, model)
            print(f"estimated from {n} comparison vector(s): prior {model.prior:.4f}, "
                  f"link >= {model.upper:.2f}, review >= {model.lower:.2f}; saved to {path}")
            if args.relink:
                survivors: list[int] = []
                merged = estimation.relink(conn, model, dt.datetime.now(dt.timezone.utc),
                                           survivors)
                from pix_pdq import notify
                notify.changed(node, conn, survivors)
                print(f"relinked {merged} person(s)")
    finally:
        node.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hie", description="HIE node: health information exchange "
                                "server (XDS.b registry and repository, PIX/PDQ, ...)")
    p.add_argument("--config", help="TOML settings file (also HIE_CONFIG); the environment wins")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the node: HTTP (SOAP, health, metrics) and MLLP")
    s.set_defaults(func=cmd_serve)
    d = sub.add_parser("db", help="database schema migrations")
    d.add_argument("action", choices=["upgrade", "current", "revision"])
    d.add_argument("-m", "--message", help="message of a new revision")
    d.set_defaults(func=cmd_db)
    c = sub.add_parser("config", help="print the effective settings")
    c.set_defaults(func=cmd_config)
    o = sub.add_parser("outbox", help="durable outbox: status, retry dead messages")
    o.add_argument("action", choices=["status", "retry"])
    o.set_defaults(func=cmd_outbox)
    m = sub.add_parser("mpi", help="patient index: estimate the matching model from the feeds; "
                       "reindex: file every person again under the current blocking keys")
    m.add_argument("action", choices=["estimate", "reindex"])
    m.add_argument("--relink", action="store_true",
                   help="then weigh persons left alone again and merge those that now match")
    m.set_defaults(func=cmd_mpi)
    from conformance.cli import add_parser as add_conformance
    add_conformance(sub)
    from dicom_qr.cli import add_parser as add_dicom
    add_dicom(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``hie dicom``: the imaging node's commands for operators.

    hie dicom sync --from AE@host:port [--patient ID | --study UID | --since DATE] [--dest AE]
        compare a source PACS with the index and C-MOVE what is missing (dicom_qr.sync)
    hie dicom import PATH... [--patient-id ID --patient-name NAME --issuer I
                              --study-description TEXT] [--node AE@host:port]
        DICOM files, folders and DICOMDIRs; JPG/BMP/PNG and PDF converted (dicom_qr.importer)

Exit status: 0 everything held / imported, 1 some instances could not be moved, imported or
converted, 2 the source or the node cannot be reached or the arguments are wrong.  Progress goes to stderr, the summary to stdout.
"""
from __future__ import annotations

import sys

from hie.settings import Peer


def _bar(n: int, total: int, width: int = 30) -> str:
    filled = round(width * n / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {n:>4}/{total:<4}"


def cmd_sync(args) -> int:
    from dicom_qr import sync
    from hie import logs
    from hie.node import Node
    from hie.settings import load_settings

    try:
        peer = Peer.parse(args.source)
    except ValueError as exc:
        print(f"hie dicom sync: {exc}", file=sys.stderr)
        return 2
    settings = load_settings(getattr(args, "config", None))
    logs.setup("WARNING")
    node = Node(settings, create_schema=False)   # the running node's database, as it is

    def progress(n: int, total: int, study: sync.Study) -> None:
        state = (f"moved {study.moved}/{study.missing}" if study.missing or study.failed
                 else "up to date")
        print(f"\r{_bar(n, total)} {study.uid[-24:]} {state}".ljust(100), end="",
              file=sys.stderr, flush=True)

    try:
        summary = sync.run(node, peer, patient=args.patient, study=args.study, since=args.since,
                           dest=args.dest, progress=progress if sys.stderr.isatty() or
                           args.progress else None)
    except sync.SyncError as exc:
        print(f"hie dicom sync: {exc}", file=sys.stderr)
        return 2
    finally:
        node.close()
    if summary.studies and (sys.stderr.isatty() or args.progress):
        print(file=sys.stderr)
    for line in summary.lines():
        print(line)
    return 1 if summary.failed else 0


def _own_node(settings) -> Peer:
    host = settings.mllp_bind
    return Peer(settings.dicom_ae_title, "127.0.0.1" if host in ("", "0.0.0.0", "::") else host,
                settings.dicom_port)


def cmd_import(args) -> int:
    from dicom_qr import convert, importer
    from hie import logs
    from hie.settings import load_settings

    settings = load_settings(getattr(args, "config", None), persist_ids=False)
    logs.setup("WARNING")
    try:
        peer = Peer.parse(args.node) if args.node else _own_node(settings)
    except ValueError as exc:
        print(f"hie dicom import: {exc}", file=sys.stderr)
        return 2
    target = None
    if args.patient_id:
        target = convert.Target(args.patient_id, args.patient_name or "", args.issuer or "",
                                study_description=args.study_description or "")
    elif args.patient_name or args.issuer or args.study_description:
        print("hie dicom import: --patient-name, --issuer and --study-description need "
              "--patient-id", file=sys.stderr)
        return 2
    show = sys.stderr.isatty() or args.progress

    def progress(n: int, total: int, item) -> None:
        print(f"\r{_bar(n, total)} {item.path.name[-40:]}".ljust(100), end="", file=sys.stderr,
              flush=True)

    try:
        summary = importer.run(args.paths, peer, settings.dicom_ae_title, target,
                               progress if show else None)
    except importer.ImportFailure as exc:
        print(f"\nhie dicom import: {exc}", file=sys.stderr)
        return 2
    if show and summary.sent:
        print(file=sys.stderr)
    for line in summary.lines():
        print(line)
    return 1 if summary.rejected or summary.failed else 0


def add_parser(sub) -> None:
    d = sub.add_parser("dicom", help="imaging: back-fill from a PACS, import outside images")
    dsub = d.add_subparsers(dest="dicom_command", required=True)
    s = dsub.add_parser("sync", help="compare a source PACS with the index and C-MOVE what is "
                        "missing to this node (hie serve must be running)")
    s.add_argument("--from", dest="source", required=True, metavar="AE@host:port")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--patient", metavar="ID", help="one patient's studies (PatientID)")
    which.add_argument("--study", metavar="UID", help="one study (StudyInstanceUID)")
    which.add_argument("--since", metavar="DATE",
                       help="studies from DATE on (YYYYMMDD or YYYY-MM-DD)")
    s.add_argument("--dest", metavar="AE", help="Move Destination (default: HIE_DICOM_AE_TITLE)")
    s.add_argument("--progress", action="store_true", help="progress bar even when not a tty")
    s.set_defaults(func=cmd_sync)
    i = dsub.add_parser("import", help="send DICOM files, folders and DICOMDIRs to the node; "
                        "JPG/BMP/PNG → Secondary Capture, PDF → Encapsulated PDF")
    i.add_argument("paths", nargs="+", metavar="PATH")
    i.add_argument("--patient-id", help="the patient of converted files; DICOM files are "
                   "reconciled to it (their own id kept in OtherPatientIDsSequence)")
    i.add_argument("--patient-name", help="e.g. 张^三")
    i.add_argument("--issuer", help="IssuerOfPatientID of --patient-id")
    i.add_argument("--study-description", help="of the study of converted files")
    i.add_argument("--node", metavar="AE@host:port",
                   help="where to send (default: this node's own DICOM listener)")
    i.add_argument("--progress", action="store_true", help="progress bar even when not a tty")
    i.set_defaults(func=cmd_import)


__all__ = ["add_parser", "cmd_sync", "cmd_import"]

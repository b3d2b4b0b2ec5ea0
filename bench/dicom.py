"""Imaging benchmark: the node's DICOM listener side by side with Orthanc from Debian (package
``orthanc``, its default SQLite index, started here on loopback) on the same generated data.
Prints JSON lines (one per measurement, with the machine's core count):

- ``cstore``: instances/s and MB/s sending ``--instances`` with DCMTK's storescu over 1
  association, and over ``--clients`` parallel associations (another set of instances);
- ``cfind``: C-FIND STUDY latency (p50 / p99 ms, one association) by PatientID and by a
  PatientName wildcard, once ``--index`` instances are indexed — with a lean client on the
  node's own Upper Layer codecs (``client: ul``, the servers' cost) and with pynetdicom's SCU
  (``client: pynetdicom``, which adds ~2 ms of its own to every query);
- ``cmove``: instances/s moving a study of ``--move-instances`` to a DCMTK storescp;
- ``cstore`` of ``ul-floor``: the same C-STOREs to the node's own listener transport with a
  C-STORE service that stores nothing — the ceiling of the node's C-STORE.

Targets (issue 5): C-STORE ≥ 1.5 × Orthanc's throughput, C-FIND ≤ 0.5 × its latency.
Every client and server runs without Nagle's algorithm (TCP_NODELAY; DCMTK and Orthanc
read it from the environment), so no figure is a delayed ACK.
``--db postgresql`` runs the node on a throwaway durable PostgreSQL; the default is the
embedded SQLite.  Nothing here is asserted; the figures are read by people.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import NodeProcess, emit   # noqa: E402 - bench/ is run as a script

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DCMTK = Path("/usr/bin")
CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"      # Study Root Query/Retrieve Information Model - FIND
# every DCMTK program here (storescu, movescu, the storescp destination) and Orthanc (built on
# DCMTK) without Nagle's algorithm, as the node's listener and this script's own SCU: the same
# transport for both servers, so the figures are theirs and not delayed ACKs'
NODELAY = dict(os.environ, TCP_NODELAY="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_orthanc() -> str:
    found = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(found).exists():
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "orthanc"], check=True,
                       stdout=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        subprocess.run(sudo + ["service", "orthanc", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return found if Path(found).exists() else "/usr/sbin/Orthanc"


def generate(folder: Path, instances: int, per_study: int, pixels: int, tag: str,
             parts: int = 1) -> list[Path]:
    """CT instances (``pixels`` × ``pixels``, 16 bit) in studies of ``per_study``, Chinese
    names in UTF-8, patients P<tag><n>; written round-robin into ``parts`` folders
    ``folder/0``, ``folder/1`` …, one per association that will send them.  The folders."""
    for i in range(parts):
        (folder / str(i)).mkdir(parents=True, exist_ok=True)
    data = bytes(range(256)) * (pixels * pixels * 2 // 256 + 1)
    data = data[:pixels * pixels * 2]
    families = "王李张刘陈杨黄赵吴周"
    study = series = ""
    for n in range(instances):
        if n % per_study == 0:
            study, series = generate_uid(), generate_uid()
        k = n // per_study
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID, ds.SOPInstanceUID = CT, meta.MediaStorageSOPInstanceUID
        ds.PatientID = f"P{tag}{k:06d}"
        ds.PatientName = f"{families[k % 10]}^患者{k}"
        ds.PatientBirthDate, ds.PatientSex = f"19{50 + k % 50:02d}0101", "MF"[k % 2]
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyDate, ds.StudyTime = f"2026{1 + k % 12:02d}01", "080000"
        ds.AccessionNumber, ds.Modality = f"A{tag}{k}", "CT"
        ds.SeriesNumber, ds.InstanceNumber = 1, n % per_study + 1
        ds.Rows = ds.Columns = pixels
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = data
        ds.save_as(folder / str(n % parts) / f"{n:07d}.dcm", enforce_file_format=True)
    return [folder / str(i) for i in range(parts)]


class Orthanc:
    def __init__(self, folder: Path, dest: tuple[str, str, int]):
        self.port, self.http = free_port(), free_port()
        config = {"Name": "bench", "StorageDirectory": str(folder / "storage"),
                  "IndexDirectory": str(folder / "index"), "DicomAet": "ORTHANC",
                  "DicomPort": self.port, "HttpPort": self.http, "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": False, "DicomCheckCalledAet": False,
                  "StorageCompression": False, "Plugins": [], "ConcurrentJobs": 2,
                  # any calling AE may query and retrieve, as the node lets it
                  "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True,
                  "DicomAlwaysAllowMove": True,
                  "DicomModalities": {dest[0]: [dest[0], dest[1], dest[2]]}}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "w")
        self.proc = subprocess.Popen([ensure_orthanc(), str(folder / "orthanc.json")],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=NODELAY)
        self.ae, self.host = "ORTHANC", "127.0.0.1"
        wait_echo(self.ae, self.host, self.port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def wait_echo(ae: str, host: str, port: int, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while subprocess.run([str(DCMTK / "echoscu"), "-aec", ae, host, str(port)],
                         capture_output=True).returncode != 0:
        if time.time() > deadline:
            raise RuntimeError(f"{ae} at {host}:{port} does not answer C-ECHO")
        time.sleep(0.2)


def storescu(ae: str, host: str, port: int, folder: Path) -> subprocess.Popen:
    """DCMTK's storescu sending every file of ``folder`` over one association."""
    return subprocess.Popen([str(DCMTK / "storescu"), "-aec", ae, "+sd", host, str(port),
                             str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=NODELAY)


def store_rate(name: str, ae: str, host: str, port: int, folders: list[Path]) -> None:
    files = [p for f in folders for p in f.glob("*.dcm")]
    size = sum(p.stat().st_size for p in files)
    start = time.perf_counter()
    procs = [storescu(ae, host, port, f) for f in folders]
    errors = [p.wait() for p in procs]
    seconds = time.perf_counter() - start
    emit(measure="cstore", server=name, associations=len(folders), instances=len(files),
         seconds=round(seconds, 2), instances_per_s=round(len(files) / seconds, 1),
         mb_per_s=round(size / seconds / 1e6, 1), failed_processes=sum(e != 0 for e in errors))


def _query(kind: str, i: int, patients: list[str]) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.SpecificCharacterSet = "ISO_IR 192"
    q.StudyInstanceUID = q.StudyDate = q.NumberOfStudyRelatedInstances = ""
    if kind == "PatientID":
        q.PatientID = patients[(i * 7919) % len(patients)]
        q.PatientName = ""
    else:
        q.PatientName = f"王^患者{(i * 7919) % len(patients)}*"
        q.PatientID = ""
    return q


def _emit_find(name: str, client: str, kind: str, times: list[float], found: int) -> None:
    times.sort()
    emit(measure="cfind", server=name, client=client, key=kind, queries=len(times),
         answers=found, p50_ms=round(statistics.median(times), 2),
         p99_ms=round(times[max(0, int(len(times) * 0.99) - 1)], 2))


def find_latency(name: str, ae: str, host: str, port: int, patients: list[str],
                 queries: int) -> None:
    """C-FIND STUDY round trips on one association, by two clients: a lean one on the node's
    own Upper Layer codecs (``client: ul`` — what the servers cost), and pynetdicom's SCU
    (``client: pynetdicom``), whose reactor adds its own ~2 ms to every query of either
    server."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dicom_qr import dimse, part10, ul
    assoc = ul.request_association(host, port, "BENCH", ae,
                                   [(FIND, [part10.EXPLICIT_LE, part10.IMPLICIT_LE])])
    cx = next(iter(assoc.agreed.contexts.values()))
    try:
        for kind in ("PatientID", "PatientName"):
            times, found = [], 0
            for i in range(queries):
                data = part10.write(_query(kind, i, patients), cx.transfer_syntax)
                t = time.perf_counter()
                for answer in assoc.exchange(dimse.Message(cx.id, {
                        "AffectedSOPClassUID": FIND, "CommandField": dimse.C_FIND_RQ,
                        "Priority": 0}, data)):
                    found += answer.data is not None
                times.append((time.perf_counter() - t) * 1000)
            _emit_find(name, "ul", kind, times, found)
    finally:
        assoc.release()

    from pynetdicom import AE
    scu = AE(ae_title="BENCH")
    scu.add_requested_context(FIND)
    assoc = scu.associate(host, port, ae_title=ae)
    if not assoc.is_established:
        raise RuntimeError(f"no association with {name}")
    # the client sends each request as two PDUs: without TCP_NODELAY the second waits for the
    # server's delayed ACK and every query measures ~40 ms of the client, whatever the server
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for kind in ("PatientID", "PatientName"):
            times, found = [], 0
            for i in range(queries):
                q = _query(kind, i, patients)
                t = time.perf_counter()
                for status, ident in assoc.send_c_find(q, FIND):
                    found += ident is not None
                times.append((time.perf_counter() - t) * 1000)
            _emit_find(name, "pynetdicom", kind, times, found)
    finally:
        assoc.release()


def move_rate(name: str, ae: str, host: str, port: int, study: str, count: int,
              received: Path) -> None:
    before = len(list(received.rglob("*")))
    start = time.perf_counter()
    done = subprocess.run([str(DCMTK / "movescu"), "-S", "-aec", ae, "-aem", "DEST",
                           "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                           host, str(port)], capture_output=True, env=NODELAY)
    seconds = time.perf_counter() - start
    got = len(list(received.rglob("*"))) - before
    emit(measure="cmove", server=name, instances=count, received=got, seconds=round(seconds, 2),
         instances_per_s=round(got / seconds, 1), exit=done.returncode)


class TransportFloor:
    """The node's transport ceiling: its own DICOM Upper Layer (:mod:`dicom_qr.ul`, the listener
    the node runs, every storage SOP class) with a C-STORE service that answers Success at once,
    storing nothing.  What the node's C-STORE can approach."""

    def __init__(self):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from dicom_qr import dimse, scp, ul

        def success(assoc, message):
            assoc.send(dimse.Message(message.context_id,
                                     dimse.response(message, dimse.C_STORE_RSP, 0)))
        self.server = ul.Listener(scp.offer(), {dimse.C_STORE_RQ: success})
        self.ae, self.host = "FLOOR", "127.0.0.1"
        self.port = self.server.start(self.host, 0)[1]

    def stop(self) -> None:
        self.server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=2000, help="C-STORE set size (each)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--index", type=int, default=100_000, help="instances indexed for C-FIND")
    ap.add_argument("--per-study", type=int, default=50)
    ap.add_argument("--pixels", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--move-instances", type=int, default=500)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--only", choices=("hie", "orthanc"), help="one server only")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the transport floor (the node's listener storing nothing)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="hie-bench-dicom-"))
    print(f"# data in {work}", file=sys.stderr)
    one = generate(work / "one", args.instances, args.per_study, args.pixels, "A")
    many = generate(work / "many", args.instances, args.per_study, args.pixels, "B",
                    args.clients)
    rest = max(0, args.index - 2 * args.instances - args.move_instances)
    filler = generate(work / "fill", rest, args.per_study, 16, "C", args.clients) if rest else []
    move = generate(work / "move", args.move_instances, args.move_instances, args.pixels, "M")
    move_study = pydicom.dcmread(next(move[0].glob("*.dcm"))).StudyInstanceUID
    patients = sorted({f"PA{k:06d}" for k in range(max(1, args.instances // args.per_study))})
    dest_port = free_port()
    received = work / "received"
    received.mkdir()
    dest = subprocess.Popen([str(DCMTK / "storescp"), "-aet", "DEST", "-od", str(received),
                             "+uf", str(dest_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=NODELAY)
    wait_echo("DEST", "127.0.0.1", dest_port)
    servers: list = []
    try:
        if args.only in (None, "hie"):
            env = {"HIE_DICOM_PEERS": f"DEST@127.0.0.1:{dest_port}"}
            db_url = ""
            pg = None
            if args.db == "postgresql":
                from tests.pg import TempPostgres
                pg = TempPostgres("fsync=on", "synchronous_commit=on").start()
                db_url = pg.url()
            node = NodeProcess(work / "hie-data", db_url, **env)
            servers.append(("hie", "HIE", *node.listeners["dicom"], node, pg))
        if args.only in (None, "orthanc"):
            orth = Orthanc(work / "orthanc", ("DEST", "127.0.0.1", dest_port))
            servers.append(("orthanc", orth.ae, orth.host, orth.port, orth, None))
        if not args.no_floor:
            floor = TransportFloor()
            try:
                store_rate("ul-floor", floor.ae, floor.host, floor.port, one)
                store_rate("ul-floor", floor.ae, floor.host, floor.port, many)
            finally:
                floor.stop()
        for name, ae, host, port, proc, pg in servers:
            store_rate(name, ae, host, port, one)
            store_rate(name, ae, host, port, many)
            if filler:
                store_rate(name + "-fill", ae, host, port, filler)
            store_rate(name + "-move-set", ae, host, port, move)
            emit(measure="indexed", server=name, instances=max(args.index, 2 * args.instances
                                                               + args.move_instances))
            find_latency(name, ae, host, port, patients, args.queries)
            move_rate(name, ae, host, port, move_study, args.move_instances, received)
    finally:                 # every server stopped, whatever failed
        for *_, proc, pg in servers:
            proc.stop()
            if pg is not None:
                pg.stop()
        dest.terminate()
        dest.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

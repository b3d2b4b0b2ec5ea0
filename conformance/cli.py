"""``hie conformance ...``: the conformance runner's commands (CONTRACT.md: interoperability
testers).  ``list`` shows the suites, the test kit's collections they run and their tests
(id, title, sections), and what of a test plan the runner cannot read yet.  ``run`` runs a
suite against any endpoints over the wire (:mod:`conformance.engine`) and reports
(:mod:`conformance.report`); its exit status is 0 when every test passed, 1 when one failed,
2 when the run could not start.
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from conformance import deviations, engine, messaging, report, suite as data_suite
from conformance.testkit import OPTIONS, SUITES, TestKit, TestKitError
from conformance.testplan import TestPlanError


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("conformance", help="conformance suites: the NIST XDS test plans "
                       "(registry, repository) run against any endpoint")
    actions = c.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="suites, actor collections and tests (id, title, "
                            "sections)")
    ls.add_argument("--actor", choices=sorted(SUITES) + data_suite.names(),
                    help="only this suite")
    ls.add_argument("--testkit", help="the NIST XDS Toolkit test kit (default: "
                    "../shared/standards/nist-xds-toolkit, or HIE_CONFORMANCE_TESTKIT)")
    ls.set_defaults(func=cmd_list)

    run = actions.add_parser("run", help="run a suite against an endpoint and report")
    run.add_argument("--actor", choices=sorted(SUITES) + data_suite.names(), required=True,
                     help="reg: Document Registry (+ Metadata Update, Remove Metadata); "
                     "rep: Document Repository; rg: XCA Responding Gateway; pix: PIX Manager; "
                     "pdq: PDQ Supplier")
    run.add_argument("--target", required=True, help="the endpoint under test, e.g. "
                     "http://host:8080/xds/registry (reg) or .../xds/repository (rep); for "
                     "pix / pdq the HTTP base (http://host:8080), their endpoints ${target}/pix, "
                     "/pdq, /fhir unless --endpoint says otherwise")
    run.add_argument("--listen", default="", help="host:port where the runner receives what "
                     "the target sends (pix: ITI-10 notifications; configure the target so)")
    run.add_argument("--listen-http", default="", help="host:port where the runner receives "
                     "SOAP messages the target sends (pix: ITI-46 notifications)")
    run.add_argument("--endpoint", action="append", default=[], metavar="NAME=URL",
                     help="where a data suite's endpoint is (e.g. v3=http://host/pix)")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                     help="a value of a data suite instead of the generated one")
    run.add_argument("--registry-url", default="", help="the registry the rep suite queries")
    run.add_argument("--repository-url", default="", help="the repository (ITI-41/43) of a "
                     "reg run, if its tests need one; the Cross Gateway Retrieve endpoint of an "
                     "rg run")
    run.add_argument("--mllp", default="", help="host:port of the patient identity feed "
                     "(ITI-8) the tests' patients are fed to")
    run.add_argument("--patient-domain", default="", help="assigning authority OID of the "
                     "affinity domain (the patient ids the run feeds)")
    run.add_argument("--repository-uid", default="", help="repositoryUniqueId of the "
                     "repository ($repuid$ of the plans)")
    run.add_argument("--tests", default="", help="only these tests, e.g. 11897,11990")
    run.add_argument("--report", default="", help="write junit.xml and report.html here")
    run.add_argument("--testkit", help="the NIST XDS Toolkit test kit")
    run.add_argument("--deviations", help="the deviations table (default "
                     "conformance/DEVIATIONS.md)")
    run.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    run.set_defaults(func=cmd_run)


def list_data_suite(name: str, out: TextIO) -> None:
    s = data_suite.load(name)
    print(f"suite {name}: {s.title} ({len(s.tests)} tests; {s.reference})", file=out)
    for t in s.tests:
        print(f"    {t.id:<28} {t.title}", file=out)
        print(f"    {'':<28} {t.tf}; steps: {' '.join(st.id for st in t.steps)}", file=out)


def cmd_list(args, out: TextIO = sys.stdout) -> int:
    if args.actor and args.actor not in SUITES:
        list_data_suite(args.actor, out)
        return 0
    try:
        kit = TestKit(args.testkit)
    except TestKitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = 0
    if not args.actor:
        for name in data_suite.names():
            list_data_suite(name, out)
    for actor in ([args.actor] if args.actor else sorted(SUITES)):
        print(f"suite {actor}", file=out)
        for name, tests in kit.suite(actor).items():
            title = kit.actor_collection_title(name) or OPTIONS.get(name, "")
            print(f"  collection {name}: {title} ({len(tests)} tests)", file=out)
            for t in tests:
                print(f"    {t.id:<28} {t.title}", file=out)
                print(f"    {'':<28} sections: {' '.join(t.sections)}", file=out)
                problems = list(t.problems)
                for s in t.sections:
                    try:
                        problems += [f"{s}: cannot read {u}" for u in t.plan(s).unknown]
                    except (TestKitError, TestPlanError) as exc:
                        problems.append(str(exc))
                for p in dict.fromkeys(problems):
                    print(f"    {'':<28} ! {p}", file=out)
                bad += bool(problems)
    if bad:
        print(f"{bad} test(s) with problems (marked !)", file=out)
    return 0


def _host_port(text: str, option: str = "--mllp") -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{option} {text!r} is not host:port")
    return host, int(port)


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise ValueError(f"{option} {item!r} is not NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def finish(result: engine.RunResult, args, out: TextIO) -> int:
    """The summary, the reports asked for, and the exit status of a run."""
    report.summary(result, out)
    if args.report:
        junit, page = report.write(result, args.report)
        print(f"reports: {junit} {page}", file=out)
    return 0 if result.passed else 1


def cmd_run_suite(args, out: TextIO) -> int:
    """A data suite (conformance/suites/<actor>.yaml)."""
    try:
        suite = data_suite.load(args.actor)
        mllp, listen = _host_port(args.mllp), _host_port(args.listen, "--listen")
        listen_http = _host_port(args.listen_http, "--listen-http")
        endpoints = dict(suite.endpoints)
        endpoints.update(_pairs(args.endpoint, "--endpoint"))
        values = data_suite.Values(suite, args.target, _pairs(args.set, "--set"))
    except (data_suite.SuiteError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    listener = http_listener = None
    try:
        if listen is not None:
            listener = messaging.Listener(*listen)
        if listen_http is not None:
            http_listener = messaging.HttpListener(*listen_http)
    except OSError as exc:
        print(f"error: cannot listen: {exc}", file=sys.stderr)
        if listener is not None:
            listener.close()
        return 2
    ctx = messaging.Context(suite, values, endpoints, mllp, listener, args.timeout,
                            http_listener=http_listener)
    runner = messaging.SuiteRunner(ctx, lambda r, n, total: print(
        report.progress_line(r, n, total), file=out, flush=True))
    only = [t.strip() for t in args.tests.split(",") if t.strip()] or None
    try:
        result = runner.run(only)
    except data_suite.SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        runner.close()
        for x in (listener, http_listener):
            if x is not None:
                x.close()
    return finish(result, args, out)


def cmd_run(args, out: TextIO = sys.stdout) -> int:
    if args.actor not in SUITES:
        return cmd_run_suite(args, out)
    try:
        kit = TestKit(args.testkit)
        mllp = _host_port(args.mllp)
    except (TestKitError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.actor == "rep":
        endpoints = engine.Endpoints(registry=args.registry_url, repository=args.target)
    else:   # reg; rg: the gateway's query endpoint, its retrieve one as --repository-url
        endpoints = engine.Endpoints(registry=args.target, repository=args.repository_url)
    endpoints.mllp = mllp
    endpoints.patient_domain = args.patient_domain
    endpoints.repository_uid = args.repository_uid
    if args.actor in engine.FEEDING_SUITES and (mllp is None or not args.patient_domain):
        print("error: the suites feed their patients first: give --mllp host:port and "
              "--patient-domain OID", file=sys.stderr)
        return 2
    wire = engine.HttpWire(args.timeout)
    runner = engine.Runner(kit, endpoints, wire, deviations.load(args.deviations),
                           lambda r, n, total: print(report.progress_line(r, n, total),
                                                     file=out, flush=True))
    only = [t.strip() for t in args.tests.split(",") if t.strip()] or None
    try:
        result = runner.run(args.actor, only)
    except TestKitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        wire.close()
    return finish(result, args, out)


__all__ = ["add_parser", "cmd_list", "cmd_run"]

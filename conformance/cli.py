"""``hie conformance ...``: the conformance runner's commands (CONTRACT.md: interoperability
testers).  ``list`` shows the suites, the test kit's collections they run and their tests
(id, title, sections), and what of a test plan the runner cannot read yet.
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from conformance.testkit import OPTIONS, SUITES, TestKit, TestKitError
from conformance.testplan import TestPlanError


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("conformance", help="conformance suites: the NIST XDS test plans "
                       "(registry, repository) run against any endpoint")
    actions = c.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="suites, actor collections and tests (id, title, "
                            "sections)")
    ls.add_argument("--actor", choices=sorted(SUITES), help="only this suite")
    ls.add_argument("--testkit", help="the NIST XDS Toolkit test kit (default: "
                    "../shared/standards/nist-xds-toolkit, or HIE_CONFORMANCE_TESTKIT)")
    ls.set_defaults(func=cmd_list)


def cmd_list(args, out: TextIO = sys.stdout) -> int:
    try:
        kit = TestKit(args.testkit)
    except TestKitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = 0
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


__all__ = ["add_parser", "cmd_list"]

"""`opsmerge-sandbox drift FILE`: what recorded traffic shows that the spec does not say.

Imported whenever the command's parser is built: only the standard library at the top.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drift = sub.add_parser(
        "drift",
        help="report where recorded traffic and the spec disagree",
        description="Read a HAR recording (or a journal listing from GET /_sandbox/requests) "
        "and list, per operation used, the paths, parameters, statuses, headers, fields and "
        "enum values the spec does not document. Exit status 1 when there are any.",
    )
    drift.add_argument("file", help="a HAR file, or the JSON of GET /_sandbox/requests")
    drift.add_argument("--spec", default=None, help="the OpenAPI document (default: bundled)")
    drift.add_argument(
        "--against",
        default=None,
        metavar="NEWSPEC",
        help="also list the changes in NEWSPEC that break the operations the traffic used",
    )
    drift.add_argument(
        "--report", default=None, metavar="PATH", help="write PATH.json and PATH.html"
    )
    drift.add_argument("--junitxml", default=None, metavar="PATH", help="write a JUnit XML file")


def drift_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from opsmerge_contracts.drift import DriftInputError, analyse, load_traffic
    from opsmerge_contracts.spec_diff import compare
    from opsmerge_sandbox.spec import load_spec

    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        spec = load_spec(Path(args.spec)) if args.spec else load_spec()
        newer = load_spec(Path(args.against)) if args.against else None
        traffic = load_traffic(Path(args.file))
    except (DriftInputError, OSError, ValueError) as exc:
        sys.stderr.write(f"opsmerge-sandbox drift: {exc}\n")
        return 2
    report = analyse(traffic, spec, str(args.file))
    if newer is not None:
        report.against = str(args.against)
        report.changes = compare(spec, newer, report.operations, report.statuses)
    console.print(report.render(width=console.width or 120), highlight=False, end="")
    if args.report:
        for path in report.write(Path(args.report)):
            console.print(f"drift report: {path}", highlight=False)
    if args.junitxml:
        console.print(f"drift junit: {report.write_junit(Path(args.junitxml))}", highlight=False)
    return 1 if report.failed else 0

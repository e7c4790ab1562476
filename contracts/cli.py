"""`opsmerge-sandbox contracts`: the built-in suite through pytest, and no test files of the user's.

Keys travel to pytest through the environment, never on its command line, so they cannot show
up in a usage message or a process listing of the inner run. Anything after the options goes to
pytest as is (`-k pagination`, `-x`, `--junitxml=out.xml`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

# not imported from contracts.plugin: pytest must import the plugin itself to rewrite its asserts
SUITE_DIR = Path(__file__).parent  # suite_test.py and suites/*.contract.yaml


def pytest_args(args: argparse.Namespace) -> list[str]:
    """The pytest command line for the parsed `contracts` subcommand."""
    argv = [str(SUITE_DIR), "-p", "no:cacheprovider", "--opsmerge-target", args.target]
    if args.profile:
        argv += ["--opsmerge-profile", args.profile]
    if args.budget is not None:
        argv += ["--opsmerge-budget", str(args.budget)]
    if args.report:
        argv += ["--opsmerge-report", str(args.report)]
    extra: Sequence[str] = args.pytest_args or []
    if extra and extra[0] == "--":
        extra = extra[1:]
    return [*argv, *extra]


def contracts_command(args: argparse.Namespace) -> int:
    import pytest

    saved = {name: os.environ.get(name) for name in ("OPSMERGE_API_KEY", "OPSMERGE_LIMITED_KEY")}
    try:
        if args.key:
            os.environ["OPSMERGE_API_KEY"] = args.key
        if args.limited_key:
            os.environ["OPSMERGE_LIMITED_KEY"] = args.limited_key
        if args.target != "sandbox" and not args.key:
            print("opsmerge-sandbox contracts: a URL target needs --key (or OPSMERGE_API_KEY)")
            return 2
        return int(pytest.main(pytest_args(args)))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

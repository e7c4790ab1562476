"""`opsmerge-sandbox contracts`: the built-in suite through pytest, and no test files of the user's.

Keys and the admin token travel to pytest through the environment, never on its command line,
so they cannot show up in a usage message or a process listing of the inner run. Anything after
the options goes to pytest as is (`-k pagination`, `-x`, `--junitxml=out.xml`).

This module is imported whenever the command's parser is built, so it imports only the standard
library at the top.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from opsmerge_contracts import exit_codes

# not imported from contracts.plugin: pytest must import the plugin itself to rewrite its asserts
SUITE_DIR = Path(__file__).parent  # suite_test.py and suites/*.contract.yaml
# set for the pytest the command runs: the target was checked with this many requests, so the
# plugin neither checks it again nor lets the budget forget them
CHECKED_ENV = "OPSMERGE_TARGET_CHECKED_WITH"
SECRET_ENV = {
    "key": "OPSMERGE_API_KEY",
    "limited_key": "OPSMERGE_LIMITED_KEY",
    "admin_token": "OPSMERGE_SANDBOX_ADMIN_TOKEN",
    "keys_for": "OPSMERGE_KEYS_FOR",
}

EPILOG = (
    "environment:\n"
    "  OPSMERGE_API_KEY              the key (--key)\n"
    "  OPSMERGE_LIMITED_KEY          the narrow key (--limited-key)\n"
    "  OPSMERGE_SANDBOX_ADMIN_TOKEN  a served sandbox's admin token (--admin-token)\n"
    "  OPSMERGE_KEYS_FOR             keys per role, 'admin=KEY;readonly=KEY' (--key-for)\n"
    "  OPSMERGE_KEYS_FILE            a file of ROLE=KEY lines or a JSON object (--keys-file)\n"
    "\n"
    "Keys per role prove the role checks: each key's roles and effective scopes come from\n"
    "/auth/me, and every operation must answer 403 FORBIDDEN where the role lacks its scope,\n"
    "403 SCOPE_DENIED where only the key's scopes exclude it, and succeed otherwise. The\n"
    "production profile sends no writes: the report lists what it could not prove.\n"
    "\n"
    "With a served sandbox's admin token the run needs no key: it mints its own, works in a\n"
    "workspace of its own (contracts-<random>) and resets it at the end, and never moves the\n"
    "sandbox clock; the default profile is then sandbox.\n"
    "\n"
    "exit codes:\n"
    + "".join(f"  {code:<3} {meaning}\n" for code, meaning in exit_codes.EXIT_CODES)
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number above 0")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `contracts` subcommand, added to the `opsmerge-sandbox` parser."""
    contracts = sub.add_parser(
        "contracts",
        help="run the contract suite against a target",
        description="Run the built-in contract suite against the sandbox or a base URL.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    contracts.add_argument("--target", default="sandbox", help="'sandbox' or a base URL")
    contracts.add_argument(
        "--key",
        default=os.environ.get(SECRET_ENV["key"]),
        help="an om_ key for the target (env OPSMERGE_API_KEY; the sandbox's own keys by default)",
    )
    contracts.add_argument(
        "--limited-key",
        default=os.environ.get(SECRET_ENV["limited_key"]),
        help="a key with narrow scopes, to prove SCOPE_DENIED (env OPSMERGE_LIMITED_KEY)",
    )
    contracts.add_argument(
        "--admin-token",
        default=os.environ.get(SECRET_ENV["admin_token"]),
        metavar="TOKEN",
        help="the admin token of a sandbox served at --target (env OPSMERGE_SANDBOX_ADMIN_TOKEN;"
        " prefer the environment): the run gets its own keys and workspace and takes seconds",
    )
    contracts.add_argument(
        "--key-for",
        action="append",
        default=None,
        metavar="ROLE=KEY",
        help="a key held by a user of ROLE, for the role matrix; repeatable (env "
        "OPSMERGE_KEYS_FOR='a=KEY;b=KEY'; prefer the environment or --keys-file)",
    )
    contracts.add_argument(
        "--keys-file",
        default=os.environ.get("OPSMERGE_KEYS_FILE"),
        metavar="PATH",
        help="ROLE=KEY lines, or a JSON object of ROLE: KEY, for the role matrix "
        "(env OPSMERGE_KEYS_FILE)",
    )
    contracts.add_argument(
        "--profile",
        default=None,
        choices=["sandbox", "staging", "production"],
        help="what may be sent: production sends only GET and HEAD (default: sandbox for the "
        "sandbox or a URL with --admin-token, else production)",
    )
    contracts.add_argument(
        "--budget",
        type=_positive_int,
        default=None,
        help="at most this many requests to the target (default: the profile's budget)",
    )
    contracts.add_argument(
        "--report", default=None, help="write JSON and HTML reports to this path"
    )
    contracts.add_argument(
        "--replay",
        action="append",
        default=None,
        metavar="FILE",
        help="replay a HAR recording as a contract instead of the built-in suite (repeatable)",
    )
    contracts.add_argument(
        "pytest_args", nargs=argparse.REMAINDER, help="passed on to pytest (e.g. -k, -x)"
    )


def pytest_args(args: argparse.Namespace, workspace: str | None = None) -> list[str]:
    """The pytest command line for the parsed `contracts` subcommand."""
    replay = [str(Path(f).resolve()) for f in getattr(args, "replay", None) or ()]
    collected = replay or [str(SUITE_DIR)]
    argv = [*collected, "-p", "no:cacheprovider", "--opsmerge-target", args.target]
    if replay:
        argv += ["--opsmerge-suite", "no"]
    if workspace:
        argv += ["--opsmerge-workspace", workspace]
    if args.profile:
        argv += ["--opsmerge-profile", args.profile]
    if args.budget is not None:
        argv += ["--opsmerge-budget", str(args.budget)]
    if args.report:
        argv += ["--opsmerge-report", str(args.report)]
    if getattr(args, "keys_file", None):
        argv += ["--opsmerge-keys-file", str(args.keys_file)]
    extra: Sequence[str] = args.pytest_args or []
    if extra and extra[0] == "--":
        extra = extra[1:]
    return [*argv, *extra]


def _fail(line: str, code: int) -> int:
    print(f"opsmerge-sandbox contracts: {line}", file=sys.stderr)
    return code


def contracts_command(args: argparse.Namespace) -> int:
    admin_token = getattr(args, "admin_token", None)
    if args.target != "sandbox" and not args.target.startswith(("http://", "https://")):
        return _fail(
            f"--target must be 'sandbox' or an http(s) URL, got {args.target!r}", exit_codes.USAGE
        )
    if args.target != "sandbox" and not args.key and not admin_token:
        return _fail(
            "a URL target needs --key (or OPSMERGE_API_KEY), or a served sandbox's "
            "--admin-token (or OPSMERGE_SANDBOX_ADMIN_TOKEN)",
            exit_codes.USAGE,
        )
    for recording in getattr(args, "replay", None) or ():
        from opsmerge_sandbox.har import HarError, read_har

        try:
            read_har(Path(recording))
        except HarError as exc:
            return _fail(str(exc), exit_codes.USAGE)
    try:
        keys_for, role_keys = _keys_for(args)
    except ValueError as exc:  # KeyEntryError: names the entry, never the key
        return _fail(str(exc), exit_codes.USAGE)
    secrets = {
        "key": args.key,
        "limited_key": args.limited_key,
        "admin_token": admin_token,
        "keys_for": keys_for,
    }
    saved = {name: os.environ.get(name) for name in (*SECRET_ENV.values(), CHECKED_ENV)}
    try:
        for field, env in SECRET_ENV.items():
            if secrets[field]:
                os.environ[env] = str(secrets[field])
        workspace = None
        if args.target != "sandbox":
            from opsmerge_contracts.preflight import TargetProblem
            from opsmerge_contracts.target import new_workspace

            workspace = new_workspace() if admin_token else None
            try:
                sent = _preflight(args.target, args.key, admin_token, workspace, role_keys)
            except TargetProblem as problem:
                return _fail(problem.line, problem.code)
            os.environ[CHECKED_ENV] = str(sent)
        try:
            return _run_pytest(pytest_args(args, workspace))
        finally:
            if workspace and admin_token:  # the run resets it; this covers a run that never ran
                _reset_workspace(args.target, admin_token, workspace)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _keys_for(args: argparse.Namespace) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The role matrix's keys, checked here so a mistake is one usage line: the ROLE=KEY
    entries (the command line's, else the environment's) as pytest gets them in the
    environment, and every entry, the keys file's too, for the check of the target."""
    from opsmerge_contracts.rolekeys import load_file, merge, parse_entries

    given = getattr(args, "key_for", None)
    text = "\n".join(given) if given else os.environ.get(SECRET_ENV["keys_for"], "")
    entries = parse_entries(text, "--key-for" if given else SECRET_ENV["keys_for"])
    keys_file = getattr(args, "keys_file", None)
    every = merge(entries, load_file(Path(keys_file)) if keys_file else [])
    return ";".join(f"{label}={key}" for label, key in entries) or None, every


def _run_pytest(argv: list[str]) -> int:
    """pytest in a fresh interpreter: this one has imported the harness already, so pytest could
    not rewrite its assertions and would warn about it (PytestAssertRewriteWarning). `-P` keeps
    the working directory off the import path, as the `pytest` script does."""
    import subprocess

    try:
        return subprocess.call([sys.executable, "-P", "-m", "pytest", *argv])
    except KeyboardInterrupt:
        return 2  # what pytest answers to an interrupted run


def _preflight(
    target: str,
    key: str | None,
    admin_token: str | None,
    workspace: str | None,
    role_keys: tuple[tuple[str, str], ...] = (),
) -> int:
    """The target checked before pytest starts, so a dead target costs one line, not a run
    (TargetProblem); returns how many requests the check sent."""
    from opsmerge_contracts.preflight import check_target
    from opsmerge_contracts.target import api_base
    from opsmerge_sandbox.spec import load_spec

    spec = load_spec()
    root, base = api_base(target.rstrip("/"), spec)
    return check_target(
        root, base, spec, key, admin_token=admin_token, workspace=workspace, role_keys=role_keys
    )


def _reset_workspace(target: str, admin_token: str, workspace: str) -> None:
    from opsmerge_contracts.options import Options
    from opsmerge_contracts.session import reset_workspace as reset
    from opsmerge_sandbox.spec import load_spec

    reset(Options(target=target.rstrip("/"), admin_token=admin_token), load_spec(), workspace)

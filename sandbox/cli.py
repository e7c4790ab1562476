"""The `opsmerge-sandbox` command: one entry point, one small module behind each subcommand.

Subcommand modules are imported lazily so `opsmerge-sandbox keys` does not pay for the server.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Callable, Sequence


def _add_world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="default", help="recipe name in fixtures/ or a YAML path")
    p.add_argument("--seed", type=int, default=None, help="override the recipe's seed")


def _positive(kind: type[float] | type[int]) -> Callable[[str], float | int]:
    """An argparse type for a number above zero (a bad value is a usage error naming it)."""

    word = "whole number" if kind is int else "number"

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {word}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite {word} above 0")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _add_connection_args(serve: argparse.ArgumentParser) -> None:
    """Limits that keep slow and idle clients from holding connections (defaults per mode)."""
    env = os.environ.get
    serve.add_argument(
        "--header-timeout",
        type=_positive(float),
        default=env("OPSMERGE_SANDBOX_HEADER_TIMEOUT"),
        metavar="S",
        help="seconds a client has to send a complete request line and headers, from the "
        "connection's start or the first byte of a later request; then the connection is closed "
        "(default 10, hosted 5; env OPSMERGE_SANDBOX_HEADER_TIMEOUT)",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=_positive(float),
        default=env("OPSMERGE_SANDBOX_KEEP_ALIVE_TIMEOUT"),
        metavar="S",
        help="seconds an idle connection stays open after a response "
        "(default 5, hosted 5; env OPSMERGE_SANDBOX_KEEP_ALIVE_TIMEOUT)",
    )
    serve.add_argument(
        "--body-timeout",
        type=_positive(float),
        default=env("OPSMERGE_SANDBOX_BODY_TIMEOUT"),
        metavar="S",
        help="seconds a client has to send a request body once its headers arrived "
        "(default 30, hosted 15; env OPSMERGE_SANDBOX_BODY_TIMEOUT)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive(int),
        default=env("OPSMERGE_SANDBOX_MAX_CONNECTIONS"),
        metavar="N",
        help="open connections at most; a new one beyond it gets 503 and is closed "
        "(default 1000, hosted 512; env OPSMERGE_SANDBOX_MAX_CONNECTIONS)",
    )
    serve.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="HTTP/1.1 parser (default auto: httptools when installed, else h11)",
    )


def _flag(env: str) -> bool:
    """An on/off option's environment twin: set to anything but empty, 0 or false."""
    return os.environ.get(env, "").strip().lower() not in ("", "0", "false", "no", "off")


def _network(text: str) -> str:
    """An argparse type for an IP address or CIDR network."""
    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address or network") from None
    return text.strip()


def _webhook_host(text: str) -> str:
    from opsmerge_sandbox.events.allowlist import WebhookAllow

    try:
        WebhookAllow.parse((text,))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def _add_address_args(serve: argparse.ArgumentParser) -> None:
    """Who a request comes from, for the hosted sandbox's per-address budget."""
    serve.add_argument(
        "--address-rate-limit",
        type=_positive(int),
        default=os.environ.get("OPSMERGE_SANDBOX_ADDRESS_RATE_LIMIT"),
        metavar="N",
        help="hosted mode: requests per minute per client address, on top of each key's own "
        "budget (default 600; env OPSMERGE_SANDBOX_ADDRESS_RATE_LIMIT)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        type=_network,
        default=None,
        metavar="ADDRESS_OR_CIDR",
        help="a reverse proxy whose X-Forwarded-For is believed (repeatable); without it the "
        "socket's peer is the client address (env OPSMERGE_SANDBOX_TRUSTED_PROXIES, "
        "comma-separated)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opsmerge-sandbox",
        description="Offline sandbox and contract harness for the OpsMerge API.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the sandbox server")
    serve.add_argument(
        "--host",
        default=os.environ.get("OPSMERGE_SANDBOX_HOST", "127.0.0.1"),
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface; "
        "env OPSMERGE_SANDBOX_HOST)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("OPSMERGE_SANDBOX_PORT", "4010")),
        help="port to listen on (default 4010; env OPSMERGE_SANDBOX_PORT)",
    )
    serve.add_argument("--spec", default=None, help="OpenAPI document to serve (default: bundled)")
    _add_world_args(serve)
    serve.add_argument(
        "--data-dir",
        default=os.environ.get("OPSMERGE_SANDBOX_DATA_DIR"),
        help="keep client writes here across restarts (default: in memory)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("OPSMERGE_SANDBOX_WORKERS", "1")),
        help="worker processes (default 1; more than 1 needs --state; env "
        "OPSMERGE_SANDBOX_WORKERS)",
    )
    serve.add_argument(
        "--state",
        default=os.environ.get("OPSMERGE_SANDBOX_STATE"),
        metavar="URL",
        help="keep what changes in Redis or Valkey at redis://HOST:PORT/DB, shared by every "
        "worker and host started with the same spec, recipe, seed and URL (env "
        "OPSMERGE_SANDBOX_STATE; default: in this process)",
    )
    serve.add_argument(
        "--admin-token",
        default=None,
        metavar="T",
        help="token for the /_sandbox endpoints (env OPSMERGE_SANDBOX_ADMIN_TOKEN, which "
        "`make serve ADMIN_TOKEN=...` sets; default: with --data-dir the token kept there, made "
        "up on the first start; else made up and printed)",
    )
    serve.add_argument(
        "--rate-limit",
        type=_positive(int),
        default=None,
        help="requests per minute for every key without its own limit (default 300)",
    )
    serve.add_argument("--faults", default=None, help="YAML file of fault rules to load at start")
    serve.add_argument(
        "--webhook-allow",
        action="append",
        type=_webhook_host,
        default=None,
        metavar="HOST_OR_CIDR",
        help="a host name or IP network rules' webhooks may be posted to (repeatable; default "
        "loopback only, hosted mode none; env OPSMERGE_SANDBOX_WEBHOOK_ALLOW, comma-separated)",
    )
    serve.add_argument(
        "--hosted",
        action="store_true",
        default=os.environ.get("OPSMERGE_SANDBOX_HOSTED", "") not in ("", "0", "false"),
        help="public docs backend: per-visitor workspaces, admin endpoints off",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        help="origin allowed by CORS (repeatable; '*' for any)",
    )
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="skip keys and rate limits: every request acts as the owner's full-access "
        "key (benchmarks and demos only)",
    )
    serve.add_argument(
        "--strict",
        action="store_true",
        help="validate every response against the spec; a mismatch becomes a 500",
    )
    serve.add_argument("--no-strict", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--reject-unknown-params",
        action="store_true",
        default=_flag("OPSMERGE_SANDBOX_REJECT_UNKNOWN_PARAMS"),
        help="answer 400 to a query parameter the operation does not take (default: ignore it "
        "as the real API does, and name it in a Warning header and the journal; "
        "env OPSMERGE_SANDBOX_REJECT_UNKNOWN_PARAMS=1)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        default=_flag("OPSMERGE_SANDBOX_ACCESS_LOG"),
        help="print one line per request on stdout: method, path, status, key name, workspace, "
        "duration (never the key; env OPSMERGE_SANDBOX_ACCESS_LOG=1)",
    )
    _add_connection_args(serve)
    _add_address_args(serve)
    serve.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="append every API exchange to FILE as HAR 1.2 (keys and credentials redacted)",
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level (default warning)",
    )

    keys = sub.add_parser("keys", help="list the sandbox API keys")
    _add_world_args(keys)
    keys.add_argument("--json", action="store_true", help="print a JSON list")

    fixtures = sub.add_parser("fixtures", help="seeded world tools")
    fsub = fixtures.add_subparsers(dest="fixtures_command", required=True, help="what to do")
    dump = fsub.add_parser("dump", help="write the seeded world as JSON to stdout")
    _add_world_args(dump)
    world_check = fsub.add_parser(
        "check",
        help="judge the seeded world by its schemas and the spec's x-invariants "
        "(exit 1 on violations)",
    )
    _add_world_args(world_check)
    world_check.add_argument("--json", action="store_true", help="print violations as JSON")
    world_check.add_argument(
        "--limit", type=int, default=50, help="violations listed per invariant (default 50; 0: all)"
    )
    world_check.add_argument(
        "--against",
        metavar="URL",
        help="judge a running sandbox's workspace instead: the records written through its API",
    )
    world_check.add_argument(
        "--workspace", default="default", help="with --against: the workspace (default: default)"
    )
    world_check.add_argument(
        "--admin-token",
        default=os.environ.get("OPSMERGE_SANDBOX_ADMIN_TOKEN"),
        help="with --against: the sandbox's admin token (env OPSMERGE_SANDBOX_ADMIN_TOKEN)",
    )

    spec = sub.add_parser("spec", help="spec tools")
    ssub = spec.add_subparsers(dest="spec_command", required=True, help="what to do")
    check = ssub.add_parser("check", help="validate a spec and lint the OpsMerge conventions")
    check.add_argument(
        "path", nargs="?", default=None, help="the OpenAPI document (default: the bundled spec)"
    )

    reset = sub.add_parser("reset", help="restore the seeded world of a running sandbox")
    reset.add_argument(
        "--url", default="http://127.0.0.1:4010", help="the running sandbox (default %(default)s)"
    )
    reset.add_argument(
        "--admin-token",
        default=os.environ.get("OPSMERGE_SANDBOX_ADMIN_TOKEN"),
        help="the sandbox's admin token (env OPSMERGE_SANDBOX_ADMIN_TOKEN)",
    )
    reset.add_argument(
        "--workspace", default=None, help="reset only this workspace (default: all of them)"
    )

    from opsmerge_contracts.cli import (
        add_parser as add_contracts_parser,  # the command's own module
    )

    add_contracts_parser(sub)
    from opsmerge_sandbox.commands.drift import add_parser as add_drift_parser
    from opsmerge_sandbox.commands.proxy import add_parser as add_proxy_parser

    add_proxy_parser(sub)
    add_drift_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if args.command != "contracts":
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.pytest_args = [*unknown, *args.pytest_args]  # pytest options go straight through
    if args.command == "serve":
        from opsmerge_sandbox.commands.serve import serve_command

        return serve_command(args)
    if args.command == "keys":
        from opsmerge_sandbox.commands.fixtures import keys_command

        return keys_command(args)
    if args.command == "fixtures":
        from opsmerge_sandbox.commands.fixtures import check_command, dump_command

        return check_command(args) if args.fixtures_command == "check" else dump_command(args)
    if args.command == "spec":
        from opsmerge_sandbox.commands.spec_check import check_command

        return check_command(args)
    if args.command == "reset":
        from opsmerge_sandbox.commands.serve import reset_command

        return reset_command(args)
    if args.command == "contracts":
        from opsmerge_contracts.cli import contracts_command

        return contracts_command(args)
    if args.command == "proxy":
        from opsmerge_sandbox.commands.proxy import proxy_command

        return proxy_command(args)
    if args.command == "drift":
        from opsmerge_sandbox.commands.drift import drift_command

        return drift_command(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

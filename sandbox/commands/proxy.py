"""`opsmerge-sandbox proxy --upstream URL`: the validating proxy on a port of its own.

This module is imported whenever the command's parser is built, so it imports only the standard
library at the top; the proxy itself is imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

TOKEN_ENV = "OPSMERGE_PROXY_ADMIN_TOKEN"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxy = sub.add_parser(
        "proxy",
        help="forward to a real deployment and report where it breaks the spec",
        description="Forward every request to --upstream unchanged and check each answer with "
        "the contract harness's checks; failed check ids come back in X-Sandbox-Violations.",
    )
    proxy.add_argument("--upstream", required=True, help="the deployment's root URL")
    proxy.add_argument("--host", default="127.0.0.1", help="address to listen on")
    proxy.add_argument("--port", type=int, default=4011, help="port (default %(default)s)")
    proxy.add_argument("--spec", default=None, help="OpenAPI document (default: the bundled one)")
    proxy.add_argument(
        "--errors",
        action="store_true",
        help="answer a violating response with 502 CONTRACT_VIOLATION naming the checks",
    )
    proxy.add_argument(
        "--fallback",
        choices=["sandbox"],
        default=None,
        help="serve operations the upstream lacks (404, 405, 501) from an in-process sandbox",
    )
    proxy.add_argument("--record", default=None, metavar="FILE", help="record a HAR 1.2 file")
    proxy.add_argument(
        "--report", default=None, metavar="PATH", help="on exit, write PATH.json and PATH.html"
    )
    proxy.add_argument(
        "--admin-token",
        default=os.environ.get(TOKEN_ENV),
        metavar="T",
        help=f"token for /_proxy/violations and /_proxy/summary (env {TOKEN_ENV}; "
        "default: made up and printed)",
    )
    proxy.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the upstream"
    )


def proxy_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    upstream = str(args.upstream).rstrip("/")
    if not upstream.startswith(("http://", "https://")):
        console.print(f"[red]cannot start:[/] --upstream must be an http(s) URL, got {upstream!r}")
        return 2
    if args.timeout <= 0:
        console.print("[red]cannot start:[/] --timeout must be above 0")
        return 2
    from opsmerge_sandbox.commands.serve import _listen
    from opsmerge_sandbox.har import HarWriter
    from opsmerge_sandbox.proxy.app import ProxyConfig, ValidatingProxy
    from opsmerge_sandbox.spec import load_spec

    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        console.print(f"[red]cannot start:[/] {args.host}:{args.port} is not available ({exc})")
        return 2
    try:
        spec = load_spec(Path(args.spec)) if args.spec else load_spec()
        fallback = None
        if args.fallback == "sandbox":
            from opsmerge_sandbox.proxy.fallback import Fallback
            from opsmerge_sandbox.settings import Settings

            fallback = Fallback(Settings(spec_path=spec.path))
        record = HarWriter(Path(args.record)) if args.record else None
    except (OSError, ValueError) as exc:
        sock.close()
        console.print(f"[red]cannot start:[/] {exc}")
        return 2
    given = bool(args.admin_token)
    token = args.admin_token or "prx_" + secrets.token_urlsafe(18)
    config = ProxyConfig(
        upstream=upstream,
        spec=spec,
        errors=bool(args.errors),
        admin_token=token,
        record=record,
        fallback=fallback,
        timeout=float(args.timeout),
    )

    def finished() -> None:
        console.print(app.findings.render(width=console.width or 100), highlight=False)
        if args.report:
            for path in app.findings.report.write(Path(args.report)):
                console.print(f"proxy report: {path}", highlight=False)
        if record is not None:
            console.print(f"recorded {record.count} exchange(s) in {record.path}", highlight=False)

    app = ValidatingProxy(config, on_shutdown=finished)
    shown = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::") else args.host
    console.print(f"[bold green]OpsMerge validating proxy[/] on http://{shown}:{args.port}")
    console.print(f"  Upstream   {upstream}", highlight=False)
    mode = "502 CONTRACT_VIOLATION" if args.errors else "X-Sandbox-Violations header"
    console.print(f"  Violations {mode}; GET /_proxy/violations", highlight=False)
    console.print(
        f"  Admin      X-Sandbox-Admin-Token: {'(not shown)' if given else token}",
        highlight=False,
        soft_wrap=True,
    )
    if fallback is not None:
        console.print("  Fallback   the sandbox serves operations the upstream lacks")
    proxy_server(app).run(sockets=[sock])
    return 0


def proxy_server(app: object) -> uvicorn.Server:
    """uvicorn as the proxy runs under it: it adds no header of its own (no Date, no Server),
    so the upstream's headers go back as they came; on the loop `serve` uses, which accepts
    every waiting connection at once (`sandbox/accept.py`)."""
    import uvicorn

    from opsmerge_sandbox.accept import LOOP

    return uvicorn.Server(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            loop=LOOP,
            log_level="warning",
            lifespan="on",
            access_log=False,
            server_header=False,
            date_header=False,
            proxy_headers=False,
        )
    )

"""`opsmerge-sandbox serve` and `reset`: uvicorn around the app, and a banner with the keys."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from opsmerge_sandbox import admin_token, collector, native
from opsmerge_sandbox.connection_limits import (
    DESCRIPTOR_RESERVE,
    ConnectionLimits,
    fit_descriptor_limit,
    resolve_limits,
    uvicorn_options,
)
from opsmerge_sandbox.events.allowlist import WebhookAllow
from opsmerge_sandbox.pipeline.address import parse_networks
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import SPEC_PATH
from opsmerge_sandbox.world.recipe import demo_keys


def _trusted_proxies(given: list[str] | None) -> tuple[str, ...]:
    """The proxies named on the command line, else in OPSMERGE_SANDBOX_TRUSTED_PROXIES."""
    if given:
        return tuple(given)
    env = os.environ.get("OPSMERGE_SANDBOX_TRUSTED_PROXIES", "")
    found = tuple(v.strip() for v in env.split(",") if v.strip())
    parse_networks(found)  # a bad value is refused at start (ValueError names it)
    return found


def _webhook_allow(given: list[str] | None) -> tuple[str, ...] | None:
    """The webhook hosts named on the command line, else in OPSMERGE_SANDBOX_WEBHOOK_ALLOW;
    None keeps the mode's default (loopback, or nothing when hosted)."""
    if given:
        return tuple(given)
    env = os.environ.get("OPSMERGE_SANDBOX_WEBHOOK_ALLOW", "")
    found = tuple(v.strip() for v in env.split(",") if v.strip())
    WebhookAllow.parse(found)  # a bad value is refused at start (ValueError names it)
    return found or None


def settings_from_args(args: argparse.Namespace) -> Settings:
    kwargs: dict = {
        "spec_path": Path(args.spec) if args.spec else SPEC_PATH,
        "recipe": args.recipe,
        "seed": args.seed,
        "data_dir": Path(args.data_dir) if args.data_dir else None,
        "state_url": getattr(args, "state", None) or None,
        "rate_limit": args.rate_limit,
        "strict": bool(args.strict) and not args.no_strict,
        "hosted": bool(args.hosted),
        "auth": not args.no_auth,
        "cors_origins": tuple(args.cors_origin or ()),
        "faults_file": Path(args.faults) if args.faults else None,
        "header_timeout": args.header_timeout,
        "keep_alive_timeout": args.keep_alive_timeout,
        "body_timeout": args.body_timeout,
        "max_connections": args.max_connections,
        "trusted_proxies": _trusted_proxies(args.trusted_proxy),
        "reject_unknown_params": bool(args.reject_unknown_params),
        "access_log": bool(args.access_log),
        "webhook_allow": _webhook_allow(args.webhook_allow),
    }
    if args.address_rate_limit is not None:
        kwargs["hosted_address_rate_limit"] = int(args.address_rate_limit)
    if args.hosted and not kwargs["cors_origins"]:
        kwargs["cors_origins"] = ("*",)
    return Settings(**kwargs)


def banner(
    console: Console,
    settings: Settings,
    host: str,
    port: int,
    state: object,
    generated_token: bool = True,
    token: admin_token.AdminToken | None = None,
) -> None:
    """What `serve` prints before it listens. `token` says where the admin token came from;
    without it, `generated_token` tells a made-up token from a given one. Hosted: no token."""
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    store = f"durable in {settings.data_dir}" if settings.data_dir else "in memory"
    if settings.state_url:
        from opsmerge_sandbox.shared.link import shown_url

        store = f"shared in {shown_url(settings.state_url)}"
    console.print(f"[bold green]OpsMerge Sandbox[/] listening on [bold]{base}[/]")
    console.print(
        f"  API      {base}/api/v1   (try: curl -H 'Authorization: Bearer <key>' "
        f"{base}/api/v1/auth/me)"
    )
    console.print(f"  Docs     {base}/api/docs")
    console.print(
        f"  Recipe   {settings.recipe} · store {store}{' · hosted mode' if settings.hosted else ''}"
    )
    if native.state != "on":
        console.print(f"  Speed    request path interpreted: compiled modules {native.state}")
    if token is None and not settings.hosted:
        source = "generated" if generated_token else "option"
        token = admin_token.AdminToken(settings.admin_token, source)
    if token is not None and not settings.hosted:
        printed = "(not shown)" if token.given else token.value  # never echo a chosen token
        # never wrapped: the token and the file's path must stay whole for copying
        console.print(
            f"  Admin    {base}/_sandbox  header X-Sandbox-Admin-Token: {printed}", soft_wrap=True
        )
        console.print(f"           token: {token.describe()}", highlight=False, soft_wrap=True)
    if settings.reject_unknown_params or settings.access_log:
        modes = [
            *(["unknown query parameters refused (400)"] if settings.reject_unknown_params else []),
            *(["access log on stdout"] if settings.access_log else []),
        ]
        console.print(f"  Options  {' · '.join(modes)}")
    table = Table(title="Sandbox API keys", show_lines=False)
    table.add_column("name")
    table.add_column("key", no_wrap=True, overflow="fold")
    table.add_column("access")
    table.add_column("rate/min", justify="right")
    recipe = state.recipe  # type: ignore[attr-defined]
    for k in demo_keys(recipe) if settings.hosted else recipe.keys:
        access = "full" if k.access == "full" else ",".join(k.scopes)
        limit = k.rate_limit or state.default_rate_limit  # type: ignore[attr-defined]
        table.add_row(k.name, k.key, access, str(limit))
    console.print(table)


def _connection_limits(console: Console, settings: Settings) -> ConnectionLimits:
    """The settings' connection limits, with the cap fitted to the descriptors the process has."""
    limits = resolve_limits(
        settings.hosted,
        settings.header_timeout,
        settings.keep_alive_timeout,
        settings.body_timeout,
        settings.max_connections,
    )
    fitted = fit_descriptor_limit(limits.max_connections)
    if fitted < limits.max_connections:
        console.print(
            f"[yellow]--max-connections lowered to {fitted}:[/] the process may open only "
            f"{fitted + DESCRIPTOR_RESERVE} files (ulimit -n)"
        )
        limits = replace(limits, max_connections=fitted)
    return limits


def serve_command(args: argparse.Namespace) -> int:
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    state_url = getattr(args, "state", None)
    if args.workers < 1:
        console.print("[red]--workers must be 1 or more[/]")
        return 2
    if args.workers != 1 and not state_url:
        console.print(
            "[red]--workers must be 1:[/] the store and rate-limit buckets live in this process; "
            "several workers need shared state: add --state redis://HOST:PORT/DB."
        )
        return 2
    if state_url and args.data_dir:
        console.print(
            "[red]--state and --data-dir exclude each other:[/] with shared state the changes "
            "live in Redis, whose persistence settings (AOF) make them durable."
        )
        return 2
    import uvicorn

    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.shared.link import STORE_DOWN, StateUrlError, shown_url
    from opsmerge_sandbox.state import build_state
    from opsmerge_sandbox.store.persistence import StoreError
    from opsmerge_sandbox.world.recipe import RecipeError

    # the port first, before anything is printed or built: a second `make serve` must not show
    # a banner and a fresh admin token that no running sandbox accepts
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        sys.stderr.write(
            f"cannot start: {args.host}:{args.port} is not available ({exc.strerror or exc}); "
            f"stop what listens there or pick another port with --port N (make serve PORT=N)\n"
        )
        return 2
    try:
        settings = settings_from_args(args)
        state = build_state(settings)
        # after the store, which has checked (and made) the data directory the token goes in
        token = _admin_token(args, settings)
        if token is not None:
            settings.admin_token = token.value
        app = create_app(settings, state)
    except STORE_DOWN as exc:
        sock.close()
        where = shown_url(state_url or "")
        sys.stderr.write(f"cannot start: the state store at {where} is unreachable ({exc})\n")
        return 2
    except (StoreError, admin_token.TokenError, StateUrlError) as exc:  # one line: what, why
        sock.close()
        sys.stderr.write(f"cannot start: {exc}\n")
        return 2
    except (RecipeError, FileNotFoundError, ValueError) as exc:
        sock.close()
        console.print(f"[red]cannot start:[/] {exc}")
        return 2
    banner(console, settings, args.host, args.port, state, token=token)
    if settings.access_log:
        from opsmerge_sandbox.access_log import access_logger, install

        install(app, access_logger())
    recorder = None
    if getattr(args, "record", None):
        from opsmerge_sandbox import recording
        from opsmerge_sandbox.har import HarWriter

        try:
            recorder = HarWriter(Path(args.record))
        except OSError as exc:
            sock.close()
            sys.stderr.write(f"cannot start: cannot write --record {args.record} ({exc})\n")
            return 2
        recording.install(app, recorder, state.spec.base_path)
        console.print(f"  Recording {recorder.path} (HAR 1.2)", highlight=False)
    # The seeded world never changes and never becomes garbage, and what writes add is kept as
    # long: the collector walks neither over and over (sandbox/collector.py)
    collector.install(app, collector.Collector())
    logging.basicConfig(level=args.log_level.upper())
    limits = _connection_limits(console, settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
        proxy_headers=False,  # client addresses: see --trusted-proxy (sandbox/pipeline/address.py)
        **uvicorn_options(limits, args.http),
    )
    if args.workers > 1:
        from opsmerge_sandbox.commands.workers import serve_workers

        serve_workers(settings, args, limits, sock)
        return 0
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        if recorder is not None:
            recorder.close()
            console.print(f"recorded {recorder.count} exchange(s) in {recorder.path}")
    return 0


def _admin_token(args: argparse.Namespace, settings: Settings) -> admin_token.AdminToken | None:
    """The control API's token and where it came from (None when hosted: no control API)."""
    if settings.hosted:
        return None
    return admin_token.resolve(
        args.admin_token, os.environ.get(admin_token.ENV), settings.data_dir
    )


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now (OSError when the address is taken or not ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def reset_command(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if not args.admin_token:
        console.print(
            "[red]reset needs the admin token:[/] --admin-token or OPSMERGE_SANDBOX_ADMIN_TOKEN"
        )
        return 2
    import httpx  # only this command talks to a running sandbox

    body = {"workspace": args.workspace} if args.workspace else {}
    try:
        r = httpx.post(
            f"{args.url.rstrip('/')}/_sandbox/reset",
            json=body,
            headers={"X-Sandbox-Admin-Token": args.admin_token},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the sandbox at {args.url}:[/] {exc}")
        return 1
    if r.status_code != 200:
        console.print(f"[red]reset failed ({r.status_code}):[/] {r.text[:300]}")
        return 1
    console.print(f"[green]reset[/] {args.workspace or 'every workspace'} of {args.url}")
    return 0

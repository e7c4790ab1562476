"""`serve --workers N`: N uvicorn worker processes on one address, on shared state.

uvicorn starts its workers by spawning fresh interpreters, so each builds its own state from the
settings the parent passes in the environment (the admin token included: every worker accepts
the one the banner printed) and loads the seeded world from the start cache the parent warmed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar

from opsmerge_sandbox import collector, start_together
from opsmerge_sandbox.accept import WORKER_LOOP, reserve
from opsmerge_sandbox.connection_limits import ConnectionLimits, protocol_class, uvicorn_options
from opsmerge_sandbox.settings import Settings

SETTINGS_ENV = "OPSMERGE_SANDBOX_WORKER_SETTINGS"
APP = "opsmerge_sandbox.commands.workers:worker_app"
_OWN = ("http", "loop")  # uvicorn options a worker sets its own way


def settings_to_env(settings: Settings) -> str:
    raw = asdict(settings)
    return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in raw.items()})


def settings_from_env(text: str) -> Settings:
    raw: dict[str, Any] = json.loads(text)
    kinds = {f.name: f.type for f in fields(Settings)}
    for name, value in raw.items():
        kind = str(kinds.get(name, ""))
        if value is not None and "Path" in kind:
            raw[name] = Path(value)
        elif isinstance(value, list):
            raw[name] = tuple(value)
    return Settings(**raw)


def worker_app() -> Litestar:
    """The app of one worker (uvicorn's factory), built from the parent's settings."""
    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.state import build_state

    settings = settings_from_env(os.environ[SETTINGS_ENV])
    app = create_app(settings, build_state(settings))
    if settings.access_log:
        from opsmerge_sandbox.access_log import access_logger, install

        install(app, access_logger())
    collector.install(app, collector.Collector())
    return app


class WorkerConfig(uvicorn.Config):
    """uvicorn's config, with the sandbox's connection limits rebuilt in each worker (the
    protocol class carrying them is made at run time and does not travel to a spawned worker)."""

    def __init__(self, limits: ConnectionLimits, http: str, **options: Any) -> None:
        super().__init__(APP, factory=True, **options)
        self.limits = limits
        self.http_choice = http

    def load(self) -> None:
        self.http = protocol_class(self.limits, self.http_choice)
        super().load()


def serve_workers(
    settings: Settings, args: argparse.Namespace, limits: ConnectionLimits, sock: socket.socket
) -> None:
    os.environ[SETTINGS_ENV] = settings_to_env(settings)
    ready = tempfile.TemporaryDirectory(prefix="opsmerge-workers-")
    os.environ[start_together.DIR_ENV] = ready.name
    os.environ[start_together.COUNT_ENV] = str(args.workers)
    config = WorkerConfig(
        limits,
        args.http,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
        proxy_headers=False,
        # serve's own options (deadlines) but the protocol class, rebuilt in each worker, and
        # the loop: each worker listens on a socket of its own (accept.py)
        **{k: v for k, v in uvicorn_options(limits, args.http).items() if k not in _OWN},
        loop=WORKER_LOOP,
    )
    with ready:
        uvicorn.supervisors.Multiprocess(config, sockets=[reserve(sock)]).run()

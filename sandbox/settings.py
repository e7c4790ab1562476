"""Settings for one sandbox instance: what the CLI, the tests and the harness configure."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from opsmerge_sandbox.spec import SPEC_PATH


@dataclass(slots=True)
class Settings:
    spec_path: Path = SPEC_PATH
    recipe: str = "default"
    seed: int | None = None
    data_dir: Path | None = None  # None keeps client writes in memory
    state_url: str | None = None  # redis://HOST:PORT/DB: what changes lives there, shared
    admin_token: str = field(default_factory=lambda: "sbx_admin_" + secrets.token_urlsafe(18))
    rate_limit: int | None = None  # per-key default; None takes the recipe's (300)
    auth: bool = True  # False: every request acts as the recipe's first full-access key, unlimited
    strict: bool = False  # validate every response against the spec and fail loudly
    hosted: bool = False  # public docs backend: per-visitor workspaces, admin endpoints off
    cors_origins: tuple[str, ...] = ()
    faults_file: Path | None = None
    reject_unknown_params: bool = False  # 400 for a query parameter the operation does not take
    access_log: bool = False  # one line per request on stdout (sandbox/access_log.py)
    max_body_bytes: int = 1024 * 1024
    journal_size: int = 1000
    hosted_workspace_ttl: float = 1800.0  # seconds a visitor workspace lives without use
    hosted_max_workspaces: int = 500
    hosted_address_rate_limit: int = 600  # per client address per minute, on top of per key
    hosted_max_changes: int | None = None  # records one visitor may change; None: the default
    hosted_max_workspace_bytes: int | None = None  # body bytes one visitor may write; likewise
    trusted_proxies: tuple[str, ...] = ()  # X-Forwarded-For is read only from these peers
    # hosts and networks webhooks may be posted to; None: loopback (hosted mode: none)
    webhook_allow: tuple[str, ...] | None = None
    # Connection limits (sandbox/connection_limits.py); None takes the mode's default there.
    header_timeout: float | None = None  # seconds to receive a complete request head
    keep_alive_timeout: float | None = None  # seconds a connection idles after a response
    body_timeout: float | None = None  # seconds to receive a body once its head arrived
    max_connections: int | None = None  # open connections; beyond it new ones get 503

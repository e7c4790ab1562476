"""The target of a run and the clients that reach it: in-process sandbox or a base URL.

Contract code cannot tell the two apart: both hand out httpx clients whose transport is the
guarded one (safety gate, budget, pacing, recording). What differs is what the target lets the
run do besides the API: a sandbox the run owns (or one served with a known admin token) can mint
keys, move its clock and reset; a deployment can do none of that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from contracts.budget import Budget
from contracts.exchange import Exchange, mask_key
from contracts.options import Options
from contracts.pacing import Pacer
from contracts.routes import Router
from contracts.sandbox_control import SandboxAdmin
from contracts.sandboxes import SERVE_ROOT, Sandbox, load_factory, start_sandbox
from contracts.transport import Guard, GuardedTransport
from sandbox.settings import Settings
from sandbox.spec import Spec


class Target:
    def __init__(
        self,
        *,
        name: str,
        root_url: str,
        base_url: str,
        transport: httpx.BaseTransport,
        guard: Guard,
        key: str | None,
        limited_key: str | None = None,
        admin: SandboxAdmin | None = None,
        sandbox: Sandbox | None = None,
        curl_root: str | None = None,
        closers: list[Callable[[], None]] | None = None,
    ) -> None:
        self.name = name
        self.root_url = root_url
        self.base_url = base_url
        self.transport = transport  # raw; every client wraps it in a GuardedTransport
        self.guard = guard
        self.key = key
        self.limited_key = limited_key
        self.admin = admin
        self.sandbox = sandbox
        self.curl_root = curl_root  # what a curl line uses instead of root_url, if anything
        self._closers = closers or []
        self._minted: dict[tuple[Any, ...], str] = {}

    @property
    def profile(self) -> str:
        return self.guard.profile

    @property
    def in_process(self) -> bool:
        return self.sandbox is not None and not self.sandbox.loopback

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "base_url": self.base_url,
            "profile": self.profile,
            "key": mask_key(self.key),
            "limited_key": mask_key(self.limited_key) if self.limited_key else None,
            "admin": self.admin is not None,
            "budget": self.guard.budget.limit,
        }

    def client(
        self, key: str | None = None, sink: Callable[[Exchange], None] | None = None, **kwargs: Any
    ) -> httpx.Client:
        """An httpx client for the API, guarded; `key` defaults to the run's key."""
        headers = dict(kwargs.pop("headers", {}) or {})
        secret = self.key if key is None else key
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        transport = GuardedTransport(self.transport, self.guard, sink)
        return httpx.Client(
            base_url=self.base_url,
            transport=transport,
            headers=headers,
            timeout=kwargs.pop("timeout", 30),
            **kwargs,
        )

    def mint(
        self, scopes: tuple[str, ...] | None, rate_limit: int | None = None, name: str = "contracts"
    ) -> str | None:
        """A sandbox key with exactly these scopes (None: full access), minted once per run."""
        if self.admin is None:
            return None
        cache_key = (scopes, rate_limit, name)
        if cache_key not in self._minted:
            minted = self.admin.mint_key(
                name=f"{name} {' '.join(scopes) if scopes else 'full'}"[:120],
                scopes=list(scopes) if scopes is not None else None,
                rate_limit=rate_limit,
            )
            self._minted[cache_key] = str(minted["key"])
        return self._minted[cache_key]

    def forget_minted(self) -> None:
        self._minted.clear()

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()


def _api_base(url: str, spec: Spec) -> tuple[str, str]:
    """(root, API base) from a target URL given with or without the spec's base path."""
    url = url.rstrip("/")
    if spec.base_path and url.endswith(spec.base_path):
        return url[: -len(spec.base_path)], url
    return url, url + spec.base_path


def open_target(options: Options, spec: Spec) -> Target:
    budget = Budget(options.budget)
    router = Router(spec)
    if options.in_process:
        settings = Settings(spec_path=spec.path)
        sandbox = start_sandbox(settings, app_factory=load_factory(options.app))
        pacer = Pacer(wait=lambda s: sandbox.admin.advance_clock(s), reserve=0)
        guard = Guard(options.profile, budget, pacer, router)
        return Target(
            name="sandbox (in-process)",
            root_url=sandbox.root_url,
            base_url=sandbox.base_url,
            transport=sandbox.transport,
            guard=guard,
            key=options.key or sandbox.keys.owner.key,
            limited_key=options.limited_key,
            admin=sandbox.admin,
            sandbox=sandbox,
            curl_root=SERVE_ROOT,
            closers=[sandbox.close],
        )
    root, base = _api_base(options.target, spec)
    inner = httpx.HTTPTransport(retries=1)
    admin = None
    closers: list[Callable[[], None]] = [inner.close]
    if options.admin_token:
        admin_client = httpx.Client(base_url=root, transport=inner, timeout=30)
        admin = SandboxAdmin(admin_client, options.admin_token)
    owned_clock = admin is not None and options.profile == "sandbox"
    wait: Callable[[float], None] = (
        admin.advance_clock if admin is not None and owned_clock else time.sleep
    )
    pacer = Pacer(wait=wait, reserve=0 if owned_clock else 1)
    guard = Guard(options.profile, budget, pacer, router)
    return Target(
        name=root,
        root_url=root,
        base_url=base,
        transport=inner,
        guard=guard,
        key=options.key,
        limited_key=options.limited_key,
        admin=admin,
        closers=closers,
    )

"""The target of a run and the clients that reach it: in-process sandbox or a base URL.

Contract code cannot tell the two apart: both hand out httpx clients whose transport is the
guarded one (safety gate, budget, pacing, recording). What differs is what the target lets the
run do besides the API: a sandbox the run owns can mint keys, move its clock and reset; a
deployment can do none of that.

A sandbox served at a URL with its admin token is someone's running sandbox, not the run's: the
run works in a workspace of its own (`contracts-<random>`, sent with every request), under a key
minted for it (the given key's owner and scopes, or the default owner's, with a limit the run
cannot reach, so nothing waits on pacing), and never moves the clock, which every workspace
shares and nothing can move back. At the end it revokes what it minted and resets its workspace,
so the developer's world, clock and rate buckets are as they were.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from opsmerge_contracts.budget import Budget
from opsmerge_contracts.exchange import Exchange, mask_key
from opsmerge_contracts.options import Options
from opsmerge_contracts.pacing import Pacer
from opsmerge_contracts.routes import Router
from opsmerge_contracts.sandbox_control import AdminError, SandboxAdmin
from opsmerge_contracts.sandboxes import SERVE_ROOT, Sandbox, load_factory, start_sandbox
from opsmerge_contracts.transport import Guard, GuardedTransport
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import Spec

WORKSPACE_HEADER = "X-Sandbox-Workspace"
WORKSPACE_PREFIX = "contracts-"
# a run key's limit: far above any run's traffic, so a served sandbox never makes the run wait
RUN_KEY_RATE_LIMIT = 1_000_000


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
        workspace: str | None = None,
        workspace_clock: bool = False,
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
        self.workspace = workspace  # sent with every request when the run has one of its own
        self.workspace_clock = workspace_clock  # the run's workspace keeps a clock of its own
        self._minted: dict[tuple[Any, ...], str] = {}
        self._minted_ids: list[str] = []
        self.role_keys: list[Any] | None = None  # the role matrix's keys, learned on first use

    @property
    def profile(self) -> str:
        return self.guard.profile

    @property
    def in_process(self) -> bool:
        return self.sandbox is not None and not self.sandbox.loopback

    @property
    def owns_clock(self) -> bool:
        """Whether the run may move the clock: a sandbox it started itself, or the run's own
        workspace's clock on a served sandbox that keeps one per workspace."""
        return self.sandbox is not None or self.workspace_clock

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "base_url": self.base_url,
            "profile": self.profile,
            "key": mask_key(self.key),
            "limited_key": mask_key(self.limited_key) if self.limited_key else None,
            "admin": self.admin is not None,
            "budget": self.guard.budget.limit,
            "workspace": self.workspace,
        }

    def client(
        self, key: str | None = None, sink: Callable[[Exchange], None] | None = None, **kwargs: Any
    ) -> httpx.Client:
        """An httpx client for the API, guarded; `key` defaults to the run's key."""
        headers = dict(kwargs.pop("headers", {}) or {})
        secret = self.key if key is None else key
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        if self.workspace:
            headers[WORKSPACE_HEADER] = self.workspace
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
            self._minted_ids.append(str(minted["id"]))
            self._minted[cache_key] = str(minted["key"])
        return self._minted[cache_key]

    def mint_for_user(self, user_id: str, scopes: tuple[str, ...] | None) -> str | None:
        """A key owned by this user (None scopes: full access), minted once per run, with a
        limit the run never reaches: the role matrix spends one request per operation on it."""
        if self.admin is None:
            return None
        cache_key = ("user", user_id, scopes)
        if cache_key not in self._minted:
            minted = self.admin.mint_key(
                name=f"contracts role {user_id} {' '.join(scopes) if scopes else 'full'}"[:120],
                scopes=list(scopes) if scopes is not None else None,
                user_id=user_id,
                rate_limit=RUN_KEY_RATE_LIMIT,
            )
            self._minted_ids.append(str(minted["id"]))
            self._minted[cache_key] = str(minted["key"])
        return self._minted[cache_key]

    def forget_minted(self) -> None:
        self._minted.clear()
        self.role_keys = None

    def mint_run_key(self, given: str | None) -> str | None:
        """The run's own key on a served sandbox: the given key's owner and scopes (or the
        default owner's full access) with a limit the run never reaches. None if the sandbox
        does not know the given key (the run then uses it as it is)."""
        if self.admin is None:
            return None
        body: dict[str, Any] = {}
        if given:
            listed = self.admin.list_keys()
            known = [k for k in listed if _prefix(k) and given.startswith(_prefix(k))]
            if len(known) != 1:
                return None
            scopes = known[0].get("scopes")
            body = {"user_id": known[0]["user_id"]}
            if isinstance(scopes, list):
                body["scopes"] = scopes
        minted = self.admin.mint_key(
            name=f"contracts run {self.workspace or ''}".strip()[:120],
            rate_limit=RUN_KEY_RATE_LIMIT,
            **body,
        )
        self._minted_ids.append(str(minted["id"]))
        return str(minted["key"])

    def _tidy_served_sandbox(self) -> None:
        """Revoke what the run minted and reset its workspace (its records, rules and buckets)."""
        admin = self.admin
        if admin is None or self.sandbox is not None:
            return
        for key_id in self._minted_ids:
            with contextlib.suppress(AdminError, httpx.HTTPError):
                admin.revoke_key(key_id)
        self._minted_ids.clear()
        self._minted.clear()
        self.role_keys = None
        if self.workspace:
            with contextlib.suppress(AdminError, httpx.HTTPError):
                admin.clear_faults()
            with contextlib.suppress(AdminError, httpx.HTTPError):
                admin.reset(workspace=self.workspace)

    def close(self) -> None:
        try:
            self._tidy_served_sandbox()
        finally:
            while self._closers:
                self._closers.pop()()


def _prefix(listed: dict[str, Any]) -> str:
    """A listed key's prefix without the ellipsis the control API shows after it."""
    return str(listed.get("prefix") or "").rstrip("…")


def api_base(url: str, spec: Spec) -> tuple[str, str]:
    """(root, API base) from a target URL given with or without the spec's base path."""
    url = url.rstrip("/")
    if spec.base_path and url.endswith(spec.base_path):
        return url[: -len(spec.base_path)], url
    return url, url + spec.base_path


def open_target(options: Options, spec: Spec, workspace: str | None = None) -> Target:
    """The run's target; `workspace` names the run's own workspace on a served sandbox (a new
    name when not given)."""
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
    root, base = api_base(options.target, spec)
    inner = httpx.HTTPTransport(retries=1)
    admin = None
    closers: list[Callable[[], None]] = [inner.close]
    if options.admin_token:
        workspace = workspace or new_workspace()
        admin_client = httpx.Client(base_url=root, transport=inner, timeout=30)
        closers.append(admin_client.close)
        admin = SandboxAdmin(admin_client, options.admin_token, workspace=workspace)
    # a served sandbox that keeps a clock per workspace moves only the run's own; an older one
    # shares its clock with every workspace, so waits there are real
    own_clock = admin is not None and _workspace_clock(admin)
    pacer = (
        Pacer(wait=lambda s: admin.advance_clock(s), reserve=0)
        if own_clock and admin is not None
        else Pacer(wait=time.sleep, reserve=1)
    )
    guard = Guard(options.profile, budget, pacer, router)
    target = Target(
        name=root,
        root_url=root,
        base_url=base,
        transport=inner,
        guard=guard,
        key=options.key,
        limited_key=options.limited_key,
        admin=admin,
        closers=closers,
        workspace=workspace if admin is not None else None,
        workspace_clock=own_clock,
    )
    if admin is not None:
        try:
            target.key = target.mint_run_key(options.key) or options.key
        except BaseException:
            target.close()
            raise
    return target


def _workspace_clock(admin: SandboxAdmin) -> bool:
    """Whether the served sandbox runs the run's workspace on a clock of its own (it then names
    the workspace in its clock answer); any failure here is left to the preflight to report."""
    try:
        data = admin.clock()
    except Exception:
        return False
    return isinstance(data, dict) and data.get("workspace") == admin.workspace


def new_workspace() -> str:
    """A workspace name for one run: two runs, even at once, never share one."""
    return WORKSPACE_PREFIX + secrets.token_hex(6)

"""Hosted mode: the public "try it" backend, where strangers share one sandbox process.

Each visitor gets a workspace of their own, named by the `X-Sandbox-Workspace` header the docs
page sends (one random name per browser tab), else derived from their key (`key-<key id>`). A
workspace is created on first use by a caller holding a usable key; requests without one read a
detached, empty workspace until authentication refuses them, so they allocate nothing. The shared
default workspace is never lent out in hosted mode.

Storage stays bounded however many visitors come, and however they write:
- the number of visitor workspaces is capped, the least recently used evicted first, at once;
- each workspace takes only so many changed records and so many bytes of request bodies;
- all workspaces together take only so many bytes of bodies: past that, the least recently used
  workspaces are evicted until the total fits again;
- a background task started with the app drops workspaces left idle, forgets spent rate-limit
  windows and removes changes written to a workspace evicted while its request was in flight.
Record sizes are bounded by the spec's maxLength limits, bodies by `max_body_bytes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request

from sandbox.errors import ApiError
from sandbox.pipeline.authenticate import ApiKey
from sandbox.pipeline.runner import _WORKSPACE_NAME, WORKSPACE_HEADER
from sandbox.state import SandboxState
from sandbox.store.workspace import Workspace, Workspaces

log = logging.getLogger("sandbox.hosted")

DEMO_KEY_NAME = "Public docs demo"
MAX_CHANGES = 200  # records one visitor workspace may create, change or delete
MAX_WORKSPACE_BYTES = 1024 * 1024  # request-body bytes one visitor workspace may write
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # request-body bytes all visitor workspaces together keep
MAX_SWEEP_INTERVAL = 10.0  # seconds; also bounds how long spent rate-limit windows linger
_EXTRAS_KEY = "hosted_policy"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did, for the log and for tests."""

    dropped: int  # workspaces dropped as idle or beyond the cap
    alive: int  # workspaces left
    windows: int  # spent rate-limit windows forgotten
    orphans: int  # change tables of workspaces that no longer exist


def changes_in(ws: Workspace) -> int:
    """How many records this workspace holds changes for (deleted creations still count)."""
    return sum(len(v.overrides) + len(v.seqs) for v in ws.views.values())


class HostedPolicy:
    """Which workspace a request uses in hosted mode, and the upkeep that keeps memory bounded."""

    def __init__(
        self,
        state: SandboxState,
        max_changes: int | None = None,
        max_workspace_bytes: int | None = None,
        max_total_bytes: int | None = None,
    ) -> None:
        settings = state.settings
        self.state = state
        self.workspaces: Workspaces = state.workspaces
        self.ttl = float(settings.hosted_workspace_ttl)
        self.cap = max(1, int(settings.hosted_max_workspaces))
        # Settings may grow fields of the same names; the arguments win, then the defaults.
        self.max_changes = max_changes or getattr(settings, "hosted_max_changes", MAX_CHANGES)
        self.max_workspace_bytes = max_workspace_bytes or getattr(
            settings, "hosted_max_workspace_bytes", MAX_WORKSPACE_BYTES
        )
        self.max_total_bytes = max_total_bytes or getattr(
            settings, "hosted_max_total_bytes", MAX_TOTAL_BYTES
        )
        self.max_body = settings.max_body_bytes
        self.interval = max(0.05, min(MAX_SWEEP_INTERVAL, self.ttl / 4))
        # Requests without a usable key read this detached, never-written workspace: the
        # authentication stage answers 401 before anything is read or written.
        self.anonymous = Workspace(Workspaces.DEFAULT, state.bases, self.workspaces.delta)
        # Visitor workspaces by last use, oldest first: eviction beyond the cap is O(1).
        self._recent: OrderedDict[str, None] = OrderedDict(
            (n, None) for n in self.workspaces.names() if n != Workspaces.DEFAULT
        )
        self._bytes: dict[str, int] = {}  # body bytes written, per workspace
        self.total_bytes = 0

    # ------------------------------------------------------------------ per request
    def workspace_for(self, request: Request) -> Workspace:
        key = self._usable_key(request.headers.get("authorization"))
        if key is None:
            return self.anonymous
        name = request.headers.get(WORKSPACE_HEADER)
        if name is None:
            name = f"key-{key.id}"
        elif not _WORKSPACE_NAME.match(name):
            raise ApiError(
                "HEADER_INVALID",
                "X-Sandbox-Workspace must be 1-64 letters, digits, '.', '_' or '-'.",
            )
        elif name == Workspaces.DEFAULT:
            raise ApiError(
                "HEADER_INVALID",
                "X-Sandbox-Workspace 'default' is the shared workspace, which a hosted sandbox "
                "does not lend out: use a name of your own, or leave the header out.",
            )
        ws = self._visit(name)
        if request.method not in _READS:
            self._charge(name, ws, self._body_size(request))
        return ws

    def _body_size(self, request: Request) -> int:
        """The declared body size; a chunked body of unknown size counts as the largest allowed."""
        declared = request.headers.get("content-length")
        if declared is not None:
            return int(declared) if declared.isdigit() else self.max_body
        return self.max_body if "transfer-encoding" in request.headers else 0

    def _charge(self, name: str, ws: Workspace, size: int) -> None:
        """Count a write against its workspace's budgets, and the total against everyone's."""
        if changes_in(ws) >= self.max_changes:
            raise _full(f"already holds {self.max_changes} changed records")
        if size > self.max_body:
            return  # refused unread (413) by the pipeline: nothing will be stored
        spent = self._bytes.get(name, 0) + size
        if spent > self.max_workspace_bytes:
            raise _full(f"has taken {self.max_workspace_bytes} bytes of request bodies")
        self._bytes[name] = spent
        self.total_bytes += size
        while self.total_bytes > self.max_total_bytes and len(self._recent) > 1:
            oldest = next(iter(self._recent))  # never `name`: it was just moved to the end
            self._evict(oldest)

    def _usable_key(self, header: str | None) -> ApiKey | None:
        """The key in a well-formed bearer header if it could authenticate; None otherwise."""
        if not header:
            return None
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        key = self.state.keys.lookup(secret)
        if key is None or key.revoked:
            return None
        if key.expires_ts is not None and key.expires_ts <= self.state.clock.now():
            return None
        return key

    def _visit(self, name: str) -> Workspace:
        recent = self._recent
        if name in recent:
            recent.move_to_end(name)
        else:
            while len(recent) >= self.cap:
                self._evict(next(iter(recent)))
            recent[name] = None
        return self.workspaces.get(name)

    def _evict(self, name: str) -> None:
        self._recent.pop(name, None)
        self.total_bytes -= self._bytes.pop(name, 0)
        self.workspaces.reset(name)

    # ------------------------------------------------------------------ upkeep
    def sweep(self) -> SweepReport:
        """Drop idle workspaces and the oldest beyond the cap; forget what nobody can reach."""
        dropped = self.workspaces.drop_idle(self.ttl, keep=self.cap)
        alive = set(self.workspaces.names())
        for name in [n for n in self._recent if n not in alive]:
            del self._recent[name]
            self.total_bytes -= self._bytes.pop(name, 0)
        delta = self.workspaces.delta
        orphans = [n for n in delta.workspaces() if n not in alive]
        for name in orphans:
            delta.drop(name)
        return SweepReport(dropped, len(alive), self._forget_spent_windows(), len(orphans))

    def _forget_spent_windows(self) -> int:
        """Rate-limit counters of past windows are dropped only when read again: drop them now."""
        storage = self.state.limiter.storage
        now = self.state.clock.now()
        spent = [k for k, expiry in list(storage.expirations.items()) if expiry <= now]
        for key in spent:
            storage.get(key)  # reading an expired window forgets it
        return len(spent)

    async def run_sweeper(self) -> None:
        """Sweep every `interval` seconds until cancelled; a failed sweep is logged, not fatal."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                report = self.sweep()
            except Exception:
                log.exception("hosted sweep failed")
                continue
            if report.dropped or report.orphans:
                log.info("hosted sweep: %s", report)


def _full(why: str) -> ApiError:
    return ApiError(
        "CONFLICT",
        f"This workspace {why}, the most a hosted sandbox keeps for one visitor: send a new "
        "X-Sandbox-Workspace name (or open the docs in a new tab) to start again from the "
        "seeded data.",
    )


def policy_for(state: SandboxState) -> HostedPolicy:
    """The one policy of this sandbox, made on first use (a test may install its own first)."""
    policy: Any = state.extras.get(_EXTRAS_KEY)
    if policy is None:
        policy = state.extras[_EXTRAS_KEY] = HostedPolicy(state)
    return policy


def install(state: SandboxState, policy: HostedPolicy) -> None:
    """Use this policy (say, with a smaller change budget) for the sandbox built on `state`."""
    state.extras[_EXTRAS_KEY] = policy


def lifespans(state: SandboxState) -> list[Lifespan]:
    """The app's lifespan hooks for hosted mode: the sweeper task; nothing otherwise."""
    if not state.settings.hosted:
        return []

    @contextlib.asynccontextmanager
    async def sweeping(_app: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(policy_for(state).run_sweeper(), name="hosted-sweeper")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return [sweeping]


def demo_key(state: SandboxState) -> str | None:
    """The public demo key's secret, the one key a hosted docs page offers."""
    for k in state.recipe.keys:
        if k.name == DEMO_KEY_NAME:
            return k.key
    return None

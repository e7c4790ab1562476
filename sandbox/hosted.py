"""Hosted mode: the public "try it" backend, where strangers share one sandbox process.

Each visitor gets a workspace of their own, named by the `X-Sandbox-Workspace` header the docs
page sends (one random name per browser tab), else derived from their key and their address, so
two strangers who paste the same public key never share one. Nothing is allocated for a request
(workspace, rate bucket) until its caller is fully authenticated. The shared default workspace is
never lent out in hosted mode. Each client address has a rate budget of its own on top of the
key's, so rotating workspace names buys no extra requests.

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
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from litestar import Litestar

from opsmerge_sandbox.background import while_serving
from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.pipeline.audit import AuditModel
from opsmerge_sandbox.pipeline.authenticate import ApiKey
from opsmerge_sandbox.pipeline.headers import RequestHeaders
from opsmerge_sandbox.pipeline.read_request import READS
from opsmerge_sandbox.pipeline.workspace_name import WORKSPACE_HEADER, workspace_name
from opsmerge_sandbox.state import SandboxState
from opsmerge_sandbox.store.workspace import Workspace, Workspaces
from opsmerge_sandbox.stores import LeaseStore, RecordStore
from opsmerge_sandbox.world.key_records import last_use
from opsmerge_sandbox.world.recipe import demo_keys

log = logging.getLogger("sandbox.hosted")

MAX_CHANGES = 200  # records one visitor workspace may create, change or delete
MAX_WORKSPACE_BYTES = 1024 * 1024  # request-body bytes one visitor workspace may write
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # request-body bytes all visitor workspaces together keep
MAX_SWEEP_INTERVAL = 10.0  # seconds; also bounds how long spent rate-limit windows linger
ADDRESS_BUCKET = "address:"  # rate buckets per client address; ':' never occurs in a workspace

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did, for the log and for tests."""

    dropped: int  # workspaces dropped as idle or beyond the cap
    alive: int  # workspaces left
    windows: int  # spent rate-limit windows forgotten
    orphans: int  # change tables of workspaces that no longer exist


class Leases:
    """Visitor workspaces by last use, oldest first (eviction beyond the cap is O(1)), with the
    request-body bytes each has written: the in-memory LeaseStore."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._recent: OrderedDict[str, None] = OrderedDict((n, None) for n in names)
        self._bytes: dict[str, int] = {}
        self._total = 0

    def touch(self, name: str) -> bool:
        """Mark `name` as just used; True when it is new."""
        if name in self._recent:
            self._recent.move_to_end(name)
            return False
        self._recent[name] = None
        return True

    def oldest(self, besides: str | None = None) -> str | None:
        return next((n for n in self._recent if n != besides), None)

    def drop(self, name: str) -> None:
        self._recent.pop(name, None)
        self._total -= self._bytes.pop(name, 0)

    def charge(self, name: str, size: int) -> None:
        self._bytes[name] = self._bytes.get(name, 0) + size
        self._total += size

    def spent(self, name: str) -> int:
        return self._bytes.get(name, 0)

    def total(self) -> int:
        return self._total

    def names(self) -> list[str]:
        return list(self._recent)

    def __contains__(self, name: object) -> bool:
        return name in self._recent

    def __len__(self) -> int:
        return len(self._recent)


def changes_in(ws: Workspace, ignore: frozenset[str] = frozenset()) -> int:
    """How many records this workspace holds changes for (deleted creations still count).

    `ignore` names collections the sandbox writes on its own (the audit trail of the visitor's
    writes): they are bounded by the writes they record and are not the visitor's changes.
    """
    return sum(
        len(v.overrides) + len(v.seqs) + len(v.deferred)
        for name, v in ws.views.items()
        if name not in ignore
    )


def _unbudgeted(state: SandboxState) -> frozenset[str]:
    """Collections only the sandbox writes on a visitor's behalf, bounded by what they record:
    the audit entries of the visitor's writes, and the keys' last use (one record per key),
    when no API key can write the keys' collection itself."""
    spec = state.spec
    audit = AuditModel.from_spec(spec.resolved)
    if audit is None:
        return frozenset()
    shown = last_use(spec.resolved.get("x-sandbox-auth"))
    keys = shown[0] if shown is not None and audit.key_use is not None else None
    if keys is not None and any(
        op.hints.collection == keys and op.method not in READS and not op.session_only
        for op in spec.operations
    ):
        keys = None  # a visitor's own key records: their changes are budgeted
    return frozenset(c for c in (audit.collection, keys) if c is not None)


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
        self.workspaces: RecordStore = state.workspaces
        self.ttl = float(settings.hosted_workspace_ttl)
        self.cap = max(1, int(settings.hosted_max_workspaces))
        self.max_changes: int = max_changes or settings.hosted_max_changes or MAX_CHANGES
        self.max_workspace_bytes: int = (
            max_workspace_bytes or settings.hosted_max_workspace_bytes or MAX_WORKSPACE_BYTES
        )
        self.max_total_bytes: int = max_total_bytes or MAX_TOTAL_BYTES
        self.max_body = settings.max_body_bytes
        self.address_limit = max(1, int(settings.hosted_address_rate_limit))
        self.interval = max(0.05, min(MAX_SWEEP_INTERVAL, self.ttl / 4))
        self.leases: LeaseStore = Leases(
            n for n in self.workspaces.names() if n != Workspaces.DEFAULT
        )
        self.unbudgeted = _unbudgeted(state)

    @property
    def total_bytes(self) -> int:
        return self.leases.total()

    # ------------------------------------------------------------------ per request
    def name_for(self, headers: RequestHeaders, key: ApiKey, address: str) -> str:
        """The visitor's workspace name; nothing is allocated until `open` (after auth)."""
        name = workspace_name(headers.get(WORKSPACE_HEADER))
        if name is None:
            # Without the header, callers who share a key (the demo key, the README's keys) must
            # still not share a workspace: the key and the client address name it together.
            digest = hashlib.sha256(f"{key.id}|{address}".encode()).hexdigest()[:16]
            return f"key-{key.id}-{digest}"
        if name == Workspaces.DEFAULT:
            raise ApiError(
                "HEADER_INVALID",
                "X-Sandbox-Workspace 'default' is the shared workspace, which a hosted sandbox "
                "does not lend out: use a name of your own, or leave the header out.",
                [Detail("header", "X-Sandbox-Workspace", "'default' is not lent out")],
            )
        return name

    def open(self, name: str) -> Workspace:
        """The visitor workspace, created (and the least recently used evicted) if need be."""
        return self._visit(name)

    def admit_write(self, ws: Workspace, declared: int | None) -> None:
        """Refuse a write up front when the workspace's budgets are already spent."""
        if changes_in(ws, self.unbudgeted) >= self.max_changes:
            raise _full(f"already holds {self.max_changes} changed records")
        spent = self.leases.spent(ws.name)
        if declared is not None and declared > self.max_body:
            return  # refused unread (413) by the pipeline: nothing will be stored
        if spent + (declared or 0) > self.max_workspace_bytes or spent >= self.max_workspace_bytes:
            raise _full(f"has taken {self.max_workspace_bytes} bytes of request bodies")

    def charge(self, ws: Workspace, size: int) -> None:
        """Count an accepted write's body against its workspace and everyone's total.

        Only writes that changed something are charged: a refused body costs the visitor nothing.
        """
        leases = self.leases
        if ws.name not in leases:
            return  # evicted while the request was in flight: its changes are swept away
        leases.charge(ws.name, size)
        while leases.total() > self.max_total_bytes and len(leases) > 1:
            oldest = leases.oldest(besides=ws.name)
            if oldest is None:
                break
            self._evict(oldest)

    def address_bucket(self, address: str) -> str:
        return f"{ADDRESS_BUCKET}{address}"

    def hit_address(self, address: str) -> None:
        """Count one request against the client address's own budget (429 past it)."""
        if self.state.shared is not None:
            return  # counted in the request's one round trip with its key's hit
        self.state.limiter.hit(self.address_bucket(address), self.address_limit)

    def _visit(self, name: str) -> Workspace:
        leases = self.leases
        if name not in leases:
            while len(leases) >= self.cap:
                oldest = leases.oldest()
                if oldest is None:
                    break
                self._evict(oldest)
        leases.touch(name)
        return self.workspaces.get(name)

    def _evict(self, name: str) -> None:
        self.leases.drop(name)
        self.workspaces.reset(name)

    # ------------------------------------------------------------------ upkeep
    def sweep(self) -> SweepReport:
        """Drop idle workspaces and the oldest beyond the cap; forget what nobody can reach."""
        dropped = self.workspaces.drop_idle(self.ttl, keep=self.cap)
        alive = set(self.workspaces.names())
        for name in [n for n in self.leases.names() if n not in alive]:
            self.leases.drop(name)
        orphans = self.workspaces.drop_orphans()
        # rate-limit windows that ended are otherwise dropped only when read again
        return SweepReport(dropped, len(alive), self.state.limiter.forget_spent(), orphans)

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
    if state.hosted is None:
        if state.shared is not None:  # leases and budgets kept in Redis, for every replica
            state.hosted = state.shared.hosted_policy(state)
        else:
            state.hosted = HostedPolicy(state)
    return state.hosted


def install(state: SandboxState, policy: HostedPolicy) -> None:
    """Use this policy (say, with a smaller change budget) for the sandbox built on `state`."""
    state.hosted = policy


def lifespans(state: SandboxState) -> list[Lifespan]:
    """The app's lifespan hooks for hosted mode: the sweeper task; nothing otherwise."""
    if not state.settings.hosted:
        return []

    def sweeping(_app: Litestar) -> AbstractAsyncContextManager[None]:
        return while_serving(policy_for(state).run_sweeper, "hosted-sweeper")

    return [sweeping]


def demo_key(state: SandboxState) -> str | None:
    """The public demo key's secret, the one key a hosted docs page offers."""
    return next((k.key for k in demo_keys(state.recipe)), None)

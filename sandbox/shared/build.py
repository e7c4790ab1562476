"""A sandbox's state on a shared store: the same `SandboxState`, with the shared implementations
of each interface in `stores.py`, and what the pipeline and the control API need to use them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.commit import Commit
from opsmerge_sandbox.pipeline.handle import Handle
from opsmerge_sandbox.shared.buckets import SharedRateBuckets
from opsmerge_sandbox.shared.control import Control
from opsmerge_sandbox.shared.faults import SharedFaultRules
from opsmerge_sandbox.shared.hosted import SharedHostedPolicy
from opsmerge_sandbox.shared.journal import SharedJournal, stop
from opsmerge_sandbox.shared.link import Link, namespace
from opsmerge_sandbox.shared.records import SharedWorkspaces
from opsmerge_sandbox.shared.stages import SharedAdmission, SharedCommit, SharedHandle

if TYPE_CHECKING:
    from opsmerge_sandbox.hosted import HostedPolicy
    from opsmerge_sandbox.state import SandboxState
    from opsmerge_sandbox.store.workspace import Workspace

Stage = Callable[[Any], Any]


@dataclass(slots=True)
class Shared:
    """What a sandbox on shared state holds beyond the interfaces: the link and the control copy."""

    link: Link
    control: Control

    def admission(self, state: SandboxState, authenticate: Stage, resolve: Stage) -> Stage:
        return SharedAdmission(state, self.control, authenticate, resolve)

    def wrap(self, state: SandboxState, stage: Stage) -> Stage:
        """Handle takes the write lock before a write; Commit lets go of it."""
        if isinstance(stage, Handle):
            return SharedHandle(state, stage)
        if isinstance(stage, Commit):
            return SharedCommit(state, stage)
        return stage

    async def around(
        self, mutating: bool, workspaces: list[str], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        return await self.control.around(mutating, workspaces, call)

    def hosted_policy(self, state: SandboxState) -> HostedPolicy:
        """Hosted mode's policy on shared state: leases and budgets kept in Redis."""
        return SharedHostedPolicy(state)

    @contextlib.asynccontextmanager
    async def exclusive(self, records: SharedWorkspaces, name: str) -> AsyncIterator[Workspace]:
        """Work outside a request that writes (a rule's actions, a delivery's log entry, a
        clock pass): it holds the workspace's write lock as a request's write does, on the
        worker's copy caught up to Redis, and lets go once what it wrote is saved."""
        token = await records.lock(name)
        records.keeping.add(name)  # its commits leave the lock held: the work may write twice
        try:
            ws = records.get(name)
            yield ws
            with contextlib.suppress(ApiError):
                await ws.settled()
        finally:
            records.keeping.discard(name)
            await records.unlock(name, token)

    async def ready(self) -> bool:
        return await self.link.aping()

    async def close(self, state: SandboxState) -> None:
        if isinstance(state.journal, SharedJournal):
            await stop(state.journal)


def share(state: SandboxState) -> None:
    """Put `state`'s changing parts on the store its settings name (checked reachable: one
    ping), under the namespace of its spec and recipe (seed included)."""
    url = state.settings.state_url
    assert url is not None
    link = Link(url, namespace([state.spec.path.read_bytes(), repr(state.recipe).encode()]))
    link.ping()
    state.workspaces = SharedWorkspaces(state.bases, link)
    state.limiter = SharedRateBuckets(link)
    state.journal = SharedJournal(state.settings.journal_size, link)
    faults = SharedFaultRules(state.clock, link, revoke=lambda key_id: state.keys.revoke(key_id))
    state.faults = faults
    state.delta = None
    state.shared = Shared(link, Control(state, link, faults))

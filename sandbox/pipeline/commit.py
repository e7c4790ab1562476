"""Stage: encode the answer, then make the request's writes durable and visible.

It runs after the answer is built and checked, so no later error can leave a write applied
without its success answer. The write reaches the workspace's views at once (the next request
builds on it) and the answer waits until the store holds it; a write the store cannot save is
answered 503 STORE_UNAVAILABLE and memory goes back to what the store holds. An error answer
drops whatever the handler staged. A read whose only write is the hour's entry of its key's use
(`pipeline/key_use.py`, committed before the read ran) does not wait for the disk: the entry is
the sandbox's bookkeeping, not the caller's write (on shared state the append is awaited, as it
hands the workspace's write lock on). A committed write's events then fire the workspace's rules
(`events/engine.py`); a refused or failed write makes none. Any other answer from a workspace
with writes still on their way to disk waits for them, so no answer shows a change that may yet
be lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.envelope import encode
from opsmerge_sandbox.store.workspace import DONE

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from opsmerge_sandbox.events.engine import Change
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.state import SandboxState
    from opsmerge_sandbox.store.workspace import Durable, Workspace


class Commit:
    """A read with nothing on its way to disk, the common answer, passes without waiting (no
    coroutine of its own); so does a write the store holds on return (in memory) that no rule
    watches. A write on its way to disk, one whose events fire rules, and an answer behind
    unsettled writes wait."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def __call__(self, ctx: RequestContext) -> Awaitable[None] | None:
        ctx.encoded = encode(ctx.payload)
        ws = ctx.workspace
        if ws is None:
            return None
        if ws.owns(ctx.transaction) and ctx.status < 400:
            return self._commit(ctx, ws)
        ws.rollback(ctx.transaction)  # its own, if it opened one
        if ws.unsettled and not (ctx.logged_use and self.state.shared is None):
            return self._settle(ctx, ws)
        return None

    def _commit(self, ctx: RequestContext, ws: Workspace) -> Awaitable[None] | None:
        """Commit the request's write: at once when the store holds it on return (in memory)
        and no rule is watching, else a coroutine that waits for the disk and the rules."""
        events = self.state.events
        changes = events.capture(ws, ctx.op.hints.collection) if events is not None else None
        try:
            durable = ws.commit()
        except ApiError as err:
            self._refuse(ctx, err)
            return None
        if durable is not DONE:  # on its way to disk (a done future may still have failed)
            return self._durable(ctx, ws, durable, changes)
        return self._committed(ctx, ws, changes)

    async def _durable(
        self, ctx: RequestContext, ws: Workspace, durable: Durable, changes: list[Change] | None
    ) -> None:
        """The rest of a commit whose write is on its way to disk."""
        try:
            await durable
        except ApiError as err:
            self._refuse(ctx, err)
            return
        rules = self._committed(ctx, ws, changes)
        if rules is not None:
            await rules

    def _committed(
        self, ctx: RequestContext, ws: Workspace, changes: list[Change] | None
    ) -> Awaitable[None] | None:
        """What follows a write the store holds: its workspace's budget is charged, and its
        events fire the workspace's rules (the awaitable, when there are any)."""
        hosted = self.state.hosted
        if hosted is not None:
            hosted.charge(ws, len(ctx.raw_body))  # only accepted changes spend a budget
        events = self.state.events
        if not changes or events is None:
            return None
        return events.after_commit(ws, changes)

    async def _settle(self, ctx: RequestContext, ws: Workspace) -> None:
        try:
            await ws.settled()
        except ApiError as err:
            self._refuse(ctx, err)

    @staticmethod
    def _refuse(ctx: RequestContext, err: ApiError) -> None:
        ctx.answer_headers.update(err.headers)
        ctx.status, ctx.payload = err.status, err.body()
        ctx.encoded = encode(ctx.payload)

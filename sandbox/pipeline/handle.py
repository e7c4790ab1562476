"""Stage: run the operation's handler (its `x-sandbox` kind) on the caller's workspace.

A write's changes, and the audit entries recording them, are staged in a transaction here; the
commit stage makes them durable and visible once the answer is sure, so a request whose answer
fails later leaves nothing behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsmerge_sandbox.pipeline.audit import AuditTrail
from opsmerge_sandbox.pipeline.identity import Identity
from opsmerge_sandbox.pipeline.key_use import KeyUse
from opsmerge_sandbox.pipeline.read_request import READS
from opsmerge_sandbox.pipeline.resources import HandlerCall, Resources

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.authorize import RolePermissions
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.state import SandboxState


class Handle:
    def __init__(self, state: SandboxState, permissions: RolePermissions) -> None:
        self.resources = Resources(
            state.spec,
            state.clock,
            Identity(state, permissions),
            raw=not state.settings.strict,
            world_epoch=state.recipe.epoch.timestamp(),
            like=state.events.resources if state.events is not None else None,
        )
        self.audit = AuditTrail.from_spec(
            state.spec,
            state.clock.iso,
            self.resources.fill,
            state.settings.trusted_proxies,
            self.resources.rules,
            state.events.watched if state.events is not None else frozenset(),
        )
        if self.audit is not None:
            self.audit.shown = self.resources.as_clock_shows
        # the audit log's entry of a key's use, once a period (`pipeline/key_use.py`)
        self.key_use = KeyUse.from_spec(state.spec, self.audit, state.clock)
        events = state.events
        if events is not None:  # rules are checked as they are written (actions, webhook URLs)
            self.resources.write_checks[events.model.rules] = events.check_rule

    def __call__(self, ctx: RequestContext) -> None:
        ws = ctx.workspace
        assert ws is not None
        ex = HandlerCall(ctx.op, ws, ctx.caller, ctx.params, ctx.supplied, ctx.body, ctx.rate)
        key_use = self.key_use
        use = key_use.due(ctx) if key_use is not None else None
        if ctx.op.method not in READS:
            ctx.transaction = ws.begin()
            if use is not None:  # logged with the write's changes: a refused write logs nothing
                assert key_use is not None
                key_use.stage(ctx, ws, use)
        elif use is not None:  # committed before the read runs, so a read of the log shows it
            assert key_use is not None
            ws.begin()
            key_use.stage(ctx, ws, use)
            ws.commit()  # awaited (or not) by the commit stage, which sees `logged_use`
            ctx.logged_use = True
        ctx.status, data = self.resources.handle(ex)
        if self.audit is not None and ws.in_transaction:
            self.audit.record(ctx, ws)  # the write's audit entries, in its own transaction
        ctx.payload = {"data": data}

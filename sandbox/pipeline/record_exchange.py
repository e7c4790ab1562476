"""Stage: record the exchange in the journal (bounded; keys never, secrets redacted)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opsmerge_sandbox.journal import ENTRY, UNKNOWN_PARAMS, Entry
from opsmerge_sandbox.pipeline.validate import shown_names

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.state import SandboxState


class RecordExchange:
    def __init__(self, state: SandboxState) -> None:
        self.journal = state.journal
        self.clock = state.clock
        self.access_log = state.settings.access_log  # hand the entry to sandbox/access_log.py

    def __call__(self, ctx: RequestContext) -> None:
        scope = ctx.request.scope
        caller, ws = ctx.caller, ctx.workspace
        unknown: tuple[str, ...] | None = scope.get(UNKNOWN_PARAMS)  # type: ignore[assignment]
        entry = Entry(
            at=self.clock.now(),
            method=ctx.op.method,
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1")[:500],
            operation_id=ctx.op.operation_id,
            status=ctx.status,
            key_name=caller.key.name if caller else None,
            key_id=caller.key.id if caller else None,
            workspace=ws.name if ws else "-",
            fault=ctx.outcome.name if ctx.outcome else None,
            duration_ms=(time.perf_counter() - ctx.started) * 1000,
            unknown_params=tuple(shown_names(unknown)) if unknown else (),
        )
        self.journal.add(entry)
        if self.access_log:
            scope[ENTRY] = entry  # type: ignore[literal-required]  # the access log redacts what it prints itself

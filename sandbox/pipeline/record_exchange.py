"""Stage: record the exchange in the journal (bounded; keys never, secrets redacted)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opsmerge_sandbox.journal import ENTRY, UNKNOWN_PARAMS, Entry
from opsmerge_sandbox.pipeline.validate import shown_names

_new_entry = tuple.__new__

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
        # positionally, in Entry's field order: NamedTuple's own constructor is a Python
        # function matching twelve keywords, on every request
        entry = _new_entry(Entry, (
            self.clock.now(),
            ctx.op.method,
            scope["path"],
            scope.get("query_string", b"").decode("latin-1")[:500],
            ctx.op.operation_id,
            ctx.status,
            caller.key.name if caller else None,
            caller.key.id if caller else None,
            ws.name if ws else "-",
            ctx.outcome.name if ctx.outcome else None,
            (time.perf_counter() - ctx.started) * 1000,
            tuple(shown_names(unknown)) if unknown else (),
        ))
        self.journal.add(entry)
        if self.access_log:
            scope[ENTRY] = entry  # type: ignore[literal-required]  # the access log redacts what it prints itself

"""The spec's `x-invariants` that a write must keep (`on-write: refuse`), judged on the record a
create or update is about to store: a write that breaks one is refused with a 400 naming the
field, and nothing changes.

The same declarations the world checker evaluates; references are read from the workspace the
write goes to, and `$epoch` / `$today` are the sandbox clock's now.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.store.workspace import Workspace
from opsmerge_sandbox.world.conditions import Env, condition_fields
from opsmerge_sandbox.world.invariants import Invariant, check_record, compile_invariants

Record = dict[str, Any]


class WriteInvariants:
    """The per-record invariants marked `on-write: refuse`, by collection, compiled at start."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        self.schemas = schemas
        self.by_collection: dict[str, list[tuple[Invariant, frozenset[str]]]] = {}
        for inv in compile_invariants(schemas):
            if inv.per_record and inv.decl_on_write == "refuse":
                reads = frozenset(
                    condition_fields(inv.raw.get("when")) + condition_fields(inv.raw.get("require"))
                )
                self.by_collection.setdefault(inv.collection, []).append((inv, reads))

    def check(
        self,
        ws: Workspace,
        collection: str,
        record: Record,
        now: int,
        changed: Container[str] | None = None,
    ) -> None:
        """Refuse the record (400 VALIDATION_ERROR naming the field) if it breaks one; on an
        update only the invariants reading a changed field are judged."""
        rules = self.by_collection.get(collection)
        if not rules:
            return
        env = Env(ws.get, now, {}, self.schemas)
        for inv, reads in rules:
            if changed is not None and not any(f in changed for f in reads):
                continue
            why = check_record(inv, record, env)
            if why is not None:
                field = why.split(" ", 1)[0].split("->", 1)[0]
                message = inv.message or f"breaks the rule {inv.id}"
                raise ApiError(
                    "VALIDATION_ERROR",
                    f"{field}: {message} ({why}).",
                    [Detail("body", field, f"{message} ({why})")],
                )

"""`x-closed`: when a record stops being referred to anew (an archived client gets no new
tickets, a disabled rule no new firings).

Declared on the collection whose records close:

    x-closed: {when: {status: [archived]}, since: updated_at}

From the `since` time of a record `when` holds for, nothing made later names it, except through
a history reference (`x-ref.history`: a log entry may name whatever it was about). The generator
keeps a record it makes before the closing of everything it names; the checker's `refs-open`
rule judges the same declaration. Neither names a collection: the spec does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opsmerge_sandbox.world.conditions import Condition, Schemas, compile_condition, to_seconds
from opsmerge_sandbox.world.ref_hints import ref_hints

__all__ = ["Closing", "closing_problems", "closing_references", "closings"]


@dataclass(frozen=True, slots=True)
class Closing:
    """How a collection's records close: the state that closes one, and the field saying since
    when."""

    when: Condition
    since: str

    def closed_at(self, record: Mapping[str, Any], env: Any) -> int | None:
        """Seconds since which the record is closed, None while it is open."""
        if not self.when(record, env):
            return None
        return to_seconds(record.get(self.since))


def _compile(name: str, decl: Any, schemas: Schemas) -> Closing:
    if not isinstance(decl, Mapping) or not isinstance(decl.get("when"), Mapping):
        raise ValueError("x-closed needs `when` (a condition) and `since` (a time field)")
    since = decl.get("since")
    props = (schemas.get(name) or {}).get("properties") or {}
    if since not in props:
        raise ValueError(f"x-closed.since {since!r} is not a field of {name}")
    return Closing(compile_condition(name, decl["when"], schemas), str(since))


def closings(schemas: Schemas) -> dict[str, Closing]:
    """Each collection's `x-closed`, compiled; raises ValueError naming a bad declaration."""
    out = {}
    for name, schema in schemas.items():
        decl = schema.get("x-closed")
        if decl is not None:
            try:
                out[name] = _compile(name, decl, schemas)
            except ValueError as exc:  # ConditionError is one
                raise ValueError(f"{name}: {exc}") from None
    return out


def closing_problems(schemas: Schemas) -> list[tuple[str, str]]:
    """(collection, problem) for each `x-closed` that does not compile: for `spec check`."""
    problems = []
    for name, schema in schemas.items():
        if schema.get("x-closed") is not None:
            try:
                _compile(name, schema["x-closed"], schemas)
            except ValueError as exc:
                problems.append((name, str(exc)))
    return problems


def closing_references(schemas: Schemas) -> dict[str, list[tuple[str, str]]]:
    """By collection, (field, collection it names) of each reference to a collection with
    `x-closed`, history references left out: the fields a write may not point at a closed
    record anew (`pipeline/state_guards.py`), and that the contract harness steers clear of."""
    closing = {n for n, schema in schemas.items() if schema.get("x-closed") is not None}
    out: dict[str, list[tuple[str, str]]] = {}
    for name, schema in schemas.items():
        for ref in ref_hints(schema):
            if ref.fixed in closing and not ref.history:
                out.setdefault(name, []).append((ref.name, ref.fixed))
    return out

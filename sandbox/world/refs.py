"""Reference makers (`x-ref`): pick a record of an earlier collection, optionally among those
matching `where`, copy its fields, and agree with records this one already points at."""

from __future__ import annotations

from typing import Any

from opsmerge_sandbox.spec import ref_of
from opsmerge_sandbox.world.context import Draft, FieldPlan, GenerationError, Schema, WorldContext
from opsmerge_sandbox.world.hints import nullable

__all__ = ["has_ref", "ref_by_plan", "ref_plan"]


def ref_plan(
    name: str,
    schema: Schema,
    ctx: WorldContext,
    null_p: float,
    sharing: list[str],
    where_label: str,
) -> FieldPlan:
    """The plan of an `x-ref` field; `sharing` are earlier reference fields to agree with."""
    target, copy, where = ref_of(schema)  # type: ignore[misc]
    can_be_null = nullable(schema)
    deps = tuple(where.values())
    target_ids = ctx.ids.get(target, [])

    def link(d: Draft, index: int) -> None:
        d.refs[name] = (target, index)
        if copy:
            other = ctx.world[target][index]
            for mine, theirs in copy.items():
                if mine not in d.fixed:
                    d.rec[mine] = other.get(theirs)

    def on_fixed(d: Draft, value: Any) -> None:
        if value is not None:
            index = ctx.index_of(target, value)
            if index is None:
                raise GenerationError(f"{where_label}: {value!r} is not a record of {target}")
            link(d, index)

    def make(d: Draft) -> str | None:
        rng = d.rng
        if null_p and rng.random() < null_p:
            return None
        for earlier in sharing:  # agree with a record this one already points at
            ref = d.refs.get(earlier)
            if ref is not None:
                value = ctx.world[ref[0]][ref[1]].get(name)
                if value is not None:
                    index = ctx.index_of(target, value)
                    if index is not None:
                        link(d, index)
                        return value
        if where:
            candidates: list[int] | None = None
            for theirs, mine in where.items():
                matches = ctx.indices_where(target, theirs).get(d.rec.get(mine), [])
                candidates = (
                    matches if candidates is None else [i for i in candidates if i in matches]
                )
            if not candidates:
                return None
            index = candidates[int(rng.random() * len(candidates))]
        else:
            count = ctx.counts.get(target, 0)
            if count == 0:
                if can_be_null:
                    return None
                raise GenerationError(f"{where_label} refers to {target}, which has no records")
            index = int(rng.random() * count)
        link(d, index)
        return target_ids[index]

    return FieldPlan(name, make, deps, on_fixed)


def has_ref(ctx: WorldContext, collection: str, field_name: str, target: str) -> bool:
    """Whether `collection` has a field of that name referring to `target`."""
    prop = (ctx.schemas.get(collection) or {}).get("properties", {}).get(field_name)
    if not prop:
        return False
    ref = ref_of(prop)
    return ref is not None and ref[0] == target


def ref_by_plan(name: str, schema: Schema, ctx: WorldContext, null_p: float) -> FieldPlan:
    """The plan of an `x-ref-by` field: a reference whose collection depends on another field.

    `{field: object_type, collections: {ticket: tickets, ...}}` makes an audit entry about a
    ticket point at a ticket that exists; a value with no collection leaves the field null.
    """
    rule = schema["x-ref-by"]
    source: str = rule["field"]
    targets: dict[Any, str] = dict(rule["collections"])

    def make(d: Draft) -> str | None:
        target = targets.get(d.rec.get(source))
        count = ctx.counts.get(target, 0) if target is not None else 0
        if target is None or count == 0 or (null_p and d.rng.random() < null_p):
            return None
        index = int(d.rng.random() * count)
        d.refs[name] = (target, index)
        return ctx.ids[target][index]

    return FieldPlan(name, make, (source,))

"""Reference makers (`x-ref`): pick a record of an earlier collection, optionally among those
matching `where`, copy its fields, and agree with records this one already points at."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opsmerge_sandbox.ref_options import cover_rounds, ref_of, rest_where
from opsmerge_sandbox.world.conditions import (
    Condition,
    ConditionError,
    Env,
    compile_condition,
    compile_path,
    path_head,
    to_seconds,
)
from opsmerge_sandbox.world.context import (
    Draft,
    FieldPlan,
    GenerationError,
    Redraw,
    Schema,
    WorldContext,
)
from opsmerge_sandbox.world.hints import nullable

__all__ = ["has_ref", "ref_by_plan", "ref_list_plan", "ref_plan"]

_TRIES = 16  # random draws an `existed-at` reference tries before it scans every candidate


def _path_reader(get: Callable[[Any, Env], Any], env: Env) -> Callable[[Draft], Any]:
    return lambda d: get(d.rec, env)


def _field_reader(name: str) -> Callable[[Draft], Any]:
    return lambda d: d.rec.get(name)


def _where_parts(
    target: str, where: dict[str, Any], ctx: WorldContext, label: str
) -> tuple[list[tuple[str, Callable[[Draft], Any]]], Condition | None, list[str]]:
    """Split `where` into matches on this record's values (`theirs: my field or path`) and a
    fixed filter on the target's records (`theirs: [values]` or a test), with what it waits for."""
    dynamic: list[tuple[str, Callable[[Draft], Any]]] = []
    fixed: dict[str, Any] = {}
    deps: list[str] = []
    env = ctx.env
    for theirs, mine in where.items():
        if isinstance(mine, str):
            head = path_head(mine) or mine
            deps.append(head)
            if "->" in mine:
                dynamic.append((theirs, _path_reader(compile_path(label, mine, ctx.schemas), env)))
            else:
                dynamic.append((theirs, _field_reader(mine)))
        else:
            fixed[theirs] = mine
    try:
        static = compile_condition(target, fixed, ctx.schemas) if fixed else None
    except ConditionError as exc:
        raise GenerationError(f"{label}: x-ref.where: {exc}") from None
    return dynamic, static, deps


def _candidates(
    ctx: WorldContext,
    target: str,
    d: Draft,
    dynamic: list[tuple[str, Callable[[Draft], Any]]],
    static: Condition | None,
) -> list[int] | None:
    """Indices of target records that `where` allows, or None when it allows them all."""
    candidates: list[int] | None = None
    if static is not None:
        candidates = ctx.matching(target, static)
    for theirs, read in dynamic:
        value = read(d)
        table = ctx.indices_where(target, theirs)
        if isinstance(value, list):
            matches = ctx.union_of(target, theirs, tuple(value), table)
        else:
            matches = table.get(value, [])
        if candidates is None:
            candidates = matches
        else:
            allowed = set(matches)
            candidates = [i for i in candidates if i in allowed]
    return candidates


def ref_plan(
    name: str,
    schema: Schema,
    ctx: WorldContext,
    null_p: float,
    sharing: list[str],
    where_label: str,
    scope: str | None = None,
) -> FieldPlan:
    """The plan of an `x-ref` field; `sharing` are earlier reference fields to agree with.

    `where` narrows the records it may name (`{their field: my field or path}` must match;
    `{their field or path: [values] or a test}` filters); `cover: true` makes record *i* name
    record *i* of the target (of those a fixed `where` admits) while there are target records
    left, so every one is named once, and `rest-where` (a fixed filter) says what the records
    past them name (a failing check raises one alert still open; the other alerts were raised
    by checks that have since passed again); `cover-with: {field, values}` names every target
    once per value, in rounds, the record holding the round's value in `field` (every agent
    runs its CPU, memory and disk checks);
    `unique: true` names each target record at most once in the collection (an event that
    happens once to a record: a record with none left to name is drawn again); `existed-at: path`
    names only a record created by the time the path gives (whoever acted on a record existed
    when it was made); a record whose creation time is given (a run of `x-runs`) names only
    records created by then.
    """
    target, copy, where = ref_of(schema)  # type: ignore[misc]
    raw = schema.get("x-ref")
    options = raw if isinstance(raw, dict) else {}
    cover = options.get("cover") is True
    unique = options.get("unique") is True
    can_be_null = nullable(schema)
    dynamic, static, deps = _where_parts(target, where, ctx, scope or where_label)
    if unique and (dynamic or cover):
        raise GenerationError(f"{where_label}: x-ref.unique takes a fixed `where` only")
    try:  # (field, values): one round of the targets per value; what the rest name
        rounds, rest = cover_rounds(options), rest_where(options)
    except ValueError as exc:
        raise GenerationError(f"{where_label}: {exc}") from None
    rest_static: Condition | None = None
    if rest is not None:
        rest_dynamic, rest_static, _ = _where_parts(target, dict(rest), ctx, scope or where_label)
        if rest_dynamic or rest_static is None:
            raise GenerationError(f"{where_label}: x-ref.rest-where takes a fixed filter")
    target_ids = ctx.ids.get(target, [])
    existed = _existed_at(options.get("existed-at"), ctx, scope or where_label, where_label)
    if existed is not None:
        deps.append(existed[0])
    pool: list[list[int]] = []  # the records a unique reference has not named yet

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
            if unique and index in _left():  # a named record's reference is taken too
                _left().remove(index)
            link(d, index)

    def _left() -> list[int]:
        if not pool:
            every = ctx.matching(target, static) if static is not None else None
            pool.append(list(every if every is not None else range(ctx.counts.get(target, 0))))
        return pool[0]

    def _existing(d: Draft, candidates: list[int] | None, given: int | None = None) -> int | None:
        """A candidate created no later than the `existed-at` time, or the `given` one (any,
        when it is null)."""
        bound = given if existed is None else to_seconds(existed[1](d.rec, ctx.env))
        count = len(candidates) if candidates is not None else ctx.counts.get(target, 0)
        if count == 0:
            return None
        created = ctx.created.get(target, [])
        rng = d.rng
        for _ in range(_TRIES):  # most candidates fit: a few draws spare a scan of them all
            i = int(rng.random() * count)
            index = candidates[i] if candidates is not None else i
            if bound is None or created[index] <= bound:
                return index
        every = candidates if candidates is not None else range(count)
        fits = [i for i in every if created[i] <= bound]  # type: ignore[operator]
        return fits[int(rng.random() * len(fits))] if fits else None

    def make(d: Draft) -> str | None:
        rng = d.rng
        if cover:
            index = _cover_index(d)
            if index is not None:
                link(d, index)
                return target_ids[index]
        if null_p and rng.random() < null_p:
            return None
        if rest_static is not None:  # past the covered records
            rest_of = ctx.matching(target, rest_static)
            if not rest_of:
                return None
            index = rest_of[int(rng.random() * len(rest_of))]
            link(d, index)
            return target_ids[index]
        for earlier in sharing:  # agree with a record this one already points at
            ref = d.refs.get(earlier)
            if ref is not None:
                value = ctx.world[ref[0]][ref[1]].get(name)
                if value is not None:
                    index = ctx.index_of(target, value)
                    if index is not None:
                        link(d, index)
                        return value
        if unique:
            index = _claim(d, _left())
        elif existed is not None or "created_at" in d.fixed:
            # a record made at a given time (a contract's run) names what existed by then
            given = to_seconds(d.rec["created_at"]) if existed is None else None
            found = _existing(d, _candidates(ctx, target, d, dynamic, static), given)
            if found is None:
                return None
            index = found
        elif dynamic or static is not None:
            candidates = _candidates(ctx, target, d, dynamic, static)
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

    def _cover_index(d: Draft) -> int | None:
        own_id = d.rec.get("id")
        i = ctx.index_of(scope, own_id) if scope and isinstance(own_id, str) else None
        if i is None:
            return None
        # record i names the i-th target the fixed `where` admits
        admitted = ctx.matching(target, static) if static is not None else None
        n = len(admitted) if admitted is not None else ctx.counts.get(target, 0)
        if rounds is not None and n:  # round i // n names every target again, with its value
            field, values = rounds
            if i >= n * len(values):
                return None
            d.rec[field] = values[i // n]
            i %= n
        if i >= n:
            return None
        return admitted[i] if admitted is not None else i

    return FieldPlan(name, make, tuple(deps), on_fixed)


def ref_list_plan(
    name: str, schema: Schema, ctx: WorldContext, label: str, scope: str
) -> FieldPlan:
    """A list of references (`items.x-ref`, with `where` as for one) of 1 to `x-faker.max`
    records; the record is created after the latest of them."""
    items = schema.get("items") or {}
    target, _copy, where = ref_of(items)  # type: ignore[misc]
    dynamic, static, deps = _where_parts(target, where, ctx, scope)
    hint = schema.get("x-faker")
    min_items = int(schema.get("minItems", 0))
    low = max(min_items, 1)
    top = int(hint.get("max", 1)) if isinstance(hint, dict) else low
    ids = ctx.ids.get(target, [])

    def make(d: Draft) -> list[str]:
        candidates = _candidates(ctx, target, d, dynamic, static)
        count = len(candidates) if candidates is not None else ctx.counts.get(target, 0)
        if count == 0:
            if min_items:
                raise GenerationError(f"{label} refers to {target}, which has no records to name")
            return []
        k = min(count, d.rng.randint(low, max(low, top)))
        picked = d.rng.sample(range(count), k)
        indices = [candidates[i] for i in picked] if candidates is not None else picked
        created = ctx.created.get(target)
        if created:
            d.not_before = max(d.not_before, *(created[i] for i in indices if i < len(created)))
        return [ids[i] for i in indices]

    return FieldPlan(name, make, tuple(deps))


def _claim(d: Draft, left: list[int]) -> int:
    """Take one of the records a unique reference has left (the draft may give it back);
    with none left, the record is drawn again."""
    if not left:
        raise Redraw
    j = int(d.rng.random() * len(left))
    index = left[j]
    left[j] = left[-1]
    left.pop()
    d.claims.append((left, index))
    return index


def _existed_at(
    path: Any, ctx: WorldContext, scope: str, label: str
) -> tuple[str, Callable[[Any, Env], Any]] | None:
    """(the field it waits for, a reader) of an `x-ref.existed-at` path, None without one."""
    if path is None:
        return None
    try:
        get = compile_path(scope, str(path), ctx.schemas)
    except ConditionError as exc:
        raise GenerationError(f"{label}: x-ref.existed-at: {exc}") from None
    return path_head(str(path)) or str(path), get


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
    `unique: true` names each record at most once, as `x-ref.unique` does.
    """
    rule = schema["x-ref-by"]
    source: str = rule["field"]
    targets: dict[Any, str] = dict(rule["collections"])
    unique = rule.get("unique") is True
    pools: dict[str, list[int]] = {}  # per collection, what a unique reference has not named

    def take(d: Draft, target: str, count: int) -> int:
        left = pools.get(target)
        if left is None:
            left = pools[target] = list(range(count))
        return _claim(d, left)

    def make(d: Draft) -> str | None:
        target = targets.get(d.rec.get(source))
        count = ctx.counts.get(target, 0) if target is not None else 0
        if target is None or count == 0 or (null_p and d.rng.random() < null_p):
            return None
        index = take(d, target, count) if unique else int(d.rng.random() * count)
        d.refs[name] = (target, index)
        return ctx.ids[target][index]

    return FieldPlan(name, make, (source,))

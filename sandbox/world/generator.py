"""The seeded world: a pure function of (spec, recipe).

Every collection the spec declares (`x-collection`) gets `max(count, named records)` records.
Record *i* of collection *c* draws from its own random stream, seeded by a stable hash of
(seed, c, i), and looks only at records of collections generated before it (the ones it refers
to), so it depends on nothing but the seed, *c*, *i* and the recipe's counts: adding a
collection, or generating in another process, changes no existing record.
"""

from __future__ import annotations

import _random
import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opsmerge_sandbox.spec import Collection, Spec, ref_arms, ref_copies, ref_of
from opsmerge_sandbox.world.cases import take_turns
from opsmerge_sandbox.world.computed_fields import derive_fields, has_computed, settle_seeded
from opsmerge_sandbox.world.conditions import Condition, compile_condition
from opsmerge_sandbox.world.counts import count_targets
from opsmerge_sandbox.world.key_records import KeyRecords, key_records, last_use
from opsmerge_sandbox.world.recipe import KeySpec, Recipe
from opsmerge_sandbox.world.runs import run_records
from opsmerge_sandbox.world.succession import succeed
from opsmerge_sandbox.world.values import (
    DAY,
    Draft,
    FieldPlan,
    GenerationError,
    Redraw,
    WorldContext,
    compile_plans,
    format_datetime,
    object_maker,
    order_plans,
    parse_time,
)

World = dict[str, list[dict[str, Any]]]

__all__ = [
    "GenerationError",
    "World",
    "build_world",
    "generation_order",
    "key_collection",
    "world_size",
]


def _targets(schema: dict[str, Any]) -> set[str]:
    """Collections a schema refers to, at any depth (array items, nested objects)."""
    found: set[str] = set()
    for hint in ref_arms(schema):  # its own reference, and those of its cases
        ref = ref_of(hint)
        if ref is not None:
            found.add(ref[0])
        by = hint.get("x-ref-by")
        if isinstance(by, dict):
            found |= set((by.get("collections") or {}).values())
    for prop in (schema.get("properties") or {}).values():
        found |= _targets(prop)
    if isinstance(schema.get("items"), dict):
        found |= _targets(schema["items"])
    return found


def generation_order(collections: dict[str, Collection]) -> list[str]:
    """Collections with everything they refer to or count first; spec order otherwise. Cycles
    fail."""
    deps = {
        name: {t for t in _targets(c.schema) | set(count_targets(c.schema)) if t != name}
        for name, c in collections.items()
    }
    for name, c in collections.items():
        for field, prop in (c.schema.get("properties") or {}).items():
            ref = ref_of(prop)
            if ref is not None and ref[0] == name and (ref[1] or ref[2]):
                raise GenerationError(
                    f"{name}.{field}: a reference to its own collection cannot copy or match "
                    "fields (those records are not generated yet)"
                )
    for name, targets in deps.items():
        unknown = targets - collections.keys()
        if unknown:
            raise GenerationError(f"{name} refers to unknown collection(s) {sorted(unknown)}")
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise GenerationError(f"x-ref cycle between collections: {' -> '.join(cycle)}")
        state[name] = 1
        for target in sorted(deps[name], key=list(collections).index):
            visit(target, (*path, name))
        state[name] = 2
        order.append(name)

    for name in collections:
        visit(name, ())
    return order


def key_mapping(spec: Spec) -> KeyRecords | None:
    """The spec's `x-sandbox-auth.keys`: which collection mirrors the recipe's keys, and how."""
    properties = {n: (c.schema.get("properties") or {}) for n, c in spec.collections.items()}
    try:
        return key_records(spec.resolved.get("x-sandbox-auth"), properties)
    except ValueError as exc:
        raise GenerationError(str(exc)) from None


def key_collection(spec: Spec, recipe: Recipe) -> str | None:
    """The collection that lists the recipe's API keys, if the spec names one and there are keys."""
    mapping = _mirrored_keys(spec, recipe)
    return mapping.collection if mapping is not None else None


def _mirrored_keys(spec: Spec, recipe: Recipe) -> KeyRecords | None:
    """The spec's key mapping when there are keys to mirror; their ids must use the id prefix of
    the collection that lists them (they are its records' ids)."""
    mapping = key_mapping(spec)
    if mapping is None or not recipe.keys:
        return None
    prefix = spec.collections[mapping.collection].id_prefix
    strays = [k.id for k in recipe.keys if not k.id.startswith(f"{prefix}_")]
    if strays:
        raise GenerationError(
            f"recipe keys {strays} do not use the id prefix {prefix!r} of {mapping.collection}, "
            "the collection that lists them"
        )
    return mapping


def _named_records(spec: Spec, recipe: Recipe) -> dict[str, list[dict[str, Any]]]:
    named = {c: list(recs) for c, recs in recipe.records.items() if c in spec.collections}
    mapping = _mirrored_keys(spec, recipe)
    if mapping is not None:
        keys_at = mapping.collection
        mirrored = [mapping.record(k) for k in recipe.keys]
        ids = {r["id"] for r in mirrored}
        named[keys_at] = [*mirrored, *(r for r in named.get(keys_at, []) if r["id"] not in ids)]
    for coll, recs in named.items():
        props = spec.collections[coll].schema.get("properties") or {}
        for rec in recs:
            unknown = sorted(set(rec) - set(props))
            if unknown:
                raise GenerationError(
                    f"recipe record {coll} {rec['id']} has fields not in the schema: {unknown}"
                )
    return named


def _needed(order: list[str], collections: dict[str, Collection], wanted: set[str]) -> set[str]:
    needed = set(wanted)
    for name in reversed(order):
        if name in needed:
            needed |= _targets(collections[name].schema) - {name}
    return needed


Progress = Callable[[str, int, int], None]  # (collection, records done, records in all)
_REPORT_EVERY = 4096
_DRAWS = 200  # draws of one record before a unique reference with nothing left fails the build


def _generate(
    collection: Collection,
    ctx: WorldContext,
    named: list[dict[str, Any]],
    seed: int,
    year: int,
    progress: Progress | None = None,
    done_before: int = 0,
    total: int = 0,
) -> None:
    name = collection.name
    props = list((collection.schema.get("properties") or {}).keys())
    plans = order_plans(compile_plans(collection.schema, ctx, name, own=name), name)
    copied = {mine for p in props for mine in ref_copies(collection.schema["properties"][p])}
    fast = [(p.name, p.make, p.name in copied) for p in plans]
    computed = has_computed(collection)
    count = ctx.counts[name]
    ids = ctx.ids[name]
    records: list[dict[str, Any]] = []
    created: list[int] = []
    ctx.world[name] = records
    ctx.created[name] = created
    epoch = ctx.epoch
    # the runs of a schedule other records keep (a contract's invoice runs) are made as named
    # records are, with what the run gives
    runs = run_records(collection.schema.get("x-runs"), ctx, name, count - len(named))
    named = [*named, *({"id": ids[len(named) + j], **run} for j, run in enumerate(runs))]
    n_named = len(named)
    prefix = f"{seed}:{name}:".encode()
    blake2b = hashlib.blake2b
    from_bytes = int.from_bytes
    # One generator, re-seeded per record through the C seed (what Random(n) does for an int,
    # without the Python-level wrapper): each record still gets its own stream.
    rng = random.Random()
    reseed = _random.Random.seed
    distinct = _distinct_rules(collection, ctx)
    for i in range(count):
        if progress is not None and i % _REPORT_EVERY == 0:
            progress(name, done_before + i, total)
        reseed(rng, from_bytes(blake2b(prefix + str(i).encode(), digest_size=8).digest(), "big"))
        rng.gauss_next = None  # type: ignore[attr-defined]  # CPython's cached normal deviate
        last = ""
        for _ in range(_DRAWS):
            if i < n_named:
                draft = Draft(rng, dict(named[i]), frozenset(named[i]))
            else:
                rec = {"id": ids[i]}
                draft = Draft(rng, rec)
            try:
                if i < n_named:
                    _fill_named(draft, plans)
                else:
                    for field, make, maybe_set in fast:
                        if maybe_set and field in rec:
                            continue
                        rec[field] = make(draft)
                if distinct:
                    _claim_distinct(distinct, draft.rec, ctx)
                break
            except Redraw as exc:
                last = str(exc)
                for left, index in reversed(draft.claims):  # what it took is free again
                    left.append(index)
        else:
            why = f" (its last draw: {last})" if last else ""
            raise GenerationError(
                f"{name}: record {ids[i]} drawn {_DRAWS} times and never finished{why}: a unique "
                "reference with no record left to name, a unique rule whose values ran out (more "
                "records than it allows: fewer of them, or more of what they are spread over), "
                "a change with no value to come from, or a record it names made after another it "
                "names had closed"
            )
        rec = draft.rec
        if computed:
            derive_fields(collection, rec, i + 1, year)
            if i < n_named:
                rec.update(named[i])  # a named record's own values win over computed ones
        records.append({k: rec[k] for k in props if k in rec})
        created.append(draft.times.get("created_at", epoch))
    settle_seeded(collection, records)  # rules over the whole collection (numbers by date)
    # a parent's records that read as a conversation, in turn
    take_turns(name, collection.schema.get("properties") or {}, records, ctx)
    # an owner's records that replace each other end as the next starts
    succeed(name, collection.schema.get("x-succession"), records, ctx)


# (invariant id, its fields, its `when`, the values taken)
Distinct = list[tuple[str, tuple[str, ...], Condition, set[tuple[Any, ...]]]]


def _distinct_rules(collection: Collection, ctx: WorldContext) -> Distinct:
    """The collection's `unique` invariants, each with the values its records have taken: a
    record that would repeat one is drawn again (two agents of a client do not share a
    hostname), so the checker's rule holds by construction."""
    out: Distinct = []
    for inv in collection.schema.get("x-invariants") or ():
        fields = inv.get("unique") if isinstance(inv, dict) else None
        if isinstance(fields, list) and fields:
            when = compile_condition(collection.name, inv.get("when") or {}, ctx.schemas)
            out.append((str(inv.get("id")), tuple(str(f) for f in fields), when, set()))
    return out


def _claim_distinct(distinct: Distinct, rec: dict[str, Any], ctx: WorldContext) -> None:
    """Take the record's values for each `unique` rule, or Redraw when one is taken (nothing
    is taken then)."""
    keys = []
    for rule, fields, when, taken in distinct:
        if when(rec, ctx.env):
            key = tuple(_hashable(rec.get(f)) for f in fields)
            if key in taken:
                shown = ", ".join(f"{f} = {v!r}" for f, v in zip(fields, key, strict=True))
                raise Redraw(f"the unique rule {rule}: {shown} is taken")
            keys.append((taken, key))
    for taken, key in keys:
        taken.add(key)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _fill_named(draft: Draft, plans: list[FieldPlan]) -> None:
    """Make what a named record's recipe leaves out; what it gives is kept (and read)."""
    rec = draft.rec
    for plan in plans:
        if plan.name in rec:
            if plan.on_fixed is not None:
                plan.on_fixed(draft, rec[plan.name])
            continue
        rec[plan.name] = plan.make(draft)


def _finish_keys(
    records: list[dict[str, Any]],
    created: list[int],
    keys: tuple[KeySpec, ...],
    mapping: KeyRecords,
) -> None:
    """Keys that expired were created before they expired; revoked ones say when."""
    by_id = {k.id: k for k in keys}
    revoked_fields = mapping.revoked_fields()
    for i, rec in enumerate(records):
        key = by_id.get(rec["id"])
        if key is None:
            continue
        if key.expires_at and "created_at" in rec and rec["created_at"] >= key.expires_at:
            moment = parse_time(key.expires_at) - 90 * DAY
            rec["created_at"] = format_datetime(moment)
            created[i] = moment
        for field in revoked_fields:
            if field in rec:
                rec[field] = rec.get("updated_at") if key.revoked else None


def world_size(spec: Spec, recipe: Recipe) -> int:
    """How many records `build_world` makes (named records count where they exceed the count)."""
    named = recipe.records
    return sum(
        max(recipe.counts.get(name, 0), len(named.get(name, ()))) for name in spec.collections
    )


def build_world(
    spec: Spec,
    recipe: Recipe,
    *,
    collections: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> World:
    """Generate the seeded world: one list per collection of the spec, records in index order.

    `collections` limits generation to those collections and what they refer to (the others
    come back empty); records are the same either way. `progress` hears how far it got, every
    few thousand records.
    """
    named = _named_records(spec, recipe)
    counts = {
        name: max(recipe.counts.get(name, 0), len(named.get(name, ()))) for name in spec.collections
    }
    order = generation_order(spec.collections)
    mapping = _mirrored_keys(spec, recipe)
    uses = _key_uses(spec, mapping)
    if collections is not None:
        needed = _needed(order, spec.collections, set(collections))
        if uses is not None and mapping is not None and mapping.collection in needed:
            # a key's last use is read off the log: the keys are the same either way
            needed = _needed(order, spec.collections, {*needed, uses.collection})
        order = [c for c in order if c in needed]
    ctx = WorldContext(
        seed=recipe.seed,
        epoch=int(recipe.epoch.timestamp()),
        counts=counts,
        prefixes={n: c.id_prefix for n, c in spec.collections.items()},
        named_ids={n: [r["id"] for r in recs] for n, recs in named.items()},
        schemas={n: c.schema for n, c in spec.collections.items()},
        organisation=recipe.organisation,
    )
    ctx.object_maker = object_maker
    for name, ids in ctx.ids.items():
        if len(set(ids)) != len(ids):
            taken = sorted(i for i, n in Counter(ids).items() if n > 1)
            raise GenerationError(f"{name}: a named record takes a generated id: {taken}")
    total = sum(counts[name] for name in order)
    done = 0
    for name in order:
        _generate(
            spec.collections[name], ctx, named.get(name, []), recipe.seed, recipe.epoch.year,
            progress, done, total,
        )
        if mapping is not None and name == mapping.collection:
            # before anything that refers to the keys reads when one was made or revoked
            _finish_keys(ctx.world[name], ctx.created[name], recipe.keys, mapping)
        done += counts[name]
    if uses is not None and mapping is not None and mapping.collection in ctx.world:
        _last_uses(ctx.world[mapping.collection], ctx.world.get(uses.collection, []), uses)
    if progress is not None:
        progress("", total, total)
    return {name: ctx.world.get(name, []) for name in spec.collections}


@dataclass(frozen=True, slots=True)
class _KeyUses:
    """Where the log keeps a key's uses, and the key records' fields that show the last one."""

    collection: str
    action_field: str
    object_field: str
    action: str
    fields: tuple[str, ...]


def _key_uses(spec: Spec, mapping: KeyRecords | None) -> _KeyUses | None:
    """None unless the keys show their last use and the log records uses."""
    # read here: the audit trail reads the key mapping from this package
    from opsmerge_sandbox.pipeline.audit import AuditModel

    shown = last_use(spec.resolved.get("x-sandbox-auth")) if mapping is not None else None
    model = AuditModel.from_spec(spec.resolved)
    if shown is None or mapping is None or model is None or model.key_use is None:
        return None
    if model.collection not in spec.collections:
        return None
    kind = model.object_type(mapping.collection, spec.collections[mapping.collection].schema_name)
    return _KeyUses(
        model.collection,
        model.fields.get("action", "action"),
        model.fields.get("object-id", "object_id"),
        f"{kind}.{model.key_use[0]}",
        shown[1],
    )


def _last_uses(keys: list[dict[str, Any]], entries: list[dict[str, Any]], uses: _KeyUses) -> None:
    """Each key shows when the log last has it used (null when it never has)."""
    last: dict[Any, str] = {}
    for e in entries:
        if e.get(uses.action_field) == uses.action:
            at, key_id = e.get("created_at"), e.get(uses.object_field)
            if isinstance(at, str) and at > last.get(key_id, ""):
                last[key_id] = at
    for rec in keys:
        for field in uses.fields:
            rec[field] = last.get(rec["id"])

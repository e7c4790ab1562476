"""Compiling an object schema into ordered field plans: which maker each property gets, what
it waits for within its record (`x-by`, `x-when`, references, times) and in what order to run."""

from __future__ import annotations

import random
from typing import Any

from opsmerge_sandbox.spec import ref_arms, ref_copies, ref_of
from opsmerge_sandbox.world.cases import (
    birth_plan,
    by_plan,
    cases_plan,
    change_plan,
    copy_plan,
    format_plan,
)
from opsmerge_sandbox.world.conditions import HOLDER, PARENT_KEY, Schemas, compile_path, path_head
from opsmerge_sandbox.world.context import (
    Draft,
    FieldPlan,
    GenerationError,
    Maker,
    Schema,
    WorldContext,
)
from opsmerge_sandbox.world.counts import count_plan, parent_fields
from opsmerge_sandbox.world.hints import null_probability
from opsmerge_sandbox.world.makers import compile_value
from opsmerge_sandbox.world.refs import has_ref, ref_by_plan, ref_list_plan, ref_plan
from opsmerge_sandbox.world.times import time_plan

COMPUTED = ("x-sequence", "x-template", "x-derive")  # left to `derive`


def when_plan(plan: FieldPlan, when: dict[str, list[Any]]) -> FieldPlan:
    """The plan, made null unless the record's fields hold one of the `x-when` values (a list
    field holds a value when it contains it: a certificate is known when `ssl` is checked)."""
    inner = plan.make
    conditions = [
        (f, frozenset(v) if all(isinstance(x, str | None) for x in v) else tuple(v))
        for f, v in when.items()
    ]

    def make(d: Draft) -> Any:
        for f, allowed in conditions:
            value = d.rec.get(f)
            if isinstance(value, list):
                if not any(x in allowed for x in value):
                    return None
            elif value not in allowed:
                return None
        return inner(d)

    return FieldPlan(plan.name, make, (*plan.deps, *when), plan.on_fixed)


def drawn_per_plan(
    plan: FieldPlan, paths: list[str], ctx: WorldContext, scope: str, schemas: Schemas,
    label: str,
) -> FieldPlan:
    """`x-drawn-per: [field or path, ...]`: records that agree on what these read draw the same
    value, however many there are (a contract's run bills a service at one price every month):
    the plan draws from a generator seeded by the seed, the field and those values, not from
    the record's own."""
    readers = [compile_path(scope, str(p), schemas) for p in paths]
    env = ctx.env
    inner = plan.make
    seed = f"{ctx.seed}:{label}"

    def make(d: Draft) -> Any:
        key = [repr(read(d.rec, env)) for read in readers]
        own = d.rng
        d.rng = random.Random(":".join([seed, *key]))
        try:
            return inner(d)
        finally:
            d.rng = own

    heads = [h for h in map(path_head, map(str, paths)) if h]
    return FieldPlan(plan.name, make, (*plan.deps, *heads), plan.on_fixed)


def compile_plans(
    schema: Schema, ctx: WorldContext, where: str, own: str | None = None
) -> list[FieldPlan]:
    """One plan per generated property of an object schema, in schema order.

    `own` is the collection being generated: its records are not finished yet, so a record
    never takes values from another record of its own collection.
    """
    props: dict[str, Schema] = schema.get("properties") or {}
    plans: list[FieldPlan] = []
    ref_fields: list[tuple[str, str]] = []  # earlier (field, target collection)
    case_refs: list[str] = []  # references whose collection the record's values choose
    events = tuple(
        n
        for n, p in props.items()
        if p.get("format") == "date-time" and (p.get("x-time") or {}).get("after")
    )
    scope = own or where
    schemas: Schemas = ctx.schemas
    if scope not in ctx.schemas:  # a nested object: its paths may read the record holding it
        holder = where.rsplit(".", 1)[0] if "." in where else None
        schemas = {**ctx.schemas, scope: {**schema, HOLDER: holder}}

    def plan_of(name: str, prop: Schema) -> FieldPlan:
        """The plan of a property with cases, or of one case's arm (`x-cases` arms call it
        again; an arm may name its own reference)."""
        label = f"{where}.{name}"
        null_p = null_probability(prop)
        if "x-cases" in prop:
            plan = cases_plan(name, prop, ctx, scope, schemas, plan_of)
        elif "x-count" in prop:
            plan = count_plan(name, prop, ctx, where)
        elif ref_of(prop) is not None:
            plan = ref_plan(name, prop, ctx, null_p, [], label, scope)
        elif "x-ref-by" in prop:
            plan = ref_by_plan(name, prop, ctx, null_p)
        elif "x-change" in prop:
            plan = change_plan(name, prop, ctx, scope, schemas)
        elif "x-birth" in prop:
            plan = birth_plan(name, prop, ctx, scope, schemas)
        elif "x-copy" in prop:
            plan = copy_plan(name, prop, ctx, scope, schemas)
        elif "x-format" in prop:
            plan = format_plan(name, prop, ctx, scope, schemas, null_p)
        elif prop.get("format") in ("date-time", "date") or "x-time" in prop:
            plan = time_plan(name, prop, ctx, null_p, events, scope, schemas)
        elif "x-by" in prop:
            plan = by_plan(name, prop, ctx, scope, schemas, null_p)
        else:
            plan = FieldPlan(name, compile_value(name, prop, ctx, label))
        if "x-when" in prop:
            plan = when_plan(plan, prop["x-when"])
        return plan

    for name, prop in props.items():
        label = f"{where}.{name}"
        if name == "id" or any(k in prop for k in COMPUTED):
            continue
        null_p = null_probability(prop)
        target = ref_of(prop)
        if target is not None and null_p >= 1.0 and "x-cases" not in prop:
            # a reference the seeded world never sets (one only a write makes): no draw, and
            # nothing the record's story waits for, so the other fields come out as without it
            plans.append(FieldPlan(name, _null))
            continue
        if "x-cases" in prop:
            plan = plan_of(name, prop)
            if ref_arms(prop):
                case_refs.append(name)
        elif target is not None:
            sharing = [
                f
                for f, coll in ref_fields
                if f not in target[1] and coll != own and has_ref(ctx, coll, name, target[0])
            ]
            plan = ref_plan(name, prop, ctx, null_p, sharing, label, scope)
            plan.deps = (*plan.deps, *sharing)
            ref_fields.append((name, target[0]))
            if "x-when" in prop:
                plan = when_plan(plan, prop["x-when"])
        elif "x-ref-by" in prop:
            plan = ref_by_plan(name, prop, ctx, null_p)
            case_refs.append(name)
        elif isinstance(prop.get("items"), dict) and ref_of(prop["items"]) is not None:
            plan = ref_list_plan(name, prop, ctx, label, scope)
        else:
            plan = plan_of(name, prop)
        if "x-drawn-per" in prop:
            plan = drawn_per_plan(plan, prop["x-drawn-per"], ctx, scope, schemas, label)
        plans.append(plan)
    # a nested object that reads the record holding it (`$parent.<field>`) waits for those fields
    for plan in plans:
        read = [f for f in parent_fields(props.get(plan.name)) if f in props and f != plan.name]
        if read:
            plan.deps = (*plan.deps, *read)
    # references come first in the record's story: the record is created after what it refers to
    for plan in plans:
        if plan.name == "created_at":
            plan.deps = (*plan.deps, *(f for f, _ in ref_fields), *case_refs)
    copy_deps: dict[str, list[str]] = {}
    for name, prop in props.items():
        for mine in ref_copies(prop):
            copy_deps.setdefault(mine, []).append(name)
    for plan in plans:
        if plan.name in copy_deps:
            plan.deps = (*plan.deps, *copy_deps[plan.name])
    return plans


def _null(d: Any) -> None:
    return None


def order_plans(plans: list[FieldPlan], where: str) -> list[FieldPlan]:
    """Plans in an order that respects their dependencies, else schema order; cycles fail."""
    names = {p.name for p in plans}
    deps = {p.name: {d for d in p.deps if d in names and d != p.name} for p in plans}
    ordered: list[FieldPlan] = []
    done: set[str] = set()
    pending = list(plans)
    while pending:
        for i, p in enumerate(pending):
            if deps[p.name] <= done:
                ordered.append(pending.pop(i))
                done.add(p.name)
                break
        else:
            cycle = ", ".join(f"{p.name} <- {sorted(deps[p.name] - done)}" for p in pending)
            raise GenerationError(f"{where}: field dependencies form a cycle: {cycle}")
    return ordered


def object_maker(schema: Schema, ctx: WorldContext, where: str) -> Maker:
    """A nested object, built like a record of its own on the parent's random stream."""
    props = schema.get("properties")
    if not props:
        return lambda d: {}
    plans = order_plans(compile_plans(schema, ctx, where), where)

    def make(d: Draft) -> dict[str, Any]:
        sub = Draft(d.rng, {PARENT_KEY: d.rec}, parent=d)  # what `$parent.` paths read
        for plan in plans:
            if plan.name not in sub.rec:
                sub.rec[plan.name] = plan.make(sub)
        return {k: sub.rec[k] for k in props if k in sub.rec}

    return make

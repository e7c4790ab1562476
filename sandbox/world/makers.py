"""Makers for values that depend on nothing else in their record: constants, enums (with
`x-weights`), booleans (`x-probability`), numbers (`x-range`), strings (`x-faker`, formats),
arrays and nested objects."""

from __future__ import annotations

import copy
from typing import Any

from opsmerge_sandbox.spec import ref_of
from opsmerge_sandbox.world.context import Draft, GenerationError, Maker, Schema, WorldContext
from opsmerge_sandbox.world.hints import maybe_null, null_probability, types_of, weighted
from opsmerge_sandbox.world.providers import faker_maker, random_words_refused


def _array_maker(name: str, schema: Schema, ctx: WorldContext, where: str) -> Maker:
    """A list: a sample of choices or enum values, references, or generated items."""
    items = schema.get("items") or {}
    hint = schema.get("x-faker")
    min_items = int(schema.get("minItems", 0))
    max_items = schema.get("maxItems")
    if isinstance(hint, dict) and "choices" in hint:
        choices = list(hint["choices"])
        top = min(int(hint.get("max", len(choices))), len(choices), max_items or len(choices))
        return lambda d: d.rng.sample(choices, d.rng.randint(min_items, max(min_items, top)))
    if "enum" in items:
        choices = [v for v in items["enum"] if v is not None]
        top = min(len(choices), max_items or len(choices), max(min_items, 1) + 3)
        low = max(min_items, 1)
        return lambda d: d.rng.sample(choices, d.rng.randint(low, max(low, top)))
    target = ref_of(items)
    if target is not None:
        coll = target[0]
        top = int(hint.get("max", 1)) if isinstance(hint, dict) else max(min_items, 1)
        low = max(min_items, 1)

        def make_refs(d: Draft) -> list[str]:
            count = ctx.counts.get(coll, 0)
            if count == 0:
                if min_items:
                    raise GenerationError(f"{where} refers to {coll}, which has no records")
                return []
            k = min(count, d.rng.randint(low, max(low, top)))
            ids = ctx.ids[coll]
            return [ids[i] for i in d.rng.sample(range(count), k)]

        return make_refs
    if isinstance(hint, dict) and "max" in hint:
        top = int(hint["max"])
        low = max(min_items, 1)
        item = compile_value("item", items, ctx, f"{where}[]")
        if hint.get("distinct") is None:
            return lambda d: [item(d) for _ in range(d.rng.randint(low, max(low, top)))]
        return _distinct_items(item, str(hint["distinct"]), low, top)
    if min_items:
        item = compile_value("item", items, ctx, f"{where}[]")
        return lambda d: [item(d) for _ in range(min_items)]
    return lambda d: []


def _distinct_items(item: Maker, member: str, low: int, top: int) -> Maker:
    """`x-faker: {max, distinct: member}`: items that differ in `member` (an invoice bills a
    service on one line): an item repeating one is drawn again, a few times, and the list stops
    short when the choices run out."""

    def make(d: Draft) -> list[Any]:
        want = d.rng.randint(low, max(low, top))
        out: list[Any] = []
        seen: set[Any] = set()
        for _ in range(want * 4):
            if len(out) == want:
                break
            one = item(d)
            key = repr(one.get(member) if isinstance(one, dict) else one)
            if key not in seen:
                seen.add(key)
                out.append(one)
        return out

    return make


def _number_maker(schema: Schema) -> Maker:
    """A number within `x-range`, else the schema's bounds, rounded to its `multipleOf`."""
    is_int = "integer" in types_of(schema)
    rng_spec = schema.get("x-range")
    if rng_spec is not None:
        lo, hi = rng_spec
    elif "default" in schema:
        default = schema["default"]
        return lambda d: default
    else:
        lo = schema.get("minimum", schema.get("exclusiveMinimum")) or 0
        hi = schema.get("maximum", lo + 100)
        hi = min(hi, lo + 1000)
    if is_int or (isinstance(lo, int) and isinstance(hi, int) and "multipleOf" not in schema):
        lo_i, hi_i = int(lo), int(hi)
        return lambda d: d.rng.randint(lo_i, hi_i)
    step = schema.get("multipleOf", 0.01)
    places = max(0, len(f"{step:.10f}".rstrip("0").split(".")[1]))
    return lambda d: round(lo + (hi - lo) * d.rng.random(), places)


def compile_value(name: str, schema: Schema, ctx: WorldContext, where: str) -> Maker:
    """A maker for a value with no dependencies on its record (no x-ref/x-time/x-by/x-when)."""
    null_p = null_probability(schema)
    types = types_of(schema)
    hint = schema.get("x-faker")
    if "const" in schema:
        const = schema["const"]
        if isinstance(const, dict | list):  # each record its own copy
            return lambda d: copy.deepcopy(const)
        return lambda d: const
    if "enum" in schema:
        pick_enum = weighted(list(schema["enum"]), schema.get("x-weights"))
        return maybe_null(lambda d: pick_enum(d.rng), null_p)
    if "boolean" in types:
        p = schema.get("x-probability")
        if p is None:
            if "default" in schema:
                default = bool(schema["default"])
                return lambda d: default
            p = 0.5
        prob = float(p)
        return maybe_null(lambda d: d.rng.random() < prob, null_p)
    if "array" in types:
        return maybe_null(_array_maker(name, schema, ctx, where), null_p)
    if "object" in types:
        # nested objects are built like records, by plans.object_maker: the context hands it in,
        # so this module needs no import of plans (which compiles values with this one)
        return maybe_null(ctx.object_maker(schema, ctx, where), null_p)
    if isinstance(hint, dict) and "choices" in hint:  # numbers too: block hours come in 10s
        pick = weighted(list(hint["choices"]), hint.get("weights"))
        return maybe_null(lambda d: pick(d.rng), null_p)
    if types & {"integer", "number"}:
        if "x-range" not in schema and "default" not in schema and "null" in types:
            return lambda d: None
        return maybe_null(_number_maker(schema), null_p)
    if isinstance(hint, str):
        return maybe_null(faker_maker(hint, schema, ctx, where), null_p)
    if "default" in schema:
        default = schema["default"]
        return lambda d: default
    fmt = schema.get("format")
    if fmt in ("email", "ipv4"):
        return maybe_null(
            faker_maker("email" if fmt == "email" else "ipv4_private", schema, ctx, where), null_p
        )
    if "null" in types or not types:
        return lambda d: None
    if "pattern" in schema:

        def fail(d: Draft) -> Any:
            raise GenerationError(f"{where}: no hint to generate a value for {schema['pattern']}")

        return fail
    # a named record gives the value itself; a generated one needs a hint
    def unhinted(d: Draft) -> Any:
        raise random_words_refused(where)

    return unhinted

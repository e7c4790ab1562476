"""Value makers: one small function per property, compiled once per collection from its schema.

A maker takes the record being built (`Draft`) and returns the property's value, drawing only
from the record's own random stream, so a record never depends on the order of generation. The
schema hints decide everything (`x-faker`, `x-weights`, `x-probability`, `x-null-probability`,
`x-ref`, `x-by`, `x-time`, `x-when`, `x-range`); computed fields (`x-sequence`, `x-template`,
`x-derive`) are left to `derive`.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from sandbox.spec import ref_of as ref_target

if TYPE_CHECKING:
    from faker import Generator

Schema = dict[str, Any]
Maker = Callable[["Draft"], Any]

DAY = 86_400
HISTORY_DAYS = 730  # created_at falls within about two years before the epoch
POOL_SIZE = 256  # enough variety for free text; building a pool costs ~10-30 us a value
COMPUTED = ("x-sequence", "x-template", "x-derive")
# Free text where repeats are harmless: drawn from a seeded pool rather than a Faker call each.
POOLED_PROVIDERS = frozenset(
    {
        "sentence",
        "sentences",
        "paragraph",
        "text",
        "job",
        "city",
        "street_address",
        "address",
        "catch_phrase",
        "bs",
        "word",
        "words",
        "user_agent",
    }
)
_HOST_PREFIXES = ("DESKTOP", "LAPTOP", "WS", "PC", "SRV", "VM", "MAC", "NB")
_HOST_CHARS = string.ascii_uppercase + string.digits


class GenerationError(ValueError):
    """The spec and recipe together cannot produce a valid world."""


def stable_int(*parts: object) -> int:
    """A 64-bit integer from the parts; unlike `hash()`, the same in every process."""
    text = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


_days: dict[int, str] = {}
_MINUTES = [f"T{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]
_SECONDS = [f"{s:02d}Z" for s in range(60)]


def format_date(ts: int) -> str:
    """`YYYY-MM-DD` of a UTC timestamp; days are cached, as most records share a few hundred."""
    day = ts // DAY
    text = _days.get(day)
    if text is None:
        text = time.strftime("%Y-%m-%d", time.gmtime(day * DAY))
        _days[day] = text
    return text


def format_datetime(ts: int) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` of a UTC timestamp, about four times faster than strftime."""
    rest = ts % DAY
    return format_date(ts) + _MINUTES[rest // 60] + _SECONDS[rest % 60]


def parse_time(value: str) -> int:
    """Seconds since 1970 of an ISO 8601 timestamp or date (UTC when no offset is given)."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


_local = threading.local()


def faker_generator(locale: str = "en_GB") -> Generator:
    """One Faker generator per locale and thread; each record lends it its own random stream
    (so two threads building worlds at once cannot swap streams)."""
    cache: dict[str, Generator] = _local.__dict__.setdefault("fakers", {})
    gen = cache.get(locale)
    if gen is None:
        from faker import Factory
        from faker.providers.lorem.en_US import Provider as EnglishLorem

        gen = Factory.create(locale)
        gen.add_provider(EnglishLorem)  # English words read better than Latin in a demo
        cache[locale] = gen
    return gen


@dataclass(slots=True)
class Draft:
    """A record being generated: its values, its random stream and what was decided so far."""

    rng: random.Random
    rec: dict[str, Any]
    fixed: frozenset[str] = frozenset()
    times: dict[str, int] = field(default_factory=dict)  # field -> seconds since 1970
    refs: dict[str, tuple[str, int]] = field(default_factory=dict)  # field -> (collection, index)


_POOLS: dict[tuple[int, str], list[Any]] = {}


class WorldContext:
    """What makers may consult beyond their own record: the seed, epoch, counts, ids and the
    records of collections generated earlier (references point backwards only)."""

    def __init__(
        self,
        seed: int,
        epoch: int,
        counts: dict[str, int],
        prefixes: dict[str, str],
        named_ids: dict[str, list[str]],
        schemas: dict[str, Schema],
    ) -> None:
        self.seed = seed
        self.schemas = schemas
        self.epoch = epoch
        self.counts = counts
        self.prefixes = prefixes
        self.named_ids = named_ids
        # every id once: references share these strings instead of formatting new ones
        self.ids: dict[str, list[str]] = {
            name: [
                *named_ids.get(name, ()),
                *(f"{prefixes[name]}_{i:06d}" for i in range(len(named_ids.get(name, ())), count)),
            ]
            for name, count in counts.items()
        }
        self.world: dict[str, list[dict[str, Any]]] = {}
        self.created: dict[str, list[int]] = {}  # collection -> created_at seconds, by index
        self._by_field: dict[tuple[str, str], dict[Any, list[int]]] = {}
        self._index: dict[str, dict[str, int]] = {}
        self.faker = faker_generator()

    def record_id(self, collection: str, index: int) -> str:
        return self.ids[collection][index]

    def index_of(self, collection: str, record_id: str) -> int | None:
        index = self._index.get(collection)
        if index is None:
            index = {rid: i for i, rid in enumerate(self.ids.get(collection, ()))}
            self._index[collection] = index
        return index.get(record_id)

    def indices_where(self, collection: str, their_field: str) -> dict[Any, list[int]]:
        key = (collection, their_field)
        table = self._by_field.get(key)
        if table is None:
            table = {}
            for i, r in enumerate(self.world.get(collection, ())):
                table.setdefault(r.get(their_field), []).append(i)
            self._by_field[key] = table
        return table

    def pool(self, provider: str) -> list[Any]:
        """Seeded values of a free-text provider, shared by every field that asks for it.

        A pool depends only on the seed and the provider, so it is kept for the next build
        (a workspace reset rebuilds the same world)."""
        key = (self.seed, provider)
        values = _POOLS.get(key)
        if values is None:
            gen = self.faker
            saved = gen.random
            gen.random = random.Random(stable_int(self.seed, "pool", provider))
            try:
                method = getattr(gen, provider)
                values = [method() for _ in range(POOL_SIZE)]
            finally:
                gen.random = saved
            if len(_POOLS) > 64:
                _POOLS.clear()
            _POOLS[key] = values
        return values


def _types(schema: Schema) -> set[str]:
    t = schema.get("type")
    if isinstance(t, list):
        return set(t)
    return {t} if t else set()


def nullable(schema: Schema) -> bool:
    """Whether null validates: the type must allow it, and an enum must list it too."""
    if "enum" in schema:
        return None in schema["enum"]
    return "null" in _types(schema) or not _types(schema)


def _weighted(values: list[Any], weights: list[float] | None) -> Callable[[random.Random], Any]:
    if not values:
        raise GenerationError("an enum with no values")
    if not weights:
        n = len(values)
        return lambda rng: values[int(rng.random() * n)]
    if len(weights) != len(values):
        raise GenerationError(f"x-weights {weights} do not align with enum {values}")
    cum = list(accumulate(float(w) for w in weights))
    total = cum[-1]
    if total <= 0:
        raise GenerationError(f"x-weights {weights} sum to zero")
    last = len(values) - 1
    return lambda rng: values[min(bisect.bisect_right(cum, rng.random() * total), last)]


# -- custom Faker-style providers: fast, and named in the spec like any other ------------------


def _hostname_upper(rng: random.Random) -> str:
    tail = "".join(rng.choices(_HOST_CHARS, k=7))
    return f"{rng.choice(_HOST_PREFIXES)}-{tail}"


def _ipv4_private(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        return f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if r < 0.9:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _ipv4_public(rng: random.Random) -> str:
    first = rng.choice((31, 51, 62, 77, 81, 82, 86, 90, 109, 151, 185, 194, 212, 213, 217))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


CUSTOM_PROVIDERS: dict[str, Callable[[random.Random], str]] = {
    "hostname_upper": _hostname_upper,
    "ipv4_private": _ipv4_private,
    "ipv4_public": _ipv4_public,
}


def _faker_maker(provider: str, schema: Schema, ctx: WorldContext, where: str) -> Maker:
    max_len = schema.get("maxLength")
    custom = CUSTOM_PROVIDERS.get(provider)
    if custom is not None:
        return lambda d: custom(d.rng)
    if not hasattr(ctx.faker, provider):
        raise GenerationError(f"{where}: unknown x-faker provider {provider!r}")
    if provider in POOLED_PROVIDERS:
        pool = ctx.pool(provider)
        if max_len is not None:
            pool = [v[:max_len] if isinstance(v, str) else v for v in pool]
        size = len(pool)
        return lambda d: pool[int(d.rng.random() * size)]
    gen = ctx.faker
    method = getattr(gen, provider)

    def make(d: Draft) -> Any:
        gen.random = d.rng
        value = method()
        return value[:max_len] if max_len is not None and isinstance(value, str) else value

    return make


# -- compilation ------------------------------------------------------------------------------


@dataclass(slots=True)
class FieldPlan:
    """How one property is produced, and what it must wait for within its record."""

    name: str
    make: Maker
    deps: tuple[str, ...] = ()
    on_fixed: Callable[[Draft, Any], None] | None = None  # a named record gave the value


def _time_plan(
    name: str, schema: Schema, ctx: WorldContext, null_p: float, events: tuple[str, ...] = ()
) -> FieldPlan:
    """Times count from the epoch: `created_at` within the history window (after whatever the
    record refers to), `updated_at` between the last event and the epoch, `x-time` fields by
    their rule. `events` are the record's fields timed after another (acknowledged, finished)."""
    epoch = ctx.epoch
    is_date = schema.get("format") == "date"
    fmt = format_date if is_date else format_datetime
    rule = schema.get("x-time") or {}
    deps: list[str] = []

    def span(unit_rule: dict[str, Any]) -> int:
        days = int(unit_rule.get("within_days", 0))
        return days * DAY + int(unit_rule.get("within_minutes", 0)) * 60

    def on_fixed(d: Draft, value: Any) -> None:
        if isinstance(value, str):
            d.times[name] = parse_time(value)

    if name == "created_at":
        history = HISTORY_DAYS * DAY

        def make_created(d: Draft) -> str:
            lo = epoch - history
            parents = [
                ctx.created[c][i]
                for c, i in d.refs.values()
                if c in ctx.created and i < len(ctx.created[c])
            ]
            if parents:
                lo = max(lo, *parents)
                ts = lo + int((epoch - lo) * d.rng.random() ** 2)  # children follow their parents
            else:
                ts = lo + int((epoch - lo) * d.rng.random())
            d.times[name] = ts
            return fmt(ts)

        return FieldPlan(name, make_created, (), on_fixed)

    if name == "updated_at":

        def make_updated(d: Draft) -> str:
            times = d.times
            lo = times.get("created_at", epoch)
            for event in events:  # the record changed when these happened
                other = times.get(event)
                if other is not None and lo < other <= epoch:
                    lo = other
            ts = lo + int((epoch - lo) * d.rng.random())
            times[name] = ts
            return fmt(ts)

        return FieldPlan(name, make_updated, ("created_at", *events), on_fixed)

    if not rule and nullable(schema):
        return FieldPlan(name, lambda d: None, (), on_fixed)

    if "ahead_days" in rule:
        ahead = int(rule["ahead_days"]) * DAY

        def make_ahead(d: Draft) -> str | None:
            if null_p and d.rng.random() < null_p:
                return None
            ts = epoch + int(ahead * d.rng.random())
            d.times[name] = ts
            return fmt(ts)

        return FieldPlan(name, make_ahead, (), on_fixed)

    after = rule.get("after")
    if after:
        width = span(rule)
        exactly = bool(rule.get("exactly"))
        deps.append(after)

        def make_after(d: Draft) -> str | None:
            base = d.times.get(after)
            if base is None or (null_p and d.rng.random() < null_p):
                return None
            ts = base + (width if exactly else int(width * d.rng.random()))
            if not is_date and ts > epoch:
                ts = epoch  # events have happened by the epoch; dates may be scheduled ahead
            d.times[name] = ts
            return fmt(ts)

        return FieldPlan(name, make_after, tuple(deps), on_fixed)

    width = span(rule) or HISTORY_DAYS * DAY
    if name != "created_at":
        deps.append("created_at")

    def make_within(d: Draft) -> str | None:
        if null_p and d.rng.random() < null_p:
            return None
        lo = max(epoch - width, d.times.get("created_at", epoch - width))
        ts = lo + int((epoch - lo) * d.rng.random())
        d.times[name] = ts
        return fmt(ts)

    return FieldPlan(name, make_within, tuple(deps), on_fixed)


def _ref_plan(
    name: str,
    schema: Schema,
    ctx: WorldContext,
    null_p: float,
    sharing: list[str],
    where_label: str,
) -> FieldPlan:
    target, copy, where = ref_target(schema)  # type: ignore[misc]
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


def _when(plan: FieldPlan, when: dict[str, list[Any]]) -> FieldPlan:
    inner = plan.make
    conditions = [
        (f, frozenset(v) if all(isinstance(x, str | None) for x in v) else tuple(v))
        for f, v in when.items()
    ]

    def make(d: Draft) -> Any:
        for f, allowed in conditions:
            if d.rec.get(f) not in allowed:
                return None
        return inner(d)

    return FieldPlan(plan.name, make, (*plan.deps, *when), plan.on_fixed)


def _null_p(schema: Schema) -> float:
    return float(schema.get("x-null-probability", 0) or 0) if nullable(schema) else 0.0


def _nullable_wrap(make: Maker, null_p: float) -> Maker:
    if not null_p:
        return make
    return lambda d: None if d.rng.random() < null_p else make(d)


def _array_maker(name: str, schema: Schema, ctx: WorldContext, where: str) -> Maker:
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
    target = ref_target(items)
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
        return lambda d: [item(d) for _ in range(d.rng.randint(low, max(low, top)))]
    if min_items:
        item = compile_value("item", items, ctx, f"{where}[]")
        return lambda d: [item(d) for _ in range(min_items)]
    return lambda d: []


def _object_maker(schema: Schema, ctx: WorldContext, where: str) -> Maker:
    props = schema.get("properties")
    if not props:
        return lambda d: {}
    plans = order_plans(compile_plans(schema, ctx, where), where)

    def make(d: Draft) -> dict[str, Any]:
        sub = Draft(d.rng, {})
        for plan in plans:
            if plan.name not in sub.rec:
                sub.rec[plan.name] = plan.make(sub)
        return {k: sub.rec[k] for k in props if k in sub.rec}

    return make


def _number_maker(schema: Schema) -> Maker:
    is_int = "integer" in _types(schema)
    rng_spec = schema.get("x-range")
    if rng_spec is not None:
        lo, hi = rng_spec
    elif "default" in schema:
        default = schema["default"]
        return lambda d: default
    else:
        lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
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
    null_p = _null_p(schema)
    types = _types(schema)
    hint = schema.get("x-faker")
    if "const" in schema:
        const = schema["const"]
        return lambda d: const
    if "enum" in schema:
        pick_enum = _weighted(list(schema["enum"]), schema.get("x-weights"))
        return _nullable_wrap(lambda d: pick_enum(d.rng), null_p)
    if "boolean" in types:
        p = schema.get("x-probability")
        if p is None:
            if "default" in schema:
                default = bool(schema["default"])
                return lambda d: default
            p = 0.5
        prob = float(p)
        return _nullable_wrap(lambda d: d.rng.random() < prob, null_p)
    if "array" in types:
        return _nullable_wrap(_array_maker(name, schema, ctx, where), null_p)
    if "object" in types:
        return _nullable_wrap(_object_maker(schema, ctx, where), null_p)
    if types & {"integer", "number"}:
        if "x-range" not in schema and "default" not in schema and "null" in types:
            return lambda d: None
        return _nullable_wrap(_number_maker(schema), null_p)
    if isinstance(hint, dict) and "choices" in hint:
        pick = _weighted(list(hint["choices"]), hint.get("weights"))
        return _nullable_wrap(lambda d: pick(d.rng), null_p)
    if isinstance(hint, str):
        return _nullable_wrap(_faker_maker(hint, schema, ctx, where), null_p)
    if "default" in schema:
        default = schema["default"]
        return lambda d: default
    fmt = schema.get("format")
    if fmt in ("email", "ipv4"):
        return _nullable_wrap(
            _faker_maker("email" if fmt == "email" else "ipv4_private", schema, ctx, where), null_p
        )
    if "null" in types or not types:
        return lambda d: None
    if "pattern" in schema:

        def fail(d: Draft) -> Any:
            raise GenerationError(f"{where}: no hint to generate a value for {schema['pattern']}")

        return fail
    words = _faker_maker("sentence", schema, ctx, where)
    min_len = int(schema.get("minLength", 0))
    return lambda d: words(d).rstrip(".").ljust(min_len, "x")


def _by_maker(schema: Schema, where: str) -> tuple[Maker, str]:
    by = schema["x-by"]
    source = by["field"]
    table = {k: list(v) for k, v in by["values"].items()}
    fallback = None if nullable(schema) else next(iter(table.values()), [None])[0]

    def make(d: Draft) -> Any:
        options = table.get(d.rec.get(source))
        if not options:
            return fallback
        return options[int(d.rng.random() * len(options))]

    return make, source


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
    events = tuple(
        n
        for n, p in props.items()
        if p.get("format") == "date-time" and (p.get("x-time") or {}).get("after")
    )
    for name, prop in props.items():
        label = f"{where}.{name}"
        if name == "id" or any(k in prop for k in COMPUTED):
            continue
        null_p = _null_p(prop)
        target = ref_target(prop)
        if target is not None:
            sharing = [
                f
                for f, coll in ref_fields
                if f not in target[1] and coll != own and _has_ref(ctx, coll, name, target[0])
            ]
            plan = _ref_plan(name, prop, ctx, null_p, sharing, label)
            plan.deps = (*plan.deps, *sharing)
            ref_fields.append((name, target[0]))
        elif prop.get("format") in ("date-time", "date") or "x-time" in prop:
            plan = _time_plan(name, prop, ctx, null_p, events)
        elif "x-by" in prop:
            make, source = _by_maker(prop, label)
            plan = FieldPlan(name, _nullable_wrap(make, null_p), (source,))
        else:
            plan = FieldPlan(name, compile_value(name, prop, ctx, label))
        if "x-when" in prop:
            plan = _when(plan, prop["x-when"])
        plans.append(plan)
    # references come first in the record's story: the record is created after what it refers to
    for plan in plans:
        if plan.name == "created_at":
            plan.deps = (*plan.deps, *(f for f, _ in ref_fields))
    copy_deps: dict[str, list[str]] = {}
    for name, prop in props.items():
        target = ref_target(prop)
        if target is not None:
            for mine in target[1]:
                copy_deps.setdefault(mine, []).append(name)
    for plan in plans:
        if plan.name in copy_deps:
            plan.deps = (*plan.deps, *copy_deps[plan.name])
    return plans


def _has_ref(ctx: WorldContext, collection: str, field_name: str, target: str) -> bool:
    prop = (ctx.schemas.get(collection) or {}).get("properties", {}).get(field_name)
    if not prop:
        return False
    ref = ref_target(prop)
    return ref is not None and ref[0] == target


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

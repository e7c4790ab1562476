"""Time makers: `created_at`, `updated_at`, and `x-time` fields (within a window, a while
after another field, or ahead of the epoch), all counted from the world's epoch so a record's
story reads in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opsmerge_sandbox.world.conditions import (
    Schemas,
    compile_path,
    is_shifted,
    operand_heads,
    path_head,
    time_operand,
    to_seconds,
)
from opsmerge_sandbox.world.context import (
    Draft,
    FieldPlan,
    Redraw,
    Schema,
    WorldContext,
)
from opsmerge_sandbox.world.hints import nullable
from opsmerge_sandbox.world.ref_hints import ref_hints
from opsmerge_sandbox.world.timefmt import DAY, format_date, format_datetime, parse_time
from opsmerge_sandbox.world.working_hours import read_hours

HISTORY_DAYS = 730  # created_at falls within about two years before the epoch


def time_plan(
    name: str,
    schema: Schema,
    ctx: WorldContext,
    null_p: float,
    events: tuple[str, ...] = (),
    scope: str = "",
    schemas: Schemas | None = None,
) -> FieldPlan:
    """Times count from the epoch: `created_at` within the history window (after whatever the
    record refers to), `updated_at` between the last event and the epoch, `x-time` fields by
    their rule. `events` are the record's fields timed after another (acknowledged, finished).

    An `x-time` rule on `created_at` or `updated_at` replaces their default (`hours` alone
    keeps it, moved into working hours; `latest-event: true` makes `updated_at` the time of the
    record's latest event: nothing changes it once its last step is done). `after` may be a
    path through a reference (`parent_id->created_at`); `until_epoch` keeps a date that follows
    another from passing the epoch; `older_than_minutes` keeps a time back from the epoch;
    `before` (a field or path) keeps the time no later than the one it gives (an event about a
    record happened before the record's last change)."""
    epoch = ctx.epoch
    is_date = schema.get("format") == "date"
    fmt = format_date if is_date else format_datetime
    rule = schema.get("x-time") or {}
    deps: list[str] = []
    # people's times fall mostly in their working hours (`working_hours`)
    hours = read_hours(rule["hours"]) if "hours" in rule else None

    def span(unit_rule: dict[str, Any]) -> int:
        days = int(unit_rule.get("within_days", 0))
        seconds = unit_rule.get("within_seconds", 0)
        return (
            days * DAY
            + int(unit_rule.get("within_minutes", 0)) * 60
            + (seconds if isinstance(seconds, int) else 0)
        )

    def _parents(d: Draft) -> list[int]:
        return [
            ctx.created[c][i]
            for c, i in d.refs.values()
            if c in ctx.created and i < len(ctx.created[c])
        ]

    def on_fixed(d: Draft, value: Any) -> None:
        if isinstance(value, str):
            d.times[name] = parse_time(value)

    closed_by = _closing_of(ctx, scope) if name == "created_at" else None
    befores = [str(b) for b in _as_list(rule.get("before"))]
    bound_of = _earliest([_reader(b, ctx, scope, schemas) for b in befores])
    deps += [h for b in befores for h in operand_heads(b)]

    if name == "created_at" and not rule.get("after"):
        history = HISTORY_DAYS * DAY

        def make_created(d: Draft) -> str:
            lo = epoch - history
            hi = epoch
            bound = bound_of(d) if bound_of is not None else None
            if bound is not None and bound < hi:
                hi = bound
            closed = closed_by(d) if closed_by is not None else None
            if closed is not None and closed < hi:
                hi = closed
            parents = _parents(d)
            if d.not_before:
                parents.append(d.not_before)
            if parents:
                lo = max(lo, *parents)
                if closed is not None and lo > closed:
                    raise Redraw  # it names a record made after another it names had closed
                if bound is not None and lo > bound:
                    raise Redraw  # what it names came after the time it must precede
                hi = max(hi, lo)
                ts = lo + int((hi - lo) * d.rng.random() ** 2)  # children follow their parents
            else:
                lo = min(lo, hi)
                ts = lo + int((hi - lo) * d.rng.random())
            if hours is not None:
                ts = hours.shape(ts, lo, hi, d.rng)
            d.times[name] = ts
            return fmt(ts)

        return FieldPlan(name, make_created, tuple(deps), on_fixed)

    if name == "updated_at" and rule.keys() <= {"hours", "latest-event"}:
        settled = bool(rule.get("latest-event"))

        def make_updated(d: Draft) -> str:
            times = d.times
            lo = times.get("created_at", epoch)
            for event in events:  # the record changed when these happened
                other = times.get(event)
                if other is not None and lo < other <= epoch:
                    lo = other
            if settled:  # nothing has changed it since its latest event
                times[name] = lo
                return fmt(lo)
            ts = lo + int((epoch - lo) * d.rng.random())
            if hours is not None:
                ts = hours.shape(ts, lo, epoch, d.rng)
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
        width_of = _seconds_of(rule, ctx, scope, schemas, deps)
        exactly = bool(rule.get("exactly"))
        until_epoch = bool(rule.get("until_epoch"))
        creation = name == "created_at"
        base_of: Callable[[Draft], int | None]
        base_of = _reader(after, ctx, scope, schemas)
        deps += operand_heads(after)

        def make_after(d: Draft) -> str | None:
            base = base_of(d)
            if base is None or (null_p and d.rng.random() < null_p):
                return None
            if creation:  # a record is created after every record it refers to
                base = max(base, d.not_before, *_parents(d))
                if base > epoch:
                    raise Redraw  # it follows a time past the epoch: not made yet
            wide = width if width_of is None else (width_of(d) or width)
            room = max(0, min(wide, epoch - base)) if until_epoch else wide
            bound = bound_of(d) if bound_of is not None else None
            if bound is not None:  # and no later than the time it must precede
                if bound < base:
                    raise Redraw
                room = min(room, bound - base)
            ts = base + (room if exactly else int(room * d.rng.random()))
            if hours is not None and not exactly:
                ts = hours.shape(ts, base, min(base + room, epoch), d.rng)
            if (not is_date or until_epoch) and ts > epoch:
                ts = max(base, epoch)  # events have happened by the epoch; dates may be ahead
            closed = closed_by(d) if closed_by is not None else None
            if closed is not None and closed < ts:  # and before what it names closed
                if closed < base:
                    raise Redraw
                ts = closed
            d.times[name] = ts
            return fmt(ts)

        return FieldPlan(name, make_after, tuple(deps), on_fixed)

    width = span(rule) or HISTORY_DAYS * DAY
    if name != "created_at":
        deps.append("created_at")
    # `within_seconds` may name a field of the record holding the window (a check's interval)
    width_of = _seconds_of(rule, ctx, scope, schemas, deps)
    can_be_null = nullable(schema)

    older = int(rule.get("older_than_minutes", 0)) * 60

    def make_within(d: Draft) -> str | None:
        if null_p and d.rng.random() < null_p:
            return None
        hi = epoch - older
        start = epoch  # the window counts back from the epoch, or from the bound that cuts it
        if bound_of is not None:
            bound = bound_of(d)
            if bound is not None and bound < hi:
                hi = start = bound
        created = d.times.get("created_at")
        if created is not None and hi < created and can_be_null:
            return None  # bounded before the record existed: it has not happened
        window = width if width_of is None else (width_of(d) or width)
        lo = min(max(start - window, created if created is not None else start - window), hi)
        ts = lo + int((hi - lo) * d.rng.random())
        if hours is not None:
            ts = hours.shape(ts, lo, hi, d.rng)
        d.times[name] = ts
        return fmt(ts)

    return FieldPlan(name, make_within, tuple(deps), on_fixed)


def _seconds_of(
    rule: dict[str, Any],
    ctx: WorldContext,
    scope: str,
    schemas: Schemas | None,
    deps: list[str],
) -> Callable[[Draft], int | None] | None:
    """A reader of `within_seconds` when it names a field or a path (`script_id->timeout`)
    holding the window in seconds; None when it is a number or absent."""
    source = rule.get("within_seconds")
    if not isinstance(source, str):
        return None
    return _number_of(source, ctx, scope, schemas, deps)


def _number_of(
    source: Any, ctx: WorldContext, scope: str, schemas: Schemas | None, deps: list[str]
) -> Callable[[Draft], int | None]:
    """A whole number a rule gives as itself or as a field or path holding it (a check's
    interval, a contract's billing day); None where the record holds none. A field read is
    added to what the time waits for."""
    if not isinstance(source, str):
        fixed = source if isinstance(source, int) and not isinstance(source, bool) else None
        return lambda d: fixed
    deps.append(path_head(source) or source)
    get = compile_path(scope, source, schemas or ctx.schemas)
    env = ctx.env

    def number(d: Draft) -> int | None:
        value = get(d.rec, env)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return number


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _earliest(
    readers: list[Callable[[Draft], int | None]],
) -> Callable[[Draft], int | None] | None:
    """The earliest of several bounds (`before: [updated_at, agent_id->last_seen_at]`)."""
    if not readers:
        return None
    if len(readers) == 1:
        return readers[0]

    def earliest(d: Draft) -> int | None:
        got = [t for t in (read(d) for read in readers) if t is not None]
        return min(got) if got else None

    return earliest


def _reader(
    source: str, ctx: WorldContext, scope: str, schemas: Schemas | None
) -> Callable[[Draft], int | None]:
    """Seconds of the time a field of the record, or a path through its references, holds,
    shifted by a constant or a field when it says so (`started_at + {duration_minutes}m`)."""
    if is_shifted(source):
        shifted = time_operand(scope, source, schemas or ctx.schemas)
        env = ctx.env
        return lambda d: shifted(d.rec, env)
    if "->" in source:
        get = compile_path(scope, source, schemas or ctx.schemas)
        env = ctx.env

        def through(d: Draft) -> int | None:
            got = get(d.rec, env)
            if not isinstance(got, list):
                return to_seconds(got)
            times = [t for t in map(to_seconds, got) if t is not None]  # a list of references:
            return min(times) if times else None  # the earliest of their times

        return through

    def own(d: Draft) -> int | None:
        got = d.times.get(source)
        if got is None and isinstance(d.rec.get(source), str):
            got = to_seconds(d.rec[source])
        return got

    return own


def _closing_of(ctx: WorldContext, scope: str) -> Callable[[Draft], int | None] | None:
    """When the earliest-closing record a draft names (`x-closed`) closed, None if none has:
    read from its reference fields, copied ones included; history references (`x-ref.history`)
    are exempt. None when nothing the collection names can close."""
    named = [
        (ref.name, ref.fixed)
        for ref in ref_hints(ctx.schemas.get(scope) or {})
        if ref.fixed in ctx.closings
        and ref.fixed != scope  # its own records are not all made yet
        and not ref.history
    ]
    if not named:
        return None

    def closed_by(d: Draft) -> int | None:
        bound = None
        for field, collection in named:
            value = d.rec.get(field)
            since = ctx.closed_since(collection)
            for rid in value if isinstance(value, list) else (value,):
                at = since.get(rid)
                if at is not None and (bound is None or at < bound):
                    bound = at
        return bound

    return closed_by

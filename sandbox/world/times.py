"""Time makers: `created_at`, `updated_at`, and `x-time` fields (within a window, a while
after another field, or ahead of the epoch), all counted from the world's epoch so a record's
story reads in order."""

from __future__ import annotations

from typing import Any

from opsmerge_sandbox.world.context import Draft, FieldPlan, Schema, WorldContext
from opsmerge_sandbox.world.hints import nullable
from opsmerge_sandbox.world.timefmt import DAY, format_date, format_datetime, parse_time

HISTORY_DAYS = 730  # created_at falls within about two years before the epoch


def time_plan(
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

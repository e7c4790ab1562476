"""`x-runs`: a collection whose records are, first, the runs of a schedule other records keep.

A contract's recurring run issues an invoice at 00:01 in its client's time zone on its billing
day, every month or quarter from its start, or on its start date and every anniversary of it for
a contract billed yearly, until it ends: every run, not a sample of them. So the invoices are the
runs of the contracts (each naming its contract and client, made at the run, issued on the run's
day), then the ones made by hand; the run records are made as named records are, with those
fields given. In British Summer Time a London client's run is made at 23:01-23:59 UTC on the day
before the day it is issued on.

    x-runs:
      of: contracts                        # the records that keep the schedule
      where: {status: [active, ended]}     # which of them run
      names: {contract_id: id, client_id: client_id}   # my field: their field
      at: created_at                       # my time that is the run
      day: billing_day                     # their fields: the day of the month,
      from: start_date                     # the first month (and the earliest run),
      until: end_date                      # the last day (none: until the epoch),
      every-months: {field: billing_frequency, map: {monthly: 1, quarterly: 3, annual: 12}}
      anniversary: {billing_frequency: [annual]}   # these run on their `from` date's day instead
      zone: client_id->time_zone           # their path to the time zone the days are in (UTC
                                           # when left out, null or not a zone)
      date: issue_date                     # my date that is the run's day, in that zone
      otherwise: {contract_id: null}       # what the records that are not runs hold

When there are more runs than records, the latest are kept (the older ones are history).
"""

from __future__ import annotations

import calendar
import random
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any

from opsmerge_sandbox.world.conditions import (
    ConditionError,
    compile_condition,
    compile_path,
    to_seconds,
    zone_named,
)
from opsmerge_sandbox.world.context import WorldContext
from opsmerge_sandbox.world.timefmt import format_datetime

__all__ = ["KEYS", "run_records", "runs_problems"]

KEYS = (
    "of", "where", "names", "at", "day", "from", "until", "every-months", "anniversary", "zone",
    "date", "otherwise",
)
_HOUR = 3540  # a run's record is made within its first hour (00:01 to 00:59)
_RUN_TIME = time(0, 1)


def runs_problems(rule: Any, own: Mapping[str, Any], schemas: Mapping[str, Any]) -> list[str]:
    """What is wrong with an `x-runs` declaration: unknown keys, collections or fields."""
    if not isinstance(rule, Mapping):
        return ["x-runs must be a mapping"]
    out = [f"x-runs: unknown key {k!r}" for k in rule if k not in KEYS]
    of = rule.get("of")
    target = schemas.get(of) if isinstance(of, str) else None
    if target is None:
        return [*out, f"x-runs.of: {of!r} is not a collection"]
    theirs = target.get("properties") or {}
    months = rule.get("every-months")
    wanted = [rule.get(k) for k in ("day", "from")]
    wanted += [rule.get("until")] if rule.get("until") is not None else []
    wanted += [months.get("field")] if isinstance(months, Mapping) else []
    names: Mapping[str, Any] = rule["names"] if isinstance(rule.get("names"), Mapping) else {}
    otherwise: Mapping[str, Any] = rule.get("otherwise") or {}
    wanted += list(names.values())
    out += [f"x-runs: {of} has no field {f!r}" for f in wanted if f not in theirs]
    mine = [*names, rule.get("at"), *otherwise]
    mine += [rule["date"]] if rule.get("date") is not None else []
    out += [f"x-runs: no field {f!r} of its own" for f in mine if f not in own]
    if rule.get("zone") is not None:
        try:
            compile_path(str(of), str(rule["zone"]), schemas)
        except ConditionError as exc:
            out.append(f"x-runs.zone: {exc}")
    for key in ("where", "anniversary"):
        try:
            compile_condition(str(of), rule.get(key) or {}, schemas)
        except ConditionError as exc:
            out.append(f"x-runs.{key}: {exc}")
    return out


def run_records(rule: Any, ctx: WorldContext, scope: str, room: int) -> list[dict[str, Any]]:
    """The given fields of `room` records: the runs in time order (the latest, when there are
    more), then `otherwise` for the rest."""
    if rule is None:
        return []
    of = str(rule["of"])  # the rule is sound: `runs_problems` judged it when the spec was parsed
    where = compile_condition(of, rule.get("where") or {}, ctx.schemas)
    yearly = rule.get("anniversary")
    anniversary = None if yearly is None else compile_condition(of, yearly, ctx.schemas)
    months = rule.get("every-months", 1)
    zone_of = None if rule.get("zone") is None else compile_path(of, str(rule["zone"]), ctx.schemas)
    runs: list[tuple[int, int, str, dict[str, Any]]] = []
    for position, other in enumerate(ctx.world.get(of, [])):
        if not where(other, ctx.env):
            continue
        every = months
        if isinstance(months, Mapping):
            every = (months.get("map") or {}).get(other.get(str(months.get("field"))))
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            continue
        given = {mine: other.get(theirs) for mine, theirs in rule["names"].items()}
        on_start = anniversary is not None and anniversary(other, ctx.env)
        zone = zone_named(zone_of(other, ctx.env) if zone_of is not None else None)
        for at, day in _schedule(other, rule, every, ctx.epoch, on_start, zone):
            runs.append((at, position, day, given))
    runs.sort(key=lambda r: (r[0], r[1]))
    runs = runs[max(0, len(runs) - room) :]
    out = []
    date_field = rule.get("date")
    for at, _, day, given in runs:
        jitter = random.Random(f"{ctx.seed}:{scope}:{given}:{at}").random()
        moment = min(at + int(_HOUR * jitter), ctx.epoch)
        made = {**given, str(rule["at"]): format_datetime(moment)}
        if date_field is not None:
            made[str(date_field)] = day
        out.append(made)
    otherwise = dict(rule.get("otherwise") or {})
    return out + [dict(otherwise) for _ in range(room - len(out))]


def _day_of(value: Any) -> date | None:
    seconds = to_seconds(value)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).date()


def _schedule(
    other: Mapping[str, Any],
    rule: Mapping[str, Any],
    every: int,
    epoch: int,
    on_start: bool,
    zone: tzinfo = UTC,
) -> list[tuple[int, str]]:
    """The runs of one record's schedule, as (the moment, the day in `zone`): 00:01 in `zone`
    on its day (the 28th at the latest) of every `every`-th month from its first month, from its
    first day (and once the record was made), before its last day and by the epoch. `on_start`:
    on its first day's day of the month instead (its anniversaries, the 28th of February for
    the 29th in other years)."""
    day, start = other.get(str(rule["day"])), _day_of(other.get(str(rule["from"])))
    if on_start and start is not None:
        day = start.day
    if not isinstance(day, int) or isinstance(day, bool) or start is None:
        return []
    made = to_seconds(other.get("created_at"))  # nothing runs before the record exists
    end = _day_of(other.get(str(rule["until"]))) if rule.get("until") else None
    out: list[tuple[int, str]] = []
    step = 0
    while True:
        year, month = divmod(start.year * 12 + start.month - 1 + step, 12)
        last_day = calendar.monthrange(year, month + 1)[1] if on_start else 28
        on = date(year, month + 1, min(day, last_day))
        at = int(datetime.combine(on, _RUN_TIME, zone).timestamp())
        if at > epoch or (end is not None and on >= end):
            return out
        if on >= start and (made is None or at >= made):
            out.append((at, on.isoformat()))
        step += every

"""`x-succession`: records of one owner that replace each other rather than run side by side.

A client on a per-device contract that signs an all-inclusive one has moved to it: the old one
ended when the new one started, or the client would be billed for its devices twice. Drawn
independently, a client's contracts overlapped (one client had four in force at once). Once the
collection is made, each record that a later one of the same owner replaces ends the day the
later one starts; one replaced within its first term was never taken up (its `short` values,
voided). Records `alongside` admits run beside the others (block hours bought on top of a
device contract, the documented hybrid).

    x-succession:
      per: client_id                      # the owner
      among: {status: [active, ended]}    # the records in force at some time
      from: start_date                    # when one starts
      until: end_date                     # when one ends (none: it runs on)
      alongside: {type: [block]}          # what runs beside the others
      term: {field: billing_frequency, map: {monthly: 30, quarterly: 91, annual: 365}}
      ended: {status: ended}              # what a record ended by its successor holds
      short: {status: voided}             # what one replaced within its first term holds
      short-within-days: 14               # one never taken up is set so by then after its start

A change has a time (`created_at`, `updated_at`): the record a successor ended last changed no
earlier than the successor was made, and one never taken up was set so between its making and
`short-within-days` after its start (never later than it said it last changed). What the
succession moved on is kept as the record was made (`WorldContext.made_with`): the log's entry
of its making shows the end it was made with, not the one its successor gave it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from opsmerge_sandbox.world.conditions import ConditionError, compile_condition
from opsmerge_sandbox.world.context import GenerationError, WorldContext
from opsmerge_sandbox.world.timefmt import format_datetime, parse_time

__all__ = ["KEYS", "succeed", "succession_problems"]

KEYS = ("per", "among", "from", "until", "alongside", "term", "ended", "short", "short-within-days")
MADE, CHANGED = "created_at", "updated_at"  # every record's bookkeeping times


def succession_problems(rule: Any, own: Mapping[str, Any], schemas: Mapping[str, Any]) -> list[str]:
    """What is wrong with an `x-succession` declaration: unknown keys or fields."""
    if not isinstance(rule, Mapping):
        return ["x-succession must be a mapping"]
    out = [f"x-succession: unknown key {k!r}" for k in rule if k not in KEYS]
    term = rule.get("term")
    fields = [rule.get("per"), rule.get("from"), rule.get("until")]
    fields += [term.get("field")] if isinstance(term, Mapping) else []
    fields += [*(rule.get("ended") or {}), *(rule.get("short") or {})]
    out += [f"x-succession: no field {f!r}" for f in fields if f not in own]
    days = rule.get("short-within-days")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 0):
        out.append("x-succession: short-within-days must be a whole number of days, 0 or more")
    return out


def succeed(
    scope: str, rule: Any, records: list[dict[str, Any]], ctx: WorldContext
) -> None:
    """End each record a later one of its owner replaces, in place (see the module)."""
    if rule is None:
        return  # a declared rule is sound: `succession_problems` judged it when parsed
    try:
        among = compile_condition(scope, rule.get("among") or {}, ctx.schemas)
        beside = rule.get("alongside")
        alongside = compile_condition(scope, beside, ctx.schemas) if beside else None
    except ConditionError as exc:
        raise GenerationError(f"{scope}: x-succession: {exc}") from None
    per, start, end = str(rule["per"]), str(rule["from"]), str(rule["until"])
    term = rule.get("term") or {}
    owners: dict[Any, list[dict[str, Any]]] = {}
    for rec in records:
        beside_others = alongside is not None and alongside(rec, ctx.env)
        if rec.get(per) is not None and among(rec, ctx.env) and not beside_others:
            owners.setdefault(rec[per], []).append(rec)
    today = datetime.fromtimestamp(ctx.epoch, UTC).date()
    for line in owners.values():
        line.sort(key=lambda r: (str(r.get(start)), str(r.get("id"))))
        running: dict[str, Any] | None = None
        for rec in line:
            if running is not None and _runs_on(running, end, rec[start]):
                days = (term.get("map") or {}).get(running.get(str(term.get("field"))), 0)
                first_term = date.fromisoformat(running[start]) + timedelta(days=int(days))
                begins = date.fromisoformat(rec[start])
                if begins < first_term:
                    _move(scope, rec, rule.get("short") or {}, ctx)  # never taken up
                    _set_aside(scope, rec, start, rule, ctx)
                    continue
                _move(scope, running, {end: rec[start]}, ctx)
                if begins < today:
                    _move(scope, running, rule.get("ended") or {}, ctx)
                signed, changed = rec.get(MADE), running.get(CHANGED)
                if signed is not None and changed is not None and str(changed) < str(signed):
                    running[CHANGED] = signed  # it changed when its successor was signed
            running = rec


def _move(scope: str, rec: dict[str, Any], values: Mapping[str, Any], ctx: WorldContext) -> None:
    """Set a record's fields, keeping what they held when it was made."""
    kept = ctx.made_with.setdefault((scope, str(rec.get("id"))), {})
    for field, value in values.items():
        kept.setdefault(field, rec.get(field))
        rec[field] = value


def _set_aside(
    scope: str, rec: dict[str, Any], start: str, rule: Any, ctx: WorldContext
) -> None:
    """Time a record never taken up was set aside: after it was made, by `short-within-days`
    past its start, and never later than it last changed already."""
    if rec.get(MADE) is None or rec.get(CHANGED) is None:
        return
    lo = parse_time(str(rec[MADE]))
    grace = timedelta(days=int(rule.get("short-within-days") or 0))
    until = date.fromisoformat(str(rec[start])) + grace
    by = datetime(until.year, until.month, until.day, tzinfo=UTC).timestamp()
    hi = min(parse_time(str(rec[CHANGED])), int(by), ctx.epoch)
    if hi <= lo:
        return
    at = random.Random(f"{ctx.seed}:{scope}:{rec.get('id')}:set-aside").random()
    rec[CHANGED] = format_datetime(lo + int((hi - lo) * at))


def _runs_on(rec: Mapping[str, Any], end: str, when: str) -> bool:
    """Whether a record is still in force on a date (its end after it, or none)."""
    until = rec.get(end)
    return until is None or str(until) > when

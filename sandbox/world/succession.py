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
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from opsmerge_sandbox.world.conditions import ConditionError, compile_condition
from opsmerge_sandbox.world.context import GenerationError, WorldContext

__all__ = ["KEYS", "succeed", "succession_problems"]

KEYS = ("per", "among", "from", "until", "alongside", "term", "ended", "short")


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
                    rec.update(rule.get("short") or {})  # the newer one was never taken up
                    continue
                running[end] = rec[start]
                if begins < today:
                    running.update(rule.get("ended") or {})
            running = rec


def _runs_on(rec: Mapping[str, Any], end: str, when: str) -> bool:
    """Whether a record is still in force on a date (its end after it, or none)."""
    until = rec.get(end)
    return until is None or str(until) > when

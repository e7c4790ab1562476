"""Times that keep pace with the clock (`x-live-time` on a date-time property).

The seeded world is made at its recipe's epoch and served on a clock that runs on: left as
stored, an agent online at the epoch would read as last heard from weeks ago. While a property's
`when` holds, its time reads as far behind the clock as it stood behind the epoch (an online
agent keeps being heard from, its enabled checks keep running), so the record agrees with its
status at any clock; once `when` stops holding, the stored time stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opsmerge_sandbox.clock import format_iso
from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world.conditions import (
    Condition,
    Env,
    Lookup,
    compile_condition,
    no_lookup,
    to_seconds,
)

Record = dict[str, Any]


def live_hints(schema: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Field -> the `when` of its `x-live-time` (empty: always), for an object schema."""
    out: dict[str, Mapping[str, Any]] = {}
    for field, prop in (schema.get("properties") or {}).items():
        live = prop.get("x-live-time") if isinstance(prop, Mapping) else None
        if isinstance(live, Mapping):
            out[field] = live.get("when") or {}
    return out


class LiveTimes:
    """The live-time properties of every collection, compiled once at start."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]], epoch: float | None) -> None:
        self.schemas = schemas
        self.epoch = epoch
        self.by_collection: dict[str, list[tuple[str, Condition]]] = {}
        # collections whose live times read other records (`->` in `when`): what they show
        # depends on more than the record and the clock's second
        self.reads_others: set[str] = set()
        if epoch is None:
            return
        for name, schema in schemas.items():
            for field, live_when in live_hints(schema).items():
                when = compile_condition(name, live_when, schemas)
                self.by_collection.setdefault(name, []).append((field, when))
                if "->" in repr(live_when):
                    self.reads_others.add(name)

    def fields(self, collection: str) -> frozenset[str]:
        return frozenset(f for f, _ in self.by_collection.get(collection, ()))

    def shown(
        self, collection: str, record: Record, now: float, lookup: Lookup | None
    ) -> Record | None:
        """The record with its live times moved on to the clock (a copy), or None when none
        moves (no live field, the clock at the epoch, or no `when` holding)."""
        live = self.by_collection.get(collection)
        if not live or self.epoch is None:
            return None
        shift = int(now - self.epoch)
        if shift <= 0:
            return None
        env = Env(lookup or no_lookup, int(now), {}, self.schemas)
        out: Record | None = None
        for field, when in live:
            at = to_seconds(record.get(field))
            if at is None or at > self.epoch or not when(record, env):
                continue  # a time set after the epoch was set on the running clock
            if out is None:
                out = dict(record)
            out[field] = format_iso(at + shift)
        return out

    def carry(
        self, collection: str, before: Record, after: Record, now: float, lookup: Lookup | None
    ) -> None:
        """Carry each live time across a write (`after` is the write's record) that stops or
        starts it. Stopped (its `when` held before and not after: a check switched off, an
        agent gone offline): kept at what it showed then, not sent back to its stored value
        weeks behind. Started again after a stop (a check switched back on): it reads now and
        keeps pace from here, as a time that runs does. A time the write sets is left."""
        live = self.by_collection.get(collection)
        if not live or self.epoch is None:
            return
        shift = int(now - self.epoch)
        if shift <= 0:
            return
        env = Env(lookup or no_lookup, int(now), {}, self.schemas)
        for field, when in live:
            stored = before.get(field)
            at = to_seconds(stored)
            if at is None or after.get(field) != stored:
                continue
            was, runs = when(before, env), when(after, env)
            if at <= self.epoch and was and not runs:
                after[field] = format_iso(at + shift)
            elif at > self.epoch and runs and not was:  # stopped by an earlier write
                after[field] = format_iso(self.epoch)


def live_fields_by_prefix(spec: Spec) -> dict[str, frozenset[str]]:
    """Id prefix -> the fields of that collection's records that keep pace with the clock."""
    out: dict[str, frozenset[str]] = {}
    for coll in spec.collections.values():
        live = frozenset(live_hints(coll.schema))
        if live:
            out[coll.id_prefix] = live
    return out


def without_live_times(value: Any, by_prefix: Mapping[str, frozenset[str]]) -> Any:
    """A JSON value with every record's live times left out: what a request can change, for
    comparing what two reads at different moments show (the clock alone moves those)."""
    if isinstance(value, list | tuple):
        return [without_live_times(v, by_prefix) for v in value]
    if not isinstance(value, dict):
        return value
    rid = value.get("id")
    drop = by_prefix.get(rid.split("_", 1)[0], frozenset()) if isinstance(rid, str) else ()
    return {k: without_live_times(v, by_prefix) for k, v in value.items() if k not in drop}

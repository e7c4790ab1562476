"""Numbers a created record takes from beyond itself, declared by the schema hints.

- `x-sequence.next-from`: a counter held by a fixed record (a settings record's next number). A
  create takes the counter's value (or the collection's own next number, if higher) and moves the
  counter on in the same transaction, so a refused creation moves nothing.
- `x-template.per-year-of`: `{seq}` counts within the year of a date field and `{year}` is that
  year (`INV-2027-0001`). The next one is one more than the highest this workspace holds for the
  year, read back out of the records' own values; nothing is reserved before the write is staged,
  and a rolled-back write leaves no trace, so the sequence stays gapless.
- `x-template.vars.<var>.override`: template variables (a ticket type's prefix) read from a fixed
  record's mapping, a blank entry keeping the built-in value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opsmerge_sandbox.extensions import FieldRules, RecordField
from opsmerge_sandbox.spec import Collection
from opsmerge_sandbox.store.base import BaseCollection
from opsmerge_sandbox.store.workspace import Workspace
from opsmerge_sandbox.world.computed_fields import Numbers, template_pattern, year_of
from opsmerge_sandbox.world.conditions import Lookup

Record = dict[str, Any]


class Numbering:
    """The outside inputs of one spec's computed fields, per collection."""

    def __init__(self, collections: Mapping[str, Collection], rules: Mapping[str, FieldRules]):
        self._rules = rules
        self._patterns: dict[tuple[str, str], re.Pattern[str] | None] = {}
        self._starts: dict[tuple[str, str], int] = {}
        self._seeded: dict[tuple[BaseCollection, str], dict[int, int]] = {}  # by year
        for name, coll in collections.items():
            props = coll.schema.get("properties") or {}
            for field in rules[name].yearly:
                self._patterns[(name, field)] = template_pattern(coll, field)
            for field in rules[name].counters:
                self._starts[(name, field)] = int(props[field]["x-sequence"].get("start", 1))

    def maps(
        self, ws: Workspace, coll: Collection, lookup: Lookup | None = None
    ) -> dict[str, dict[str, dict[Any, Any]]]:
        """Template variable values chosen in fixed records (`override`), per template field
        (`lookup`: a write's own remembered reads, else the workspace's)."""
        out: dict[str, dict[str, dict[Any, Any]]] = {}
        get = ws.get if lookup is None else lookup
        for field, by_var in self._rules[coll.name].overrides.items():
            for var, override in by_var.items():
                chosen = _read(get, override.source)
                if isinstance(chosen, Mapping):  # each value's key read by `get` itself
                    keys = override.keys
                    out.setdefault(field, {})[var] = dict(
                        zip(keys, map(chosen.get, keys.values()), strict=True)
                    )
        return out

    def for_create(
        self,
        ws: Workspace,
        coll: Collection,
        record: Record,
        seq: int,
        year: int,
        now: str,
        lookup: Lookup | None = None,
    ) -> Numbers:
        """The numbers of a record about to be created; stages the counters it moves on.
        `lookup`: the create's own remembered reads (of the state before its transaction),
        else the workspace's."""
        rules = self._rules[coll.name]
        get = ws.get if lookup is None else lookup
        sequences: dict[str, int] = {}
        for field, counter in rules.counters.items():
            holder = get(counter.collection, counter.record_id)
            value = (holder or {}).get(counter.field)
            if holder is None or isinstance(value, bool) or not isinstance(value, int):
                continue  # no counter: the collection's own sequence numbers it
            number = max(value, self._starts[(coll.name, field)] + seq - 1)
            sequences[field] = number
            ws.write(counter.collection, {**holder, counter.field: number + 1, "updated_at": now})
        scoped: dict[str, tuple[int, int]] = {}
        for field, date_field in rules.yearly.items():
            record_year = year_of(record.get(date_field)) or year
            scoped[field] = (self._highest(ws, coll, field, record_year) + 1, record_year)
        return Numbers(sequences=sequences, scoped=scoped, maps=self.maps(ws, coll, lookup))

    def _highest(self, ws: Workspace, coll: Collection, field: str, year: int) -> int:
        """The highest `{seq}` of the year among the workspace's records of the collection.

        Seeded numbers never change (updates keep them), so theirs is read once per seeded
        collection. The workspace's own creations are read once each: the view keeps what was
        read and reads only what it created since, unless a created record changed or went
        (then all again), so a create costs the same with 10 or 100,000 created before it.
        """
        pattern = self._patterns.get((coll.name, field))
        if pattern is None:
            return 0
        view = ws.view(coll.name)
        key = (view.base, field)  # the base itself: an id() could come back for another one
        seeded = self._seeded.get(key)
        if seeded is None:
            seeded = self._seeded[key] = _by_year(pattern, field, view.base.records)
        if view.deferred:  # records made on first read count like the others
            view.settle()
        scan: _Scan | None = view.memo.get((_Scan, field))
        if scan is None or scan.reshaped != view.reshaped:
            scan = _Scan(view.reshaped, len(view.appended), {})
            _by_year(pattern, field, view.created.values(), scan.highest)
            view.memo[(_Scan, field)] = scan
        elif scan.read < len(view.appended):
            _by_year(pattern, field, view.appended[scan.read :], scan.highest)
            scan.read = len(view.appended)
        return max(seeded.get(year, 0), scan.highest.get(year, 0))


@dataclass
class _Scan:
    """The highest `{seq}` per year among a view's creations, and how far it has read them."""

    reshaped: int
    read: int
    highest: dict[int, int]


def _by_year(
    pattern: re.Pattern[str],
    field: str,
    records: Iterable[Record],
    out: dict[int, int] | None = None,
) -> dict[int, int]:
    """The highest `{seq}` per `{year}` among the records' values of a template field (added
    to `out` when given)."""
    out = {} if out is None else out
    for record in records:
        found = pattern.match(str(record.get(field) or ""))
        if found is None:
            continue
        parts = found.groupdict()
        year = int(parts.get("year") or 0)
        out[year] = max(out.get(year, 0), int(parts.get("seq") or 0))
    return out


def _read(get: Lookup, where: RecordField) -> Any:
    holder = get(where.collection, where.record_id)
    return None if holder is None else holder.get(where.field)

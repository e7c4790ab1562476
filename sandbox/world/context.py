"""The generation model: the record being built (`Draft`), how one property is produced
(`FieldPlan`) and what makers may consult beyond their record (`WorldContext`).

Every maker module shares these types, so they live apart from any one kind of maker.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opsmerge_sandbox.world.closings import Closing, closings
from opsmerge_sandbox.world.conditions import Condition, Env
from opsmerge_sandbox.world.pools import faker_generator, seeded_pool

Schema = dict[str, Any]
Maker = Callable[["Draft"], Any]


class GenerationError(ValueError):
    """The spec and recipe together cannot produce a valid world."""


class Redraw(Exception):
    """The record cannot be finished as drawn (a `unique` reference has no record left to
    name, a change no value to come from, or what it names was made after another it names had
    closed): the generator draws it again from where its random stream stands."""


@dataclass(slots=True)
class Draft:
    """A record being generated: its values, its random stream and what was decided so far."""

    rng: random.Random
    rec: dict[str, Any]
    fixed: frozenset[str] = frozenset()
    times: dict[str, int] = field(default_factory=dict)  # field -> seconds since 1970
    refs: dict[str, tuple[str, int]] = field(default_factory=dict)  # field -> (collection, index)
    not_before: int = 0  # the latest creation among records a list of references names
    # records `unique` references took for this draft: (the pool they came from, index); given
    # back if the record is drawn again
    claims: list[tuple[list[int], int]] = field(default_factory=list)
    parent: Draft | None = None  # the record a nested object belongs to (`$parent.<field>`)


@dataclass(slots=True)
class FieldPlan:
    """How one property is produced, and what it must wait for within its record."""

    name: str
    make: Maker
    deps: tuple[str, ...] = ()
    on_fixed: Callable[[Draft, Any], None] | None = None  # a named record gave the value


def _no_object_maker(schema: Schema, ctx: WorldContext, where: str) -> Maker:
    raise GenerationError(f"{where}: nested objects need plans.object_maker in the context")


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
        organisation: dict[str, Any] | None = None,
    ) -> None:
        self.seed = seed
        self.organisation = dict(organisation or {})
        self.schemas = schemas
        # builds a nested object's maker (plans.object_maker); set by whoever compiles plans
        self.object_maker: Callable[[Schema, WorldContext, str], Maker] = _no_object_maker
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
        # (collection, id) -> what a settling rule moved on, as the record was made: a record of
        # its making shows these (`x-birth`), not what a later change set
        self.made_with: dict[tuple[str, str], dict[str, Any]] = {}
        self._by_field: dict[tuple[str, str], dict[Any, list[int]]] = {}
        self._index: dict[str, dict[str, int]] = {}
        try:  # records that stop being named anew (`x-closed`): times keep before it
            self.closings: dict[str, Closing] = closings(schemas)
        except ValueError as exc:
            raise GenerationError(str(exc)) from None
        self.faker = faker_generator()
        # what conditions and templates read beyond the record: earlier records, the epoch
        self.env = Env(self.lookup, epoch, self.organisation, schemas)
        # keyed by the condition itself, which the key keeps alive: an id() could be reused by
        # a later condition once an earlier one is freed, and hand it the wrong records
        self._filtered: dict[tuple[str, Condition], list[int]] = {}
        self._unions: dict[tuple[str, str, tuple[Any, ...]], list[int]] = {}
        self._closed: dict[str, dict[Any, int]] = {}
        self._last_id: Any = None
        self._last_collection: Any = None
        self._last: dict[str, Any] | None = None

    def lookup(self, collection: str, record_id: Any) -> dict[str, Any] | None:
        """A record of a collection generated earlier, by id (None if there is none yet)."""
        if record_id is self._last_id and collection is self._last_collection:
            return self._last  # two hints of one record often read the same referenced record
        records = self.world.get(collection)
        if records is None or record_id.__class__ is not str:
            return None
        tail = record_id[-6:]
        if tail.isdigit():  # a generated id carries its index: no table needed
            i = int(tail)
            if i < len(records) and self.ids[collection][i] == record_id:
                self._last_id, self._last_collection, self._last = record_id, collection, records[i]
                return records[i]
        index = self.index_of(collection, record_id)
        return records[index] if index is not None and index < len(records) else None

    def union_of(
        self,
        collection: str,
        their_field: str,
        values: tuple[Any, ...],
        table: dict[Any, list[int]],
    ) -> list[int]:
        """Indices of records whose field holds any of `values`, computed once per set."""
        key = (collection, their_field, values)
        found = self._unions.get(key)
        if found is None:
            found = self._unions[key] = sorted({i for v in values for i in table.get(v, ())})
        return found

    def matching(self, collection: str, condition: Condition) -> list[int]:
        """Indices of a generated collection's records passing `condition`, computed once."""
        found = self._filtered.get((collection, condition))
        if found is None:
            test, env = condition.fast(), self.env
            found = [i for i, r in enumerate(self.world.get(collection, ())) if test(r, env)]
            self._filtered[(collection, condition)] = found
        return found

    def closed_since(self, collection: str) -> dict[Any, int]:
        """Id -> when it closed, for the records of a generated collection that are closed
        (`x-closed`); computed once, when what refers to them is made."""
        found = self._closed.get(collection)
        if found is None:
            rule, env = self.closings[collection], self.env
            found = {}
            for r in self.world.get(collection, ()):
                at = rule.closed_at(r, env)
                if at is not None:
                    found[r.get("id")] = at
            self._closed[collection] = found
        return found

    def record_id(self, collection: str, index: int) -> str:
        return self.ids[collection][index]

    def index_of(self, collection: str, record_id: str) -> int | None:
        """The index of a record by id. A generated id carries its index (`agt_000042`), so only
        named ids need a table: a table of every id of a large collection costs megabytes."""
        ids = self.ids.get(collection)
        if ids is None or not isinstance(record_id, str):
            return None
        tail = record_id[record_id.rfind("_") + 1 :]
        if tail.isdigit():
            i = int(tail)
            if i < len(ids) and ids[i] == record_id:
                return i
        index = self._index.get(collection)
        if index is None:
            named = self.named_ids.get(collection, ())
            index = {rid: i for i, rid in enumerate(named)}
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
        """Seeded values of a free-text provider, kept across builds of the same seed."""
        return seeded_pool(self.faker, self.seed, provider)

"""The generation model: the record being built (`Draft`), how one property is produced
(`FieldPlan`) and what makers may consult beyond their record (`WorldContext`).

Every maker module shares these types, so they live apart from any one kind of maker.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opsmerge_sandbox.world.pools import faker_generator, seeded_pool

Schema = dict[str, Any]
Maker = Callable[["Draft"], Any]


class GenerationError(ValueError):
    """The spec and recipe together cannot produce a valid world."""


@dataclass(slots=True)
class Draft:
    """A record being generated: its values, its random stream and what was decided so far."""

    rng: random.Random
    rec: dict[str, Any]
    fixed: frozenset[str] = frozenset()
    times: dict[str, int] = field(default_factory=dict)  # field -> seconds since 1970
    refs: dict[str, tuple[str, int]] = field(default_factory=dict)  # field -> (collection, index)


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
    ) -> None:
        self.seed = seed
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
        """Seeded values of a free-text provider, kept across builds of the same seed."""
        return seeded_pool(self.faker, self.seed, provider)

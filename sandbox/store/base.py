"""The seeded records of one collection, with the indexes that keep reads from scanning it.

The seeded world never changes after start, so its indexes (by id, by filter field) and the
orderings of its query results are built once and shared by every workspace that has not written
to the collection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import msgspec

Record = dict[str, Any]
QueryKey = tuple[Any, ...]

_CACHE_SIZE = 128
_encode = msgspec.json.Encoder().encode


def sort_key(field: str) -> Callable[[Record], tuple[Any, ...]]:
    """Orders by the field (nulls last) then by id, so every order is total and stable.

    Text sorts as people read it, ignoring case (`app-02` before `WRIGHT-SRV08`, as a database's
    collation would have it), with the case only breaking ties. A field that carries its enum's
    declared order (`x-ordinal`, see `ordinal.SortField`) sorts by rank: Low, Medium, High,
    Critical rather than alphabetically.
    """
    from opsmerge_sandbox.store.ordinal import ranks_of

    ranks = ranks_of(field)
    if ranks is not None:
        last = len(ranks)

        def ranked(record: Record) -> tuple[Any, ...]:
            value = record.get(field)
            return (value is None, ranks.get(value, last) if value is not None else 0, record["id"])

        return ranked

    def key(record: Record) -> tuple[Any, ...]:
        value = record.get(field)
        if value is None:
            return (True, 0, 0, record["id"])
        if isinstance(value, str):
            return (False, value.casefold(), value, record["id"])
        return (False, value, 0, record["id"])

    return key


def matches(
    record: Record, filters: Sequence[tuple[str, Any]], search: tuple[tuple[str, ...], str] | None
) -> bool:
    for field, wanted in filters:
        value = record.get(field)
        if isinstance(value, list):
            if wanted not in value:
                return False
        elif value != wanted:
            return False
    if search:
        fields, needle = search
        return any(needle in str(record.get(f) or "").lower() for f in fields)
    return True


Held = TypeVar("Held")


class QueryCache(Generic[Held]):
    """A small LRU of what queries found (ordered record lists), keyed by the query."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._items: OrderedDict[QueryKey, Held] = OrderedDict()
        self._size = size

    def get(self, key: QueryKey) -> Held | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: QueryKey, value: Held) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class BaseCollection:
    def __init__(self, name: str, records: list[Record]) -> None:
        self.name = name
        self.records = records
        self.pos: dict[str, int] = {r["id"]: i for i, r in enumerate(records)}
        self._indexes: dict[str, dict[Any, list[int]]] = {}
        self._raw: dict[int, msgspec.Raw] = {}
        self.cache: QueryCache[list[Record]] = QueryCache()

    def __len__(self) -> int:
        return len(self.records)

    def get(self, record_id: str) -> Record | None:
        i = self.pos.get(record_id)
        return None if i is None else self.records[i]

    def raw(self, record: Record) -> Record | msgspec.Raw:
        """The record pre-encoded as JSON when it is a seeded record nobody changed.

        Seeded records never change, so each is encoded once and a page of them is spliced
        into the answer as bytes (msgspec.Raw) instead of being serialised again.
        """
        # keyed by object identity: seeded records live as long as the collection, so no other
        # live record can share an id() with one of them
        found = self._raw.get(id(record))
        if found is None:
            if not self.is_seeded(record):  # created or changed: not cached
                return record
            found = self._raw[id(record)] = self.encoded(record)
        return found

    def is_seeded(self, record: Record) -> bool:
        """Whether this is a seeded record nobody changed (the very object the seed made)."""
        i = self.pos.get(record["id"])
        return i is not None and self.records[i] is record

    @staticmethod
    def encoded(record: Record) -> msgspec.Raw:
        """A record encoded once, as `raw` encodes a seeded one."""
        return msgspec.Raw(_encode(record))

    def index(self, field: str) -> dict[Any, list[int]]:
        """Positions of the records by the value of a field (each element, for list fields)."""
        idx = self._indexes.get(field)
        if idx is None:
            idx = {}
            for i, record in enumerate(self.records):
                value = record.get(field)
                for v in value if isinstance(value, list) else (value,):
                    if isinstance(v, dict | list):
                        continue
                    idx.setdefault(v, []).append(i)
            self._indexes[field] = idx
        return idx

    def candidates(self, filters: Sequence[tuple[str, Any]]) -> Iterable[Record]:
        """Records that may match: the smallest index bucket when filtered, else all records."""
        if not filters:
            return self.records
        buckets = []
        for field, wanted in filters:
            try:
                buckets.append(self.index(field).get(wanted, []))
            except TypeError:  # unhashable filter value: fall back to a scan
                return self.records
        smallest = min(buckets, key=len)
        return (self.records[i] for i in smallest)

    def query(
        self,
        filters: Sequence[tuple[str, Any]],
        search: tuple[tuple[str, ...], str] | None,
        sort_field: str,
        descending: bool,
    ) -> list[Record]:
        key: QueryKey = (tuple(filters), search, sort_field, descending)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        found = [r for r in self.candidates(filters) if matches(r, filters, search)]
        found.sort(key=sort_key(sort_field), reverse=descending)
        self.cache.put(key, found)
        return found

"""A workspace: the seeded world plus the changes one client (or CI job) made to it.

Copy-on-write: a new workspace holds no records of its own, only the changes written to it, so
creating one is free and a reset just forgets its changes. Reads of a collection nobody wrote to
go straight to the shared seeded indexes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sandbox.store.base import BaseCollection, QueryCache, Record, matches, sort_key
from sandbox.store.persistence import DeltaStore

Search = tuple[tuple[str, ...], str] | None


class CollectionView:
    """One collection as one workspace sees it."""

    def __init__(self, base: BaseCollection) -> None:
        self.base = base
        self.overrides: dict[
            str, Record | None
        ] = {}  # seeded id -> changed record, None if deleted
        self.created: dict[str, Record] = {}  # records clients created, in creation order
        self.created_count = 0  # creations ever, deleted ones included: feeds sequence numbers
        self.seqs: dict[str, int] = {}  # sequence number of each created record
        self.cache = QueryCache(32)
        self.version = 0  # bumped on every write: lets callers cache what they derive from it

    @property
    def pristine(self) -> bool:
        return not self.overrides and not self.created

    def get(self, record_id: str) -> Record | None:
        if record_id in self.created:
            return self.created[record_id]
        if record_id in self.overrides:
            return self.overrides[record_id]
        return self.base.get(record_id)

    def seq_of(self, record_id: str) -> int:
        if record_id in self.seqs:
            return self.seqs[record_id]
        return self.base.pos[record_id] + 1

    def count(self) -> int:
        removed = sum(1 for v in self.overrides.values() if v is None)
        return len(self.base) - removed + len(self.created)

    def query(
        self,
        filters: Sequence[tuple[str, Any]],
        search: Search,
        sort_field: str,
        descending: bool,
        volatile: bool = False,
    ) -> list[Record]:
        """The matching records in order; cached until the next write."""
        if self.pristine:
            return self.base.query(filters, search, sort_field, descending)
        key = (tuple(filters), search, sort_field, descending)
        if not volatile:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        found: list[Record] = [
            r
            for r in self.base.candidates(filters)
            if r["id"] not in self.overrides and matches(r, filters, search)
        ]
        found.extend(
            r for r in self.overrides.values() if r is not None and matches(r, filters, search)
        )
        found.extend(r for r in self.created.values() if matches(r, filters, search))
        found.sort(key=sort_key(sort_field), reverse=descending)
        if not volatile:
            self.cache.put(key, found)
        return found

    def put(self, record: Record) -> bool:
        """Store a record; True when it is a new creation."""
        rid = record["id"]
        self.cache.clear()
        self.version += 1
        if rid in self.created or rid not in self.base.pos:
            is_new = rid not in self.created
            if is_new:
                self.created_count += 1
                self.seqs[rid] = len(self.base) + self.created_count
            self.created[rid] = record
            return is_new
        self.overrides[rid] = record
        return False

    def delete(self, record_id: str) -> None:
        self.cache.clear()
        self.version += 1
        if record_id in self.created:
            del self.created[record_id]
        else:
            self.overrides[record_id] = None


class Workspace:
    def __init__(self, name: str, bases: dict[str, BaseCollection], delta: DeltaStore) -> None:
        self.name = name
        self._bases = bases
        self._delta = delta
        self.views: dict[str, CollectionView] = {}
        self.last_used = time.monotonic()
        self._restore()

    def view(self, collection: str) -> CollectionView:
        v = self.views.get(collection)
        if v is None:
            v = self.views[collection] = CollectionView(self._bases[collection])
        return v

    def get(self, collection: str, record_id: str) -> Record | None:
        return self.view(collection).get(record_id)

    def write(self, collection: str, record: Record) -> None:
        view = self.view(collection)
        view.put(record)
        rid = record["id"]
        self._delta.put(self.name, collection, rid, record, rid in view.created, view.seq_of(rid))

    def delete(self, collection: str, record_id: str) -> None:
        view = self.view(collection)
        was_created = record_id in view.created
        seq = view.seq_of(record_id)
        view.delete(record_id)
        self._delta.put(self.name, collection, record_id, None, was_created, seq)

    def _restore(self) -> None:
        """Replay what the delta store holds for this workspace (after a restart)."""
        docs = sorted(self._delta.load(self.name), key=lambda d: d["seq"])
        for doc in docs:
            if doc["collection"] not in self._bases:
                continue
            view = self.view(doc["collection"])
            view.version += 1
            rid, record = doc["id"], doc["record"]
            if doc["created"]:
                view.seqs[rid] = doc["seq"]
                view.created_count = max(view.created_count, doc["seq"] - len(view.base))
                if record is not None:
                    view.created[rid] = record
            else:
                view.overrides[rid] = record


class Workspaces:
    """Every workspace of this sandbox, created from the seed on first use."""

    DEFAULT = "default"

    def __init__(self, bases: dict[str, BaseCollection], delta: DeltaStore) -> None:
        self.bases = bases
        self.delta = delta
        self._items: dict[str, Workspace] = {}
        for name in delta.workspaces():
            self._items[name] = Workspace(name, bases, delta)

    def get(self, name: str = DEFAULT) -> Workspace:
        ws = self._items.get(name)
        if ws is None:
            ws = self._items[name] = Workspace(name, self.bases, self.delta)
        ws.last_used = time.monotonic()
        return ws

    def names(self) -> list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def reset(self, name: str | None = None) -> None:
        """Forget the changes of one workspace, or of all of them."""
        for ws_name in [name] if name else list(self._items):
            self.delta.drop(ws_name)
            self._items.pop(ws_name, None)

    def drop_idle(self, idle_seconds: float, keep: int | None = None) -> int:
        """Drop workspaces unused for a while (and the oldest beyond `keep`); returns how many."""
        now = time.monotonic()
        dropped = 0
        for name, ws in list(self._items.items()):
            if name != self.DEFAULT and now - ws.last_used > idle_seconds:
                self.reset(name)
                dropped += 1
        if keep is not None and len(self._items) > keep:
            by_age = sorted((ws.last_used, n) for n, ws in self._items.items() if n != self.DEFAULT)
            for _, n in by_age[: len(self._items) - keep]:
                self.reset(n)
                dropped += 1
        return dropped

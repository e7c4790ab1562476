"""A workspace: the seeded world plus the changes one client (or CI job) made to it.

Copy-on-write: a new workspace holds no records of its own, only the changes written to it, so
creating one is free and a reset just forgets its changes. Reads of a collection nobody wrote to
go straight to the shared seeded indexes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sandbox.errors import ApiError
from sandbox.store.base import BaseCollection, QueryCache, Record, matches, sort_key
from sandbox.store.persistence import DeltaStore

Search = tuple[tuple[str, ...], str] | None
log = logging.getLogger(__name__)


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
        # sequence numbers of creations staged in an open transaction (counted in created_count)
        self.reserved: dict[str, int] = {}

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
        if record_id in self.reserved:  # first: an id created anew gets a new number
            return self.reserved[record_id]
        if record_id in self.seqs:
            return self.seqs[record_id]
        return self.base.pos[record_id] + 1

    def is_new(self, record_id: str) -> bool:
        """Whether writing this id creates a record (rather than changing one)."""
        return (
            record_id not in self.created
            and record_id not in self.base.pos
            and record_id not in self.reserved
        )

    def is_created(self, record_id: str) -> bool:
        """Whether a client created this id (staged creations of an open transaction included).

        Seeded ids are changed in place (as overrides), so every other id is a creation.
        """
        return record_id not in self.base.pos

    def reserve(self, record_id: str) -> None:
        """Give a staged creation the next sequence number before it is committed."""
        self.created_count += 1
        self.reserved[record_id] = len(self.base) + self.created_count

    def release(self, committed: bool) -> None:
        """Forget the reservations: once committed they live in `seqs`, else they never happened."""
        if not committed:
            self.created_count -= len(self.reserved)
        self.reserved.clear()

    def apply(self, record_id: str, record: Record | None, created: bool, seq: int) -> None:
        """Apply one committed change (the delta store already holds it)."""
        self.cache.clear()
        self.version += 1
        if not created:
            self.overrides[record_id] = record
            return
        self.seqs[record_id] = seq
        if record is None:
            self.created.pop(record_id, None)
        else:
            self.created[record_id] = record

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


class Workspace:
    """One workspace's views of the collections, and the changes it stages and commits.

    A change is applied to the views only once the delta store holds it. Outside a transaction
    each write or delete commits at once; between `begin()` and `commit()` they are staged and
    reach the store with one write, then the views, all together or not at all. Reads during a
    transaction see the state before it (handlers only read records they already hold).
    """

    def __init__(self, name: str, bases: dict[str, BaseCollection], delta: DeltaStore) -> None:
        self.name = name
        self._bases = bases
        self._delta = delta
        self.views: dict[str, CollectionView] = {}
        self.last_used = time.monotonic()
        # (collection, id) -> record or None (deleted) while a transaction is open, else None
        self._staged: dict[tuple[str, str], Record | None] | None = None
        self._reserving: list[CollectionView] = []  # views holding numbers for staged creations
        self._restore()

    def view(self, collection: str) -> CollectionView:
        v = self.views.get(collection)
        if v is None:
            v = self.views[collection] = CollectionView(self._bases[collection])
        return v

    def get(self, collection: str, record_id: str) -> Record | None:
        return self.view(collection).get(record_id)

    @property
    def in_transaction(self) -> bool:
        return self._staged is not None

    def begin(self) -> None:
        """Stage the writes and deletes that follow until `commit()` or `rollback()`."""
        if self._staged is not None:
            raise RuntimeError(f"workspace {self.name!r} already has an open transaction")
        self._staged = {}

    def write(self, collection: str, record: Record) -> None:
        if self._staged is not None:
            self._stage(collection, record["id"], record)
            return
        self._staged = {}
        self._stage(collection, record["id"], record)
        self.commit()

    def delete(self, collection: str, record_id: str) -> None:
        if self._staged is not None:
            self._stage(collection, record_id, None)
            return
        self._staged = {}
        self._stage(collection, record_id, None)
        self.commit()

    def _stage(self, collection: str, record_id: str, record: Record | None) -> None:
        staged = self._staged
        assert staged is not None
        view = self.view(collection)
        if record is not None and view.is_new(record_id):
            view.reserve(record_id)  # numbered now, so a second creation cannot reuse the number
            self._reserving.append(view)
        staged[(collection, record_id)] = record

    def commit(self) -> None:
        """Make the staged changes durable with one store write, then apply them to the views.

        When the store cannot take the write, nothing is applied and STORE_UNAVAILABLE (503) is
        raised: the caller may retry without creating anything twice.
        """
        staged, self._staged = self._staged, None
        if not staged:
            self._release(committed=False)
            return
        try:
            changes = [
                (collection, rid, record, view.is_created(rid), view.seq_of(rid))
                for (collection, rid), record in staged.items()
                for view in (self.views[collection],)
            ]
            self._delta.commit(self.name, changes)
        except OSError as exc:
            self._release(committed=False)
            log.error("workspace %s: %d change(s) not saved: %s", self.name, len(staged), exc)
            raise ApiError(
                "STORE_UNAVAILABLE",
                f"The change could not be saved ({exc.strerror or type(exc).__name__}), so "
                "nothing was changed; retry once the sandbox's data directory takes writes again.",
            ) from exc
        except BaseException:
            self._release(committed=False)
            raise
        views = self.views
        for collection, rid, record, created, seq in changes:
            views[collection].apply(rid, record, created, seq)
        self._release(committed=True)

    def rollback(self) -> None:
        """Drop the staged changes (a no-op when no transaction is open, e.g. after commit)."""
        self._staged = None
        self._release(committed=False)

    def _release(self, committed: bool) -> None:
        """Settle the sequence numbers staged creations reserved: kept if committed, else freed."""
        if self._reserving:
            for view in self._reserving:
                if view.reserved:
                    view.release(committed)
            self._reserving.clear()

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

    def read(self, name: str, collection: str, record_id: str) -> Record | None:
        """A record as workspace `name` holds it, without creating the workspace.

        Authentication reads the key's owner here: a request must not allocate a workspace
        before its caller is known.
        """
        ws = self._items.get(name)
        if ws is not None:
            return ws.get(collection, record_id)
        return self.bases[collection].get(record_id)

    def __len__(self) -> int:
        return len(self._items)

    def reset(self, name: str | None = None) -> None:
        """Forget the changes of one workspace, or of all of them, with one store write.

        When the store cannot take the write, every workspace keeps its changes and
        STORE_UNAVAILABLE (503) is raised.
        """
        names = [name] if name else list(self._items)
        try:
            self.delta.drop(*names)
        except OSError as exc:
            log.error("reset of %d workspace(s) not saved: %s", len(names), exc)
            raise ApiError(
                "STORE_UNAVAILABLE",
                f"The reset could not be saved ({exc.strerror or type(exc).__name__}), so "
                "nothing was reset; retry once the sandbox's data directory takes writes again.",
            ) from exc
        for ws_name in names:
            self._items.pop(ws_name, None)

    def drop_orphans(self) -> int:
        """Forget stored changes of workspaces that no longer exist (written while one was
        dropped mid-request); returns how many workspaces' changes went."""
        alive = set(self._items)
        orphans = [n for n in self.delta.workspaces() if n not in alive]
        for name in orphans:
            self.delta.drop(name)
        return len(orphans)

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

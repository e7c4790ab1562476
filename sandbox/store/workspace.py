"""A workspace: the seeded world plus the changes one client (or CI job) made to it.

Copy-on-write: a new workspace holds no records of its own, only the changes written to it, so
creating one is free and a reset just forgets its changes. Reads of a collection nobody wrote to
go straight to the shared seeded indexes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any, ClassVar

from mypy_extensions import mypyc_attr

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.store.base import BaseCollection, QueryCache, Record, matches, sort_key
from opsmerge_sandbox.store.kept_order import KeptOrder, merged, worth_merging
from opsmerge_sandbox.store.persistence import DeltaStore

Search = tuple[tuple[str, ...], str] | None
log = logging.getLogger(__name__)
# view versions come from one counter, so a number is never reused, even by a view whose
# un-durable changes were undone: whatever was cached under it stays stale
_versions = itertools.count(1)
_MISSING: Any = object()
Undo = tuple["CollectionView", str, tuple[Any, Any, Any]]  # a view, an id, what it held
# a record made only when its collection is read: its id, and the call (with its arguments)
# that makes it
Make = Callable[..., Record]
Deferred = tuple[str, Make, tuple[Any, ...]]
Mark = tuple[int, int]  # a view's version and created_count before a commit


class Transaction:
    """One open transaction of a workspace, as `begin` hands it out (told apart by identity),
    and the changes it stages: (collection, id) -> record, or None when deleted; and the new
    records it defers (`Workspace.defer`), by collection, in order."""

    __slots__ = ("deferred", "staged")

    def __init__(self) -> None:
        self.staged: dict[tuple[str, str], Record | None] = {}
        self.deferred: list[tuple[str, Deferred]] = []


_UNSAVED = {
    "change": "The change could not be saved ({why}), so nothing was changed",
    "reset": "The reset could not be saved ({why}), so nothing was reset",
    "read": "Changes this answer would show could not be saved ({why}), so they were undone",
}


class Durable:
    """What a commit (or reset) returns: awaiting it returns once the store holds the change.

    It raises STORE_UNAVAILABLE (503) when the store could not take the write; by then memory
    is back to what the store holds. In memory, or when nothing was written, it is done at once.
    Not a coroutine, so a caller that does not need the answer may drop it without a warning.
    """

    __slots__ = ("_future", "_what")

    def __init__(self, future: asyncio.Future[None] | None = None, what: str = "change") -> None:
        self._future = future
        self._what = what

    @property
    def done(self) -> bool:
        """Whether the store has answered (at once in memory)."""
        return self._future is None or self._future.done()

    def __await__(self) -> Generator[Any, None, None]:
        if self._future is None:
            return
        try:
            yield from self._future.__await__()
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ApiError(
                "STORE_UNAVAILABLE",
                _UNSAVED[self._what].format(why=why)
                + "; retry once the sandbox's data directory takes writes again.",
            ) from exc


DONE = Durable()


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
        self.cache: QueryCache[list[Record]] = QueryCache(32)
        # results kept across creations, brought up to date from `appended` (`kept_order.py`)
        self.kept: QueryCache[KeptOrder] = QueryCache(8)
        # changed on every write: lets callers cache what they derive from it
        self.version = 0
        # sequence numbers of creations staged in an open transaction (counted in created_count)
        self.reserved: dict[str, int] = {}
        # creations since `reshaped` last moved (a created record changed or deleted, an undo):
        # what is derived from `created` is brought up to date from these alone
        self.reshaped = 0
        self.appended: list[Record] = []
        self.memo: dict[Any, Any] = {}  # what callers derive from this view, kept with it
        # committed creations not made yet (`Workspace.defer`), by id, with their sequence
        # numbers: made, in order, by the first read that could see them
        self.deferred: dict[str, tuple[Make, tuple[Any, ...], int]] = {}

    @property
    def pristine(self) -> bool:
        return not self.overrides and not self.created and not self.deferred

    def get(self, record_id: str) -> Record | None:
        if record_id in self.created:
            return self.created[record_id]
        if record_id in self.overrides:
            return self.overrides[record_id]
        found = self.base.get(record_id)
        if found is None and record_id in self.deferred:  # never a seeded id
            self.settle()
            return self.created[record_id]
        return found

    def seq_of(self, record_id: str) -> int:
        if record_id in self.reserved:  # first: an id created anew gets a new number
            return self.reserved[record_id]
        if record_id in self.seqs:
            return self.seqs[record_id]
        if record_id in self.deferred:
            return self.deferred[record_id][2]
        return self.base.pos[record_id] + 1

    def defer(self, deferred: Deferred) -> None:
        """Apply one committed creation whose record is made when first read (`settle`): it is
        numbered now, in commit order, and what was derived from the view is stale."""
        self.cache.clear()
        self.version = next(_versions)
        self.created_count += 1
        record_id, make, args = deferred
        self.deferred[record_id] = (make, args, len(self.base) + self.created_count)

    def settle(self, limit: int | None = None) -> int:
        """Make the deferred creations (the first `limit` of them), in the order they were
        committed, as `apply` would have applied them; how many it made. A call that fails
        leaves its record and those after it deferred."""
        deferred, self.deferred = self.deferred, {}
        made = 0
        try:
            for record_id, (make, args, seq) in deferred.items():
                if made == limit:
                    break
                record = make(*args)
                self.seqs[record_id] = seq
                self.appended.append(record)
                self.created[record_id] = record
                made += 1
        finally:
            if made < len(deferred):
                self.deferred = dict(itertools.islice(deferred.items(), made, None))
        return made

    def is_new(self, record_id: str) -> bool:
        """Whether writing this id creates a record (rather than changing one)."""
        return (
            record_id not in self.created
            and record_id not in self.base.pos
            and record_id not in self.reserved
            and record_id not in self.deferred
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
        """Apply one committed change (queued for the store; undone if the store refuses it)."""
        if self.deferred:  # made first, so `created` stays in the order of its numbers
            self.settle()
        self.cache.clear()
        self.version = next(_versions)
        if not created:
            self.overrides[record_id] = record
            self.kept.clear()  # a seeded record changed or went: kept results sort again
            return
        self.seqs[record_id] = seq
        if record is None:
            self.created.pop(record_id, None)
            self.reshape()
        else:
            if record_id in self.created:
                self.reshape()
            else:
                self.appended.append(record)
            self.created[record_id] = record

    def reshape(self) -> None:
        """Say that `created` changed other than by appending: what was derived from it is
        derived again."""
        self.reshaped += 1
        self.appended = []
        self.kept.clear()

    def before(self, record_id: str) -> tuple[Any, Any, Any]:
        """What `apply` would overwrite for this id, for `restore` to put back."""
        if self.deferred:
            self.settle()
        return (
            self.overrides.get(record_id, _MISSING),
            self.created.get(record_id, _MISSING),
            self.seqs.get(record_id, _MISSING),
        )

    def restore(self, record_id: str, before: tuple[Any, Any, Any]) -> None:
        self.reshape()
        held_by: tuple[dict[str, Any], ...] = (self.overrides, self.created, self.seqs)
        for held, value in zip(held_by, before, strict=True):
            if value is _MISSING:
                held.pop(record_id, None)
            else:
                held[record_id] = value

    def written(self) -> list[Record]:
        """The records clients created or changed, as they are now (deleted ones are gone)."""
        if self.deferred:
            self.settle()
        changed = [r for r in self.overrides.values() if r is not None]
        return changed + list(self.created.values())

    def count(self) -> int:
        removed = sum(1 for v in self.overrides.values() if v is None)
        return len(self.base) - removed + len(self.created) + len(self.deferred)

    def query(
        self,
        filters: Sequence[tuple[str, Any]],
        search: Search,
        sort_field: str,
        descending: bool,
        volatile: bool = False,
    ) -> list[Record]:
        """The matching records in order; cached until the next write, and kept across
        creations (`kept_order.py`): a query after them puts only the new records in place."""
        if self.deferred:
            self.settle()
        if self.pristine:
            return self.base.query(filters, search, sort_field, descending)
        if volatile:
            return self._sorted(filters, search, sort_field, descending)
        key = (tuple(filters), search, sort_field, descending)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        kept = self.kept.get(key)
        if kept is None and not self.reshaped and not self.overrides:
            # only creations since the seed: the seeded order (cached by the base) is kept
            kept = KeptOrder(0, self.base.query(filters, search, sort_field, descending))
        appended = self.appended
        new = (
            [r for r in appended[kept.read :] if matches(r, filters, search)]
            if kept is not None and worth_merging(len(kept.records), len(appended) - kept.read)
            else None
        )
        if kept is not None and new is not None:
            found = merged(kept.records, new, sort_key(sort_field), descending)
        else:
            found = self._sorted(filters, search, sort_field, descending)
        self.cache.put(key, found)
        self.kept.put(key, KeptOrder(len(appended), found))
        return found

    def _sorted(
        self,
        filters: Sequence[tuple[str, Any]],
        search: Search,
        sort_field: str,
        descending: bool,
    ) -> list[Record]:
        """Every matching record, filtered and sorted from scratch."""
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
        return found


class Reads(dict[tuple[str, Any], Record | None]):
    """`Workspace.get` remembered for one handler's work in an open transaction (`read` is the
    lookup): reads in a transaction see the state before it, so the record a create's checks,
    rules and numbers each read (one its body names, say) is looked up once."""

    __slots__ = ("_get",)

    def __init__(self, get: Callable[[str, Any], Record | None]) -> None:
        super().__init__()
        self._get = get

    def __missing__(self, key: tuple[str, Any]) -> Record | None:
        found = self[key] = self._get(*key)
        return found

    def read(self, collection: str, record_id: Any) -> Record | None:
        return self[collection, record_id]


class Workspace:
    """One workspace's views of the collections, and the changes it stages and commits.

    Outside a transaction each write or delete commits at once; between `begin()` and `commit()`
    they are staged and reach the views and the store together. Reads during a transaction see
    the state before it (handlers only read records they already hold).

    A commit is applied to the views at once, so the next request builds on it, and queued for
    the store; the `Durable` it returns is awaited before the change is acknowledged, and a read
    awaits `settled()` before it answers, so no answer shows a change that is not yet durable.
    When the store cannot take a batch, the workspace is rebuilt from what the store holds.
    """

    def __init__(self, name: str, bases: dict[str, BaseCollection], delta: DeltaStore) -> None:
        self.name = name
        self._bases = bases
        self._delta = delta
        self.views: dict[str, CollectionView] = {}
        self.last_used = time.monotonic()
        self.detached = False  # reset away: its later commits reach nobody and are not stored
        # what request stages note about this workspace (the key uses its log is known to
        # hold); a reset workspace is a new object, without them
        self.memo: dict[Any, Any] = {}
        self._transaction: Transaction | None = None  # what `begin` handed out, while open
        self._reserving: list[CollectionView] = []  # views holding numbers for staged creations
        # the batch of its latest commit (or of a reset it starts from) until known durable
        self._pending: asyncio.Future[None] | None = delta.pending(name)
        # per commit not yet known durable: its batch, what it overwrote, and the views'
        # (version, created_count) before it, so a failed batch can be undone exactly
        self._unsaved: deque[tuple[asyncio.Future[None], list[Undo], dict[CollectionView, Mark]]]
        self._unsaved = deque()
        self._restore()

    def view(self, collection: str) -> CollectionView:
        v = self.views.get(collection)
        if v is None:
            v = self.views[collection] = CollectionView(self._bases[collection])
        return v

    def get(self, collection: str, record_id: str) -> Record | None:
        v = self.views.get(collection)  # the view's own lookup, without a call to `view`
        if v is None:
            v = self.view(collection)
        return v.get(record_id)

    def reads(self) -> Callable[[str, Any], Record | None]:
        """A lookup for one handler's reads: remembered while a transaction is open (its reads
        all see the state before it), else `get` itself, as a write outside one commits at
        once and may change what a later read finds."""
        if self._transaction is None:
            return self.get
        return Reads(self.get).read

    @property
    def in_transaction(self) -> bool:
        return self._transaction is not None

    @property
    def transaction(self) -> Transaction | None:
        """The transaction open now (what `begin` returned), if any."""
        return self._transaction

    def owns(self, transaction: Transaction | None) -> bool:
        """Whether `transaction` (what `begin` returned) is the one open now: a request that
        awaits between its handler and its commit (shared state) may see another's open
        transaction on the same workspace, which is not its to commit or drop."""
        return transaction is not None and self._transaction is transaction

    def staged_changes(self) -> list[tuple[str, str, Record | None]]:
        """What the open transaction changes so far: (collection, id, record or None)."""
        open_now = self._transaction
        if open_now is None:
            return []
        return [(c, rid, record) for (c, rid), record in open_now.staged.items()]

    @property
    def unsettled(self) -> bool:
        """Whether a commit it shows may not be durable yet (cheap: one attribute test)."""
        return self._pending is not None

    def settled(self) -> Durable:
        """Awaitable: every change this workspace shows is durable (STORE_UNAVAILABLE if not)."""
        pending = self._pending
        if pending is None:
            return DONE
        if pending.done() and not pending.cancelled() and pending.exception() is None:
            if self._pending is pending:
                self._pending = None
            return DONE
        return Durable(pending, "read")

    def begin(self) -> Transaction:
        """Stage the writes and deletes that follow until `commit()` or `rollback()`; the
        transaction, for `owns` and `rollback`."""
        if self._transaction is not None:
            raise RuntimeError(f"workspace {self.name!r} already has an open transaction")
        self._transaction = transaction = Transaction()
        return transaction

    def write(self, collection: str, record: Record) -> Durable:
        """Stage a write (in a transaction), else commit it; await the result to acknowledge."""
        open_now = self._transaction
        if open_now is not None:
            self._stage(open_now.staged, collection, record["id"], record)
            return DONE
        return self._alone(collection, record["id"], record)

    @property
    def defers(self) -> bool:
        """Whether `defer` keeps a record unmade past its commit (in memory); a store that keeps
        every record makes it at commit, where writing it at once costs less."""
        return not self._delta.keeps_records

    def defer(self, collection: str, record_id: str, make: Make, *args: Any) -> None:
        """Stage the creation of a record that is made (`make(*args)`) only when something reads
        its collection: a record written far more often than read (an audit log's entry) stays a
        few references until then. In a store that keeps every record (a data directory, shared
        state) it is made at commit and written like any other. The id must be new (never a
        seeded or an earlier one); only inside a transaction."""
        open_now = self._transaction
        if open_now is None:
            raise RuntimeError("defer stages into an open transaction")
        open_now.deferred.append((collection, (record_id, make, args)))

    @property
    def deferring(self) -> bool:
        """Whether records its commits deferred are still to be made."""
        return any(view.deferred for view in self.views.values())

    def make_deferred(self, budget: int) -> int:
        """Make up to `budget` of the records its commits deferred, oldest first in each
        collection (work for idle time: `store/idle_making.py`); how many it made."""
        made = 0
        for view in list(self.views.values()):  # a making may open another view
            if made >= budget:
                break
            if view.deferred:
                made += view.settle(budget - made)
        return made

    def delete(self, collection: str, record_id: str) -> Durable:
        open_now = self._transaction
        if open_now is not None:
            self._stage(open_now.staged, collection, record_id, None)
            return DONE
        return self._alone(collection, record_id, None)

    def save(self, collection: str, record: Record) -> Durable:
        """Commit a write in a transaction of its own, at once: for a write the sandbox makes
        beside the requests' (a rule's firing). Raises RuntimeError while another writer's
        transaction is open, where `write` would join that one."""
        return self._alone(collection, record["id"], record)

    def _alone(self, collection: str, record_id: str, record: Record | None) -> Durable:
        """A change outside any transaction, committed in one of its own (a transaction like
        any other, so a failure on the way drops it like any other)."""
        transaction = self.begin()
        try:
            self._stage(transaction.staged, collection, record_id, record)
        except BaseException:
            self.rollback(transaction)
            raise
        return self.commit()

    def _stage(
        self,
        staged: dict[tuple[str, str], Record | None],
        collection: str,
        record_id: str,
        record: Record | None,
    ) -> None:
        view = self.views.get(collection)  # the view's own lookup, as `get` makes it
        if view is None:
            view = self.view(collection)
        if record is not None and view.is_new(record_id):
            view.reserve(record_id)  # numbered now, so a second creation cannot reuse the number
            self._reserving.append(view)
        staged[(collection, record_id)] = record

    def commit(self) -> Durable:
        """Apply the staged changes to the views and queue them for the store, as one commit.

        Await the result before acknowledging: it raises STORE_UNAVAILABLE (503) when the store
        cannot take the write, and by then the views hold only what the store holds, so the
        caller may retry without creating anything twice.
        """
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            self._release(committed=False)
            return DONE
        staged, deferred = transaction.staged, transaction.deferred
        if deferred and self._delta.keeps_records:
            try:
                for collection, (rid, make, args) in deferred:  # made now, stored as written
                    self._stage(staged, collection, rid, make(*args))
            except BaseException:
                self._release(committed=False)  # the commit is dropped, numbers and all
                raise
            deferred = []
        if not staged and not deferred:
            self._release(committed=False)
            return DONE
        views = self.views
        changes = [  # `rid not in view.base.pos`: `is_created`, inline (one per staged write)
            (collection, rid, record, rid not in view.base.pos, view.seq_of(rid))
            for (collection, rid), record in staged.items()
            for view in (views[collection],)
        ]
        future = None
        if not self.detached:
            try:
                future = self._delta.commit(self.name, changes)
            except BaseException:
                self._release(committed=False)
                raise
        if future is not None:
            unsaved = self._unsaved
            while unsaved and unsaved[0][0].done():  # durable: nothing to undo any more
                unsaved.popleft()
            marks: dict[CollectionView, Mark] = {}
            for view in self._reserving:
                marks.setdefault(view, (view.version, view.created_count - len(view.reserved)))
            undo: list[Undo] = []
            for collection, rid, *_ in changes:
                view = views[collection]
                marks.setdefault(view, (view.version, view.created_count))
                undo.append((view, rid, view.before(rid)))
            unsaved.append((future, undo, marks))
        for collection, rid, record, created, seq in changes:
            views[collection].apply(rid, record, created, seq)
        for collection, later in deferred:
            self.view(collection).defer(later)
        self._release(committed=True)
        if future is None:
            return DONE
        self._pending = future
        return Durable(future)

    def undo_unsaved(self) -> None:
        """Undo every commit not yet durable, newest first: the views are as the store holds
        them (called when the store could not take a batch, before its writers hear of it)."""
        while self._unsaved:
            future, undo, marks = self._unsaved.pop()
            if future.done():
                continue  # an earlier batch that was saved
            for view, rid, before in undo:
                view.restore(rid, before)
            for view, (version, created_count) in marks.items():
                view.version, view.created_count = version, created_count
                view.cache.clear()
        self._pending = self._delta.pending(self.name)

    def rollback(self, transaction: Transaction | None) -> None:
        """Drop the staged changes of `transaction` if it is still open (a no-op after its
        commit). Only the one who began a transaction drops it: None (a request that opened
        none, a read) drops nothing, as a write of the same workspace may be open between its
        handler and its commit."""
        if transaction is None or self._transaction is not transaction:
            return
        self._transaction = None
        self._release(committed=False)

    def _release(self, committed: bool) -> None:
        """Settle the sequence numbers staged creations reserved: kept if committed, else freed."""
        if self._reserving:
            for view in self._reserving:
                if view.reserved:
                    view.release(committed)
            self._reserving.clear()

    def apply_stored(self, changes: Sequence[tuple[str, str, Record | None, bool, int]]) -> None:
        """Apply one commit another worker made (shared state); applying it twice changes
        nothing, so a worker that already holds it may see it again."""
        for collection, rid, record, created, seq in changes:
            if collection not in self._bases:
                continue
            view = self.view(collection)
            view.apply(rid, record, created, seq)
            if created:
                view.created_count = max(view.created_count, seq - len(view.base))

    def _restore(self) -> None:
        """Replay what the delta store holds for this workspace (after a restart)."""
        docs = sorted(self._delta.load(self.name), key=lambda d: d["seq"])
        for doc in docs:
            if doc["collection"] not in self._bases:
                continue
            view = self.view(doc["collection"])
            view.version = next(_versions)
            rid, record = doc["id"], doc["record"]
            if doc["created"]:
                view.seqs[rid] = doc["seq"]
                view.created_count = max(view.created_count, doc["seq"] - len(view.base))
                if record is not None:
                    view.created[rid] = record
            else:
                view.overrides[rid] = record
        for view in self.views.values():
            view.reshape()  # `created` was filled directly: what is derived from it starts over


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled (native.py); shared state extends it
class Workspaces:
    """Every workspace of this sandbox, created from the seed on first use."""

    DEFAULT: ClassVar[str] = "default"

    def __init__(self, bases: dict[str, BaseCollection], delta: DeltaStore) -> None:
        self.bases = bases
        self.delta = delta
        self._items: dict[str, Workspace] = {}
        delta.on_failure = self._rebuild
        for name in delta.workspaces():
            self._items[name] = Workspace(name, bases, delta)

    def get(self, name: str = DEFAULT) -> Workspace:
        ws = self._items.get(name)
        if ws is None:
            ws = self._items[name] = Workspace(name, self.bases, self.delta)
        ws.last_used = time.monotonic()
        return ws

    def existing(self, name: str) -> Workspace | None:
        """The workspace if it exists, neither created nor marked used: background work (the
        rule engine's clock and deliveries) must not keep an idle workspace alive."""
        return self._items.get(name)

    def names(self) -> list[str]:
        return list(self._items)

    def last_used(self) -> float:
        """When a request last used any workspace (`time.monotonic()`; 0.0 for none yet)."""
        return max((ws.last_used for ws in self._items.values()), default=0.0)

    def make_deferred(self, budget: int) -> int:
        """Make up to `budget` deferred records across the workspaces; how many it made."""
        made = 0
        for ws in list(self._items.values()):
            if made >= budget:
                break
            made += ws.make_deferred(budget - made)
        return made

    async def fetch_names(self) -> list[str]:
        """`names`, for a caller on the event loop (a shared store asks without blocking it)."""
        return self.names()

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

    def reset(self, name: str | None = None) -> Durable:
        """Forget the changes of one workspace, or of all of them, with one store write.

        Memory forgets at once; await the result before acknowledging. When the store cannot
        take the write it raises STORE_UNAVAILABLE (503) and every workspace is back with the
        changes the store holds.
        """
        names = [name] if name else sorted(set(self._items) | set(self.delta.workspaces()))
        for ws_name in names:
            ws = self._items.pop(ws_name, None)
            if ws is not None:
                ws.detached = True
        return Durable(self.delta.drop(*names), "reset")

    def _rebuild(self, changed: set[str], dropped: set[str]) -> None:
        """After a failed batch: each workspace it (or a later one) touched holds exactly what
        the store holds. A workspace whose reset failed comes back as the store has it."""
        for name in changed - dropped:
            ws = self._items.get(name)
            if ws is not None:
                ws.undo_unsaved()
        stored = set(self.delta.workspaces())
        for name in dropped:
            ws = self._items.pop(name, None)
            if ws is not None:  # made after the reset, from nothing: not what the store holds
                ws.detached = True
            if name in stored:
                self._items[name] = Workspace(name, self.bases, self.delta)

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

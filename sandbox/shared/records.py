"""Records on shared state: each workspace's changes as an ordered log in Redis.

A workspace's version is (epoch, length of its log). Every request learns the version of its
workspace in its first round trip and applies the entries it has not seen, so a write
acknowledged by any worker is in the next answer of every other one. Writes to one workspace are
serialised across workers by a lock with a fencing check: the writer catches up while taking the
lock, so business rules and sequence numbers are checked against the latest state, and its commit
appends only while it still holds the lock. A reset bumps the epoch: every worker drops its copy
of that workspace when it next sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.shared.link import UNREACHABLE, Link, unavailable
from opsmerge_sandbox.shared.turns import Turns
from opsmerge_sandbox.shared.wire import lua_function
from opsmerge_sandbox.store.base import BaseCollection
from opsmerge_sandbox.store.persistence import Change, DeltaStore
from opsmerge_sandbox.store.workspace import Durable, Workspace, Workspaces

log = logging.getLogger("sandbox.shared")
LOCK_MS = 10_000  # a crashed writer holds a workspace this long at most
TURN_MS = 50  # how long a worker's place in line stands without being renewed
WAKE_WAIT = 0.02  # seconds a worker in line waits to be woken before it tries again
LOCK_WAIT = 15.0  # seconds a write waits for a busy workspace before a 503
# A worker whose own writers queue for a workspace hands the held lock to the next of them (its
# commit keeps it in Redis): no round trip to take it, no catch-up (nobody else could write).
# The writers waiting when the lock is taken are woken at once and follow each other in one loop
# turn (`turns.py`). Bounded, so the other workers get their turns and the lock never nears its
# expiry.
HAND_OVERS = 32  # writes under one hold at most
HAND_OVER_S = 0.5  # and no hand-over once the lock was taken this long ago
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[tuple[str, str, dict[str, Any] | None, bool, int]]).decode

_running: set[asyncio.Task[None]] = set()  # appends under way (kept from the collector)
Version = tuple[int, int]  # (epoch, entries applied)
_KEYS_KEPT = 4096  # workspaces whose key names are kept made; past it they start over


class WorkspaceKeys(NamedTuple):
    """One workspace's key names in Redis, made once (commits, locks and catch-ups use them)."""

    ws: str  # its epoch
    log: str  # its change log
    lock: str  # its write lock
    line: str  # the workers waiting for that lock, in order
    place: str  # when each waiting worker's place runs out
    wake: str  # + a worker: the list that worker waits on to be woken

# What a request must apply before it is served: the workspace's epoch, its log length, and
# where the entries it lacks start (-1: none; 0: all of them, when the epoch moved on), in the
# locals e, n and from (a part of the admission's script too).
MISSING_FROM = """
local e = tonumber(redis.call('HGET', KEYS[1], 'e') or '0')
local n = redis.call('LLEN', KEYS[2])
local from = -1
if e ~= tonumber(ARGV[1]) or n < tonumber(ARGV[2]) then
  from = 0
elseif n > tonumber(ARGV[2]) then
  from = tonumber(ARGV[2])
end
"""
# ... and those entries. Shared by the read and write paths.
_CATCH_UP = MISSING_FROM + """
local entries = {}
if from >= 0 then entries = redis.call('LRANGE', KEYS[2], from, -1) end
"""
# the lock, then (once held) the workspace's news: {1, e, n, entries} or {0}
# Turns go round the workers in the order they asked: a worker that finds the lock taken (or
# another worker ahead of it in line) joins the line (KEYS[4], by time of arrival) and claims its
# place for TURN_MS (KEYS[5], renewed by each try); only the first in line takes the lock once
# free, and a place not renewed in time is dropped. Whoever lets the lock go wakes the first in
# line (`_WAKE`); the others try again every WAKE_WAIT. So a worker whose own writers queue behind
# each other cannot keep the lock from the others, and none waits behind more than one hold of
# each other worker. (A single next-turn claim let any waiting worker take it, so with four
# workers one could lose several rounds in a row: creates' p99 was 210-240 ms.)
LOCK = (
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local line = redis.call('ZRANGE', KEYS[4], 0, -1)
local first = nil
for _, w in ipairs(line) do
  if tonumber(redis.call('HGET', KEYS[5], w) or '0') < now then
    redis.call('ZREM', KEYS[4], w)
    redis.call('HDEL', KEYS[5], w)
  elseif not first then
    first = w
  end
end
if (first and first ~= ARGV[5]) or not redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[4]) then
  redis.call('ZADD', KEYS[4], 'NX', now, ARGV[5])
  redis.call('HSET', KEYS[5], ARGV[5], now + tonumber(ARGV[6]))
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  redis.call('PEXPIRE', KEYS[5], ARGV[4])
  return {0}
end
if first then
  redis.call('ZREM', KEYS[4], ARGV[5])
  redis.call('HDEL', KEYS[5], ARGV[5])
end
redis.call('DEL', KEYS[6])
"""
    + _CATCH_UP
    + "return {1, e, n, entries}"
)
# the lock was let go: wake the first worker in line (KEYS[1]) at once, by a push to its list
# (ARGV[1] .. worker) that its blocking pop waits on, rather than leave it to its next try
_WAKE = """
local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
if first then
  redis.call('RPUSH', ARGV[1] .. first, 1)
  redis.call('PEXPIRE', ARGV[1] .. first, 1000)
end
"""
# append one commit while the lock is ours: the new length; 0 when a reset came first (the
# commit went to a workspace nobody sees any more, as in one process); -1 when the lock was lost;
# -2 when the log is not the length the commit was made on (a commit sent before it under the
# same hold did not land, so this one was made on a state the store never held)
COMMIT = lua_function("wake", _WAKE) + """
local e = tonumber(redis.call('HGET', KEYS[1], 'e') or '0')
if e ~= tonumber(ARGV[1]) then return 0 end
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return -1 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[6]) then return -2 end
local n = redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4])
if ARGV[5] ~= '1' then
  redis.call('DEL', KEYS[3])
  wake({KEYS[5]}, {ARGV[7]})
end
return n
"""
CATCH_UP = _CATCH_UP + "return {e, n, entries}"
# A request's admission (`stages.admit_script`) brings along at most CARRIED missing entries; a
# worker that fell further behind fetches them once (`SharedWorkspaces.bring_up`), instead of
# every request of that moment carrying the same thousands of entries out of Redis.
CARRIED = 32
UNLOCK = lua_function("wake", _WAKE) + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
wake({KEYS[2]}, {ARGV[2]})
return 1
"""
# forget the changes of the named workspaces (every workspace with changes when none is named)
RESET = """
local names = ARGV
if #names == 0 then names = redis.call('SMEMBERS', KEYS[1]) end
for _, name in ipairs(names) do
  redis.call('HINCRBY', KEYS[2] .. name, 'e', 1)
  redis.call('DEL', KEYS[3] .. name, KEYS[4] .. name)
  redis.call('SREM', KEYS[1], name)
end
return #names
"""


class SharedDelta(DeltaStore):
    """Where a workspace's commits go on shared state: appended to its log in Redis.

    A commit is applied to the worker's copy at once and acknowledged once Redis holds it; when
    Redis cannot take it, the copy is put back (as with a data directory that refuses a write)
    and the request is answered 503 STATE_UNAVAILABLE.
    """

    def __init__(self, link: Link) -> None:
        super().__init__(None)
        self.keeps_records = True  # every commit goes to Redis, records and all
        self.link = link
        self.records: SharedWorkspaces | None = None
        self._commit = link.script(COMMIT)
        self._last: dict[str, asyncio.Task[None]] = {}  # workspace -> its latest commit's append

    def commit(self, workspace: str, changes: Sequence[Change]) -> asyncio.Future[None] | None:
        """Send the commit now; a writer queued behind it on this worker may be handed the lock
        at once (its commit follows this one on the same connection, fenced by the log length:
        if this one does not land, neither does the next)."""
        records = self.records
        assert records is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(_seen)
        token = records.tokens.get(workspace)
        holder = records.holders.get(workspace)
        epoch = records.applied.get(workspace, (0, 0))[0]
        keep = workspace in records.keeping
        sent: asyncio.Future[Any] | None = None
        keys: list[str] = []
        args: list[Any] = []
        hand = False
        if token is not None:
            hand = not keep and holder is not None and records.may_hand_over(workspace)
            named = records.keys(workspace)
            keys = [named.ws, named.log, named.lock, records.names_key, named.line]
            expected = records.length.get(workspace, 0)
            args = [epoch, token, _encode(changes), workspace, "1" if keep or hand else "0",
                    expected, named.wake]
            sent = self._commit.send(keys, args)
            records.length[workspace] = expected + 1
            if hand and holder is not None:  # it holds the lock, so this hands it on
                records.hand_over(workspace, holder)
        task = loop.create_task(self._append(
            workspace, sent, keys, args, token, epoch, future, keep, hand, holder,
            self._last.get(workspace),
        ))
        self._last[workspace] = task
        _running.add(task)
        task.add_done_callback(_running.discard)
        task.add_done_callback(functools.partial(self._appended, workspace))
        return future

    async def settled(self, workspace: str) -> None:
        """Until every commit this worker sent to the workspace has been settled (answered,
        and the copy's version moved on or the commit's failure heard)."""
        last = self._last.get(workspace)
        if last is not None and not last.done():
            # shielded: a request giving up must not cancel the append. It never raises but
            # when cancelled itself (its failures are its commit's answer)
            await asyncio.shield(last)

    def _appended(self, workspace: str, task: asyncio.Task[None]) -> None:
        if self._last.get(workspace) is task:
            del self._last[workspace]

    async def _append(
        self,
        workspace: str,
        sent: asyncio.Future[Any] | None,
        keys: list[str],
        args: list[Any],
        token: str | None,
        epoch: int,
        future: asyncio.Future[None],
        keep: bool = False,
        handed: bool = False,
        holder: str | None = None,
        before: asyncio.Task[None] | None = None,
    ) -> None:
        records = self.records
        assert records is not None
        n = 0
        try:
            if sent is None or token is None:
                raise RuntimeError(f"a commit to {workspace!r} without its write lock")
            n = int(await self._commit.answer(sent, keys, args))
            if before is not None and not before.done():
                # answered in order, but this task may run first: its first step can be queued
                # behind the read that brought both answers, the one before it's wake-up after
                # that read. Its copy's version moves on only from the version before it.
                # Awaited as is (it never raises: its failures are its commit's answer), not by
                # `asyncio.wait`, whose futures and callbacks cost ~100k instructions a commit
                try:
                    await before
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not before.cancelled() or (task is not None and task.cancelling()):
                        raise  # this task was cancelled, not only the one before it
        except UNREACHABLE as exc:
            self._failed(workspace, future, unavailable(exc))
            return
        except Exception as exc:  # a fault of ours: memory goes back all the same
            log.exception("commit to %r failed", workspace)
            self._failed(workspace, future, unavailable(exc))
            return
        finally:
            if token is not None and not keep and holder is not None:
                records.after_commit(workspace, token, holder, handed, n)
        if n < 0:
            self._failed(workspace, future, ApiError(
                "STATE_UNAVAILABLE",
                "The change took too long to save (the workspace's write lock expired), so "
                "nothing was changed; retry." if n == -1 else
                "An earlier change to this workspace could not be saved, and this one was "
                "made on top of it, so nothing was changed; retry.",
                headers={"retry-after": "1"},
            ))
            return
        if n > 0 and (epoch, n - 1) == records.have(workspace):
            # the copy holds every entry up to this one; otherwise (an earlier commit of this
            # hold failed here yet landed, its answer lost) the next catch-up brings them in
            records.applied[workspace] = (epoch, n)
        future.set_result(None)

    def _failed(self, workspace: str, future: asyncio.Future[None], err: ApiError) -> None:
        if self.on_failure is not None:
            self.on_failure({workspace}, set())
        future.set_exception(err)

    def drop(self, *workspaces: str) -> asyncio.Future[None] | None:
        records = self.records
        assert records is not None
        return records.drop_shared(workspaces)


def _busy(name: str) -> ApiError:
    return ApiError(
        "STATE_UNAVAILABLE",
        f"Workspace {name!r} stayed busy with other writes for {LOCK_WAIT:g} s; retry.",
        headers={"retry-after": "1"},
    )


def _seen(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class SharedWorkspaces(Workspaces):
    """Every workspace this worker has a copy of, kept at the version Redis holds."""

    delta: SharedDelta

    def __init__(self, bases: dict[str, BaseCollection], link: Link) -> None:
        delta = SharedDelta(link)
        super().__init__(bases, delta)
        delta.records = self
        self.link = link
        self.applied: dict[str, Version] = {}  # workspace -> the version its copy is at
        self.tokens: dict[str, str] = {}  # workspace -> the write lock this worker holds
        self.holders: dict[str, str] = {}  # workspace -> the request here holding that lock
        # workspace -> its log's length once the commits sent under the held lock are in
        self.length: dict[str, int] = {}
        self._held: dict[str, tuple[int, float]] = {}  # workspace -> (commits, taken at)
        # workspaces whose lock outlives their commits (several writes under one hold)
        self.keeping: set[str] = set()
        self._turns: dict[str, Turns] = {}  # workspace -> this worker's writers, in turn
        self.worker = secrets.token_hex(6)  # this worker, as it claims turns at the lock
        self._lock = link.script(LOCK)
        self._catch_up = link.script(CATCH_UP)
        self._fetching: dict[str, asyncio.Task[None]] = {}  # workspace -> its one catch-up
        self._keys: dict[str, WorkspaceKeys] = {}
        self.names_key = link.key("names")  # the workspaces with changes
        self._unlock = link.script(UNLOCK)
        self._reset = link.script(RESET)

    # ------------------------------------------------------------------ catching up
    def have(self, name: str) -> Version:
        return self.applied.get(name, (0, 0))

    def claimed(self, name: str) -> Version:
        """The version this worker's copy will be at once the commits it sent under the lock it
        holds have landed: what an admission sent now asks to be brought up from. Those entries
        are this worker's own, in its copy already, and every one was sent ahead of the
        admission on the same connection, so Redis holds them by the time it runs it (unless
        one was refused: then the answer finds the copy short of the claim, and the request
        fetches what it lacks from where the copy is; see `SharedAdmission`)."""
        have = self.have(name)
        n = self.length.get(name)  # kept only while this worker holds the lock
        return (have[0], n) if n is not None and n > have[1] else have

    def catch_up_args(self, name: str) -> tuple[list[str], list[int]]:
        """Keys and arguments of the catch-up part of a script for this workspace (the
        arguments are the version the copy is at: pass them back to `catch_up` as `sent`)."""
        epoch, n = self.have(name)
        named = self.keys(name)
        return [named.ws, named.log], [epoch, n]

    def queue_catch_up(self, pipe: Any, name: str) -> Version:
        """Add this workspace's catch-up to a pipeline; its answer is (epoch, n, entries).
        Returns the version it was sent at."""
        keys, args = self.catch_up_args(name)
        self.link.queue(pipe, self._catch_up, keys, list(args))
        return args[0], args[1]

    def catch_up(
        self, name: str, sent: Version, epoch: int, n: int, entries: Sequence[bytes]
    ) -> bool:
        """Bring this worker's copy to version (epoch, n), from an answer to a catch-up sent
        when the copy was at `sent` (entries from `sent` on; all of them in a new epoch).

        Versions only grow, so an answer older than the copy (another request of this worker
        caught up, or committed, meanwhile) is ignored, and entries the copy holds are skipped.
        False, and nothing applied, when the entries start past the copy's version (an
        admission claimed this worker's commits in flight, and one of them did not land): the
        caller fetches from where the copy is (`bring_up`).
        """
        have = self.have(name)
        if (epoch, n) <= have:
            return True
        start = sent[1] if epoch == sent[0] and n >= sent[1] else 0
        if epoch != have[0]:  # reset elsewhere: start again from the seed
            ws = self._items.pop(name, None)
            if ws is not None:
                ws.detached = True
            skip = 0
        else:
            skip = have[1] - start
            if skip < 0:
                return False
        fresh = entries[skip:]
        if fresh:
            ws = self._items.get(name)
            if ws is None:
                ws = self._items[name] = Workspace(name, self.bases, self.delta)
            for raw in fresh:
                ws.apply_stored(_decode(raw))
        self.applied[name] = (epoch, n)
        return True

    async def take_news(
        self, name: str, sent: Version, epoch: int, n: int, entries: Sequence[bytes],
        whole: bool = True,
    ) -> None:
        """Bring this worker's copy to (epoch, n) from an admission's answer: the admission was
        sent claiming `sent` (`claimed`), and the answer carries the entries from there (all of
        them when `whole`).

        An answer within the claim that finds the copy behind it was read before this worker's
        own commits ahead of it were settled (their tasks run after the admission's when one
        of them waits for the commit before it): those are waited for, not fetched back. What
        is still missing then (a commit refused, another worker's entries) is caught up from
        the answer, or fetched when the answer cannot carry it (`bring_up`)."""
        if (epoch, n) <= sent and self.have(name) < (epoch, n):
            await self.delta.settled(name)
        if not (whole and self.catch_up(name, sent, epoch, n, entries)):
            await self.bring_up(name, (epoch, n))

    async def bring_up(self, name: str, version: Version) -> None:
        """Bring this worker's copy to `version` at least (an admission found it further behind
        than its answer carries): one fetch at a time per workspace, shared by every request
        waiting for it.

        A fetch that has finished is not one under way, even while its done callback is still
        queued: a request needing more than it brought, run in that gap, would wait on it again
        without yielding, for good. A fetch this request started itself reads the log after
        the answer that named `version`; if the copy is still behind it, the store holds less
        than it answered (it lost its data), and the request is answered 503 rather than fetch
        for ever."""
        while self.have(name) < version:
            fetch, own = self._fetching.get(name), False
            if fetch is None or fetch.done():
                fetch, own = self._start_fetch(name), True
            await asyncio.shield(fetch)
            if own and self.have(name) < version:
                raise unavailable()

    def _start_fetch(self, name: str) -> asyncio.Task[None]:
        """The workspace's one fetch under way (`_fetched` forgets it once it is done)."""
        fetch = asyncio.get_running_loop().create_task(self._fetch(name))
        self._fetching[name] = fetch
        fetch.add_done_callback(functools.partial(self._fetched, name))
        return fetch

    def _fetched(self, name: str, fetch: asyncio.Task[None]) -> None:
        if self._fetching.get(name) is fetch:
            del self._fetching[name]
        if not fetch.cancelled():
            fetch.exception()  # heard by the requests that waited for it

    async def _fetch(self, name: str) -> None:
        keys, args = self.catch_up_args(name)
        epoch, n, entries = await self._catch_up(keys, list(args))
        self.catch_up(name, (args[0], args[1]), int(epoch), int(n), entries)

    def forget_copies(self, names: list[str]) -> None:
        """Drop this worker's copies of these workspaces (idle here); the next request reloads
        one from Redis. A copy a write holds the lock of is kept."""
        for name in names:
            if name not in self.tokens:
                self._items.pop(name, None)
                self.applied.pop(name, None)

    def forget(self) -> None:
        """Drop every copy (the store lost its data): each workspace is the seed again."""
        for ws in self._items.values():
            ws.detached = True
        self._items.clear()
        self.applied.clear()

    # ------------------------------------------------------------------ the write lock
    async def lock(self, name: str) -> str:
        """Hold the workspace's write lock and catch up; 503 when it stays busy or Redis is
        unreachable. Writers of one worker take turns here in order (`Turns`), so only one of
        them at a time asks Redis for the lock, and the lock is handed from one to the next."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT
        turns = self._turns.get(name)
        if turns is None:
            turns = self._turns[name] = Turns(functools.partial(_busy, name))
        ticket = 0
        while True:
            if ticket or not (turns.queued or turns.woken):  # woken, or first: may it go on?
                if name in self.tokens and name not in self.holders:  # handed on to it
                    holder = self.holders[name] = secrets.token_hex(8)
                    return holder
                if name not in self.tokens and not turns.taking:
                    break  # free here: this writer asks Redis for it
            ticket = ticket or turns.ticket()
            try:
                await turns.wait(ticket, deadline)
            except BaseException:
                self._pass_on(name)  # a writer woken for the lock must not take it away
                raise
        turns.taking = True
        try:
            token = await self._take(name, deadline)
        except BaseException:
            turns.taking = False
            self._pass_on(name)
            raise
        turns.taking = False
        self.holders[name] = token
        self._held[name] = (0, loop.time())
        turns.wake(HAND_OVERS - 1)  # those waiting now follow it under this hold
        return token

    def _pass_on(self, name: str) -> None:
        """Leave nobody waiting for nothing: a lock handed on here with no writer coming for
        it goes to the next writer waiting (or is let go); a lock free here is asked for by the
        next writer waiting."""
        turns = self._turns.get(name)
        if turns is None or turns.woken:
            return  # a woken writer is on its way, and checks for itself
        if name in self.tokens:
            if name not in self.holders and not turns.wake(1):
                self.let_go(name, self._end_hold(name))
        elif not turns.taking:
            turns.wake(1)
        if turns.idle and name not in self.tokens:
            turns.close()
            del self._turns[name]

    async def _take(self, name: str, deadline: float) -> str:
        loop = asyncio.get_running_loop()
        token = secrets.token_hex(8)
        while True:
            keys, args = self.catch_up_args(name)
            named = self.keys(name)
            keys += [named.lock, named.line, named.place, named.wake + self.worker]
            try:
                found = await self._lock(keys, [*args, token, LOCK_MS, self.worker, TURN_MS])
            except UNREACHABLE as exc:
                raise unavailable(exc) from exc
            if found[0]:
                break
            if loop.time() > deadline:
                raise _busy(name)
            await self._wait_turn(name)
        self.tokens[name] = token
        self.length[name] = int(found[2])
        self.catch_up(name, (args[0], args[1]), int(found[1]), int(found[2]), found[3])
        return token

    def keys(self, name: str) -> WorkspaceKeys:
        named = self._keys.get(name)
        if named is None:
            if len(self._keys) >= _KEYS_KEPT:
                self._keys.clear()
            key = self.link.key
            named = self._keys[name] = WorkspaceKeys(
                key("ws", name), key("log", name), key("lock", name), key("line", name),
                key("place", name), key("wake", name) + ":",
            )
        return named

    def _unlock_keys_args(self, name: str, token: str) -> tuple[list[str], list[str]]:
        named = self.keys(name)
        return [named.lock, named.line], [token, named.wake]

    async def _wait_turn(self, name: str) -> None:
        """Until the lock is let go (a push to this worker's list wakes it) or WAKE_WAIT has
        passed (the lock may expire, or be let go while this worker was not yet first)."""
        try:
            await self.link.client.blpop([self.keys(name).wake + self.worker], WAKE_WAIT)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    def released(self, name: str, holder: str) -> bool:
        """Forget the lock the request `holder` held (its commit let go of it in Redis); False
        if that request did not hold it any more."""
        if self.holders.get(name) != holder:
            return False
        del self.holders[name]
        self._end_hold(name)
        self._pass_on(name)
        return True

    def _end_hold(self, name: str) -> str:
        """Forget this worker's hold of the lock (its token, log length and count); the
        token."""
        self.length.pop(name, None)
        self._held.pop(name, None)
        return self.tokens.pop(name)

    def after_commit(self, name: str, token: str, holder: str, handed: bool, n: int) -> None:
        """Once `holder`'s commit is answered (`n`: what COMMIT answered, 0 when it did not run):
        a lock handed on when the commit was sent stays with the writer it went to (if this
        commit failed, that writer's fenced commit fails too, and it lets go). Otherwise the
        lock is forgotten here, and let go in Redis unless the commit saved (and so deleted)
        it."""
        if handed:
            return
        if self.released(name, holder) and n <= 0:
            self.let_go(name, token)

    def may_hand_over(self, name: str) -> bool:
        """Whether a commit about to be made should keep the lock for the next writer waiting
        on this worker (see HAND_OVERS)."""
        turns = self._turns.get(name)
        commits, taken = self._held.get(name, (HAND_OVERS, 0.0))
        return (
            turns is not None
            and (turns.woken > 0 or turns.queued > 0)
            and commits + 1 < HAND_OVERS
            and asyncio.get_running_loop().time() - taken < HAND_OVER_S
        )

    def hand_over(self, name: str, holder: str) -> bool:
        """The commit `holder` just sent keeps the lock: the next writer of this worker takes
        it (without waiting for that commit's answer; see `SharedDelta.commit`)."""
        if self.holders.get(name) != holder or name not in self.tokens:
            return False
        del self.holders[name]
        commits, taken = self._held.get(name, (0, 0.0))
        self._held[name] = (commits + 1, taken)
        turns = self._turns.get(name)
        if turns is not None and not turns.woken:  # nobody on the way yet: the next ones
            turns.wake(HAND_OVERS - 1 - commits)
        self._pass_on(name)  # (only if nobody could be woken: then it is let go)
        return True

    def let_go(self, name: str, token: str) -> None:
        """Delete the lock in Redis, in the background (else it expires on its own)."""

        async def run() -> None:
            with contextlib.suppress(*UNREACHABLE):
                await self._unlock(*self._unlock_keys_args(name, token))

        task = asyncio.get_running_loop().create_task(run())
        _running.add(task)
        task.add_done_callback(_running.discard)

    async def unlock(self, name: str, holder: str) -> None:
        """Let go of the write lock when the request's commit did not (it committed nothing);
        a writer waiting on this worker is handed it instead."""
        token = self.tokens.get(name)
        if token is not None and self.holders.get(name) == holder and self.may_hand_over(name):
            self.hand_over(name, holder)
            return
        if token is None or not self.released(name, holder):
            return  # the commit let go of it, or handed it over
        with contextlib.suppress(*UNREACHABLE):  # else it expires on its own
            await self._unlock(*self._unlock_keys_args(name, token))

    # ------------------------------------------------------------------ resets
    def drop_shared(self, names: Sequence[str]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(_seen)

        async def run() -> None:
            try:
                await self._reset(self._reset_keys(), list(names))
            except UNREACHABLE as exc:
                future.set_exception(unavailable(exc))
                return
            future.set_result(None)

        task = loop.create_task(run())
        _running.add(task)
        task.add_done_callback(_running.discard)
        return future

    def _reset_keys(self) -> list[str]:
        link = self.link
        return [self.names_key, link.key("ws", ""), link.key("log", ""), link.key("lock", "")]

    def reset(self, name: str | None = None) -> Durable:
        """Forget the changes of one workspace, or of every one, on every worker."""
        names = [name] if name else sorted(self._items)
        for ws_name in names:
            ws = self._items.pop(ws_name, None)
            if ws is not None:
                ws.detached = True
        future = self.drop_shared([name] if name else [])
        return Durable(future, "reset")

    def names(self) -> list[str]:
        """The workspaces with changes on any worker, and those this worker has open."""
        try:
            stored = self.link.sync.smembers(self.names_key)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc
        return self._with_open(stored)

    async def fetch_names(self) -> list[str]:
        """`names`, asked over the request path's connection instead of blocking the loop."""
        try:
            stored = await self.link.wire.call("SMEMBERS", self.names_key)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc
        return self._with_open(stored)

    def _with_open(self, stored: list[bytes] | set[bytes]) -> list[str]:
        """The workspaces with changes in Redis, and those this worker has open."""
        return sorted({n.decode() for n in stored} | set(self._items))

    def drop_orphans(self) -> int:
        return 0  # a commit to a workspace reset meanwhile is never stored (see COMMIT)

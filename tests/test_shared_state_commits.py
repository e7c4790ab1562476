"""Commits on shared state, in one worker against a real redis-server: a writer queued behind
another is handed the write lock as soon as the other's commit is sent, the commits land in
order, and a commit made on top of one that never landed is refused by the store. And the rule
engine's clock pass asks the store without blocking the worker's event loop."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvloop

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.shared.records import CATCH_UP, COMMIT, SharedWorkspaces
from opsmerge_sandbox.store.workspace import Durable
from tests.client_tooling import OWNER_KEY
from tests.conftest import SMALL_RECIPE
from tests.shared_state_servers import RedisServer, records_of, redis_server, worker_state


@pytest.fixture()
def store() -> Iterator[RedisServer]:
    yield from redis_server()


def _worker(store: RedisServer) -> tuple[SharedWorkspaces, str]:
    """One worker's records on the store, and a collection to write to."""
    state = worker_state(store.url)
    return records_of(state), sorted(state.bases)[0]


def _write(records: SharedWorkspaces, collection: str, record_id: str) -> Durable:
    """A writer's change to workspace "w": staged, and its commit sent (await it for the
    answer)."""
    ws = records.get("w")
    ws.begin()
    ws.write(collection, {"id": record_id})
    return ws.commit()


async def _append(records: SharedWorkspaces, collection: str, record_id: str) -> tuple[int, int]:
    """One whole write to workspace "w" (lock, commit, answer, let go); the copy's version."""
    held = await records.lock("w")
    await _write(records, collection, record_id)
    await records.unlock("w", held)
    return records.have("w")


def test_a_queued_writer_is_handed_the_lock_before_the_commit_ahead_of_it_is_answered(
    store: RedisServer,
) -> None:
    records, collection = _worker(store)
    assert store.proc is not None
    proc = store.proc

    async def main() -> tuple[bool, list[Any], Any]:
        first = await records.lock("w")
        second = asyncio.ensure_future(records.lock("w"))  # queued on this worker
        await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGSTOP)  # the store answers nothing for now
        try:
            saved_first = _write(records, collection, "pipelined_1")
            await asyncio.wait_for(asyncio.shield(second), 1.0)
            answered_first = saved_first.done
            # the second writer works on the first's change, not yet answered
            saved_second = _write(records, collection, "pipelined_2")
        finally:
            proc.send_signal(signal.SIGCONT)
        await saved_first
        await saved_second
        await records.unlock("w", first)
        await records.unlock("w", second.result())
        return answered_first, [records.have("w")], store.cli("llen", records.keys("w").log)

    answered_first, versions, length = asyncio.run(main())
    assert not answered_first, "the lock waited for the first commit's answer"
    assert versions == [(0, 2)]
    assert length.strip() == "2"
    # the lock is free for any other worker once both are done
    assert store.cli("exists", records.keys("w").lock).strip() == "0"


def test_writers_queued_on_one_worker_all_write_in_one_loop_turn_once_the_lock_is_theirs(
    store: RedisServer,
) -> None:
    records, collection = _worker(store)
    queued = 8

    async def main() -> tuple[list[int], list[str], Any]:
        loop = asyncio.get_running_loop()
        turn = [0]
        running = [True]

        def count() -> None:  # one call a loop turn
            turn[0] += 1
            if running[0]:
                loop.call_soon(count)

        wrote_in: list[int] = []

        async def writer(i: int) -> None:
            await records.lock("w")
            wrote_in.append(turn[0])
            await _write(records, collection, f"queued_{i}")

        first = await records.lock("w")
        writers = [asyncio.ensure_future(writer(i)) for i in range(queued)]
        await asyncio.sleep(0.01)  # all waiting behind the first
        loop.call_soon(count)
        await _write(records, collection, "first")  # hands the lock on
        await asyncio.gather(*writers)
        running[0] = False
        await records.unlock("w", first)
        log = store.cli("lrange", records.keys("w").log, "0", "-1")
        return wrote_in, [r for r in log.split() if "queued_" in r], \
            store.cli("exists", records.keys("w").lock)

    wrote_in, entries, locked = asyncio.run(main())
    # each writer used to wait a loop turn of its own (the worker's other requests ran between)
    assert len(wrote_in) == queued and len(set(wrote_in)) == 1, wrote_in
    assert wrote_in[0] >= 1, "the loop turns were not being counted"
    assert len(entries) == queued
    assert locked.strip() == "0", "the last writer let the lock go"


def test_a_lock_handed_to_writers_that_are_cancelled_is_let_go_at_once(
    store: RedisServer,
) -> None:
    records, collection = _worker(store)

    async def main() -> tuple[bool, str, str]:
        first = await records.lock("w")
        waiting = [asyncio.ensure_future(records.lock("w")) for _ in range(3)]
        await asyncio.sleep(0.01)
        saved = _write(records, collection, "first")  # hands the lock to the writers waiting...
        handed = "w" in records.tokens and "w" not in records.holders
        for task in waiting:  # ...who go away before they take it (their clients left)
            task.cancel()
        await saved
        await asyncio.gather(*waiting, return_exceptions=True)
        await asyncio.sleep(0.05)
        held = store.cli("exists", records.keys("w").lock)
        other = await asyncio.wait_for(records.lock("w"), 1.0)  # a new writer takes it
        await records.unlock("w", other)
        await records.unlock("w", first)
        return handed, held, store.cli("exists", records.keys("w").lock)

    handed, held, after = asyncio.run(main())
    assert handed, "the commit kept the lock for the writers waiting"
    assert held.strip() == "0", "a handed lock nobody took stayed held in Redis"
    assert after.strip() == "0"


def test_a_commit_made_on_a_log_length_the_store_does_not_hold_is_refused(
    store: RedisServer,
) -> None:
    records, _ = _worker(store)
    link, named = records.link, records.keys("w")
    keys = [named.ws, named.log, named.lock, records.names_key]
    store.cli("set", keys[2], "tok")
    commit = link.script(COMMIT)

    async def main() -> list[Any]:
        ahead = await commit(keys, [0, "tok", "[]", "w", "1", 1])  # made on a commit never sent
        right = await commit(keys, [0, "tok", "[]", "w", "1", 0])
        return [ahead, right]

    assert asyncio.run(main()) == [-2, 1]
    assert store.cli("llen", keys[1]).strip() == "1"


def test_commits_that_cannot_be_answered_are_all_undone_and_refused(
    store: RedisServer,
) -> None:
    records, collection = _worker(store)
    records.link.wire.timeout = 0.3
    assert store.proc is not None
    proc = store.proc

    async def main() -> list[Any]:
        first = await records.lock("w")
        second = asyncio.ensure_future(records.lock("w"))
        await asyncio.sleep(0.01)
        ws = records.get("w")  # the copy the writes go to, read again once they are refused
        proc.send_signal(signal.SIGSTOP)
        try:
            saved = [_write(records, collection, "lost_1")]
            await asyncio.wait_for(asyncio.shield(second), 1.0)
            saved.append(_write(records, collection, "lost_2"))
            answers = await asyncio.gather(*saved, return_exceptions=True)
        finally:
            proc.send_signal(signal.SIGCONT)
        await records.unlock("w", first)
        await records.unlock("w", second.result())
        return [*answers, ws.get(collection, "lost_1"), ws.get(collection, "lost_2")]

    refused_1, refused_2, kept_1, kept_2 = asyncio.run(main())
    for refused in (refused_1, refused_2):
        assert isinstance(refused, ApiError) and refused.code == "STATE_UNAVAILABLE", refused
    assert kept_1 is None and kept_2 is None, "the copy holds what the store holds"


def test_the_rule_engines_clock_pass_does_not_stall_the_loop_while_the_store_is_silent(
    store: RedisServer,
) -> None:
    state = worker_state(store.url)
    create_app(state=state)  # the rule engine, wired to the shared state
    engine = state.events
    assert engine is not None and engine.exclusive is not None and engine.model.clock_events
    records_of(state).link.wire.timeout = 0.5
    assert store.proc is not None
    proc = store.proc

    async def main() -> tuple[float, BaseException | None]:
        loop = asyncio.get_running_loop()
        gaps: list[float] = []

        async def beat() -> None:  # what every other request on the worker would feel
            last = loop.time()
            while True:
                await asyncio.sleep(0.02)
                gaps.append(loop.time() - last)
                last = loop.time()

        assert engine.exclusive is not None
        await records_of(state).fetch_names()  # connected
        proc.send_signal(signal.SIGSTOP)
        beater = asyncio.ensure_future(beat())
        failed: BaseException | None = None
        try:
            await asyncio.sleep(0.05)
            await engine._shared_clock_passes(engine.exclusive)  # one tick's pass
        except ApiError as err:
            failed = err
        finally:
            proc.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.05)  # the beat wakes once more, and tells how long it waited
        beater.cancel()
        return max(gaps), failed

    longest, failed = asyncio.run(main())
    assert longest < 0.3, f"the event loop stood still for {longest:.2f} s"
    assert isinstance(failed, ApiError) and failed.code == "STATE_UNAVAILABLE"


def test_a_read_sent_behind_a_commit_the_store_refuses_still_brings_in_what_another_worker_wrote(
    store: RedisServer,
) -> None:
    """A read's admission sent while this worker's commits are in flight asks only for entries
    past them; when one of them is refused (its hold of the lock lapsed) and another worker's
    commit took its place in the log, the read must still bring that commit in, not take the
    log's length for the one it expected."""
    state = worker_state(store.url)
    records = records_of(state)
    first = create_app(state=state)
    second = create_app(Settings(recipe=str(SMALL_RECIPE), state_url=store.url))
    headers = {"Authorization": f"Bearer {OWNER_KEY}"}
    assert store.proc is not None
    proc = store.proc

    async def main() -> tuple[httpx.Response, Any, int, int, tuple[int, int]]:
        transports = [httpx.ASGITransport(app=app) for app in (first, second)]
        async with httpx.AsyncClient(transport=transports[0], base_url="http://a") as a, \
                httpx.AsyncClient(transport=transports[1], base_url="http://b") as b:
            await a.get("/api/v1/clients", headers=headers)
            await records.lock("default")
            store.cli("del", records.keys("default").lock)  # its hold lapsed, as after LOCK_MS
            made = await b.post("/api/v1/clients", headers=headers, json={"name": "From B"})
            ws = records.get("default")
            proc.send_signal(signal.SIGSTOP)  # answers wait, so the read is sent behind it
            try:
                ws.begin()
                ws.write("clients", {**made.json()["data"], "id": "cli_never_saved"})
                saved = ws.commit()  # the store will refuse it: the lock is not this worker's
                read = asyncio.ensure_future(
                    a.get(f"/api/v1/clients/{made.json()['data']['id']}", headers=headers))
                conn = records.link.wire.conn
                assert conn is not None
                for _ in range(2000):  # until the read's admission is on its way too
                    if len(conn.pending) >= 2:
                        break
                    await asyncio.sleep(0.001)
                queued = len(conn.pending)
            finally:
                proc.send_signal(signal.SIGCONT)
            with pytest.raises(ApiError):
                await saved
            got = await read
            lost = (await a.get("/api/v1/clients/cli_never_saved", headers=headers)).status_code
        return got, made.json()["data"]["id"], queued, lost, records.have("default")

    got, made_id, queued, lost, version = asyncio.run(main())
    assert queued >= 2
    assert got.status_code == 200, got.text
    assert got.json()["data"]["id"] == made_id
    assert lost == 404
    # the log: A's first read logged its key's use (the hour's entry), then B's create; the read
    # brought in both, not the length it expected
    assert version == (0, 2)


@dataclass
class _HeldTwice:
    """A hold of workspace "w" with two commits sent, the second's task first to run."""

    first: str  # the two writers' hold of the lock (let go at the end)
    second: str
    saved: list[Durable]  # the two commits
    first_append: asyncio.Task[None]  # the first commit's append

    async def let_go(self, records: SharedWorkspaces) -> None:
        await records.unlock("w", self.first)
        await records.unlock("w", self.second)


async def _second_commit_runs_first(
    records: SharedWorkspaces, collection: str,
    in_its_turn: Callable[[asyncio.Task[None]], None] = lambda first_append: None,
) -> _HeldTwice:
    """On uvloop a read's replies are handled before the turn's queued callbacks: the second
    commit of a hold, sent by a flush in the turn that created its append task, with the
    connection's reading paused until both answers are in the socket, sees its answer at its
    task's first step, ahead of the wake-up of the commit before it. `in_its_turn(first append)`
    runs right after that commit is made, in the same turn (what it sends leaves in the same
    write)."""
    loop = asyncio.get_running_loop()
    first = await records.lock("w")
    second = asyncio.ensure_future(records.lock("w"))  # queued on this worker
    await asyncio.sleep(0.01)
    conn = records.link.wire.conn
    assert conn is not None and conn.transport is not None
    transport = conn.transport
    transport.pause_reading()  # the store's answers wait in the socket
    saved = [_write(records, collection, "one")]  # hands the lock to the second writer
    first_append = records.delta._last["w"]
    await asyncio.wait_for(asyncio.shield(second), 1.0)
    await asyncio.sleep(0.02)  # the first commit is sent, its task waits for the answer
    ws = records.get("w")
    ws.begin()
    ws.write(collection, {"id": "two"})

    def commit() -> None:  # this turn: sent by the write below, its task starts next turn
        saved.append(ws.commit())
        in_its_turn(first_append)

    def answers() -> None:  # both answered before the next turn's callbacks run
        time.sleep(0.05)
        transport.resume_reading()

    loop.call_soon(commit)
    records.link.wire.call("PING")  # the turn's write, after `commit`
    loop.call_soon(answers)
    while len(saved) < 2:
        await asyncio.sleep(0)
    return _HeldTwice(first, second.result(), saved, first_append)


def test_commits_answered_in_order_move_the_copy_on_even_when_the_later_ones_task_runs_first(
    store: RedisServer,
) -> None:
    """A commit whose task runs ahead of the one before it (see `_second_commit_runs_first`)
    must still move the copy's version on to itself (it used to stop at the first, so every
    request after it fetched the worker's own commits back from Redis)."""
    records, collection = _worker(store)

    async def main() -> tuple[tuple[int, int], Any]:
        held = await _second_commit_runs_first(records, collection)
        for durable in held.saved:
            await durable
        await held.let_go(records)
        return records.have("w"), store.cli("llen", records.keys("w").log)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        version, length = runner.run(main())
    assert length.strip() == "2"
    assert version == (0, 2)


def test_an_admission_answered_before_its_workers_own_commits_settle_waits_for_them(
    store: RedisServer,
) -> None:
    """An admission sent behind this worker's commits claims them (they are in its copy
    already); its answer can be read before those commits are settled, when the later one
    waits for the one before it. It must wait for them, not fetch them back from Redis (a
    burst of creates on one worker fetched its own commits back once in a while)."""
    records, collection = _worker(store)
    news = records.link.script(CATCH_UP)  # as an admission asks: from the version it claims

    async def main() -> tuple[tuple[int, int], tuple[int, int], Any]:
        loop = asyncio.get_running_loop()
        admitted: list[asyncio.Task[tuple[int, int]]] = []

        async def admit(sent: asyncio.Future[Any], claim: tuple[int, int], args: Any) -> Any:
            epoch, n, entries = await news.answer(sent, *args)
            await records.take_news("w", claim, int(epoch), int(n), entries)
            return claim

        def admission(_: asyncio.Task[None]) -> None:  # behind the second commit, one write
            claim = records.claimed("w")
            keys, _ = records.catch_up_args("w")
            args = (keys, [claim[0], claim[1]])
            admitted.append(loop.create_task(admit(news.send(*args), claim, args)))

        store.cli("config", "resetstat")
        held = await _second_commit_runs_first(records, collection, admission)
        claim = await admitted[0]
        have = records.have("w")  # right after the admission's answer was taken in
        for durable in held.saved:
            await durable
        await held.let_go(records)
        return claim, have, store.cli("info", "commandstats")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        claim, have, stats = runner.run(main())
    assert claim == (0, 2) and have == (0, 2)
    assert "cmdstat_lrange" not in stats, "the admission fetched the worker's own commits back"


def test_a_commit_whose_predecessor_is_cancelled_while_it_waits_is_still_acknowledged(
    store: RedisServer,
) -> None:
    """A commit's append waits for the one before it on the same workspace when it runs first
    (see `_second_commit_runs_first`); if that one is cancelled meanwhile (only as the worker
    shuts down), the later commit, which Redis took, is still acknowledged: the predecessor's
    cancellation is not passed on to it."""
    records, collection = _worker(store)

    async def main() -> tuple[bool, Any, Any]:
        def cancel(first_append: asyncio.Task[None]) -> None:  # once the second waits for it
            asyncio.get_running_loop().call_soon(first_append.cancel)

        held = await _second_commit_runs_first(records, collection, cancel)

        async def acknowledged() -> None:
            await held.saved[1]

        await asyncio.wait_for(acknowledged(), 5.0)  # not cancelled with the first
        await held.let_go(records)
        return (held.first_append.cancelled(), store.cli("llen", records.keys("w").log),
                store.cli("exists", records.keys("w").lock))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        cancelled, length, locked = runner.run(main())
    assert cancelled
    assert length.strip() == "2"
    assert locked.strip() == "0"


def test_a_request_needing_more_than_a_fetch_just_finished_brought_fetches_again(
    store: RedisServer,
) -> None:
    """A fetch of what a worker lacks that has finished, its done callback still queued, is not
    one under way: a request needing more than it brought, run in that gap, waited on it again
    and again without ever yielding, and the worker spun at full CPU for good (found under a
    burst of creates on 4 workers). It fetches again instead."""
    behind, collection = _worker(store)
    ahead, _ = _worker(store)

    def spinning(signum: int, frame: Any) -> None:
        raise TimeoutError("the worker never yielded to its event loop")

    async def main() -> tuple[int, int]:
        first = await _append(ahead, collection, "one")
        behind.get("w")
        await behind.link.wire.call("PING")  # connected
        conn = behind.link.wire.conn
        assert conn is not None and conn.transport is not None
        conn.transport.pause_reading()  # both answers below wait in the socket
        needs_first = asyncio.ensure_future(behind.bring_up("w", first))
        await asyncio.sleep(0.01)  # its fetch is sent

        async def needs_more() -> None:
            await behind.link.wire.call("PING")  # answered right behind the fetch
            await behind.bring_up("w", (first[0], first[1] + 1))

        later = asyncio.ensure_future(needs_more())
        await asyncio.sleep(0.05)
        # appended after the fetch read the log
        assert await _append(ahead, collection, "two") == (first[0], first[1] + 1)
        conn.transport.resume_reading()
        await asyncio.wait_for(asyncio.gather(needs_first, later), 5)
        return behind.have("w")

    previous = signal.signal(signal.SIGALRM, spinning)
    signal.setitimer(signal.ITIMER_REAL, 10)
    try:
        have = uvloop.run(main())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert have >= (0, 2)


def test_a_request_whose_own_fetch_finds_less_than_the_store_answered_is_answered_503(
    store: RedisServer,
) -> None:
    """The store answered a log length it no longer holds (it lost its data in between): the
    request's own fetch cannot bring the copy there, and it is answered 503 STATE_UNAVAILABLE
    with Retry-After instead of fetching for ever."""
    behind, collection = _worker(store)
    ahead, _ = _worker(store)

    async def main() -> ApiError:
        epoch, n = await _append(ahead, collection, "one")
        behind.get("w")
        with pytest.raises(ApiError) as refused:
            await asyncio.wait_for(behind.bring_up("w", (epoch, n + 4)), 5)
        assert behind.have("w") == (epoch, n)  # what the store holds, and no more
        return refused.value

    err = uvloop.run(main())
    assert err.status == 503 and err.code == "STATE_UNAVAILABLE"
    assert err.headers.get("retry-after")

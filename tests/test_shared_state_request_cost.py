"""What a request costs the worker and the store on shared state, against a real redis-server:
a read repeating the last one reuses its packed admission command, its admission's answer is one
flat array, and the journal's entries of many requests reach the store in one transaction per
batch, the list cut to its size once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import redis
from limits.storage import RedisStorage

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.journal import Entry
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.shared import wire
from opsmerge_sandbox.shared.journal import BATCH, SharedJournal
from opsmerge_sandbox.shared.link import Link
from opsmerge_sandbox.shared.records import CARRIED
from opsmerge_sandbox.shared.stages import (
    COUNTED,
    COUNTS,
    LENGTH,
    WHOLE,
    admit_script,
    carried_and_evicted,
)
from tests.conftest import SMALL_RECIPE
from tests.shared_state_servers import RedisServer, redis_server

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"


@pytest.fixture()
def store() -> Iterator[RedisServer]:
    yield from redis_server()


def _calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_repeated_reads_pack_their_admission_once_and_a_write_makes_a_new_one(
    store: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(Settings(recipe=str(SMALL_RECIPE), state_url=store.url))
    packed: list[tuple[Any, ...]] = []
    real = wire._pack

    def counting(args: tuple[Any, ...]) -> bytes:
        packed.append(args)
        return real(args)

    monkeypatch.setattr(wire, "_pack", counting)
    shas = {script.sha for script in app.state.sandbox.shared.link.wire.scripts}

    def admissions() -> int:  # runs of the admission script packed so far
        return sum(1 for a in packed if a[0] == "EVALSHA" and a[1] in shas and a[2] >= 6)

    async def scenario() -> tuple[int, int, int, int, list[int]]:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {OWNER}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as c:
            await c.get("/api/v1/clients", headers=headers)  # the copy learns the store's version
            first = (await c.get("/api/v1/clients", headers=headers)).json()["data"]["total"]
            start = admissions()
            statuses = [(await c.get("/api/v1/clients", headers=headers)).status_code
                        for _ in range(20)]
            repeated = admissions() - start
            made = await c.post("/api/v1/clients", headers=headers, json={"name": "Packed"})
            statuses.append(made.status_code)
            start = admissions()
            after = (await c.get("/api/v1/clients", headers=headers)).json()["data"]["total"]
            return first, after, repeated, admissions() - start, statuses

    first, after, repeated, renewed, statuses = asyncio.run(scenario())
    assert statuses == [200] * 20 + [201]
    assert repeated == 0  # the 20 reads sent the command packed for the one before them
    assert (after, renewed) == (first + 1, 1)  # the write moved the version: packed anew


JOURNAL_BATCH = ("multi", "rpush", "ltrim", "exec")  # the commands of one journal batch


def _entries(journal: SharedJournal, paths: list[str]) -> None:
    for i, path in enumerate(paths):
        journal.add(Entry(float(i), "GET", path, "", None, 200, None, None, "default", None, 1.0))


def test_a_batch_of_journal_entries_is_one_store_transaction_cut_to_the_newest_exactly(
    store: RedisServer,
) -> None:
    client = redis.Redis.from_url(store.url)
    link = Link(store.url, "test:")
    journal = SharedJournal(10, link)
    count = BATCH + 40  # two pushes: a push never carries more than BATCH

    async def scenario() -> None:
        _entries(journal, [f"/p/{i}" for i in range(count)])  # one loop turn: one batch
        assert journal._writer is not None
        await journal._writer

    before = {c: _calls(client, c) for c in JOURNAL_BATCH}
    asyncio.run(scenario())
    assert {c: _calls(client, c) - n for c, n in before.items()} == {
        "multi": 1, "rpush": 2, "ltrim": 1, "exec": 1,
    }
    kept = [msgspec.json.decode(raw)[2] for raw in client.lrange(journal.list, 0, -1)]
    assert kept == [f"/p/{i}" for i in range(count - 10, count)]
    assert [e["path"] for e in journal.recent(3)] == [f"/p/{i}" for i in range(count - 3, count)]


def test_journal_entries_added_outside_a_loop_are_written_by_the_next_read_as_the_writer_would(
    store: RedisServer,
) -> None:
    client = redis.Redis.from_url(store.url)
    journal = SharedJournal(10, Link(store.url, "test:"))
    count = BATCH + 40
    _entries(journal, [f"/p/{i}" for i in range(count)])  # no running loop: kept for a read
    assert journal._writer is None
    before = {c: _calls(client, c) for c in JOURNAL_BATCH}
    assert len(journal) == 10
    assert {c: _calls(client, c) - n for c, n in before.items()} == {
        "multi": 1, "rpush": 2, "ltrim": 1, "exec": 1,
    }
    assert [e["path"] for e in journal.recent(2)] == [f"/p/{count - 2}", f"/p/{count - 1}"]


def test_a_journal_batch_the_store_refuses_is_reported_and_the_next_is_written(
    store: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(store.url)
    journal = SharedJournal(10, Link(store.url, "test:"))
    client.set(journal.list, "not a list")  # every push of this batch fails inside EXEC

    async def batch(paths: list[str]) -> None:
        _entries(journal, paths)
        assert journal._writer is not None
        await journal._writer

    with caplog.at_level("WARNING", logger="sandbox.shared"):  # another test may quieten it
        asyncio.run(batch(["/refused"]))
    assert "journal: 1 entries not written" in caplog.text
    assert "WRONGTYPE" in caplog.text
    client.delete(journal.list)
    asyncio.run(batch(["/a", "/b"]))
    assert [msgspec.json.decode(raw)[2] for raw in client.lrange(journal.list, 0, -1)] == [
        "/a", "/b",
    ]


def test_an_admission_answers_one_flat_array_that_reads_back_as_asked(
    store: RedisServer,
) -> None:
    link = Link(store.url, "test:")
    script = link.script(admit_script(RedisStorage.SCRIPT_INCR_EXPIRE.decode(), visit=False))
    keys = ["c:v", "c:snap", "c:boot", "ws", "log", "rate:a", "rate:b"]
    client = redis.Redis.from_url(store.url)
    client.set("c:v", 4)
    client.set("c:snap", "snapshot")
    client.hset("ws", "e", 2)
    client.rpush("log", "one", "two", "three")
    client.set("rate:b", 5)

    async def admit(have: tuple[int, int], limits: tuple[int, int]) -> list[Any]:
        args: list[Any] = [3, "mark", *have, 2]
        for limit in limits:
            args += [60, 1, limit]
        answer: list[Any] = await script(keys, args)
        link.wire.close()
        return answer

    # behind on control and one entry behind on the log; the second bucket is past its limit
    found = asyncio.run(admit((2, 2), (10, 5)))
    assert 59_000 < found[8] <= 60_000  # the new window's time left
    found[8] = 60_000
    assert found == [b"mark", 4, b"snapshot", 2, 3, 1, 2, 1, 60_000, 6, -1, 1, b"three"]
    assert carried_and_evicted(found) == ([b"three"], [])
    # a spent first bucket: the second is not counted; too far behind: no entries, not whole
    client.set("rate:a", 10)
    client.rpush("log", *[f"e{i}" for i in range(CARRIED + 1)])
    found = asyncio.run(admit((2, 2), (10, 5)))
    assert (found[WHOLE], found[LENGTH], found[COUNTED], found[COUNTS]) == (
        0, 3 + CARRIED + 1, 1, 11)
    assert carried_and_evicted(found) == ([], [])
    assert client.get("rate:b") == b"6"


def test_a_burst_of_creates_on_one_worker_brings_none_of_its_own_commits_back_from_the_store(
    store: RedisServer,
) -> None:
    """Under a burst, a request's admission is often sent while commits of the same worker are
    still on their way to the store: it asks only for the entries past them (they are in the
    copy already), so no answer carries the worker's own commits back (an admission used to
    bring back up to CARRIED of them, each a whole commit)."""
    app = create_app(Settings(recipe=str(SMALL_RECIPE), state_url=store.url, rate_limit=10**6))
    client = redis.Redis.from_url(store.url)
    headers = {"Authorization": f"Bearer {OWNER}"}

    async def scenario() -> tuple[list[int], int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as c:
            before = (await c.get("/api/v1/clients", headers=headers)).json()["data"]["total"]
            client.config_resetstat()
            statuses: list[int] = []

            async def connection(i: int) -> None:  # as a load tool's: one request after another
                for n in range(3):
                    made = await c.post("/api/v1/clients", headers=headers,
                                        json={"name": f"Burst {i}-{n}"})
                    statuses.append(made.status_code)

            await asyncio.gather(*(connection(i) for i in range(64)))
            fetched = _calls(client, "lrange")
        # another worker, from nothing but the store, sees every one of them
        other = create_app(Settings(recipe=str(SMALL_RECIPE), state_url=store.url))
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as c:
            after = (await c.get("/api/v1/clients", headers=headers)).json()["data"]["total"]
        return statuses, fetched, after - before

    statuses, fetched, added = asyncio.run(scenario())
    assert statuses == [201] * 192
    assert added == 192
    assert fetched == 0, f"{fetched} admissions brought the worker's own commits back"

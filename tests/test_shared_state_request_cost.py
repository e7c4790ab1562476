"""What a request costs the worker and the store on shared state, against a real redis-server:
a read repeating the last one reuses its packed admission command, and the journal's entries of
many requests reach the stream in one command per batch, the stream cut to its size once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import redis

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.journal import Entry
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.shared import wire
from opsmerge_sandbox.shared.journal import BATCH, SharedJournal
from opsmerge_sandbox.shared.link import Link
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


def test_a_batch_of_journal_entries_is_one_store_command_cut_to_the_newest_exactly(
    store: RedisServer,
) -> None:
    client = redis.Redis.from_url(store.url)
    link = Link(store.url, "test:")
    journal = SharedJournal(10, link)
    count = BATCH + 40  # two script runs: a run never carries more than BATCH

    async def scenario() -> None:
        for i in range(count):  # one loop turn: one batch
            journal.add(Entry(float(i), "GET", f"/p/{i}", "", None, 200, None, None,
                              "default", None, 1.0))
        assert journal._writer is not None
        await journal._writer

    before_runs, before_adds = _calls(client, "xtrim"), _calls(client, "xadd")
    asyncio.run(scenario())
    assert _calls(client, "xtrim") - before_runs == 2
    assert _calls(client, "xadd") - before_adds == count
    kept = [msgspec.json.decode(fields[b"e"])[2] for _, fields in client.xrange(journal.stream)]
    assert kept == [f"/p/{i}" for i in range(count - 10, count)]

"""A workspace's write lock goes round the workers in the order they asked for it, against a
real redis-server: a worker that waits is never overtaken by one that came later."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.shared.build import share
from opsmerge_sandbox.shared.records import SharedWorkspaces
from opsmerge_sandbox.state import build_state
from tests.conftest import SMALL_RECIPE
from tests.shared_state_servers import RedisServer, redis_server

WAITING = 6


@pytest.fixture()
def store() -> Iterator[RedisServer]:
    yield from redis_server()


def _worker(store: RedisServer) -> SharedWorkspaces:
    """One worker's records, as `serve --workers` gives each process its own."""
    state = build_state(Settings(recipe=str(SMALL_RECIPE), state_url=store.url))
    share(state)
    assert isinstance(state.workspaces, SharedWorkspaces)
    return state.workspaces


def test_waiting_workers_take_the_lock_in_the_order_they_asked(store: RedisServer) -> None:
    holder, *waiting = [_worker(store) for _ in range(WAITING + 1)]
    line = holder.link.key("line", "w")

    async def main() -> list[int]:
        held = await holder.lock("w")
        order: list[int] = []

        async def wait_turn(i: int, records: SharedWorkspaces) -> None:
            token = await records.lock("w")
            order.append(i)
            await records.unlock("w", token)

        tasks = []
        for i, records in enumerate(waiting):
            tasks.append(asyncio.ensure_future(wait_turn(i, records)))
            for _ in range(200):  # this one is in line before the next one asks
                if int(store.cli("zcard", line)) == i + 1:
                    break
                await asyncio.sleep(0.005)
        await holder.unlock("w", held)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return order

    assert asyncio.run(main()) == list(range(WAITING))

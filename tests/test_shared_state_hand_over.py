"""Writers queued on one worker hand the workspace's write lock on: fewer round trips to Redis,
and the lock is free for the other hosts once they are done."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.shared_state_servers import Host, RedisServer, redis_server, running_hosts

OWNER = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}
API = "/api/v1"
BURST = 24


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    yield from redis_server()


@pytest.fixture(scope="module")
def hosts(redis: RedisServer) -> Iterator[tuple[Host, Host]]:
    yield from running_hosts(redis.url, {"workers": 1}, {"workers": 1})


def _scripts_run(redis: RedisServer) -> int:
    """Scripts Redis has run so far (every admission, lock and commit is one)."""
    found = re.search(r"cmdstat_evalsha:calls=(\d+)", redis.cli("info", "commandstats"))
    return int(found[1]) if found else 0


async def _burst(base: str, workspace: str) -> list[httpx.Response]:
    headers = {**OWNER, "X-Sandbox-Workspace": workspace}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(f"{API}/tickets", headers=headers,
                            json={"subject": f"Burst {i}", "client_id": "cli_acme"})
                for i in range(BURST)
            )
        )


def test_a_burst_of_writes_on_one_worker_takes_the_lock_from_redis_less_than_once_a_write(
    redis: RedisServer, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    workspace = f"t-{uuid.uuid4().hex[:10]}"
    warm = httpx.post(f"{a.base}{API}/tickets", headers={**OWNER, "X-Sandbox-Workspace":
                      workspace}, json={"subject": "Warm", "client_id": "cli_acme"})
    assert warm.status_code == 201, warm.text
    before = _scripts_run(redis)
    answers = asyncio.run(_burst(a.base, workspace))
    scripts = _scripts_run(redis) - before
    assert [r.status_code for r in answers] == [201] * BURST, [r.text for r in answers][:3]
    numbers = sorted(int(r.json()["data"]["number"]) for r in answers)
    assert numbers == list(range(numbers[0], numbers[0] + BURST))  # gapless, none twice
    # without hand-overs each write runs three: its admission, the lock, the commit
    assert scripts < 3 * BURST, scripts
    # the last writer let the lock go: another host writes at once, not after its expiry
    started = time.monotonic()
    other = httpx.post(f"{b.base}{API}/tickets", headers={**OWNER, "X-Sandbox-Workspace":
                       workspace}, json={"subject": "After", "client_id": "cli_acme"})
    assert other.status_code == 201, other.text
    assert time.monotonic() - started < 2.0
    listed = httpx.get(f"{b.base}{API}/tickets", headers={**OWNER, "X-Sandbox-Workspace":
                       workspace}, params={"per_page": 1})
    assert listed.json()["data"]["total"] >= BURST + 2

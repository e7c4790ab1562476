"""A worker far behind a workspace's log fetches what it lacks once, however many requests arrive
at that moment: the entries do not leave Redis once per request (which, under load, kept Redis
busy for seconds), and every one of those requests still reads the latest writes."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.shared_state_servers import Host, RedisServer, redis_server, running_hosts

OWNER = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}
API = "/api/v1"
WRITES = 120  # well past what one admission carries
READERS = 24


@pytest.fixture(scope="module")
def store() -> Iterator[RedisServer]:
    yield from redis_server()


@pytest.fixture(scope="module")
def hosts(store: RedisServer) -> Iterator[tuple[Host, Host]]:
    yield from running_hosts(store.url, {"workers": 1}, {"workers": 1})


def _sent_bytes(store: RedisServer) -> int:
    found = re.search(r"total_net_output_bytes:(\d+)", store.cli("info", "stats"))
    assert found
    return int(found[1])


async def _gather(base: str, method: str, path: str, headers: dict[str, str], count: int,
                  body: dict[str, str] | None = None) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        return await asyncio.gather(
            *(client.request(method, path, headers=headers, json=body) for _ in range(count))
        )


def test_requests_to_a_worker_far_behind_share_one_fetch_of_what_it_lacks(
    store: RedisServer, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    workspace = f"t-{uuid.uuid4().hex[:10]}"
    headers = {**OWNER, "X-Sandbox-Workspace": workspace}
    first = httpx.get(f"{b.base}{API}/tickets?per_page=1", headers=headers)  # B has a copy
    assert first.status_code == 200
    made = asyncio.run(_gather(a.base, "POST", f"{API}/tickets", headers, WRITES,
                               {"subject": "Far ahead", "client_id": "cli_acme"}))
    assert {r.status_code for r in made} == {201}
    last = max(made, key=lambda r: int(r.json()["data"]["number"])).json()["data"]["id"]
    client = redis.Redis.from_url(store.url)
    log_key = next(k for k in client.scan_iter(match=f"*:log:{workspace}"))
    log_bytes = sum(len(e) for e in client.lrange(log_key, 0, -1))
    before = _sent_bytes(store)
    reads = asyncio.run(_gather(b.base, "GET", f"{API}/tickets/{last}", headers, READERS))
    sent = _sent_bytes(store) - before
    assert [r.status_code for r in reads] == [200] * READERS  # each sees the latest write
    assert sent < 2 * log_bytes, (
        f"{READERS} reads took {sent} bytes out of Redis for a log of {log_bytes}"
    )

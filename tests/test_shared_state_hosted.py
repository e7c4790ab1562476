"""Hosted mode on shared state: two replicas behind one address act as one public sandbox.

Visitor workspaces, the workspace cap, the per-visitor change budget and the per-address rate
limit hold across replicas, as they do in one process.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opsmerge_sandbox.settings import Settings
from tests.conftest import SMALL_RECIPE
from tests.shared_state_servers import Host, RedisServer, start_hosts

DEMO = "om_sbx_demo_OL6XsWpZuQUEQCLdAQ7VTn2Meg"
API = "/api/v1"
CAP = 3
MAX_CHANGES = 40  # records one visitor may change (the default, 200, only makes the test slower)
MAX_BYTES = 3000  # request-body bytes one visitor may write
ADDRESS_LIMIT = 150  # above the budget bursts, which come from 127.0.0.1 too


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[Host, Host]]:
    redis = RedisServer()

    def settings() -> Settings:
        return Settings(
            recipe=str(SMALL_RECIPE), hosted=True, cors_origins=("*",),
            hosted_max_workspaces=CAP, hosted_address_rate_limit=ADDRESS_LIMIT,
            hosted_max_changes=MAX_CHANGES, hosted_max_workspace_bytes=MAX_BYTES,
        )

    try:
        a, b = start_hosts(redis.url, {"settings": settings()}, {"settings": settings()})
    except BaseException:
        redis.close()
        raise
    try:
        yield a, b
    finally:
        a.close()
        b.close()
        redis.close()


def _h(workspace: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {DEMO}", "X-Sandbox-Workspace": workspace}


def test_a_visitor_workspace_written_on_one_replica_is_read_on_the_other(
    replicas: tuple[Host, Host],
) -> None:
    a, b = replicas
    ws = f"v-{uuid.uuid4().hex[:10]}"
    made = httpx.post(
        f"{a.base}{API}/tickets", headers=_h(ws), json={"subject": "hi", "client_id": "cli_acme"}
    )
    assert made.status_code == 201, made.text
    got = httpx.get(f"{b.base}{API}/tickets/{made.json()['data']['id']}", headers=_h(ws))
    assert got.status_code == 200


def test_the_workspace_cap_counts_the_visitors_of_every_replica(
    replicas: tuple[Host, Host],
) -> None:
    a, b = replicas
    first, *others = [f"v-{uuid.uuid4().hex[:10]}" for _ in range(CAP)]
    made = httpx.post(
        f"{a.base}{API}/tickets", headers=_h(first), json={"subject": "x", "client_id": "cli_acme"}
    ).json()["data"]
    for i, ws in enumerate(others):  # the cap is reached with visits on both replicas
        assert httpx.get(f"{(b, a)[i % 2].base}{API}/clients", headers=_h(ws)).status_code == 200
    assert httpx.get(f"{a.base}{API}/tickets/{made['id']}", headers=_h(first)).status_code == 200
    # a new visitor on B evicts the least recently used of all: `first`, last seen on A
    newcomer = f"v-{uuid.uuid4().hex[:10]}"
    for ws in others:
        httpx.get(f"{b.base}{API}/clients", headers=_h(ws))
    assert httpx.get(f"{b.base}{API}/clients", headers=_h(newcomer)).status_code == 200
    assert httpx.get(f"{a.base}{API}/tickets/{made['id']}", headers=_h(first)).status_code == 404


def test_the_change_budget_holds_for_writes_spread_over_replicas(
    replicas: tuple[Host, Host],
) -> None:
    ws = f"v-{uuid.uuid4().hex[:10]}"
    body = {"name": "Client", "domain": "example.com"}

    async def burst() -> list[Any]:
        async def one(i: int) -> Any:
            host = replicas[i % 2]
            async with httpx.AsyncClient(base_url=host.base, timeout=30) as c:
                return await c.post(f"{API}/clients", headers=_h(ws), json=body)

        return await asyncio.gather(*(one(i) for i in range(MAX_CHANGES + 20)))

    answers = asyncio.run(burst())
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * MAX_CHANGES + [409] * 20, {c: codes.count(c) for c in set(codes)}
    assert all(r.json()["error"]["code"] == "CONFLICT" for r in answers if r.status_code == 409)


def test_the_byte_budget_holds_for_writes_spread_over_replicas(
    replicas: tuple[Host, Host],
) -> None:
    ws = f"v-{uuid.uuid4().hex[:10]}"
    body = json.dumps({"name": "C" * 200, "domain": "example.com"}).encode()
    headers = {**_h(ws), "Content-Type": "application/json"}

    async def burst() -> list[Any]:
        async def one(i: int) -> Any:
            async with httpx.AsyncClient(base_url=replicas[i % 2].base, timeout=30) as c:
                return await c.post(f"{API}/clients", headers=headers, content=body)

        return await asyncio.gather(*(one(i) for i in range(24)))

    codes = sorted(r.status_code for r in asyncio.run(burst()))
    fits = MAX_BYTES // len(body)  # as in one process: a write past the budget is refused
    assert codes == [201] * fits + [409] * (24 - fits), codes


def test_the_per_address_limit_counts_requests_to_every_replica(
    replicas: tuple[Host, Host],
) -> None:
    names = [f"r-{uuid.uuid4().hex[:10]}" for _ in range(CAP)]  # each key bucket: 300 a minute

    async def burst() -> list[Any]:
        # from an address no other test uses (all of 127/8 is loopback), so its budget is whole
        clients = [
            httpx.AsyncClient(
                base_url=host.base, timeout=30,
                transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"),
            )
            for host in replicas
        ]
        try:
            return await asyncio.gather(*(
                clients[i % 2].get(f"{API}/auth/me", headers=_h(names[i % CAP]))
                for i in range(2 * ADDRESS_LIMIT)
            ))
        finally:
            for c in clients:
                await c.aclose()

    answers = asyncio.run(burst())
    refused = [r for r in answers if r.status_code == 429]
    assert sum(r.status_code == 200 for r in answers) == ADDRESS_LIMIT
    assert len(refused) == ADDRESS_LIMIT
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in refused)
    # a request its address's budget refused spent nothing of its key's: the key's bucket in
    # the first workspace counted only the requests that passed there
    passed = sum(r.status_code == 200 for r in answers[::CAP])
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3")) as other:
        probe = other.get(f"{replicas[1].base}{API}/auth/me", headers=_h(names[0]))
    limit = int(probe.headers["x-ratelimit-limit"])
    assert int(probe.headers["x-ratelimit-remaining"]) == limit - passed - 1


def test_an_idle_visitor_workspace_expires_on_every_replica() -> None:
    redis = RedisServer()

    def settings() -> Settings:
        return Settings(recipe=str(SMALL_RECIPE), hosted=True, cors_origins=("*",),
                        hosted_workspace_ttl=1.0)

    try:
        a, b = start_hosts(redis.url, {"settings": settings()}, {"settings": settings()})
    except BaseException:
        redis.close()
        raise
    try:
        ws = f"v-{uuid.uuid4().hex[:10]}"
        made = httpx.post(
            f"{a.base}{API}/tickets", headers=_h(ws), json={"subject": "x", "client_id": "cli_acme"}
        ).json()["data"]
        assert httpx.get(f"{b.base}{API}/tickets/{made['id']}", headers=_h(ws)).status_code == 200
        time.sleep(2.0)  # idle past the TTL: a sweeper (every TTL/4) resets it
        for host in (a, b):
            got = httpx.get(f"{host.base}{API}/tickets/{made['id']}", headers=_h(ws))
            assert got.status_code == 404
    finally:
        a.close()
        b.close()
        redis.close()

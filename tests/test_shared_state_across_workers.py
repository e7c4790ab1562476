"""One sandbox served by several workers and hosts on one real redis-server.

Host A runs two uvicorn workers, host B one more, all with the same recipe and `--state`: every
guarantee below is checked across hosts (a request sent to B is served by another process than
one sent to A) and across A's workers. Each test works in a workspace of its own.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.shared_state_servers import Host, RedisServer, start_hosts

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
ADMIN = {"X-Sandbox-Admin-Token": ADMIN_TOKEN}
API = "/api/v1"
NUMBER = re.compile(r"^INV-(\d{4})-(\d{4,})$")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="module")
def hosts(redis_url: str) -> Iterator[tuple[Host, Host]]:
    a, b = start_hosts(redis_url, {"workers": 2}, {"workers": 1})
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _h(workspace: str, key: str = OWNER) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-Sandbox-Workspace": workspace}


def _ws() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def _spread(
    hosts: tuple[Host, Host], calls: list[tuple[str, str, dict[str, str], Any]]
) -> list[httpx.Response]:
    """Send the calls at once, alternating hosts, each on a connection of its own."""

    async def one(i: int, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        async with httpx.AsyncClient(base_url=hosts[i % 2].base, timeout=30) as c:
            return await c.request(method, path, headers=headers, json=body)

    return await asyncio.gather(*(one(i, *call) for i, call in enumerate(calls)))


def test_a_write_acknowledged_on_one_host_is_in_the_next_read_on_another(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    ws = _ws()
    before = httpx.get(f"{b.base}{API}/tickets", headers=_h(ws)).json()["data"]["total"]
    body = {"subject": "Printer", "client_id": "cli_acme"}
    made = httpx.post(f"{a.base}{API}/tickets", headers=_h(ws), json=body)
    assert made.status_code == 201, made.text
    ticket = made.json()["data"]
    got = httpx.get(f"{b.base}{API}/tickets/{ticket['id']}", headers=_h(ws))
    assert got.status_code == 200 and got.json()["data"] == ticket
    listed = httpx.get(f"{b.base}{API}/tickets", headers=_h(ws)).json()["data"]
    assert listed["total"] == before + 1
    changed = httpx.patch(
        f"{b.base}{API}/tickets/{ticket['id']}", headers=_h(ws), json={"subject": "Printer jam"}
    )
    assert changed.status_code == 200, changed.text
    again = httpx.get(f"{a.base}{API}/tickets/{ticket['id']}", headers=_h(ws)).json()["data"]
    assert again["subject"] == "Printer jam"
    gone = httpx.delete(f"{a.base}{API}/tickets/{ticket['id']}", headers=_h(ws))
    assert gone.status_code in (200, 204), gone.text
    assert httpx.get(f"{b.base}{API}/tickets/{ticket['id']}", headers=_h(ws)).status_code == 404
    assert httpx.get(f"{b.base}{API}/tickets", headers=_h(ws)).json()["data"]["total"] == before


def test_concurrent_creates_on_every_worker_get_unique_ids_and_gapless_numbers(
    hosts: tuple[Host, Host],
) -> None:
    ws = _ws()
    body = {"client_id": "cli_acme", "lines": [{"description": "Service", "quantity": 1,
                                                 "unit_price": 10}]}
    first = httpx.get(
        f"{hosts[0].base}{API}/invoices", headers=_h(ws), params={"per_page": 1}
    ).json()["data"]["total"]
    answers = asyncio.run(_spread(hosts, [("POST", f"{API}/invoices", _h(ws), body)] * 24))
    assert [r.status_code for r in answers] == [201] * 24, [r.text for r in answers][:3]
    made = [r.json()["data"] for r in answers]
    assert len({m["id"] for m in made}) == 24
    numbers = sorted(int(NUMBER.match(m["number"])[2]) for m in made)  # type: ignore[index]
    assert numbers == list(range(numbers[0], numbers[0] + 24))  # gapless, none twice
    tickets = asyncio.run(_spread(
        hosts, [("POST", f"{API}/tickets", _h(ws), {"subject": "x", "client_id": "cli_acme"})] * 16
    ))
    assert [r.status_code for r in tickets] == [201] * 16
    seq = sorted(r.json()["data"]["number"] for r in tickets)
    assert len(set(seq)) == 16
    total = httpx.get(f"{hosts[1].base}{API}/invoices", headers=_h(ws)).json()["data"]["total"]
    assert total == first + 24  # exact totals on the other host


def _mint(host: Host, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{host.base}/_sandbox/keys", headers=ADMIN, json={"name": "burst", **body})
    assert r.status_code == 201, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_a_keys_use_read_on_every_worker_at_once_is_logged_once(
    hosts: tuple[Host, Host],
) -> None:
    ws = _ws()
    tech = "om_sbx_tech_full_plQxDn0C3kWtpyClB4sktSRnGS"
    answers = asyncio.run(_spread(hosts, [("GET", f"{API}/tickets", _h(ws, tech), None)] * 16))
    assert [a.status_code for a in answers] == [200] * 16
    for host in hosts:  # each host's own copy, caught up by the read
        log = httpx.get(
            f"{host.base}{API}/audit-log?action=api_key.used&object_id=key_techfull&per_page=100",
            headers=_h(ws),
        ).json()["data"]["items"]
        assert len([e for e in log if e["created_at"] >= "2026-11-02"]) == 1, log


def test_a_burst_of_twice_the_limit_over_every_worker_lets_exactly_the_limit_through(
    hosts: tuple[Host, Host],
) -> None:
    key = _mint(hosts[0], rate_limit=20)["key"]  # minted on A, used on A and B at once
    ws = _ws()
    answers = asyncio.run(_spread(hosts, [("GET", f"{API}/auth/me", _h(ws, key), None)] * 40))
    ok = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert len(ok) == 20 and len(refused) == 20
    # every passing answer tells the count Redis gave it: each Remaining once, 19 down to 0
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in ok) == list(range(20))
    for r in refused:
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.json()["error"]["code"] == "RATE_LIMITED"
    # emptied through one host, the bucket is empty on every host
    emptied = httpx.post(f"{hosts[1].base}/_sandbox/rate-limits/reset", headers=ADMIN)
    assert emptied.status_code == 200
    again = httpx.get(f"{hosts[0].base}{API}/auth/me", headers=_h(ws, key))
    assert again.status_code == 200 and again.headers["x-ratelimit-remaining"] == "19"


def test_a_fault_rule_with_times_3_fires_exactly_three_times_across_workers(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    ws = _ws()
    rule = httpx.post(
        f"{a.base}/_sandbox/faults", headers={**ADMIN, "X-Sandbox-Workspace": ws},
        json={"match": {"method": "GET"}, "effect": {"status": 503}, "times": 3},
    )
    assert rule.status_code == 201, rule.text
    answers = asyncio.run(_spread(hosts, [("GET", f"{API}/clients", _h(ws), None)] * 24))
    assert sorted(r.status_code for r in answers) == [200] * 21 + [503] * 3
    listed = httpx.get(f"{b.base}/_sandbox/faults", headers=ADMIN, params={"workspace": ws})
    (shown,) = listed.json()["data"]["items"]
    assert (shown["fired"], shown["remaining"], shown["status"]) == (3, 0, "exhausted")


def test_a_key_revoked_on_one_host_is_refused_on_every_other(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    minted = _mint(b)
    ws = _ws()
    assert httpx.get(f"{a.base}{API}/auth/me", headers=_h(ws, minted["key"])).status_code == 200
    assert httpx.delete(f"{b.base}/_sandbox/keys/{minted['id']}", headers=ADMIN).status_code == 200
    for host in (a, b, a):
        refused = httpx.get(f"{host.base}{API}/auth/me", headers=_h(ws, minted["key"]))
        assert refused.status_code == 401


def test_a_workspace_reset_is_seen_by_every_worker_at_once(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    ws = _ws()
    seeded = httpx.get(f"{a.base}{API}/tickets", headers=_h(ws)).json()["data"]["total"]
    made = httpx.post(
        f"{a.base}{API}/tickets", headers=_h(ws), json={"subject": "x", "client_id": "cli_acme"}
    ).json()["data"]
    assert httpx.get(f"{b.base}{API}/tickets/{made['id']}", headers=_h(ws)).status_code == 200
    reset = httpx.post(f"{b.base}/_sandbox/workspaces/{ws}/reset", headers=ADMIN)
    assert reset.status_code == 200, reset.text
    for host in (a, b, a, b):
        got = httpx.get(f"{host.base}{API}/tickets/{made['id']}", headers=_h(ws))
        assert got.status_code == 404
        listed = httpx.get(f"{host.base}{API}/tickets", headers=_h(ws)).json()["data"]
        assert listed["total"] == seeded


def test_the_clock_moved_on_one_host_moves_every_host_and_its_rate_windows(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    ws = _ws()
    key = _mint(a, rate_limit=2)["key"]
    for host in (a, b):
        assert httpx.get(f"{host.base}{API}/auth/me", headers=_h(ws, key)).status_code == 200
    assert httpx.get(f"{a.base}{API}/auth/me", headers=_h(ws, key)).status_code == 429
    moved = httpx.post(
        f"{a.base}/_sandbox/clock", headers={**ADMIN, "X-Sandbox-Workspace": ws},
        json={"advance_seconds": 61},
    )
    assert moved.status_code == 200, moved.text
    clock = httpx.get(f"{b.base}/_sandbox/clock", headers={**ADMIN, "X-Sandbox-Workspace": ws})
    assert clock.json()["data"]["offset_seconds"] == 61
    passed = httpx.get(f"{b.base}{API}/auth/me", headers=_h(ws, key))  # the window has ended
    assert passed.status_code == 200 and passed.headers["x-ratelimit-remaining"] == "1"


def test_the_journal_holds_the_requests_of_every_worker(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    ws = _ws()
    for host in (a, b, a, b):
        httpx.get(f"{host.base}{API}/clients", headers=_h(ws))
    seen = []
    for _ in range(50):  # another worker writes its entries within milliseconds
        items = httpx.get(
            f"{a.base}/_sandbox/requests", headers=ADMIN, params={"workspace": ws}
        ).json()["data"]["items"]
        seen = [i["path"] for i in items]
        if len(seen) == 4:
            break
        asyncio.run(asyncio.sleep(0.02))
    assert seen == [f"{API}/clients"] * 4


def test_seeded_and_every_nth_rules_fire_as_in_one_process_across_workers(
    hosts: tuple[Host, Host],
) -> None:
    """The n-th matching request overall gets the n-th draw of the rule's seeded generator,
    whichever worker serves it; `every: 3` counts the matches of every worker."""
    a, b = hosts
    ws = _ws()
    admin = {**ADMIN, "X-Sandbox-Workspace": ws}
    seeded = {"match": {"path": "/api/v1/clients"}, "effect": {"status": 503},
              "probability": 0.5, "seed": 7}
    every = {"match": {"path": "/api/v1/sites"}, "effect": {"status": 502}, "every": 3}
    for rule in (seeded, every):
        assert httpx.post(f"{a.base}/_sandbox/faults", headers=admin, json=rule).status_code == 201
    draws = random.Random(7)
    expected = [503 if draws.random() < 0.5 else 200 for _ in range(16)]
    got = [httpx.get(f"{(a, b)[i % 2].base}{API}/clients", headers=_h(ws)).status_code
           for i in range(16)]
    assert got == expected
    sites = [httpx.get(f"{(b, a)[i % 2].base}{API}/sites", headers=_h(ws)).status_code
             for i in range(9)]
    assert sites == [200, 200, 502] * 3


def test_a_reset_of_the_whole_sandbox_is_seen_by_every_worker(hosts: tuple[Host, Host]) -> None:
    a, b = hosts
    ws = _ws()
    made = httpx.post(
        f"{b.base}{API}/tickets", headers=_h(ws), json={"subject": "x", "client_id": "cli_acme"}
    ).json()["data"]
    moved = httpx.post(f"{a.base}/_sandbox/clock", headers=ADMIN, json={"advance_seconds": 30})
    assert moved.status_code == 200
    assert httpx.get(f"{a.base}{API}/tickets/{made['id']}", headers=_h(ws)).status_code == 200
    assert httpx.post(f"{a.base}/_sandbox/reset", headers=ADMIN, json={}).status_code == 200
    for host in (b, a):
        got = httpx.get(f"{host.base}{API}/tickets/{made['id']}", headers=_h(ws))
        assert got.status_code == 404
        clock = httpx.get(f"{host.base}/_sandbox/clock", headers=ADMIN).json()["data"]
        assert clock["offset_seconds"] == 0

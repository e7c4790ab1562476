"""Ticket rules and their webhooks on shared state: what a rule does is one sandbox's doing,
whichever host took the write, the rule or the clock move.

Real `redis-server`, two `serve` hosts on it (one with two workers), a real receiver on loopback.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opsmerge_contracts.webhook_receiver import WebhookReceiver
from tests.conftest import ADMIN
from tests.shared_state_servers import Host, RedisServer, running_hosts
from tests.test_shared_state_across_workers import _h

API = "/api/v1"
DAY = 86400


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Host, Host]]:
    redis = RedisServer()
    try:
        yield from running_hosts(redis.url, {"workers": 2}, {"workers": 1})
    finally:
        redis.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def _client_id(host: Host, ws: str) -> str:
    items = httpx.get(f"{host.base}{API}/clients", headers=_h(ws)).json()["data"]["items"]
    return str(items[0]["id"])


def _rule(host: Host, ws: str, **fields: Any) -> dict[str, Any]:
    r = httpx.post(f"{host.base}{API}/ticket-rules", headers=_h(ws), json=fields)
    assert r.status_code == 201, r.text
    rule: dict[str, Any] = r.json()["data"]
    return rule


def _ticket(host: Host, ws: str, subject: str) -> dict[str, Any]:
    body = {"subject": subject, "client_id": _client_id(host, ws), "priority": "Low"}
    r = httpx.post(f"{host.base}{API}/tickets", headers=_h(ws), json=body)
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()["data"]
    return ticket


def _firings(host: Host, ws: str, rule_id: str) -> int:
    r = httpx.get(f"{host.base}{API}/ticket-rules/{rule_id}/firings", headers=_h(ws))
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["total"])


def test_a_rule_made_on_one_host_acts_on_a_write_to_another_and_every_host_sees_it(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    ws = f"r-{uuid.uuid4().hex[:10]}"
    only = {"match": "all", "conditions": [{"field": "subject", "operator": "=", "value": "x"}]}
    rule = _rule(
        a, ws, name="to critical", trigger="ticket.created", conditions=only,
        actions=[{"type": "set_priority", "value": "Critical"}],
    )  # fmt: skip
    ticket = _ticket(b, ws, "x")
    for host in (a, b, a, b):  # both of a's workers, as the requests spread
        got = httpx.get(f"{host.base}{API}/tickets/{ticket['id']}", headers=_h(ws)).json()
        assert got["data"]["priority"] == "Critical"
        assert _firings(host, ws, rule["id"]) == 1
    other = _ticket(a, ws, "not x")
    got = httpx.get(f"{b.base}{API}/tickets/{other['id']}", headers=_h(ws)).json()
    assert got["data"]["priority"] == "Low"
    assert _firings(b, ws, rule["id"]) == 1


def test_a_webhook_fired_by_a_write_to_one_host_is_logged_where_any_host_reads_it(
    hosts: tuple[Host, Host], receiver: WebhookReceiver
) -> None:
    a, b = hosts
    ws = f"w-{uuid.uuid4().hex[:10]}"
    rule = _rule(
        b, ws, name="hook", trigger="ticket.created",
        actions=[{"type": "send_webhook", "url": receiver.url}],
    )  # fmt: skip
    receiver.trust(rule["id"], rule["signing_secret"])
    _ticket(a, ws, "hooked")
    (got,) = receiver.wait_for(rule_id=rule["id"])
    assert got.verified
    deadline = time.monotonic() + 10
    logged: list[Any] = []
    while time.monotonic() < deadline and not logged:
        r = httpx.get(f"{b.base}{API}/ticket-rules/{rule['id']}/deliveries", headers=_h(ws))
        logged = r.json()["data"]["items"]
        time.sleep(0.1)
    assert [d["outcome"] for d in logged] == ["succeeded"]


def test_a_clock_rule_fires_once_however_many_workers_pass_the_time(
    hosts: tuple[Host, Host],
) -> None:
    a, b = hosts
    ws = f"c-{uuid.uuid4().hex[:10]}"
    only = {"match": "all", "conditions": [{"field": "subject", "operator": "=", "value": "idle"}]}
    rule = _rule(
        a, ws, name="stale", trigger="ticket.scheduled_stale", days=1, conditions=only,
        actions=[{"type": "set_priority", "value": "High"}],
    )  # fmt: skip
    ticket = _ticket(b, ws, "idle")
    moved = httpx.post(
        f"{b.base}/_sandbox/clock",
        json={"advance_seconds": DAY + 60},
        headers={**ADMIN, "X-Sandbox-Workspace": ws},
    )
    assert moved.status_code == 200, moved.text
    time.sleep(3)  # every worker's tick passes the new time more than once
    for host in (a, b, a):
        assert _firings(host, ws, rule["id"]) == 1
        got = httpx.get(f"{host.base}{API}/tickets/{ticket['id']}", headers=_h(ws)).json()
        assert got["data"]["priority"] == "High"

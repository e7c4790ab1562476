"""A shared sandbox whose Redis goes away: 503 with a catalogue code and Retry-After, /healthz
not ready, and back to serving by itself once Redis returns, never from stale state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from opsmerge_sandbox.catalogue import load_catalogue
from tests.shared_state_servers import Host, RedisServer, redis_server

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
API = "/api/v1"


def _h(workspace: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {OWNER}", "X-Sandbox-Workspace": workspace}


@pytest.fixture()
def redis() -> Iterator[RedisServer]:
    yield from redis_server()


def _until(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("not within the time allowed")


def test_a_lost_store_answers_503_then_recovers_without_serving_what_it_lost(
    redis: RedisServer,
) -> None:
    host = Host(redis.url, workers=2)
    try:
        ws = f"t-{uuid.uuid4().hex[:10]}"
        made = httpx.post(
            f"{host.base}{API}/tickets", headers=_h(ws),
            json={"subject": "before", "client_id": "cli_acme"},
        )
        assert made.status_code == 201
        ticket = made.json()["data"]["id"]
        redis.stop()
        for method in ("GET", "GET", "POST"):
            r = httpx.request(
                method, f"{host.base}{API}/tickets", headers=_h(ws),
                json={"subject": "during", "client_id": "cli_acme"} if method == "POST" else None,
            )
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "STATE_UNAVAILABLE"
            assert load_catalogue().status_of("STATE_UNAVAILABLE") == 503
            assert r.headers["retry-after"] == "1"
        health = httpx.get(f"{host.base}/healthz")
        assert health.status_code == 503 and health.json()["data"]["status"] == "unavailable"
        redis.start()  # no persistence: it comes back empty
        _until(lambda: httpx.get(f"{host.base}/healthz").status_code == 200)
        _until(lambda: httpx.get(f"{host.base}{API}/tickets", headers=_h(ws)).status_code == 200)
        for _ in range(6):  # on every worker: the store lost the ticket, so nobody serves it
            got = httpx.get(f"{host.base}{API}/tickets/{ticket}", headers=_h(ws))
            assert got.status_code == 404
    finally:
        host.close()


def test_a_store_that_stops_answering_is_a_503_within_the_timeout(redis: RedisServer) -> None:
    host = Host(redis.url, workers=1)
    try:
        ws = f"t-{uuid.uuid4().hex[:10]}"
        assert httpx.get(f"{host.base}{API}/clients", headers=_h(ws)).status_code == 200
        redis.cli("client", "pause", "10000", "all")  # up, but answering nobody for 10 s
        started = time.monotonic()
        r = httpx.get(f"{host.base}{API}/clients", headers=_h(ws), timeout=20)
        assert r.status_code == 503 and r.json()["error"]["code"] == "STATE_UNAVAILABLE"
        assert r.headers["retry-after"] == "1"
        # the 2 s command timeout, not the pause (with room for a loaded machine)
        assert time.monotonic() - started < 8
        # (`unpause` itself waits out the pause: a paused server reads no command)
        redis.cli("client", "unpause")
        _until(lambda: httpx.get(f"{host.base}{API}/clients", headers=_h(ws)).status_code == 200)
    finally:
        host.close()


def test_with_append_only_persistence_an_acknowledged_write_survives_a_redis_crash() -> None:
    redis = RedisServer("--save", "", "--appendonly", "yes", "--appendfsync", "always")
    host = Host(redis.url, workers=1)
    try:
        ws = f"t-{uuid.uuid4().hex[:10]}"
        made = httpx.post(
            f"{host.base}{API}/tickets", headers=_h(ws),
            json={"subject": "kept", "client_id": "cli_acme"},
        )
        assert made.status_code == 201
        redis.stop()  # SIGKILL: no shutdown save
        redis.start()
        _until(lambda: httpx.get(f"{host.base}{API}/tickets", headers=_h(ws)).status_code == 200)
        got = httpx.get(f"{host.base}{API}/tickets/{made.json()['data']['id']}", headers=_h(ws))
        assert got.status_code == 200 and got.json()["data"]["subject"] == "kept"
    finally:
        host.close()
        redis.close()

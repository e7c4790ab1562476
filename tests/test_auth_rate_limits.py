"""300 requests per minute per key, with headers that tell the truth, and the QA controls."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import ADMIN, LoopbackServer, bearer, key_named, make_app


def _mint(client: Any, **body: Any) -> str:
    r = client.post("/_sandbox/keys", headers=ADMIN, json={"name": "minted", **body})
    assert r.status_code == 201, r.text
    return r.json()["data"]["key"]


def test_every_response_after_authentication_carries_the_bucket_headers(fresh_client: Any) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - agents read"))
    seen = []
    for path in (
        "/api/v1/agents",
        "/api/v1/agents/agt_nope",
        "/api/v1/agents?per_page=999",
        "/api/v1/tickets",
    ):
        r = fresh_client.get(path, headers=h)
        assert r.status_code in (200, 400, 403, 404)
        seen.append(int(r.headers["x-ratelimit-remaining"]))
        assert r.headers["x-ratelimit-limit"] == "300"
        assert 0 < int(r.headers["x-ratelimit-reset"]) <= 60
    assert seen[:3] == [299, 298, 297]


def test_over_the_limit_429_with_truthful_retry_after(fresh_client: Any) -> None:
    c = fresh_client
    h = bearer(key_named(c.app, "Low rate limit"))
    for i in range(5):
        r = c.get("/api/v1/auth/me", headers=h)
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == str(4 - i)
    r = c.get("/api/v1/auth/me", headers=h)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "RATE_LIMITED"
    retry = int(r.headers["retry-after"])
    assert 0 < retry <= 60 and r.headers["x-ratelimit-remaining"] == "0"
    assert int(r.headers["x-ratelimit-reset"]) == retry
    c.post("/_sandbox/clock", headers=ADMIN, json={"advance_seconds": retry - 1})
    assert c.get("/api/v1/auth/me", headers=h).status_code == 429  # too early: still refused
    c.post("/_sandbox/clock", headers=ADMIN, json={"advance_seconds": 1})
    r = c.get("/api/v1/auth/me", headers=h)
    assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "4"


def test_the_limit_is_per_key_not_per_client(fresh_client: Any) -> None:
    c = fresh_client
    slow = bearer(_mint(c, rate_limit=2))
    other = bearer(_mint(c, rate_limit=2))
    assert [c.get("/api/v1/auth/me", headers=slow).status_code for _ in range(3)] == [200, 200, 429]
    assert c.get("/api/v1/auth/me", headers=other).status_code == 200


def test_the_limit_is_settable_globally() -> None:
    from litestar.testing import TestClient

    app = make_app(rate_limit=7)
    with TestClient(app, base_url="http://sandbox.local") as c:
        r = c.get("/api/v1/auth/me", headers=bearer(key_named(app, "Owner - full")))
        assert r.headers["x-ratelimit-limit"] == "7"
        r = c.get("/api/v1/auth/me", headers=bearer(key_named(app, "Low rate limit")))
        assert r.headers["x-ratelimit-limit"] == "5"  # a key's own limit wins


def test_rate_limit_reset_empties_the_buckets(fresh_client: Any) -> None:
    c = fresh_client
    h = bearer(_mint(c, rate_limit=1))
    assert c.get("/api/v1/auth/me", headers=h).status_code == 200
    assert c.get("/api/v1/auth/me", headers=h).status_code == 429
    assert c.post("/_sandbox/rate-limits/reset", headers=ADMIN).status_code == 200
    assert c.get("/api/v1/auth/me", headers=h).status_code == 200


def test_a_concurrent_burst_lets_exactly_the_limit_through() -> None:
    app = make_app()
    with LoopbackServer(app) as server:
        key = httpx.post(
            server.url + "/_sandbox/keys", headers=ADMIN, json={"name": "burst", "rate_limit": 40}
        ).json()["data"]["key"]

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=30)
            async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
                rs = await asyncio.gather(
                    *(client.get("/api/v1/auth/me", headers=bearer(key)) for _ in range(100))
                )
            return [r.status_code for r in rs]

        statuses = asyncio.run(burst())
    assert statuses.count(200) == 40 and statuses.count(429) == 60


def test_minted_keys_expire_on_the_sandbox_clock_and_can_be_revoked(fresh_client: Any) -> None:
    c = fresh_client
    r = c.post(
        "/_sandbox/keys",
        headers=ADMIN,
        json={"name": "short", "expires_in": 60, "scopes": ["agents:read"]},
    )
    minted = r.json()["data"]
    assert minted["key"].startswith("om_") and minted["scopes"] == ["agents:read"]
    h = bearer(minted["key"])
    assert c.get("/api/v1/agents", headers=h).status_code == 200
    c.post("/_sandbox/clock", headers=ADMIN, json={"advance_seconds": 61})
    r = c.get("/api/v1/agents", headers=h)
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]

    other = c.post("/_sandbox/keys", headers=ADMIN, json={"name": "to revoke"}).json()["data"]
    assert c.get("/api/v1/auth/me", headers=bearer(other["key"])).status_code == 200
    assert c.delete(f"/_sandbox/keys/{other['id']}", headers=ADMIN).status_code == 200
    r = c.get("/api/v1/auth/me", headers=bearer(other["key"]))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_the_key_list_never_shows_secrets(client: Any) -> None:
    listed = client.get("/_sandbox/keys", headers=ADMIN).json()["data"]["items"]
    secrets = {k.key for k in client.app.state.sandbox.recipe.keys}
    assert listed and not any(s in str(listed) for s in secrets)
    assert {k["status"] for k in listed} >= {"active", "expired", "revoked"}


def test_every_control_endpoint_needs_the_admin_token(client: Any) -> None:
    routes = [
        (r.path, m)
        for r in client.app.routes
        for m in getattr(r, "methods", ())
        if r.path.startswith("/_sandbox") and m not in ("OPTIONS", "HEAD")
    ]
    assert len(routes) >= 8
    for path, method in routes:
        url = path.replace("{key_id:str}", "key_x").replace("{name:str}", "x")
        url = url.replace("{rule_id:str}", "x").replace("{id:str}", "x")
        for headers in ({}, {"X-Sandbox-Admin-Token": "wrong"}):
            r = client.request(method, url, headers=headers)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.json()["error"]["code"] == "AUTH_REQUIRED"

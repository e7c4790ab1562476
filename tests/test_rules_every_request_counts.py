"""The article gives every key 300 requests a minute: every authenticated request counts,
whatever it is answered, so a client looping on a denial is throttled here as in production."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN, bearer


def _mint(client: Any, **body: Any) -> str:
    r = client.post("/_sandbox/keys", headers=ADMIN, json={"name": "counted", **body})
    assert r.status_code == 201, r.text
    return r.json()["data"]["key"]


def _remaining(r: Any) -> int:
    return int(r.headers["x-ratelimit-remaining"])


def test_denials_spend_the_keys_budget(fresh_client: Any) -> None:
    c = fresh_client
    h = bearer(_mint(c, rate_limit=3, scopes=["agents:read"]))
    denied = [c.get("/api/v1/tickets", headers=h) for _ in range(3)]
    assert [r.status_code for r in denied] == [403, 403, 403]
    assert [_remaining(r) for r in denied] == [2, 1, 0]
    r = c.get("/api/v1/agents", headers=h)
    assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED"


def test_unknown_paths_and_methods_spend_the_budget_and_say_so(fresh_client: Any) -> None:
    c = fresh_client
    h = bearer(_mint(c, rate_limit=4))
    r = c.get("/api/v1/no-such-thing", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert r.headers["x-ratelimit-limit"] == "4" and _remaining(r) == 3
    r = c.put("/api/v1/agents", headers=h, json={})
    assert r.status_code == 405 and _remaining(r) == 2
    r = c.get("/api/v1/agents/agt_nope", headers=h)
    assert r.status_code == 404 and _remaining(r) == 1
    r = c.post("/api/v1/tickets", headers=h, json={"subject": 5})
    assert r.status_code == 400 and _remaining(r) == 0
    r = c.get("/api/v1/no-such-thing", headers=h)
    assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED"
    assert int(r.headers["retry-after"]) > 0


def test_unknown_paths_without_a_valid_key_are_answered_as_before(fresh_client: Any) -> None:
    c = fresh_client
    r = c.get("/api/v1/no-such-thing", headers=bearer("om_live_not_a_key"))
    assert r.status_code == 404 and "x-ratelimit-limit" not in r.headers
    r = c.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and "x-ratelimit-limit" not in r.headers

"""A workspace can run its own clock ahead: a CI job crosses a rate window or an expiry in its
workspace without moving anyone else's time, and a reset of the workspace puts it back."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import TestClient

from tests.conftest import ADMIN, bearer, make_app

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"


def _ws() -> str:
    return f"clock-{uuid.uuid4().hex[:8]}"


def _clock(client: TestClient, ws: str | None = None) -> dict[str, Any]:
    headers = {**ADMIN, **({"X-Sandbox-Workspace": ws} if ws else {})}
    r = client.get("/_sandbox/clock", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def _advance(client: TestClient, seconds: float, ws: str | None = None) -> Any:
    headers = {**ADMIN, **({"X-Sandbox-Workspace": ws} if ws else {})}
    return client.post("/_sandbox/clock", headers=headers, json={"advance_seconds": seconds})


def test_a_workspace_clock_moves_alone_and_a_reset_puts_it_back() -> None:
    with TestClient(make_app()) as client:
        ws = _ws()
        r = _advance(client, 3600, ws)
        assert r.status_code == 200 and r.json()["data"]["offset_seconds"] == 3600
        assert _clock(client, ws)["offset_seconds"] == 3600
        assert _clock(client)["offset_seconds"] == 0
        assert _clock(client, "default")["offset_seconds"] == 0
        r = client.post("/_sandbox/reset", headers=ADMIN, json={"workspace": ws})
        assert r.status_code == 200
        assert _clock(client, ws)["offset_seconds"] == 0


def test_a_rate_window_ends_early_only_in_the_workspace_whose_clock_moved() -> None:
    with TestClient(make_app()) as client:
        minted = client.post("/_sandbox/keys", headers=ADMIN, json={"rate_limit": 2})
        key = bearer(minted.json()["data"]["key"])
        mine, other = _ws(), _ws()
        for ws in (mine, other):
            codes = [
                client.get(
                    "/api/v1/auth/me", headers={**key, "X-Sandbox-Workspace": ws}
                ).status_code
                for _ in range(3)
            ]
            assert codes == [200, 200, 429]
        retry = client.get("/api/v1/auth/me", headers={**key, "X-Sandbox-Workspace": mine})
        assert _advance(client, int(retry.headers["retry-after"]), mine).status_code == 200
        assert (
            client.get("/api/v1/auth/me", headers={**key, "X-Sandbox-Workspace": mine}).status_code
            == 200
        )
        assert (
            client.get("/api/v1/auth/me", headers={**key, "X-Sandbox-Workspace": other}).status_code
            == 429
        )


def test_a_key_expires_in_the_workspace_whose_clock_passed_its_expiry() -> None:
    with TestClient(make_app()) as client:
        minted = client.post("/_sandbox/keys", headers=ADMIN, json={"expires_in": 600})
        key = bearer(minted.json()["data"]["key"])
        mine, other = _ws(), _ws()
        _advance(client, 601, mine)
        r = client.get("/api/v1/auth/me", headers={**key, "X-Sandbox-Workspace": mine})
        assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_REQUIRED"
        r = client.get("/api/v1/auth/me", headers={**key, "X-Sandbox-Workspace": other})
        assert r.status_code == 200


def test_records_a_workspace_writes_carry_its_own_time() -> None:
    with TestClient(make_app()) as client:
        ws = _ws()
        _advance(client, 86400 * 3, ws)
        h = {**bearer(OWNER), "X-Sandbox-Workspace": ws}
        r = client.post(
            "/api/v1/tickets", json={"subject": "Later", "client_id": "cli_acme"}, headers=h
        )
        assert r.status_code == 201, r.text
        assert r.json()["data"]["created_at"][:10] == _clock(client, ws)["now"][:10]
        assert _clock(client, ws)["now"][:10] != _clock(client)["now"][:10]


def test_a_bad_workspace_name_on_the_clock_is_a_400_naming_the_header() -> None:
    with TestClient(make_app()) as client:
        r = _advance(client, 10, "no spaces allowed")
        assert r.status_code == 400
        assert r.json()["error"]["details"][0]["field"] == "X-Sandbox-Workspace"
        assert _clock(client)["offset_seconds"] == 0

"""Invitations expire after 7 days on the sandbox clock, seeded and new ones alike, and can be
resent (help pages, users and roles)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from litestar.testing import TestClient

from tests.conftest import ADMIN, make_app

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
WEEK = 7 * 24 * 3600
ROOT = Path(__file__).resolve().parent.parent


def _h(ws: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {OWNER}", "X-Sandbox-Workspace": ws}


def _advance(client: TestClient, seconds: float) -> None:
    r = client.post("/_sandbox/clock", headers=ADMIN, json={"advance_seconds": seconds})
    assert r.status_code == 200, r.text


def _users(client: TestClient, ws: str, query: str = "") -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/users?per_page=100{query}", headers=_h(ws))
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["items"])


def test_a_new_invitation_expires_after_seven_days_and_a_resend_renews_it() -> None:
    ws = f"inv-{uuid.uuid4().hex[:8]}"
    with TestClient(make_app()) as client:
        r = client.post(
            "/api/v1/users/invite",
            json={"email": "late.joiner@northwind-it.co.uk", "role_ids": ["rol_technician"]},
            headers=_h(ws),
        )
        assert r.status_code == 201, r.text
        user = r.json()["data"]
        assert user["status"] == "invited" and user["invited_at"]
        assert user["invitation_expires_at"] > user["invited_at"]
        _advance(client, WEEK - 60)
        got = client.get(f"/api/v1/users/{user['id']}", headers=_h(ws)).json()["data"]
        assert got["status"] == "invited"
        _advance(client, 120)
        got = client.get(f"/api/v1/users/{user['id']}", headers=_h(ws)).json()["data"]
        assert got["status"] == "invitation_expired"
        assert user["id"] in {u["id"] for u in _users(client, ws, "&status=invitation_expired")}
        assert user["id"] not in {u["id"] for u in _users(client, ws, "&status=invited")}
        r = client.post(f"/api/v1/users/{user['id']}/resend-invitation", headers=_h(ws))
        assert r.status_code == 200, r.text
        assert r.json()["data"]["status"] == "invited"
        assert r.json()["data"]["invitation_expires_at"] > got["invitation_expires_at"]
        # an accepted (active) user has no invitation to resend
        r = client.post("/api/v1/users/usr_tech/resend-invitation", headers=_h(ws))
        assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"


def test_seeded_invitations_expire_on_the_clock_too(tmp_path: Path) -> None:
    # a world whose epoch is today, so its invitation from three days ago is still pending
    now = datetime.now(UTC).replace(microsecond=0)
    recipe = yaml.safe_load((ROOT / "fixtures" / "default.yaml").read_text())
    recipe["epoch"] = now.isoformat().replace("+00:00", "Z")
    sent = (now - timedelta(days=3)).isoformat().replace("+00:00", "Z")
    [user] = [u for u in recipe["records"]["users"] if u["id"] == "usr_newtech"]
    user["invited_at"] = user["created_at"] = sent
    path = tmp_path / "today.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    ws = f"inv-{uuid.uuid4().hex[:8]}"
    with TestClient(make_app(recipe=str(path))) as client:
        pending = [u for u in _users(client, ws) if u["status"] == "invited"]
        assert "usr_newtech" in {u["id"] for u in pending}
        for u in pending:
            assert u["invitation_expires_at"] > u["invited_at"]
        _advance(client, WEEK + 60)  # past every invitation sent before the epoch
        after = {u["id"]: u for u in _users(client, ws)}
        assert after["usr_newtech"]["status"] == "invitation_expired"
        assert all(after[u["id"]]["status"] == "invitation_expired" for u in pending)
        assert "invited" not in {u["status"] for u in after.values()}

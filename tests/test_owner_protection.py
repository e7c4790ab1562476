"""The Owner cannot be deleted, by anyone, the Owner included (declared as a spec guard)."""

from __future__ import annotations

from litestar.testing import TestClient

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
ADMIN = "om_sbx_admin_full_F9s8eWf3sPYJWznUGDwLrTK3jF"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-Sandbox-Workspace": "owner-guard"}


def test_the_owner_cannot_delete_their_own_user_and_their_key_keeps_working(
    client: TestClient,
) -> None:
    r = client.delete("/api/v1/users/usr_owner", headers=_auth(OWNER))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "FORBIDDEN"
    assert "last Owner" in r.json()["error"]["message"]
    assert client.get("/api/v1/auth/me", headers=_auth(OWNER)).status_code == 200
    assert client.get("/api/v1/users/usr_owner", headers=_auth(OWNER)).status_code == 200


def test_an_admin_cannot_delete_the_owner(client: TestClient) -> None:
    r = client.delete("/api/v1/users/usr_owner", headers=_auth(ADMIN))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "FORBIDDEN"
    assert client.get("/api/v1/auth/me", headers=_auth(OWNER)).status_code == 200


def test_an_owner_who_is_not_the_last_one_can_be_removed(client: TestClient) -> None:
    invited = client.post(
        "/api/v1/users/invite",
        json={"email": "second.owner@northwind-it.co.uk", "role_ids": ["rol_owner"]},
        headers=_auth(OWNER),
    )
    assert invited.status_code == 201, invited.text
    second = invited.json()["data"]["id"]
    assert client.delete(f"/api/v1/users/{second}", headers=_auth(OWNER)).status_code == 200
    assert client.delete("/api/v1/users/usr_owner", headers=_auth(OWNER)).status_code == 403

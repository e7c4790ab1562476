"""The help pages' rules on roles and users, enforced from the spec's `refuse-when` guards.

Owner: everything; no other user can demote an Owner, only the Owner can step down.
Admin: everything except adding or removing other Admins. Users are invited, and deactivated
rather than erased, so what refers to them stays valid.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.conftest import ADMIN as CONTROL

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
ADMIN = "om_sbx_admin_full_F9s8eWf3sPYJWznUGDwLrTK3jF"
TECH = "om_sbx_tech_full_plQxDn0C3kWtpyClB4sktSRnGS"


@pytest.fixture()
def ws() -> str:
    return f"roles-{uuid.uuid4().hex[:10]}"


def _as(key: str, ws: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-Sandbox-Workspace": ws}


def _refused(r: Any, code: str = "FORBIDDEN") -> str:
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == code
    return str(r.json()["error"]["message"])


def _invite(client: TestClient, ws: str, key: str, *roles: str) -> Any:
    email = f"new.{uuid.uuid4().hex[:8]}@northwind-it.co.uk"
    return client.post(
        "/api/v1/users/invite", json={"email": email, "role_ids": list(roles)}, headers=_as(key, ws)
    )


def _roles(client: TestClient, ws: str, user: str) -> list[str]:
    r = client.get(f"/api/v1/users/{user}", headers=_as(OWNER, ws))
    return list(r.json()["data"]["role_ids"])


def test_an_admin_cannot_invite_an_admin_or_an_owner(client: TestClient, ws: str) -> None:
    assert "Admin" in _refused(_invite(client, ws, ADMIN, "rol_admin"))
    assert "Owner" in _refused(_invite(client, ws, ADMIN, "rol_owner"))
    users = client.get("/api/v1/users?per_page=100", headers=_as(OWNER, ws)).json()["data"]
    assert not [u for u in users["items"] if u["email"].startswith("new.")]
    assert _invite(client, ws, ADMIN, "rol_technician").status_code == 201
    assert _invite(client, ws, OWNER, "rol_admin").status_code == 201


def test_an_admin_cannot_promote_to_or_demote_from_admin(client: TestClient, ws: str) -> None:
    h = _as(ADMIN, ws)
    r = client.patch("/api/v1/users/usr_tech", json={"role_ids": ["rol_admin"]}, headers=h)
    assert "Admins" in _refused(r)
    assert _roles(client, ws, "usr_tech") == ["rol_technician"]
    second = _invite(client, ws, OWNER, "rol_admin").json()["data"]["id"]
    r = client.patch(f"/api/v1/users/{second}", json={"role_ids": ["rol_readonly"]}, headers=h)
    _refused(r)
    assert "Admin" in _refused(client.delete(f"/api/v1/users/{second}", headers=h))
    # the Owner may do both
    owner = _as(OWNER, ws)
    r = client.patch("/api/v1/users/usr_tech", json={"role_ids": ["rol_admin"]}, headers=owner)
    assert r.status_code == 200, r.text
    assert client.delete(f"/api/v1/users/{second}", headers=owner).status_code == 200


def test_an_admin_can_still_manage_other_users(client: TestClient, ws: str) -> None:
    h = _as(ADMIN, ws)
    r = client.patch("/api/v1/users/usr_tech", json={"team": "Projects"}, headers=h)
    assert r.status_code == 200, r.text
    r = client.patch("/api/v1/users/usr_tech", json={"role_ids": ["rol_readonly"]}, headers=h)
    assert r.status_code == 200, r.text


def test_nobody_can_demote_the_owner(client: TestClient, ws: str) -> None:
    for key in (ADMIN, TECH):
        r = client.patch(
            "/api/v1/users/usr_owner", json={"role_ids": ["rol_readonly"]}, headers=_as(key, ws)
        )
        assert r.status_code == 403, (key[:12], r.text)
    assert _roles(client, ws, "usr_owner") == ["rol_owner"]
    # not even another Owner
    second = _invite(client, ws, OWNER, "rol_owner").json()["data"]["id"]
    r = client.patch(
        f"/api/v1/users/{second}", json={"role_ids": ["rol_admin"]}, headers=_as(OWNER, ws)
    )
    assert "demote" in _refused(r)


def _only_owner_left(client: TestClient, ws: str) -> None:
    """Every Owner but usr_owner steps down (each may: usr_owner is still there)."""
    users = client.get("/api/v1/users?per_page=100", headers=_as(OWNER, ws)).json()["data"]
    for user in users["items"]:
        if "rol_owner" in user["role_ids"] and user["id"] != "usr_owner":
            minted = client.post(
                "/_sandbox/keys", headers=CONTROL, json={"name": "step down", "user_id": user["id"]}
            )
            assert minted.status_code == 201, minted.text
            r = client.patch(
                f"/api/v1/users/{user['id']}",
                json={"role_ids": ["rol_admin"]},
                headers=_as(minted.json()["data"]["key"], ws),
            )
            assert r.status_code == 200, r.text


def test_the_last_owner_cannot_step_down_but_one_of_two_can(client: TestClient, ws: str) -> None:
    owner = _as(OWNER, ws)
    _only_owner_left(client, ws)
    r = client.patch("/api/v1/users/usr_owner", json={"role_ids": ["rol_admin"]}, headers=owner)
    assert "last Owner" in _refused(r)
    r = client.patch(
        "/api/v1/users/usr_admin", json={"role_ids": ["rol_admin", "rol_owner"]}, headers=owner
    )
    assert r.status_code == 200, r.text
    r = client.patch("/api/v1/users/usr_owner", json={"role_ids": ["rol_admin"]}, headers=owner)
    assert r.status_code == 200, r.text
    assert _roles(client, ws, "usr_owner") == ["rol_admin"]


def test_nobody_can_delete_an_owner_the_owner_included(client: TestClient, ws: str) -> None:
    for key in (OWNER, ADMIN):
        _refused(client.delete("/api/v1/users/usr_owner", headers=_as(key, ws)))
    second = _invite(client, ws, OWNER, "rol_owner").json()["data"]["id"]
    _refused(client.delete(f"/api/v1/users/{second}", headers=_as(OWNER, ws)))
    assert client.get("/api/v1/auth/me", headers=_as(OWNER, ws)).status_code == 200


def test_a_deleted_user_is_deactivated_and_what_refers_to_it_stays_valid(
    client: TestClient, ws: str
) -> None:
    h = _as(OWNER, ws)
    tickets = client.get("/api/v1/tickets?assignee_id=usr_tech&per_page=5", headers=h).json()
    assert tickets["data"]["total"] > 0
    ticket = tickets["data"]["items"][0]["id"]
    r = client.delete("/api/v1/users/usr_tech", headers=h)
    assert r.status_code == 200 and r.json()["data"] == {"id": "usr_tech", "deleted": True}
    user = client.get("/api/v1/users/usr_tech", headers=h)
    assert user.status_code == 200 and user.json()["data"]["status"] == "deactivated"
    t = client.get(f"/api/v1/tickets/{ticket}", headers=h).json()["data"]
    assert t["assignee_id"] == "usr_tech"
    # the reference still resolves, and a write that keeps it is still accepted
    assert (
        client.patch(
            f"/api/v1/tickets/{ticket}", json={"subject": "Still here"}, headers=h
        ).status_code
        == 200
    )
    # the deactivated user's keys fail with the documented code
    r = client.get("/api/v1/auth/me", headers=_as(TECH, ws))
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_DISABLED"
    # deleting again is a conflict, not a second deactivation
    r = client.delete("/api/v1/users/usr_tech", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"


def test_deleting_a_referenced_record_is_refused_and_changes_nothing(
    client: TestClient, ws: str
) -> None:
    h = _as(OWNER, ws)
    contact = client.get("/api/v1/tickets?per_page=1", headers=h).json()["data"]["items"][0]
    r = client.delete(f"/api/v1/contacts/{contact['contact_id']}", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "IN_USE", r.text
    assert r.json()["error"]["details"][0]["field"] == "id"
    assert client.get(f"/api/v1/contacts/{contact['contact_id']}", headers=h).status_code == 200
    site_agents = client.get("/api/v1/agents?per_page=100", headers=h).json()["data"]["items"]
    site = next(a["site_id"] for a in site_agents if a.get("site_id"))
    r = client.delete(f"/api/v1/sites/{site}", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "IN_USE"


def test_deleting_a_ticket_takes_its_comments_but_not_its_logged_time(
    client: TestClient, ws: str
) -> None:
    h = _as(OWNER, ws)
    ticket = client.post(
        "/api/v1/tickets", json={"subject": "Short-lived", "client_id": "cli_acme"}, headers=h
    ).json()["data"]["id"]
    r = client.post(f"/api/v1/tickets/{ticket}/comments", json={"body": "note"}, headers=h)
    assert r.status_code == 201, r.text
    assert client.delete(f"/api/v1/tickets/{ticket}", headers=h).status_code == 200
    comments = client.get(f"/api/v1/tickets/{ticket}/comments", headers=h)
    assert comments.status_code == 404  # the ticket and its comments went together
    logged = client.get("/api/v1/time-entries?per_page=1", headers=h).json()["data"]["items"][0]
    r = client.delete(f"/api/v1/tickets/{logged['ticket_id']}", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "IN_USE"


def test_deleting_an_agent_takes_its_checks_and_alerts(client: TestClient, ws: str) -> None:
    h = _as(OWNER, ws)
    alerts = client.get("/api/v1/alerts?per_page=100", headers=h).json()["data"]["items"]
    runs = client.get("/api/v1/script-runs?per_page=100", headers=h).json()["data"]["items"]
    busy = {a for run in runs for a in run["agent_ids"]}
    alert = next(a for a in alerts if a["agent_id"] and a["agent_id"] not in busy)
    agent = alert["agent_id"]
    r = client.delete(f"/api/v1/agents/{agent}", headers=h)
    if r.status_code == 409:  # referenced from outside the cascade: then nothing went
        assert client.get(f"/api/v1/alerts/{alert['id']}", headers=h).status_code == 200
        pytest.skip(f"agent {agent} is referenced: {r.json()['error']['message']}")
    assert r.status_code == 200, r.text
    assert client.get(f"/api/v1/alerts/{alert['id']}", headers=h).status_code == 404
    checks = client.get(f"/api/v1/checks?agent_id={agent}", headers=h).json()["data"]
    assert checks["total"] == 0


def test_nobody_can_demote_every_owner_by_changing_the_owner_role(
    client: TestClient, ws: str
) -> None:
    for key in (ADMIN, OWNER):
        r = client.patch(
            "/api/v1/roles/rol_owner", json={"permissions": ["*:read"]}, headers=_as(key, ws)
        )
        assert "demote" in _refused(r), key[:12]
    role = client.get("/api/v1/roles/rol_owner", headers=_as(OWNER, ws)).json()["data"]
    assert role["permissions"] == ["*:read", "*:write", "*:execute"]
    # the Owner still does everything
    r = client.post("/api/v1/tickets", headers=_as(OWNER, ws),
                    json={"subject": "still the owner", "client_id": "cli_acme"})  # fmt: skip
    assert r.status_code == 201, r.text


def test_only_an_owner_changes_what_admins_may_do(client: TestClient, ws: str) -> None:
    narrowed = {"permissions": ["*:read"]}
    r = client.patch("/api/v1/roles/rol_admin", json=narrowed, headers=_as(ADMIN, ws))
    assert "Owner" in _refused(r)
    r = client.patch("/api/v1/roles/rol_admin", json={"name": "Admins"}, headers=_as(ADMIN, ws))
    _refused(r)
    admin = client.get("/api/v1/roles/rol_admin", headers=_as(OWNER, ws)).json()["data"]
    assert admin["permissions"] == ["*:read", "*:write", "*:execute"] and admin["name"] == "Admin"
    # other roles stay the Admin's to change
    r = client.patch("/api/v1/roles/rol_billing", json={"name": "Billing"}, headers=_as(ADMIN, ws))
    assert r.status_code == 200, r.text
    r = client.patch("/api/v1/roles/rol_admin", json=narrowed, headers=_as(OWNER, ws))
    assert r.status_code == 200 and r.json()["data"]["permissions"] == ["*:read"]

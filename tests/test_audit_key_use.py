"""A key's use is in the audit log, as the help pages say ("created, used and revoked"): once per
key and hour in each workspace, on its clock, by the key's owner under the key's name, written
by the first request of the hour answered without an error; never the key itself."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import TestClient

from tests.conftest import ADMIN, key_named

TECH = "om_sbx_tech_full_plQxDn0C3kWtpyClB4sktSRnGS"
OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
READER = "om_sbx_admin_full_F9s8eWf3sPYJWznUGDwLrTK3jF"  # reads the log: a use of its own


def _h(key: str, ws: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-Sandbox-Workspace": ws, "User-Agent": "ci/2.0"}


def _ws() -> str:
    return f"use-{uuid.uuid4().hex[:10]}"


def _uses(client: TestClient, ws: str, key_id: str) -> list[dict[str, Any]]:
    """The workspace's entries of that key's use made after the seed (the seeded ones are
    older than the sandbox's clock by then), read with a third key."""
    r = client.get(
        f"/api/v1/audit-log?action=api_key.used&object_id={key_id}&per_page=100",
        headers=_h(READER, ws),
    )
    assert r.status_code == 200, r.text
    return [e for e in r.json()["data"]["items"] if e["created_at"] >= "2026-11-02"]


def _advance(client: TestClient, ws: str, seconds: int) -> None:
    r = client.post(
        "/_sandbox/clock",
        json={"advance_seconds": seconds},
        headers={**ADMIN, "X-Sandbox-Workspace": ws},
    )
    assert r.status_code == 200, r.text


def test_the_first_request_of_the_hour_logs_the_keys_use_once(client: TestClient) -> None:
    ws = _ws()
    for _ in range(3):
        assert client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws)).status_code == 200
    made = client.post(
        "/api/v1/tickets",
        json={"subject": "Key use", "client_id": "cli_acme"},
        headers=_h(TECH, ws),
    )
    assert made.status_code == 201, made.text
    (entry,) = _uses(client, ws, "key_techfull")
    assert {k: entry[k] for k in ("actor_id", "action", "object_type", "api_key_name")} == {
        "actor_id": "usr_tech",
        "action": "api_key.used",
        "object_type": "api_key",
        "api_key_name": "Technician - full access",
    }
    assert entry["user_agent"] == "ci/2.0" and entry["diff"] == {}
    assert TECH not in str(entry) and TECH[:16] not in str(entry)


def test_each_key_and_each_hour_of_the_workspaces_clock_gets_its_own(client: TestClient) -> None:
    ws = _ws()
    client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws))
    client.get("/api/v1/clients?per_page=1", headers=_h(OWNER, ws))  # the owner's key: its own
    _advance(client, ws, 3600)
    client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws))
    tech = _uses(client, ws, "key_techfull")
    assert len(tech) == 2 and tech[0]["created_at"] > tech[1]["created_at"]
    assert len(_uses(client, ws, "key_ownerfull")) == 1
    other = _ws()  # another workspace has a log of its own
    client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, other))
    assert len(_uses(client, other, "key_techfull")) == 1


def test_a_read_answered_not_found_is_still_a_use_of_the_key(client: TestClient) -> None:
    ws = _ws()
    missing = client.get("/api/v1/tickets/tkt_nope", headers=_h(TECH, ws))
    assert missing.status_code == 404
    assert len(_uses(client, ws, "key_techfull")) == 1


def test_a_refused_write_logs_nothing_and_the_next_request_does(client: TestClient) -> None:
    ws = _ws()
    refused = client.post("/api/v1/tickets", json={"subject": ""}, headers=_h(TECH, ws))
    assert refused.status_code in (400, 422), refused.text
    assert _uses(client, ws, "key_techfull") == []
    assert client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws)).status_code == 200
    assert len(_uses(client, ws, "key_techfull")) == 1


def test_a_request_refused_before_its_handler_logs_nothing(client: TestClient) -> None:
    ws = _ws()
    narrow = key_named(client.app, "Owner - agents read only")
    r = client.get("/api/v1/tickets?per_page=1", headers=_h(narrow, ws))
    assert r.status_code == 403, r.text
    assert _uses(client, ws, "key_agentsread") == []


def test_a_read_of_the_log_that_logs_the_use_shows_it_so_its_pages_do_not_shift(
    client: TestClient,
) -> None:
    ws = _ws()
    ids: list[str] = []
    for page in (1, 2, 3):
        r = client.get(f"/api/v1/audit-log?per_page=50&page={page}", headers=_h(TECH, ws))
        assert r.status_code == 200, r.text
        ids += [e["id"] for e in r.json()["data"]["items"]]
    assert len(ids) == len(set(ids)) == 150
    assert r.json()["data"]["items"] and ids[0] == _uses(client, ws, "key_techfull")[0]["id"]


def test_a_reset_workspace_logs_the_next_use_again(client: TestClient) -> None:
    ws = _ws()
    client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws))
    assert len(_uses(client, ws, "key_techfull")) == 1
    reset = client.post(f"/_sandbox/workspaces/{ws}/reset", headers=ADMIN)
    assert reset.status_code == 200, reset.text
    assert _uses(client, ws, "key_techfull") == []
    client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws))
    assert len(_uses(client, ws, "key_techfull")) == 1


def test_the_logged_uses_keep_the_logs_invariants(client: TestClient) -> None:
    ws = _ws()
    client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws))
    client.get("/api/v1/tickets?per_page=1", headers=_h(OWNER, ws))
    judged = client.get(f"/_sandbox/workspaces/{ws}/invariants", headers=ADMIN)
    assert judged.status_code == 200, judged.text
    assert judged.json()["data"]["violations"] == []
    assert judged.json()["data"]["judged"].get("audit_log", 0) >= 2


def _key_record(client: TestClient, ws: str, key_id: str) -> dict[str, Any]:
    """The workspace's record of the key (the key list is for signed-in sessions only, so it
    is read where it is kept)."""
    record = client.app.state.sandbox.workspaces.get(ws).get("api_keys", key_id)
    assert record is not None
    return dict(record)


def test_the_keys_last_use_is_the_logs_latest_use_of_it(client: TestClient) -> None:
    ws = _ws()
    seeded = _key_record(client, ws, "key_techfull")
    assert client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws)).status_code == 200
    (first,) = _uses(client, ws, "key_techfull")
    used = _key_record(client, ws, "key_techfull")
    assert used["last_used_at"] == first["created_at"] > seeded["last_used_at"]
    assert used["updated_at"] == seeded["updated_at"]  # a use is no change to the key
    client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws))  # the same hour: no entry
    assert _key_record(client, ws, "key_techfull")["last_used_at"] == first["created_at"]
    _advance(client, ws, 3600)
    made = client.post(
        "/api/v1/tickets", json={"subject": "Used", "client_id": "cli_acme"}, headers=_h(TECH, ws)
    )
    assert made.status_code == 201, made.text
    latest = _uses(client, ws, "key_techfull")[0]
    assert latest["created_at"] > first["created_at"]
    assert _key_record(client, ws, "key_techfull")["last_used_at"] == latest["created_at"]


def test_a_keys_last_use_moving_on_is_not_logged_as_a_change_to_the_key(
    client: TestClient,
) -> None:
    ws = _ws()
    client.get("/api/v1/tickets?per_page=1", headers=_h(TECH, ws))  # a read logs the use
    client.post(
        "/api/v1/tickets", json={"subject": "Used", "client_id": "cli_acme"}, headers=_h(OWNER, ws)
    )  # a write logs the use with its own changes
    r = client.get(
        "/api/v1/audit-log?object_type=api_key&per_page=100", headers=_h(READER, ws)
    )
    assert r.status_code == 200, r.text
    fresh = [e for e in r.json()["data"]["items"] if e["created_at"] >= "2026-11-02"]
    assert {e["action"] for e in fresh} == {"api_key.used"}, fresh
    assert {e["object_id"] for e in fresh} == {"key_techfull", "key_ownerfull", "key_adminfull"}

"""The other side of `x-refuse-while` and `x-on-enter`: while a client is archived (none of its
tickets open, its checks switched off, its contacts without portal access), none of its records
takes that state up again. A ticket is not opened again, a check not switched back on, a contact
not given portal access, and an open ticket does not move to it: each is refused with a 400
naming the field, and nothing changes. For a client still served the same changes go through."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.conftest import bearer, every_record, key_named

API = "/api/v1"


def _h(client: TestClient) -> dict[str, str]:
    return {**bearer(key_named(client.app, "Owner - full")), **client.headers}


def _archived(client: TestClient, h: dict[str, str]) -> str:
    return next(c["id"] for c in every_record(client, f"{API}/clients", h)
                if c["status"] == "archived")


def _refused(client: TestClient, path: str, h: dict[str, str], body: dict[str, Any],
             field: str) -> None:
    before = client.get(path, headers=h).json()["data"]
    r = client.patch(path, headers=h, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == field
    assert "archived" in error["message"]
    assert client.get(path, headers=h).json()["data"] == before  # nothing changed


def test_a_ticket_of_an_archived_client_is_not_opened_again(fresh_client: TestClient) -> None:
    h = _h(fresh_client)
    left = _archived(fresh_client, h)
    ticket = every_record(fresh_client, f"{API}/tickets", h, client_id=left)[0]
    _refused(fresh_client, f"{API}/tickets/{ticket['id']}", h, {"status": "Open"}, "status")


def test_a_check_of_an_archived_client_is_not_switched_back_on(fresh_client: TestClient) -> None:
    h = _h(fresh_client)
    left = _archived(fresh_client, h)
    check = next(c for c in every_record(fresh_client, f"{API}/checks", h)
                 if c["client_id"] == left)
    assert check["enabled"] is False
    _refused(fresh_client, f"{API}/checks/{check['id']}", h, {"enabled": True}, "enabled")


def test_a_contact_of_an_archived_client_gets_no_portal_access(fresh_client: TestClient) -> None:
    h = _h(fresh_client)
    left = _archived(fresh_client, h)
    contact = next(c for c in every_record(fresh_client, f"{API}/contacts", h)
                   if c["client_id"] == left)
    _refused(fresh_client, f"{API}/contacts/{contact['id']}", h, {"portal_user": True},
             "portal_user")


def test_an_open_ticket_does_not_move_to_an_archived_client(fresh_client: TestClient) -> None:
    h = _h(fresh_client)
    left = _archived(fresh_client, h)
    r = fresh_client.post(f"{API}/tickets", headers=h,
                          json={"subject": "Laptop will not boot", "client_id": "cli_acme"})
    assert r.status_code == 201, r.text
    _refused(fresh_client, f"{API}/tickets/{r.json()['data']['id']}", h, {"client_id": left},
             "client_id")


def test_the_same_changes_go_through_for_a_client_still_served(fresh_client: TestClient) -> None:
    h = _h(fresh_client)
    closed = next(t for t in every_record(fresh_client, f"{API}/tickets", h, client_id="cli_acme")
                  if t["status"] == "Closed")
    r = fresh_client.patch(f"{API}/tickets/{closed['id']}", headers=h, json={"status": "Open"})
    assert r.status_code == 200, r.text
    served = {c["id"] for c in every_record(fresh_client, f"{API}/clients", h)
              if c["status"] != "archived"}
    check = next(c for c in every_record(fresh_client, f"{API}/checks", h)
                 if c["client_id"] in served)
    r = fresh_client.patch(f"{API}/checks/{check['id']}", headers=h,
                           json={"enabled": not check["enabled"]})
    assert r.status_code == 200, r.text


def test_nothing_names_an_archived_client_anew(fresh_client: TestClient) -> None:
    """`x-closed` holds on every write: neither a create nor a moved reference names a client
    that has left."""
    h = _h(fresh_client)
    left = _archived(fresh_client, h)
    sites = every_record(fresh_client, f"{API}/sites", h)
    before = len(sites)
    r = fresh_client.post(f"{API}/sites", headers=h,
                          json={"client_id": left, "name": "Leeds office"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["field"] == "client_id"
    assert "archived" in r.json()["error"]["message"] or "closed" in r.json()["error"]["message"]
    assert len(every_record(fresh_client, f"{API}/sites", h)) == before
    site = next(s for s in sites if s["client_id"] == "cli_acme")
    path = f"{API}/sites/{site['id']}"
    r = fresh_client.patch(path, headers=h, json={"client_id": left})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["field"] == "client_id"
    assert fresh_client.get(path, headers=h).json()["data"] == site


def test_a_check_is_not_added_to_an_agent_of_an_archived_client(fresh_client: TestClient) -> None:
    """The check's client is copied from its agent: a check made there would name the client
    that has left anew."""
    h = _h(fresh_client)
    left = _archived(fresh_client, h)
    agent = next(a for a in every_record(fresh_client, f"{API}/agents", h)
                 if a["client_id"] == left)
    before = len(every_record(fresh_client, f"{API}/checks", h, agent_id=agent["id"]))
    r = fresh_client.post(f"{API}/checks", headers=h,
                          json={"agent_id": agent["id"], "name": "CPU load", "check_type": "cpu"})
    assert r.status_code == 400, r.text
    detail = r.json()["error"]["details"][0]
    assert (detail["location"], detail["field"]) == ("body", "client_id")
    assert len(every_record(fresh_client, f"{API}/checks", h, agent_id=agent["id"])) == before

"""Every write through the API leaves an audit entry: who (user and key name, never the key),
what (object type and id, the operation's action), and a before/after diff of what changed."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import TestClient

from tests.conftest import bearer, key_named

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
TECH = "om_sbx_tech_full_plQxDn0C3kWtpyClB4sktSRnGS"


def _h(key: str, ws: str) -> dict[str, str]:
    return {**bearer(key), "X-Sandbox-Workspace": ws, "User-Agent": "audit-test/1.0"}


def _ticket(client: TestClient, headers: dict[str, str], subject: str) -> dict[str, Any]:
    """A ticket created through the API, as its answer shows it."""
    r = client.post(
        "/api/v1/tickets", json={"subject": subject, "client_id": "cli_acme"}, headers=headers
    )
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()["data"]
    return ticket


def _entries(client: TestClient, ws: str, query: str = "") -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/audit-log?per_page=100{query}", headers=_h(OWNER, ws))
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["items"])


def test_create_update_action_and_delete_each_leave_an_entry(client: TestClient) -> None:
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    h = _h(TECH, ws)
    ticket = _ticket(client, h, "Audit me")
    r = client.patch(f"/api/v1/tickets/{ticket['id']}", json={"priority": "High"}, headers=h)
    assert r.status_code == 200, r.text
    comment = client.post(
        f"/api/v1/tickets/{ticket['id']}/comments", json={"body": "hi"}, headers=h
    )
    assert comment.status_code == 201, comment.text
    assert client.delete(f"/api/v1/tickets/{ticket['id']}", headers=h).status_code == 200

    mine = _entries(client, ws, f"&object_id={ticket['id']}")
    actions = [e["action"] for e in mine]
    assert actions == ["ticket.deleted", "ticket.modified", "ticket.created"], (
        actions
    )  # newest first
    deleted, modified, made = mine
    for e in mine:
        assert e["actor_id"] == "usr_tech" and e["object_type"] == "ticket"
        assert e["api_key_name"] == "Technician - full access"
        assert e["user_agent"] == "audit-test/1.0"
        assert TECH not in str(e) and TECH[:16] not in str(e)
    assert modified["diff"] == {"priority": [ticket["priority"], "High"]}
    assert made["diff"]["subject"] == [None, "Audit me"]
    assert deleted["diff"]["subject"] == ["Audit me", None]
    # the cascaded comment has an entry of its own
    gone = _entries(client, ws, f"&object_id={comment.json()['data']['id']}")
    assert [e["action"] for e in gone] == ["ticket_comment.deleted", "ticket_comment.created"]


def test_an_action_records_its_own_verb(client: TestClient) -> None:
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    h = _h(OWNER, ws)
    # an unpaid invoice: Open until its due date, Overdue after it (on the clock as it reads)
    unpaid = [
        i
        for status in ("Open", "Overdue")
        for i in client.get(f"/api/v1/invoices?status={status}", headers=h).json()["data"]["items"]
    ]
    invoice = unpaid[0]
    r = client.post(f"/api/v1/invoices/{invoice['id']}/void", headers=h)
    assert r.status_code == 200, r.text
    [entry] = _entries(client, ws, f"&object_id={invoice['id']}&action=invoice.voided")
    assert entry["diff"]["status"] == [invoice["status"], "Voided"]
    assert entry["api_key_name"] == "Owner - full access" and entry["actor_id"] == "usr_owner"


def test_a_refused_write_leaves_no_entry(client: TestClient) -> None:
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    before = len(_entries(client, ws, "&actor_id=usr_tech"))
    r = client.post(
        "/api/v1/tickets", json={"subject": "x", "client_id": "cli_nope"}, headers=_h(TECH, ws)
    )
    assert r.status_code == 422
    r = client.delete("/api/v1/users/usr_owner", headers=_h(OWNER, ws))
    assert r.status_code == 403
    assert len(_entries(client, ws, "&actor_id=usr_tech")) == before
    assert not [e for e in _entries(client, ws) if e["object_id"] == "usr_owner"]


def test_reads_leave_no_entry_and_entries_cannot_be_written(client: TestClient) -> None:
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    first = client.get("/api/v1/audit-log?per_page=1", headers=_h(OWNER, ws)).json()["data"]
    client.get("/api/v1/tickets", headers=_h(OWNER, ws))
    again = client.get("/api/v1/audit-log?per_page=1", headers=_h(OWNER, ws)).json()["data"]
    assert again["total"] == first["total"]
    r = client.delete(f"/api/v1/audit-log/{first['items'][0]['id']}", headers=_h(OWNER, ws))
    assert r.status_code == 405


def test_a_key_from_another_workspace_sees_none_of_it(client: TestClient) -> None:
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    r = client.post(
        "/api/v1/tickets",
        json={"subject": "Private", "client_id": "cli_acme"},
        headers=_h(OWNER, ws),
    )
    rid = r.json()["data"]["id"]
    other = f"audit-{uuid.uuid4().hex[:8]}"
    assert _entries(client, other, f"&object_id={rid}") == []
    assert key_named(client.app, "Owner - full") == OWNER


def test_the_log_filters_by_object_type_address_and_date_range(client: TestClient) -> None:
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    everything = _entries(client, ws)
    newest = everything[0]["created_at"]
    oldest = everything[-1]["created_at"]
    window = _entries(client, ws, f"&created_after={oldest}&created_before={newest}")
    assert len(window) == len(everything)
    later = _entries(client, ws, f"&created_after={newest}")
    assert later and all(e["created_at"] >= newest for e in later)
    assert len(later) < len(everything)
    earlier = _entries(client, ws, f"&created_before={oldest}")
    assert all(e["created_at"] <= oldest for e in earlier)
    tickets = _entries(client, ws, "&object_type=ticket")
    assert tickets and {e["object_type"] for e in tickets} == {"ticket"}
    address = everything[0]["ip_address"]
    assert {e["ip_address"] for e in _entries(client, ws, f"&ip_address={address}")} == {address}
    r = client.get("/api/v1/audit-log?created_after=yesterday", headers=_h(OWNER, ws))
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "created_after"


def test_seeded_entries_name_an_object_of_their_type_that_exists(client: TestClient) -> None:
    state = client.app.state.sandbox
    ws = state.workspaces.get()
    types = {"user": "users", "ticket": "tickets", "client": "clients", "invoice": "invoices"}
    seen = 0
    for entry in state.bases["audit_log"].records:
        collection = types.get(entry["object_type"])
        if collection is None:
            continue
        assert entry["object_id"] is not None, entry
        assert ws.get(collection, entry["object_id"]) is not None, entry
        seen += 1
    assert seen > 100


def test_a_creates_entry_holds_each_field_it_set_never_bookkeeping_or_a_secret(
    client: TestClient,
) -> None:
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    h = _h(OWNER, ws)
    r = client.post(
        "/api/v1/ticket-rules",
        json={
            "name": "audited rule",
            "trigger": "ticket.created",
            "actions": [{"type": "assign_to_user", "user_id": "usr_tech"}],
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    rule = r.json()["data"]
    assert rule["signing_secret"]
    (made,) = _entries(client, ws, f"&object_id={rule['id']}")
    set_fields = {
        name
        for name, value in rule.items()
        if value is not None and name not in ("created_at", "updated_at", "signing_secret")
    }
    assert set(made["diff"]) == set_fields
    assert all(old is None and rule[name] == new for name, (old, new) in made["diff"].items())
    assert rule["signing_secret"] not in str(made)


def test_a_number_taken_from_a_counter_is_logged_with_its_record_not_as_a_settings_change(
    client: TestClient,
) -> None:
    """A create that takes its number from a settings counter moves the counter on; that is the
    created record's bookkeeping (its entry holds the number), not a change anyone made to the
    settings, so it leaves no settings entry. Changing the counter itself is logged, as a
    settings change, the way the seeded entries name one."""
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    h = _h(OWNER, ws)
    seeded = _entries(client, ws, "&object_type=settings")
    assert seeded and {e["action"] for e in seeded} == {"settings.changed"}
    ticket = _ticket(client, h, "Numbered")
    (made,) = _entries(client, ws, f"&object_id={ticket['id']}")
    assert made["action"] == "ticket.created"
    assert made["diff"]["number"] == [None, ticket["number"]]
    numbering = client.get("/api/v1/settings/ticket-numbering", headers=h).json()["data"]
    assert numbering["next_number"] == ticket["number"] + 1  # the counter did move on
    assert _entries(client, ws, "&object_type=settings") == seeded

    r = client.patch(
        "/api/v1/settings/ticket-numbering",
        json={"next_number": ticket["number"] + 100},
        headers=h,
    )
    assert r.status_code == 200, r.text
    changed, *rest = _entries(client, ws, "&object_type=settings")
    assert rest == seeded
    assert (changed["action"], changed["object_type"]) == ("settings.changed", "settings")
    assert changed["object_id"] == numbering["id"]
    assert changed["diff"] == {"next_number": [ticket["number"] + 1, ticket["number"] + 100]}


def test_a_status_change_an_assignment_and_a_role_change_are_logged_under_their_own_verbs(
    client: TestClient,
) -> None:
    """The seeded log names a ticket's status change, its assignment and a user's role change
    by their own actions, each with the one field in its diff; a write through the API that makes
    the same change is logged the same way, and what else it changes in a `modified` entry."""
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    h = _h(OWNER, ws)
    for action in ("ticket.status_changed", "ticket.assigned", "user.role_changed"):
        assert _entries(client, ws, f"&action={action}"), f"no seeded {action} entry"
    ticket = _ticket(client, h, "Verbs")

    r = client.patch(f"/api/v1/tickets/{ticket['id']}", json={"status": "Open"}, headers=h)
    assert r.status_code == 200, r.text
    (changed, _made) = _entries(client, ws, f"&object_id={ticket['id']}")
    assert changed["action"] == "ticket.status_changed"
    assert changed["diff"] == {"status": [ticket["status"], "Open"]}
    listed = _entries(client, ws, "&action=ticket.status_changed")
    assert listed[0]["id"] == changed["id"] and len(listed) > 1  # beside the seeded ones

    r = client.patch(
        f"/api/v1/tickets/{ticket['id']}",
        json={"assignee_id": "usr_tech", "priority": "High"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    newest = _entries(client, ws, f"&object_id={ticket['id']}")[:2]
    by_action = {e["action"]: e["diff"] for e in newest}
    assert by_action == {
        "ticket.assigned": {"assignee_id": [ticket["assignee_id"], "usr_tech"]},
        "ticket.modified": {"priority": [ticket["priority"], "High"]},
    }

    user = client.get("/api/v1/users/usr_tech", headers=h).json()["data"]
    r = client.patch("/api/v1/users/usr_tech", json={"role_ids": ["rol_readonly"]}, headers=h)
    assert r.status_code == 200, r.text
    (entry, *_) = _entries(client, ws, "&object_id=usr_tech")
    assert entry["action"] == "user.role_changed"
    assert entry["diff"] == {"role_ids": [user["role_ids"], ["rol_readonly"]]}


def test_granting_a_contact_portal_access_is_logged_as_such_and_taking_it_away_is_a_change(
    client: TestClient,
) -> None:
    """The help pages list "portal access granted" among a contact's logged events: a write that
    sets the portal flag logs that action (what else it changes in a `modified` entry beside
    it); clearing the flag is an ordinary modification."""
    ws = f"audit-{uuid.uuid4().hex[:8]}"
    h = _h(OWNER, ws)
    listed = client.get("/api/v1/contacts?portal_user=false&per_page=1", headers=h)
    assert listed.status_code == 200, listed.text
    contact = listed.json()["data"]["items"][0]
    assert contact["portal_user"] is False

    r = client.patch(
        f"/api/v1/contacts/{contact['id']}",
        json={"portal_user": True, "job_title": "Office manager"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    newest = _entries(client, ws, f"&object_id={contact['id']}")[:2]
    assert {e["action"]: e["diff"] for e in newest} == {
        "contact.portal_access_granted": {"portal_user": [False, True]},
        "contact.modified": {"job_title": [contact["job_title"], "Office manager"]},
    }

    r = client.patch(f"/api/v1/contacts/{contact['id']}", json={"portal_user": False}, headers=h)
    assert r.status_code == 200, r.text
    (taken, *_) = _entries(client, ws, f"&object_id={contact['id']}")
    assert taken["action"] == "contact.modified"
    assert taken["diff"] == {"portal_user": [True, False]}

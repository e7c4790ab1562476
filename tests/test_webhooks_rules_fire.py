"""Ticket rules fire on API writes and post signed webhooks to a real receiver on loopback.

One sandbox served by uvicorn on 127.0.0.1 and one receiver (the plugin's own) for the module;
each test works in a workspace of its own, so rules of one test never fire in another.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opsmerge_contracts.sandboxes import Sandbox
from opsmerge_contracts.webhook_receiver import WebhookReceiver
from opsmerge_sandbox.events.signing import signature, verify
from opsmerge_sandbox.settings import Settings
from tests.conftest import ADMIN_TOKEN


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def _rule(api: httpx.Client, receiver: WebhookReceiver, **fields: Any) -> dict[str, Any]:
    body = {"name": "test rule", "actions": [{"type": "send_webhook", "url": receiver.url}]}
    body.update(fields)
    r = api.post("/ticket-rules", json=body)
    assert r.status_code == 201, r.text
    rule = r.json()["data"]
    receiver.trust(rule["id"], rule["signing_secret"])
    return rule


def _ticket(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"subject": "Printer offline", "client_id": "cli_acme", **fields}
    r = api.post("/tickets", json=body)
    assert r.status_code == 201, r.text
    return r.json()["data"]


def test_a_rule_fires_on_create_with_a_signed_payload_the_spec_describes(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = _rule(api, receiver, trigger="ticket.created")
    ticket = _ticket(api, priority="High")
    (got,) = receiver.wait_for(rule_id=rule["id"])
    assert got.verified is True
    assert got.problems == ()
    payload = got.json
    assert payload["type"] == "ticket.created" == got.event_type
    assert payload["data"]["object"]["id"] == ticket["id"]
    assert payload["delivery_id"] == got.delivery_id and got.attempt == 1
    firings = api.get(f"/ticket-rules/{rule['id']}/firings").json()["data"]["items"]
    assert [f["subject_id"] for f in firings] == [ticket["id"]]
    assert firings[0]["actions"][0]["outcome"] == "queued"


def test_the_signing_secret_is_shown_only_in_the_create_answer(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = _rule(api, receiver, trigger="ticket.created")
    assert rule["signing_secret"].startswith("whsec_")
    assert "signing_secret" not in api.get(f"/ticket-rules/{rule['id']}").json()["data"]
    listed = api.get("/ticket-rules").json()["data"]["items"]
    assert listed and all("signing_secret" not in r for r in listed)
    patched = api.patch(f"/ticket-rules/{rule['id']}", json={"name": "renamed"}).json()["data"]
    assert "signing_secret" not in patched


def test_a_rule_fires_on_a_matching_update_and_not_on_another(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    conditions = {
        "match": "all",
        "conditions": [{"field": "priority", "operator": "=", "value": "Critical"}],
    }
    rule = _rule(api, receiver, trigger="ticket.updated", conditions=conditions)
    ticket = _ticket(api, priority="Low")
    api.patch(f"/tickets/{ticket['id']}", json={"subject": "still low"}).raise_for_status()
    api.patch(f"/tickets/{ticket['id']}", json={"priority": "Critical"}).raise_for_status()
    (got,) = receiver.wait_for(rule_id=rule["id"])
    assert got.json["data"]["object"]["priority"] == "Critical"
    assert got.json["data"]["previous"]["priority"] == "Low"
    receiver.expect_none(rule_id=rule["id"], within=0.3)
    firings = api.get(f"/ticket-rules/{rule['id']}/firings").json()["data"]
    assert firings["total"] == 1


def test_changed_conditions_need_the_field_to_change_and_can_name_the_new_value(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    changed = {"match": "all", "conditions": [{"field": "status", "operator": "changed"}]}
    to_resolved = {
        "match": "all",
        "conditions": [{"field": "status", "operator": "changed", "value": "Resolved"}],
    }
    any_change = _rule(api, receiver, trigger="ticket.updated", conditions=changed)
    resolved = _rule(api, receiver, trigger="ticket.updated", conditions=to_resolved)
    ticket = _ticket(api, status="New")
    path = f"/tickets/{ticket['id']}"
    api.patch(path, json={"status": "New", "subject": "same status"}).raise_for_status()
    api.patch(path, json={"status": "Open"}).raise_for_status()
    api.patch(path, json={"status": "Resolved", "resolution": "fixed"}).raise_for_status()
    first, second = receiver.wait_for(rule_id=any_change["id"], count=2)
    assert [first.json["data"]["object"]["status"], second.json["data"]["object"]["status"]] == [
        "Open",
        "Resolved",
    ]
    (only,) = receiver.wait_for(rule_id=resolved["id"])
    assert only.json["data"]["object"]["status"] == "Resolved"
    receiver.expect_none(rule_id=resolved["id"], within=0.2)


def test_actions_apply_in_order_and_are_audited(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = _rule(
        api,
        receiver,
        trigger="ticket.created",
        actions=[
            {"type": "set_priority", "value": "Critical"},
            {"type": "assign_to_user", "user_id": "usr_owner"},
            {"type": "send_webhook", "url": receiver.url},
        ],
    )
    ticket = _ticket(api, priority="Low")
    (got,) = receiver.wait_for(rule_id=rule["id"])
    sent = got.json["data"]["object"]
    assert (sent["priority"], sent["assignee_id"]) == ("Critical", "usr_owner")
    now = api.get(f"/tickets/{ticket['id']}").json()["data"]
    assert (now["priority"], now["assignee_id"]) == ("Critical", "usr_owner")
    entries = api.get("/audit-log", params={"object_id": ticket["id"], "per_page": 100})
    made = [
        e
        for e in entries.json()["data"]["items"]
        if e["api_key_name"] == f"ticket_rule {rule['id']}"
    ]
    assert sorted(tuple(e["diff"]) for e in made) == [("assignee_id",), ("priority",)]


def test_a_comment_fires_commented_with_the_ticket_and_the_comment(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = _rule(api, receiver, trigger="ticket.commented")
    ticket = _ticket(api)
    r = api.post(f"/tickets/{ticket['id']}/comments", json={"body": "Any news?"})
    assert r.status_code == 201
    (got,) = receiver.wait_for(rule_id=rule["id"])
    assert got.problems == ()
    assert got.json["data"]["object"]["id"] == ticket["id"]
    assert got.json["data"]["comment"]["body"] == "Any news?"


def test_a_comment_moves_its_tickets_updated_at_without_firing_updated(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    updated = _rule(api, receiver, trigger="ticket.updated")
    commented = _rule(api, receiver, trigger="ticket.commented")
    ticket = api.get("/tickets", params={"status": "Open"}).json()["data"]["items"][0]
    r = api.post(f"/tickets/{ticket['id']}/comments", json={"body": "On my way."})
    assert r.status_code == 201, r.text
    (got,) = receiver.wait_for(rule_id=commented["id"])
    now = api.get(f"/tickets/{ticket['id']}").json()["data"]
    assert now["updated_at"] == r.json()["data"]["created_at"] > ticket["updated_at"]
    assert {k: v for k, v in now.items() if k != "updated_at"} == {
        k: v for k, v in ticket.items() if k != "updated_at"
    }
    assert got.json["data"]["object"]["updated_at"] == now["updated_at"]
    receiver.expect_none(rule_id=updated["id"], within=0.3)
    api.patch(f"/tickets/{ticket['id']}", json={"subject": "Answered"}).raise_for_status()
    (changed,) = receiver.wait_for(rule_id=updated["id"])
    assert changed.json["data"]["object"]["subject"] == "Answered"


def test_a_refused_write_fires_nothing(api: httpx.Client, receiver: WebhookReceiver) -> None:
    rule = _rule(api, receiver, trigger="ticket.created")
    r = api.post("/tickets", json={"subject": "x", "client_id": "cli_nobody"})
    assert r.status_code == 422
    receiver.expect_none(rule_id=rule["id"], within=0.3)


def test_a_disabled_rule_does_not_fire_until_enabled(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = _rule(api, receiver, trigger="ticket.created", enabled=False)
    _ticket(api)
    receiver.expect_none(rule_id=rule["id"], within=0.3)
    assert api.post(f"/ticket-rules/{rule['id']}/enable").json()["data"]["enabled"] is True
    _ticket(api)
    receiver.wait_for(rule_id=rule["id"])
    api.post(f"/ticket-rules/{rule['id']}/disable").raise_for_status()
    _ticket(api)
    receiver.expect_none(rule_id=rule["id"], within=0.3)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "http://10.0.0.5/hook",
        "ftp://127.0.0.1/x",
        "http://127.0.0.1:99999/",
    ],
)
def test_a_url_the_sandbox_may_not_post_to_is_refused_naming_the_field(
    api: httpx.Client, url: str
) -> None:
    body = {
        "name": "bad",
        "trigger": "ticket.created",
        "actions": [
            {"type": "set_priority", "value": "High"},
            {"type": "send_webhook", "url": url},
        ],
    }
    before = api.get("/ticket-rules").json()["data"]["total"]
    r = api.post("/ticket-rules", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["field"] == "actions.1.url"
    assert api.get("/ticket-rules").json()["data"]["total"] == before


def test_an_action_value_the_subject_field_cannot_hold_is_refused(api: httpx.Client) -> None:
    body = {
        "name": "bad",
        "trigger": "ticket.created",
        "actions": [{"type": "set_status", "value": "Lost"}],
    }
    r = api.post("/ticket-rules", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["field"].startswith("actions.0")
    r = api.post(
        "/ticket-rules",
        json={**body, "actions": [{"type": "assign_to_user", "user_id": "usr_nobody"}]},
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "actions.0.user_id"
    r = api.post("/ticket-rules", json={**body, "actions": [{"type": "send_email", "to": ["a"]}]})
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["field"].startswith("actions.0")


def test_the_fixture_refuses_a_tampered_body(
    api: httpx.Client, opsmerge_webhook_receiver: WebhookReceiver
) -> None:
    receiver = opsmerge_webhook_receiver
    rule = _rule(api, receiver, trigger="ticket.created")
    _ticket(api)
    (got,) = receiver.wait_for(rule_id=rule["id"])
    secret = rule["signing_secret"]
    header = got.headers["x-opsmerge-signature"]
    assert verify(secret, header, got.body)
    assert not verify(secret, header, got.body.replace(b"Printer", b"Scanner"))
    assert not verify("whsec_other", header, got.body)
    stamp = int(header.split(",")[0][2:])
    assert header == signature(secret, stamp, got.body)
    # the same refusal through the receiver's own path: a forged post does not verify
    httpx.post(
        receiver.url,
        content=got.body.replace(b"Printer", b"Scanner"),
        headers={"x-opsmerge-signature": header, "x-opsmerge-event": "ticket.created"},
    )
    forged = receiver.wait_for(rule_id=rule["id"])[0]
    assert forged.verified is False


def test_send_email_writes_to_the_workspace_outbox(api: httpx.Client, box: Sandbox) -> None:
    body = {
        "name": "ack",
        "trigger": "ticket.created",
        "actions": [
            {
                "type": "send_email",
                "to": ["desk@example.com", "{{.contact_id}}"],
                "subject": "[{{.reference}}] received",
                "body": "We have your ticket: {{.subject}}",
            }
        ],
    }
    api.post("/ticket-rules", json=body).raise_for_status()
    ticket = _ticket(api, contact_id=None)
    workspace = api.headers["X-Sandbox-Workspace"]
    admin = {"X-Sandbox-Admin-Token": ADMIN_TOKEN}
    r = httpx.get(f"{box.root_url}/_sandbox/outbox", params={"workspace": workspace}, headers=admin)
    (mail,) = r.json()["data"]["items"]
    assert mail["to"] == ["desk@example.com"]
    assert mail["subject"] == f"[{ticket['reference']}] received"
    assert mail["body"] == "We have your ticket: Printer offline"
    assert (
        httpx.get(f"{box.root_url}/_sandbox/outbox", params={"workspace": workspace}).status_code
        == 401
    )


def test_the_contract_check_judges_received_payloads_against_the_spec_webhooks(
    api: httpx.Client,
) -> None:
    with WebhookReceiver() as receiver:
        rule = _rule(api, receiver, trigger="ticket.created")
        _ticket(api)
        (real,) = receiver.wait_for(rule_id=rule["id"])
        bad = real.json
        del bad["data"]["object"]["status"]
        httpx.post(
            receiver.url,
            json=bad,
            headers={"x-opsmerge-event": "ticket.created", "x-opsmerge-signature": "v1=nope"},
        )
        receiver.wait_for(rule_id=rule["id"])
        results = receiver.check()
    assert [r.status for r in results] == ["pass", "fail"]
    assert all(r.check == "webhook_payload" for r in results)
    assert "data.object.status" in results[1].message
    assert "x-opsmerge-signature" in results[1].message


def test_no_read_shows_a_seeded_rules_secret_even_from_pre_encoded_records() -> None:
    """Outside strict mode unchanged seeded records are served pre-encoded: the secret must be
    cut from those bytes too."""
    from litestar.testing import TestClient

    from opsmerge_sandbox.app import create_app
    from tests.conftest import key_named

    app = create_app(Settings(admin_token=ADMIN_TOKEN))  # not strict: seeded bytes are reused
    headers = {"Authorization": f"Bearer {key_named(app, 'Owner - full')}"}
    with TestClient(app) as c:
        one = c.get("/api/v1/ticket-rules/trl_escalate", headers=headers)
        page = c.get("/api/v1/ticket-rules", headers=headers)
    assert one.status_code == 200 and page.status_code == 200
    assert one.json()["data"]["id"] == "trl_escalate"
    assert "signing_secret" not in one.text and "whsec_" not in one.text
    assert page.json()["data"]["total"] >= 3 and "whsec_" not in page.text

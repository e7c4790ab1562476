"""SLA-warning, stale and customer-silence rules fire when the workspace's clock is advanced
past their time, once per ticket and time, and never for a ticket the condition rules out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from opsmerge_contracts.sandboxes import Sandbox
from opsmerge_contracts.webhook_receiver import WebhookReceiver
from tests.webhooks_support import advance, make_rule, make_ticket, only_subject

DAY = 86400


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def test_an_sla_warning_fires_when_the_clock_passes_80_percent_of_the_target(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = make_rule(
        api, receiver, trigger="ticket.sla_warning", conditions=only_subject("sla critical")
    )
    ticket = make_ticket(api, subject="sla critical", priority="Critical", status="New")
    advance(box, api, 2000)  # Critical: 1 h target, warned at 48 min
    receiver.expect_none(rule_id=rule["id"], within=0.2)
    advance(box, api, 1000)
    (got,) = receiver.wait_for(rule_id=rule["id"])
    assert got.problems == () and got.verified
    assert got.json["type"] == "ticket.sla_warning"
    assert got.json["data"]["object"]["id"] == ticket["id"]
    advance(box, api, DAY)  # once per ticket and due time
    receiver.expect_none(rule_id=rule["id"], within=0.2)
    firings = api.get(f"/ticket-rules/{rule['id']}/firings").json()["data"]["items"]
    assert [f["due_at"] is not None for f in firings] == [True]


def test_no_sla_warning_for_a_ticket_already_being_worked(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = make_rule(api, receiver, trigger="ticket.sla_warning", conditions=only_subject("worked"))
    make_ticket(api, subject="worked", priority="Critical", status="In Progress")
    advance(box, api, 2 * 3600)
    receiver.expect_none(rule_id=rule["id"], within=0.3)


def test_a_stale_rule_fires_after_its_days_and_again_after_the_next_idle_spell(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = make_rule(
        api, receiver, trigger="ticket.scheduled_stale", days=2, conditions=only_subject("idle")
    )
    ticket = make_ticket(api, subject="idle")
    advance(box, api, DAY)
    receiver.expect_none(rule_id=rule["id"], within=0.2)
    advance(box, api, DAY + 60)
    receiver.wait_for(rule_id=rule["id"])
    advance(box, api, DAY)
    receiver.expect_none(rule_id=rule["id"], within=0.2)
    api.patch(f"/tickets/{ticket['id']}", json={"status": "Open"}).raise_for_status()
    advance(box, api, 2 * DAY + 60)
    (again,) = receiver.wait_for(rule_id=rule["id"])
    assert again.json["data"]["object"]["status"] == "Open"


def test_customer_silence_fires_only_while_waiting_on_the_customer(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = make_rule(
        api,
        receiver,
        trigger="ticket.scheduled_customer_silence",
        days=1,
        conditions=only_subject("silent"),
    )
    waiting = make_ticket(api, subject="silent", status="Waiting on Customer")
    make_ticket(api, subject="silent", status="Open")
    advance(box, api, DAY + 60)
    got = receiver.wait_for(rule_id=rule["id"])
    assert [d.json["data"]["object"]["id"] for d in got] == [waiting["id"]]
    receiver.expect_none(rule_id=rule["id"], within=0.2)


def test_clock_events_fire_in_the_advanced_workspace_only(
    box: Sandbox, receiver: WebhookReceiver
) -> None:
    names = [f"clk-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    clients = [box.client(headers={"X-Sandbox-Workspace": n}, timeout=10) for n in names]
    rules = [
        make_rule(
            c, receiver, trigger="ticket.scheduled_stale", days=1, conditions=only_subject("ws")
        )
        for c in clients
    ]
    for c in clients:
        make_ticket(c, subject="ws")
    advance(box, clients[0], DAY + 60)
    receiver.wait_for(rule_id=rules[0]["id"])
    receiver.expect_none(rule_id=rules[1]["id"], within=0.3)
    for c in clients:
        c.close()

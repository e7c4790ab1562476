"""The integrator's view: the plugin's `opsmerge_sandbox` and `opsmerge_webhook_receiver`
fixtures together, exactly as docs/webhooks.md shows them."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.opsmerge_sandbox(loopback=True)
def test_my_receiver_sees_new_tickets(
    opsmerge_sandbox: Any, opsmerge_webhook_receiver: Any
) -> None:
    receiver = opsmerge_webhook_receiver
    api = opsmerge_sandbox.client()
    rule = api.post(
        "/ticket-rules",
        json={
            "name": "to my receiver",
            "trigger": "ticket.created",
            "actions": [{"type": "send_webhook", "url": receiver.url}],
        },
    ).json()["data"]
    receiver.trust(rule["id"], rule["signing_secret"])

    api.post("/tickets", json={"subject": "Printer offline", "client_id": "cli_acme"})

    (delivery,) = receiver.wait_for(rule_id=rule["id"], timeout=5)
    assert delivery.verified  # the signature holds for the raw body
    assert delivery.problems == ()  # the body is what the spec's webhooks say
    assert delivery.json["type"] == "ticket.created"
    assert all(r.status == "pass" for r in receiver.check())  # the webhook_payload check


def test_an_in_process_sandbox_delivers_too(
    opsmerge_sandbox: Any, opsmerge_webhook_receiver: Any
) -> None:
    """The in-process sandbox (no socket of its own) still posts to a real receiver."""
    receiver = opsmerge_webhook_receiver
    api = opsmerge_sandbox.client()
    rule = api.post(
        "/ticket-rules",
        json={
            "name": "in process",
            "trigger": "ticket.created",
            "actions": [{"type": "send_webhook", "url": receiver.url}],
        },
    ).json()["data"]
    receiver.trust(rule["id"], rule["signing_secret"])
    api.post("/tickets", json={"subject": "Printer offline", "client_id": "cli_acme"})
    (delivery,) = receiver.wait_for(rule_id=rule["id"], timeout=5)
    assert delivery.verified

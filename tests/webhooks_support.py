"""Helpers the webhook tests share: a served sandbox, rules and tickets in a workspace, the
delivery log, and the control API's clock and fault endpoints."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opsmerge_contracts.sandboxes import Sandbox, start_sandbox
from opsmerge_contracts.webhook_receiver import WebhookReceiver
from opsmerge_sandbox.settings import Settings
from tests.conftest import ADMIN_TOKEN, SMALL_RECIPE

ADMIN = {"X-Sandbox-Admin-Token": ADMIN_TOKEN}


def serve(**settings: Any) -> Sandbox:
    return start_sandbox(
        Settings(admin_token=ADMIN_TOKEN, recipe=str(SMALL_RECIPE), strict=True, **settings),
        loopback=True,
    )


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    """One strict sandbox on loopback per test module (a test file imports this fixture)."""
    sandbox = serve()
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture()
def api(box: Sandbox) -> Iterator[httpx.Client]:
    """The owner's client in a fresh workspace: each test's rules and clock are its own."""
    headers = {"X-Sandbox-Workspace": f"wh-{uuid.uuid4().hex[:10]}"}
    with box.client(headers=headers, timeout=10) as c:
        yield c


def make_rule(api: httpx.Client, receiver: WebhookReceiver | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "test rule"}
    if receiver is not None:
        body["actions"] = [{"type": "send_webhook", "url": receiver.url}]
    body.update(fields)
    r = api.post("/ticket-rules", json=body)
    assert r.status_code == 201, r.text
    rule: dict[str, Any] = r.json()["data"]
    if receiver is not None:
        receiver.trust(rule["id"], rule["signing_secret"])
    return rule


def make_ticket(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"subject": "Printer offline", "client_id": "cli_acme", **fields}
    r = api.post("/tickets", json=body)
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()["data"]
    return ticket


def only_subject(subject: str) -> dict[str, Any]:
    """Conditions that hold for the test's own tickets only (seeded ones never match)."""
    return {"match": "all", "conditions": [{"field": "subject", "operator": "=", "value": subject}]}


def deliveries(api: httpx.Client, rule_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/ticket-rules/{rule_id}/deliveries", params={"per_page": 100})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["data"]["items"]
    return sorted(items, key=lambda d: (d["attempted_at"], d["attempt"]))


def wait_logged(api: httpx.Client, rule_id: str, count: int, timeout: float = 5.0) -> list[Any]:
    """The delivery log once it holds `count` attempts (the receiver sees a post before the
    sandbox has logged it and scheduled the retry)."""
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(api, rule_id)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)  # gently: the key's rate budget is 300 requests a minute


def advance(box: Sandbox, api: httpx.Client, seconds: float) -> None:
    """Move the workspace's own clock forward; due retries and clock events run at once."""
    headers = {**ADMIN, "X-Sandbox-Workspace": api.headers["X-Sandbox-Workspace"]}
    r = httpx.post(
        f"{box.root_url}/_sandbox/clock", json={"advance_seconds": seconds}, headers=headers
    )
    assert r.status_code == 200, r.text


def add_fault(box: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{box.root_url}/_sandbox/faults", json=body, headers=ADMIN)
    assert r.status_code in (200, 201), r.text
    fault: dict[str, Any] = r.json()["data"]
    return fault

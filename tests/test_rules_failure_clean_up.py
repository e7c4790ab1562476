"""A rule whose action fails unexpectedly drops what the rules staged, and nothing else.

The rules of a committed write run after its commit. When one of their actions fails with an
unexpected error, the engine logs it and drops what the actions left staged; a transaction
that another writer has open on the same workspace is not theirs, and must stay as it is.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.settings import Settings
from tests.conftest import ADMIN_TOKEN, bearer

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
WORKSPACE = "rules-failure-clean-up"
HEADERS = {**bearer(OWNER), "X-Sandbox-Workspace": WORKSPACE}


def test_a_failing_rule_action_leaves_another_writers_open_transaction_in_place() -> None:
    asyncio.run(_failing_action_beside_an_open_write())


def test_a_rule_firing_is_never_staged_into_another_writers_open_transaction() -> None:
    asyncio.run(_firing_beside_an_open_write())


async def _post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], workspace: str = WORKSPACE
) -> dict[str, Any]:
    r = await client.post(path, json=body, headers={**HEADERS, "X-Sandbox-Workspace": workspace})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def _failing_action_beside_an_open_write() -> None:
    app = create_app(Settings(admin_token=ADMIN_TOKEN))
    state = app.state.sandbox
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        ticket = await _post(client, "/api/v1/tickets",
                             {"subject": "Printer offline", "client_id": "cli_acme"})
        await _post(client, "/api/v1/ticket-rules", {
            "name": "escalate", "trigger": "ticket.created",
            "actions": [{"type": "set_priority", "value": "Critical"}],
        })
    ws = state.workspaces.existing(WORKSPACE)
    assert ws is not None
    # another writer's transaction, open between its handler and its commit
    other = ws.begin()
    ws.write("tickets", {**ticket, "subject": "Staged by another writer"})
    # the rule's action cannot open its own transaction beside it: an unexpected error
    await state.events.after_commit(ws, [("tickets", ticket["id"], None, ticket)])
    assert ws.owns(other)
    assert [(c, rid, r["subject"]) for c, rid, r in ws.staged_changes() if r] == [
        ("tickets", ticket["id"], "Staged by another writer")
    ]


async def _firing_beside_an_open_write() -> None:
    app = create_app(Settings(admin_token=ADMIN_TOKEN))
    state = app.state.sandbox
    transport = httpx.ASGITransport(app=app)
    workspace = f"{WORKSPACE}-firing"
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        await _post(client, "/api/v1/ticket-rules", {
            "name": "tell the desk", "trigger": "ticket.created",
            "actions": [{"type": "send_email", "to": ["desk@example.com"],
                         "subject": "New ticket", "body": "A ticket came in"}],
        }, workspace)
        ticket = await _post(client, "/api/v1/tickets",
                             {"subject": "Printer offline", "client_id": "cli_acme"}, workspace)
    ws = state.workspaces.existing(workspace)
    assert ws is not None
    fired = len(ws.view("ticket_rule_firings").query([], None, "id", False))
    other = ws.begin()
    ws.write("tickets", {**ticket, "subject": "Staged by another writer"})
    await state.events.after_commit(ws, [("tickets", ticket["id"], None, ticket)])
    # the other writer's transaction holds its own change and nothing the rules wrote
    assert ws.owns(other)
    assert [(c, rid) for c, rid, _ in ws.staged_changes()] == [("tickets", ticket["id"])]
    ws.rollback(other)
    assert len(ws.view("ticket_rule_firings").query([], None, "id", False)) == fired

"""Every time one request writes is the same instant: a write that reads the clock more than once
must not straddle a second (a rule refused at creation because its `enabled_at`, set to now, came
out a second after its own `created_at`; an audit entry a second after the change it logs).

The sandbox clock is made to tick a second on every read, so any second read within a request shows
another second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox import clock as clock_module
from opsmerge_sandbox.clock import parse_iso
from tests.conftest import ADMIN, bearer, key_named, make_app

TICKET = {"subject": "Printer offline", "client_id": "cli_acme"}


class Ticking:
    """Real time that moves a second on every read."""

    def __init__(self) -> None:
        self.at = float(int(time.time()))

    def time(self) -> float:
        self.at += 1.0
        return self.at


@pytest.fixture()
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = make_app()
    with TestClient(app) as client:
        ticking = Ticking()
        monkeypatch.setattr(clock_module, "time", SimpleNamespace(time=ticking.time))
        yield client, bearer(key_named(app, "Owner - full"))


def _created(client: TestClient, headers: dict[str, str], path: str, body: Any) -> Any:
    answer = client.post(f"/api/v1{path}", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["data"]


def _entries_about(client: TestClient, headers: dict[str, str], record_id: str) -> Any:
    answer = client.get("/api/v1/audit-log", headers=headers, params={"object_id": record_id})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["items"]


def test_a_field_set_to_now_on_create_is_the_records_own_creation_time(
    sandbox: tuple[TestClient, dict[str, str]],
) -> None:
    client, owner = sandbox
    rule = _created(client, owner, "/ticket-rules", {
        "name": "one instant", "trigger": "ticket.created",
        "actions": [{"type": "send_webhook", "url": "http://127.0.0.1:9/hook"}],
    })
    assert rule["enabled_at"] == rule["created_at"] == rule["updated_at"]


def test_a_writes_audit_entry_carries_the_time_of_the_change_it_logs(
    sandbox: tuple[TestClient, dict[str, str]],
) -> None:
    client, owner = sandbox
    ticket = _created(client, owner, "/tickets", TICKET)
    entries = _entries_about(client, owner, ticket["id"])
    assert entries, "the create is logged"
    assert {e["created_at"] for e in entries} == {ticket["created_at"]}


@pytest.mark.interpreted
def test_the_clock_moves_on_between_requests(
    sandbox: tuple[TestClient, dict[str, str]],
) -> None:
    client, owner = sandbox
    first = _created(client, owner, "/tickets", TICKET)
    second = _created(client, owner, "/tickets", TICKET)
    assert second["created_at"] > first["created_at"]


@pytest.mark.interpreted
def test_an_updates_time_is_its_audit_entrys_time(
    sandbox: tuple[TestClient, dict[str, str]],
) -> None:
    client, owner = sandbox
    ticket = _created(client, owner, "/tickets", TICKET)
    answer = client.patch(f"/api/v1/tickets/{ticket['id']}", json={"subject": "Printer fixed"},
                          headers=owner)
    assert answer.status_code == 200, answer.text
    updated = answer.json()["data"]
    entries = _entries_about(client, owner, ticket["id"])
    assert updated["updated_at"] in {e["created_at"] for e in entries}
    assert updated["updated_at"] > ticket["created_at"]


def test_the_instant_holds_the_real_time_and_offsets_still_apply_on_top(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock_module, "time", SimpleNamespace(time=Ticking().time))
    clock = clock_module.Clock()
    token = clock_module.begin_instant()
    first = clock.now()
    assert clock.now() == first
    clock.advance(60)  # moved during the request: the move shows at once
    assert clock.now() == first + 60
    clock_module.end_instant(token)
    assert clock.now() > first + 60


def test_a_task_a_request_started_reads_live_time_once_the_request_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock_module, "time", SimpleNamespace(time=Ticking().time))
    clock = clock_module.Clock()

    async def request() -> tuple[float, float]:
        token = clock_module.begin_instant()
        first = clock.now()

        async def later() -> float:
            await asyncio.sleep(0)
            return clock.now()

        task = asyncio.create_task(later())  # it copies the request's context
        clock_module.end_instant(token)
        return first, await task

    first, later = asyncio.run(request())
    assert later > first


def test_a_key_minted_to_expire_in_a_minute_expires_a_minute_after_its_creation(
    sandbox: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = sandbox
    minted = client.post("/_sandbox/keys", json={"expires_in": 60}, headers=ADMIN)
    assert minted.status_code == 201, minted.text
    key = client.app.state.sandbox.keys.lookup(minted.json()["data"]["key"])
    assert parse_iso(key.expires_at) - parse_iso(key.created_at) == 60

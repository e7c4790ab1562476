"""Merging a ticket into another, as the web app does (the help pages list merge among a ticket's
actions, and the API does what the web app does): the ticket is closed as merged, naming the
ticket it went into; the other must be another ticket of the same client that is not closed; a
merged ticket stays closed; a refused merge changes nothing and names the body's field."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import TestClient

from tests.conftest import ADMIN

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
READER = "om_sbx_readonly_full_YUKgEUprCn7fzZEzmqh8ILhBw4"
SOURCE, TARGET = "tkt_000140", "tkt_000202"  # two open tickets of one client, one subject


def _h(ws: str, key: str = OWNER) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-Sandbox-Workspace": ws}


def _ws() -> str:
    return f"merge-{uuid.uuid4().hex[:10]}"


def _ticket(client: TestClient, ws: str, ticket_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/tickets/{ticket_id}", headers=_h(ws))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def _merge(client: TestClient, ws: str, source: str, into: Any) -> Any:
    return client.post(f"/api/v1/tickets/{source}/merge", json={"into_id": into}, headers=_h(ws))


def _open_ticket_of(client: TestClient, ws: str, client_id: str, but: str) -> str:
    r = client.get(
        f"/api/v1/tickets?client_id={client_id}&per_page=100", headers=_h(ws)
    )
    assert r.status_code == 200, r.text
    return next(
        t["id"] for t in r.json()["data"]["items"] if t["status"] != "Closed" and t["id"] != but
    )


def _refused_naming_into_id(
    client: TestClient, ws: str, source: str, into: str, status: int, why: str
) -> dict[str, Any]:
    """Merge `source` into `into`, expecting a refusal naming `into_id` that says `why` and
    leaves `source` as it was; the error."""
    before = _ticket(client, ws, source)
    r = _merge(client, ws, source, into)
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["details"][0]["field"] == "into_id"
    assert why in error["message"]
    assert _ticket(client, ws, source) == before
    return error


def test_a_merged_ticket_is_closed_naming_the_ticket_it_went_into(client: TestClient) -> None:
    ws = _ws()
    target_before = _ticket(client, ws, TARGET)
    r = _merge(client, ws, SOURCE, TARGET)
    assert r.status_code == 200, r.text
    merged = r.json()["data"]
    assert merged["status"] == "Closed" and merged["merged_into_id"] == TARGET
    assert merged["resolution"]  # a closed ticket says how it was resolved
    assert _ticket(client, ws, SOURCE) == merged
    assert _ticket(client, ws, TARGET) == target_before  # the other ticket is not changed


def test_every_ticket_says_whether_it_was_merged(client: TestClient) -> None:
    ws = _ws()
    r = client.get("/api/v1/tickets?per_page=100", headers=_h(ws))
    assert r.status_code == 200, r.text
    assert {t["merged_into_id"] for t in r.json()["data"]["items"]} == {None}


def test_a_merge_is_logged_as_ticket_merged_with_what_it_changed(client: TestClient) -> None:
    ws = _ws()
    assert _merge(client, ws, SOURCE, TARGET).status_code == 200
    r = client.get(f"/api/v1/audit-log?action=ticket.merged&object_id={SOURCE}", headers=_h(ws))
    assert r.status_code == 200, r.text
    (entry,) = r.json()["data"]["items"]
    assert entry["actor_id"] == "usr_owner" and entry["object_type"] == "ticket"
    assert entry["diff"]["merged_into_id"] == [None, TARGET]
    assert entry["diff"]["status"][1] == "Closed"


def test_a_ticket_cannot_be_merged_into_itself(client: TestClient) -> None:
    _refused_naming_into_id(client, _ws(), SOURCE, SOURCE, 400, "itself")


def test_a_ticket_cannot_be_merged_into_another_clients_ticket(client: TestClient) -> None:
    ws = _ws()
    other = _open_ticket_of(client, ws, "cli_000023", but="")
    _refused_naming_into_id(client, ws, SOURCE, other, 400, "same client")


def test_a_ticket_cannot_be_merged_into_a_closed_ticket(client: TestClient) -> None:
    ws = _ws()
    assert _merge(client, ws, SOURCE, TARGET).status_code == 200  # SOURCE is now closed
    third = _open_ticket_of(client, ws, "cli_acme", but=TARGET)
    _refused_naming_into_id(client, ws, third, SOURCE, 400, "not be closed")


def test_merging_into_a_ticket_that_does_not_exist_names_it(client: TestClient) -> None:
    ws = _ws()
    error = _refused_naming_into_id(client, ws, SOURCE, "tkt_nope", 422, "tkt_nope")
    assert error["code"] == "REFERENCE_NOT_FOUND"
    assert _ticket(client, ws, SOURCE)["merged_into_id"] is None


def test_a_merge_without_a_ticket_to_merge_into_is_refused(client: TestClient) -> None:
    ws = _ws()
    for body in ({}, {"into_id": ""}, {"into_id": 7}, {"into_id": TARGET, "extra": 1}):
        r = client.post(f"/api/v1/tickets/{SOURCE}/merge", json=body, headers=_h(ws))
        assert r.status_code == 400, (body, r.text)
    assert _ticket(client, ws, SOURCE)["merged_into_id"] is None


def test_a_closed_ticket_cannot_be_merged_again(client: TestClient) -> None:
    ws = _ws()
    assert _merge(client, ws, SOURCE, TARGET).status_code == 200
    third = _open_ticket_of(client, ws, "cli_acme", but=TARGET)
    r = _merge(client, ws, SOURCE, third)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "TICKET_CLOSED"
    assert _ticket(client, ws, SOURCE)["merged_into_id"] == TARGET


def test_a_merged_ticket_stays_closed(client: TestClient) -> None:
    ws = _ws()
    assert _merge(client, ws, SOURCE, TARGET).status_code == 200
    r = client.patch(f"/api/v1/tickets/{SOURCE}", json={"status": "Open"}, headers=_h(ws))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["field"] == "status"
    assert _ticket(client, ws, SOURCE)["status"] == "Closed"


def test_the_ticket_merged_into_cannot_be_deleted_from_under_it(client: TestClient) -> None:
    ws = _ws()
    assert _merge(client, ws, SOURCE, TARGET).status_code == 200
    r = client.delete(f"/api/v1/tickets/{TARGET}", headers=_h(ws))
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "IN_USE"
    assert _ticket(client, ws, TARGET)["id"] == TARGET


def test_merging_needs_the_ticket_write_scope(client: TestClient) -> None:
    ws = _ws()
    r = client.post(
        f"/api/v1/tickets/{SOURCE}/merge", json={"into_id": TARGET}, headers=_h(ws, READER)
    )
    assert r.status_code == 403, r.text
    assert _ticket(client, ws, SOURCE)["merged_into_id"] is None


def test_merges_keep_the_invariants_writes_keep(client: TestClient) -> None:
    ws = _ws()
    assert _merge(client, ws, SOURCE, TARGET).status_code == 200
    judged = client.get(f"/_sandbox/workspaces/{ws}/invariants", headers=ADMIN)
    assert judged.status_code == 200, judged.text
    assert judged.json()["data"]["violations"] == []

"""The seeded audit log agrees with the records it names, read through the API as an integrator
reads both: a key's use names that key, its owner and a working key; an event that happens once
to a record (made, paid, voided, archived, revoked) is logged once, when the record says it
happened, and only about a record in that state; a change falls within the record's life; a
sign-in is the user's own, no later than their last one."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.conftest import ADMIN

Records = dict[str, dict[str, dict[str, Any]]]  # object type -> id -> record
OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
H = {"Authorization": f"Bearer {OWNER}"}
# where a record an entry names is read: its object type's path
PATHS = {
    "user": "users",
    "api_key": None,
    "client": "clients",
    "contact": "contacts",
    "ticket": "tickets",
    "contract": "contracts",
    "invoice": "invoices",
    "script": "scripts",
}


def _all(client: TestClient, path: str) -> list[dict[str, Any]]:
    """Every record a list answers, page by page."""
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        r = client.get(f"/api/v1/{path}?per_page=100&page={page}", headers=H)
        assert r.status_code == 200, r.text
        items = r.json()["data"]["items"]
        out += items
        if not items:
            return out
        page += 1


@pytest.fixture(scope="module")
def entries(client: TestClient) -> list[dict[str, Any]]:
    return _all(client, "audit-log")


@pytest.fixture(scope="module")
def records(client: TestClient) -> Records:
    """The records entries can name, by object type and id."""
    return {
        kind: {r["id"]: r for r in _all(client, path)}
        for kind, path in PATHS.items()
        if path is not None
    }


@pytest.fixture(scope="module")
def keys(client: TestClient) -> dict[str, dict[str, Any]]:
    r = client.get("/_sandbox/keys", headers=ADMIN)
    assert r.status_code == 200, r.text
    return {k["id"]: k for k in r.json()["data"]["items"]}


def _record(records: Records, entry: dict[str, Any]) -> dict[str, Any]:
    record = records[entry["object_type"]].get(entry["object_id"])
    assert record is not None, entry
    return record


def _of(entries: list[dict[str, Any]], *actions: str) -> list[dict[str, Any]]:
    found = [e for e in entries if e["action"] in actions]
    assert found, f"the seeded log has no {actions} entries to judge"
    return found


def test_a_key_is_used_under_its_own_name_by_its_owner_while_it_works(
    entries: list[dict[str, Any]], keys: dict[str, dict[str, Any]]
) -> None:
    for e in _of(entries, "api_key.used"):
        key = keys[e["object_id"]]
        assert e["api_key_name"] == key["name"], e
        assert e["actor_id"] == key["user_id"], e
        assert key["status"] == "active", e  # not revoked, not expired, its owner active
        assert not e["user_agent"].startswith("Mozilla/"), e  # a program, not a browser


def test_what_no_key_names_came_from_the_web_app_in_a_browser(
    entries: list[dict[str, Any]],
) -> None:
    for e in entries:
        if e["api_key_name"] is None:
            assert e["user_agent"].startswith("Mozilla/"), e


def test_a_key_is_made_by_its_owner(
    entries: list[dict[str, Any]], keys: dict[str, dict[str, Any]]
) -> None:
    for e in _of(entries, "api_key.created"):
        assert e["actor_id"] == keys[e["object_id"]]["user_id"], e


def test_a_revocation_names_a_revoked_key(
    entries: list[dict[str, Any]], keys: dict[str, dict[str, Any]]
) -> None:
    for e in _of(entries, "api_key.revoked"):
        assert keys[e["object_id"]]["status"] == "revoked", e


def test_an_event_that_happens_once_to_a_record_is_logged_once(
    entries: list[dict[str, Any]],
) -> None:
    once = ("created", "paid", "voided", "archived", "revoked")
    seen = Counter(
        (e["action"], e["object_id"]) for e in entries if e["action"].split(".")[1] in once
    )
    assert [k for k, n in seen.items() if n > 1] == []


def test_a_record_is_logged_as_made_when_it_says_it_was_made(
    records: Records, entries: list[dict[str, Any]]
) -> None:
    made = [
        e for e in entries if e["action"].endswith(".created") and e["object_type"] != "api_key"
    ]
    assert made
    for e in made:
        assert _record(records, e)["created_at"] == e["created_at"], e


@pytest.mark.parametrize(
    ("action", "status"),
    [("invoice.paid", "Paid"), ("contract.voided", "voided"), ("client.archived", "archived")],
)
def test_a_final_event_names_a_record_in_that_state_at_its_last_change(
    records: Records,
    entries: list[dict[str, Any]],
    action: str,
    status: str,
) -> None:
    for e in _of(entries, action):
        record = _record(records, e)
        assert record["status"] == status, e
        assert record["updated_at"] == e["created_at"], e


def test_a_change_falls_within_the_life_of_the_record_it_changed(
    records: Records, entries: list[dict[str, Any]]
) -> None:
    changes = [
        e
        for e in entries
        if e["action"].rsplit(".", 1)[1] in ("modified", "status_changed", "assigned", "sent")
        and e["object_type"] in PATHS
    ]
    assert changes
    for e in changes:
        record = _record(records, e)
        assert record["created_at"] <= e["created_at"] <= record["updated_at"], e


def test_a_sign_in_is_the_users_own_and_no_later_than_their_last(
    records: Records, entries: list[dict[str, Any]]
) -> None:
    for e in _of(entries, "user.login"):
        assert e["actor_id"] == e["object_id"], e
        user = _record(records, e)
        assert user["last_login_at"] is not None and e["created_at"] <= user["last_login_at"], e

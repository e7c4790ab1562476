"""The seeded audit log agrees with the records it names, read through the API as an integrator
reads both: a key's use names that key, its owner and a working key; an event that happens once
to a record (made, paid, voided, archived, revoked) is logged once, when the record says it
happened, and only about a record in that state; a change falls within the record's life and,
the record's latest of its kind, ends at what the record holds now; whoever acted had a role
that allows it; a sign-in is the user's own, no later than their last one."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world
from opsmerge_sandbox.world.invariants import hint_problems
from opsmerge_sandbox.world.recipe import Recipe
from tests.conftest import ADMIN, every_record, make_app

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
    "script_run": "script-runs",
}


@pytest.fixture(scope="module")
def entries(client: TestClient) -> list[dict[str, Any]]:
    return every_record(client, "/api/v1/audit-log", H)


@pytest.fixture(scope="module")
def records(client: TestClient) -> Records:
    """The records entries can name, by object type and id."""
    found = {
        kind: {r["id"]: r for r in every_record(client, f"/api/v1/{path}", H)}
        for kind, path in PATHS.items()
        if path is not None
    }
    r = client.get("/api/v1/settings/ticket-numbering", headers=H)
    assert r.status_code == 200, r.text
    found["settings"] = {r.json()["data"]["id"]: r.json()["data"]}
    return found


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


def _is_creation(e: dict[str, Any]) -> bool:
    """An entry of a record's making: `.created`, or a user's invitation (how users are made)."""
    return e["action"].endswith(".created") or e["action"] == "user.invited"


# what a record is made with, where its later life moves it on: the create's own value (a
# ticket is made New, whatever it became since), None for a field set only later, or "made":
# the moment the record was made
MADE_WITH: dict[str, dict[str, Any]] = {
    "ticket": {"status": "New", "assignee_id": None, "resolution": None, "merged_into_id": None},
    "client": {"status": "lead"},
    "user": {
        "status": "invited", "mfa_enabled": False, "last_login_at": None,
        "invitation_expires_at": None, "invited_at": "made",  # invited as the user was made
    },
    "contract": {"status": "active"},
    "invoice": {"status": "Draft"},
    "script_run": {
        "status": "queued", "exit_code": None, "output": None, "started_at": None,
        "finished_at": None,
    },
}  # fmt: skip


def _replaced_contracts(records: Records) -> set[str]:
    """Contracts that ended the day a later one of their client started."""
    starts = {(c["client_id"], c["start_date"]) for c in records["contract"].values()}
    return {
        c["id"] for c in records["contract"].values()
        if (c["client_id"], c["end_date"]) in starts
    }


def test_a_seeded_creation_logs_every_field_the_record_was_made_with(
    records: Records, entries: list[dict[str, Any]]
) -> None:
    """As the API's own entries do (`{field: [null, value]}` for each field set, bookkeeping
    times left out): what the record holds now, but for what its later life moved on."""
    judged = Counter[str]()
    replaced = _replaced_contracts(records)
    for e in entries:
        if not _is_creation(e) or e["object_type"] not in records:
            continue
        record = _record(records, e)
        if e["object_id"] in replaced:  # its end came later, with its successor (another test)
            record = {k: v for k, v in record.items() if k != "end_date"}
            e = {**e, "diff": {k: v for k, v in e["diff"].items() if k != "end_date"}}
        made_with = {
            field: record["created_at"] if value == "made" else value
            for field, value in MADE_WITH.get(e["object_type"], {}).items()
        }
        expected = {
            field: [None, made_with.get(field, value)]
            for field, value in record.items()
            if field not in ("created_at", "updated_at") and made_with.get(field, value) is not None
        }
        assert e["diff"] == expected, e
        judged[e["object_type"]] += 1
    assert set(judged) >= {"ticket", "client", "user", "contract", "invoice", "script_run"}, judged


def test_a_seeded_entry_names_and_shows_a_change_as_the_api_logs_it(
    entries: list[dict[str, Any]],
) -> None:
    """A user is made by an invitation, and sending a Draft invoice opens it: the seeded log
    uses the same action and diff as an invitation or a send made through the API now."""
    with TestClient(make_app(), base_url="http://sandbox.local") as live:
        drafts = every_record(live, "/api/v1/invoices", H, status="Draft")
        sent = live.post(f"/api/v1/invoices/{drafts[0]['id']}/send", headers=H)
        assert sent.status_code == 200, sent.text
        invitation = {"email": "new.tech@example.com", "role_ids": ["rol_technician"]}
        invited = live.post("/api/v1/users/invite", json=invitation, headers=H)
        assert invited.status_code == 201, invited.text
        log = live.get("/api/v1/audit-log", headers=H, params={"per_page": 10})
        assert log.status_code == 200, log.text
        newest = log.json()["data"]["items"]
    send = next(e for e in newest if e["object_id"] == drafts[0]["id"])
    invite = next(e for e in newest if e["object_id"] == invited.json()["data"]["id"])
    for e in _of(entries, send["action"]):
        assert e["diff"] == send["diff"], e
    assert _of(entries, invite["action"])
    assert [e for e in entries if e["action"] == "user.created"] == []


@pytest.mark.parametrize(
    ("birth", "problem"),
    [
        ({"of": "actor_name"}, "'actor_name' is not a field of audit_log"),
        ({"of": "action"}, "'action' of audit_log refers to no collection"),
        (
            {"of": "object_id", "made-at": "invited_at"},
            "x-birth is `of`, and optionally a `made-with` mapping and a `made-at` list",
        ),
    ],
)
def test_spec_check_names_a_creation_record_it_cannot_read(
    spec: Spec, birth: dict[str, Any], problem: str
) -> None:
    schemas = {name: c.schema for name, c in spec.collections.items()}
    log = copy.deepcopy(schemas["audit_log"])
    case = {"when": {"action": ["ticket.created"]}, "x-birth": birth}
    log["properties"]["diff"]["x-cases"].insert(0, case)
    found = [p for name, p in hint_problems({**schemas, "audit_log": log}) if name == "audit_log"]
    assert found == [f"properties.diff: {problem}"]


def test_a_seeded_revocation_logs_when_the_key_was_revoked(
    entries: list[dict[str, Any]], spec: Spec, recipe: Recipe
) -> None:
    # the key list is for signed-in sessions only: the seeded world is where its records are
    revoked = {k["id"]: k["revoked_at"] for k in build_world(spec, recipe)["api_keys"]}
    for e in _of(entries, "api_key.revoked"):
        assert e["diff"] == {"revoked_at": [None, revoked[e["object_id"]]]}, e


def _by_the_run(e: dict[str, Any], records: Records) -> bool:
    """An entry of what the platform did itself: a contract's recurring run issuing an invoice."""
    if e["action"] != "invoice.created":
        return False
    return records["invoice"][e["object_id"]]["contract_id"] is not None


def test_what_no_key_names_came_from_the_web_app_in_a_browser(
    entries: list[dict[str, Any]], records: Records
) -> None:
    """...or from the platform itself, which says so and names no user."""
    for e in entries:
        if _by_the_run(e, records):
            assert e["user_agent"] == "OpsMerge recurring billing" and e["actor_id"] is None, e
        elif e["api_key_name"] is None:
            assert e["user_agent"].startswith("Mozilla/"), e


def test_a_key_is_made_by_its_owner(
    entries: list[dict[str, Any]], keys: dict[str, dict[str, Any]]
) -> None:
    for e in _of(entries, "api_key.created"):
        assert e["actor_id"] == keys[e["object_id"]]["user_id"], e


def test_a_key_is_revoked_by_its_owner(
    entries: list[dict[str, Any]], keys: dict[str, dict[str, Any]]
) -> None:
    for e in _of(entries, "api_key.revoked"):
        assert e["actor_id"] == keys[e["object_id"]]["user_id"], e


def test_a_key_reads_as_made_when_its_record_says_and_was_used_only_after(
    client: TestClient, entries: list[dict[str, Any]], spec: Spec, recipe: Recipe
) -> None:
    # the key list is for signed-in sessions only: the seeded world is where its records are
    made = {k["id"]: k["created_at"] for k in build_world(spec, recipe)["api_keys"]}
    me = client.get("/api/v1/auth/me", headers=H).json()["data"]["key"]
    assert me["created_at"] == made[me["id"]]
    for e in _of(entries, "api_key.created", "api_key.used"):
        assert made[e["object_id"]] <= e["created_at"], e


def test_a_revocation_names_a_revoked_key(
    entries: list[dict[str, Any]], keys: dict[str, dict[str, Any]]
) -> None:
    for e in _of(entries, "api_key.revoked"):
        assert keys[e["object_id"]]["status"] == "revoked", e


def test_an_event_that_happens_once_to_a_record_is_logged_once(
    entries: list[dict[str, Any]],
) -> None:
    once = ("created", "invited", "paid", "voided", "archived", "revoked")
    seen = Counter(
        (e["action"], e["object_id"]) for e in entries if e["action"].split(".")[1] in once
    )
    assert [k for k, n in seen.items() if n > 1] == []


def test_a_record_is_logged_as_made_when_it_says_it_was_made(
    records: Records, entries: list[dict[str, Any]]
) -> None:
    made = [e for e in entries if _is_creation(e) and e["object_type"] != "api_key"]
    assert made
    for e in made:
        assert _record(records, e)["created_at"] == e["created_at"], e


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("invoice.paid", "Paid"),
        ("invoice.voided", "Voided"),
        ("contract.voided", "voided"),
        ("client.archived", "archived"),
    ],
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


@pytest.mark.parametrize(
    ("action", "was"),
    [
        ("invoice.paid", {"Open", "Overdue"}),
        ("invoice.voided", {"Open", "Overdue"}),
        ("contract.voided", {"active"}),
        ("client.archived", {"active"}),  # it had signed: every archived client has a contract
    ],
)
def test_a_final_event_shows_the_change_that_made_it_final(
    records: Records, entries: list[dict[str, Any]], action: str, was: set[str]
) -> None:
    """As the API's own entries of those actions do: `{status: [before, after]}`; a paid
    invoice was Overdue by then if its due date had passed, else Open."""
    for e in _of(entries, action):
        record = _record(records, e)
        before, after = e["diff"]["status"]
        assert after == record["status"] and before in was, e
        if action in ("invoice.paid", "invoice.voided"):
            overdue = f"{record['due_date']}T00:00:00Z" < e["created_at"]  # due by midnight
            assert before == ("Overdue" if overdue else "Open"), (e, record["due_date"])


@pytest.mark.parametrize(
    ("kind", "status", "action"),
    [
        ("invoice", "Voided", "invoice.voided"),
        ("contract", "voided", "contract.voided"),
        ("client", "archived", "client.archived"),
    ],
)
def test_every_voided_or_archived_record_has_its_voiding_or_archiving_logged(
    records: Records, entries: list[dict[str, Any]], kind: str, status: str, action: str
) -> None:
    """An auditor filtering the log by a voided invoice finds who voided it and when. (The
    seeded log samples the frequent events, creations and payments; these rare ones are all in
    it.)"""
    final = {rid for rid, r in records[kind].items() if r["status"] == status}
    assert final, f"the seeded world has no {status} {kind} to judge"
    logged = {e["object_id"] for e in entries if e["action"] == action}
    assert sorted(final - logged) == []


def test_a_change_falls_within_the_life_of_the_record_it_changed(
    records: Records, entries: list[dict[str, Any]]
) -> None:
    changes = [
        e
        for e in entries
        if e["action"].rsplit(".", 1)[1]
        in ("modified", "status_changed", "assigned", "role_changed", "changed", "sent")
        and e["object_type"] in records
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


def test_a_seeded_change_is_its_records_latest_and_ends_at_what_it_holds_now(
    records: Records, entries: list[dict[str, Any]]
) -> None:
    kinds = (
        "ticket.status_changed",
        "ticket.assigned",
        "user.role_changed",
        "client.modified",
        "settings.changed",
    )
    changes = _of(entries, *kinds)
    for e in changes:
        record = _record(records, e)
        for field, (old, new) in e["diff"].items():
            assert new == record[field] and old != new, e
    once = Counter((e["action"], e["object_id"]) for e in changes)
    assert [k for k, n in once.items() if n > 1] == []


# the write scope each kind of record needs (the spec's security on its writes)
WRITES = {
    "ticket": "psa_tickets:write",
    "invoice": "psa_billing:write",
    "client": "clients:write",
    "contact": "contacts:write",
    "contract": "psa_contracts:write",
    "settings": "settings:write",
}


def test_whoever_acted_had_a_role_that_allows_it(
    client: TestClient, records: Records, entries: list[dict[str, Any]]
) -> None:
    r = client.get("/api/v1/roles?per_page=100", headers=H)
    assert r.status_code == 200, r.text
    grants = {role["id"]: set(role["permissions"]) for role in r.json()["data"]["items"]}
    judged = 0
    for e in entries:
        if e["action"] == "script_run.created":
            scope = "scripts:execute"
        elif e["action"] in ("user.invited", "user.role_changed"):
            scope = "users:write"
        else:
            scope = WRITES.get(e["object_type"] or "")
        if scope is None or _by_the_run(e, records):  # the platform acts under no role
            continue
        judged += 1
        held = set().union(*(grants[r] for r in records["user"][e["actor_id"]]["role_ids"]))
        assert scope in held or f"*:{scope.split(':')[1]}" in held, e
    assert judged > 100


def test_an_execution_is_logged_as_the_run_it_made_by_whoever_asked_for_it(
    records: Records, entries: list[dict[str, Any]], fresh_client: TestClient
) -> None:
    runs = _of(entries, "script_run.created")
    assert not [e for e in entries if e["object_type"] == "script" and "exec" in e["action"]]
    for e in runs:
        run = _record(records, e)
        assert (e["actor_id"], e["created_at"]) == (run["requested_by"], run["created_at"]), e
    # a run made through the API is logged the same way
    script = next(s for s in records["script"].values() if "windows" in s["platforms"])
    agents = every_record(fresh_client, "/api/v1/agents", H, status="online", platform="windows")
    made = fresh_client.post(
        f"/api/v1/scripts/{script['id']}/run", json={"agent_ids": [agents[0]["id"]]}, headers=H
    )
    assert made.status_code == 202, made.text
    run = made.json()["data"]
    (logged,) = every_record(fresh_client, "/api/v1/audit-log", H, object_id=run["id"])
    assert logged["action"] == "script_run.created"
    assert (logged["actor_id"], logged["created_at"]) == (run["requested_by"], run["created_at"])
    assert logged["diff"]["agent_ids"] == [None, [agents[0]["id"]]]


def test_a_failed_sign_in_signs_nobody_in(entries: list[dict[str, Any]]) -> None:
    for e in _of(entries, "user.login_failed"):
        assert e["actor_id"] is None and e["object_type"] == "user", e


def test_only_an_invoice_that_left_draft_was_sent(
    records: Records, entries: list[dict[str, Any]]
) -> None:
    for e in _of(entries, "invoice.sent"):
        assert _record(records, e)["status"] != "Draft", e


def test_a_deactivated_user_neither_signed_in_nor_acted_after_deactivation(
    records: Records, entries: list[dict[str, Any]]
) -> None:
    gone = {u["id"]: u for u in records["user"].values() if u["status"] == "deactivated"}
    assert gone
    for user in gone.values():
        assert user["last_login_at"] <= user["updated_at"], user  # deactivation: the last change
    acted = [e for e in entries if e["actor_id"] in gone]
    assert acted
    for e in acted:
        assert e["created_at"] <= gone[e["actor_id"]]["updated_at"], e

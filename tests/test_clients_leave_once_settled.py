"""A client leaves once its money and work are settled, as every archived client of the seeded
world has: archiving one (the action, or `status: archived` in an update) while it has a
contract in force or a ticket still open answers 409 CONFLICT naming them, and changes nothing.
Before, the archive went through and left the client's contracts active and tickets open.

What still runs for it stops in the same write (`x-on-enter`): its agents go offline, its checks
are switched off, its open alerts are resolved and its contacts lose portal access, so its
records look as the seeded world's archived clients' do. Before, they stayed online, enabled,
open and with access, which no archived client of the seeded world has."""

from __future__ import annotations

import copy
import time
from datetime import timedelta
from typing import Any

from litestar.testing import TestClient

from opsmerge_sandbox.clock import format_iso
from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world.conditions import Env
from opsmerge_sandbox.world.invariants import Invariant, check_record, compile_invariants
from tests.conftest import (
    advance_clock,
    at,
    bearer,
    conflict,
    every_record,
    key_named,
    settle_contracts,
)

API = "/api/v1"
OPEN = {"New", "Open", "In Progress", "Waiting on Customer"}
IN_FORCE = {"active", "scheduled"}


def _owner(c: TestClient) -> dict[str, str]:
    return bearer(key_named(c.app, "Owner - full"))


def _in_force(c: TestClient, h: dict[str, str], client_id: str) -> list[str]:
    return [x["id"] for x in every_record(c, f"{API}/contracts", h, client_id=client_id)
            if x["status"] in IN_FORCE]


def _open_tickets(c: TestClient, h: dict[str, str], client_id: str) -> list[str]:
    return [x["id"] for x in every_record(c, f"{API}/tickets", h, client_id=client_id)
            if x["status"] in OPEN]


def _close_tickets(c: TestClient, h: dict[str, str], client_id: str) -> None:
    for ticket in _open_tickets(c, h, client_id):
        closed = c.patch(f"{API}/tickets/{ticket}", headers=h,
                         json={"status": "Closed", "resolution": "Closed as the client leaves."})
        assert closed.status_code == 200, closed.text


def _archive_refused(c: TestClient, h: dict[str, str], client_id: str) -> dict[str, Any]:
    """The error of an archive the client's open work holds back (409 CONFLICT)."""
    return conflict(c, f"{API}/clients/{client_id}/archive", h)


def _archived_entries(c: TestClient, h: dict[str, str], client_id: str) -> int:
    log = every_record(c, f"{API}/audit-log", h, action="client.archived")
    return sum(e["object_id"] == client_id for e in log)


def test_a_client_under_a_contract_in_force_is_not_archived_and_nothing_changes(
    fresh_client: TestClient,
) -> None:
    c, h = fresh_client, _owner(fresh_client)
    _close_tickets(c, h, "cli_acme")  # only the contract stands in the way
    contracts = _in_force(c, h, "cli_acme")
    assert contracts
    before = c.get(f"{API}/clients/cli_acme", headers=h).json()["data"]
    error = _archive_refused(c, h, "cli_acme")
    assert "contract in force" in error["message"] and contracts[0] in error["message"]
    assert error["details"][0]["location"] == "path"
    assert c.get(f"{API}/clients/cli_acme", headers=h).json()["data"] == before
    assert _archived_entries(c, h, "cli_acme") == 0


def test_a_client_with_tickets_still_open_is_not_archived_and_the_error_counts_them(
    fresh_client: TestClient,
) -> None:
    c, h = fresh_client, _owner(fresh_client)
    settle_contracts(c, h, "cli_acme")  # only the tickets stand in the way
    still_open = _open_tickets(c, h, "cli_acme")
    assert len(still_open) > 3
    message = _archive_refused(c, h, "cli_acme")["message"]
    assert "tickets still open" in message
    assert f"and {len(still_open) - 3} more" in message
    assert c.get(f"{API}/clients/cli_acme", headers=h).json()["data"]["status"] == "active"


def test_setting_status_archived_in_an_update_is_refused_naming_the_field(
    fresh_client: TestClient,
) -> None:
    c, h = fresh_client, _owner(fresh_client)
    refused = c.patch(f"{API}/clients/cli_acme", headers=h,
                      json={"status": "archived", "name": "Acme (leaving)"})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert [(d["location"], d["field"]) for d in error["details"]] == [("body", "status")]
    assert error["message"].startswith("status: ")
    client = c.get(f"{API}/clients/cli_acme", headers=h).json()["data"]
    assert (client["status"], client["name"]) == ("active", "Acme Corporation Ltd")


def test_a_settled_client_is_archived_and_its_records_agree(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    settle_contracts(c, h, "cli_acme")
    _close_tickets(c, h, "cli_acme")
    archived = c.post(f"{API}/clients/cli_acme/archive", headers=h)
    assert archived.status_code == 200, archived.text
    assert archived.json()["data"]["status"] == "archived"
    assert _in_force(c, h, "cli_acme") == _open_tickets(c, h, "cli_acme") == []
    assert _archived_entries(c, h, "cli_acme") == 1


def test_a_lead_that_never_signed_is_archived_at_once(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    lead = next(x for x in every_record(c, f"{API}/clients", h) if x["status"] == "lead")
    archived = c.post(f"{API}/clients/{lead['id']}/archive", headers=h)
    assert archived.status_code == 200, archived.text


def test_other_changes_to_a_client_with_open_work_still_go_through(
    fresh_client: TestClient,
) -> None:
    c, h = fresh_client, _owner(fresh_client)
    renamed = c.patch(f"{API}/clients/cli_acme", headers=h, json={"name": "Acme Holdings Ltd"})
    assert renamed.status_code == 200, renamed.text


def _problems_with(spec: Spec, extension: str, **change: Any) -> list[str]:
    """What the spec check says of the client schema once its first `extension` rule has
    `change` made to it."""
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    rule = schemas["Client"][extension][0]
    rule.update(change)
    _, problems = parse_collections(schemas)
    return [p.message for p in problems if p.where.endswith(".Client")]


def _with_rule(spec: Spec, **change: Any) -> list[str]:
    return _problems_with(spec, "x-refuse-while", **change)


def test_a_refuse_while_rule_that_names_nothing_real_is_refused_at_the_check_of_the_spec(
    spec: Spec,
) -> None:
    assert _with_rule(spec) == []
    assert any("is not a collection" in m for m in _with_rule(spec, collection="nowhere"))
    assert any("does not refer to clients" in m for m in _with_rule(spec, field="name"))
    assert any("holding.colour" in m for m in _with_rule(spec, holding={"colour": ["red"]}))
    assert any("into.colour" in m for m in _with_rule(spec, into={"colour": ["red"]}))
    assert any("needs a message" in m for m in _with_rule(spec, message=""))


# ---------------------------------------------------------------------------------------------
# what leaving changes


def _left_rules(spec: Spec) -> list[Invariant]:
    """The seeded world's rules about the records of a client that has left (`when` its
    client is archived): what every archived client's records look like."""
    schemas = {n: c.schema for n, c in spec.collections.items()}
    return [i for i in compile_invariants(schemas)
            if i.kind == "require" and i.raw.get("when") == {"client_id->status": ["archived"]}]


def _broken_left_rules(
    c: TestClient, spec: Spec, client_id: str, as_if_left: bool = False
) -> list[tuple[str, str, str]]:
    """(rule, record, why) for each record naming the client that breaks one of those rules,
    read from the workspace as stored; `as_if_left` judges them as if the client had just
    been archived and nothing else had changed."""
    state = c.app.state.sandbox
    ws = state.workspaces.existing(c.headers["X-Sandbox-Workspace"])
    assert ws is not None
    schemas = {n: col.schema for n, col in spec.collections.items()}
    now = int(time.time() + state.clock.offset_of(ws.name))

    def lookup(collection: str, rid: str) -> dict[str, Any] | None:
        found = ws.get(collection, rid)
        if as_if_left and found is not None and (collection, rid) == ("clients", client_id):
            return {**found, "status": "archived", "updated_at": format_iso(now)}
        return found

    env = Env(lookup, now, dict(state.recipe.organisation), schemas)
    broken = []
    for rule in _left_rules(spec):
        for record in ws.view(rule.collection).query([("client_id", client_id)], None, "id",
                                                     False):
            why = check_record(rule, record, env)
            if why is not None:
                broken.append((rule.id, record["id"], why))
    return broken


def _settle(c: TestClient, h: dict[str, str], client_id: str) -> None:
    settle_contracts(c, h, client_id)
    _close_tickets(c, h, client_id)


def _running(c: TestClient, h: dict[str, str], client_id: str) -> dict[str, int]:
    """How much still runs for a client: agents online, checks on, alerts open or
    acknowledged, contacts with portal access."""
    def count(path: str, field: str, values: set[Any]) -> int:
        return sum(r[field] in values for r in every_record(c, f"{API}/{path}", h,
                                                             client_id=client_id))
    return {"agents": count("agents", "status", {"online"}),
            "checks": count("checks", "enabled", {True}),
            "alerts": count("alerts", "status", {"open", "acknowledged"}),
            "contacts": count("contacts", "portal_user", {True})}


def test_the_seeded_world_has_rules_for_what_an_archived_clients_records_hold(
    spec: Spec,
) -> None:
    found = {(r.collection, r.id) for r in _left_rules(spec)}
    assert {("agents", "silent-since-client-archived"), ("checks", "off-for-a-client-that-left"),
            ("alerts", "none-open-for-a-client-that-left"),
            ("contacts", "no-portal-for-a-client-that-left")} <= found


def test_archiving_a_client_stops_what_runs_for_it_so_its_records_agree_with_it(
    fresh_client: TestClient, spec: Spec,
) -> None:
    c, h = fresh_client, _owner(fresh_client)
    _settle(c, h, "cli_acme")
    assert all(_running(c, h, "cli_acme").values())  # each kind has something to stop
    assert _broken_left_rules(c, spec, "cli_acme") == []  # not archived yet: nothing judged
    assert _broken_left_rules(c, spec, "cli_acme", as_if_left=True)  # archived as they are
    other = _running(c, h, "cli_globex")
    archived = c.post(f"{API}/clients/cli_acme/archive", headers=h)
    assert archived.status_code == 200, archived.text
    assert _running(c, h, "cli_acme") == {"agents": 0, "checks": 0, "alerts": 0, "contacts": 0}
    assert _broken_left_rules(c, spec, "cli_acme") == []
    assert _running(c, h, "cli_globex") == other  # another client's records are not touched
    left_at = archived.json()["data"]["updated_at"]
    agents = every_record(c, f"{API}/agents", h, client_id="cli_acme")
    assert max(a["last_seen_at"] for a in agents) <= left_at
    resolved = every_record(c, f"{API}/alerts", h, client_id="cli_acme")
    assert all(a["resolved_at"] is not None for a in resolved)


def test_archiving_keeps_the_last_runs_its_checks_showed(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    _settle(c, h, "cli_acme")
    advance_clock(c, str(c.headers["X-Sandbox-Workspace"]), 86_400)  # running checks kept pace
    shown = {x["id"]: x["last_run_at"]
             for x in every_record(c, f"{API}/checks", h, client_id="cli_acme")
             if x["enabled"] and x["last_run_at"] is not None}
    archived = c.post(f"{API}/clients/cli_acme/archive", headers=h)
    assert archived.status_code == 200, archived.text
    after = {x["id"]: x["last_run_at"]
             for x in every_record(c, f"{API}/checks", h, client_id="cli_acme")}
    assert shown
    for check_id, last_run in shown.items():
        assert timedelta(0) <= at(after[check_id]) - at(last_run) <= timedelta(seconds=5)


def test_archiving_by_an_update_stops_the_same_things(fresh_client: TestClient, spec: Spec) -> None:
    c, h = fresh_client, _owner(fresh_client)
    _settle(c, h, "cli_acme")
    archived = c.patch(f"{API}/clients/cli_acme", headers=h, json={"status": "archived"})
    assert archived.status_code == 200, archived.text
    assert _running(c, h, "cli_acme") == {"agents": 0, "checks": 0, "alerts": 0, "contacts": 0}
    assert _broken_left_rules(c, spec, "cli_acme") == []


def test_a_refused_archive_stops_nothing(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    _close_tickets(c, h, "cli_acme")  # a contract in force still holds it
    running = _running(c, h, "cli_acme")
    _archive_refused(c, h, "cli_acme")
    assert _running(c, h, "cli_acme") == running


def test_what_archiving_stopped_is_in_the_audit_log_beside_the_archiving(
    fresh_client: TestClient,
) -> None:
    c, h = fresh_client, _owner(fresh_client)
    _settle(c, h, "cli_acme")
    checks = {x["id"] for x in every_record(c, f"{API}/checks", h, client_id="cli_acme")
              if x["enabled"]}
    archived = c.post(f"{API}/clients/cli_acme/archive", headers=h)
    assert archived.status_code == 200, archived.text
    at = archived.json()["data"]["updated_at"]
    logged = {e["object_id"]: e for e in every_record(c, f"{API}/audit-log", h,
                                                      object_type="check")
              if e["created_at"] == at}
    assert set(logged) == checks
    entry = logged[min(checks)]
    assert entry["action"] == "check.modified"
    assert entry["diff"]["enabled"] == [True, False]


def _with_follower(spec: Spec, **change: Any) -> list[str]:
    return _problems_with(spec, "x-on-enter", **change)


def test_an_on_enter_rule_that_names_nothing_real_is_refused_at_the_check_of_the_spec(
    spec: Spec,
) -> None:
    assert _with_follower(spec) == []
    assert any("is not a collection" in m for m in _with_follower(spec, collection="nowhere"))
    assert any("does not refer to clients" in m for m in _with_follower(spec, field="hostname"))
    assert any("into.colour" in m for m in _with_follower(spec, into={"colour": ["red"]}))
    assert any("holding.colour" in m
               for m in _with_follower(spec, holding={"colour": ["red"]}))
    assert any("set.colour is not a field of agents" in m
               for m in _with_follower(spec, set={"colour": "red"}))
    assert any("'asleep' is not one of its values" in m
               for m in _with_follower(spec, set={"status": "asleep"}))
    assert any("set must name at least one field" in m for m in _with_follower(spec, set={}))
    assert any("unknown key 'code'" in m for m in _with_follower(spec, code="CONFLICT"))

"""A change to a record reaches the records that read it through a reference: what they copy from
it is copied again (an agent moved to another client's site takes its checks and their alerts
along), and a change that would leave one of them breaking a rule it keeps is refused with a 400
naming the field, the record and the rule, and changes nothing. A rule about what a record's
maker could do when it was made (`referenced-change: allow`) does not hold back a later change to
the maker: a user assigned to tickets can still be deleted (deactivated)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world.conditions import ConditionError
from opsmerge_sandbox.world.invariants import compile_invariants
from tests.conftest import bearer, every_record, key_named

API = "/api/v1"


def _h(client: TestClient) -> dict[str, str]:
    return {**bearer(key_named(client.app, "Owner - full")), **client.headers}


def _one(client: TestClient, path: str) -> dict[str, Any]:
    r = client.get(f"{API}/{path}", headers=_h(client))
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_moving_an_agent_to_another_clients_site_moves_its_checks_and_their_alerts(
    fresh_client: TestClient,
) -> None:
    h = _h(fresh_client)
    agent = _one(fresh_client, "agents/agt_acmesrv01")
    site = next(s for s in every_record(fresh_client, f"{API}/sites", h)
                if s["client_id"] != agent["client_id"])
    checks = every_record(fresh_client, f"{API}/checks", h, agent_id=agent["id"])
    alerts = [a for a in every_record(fresh_client, f"{API}/alerts", h)
              if a["check_id"] in {c["id"] for c in checks}]
    assert checks and alerts and all(c["client_id"] == agent["client_id"] for c in checks)
    r = fresh_client.patch(f"{API}/agents/{agent['id']}", headers=h, json={"site_id": site["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["client_id"] == site["client_id"]  # from its site, as before
    for check in checks:
        moved = _one(fresh_client, f"checks/{check['id']}")
        assert moved["client_id"] == site["client_id"], check["id"]
        assert moved["updated_at"] >= r.json()["data"]["updated_at"]
    for alert in alerts:  # and on to what copies from the checks
        assert _one(fresh_client, f"alerts/{alert['id']}")["client_id"] == site["client_id"]
    entries = every_record(fresh_client, f"{API}/audit-log", h, object_id=checks[0]["id"])
    assert entries, "the check's change is audited like any other write"


def test_a_contact_named_by_its_clients_tickets_does_not_move_to_another_client(
    fresh_client: TestClient,
) -> None:
    h = _h(fresh_client)
    contact = _one(fresh_client, "contacts/con_acmejane")
    named = every_record(fresh_client, f"{API}/tickets", h, client_id=contact["client_id"])
    assert any(t["contact_id"] == contact["id"] for t in named)
    r = fresh_client.patch(f"{API}/contacts/{contact['id']}", headers=h,
                           json={"client_id": "cli_000004"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == "client_id"
    assert "tickets record tkt_" in error["message"] and "contact" in error["message"]
    assert _one(fresh_client, f"contacts/{contact['id']}") == contact  # nothing changed


def test_a_contracts_start_does_not_move_past_an_invoice_it_billed(
    fresh_client: TestClient,
) -> None:
    h = _h(fresh_client)
    invoice = next(i for i in every_record(fresh_client, f"{API}/invoices", h)
                   if i["contract_id"] and i["status"] != "void")
    contract = _one(fresh_client, f"contracts/{invoice['contract_id']}")
    later = invoice["issue_date"][:8] + "28"  # after the invoice's issue date, same month
    r = fresh_client.patch(f"{API}/contracts/{contract['id']}", headers=h,
                           json={"start_date": later})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["details"][0]["field"] == "start_date"
    assert "invoices record inv_" in error["message"]
    assert _one(fresh_client, f"contracts/{contract['id']}") == contract


def test_a_script_that_ran_may_still_change_its_platforms(fresh_client: TestClient) -> None:
    """What a run records happened: the script may change after it (`referenced-change:
    allow`), its earlier runs stay as they were."""
    h = _h(fresh_client)
    agents = {a["id"]: a for a in every_record(fresh_client, f"{API}/agents", h)}
    run = every_record(fresh_client, f"{API}/script-runs", h)[0]
    script = _one(fresh_client, f"scripts/{run['script_id']}")
    ran_on = {agents[a]["platform"] for a in run["agent_ids"]}
    elsewhere = [p for p in ("windows", "linux", "macos") if p not in ran_on]
    assert elsewhere  # a platform none of the run's agents is on: the run no longer fits it
    r = fresh_client.patch(f"{API}/scripts/{script['id']}", headers=h,
                           json={"platforms": elsewhere[:1]})
    assert r.status_code == 200, r.text


def test_a_user_assigned_to_tickets_can_still_be_deleted(fresh_client: TestClient) -> None:
    h = _h(fresh_client)
    tickets = every_record(fresh_client, f"{API}/tickets", h)
    users = {u["id"]: u for u in every_record(fresh_client, f"{API}/users", h)}
    assignee = next(t["assignee_id"] for t in tickets
                    if t["assignee_id"] and users[t["assignee_id"]]["role_ids"] != ["rol_owner"]
                    and t["assignee_id"] not in ("usr_owner", "usr_admin"))
    r = fresh_client.delete(f"{API}/users/{assignee}", headers=h)
    assert r.status_code == 200, r.text
    assert _one(fresh_client, f"users/{assignee}")["status"] == "deactivated"


def test_a_rule_naming_an_unknown_referenced_change_is_refused_when_the_spec_is_read(
    spec: Spec,
) -> None:
    schemas = copy.deepcopy({n: c.schema for n, c in spec.collections.items()})
    rules = schemas["tickets"]["x-invariants"]
    rules[0] = {**rules[0], "referenced-change": "ignore"}
    with pytest.raises(ConditionError, match="referenced-change"):
        compile_invariants(schemas)


@pytest.mark.parametrize("seed", [11, 12])
def test_after_random_writes_every_record_keeps_the_rules_that_read_another_record(
    seed: int, app: Any
) -> None:
    """Writes drawn at random (the contract harness's valid bodies, through every write
    operation), then every record of the workspace, written or not, is judged by each rule
    that reads another record through a reference (those a write derives with a fix, and
    those about what a maker could do when it acted, excepted)."""
    import random
    import re
    import time

    from contracts.bodies import valid_bodies
    from opsmerge_sandbox.world.conditions import Env, condition_paths
    from opsmerge_sandbox.world.invariants import check_written

    rng = random.Random(seed)
    state = app.state.sandbox
    spec = state.spec
    name = f"random-writes-{seed}"
    ops = [op for op in spec.operations if op.kind in ("create", "update", "action", "delete")
           and not op.session_only and op.stability != "internal"]
    with TestClient(app, base_url="http://sandbox.local") as client:
        h = {**bearer(key_named(app, "Owner - full")), "X-Sandbox-Workspace": name}

        def records(collection: str) -> list[dict[str, Any]]:
            return state.workspaces.get(name).view(collection).query([], None, "id", False)

        def pick(collection: str, where: dict[str, Any], exclude: list[Any]) -> Any:
            if collection not in spec.collections:
                return None
            found = [r["id"] for r in records(collection) if r["id"] not in exclude and all(
                (r.get(k) in v) if isinstance(v, list) else r.get(k) == v
                for k, v in where.items() if "->" not in k)]
            return rng.choice(found) if found else None

        served = 0
        for _ in range(160):
            op = rng.choice(ops)
            path, coll = op.path, op.hints.collection
            for param in re.findall(r"\{(\w+)\}", path):
                parent = op.hints.parent
                target = parent.collection if parent and param == parent.param else coll
                rid = pick(target, {}, []) if target else None
                path = path.replace("{" + param + "}", str(rid))
            body = None
            if op.body_schema is not None:
                schema = spec.collections[coll].schema if coll in spec.collections else None
                bodies = valid_bodies(op.body_schema, pick, 2, schema)
                if not bodies:
                    continue
                body = rng.choice(bodies)
            r = client.request(op.method, f"{API}{path}", headers=h, json=body)
            assert r.status_code < 500, r.text
            served += r.status_code < 300
        assert served > 60  # most writes went through
    schemas = {n: c.schema for n, c in spec.collections.items()}
    judged = [
        inv for inv in compile_invariants(schemas)
        if inv.holds_for_writes and inv.kind == "require" and not inv.fix
        and inv.raw.get("referenced-change", "refuse") == "refuse"
        and any("->" in p for p in condition_paths(inv.raw.get("when"))
                + condition_paths(inv.raw.get("require")))
    ]
    ws = state.workspaces.get(name)
    env = Env(ws.get, int(time.time() + state.clock.offset_of(name)),
              dict(state.recipe.organisation), schemas)
    every = {n: records(n) for n in schemas}
    broken = check_written(judged, every, records, env)
    assert not broken, [(v.collection, v.record_id, v.invariant, v.detail) for v in broken[:5]]


def test_a_ticket_another_was_merged_into_may_still_be_closed(fresh_client: TestClient) -> None:
    h = _h(fresh_client)
    made = []
    for subject in ("Printer offline", "Printer offline again"):
        r = fresh_client.post(f"{API}/tickets", headers=h,
                              json={"subject": subject, "client_id": "cli_acme"})
        assert r.status_code == 201, r.text
        made.append(r.json()["data"]["id"])
    first, second = made
    r = fresh_client.post(f"{API}/tickets/{second}/merge", headers=h, json={"into_id": first})
    assert r.status_code == 200, r.text
    r = fresh_client.patch(f"{API}/tickets/{first}", headers=h,
                           json={"status": "Closed", "resolution": "Driver reinstalled."})
    assert r.status_code == 200, r.text
    assert _one(fresh_client, f"tickets/{second}")["merged_into_id"] == first


def test_a_billing_contact_does_not_move_to_another_client(fresh_client: TestClient) -> None:
    h = _h(fresh_client)
    draft = next(i for i in every_record(fresh_client, f"{API}/invoices", h)
                 if i["status"] == "Draft")
    r = fresh_client.post(f"{API}/contacts", headers=h, json={
        "name": "Pat Ledger", "email": "pat.ledger@example.com", "client_id": draft["client_id"],
        "is_billing": True})
    assert r.status_code == 201, r.text
    contact = r.json()["data"]  # named by no ticket: only the invoice reads its client
    r = fresh_client.patch(f"{API}/invoices/{draft['id']}", headers=h,
                           json={"billing_contact_id": contact["id"]})
    assert r.status_code == 200, r.text
    other = next(c["id"] for c in every_record(fresh_client, f"{API}/clients", h)
                 if c["id"] != contact["client_id"] and c["status"] != "archived")
    r = fresh_client.patch(f"{API}/contacts/{contact['id']}", headers=h,
                           json={"client_id": other})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["field"] == "client_id"
    assert "invoices record" in r.json()["error"]["message"]
    assert _one(fresh_client, f"contacts/{contact['id']}") == contact


def test_raising_a_clients_priority_floor_leaves_its_tickets_until_they_are_written(
    fresh_client: TestClient,
) -> None:
    h = _h(fresh_client)
    client = next(c for c in every_record(fresh_client, f"{API}/clients", h)
                  if c["status"] == "active" and c["default_ticket_priority"] in (None, "Low"))
    r = fresh_client.post(f"{API}/tickets", headers=h, json={
        "subject": "Mouse not working", "client_id": client["id"], "priority": "Low"})
    assert r.status_code == 201, r.text
    low = r.json()["data"]
    assert low["priority"] == "Low"
    r = fresh_client.patch(f"{API}/clients/{client['id']}", headers=h,
                           json={"default_ticket_priority": "High"})
    assert r.status_code == 200, r.text
    assert _one(fresh_client, f"tickets/{low['id']}")["priority"] == "Low"
    r = fresh_client.patch(f"{API}/tickets/{low['id']}", headers=h, json={"subject": "Renamed"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["priority"] == "High"  # raised on its next write

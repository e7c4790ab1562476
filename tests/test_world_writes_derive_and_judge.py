"""Writes keep the world coherent: the server derives what it owns (statuses from dates, a tax
code left out, a billing contact that no longer fits), refuses what the client's values break,
and `GET /_sandbox/workspaces/{name}/invariants` judges a live workspace's written records."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from litestar.testing import TestClient

from opsmerge_contracts.sandboxes import LoopbackServer
from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.spec import load_spec
from tests.conftest import ADMIN, bearer, every_record, key_named, make_app, settle_contracts

API = "/api/v1"


def _owner(c: TestClient) -> dict[str, str]:
    return bearer(key_named(c.app, "Owner - full"))


def _today(days: int = 0) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


def _judge(c: TestClient) -> Any:
    name = c.headers["X-Sandbox-Workspace"]
    return c.get(f"/_sandbox/workspaces/{name}/invariants", headers=ADMIN)


def test_a_contract_created_past_its_end_date_is_ended_and_active_again_once_extended(
    fresh_client: TestClient,
) -> None:
    h = _owner(fresh_client)
    body = {"client_id": "cli_acme", "name": "Pay as you go", "type": "pay-as-you-go",
            "start_date": "2025-01-01", "end_date": "2025-06-30"}
    r = fresh_client.post(f"{API}/contracts", headers=h, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["data"]["status"] == "ended"
    cid = r.json()["data"]["id"]
    r = fresh_client.patch(f"{API}/contracts/{cid}", headers=h, json={"end_date": _today(365)})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["status"] == "active"


def test_an_invoice_line_left_without_a_tax_code_is_standard_rated(
    fresh_client: TestClient,
) -> None:
    lines = [{"description": "Onsite visit", "quantity": 1, "unit_price": 95}]
    r = fresh_client.post(f"{API}/invoices", headers=_owner(fresh_client),
                          json={"client_id": "cli_acme", "lines": lines})
    assert r.status_code == 201, r.text
    invoice = r.json()["data"]
    assert invoice["lines"][0]["tax_code"] == "VAT Standard 20%"
    assert invoice["tax"] == 19.0 and invoice["total"] == 114.0


def test_an_invoice_issued_months_ago_is_a_draft_until_sent_then_overdue(
    fresh_client: TestClient,
) -> None:
    h = _owner(fresh_client)
    lines = [{"description": "Onsite visit", "quantity": 1, "unit_price": 95,
              "tax_code": "VAT Standard 20%"}]
    old = {"client_id": "cli_acme", "lines": lines, "issue_date": _today(-90)}
    r = fresh_client.post(f"{API}/invoices", headers=h, json=old)
    assert r.status_code == 201, r.text
    assert r.json()["data"]["status"] == "Draft"  # nobody has been sent it yet
    sent = fresh_client.post(f"{API}/invoices/{r.json()['data']['id']}/send", headers=h)
    assert sent.json()["data"]["status"] == "Overdue"  # due 30 days after issue, so 60 days ago
    r = fresh_client.post(f"{API}/invoices", headers=h, json={"client_id": "cli_acme",
                                                              "lines": lines})
    assert r.json()["data"]["status"] == "Draft"


def test_moving_an_invoice_to_another_client_drops_a_billing_contact_that_is_not_theirs(
    fresh_client: TestClient,
) -> None:
    h = _owner(fresh_client)
    lines = [{"description": "Onsite visit", "quantity": 1, "unit_price": 95}]
    r = fresh_client.post(f"{API}/invoices", headers=h, json={
        "client_id": "cli_acme", "billing_contact_id": "con_acmejane", "lines": lines})
    assert r.json()["data"]["billing_contact_id"] == "con_acmejane"
    other = next(
        c["id"]
        for c in fresh_client.get(f"{API}/clients", headers=h, params={"per_page": 5}).json()[
            "data"]["items"]
        if c["id"] != "cli_acme"
    )
    r = fresh_client.patch(f"{API}/invoices/{r.json()['data']['id']}", headers=h,
                           json={"client_id": other})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["client_id"] == other
    assert r.json()["data"]["billing_contact_id"] is None


def test_time_logged_before_its_ticket_was_opened_is_refused_naming_started_at(
    fresh_client: TestClient,
) -> None:
    h = _owner(fresh_client)
    body = {"ticket_id": "tkt_acmeprinter", "started_at": "2020-01-01T09:00:00Z",
            "duration_minutes": 30}
    r = fresh_client.post(f"{API}/time-entries", headers=h, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["field"] == "started_at"
    body["started_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert fresh_client.post(f"{API}/time-entries", headers=h, json=body).status_code == 201


def test_the_workspace_check_needs_the_admin_token_and_a_workspace_that_exists(
    client: TestClient,
) -> None:
    assert client.get("/_sandbox/workspaces/default/invariants").status_code in (401, 403)
    r = client.get("/_sandbox/workspaces/no-such-workspace/invariants", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"


def test_records_written_through_the_api_are_judged_coherent_even_after_a_delete(
    fresh_client: TestClient,
) -> None:
    h = _owner(fresh_client)
    ticket = fresh_client.post(f"{API}/tickets", headers=h, json={
        "client_id": "cli_acme", "subject": "VPN disconnects every hour",
        "contact_id": "con_acmejane"}).json()["data"]
    fresh_client.patch(f"{API}/tickets/{ticket['id']}", headers=h, json={"priority": "High"})
    # the audit log still names the deleted ticket: a history reference, not a dangling one
    assert fresh_client.delete(f"{API}/tickets/{ticket['id']}", headers=h).status_code == 200
    fresh_client.post(f"{API}/contracts", headers=h, json={
        "client_id": "cli_acme", "name": "Pay as you go", "type": "pay-as-you-go",
        "start_date": "2025-01-01", "end_date": "2025-06-30"})
    r = _judge(fresh_client)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["violations"] == [] and data["total"] == 0
    assert data["judged"]["contracts"] == 1 and data["judged"]["audit_log"] >= 4


def test_a_written_record_breaking_an_invariant_is_listed_by_id(
    fresh_client: TestClient,
) -> None:
    h = _owner(fresh_client)
    ticket = fresh_client.get(f"{API}/tickets/tkt_acmeprinter", headers=h).json()["data"]
    clerk = next(
        u["id"]
        for u in fresh_client.get(f"{API}/users", headers=h, params={"per_page": 100}).json()[
            "data"]["items"]
        if u["status"] == "active" and "rol_billing" in u["role_ids"]
    )
    # written behind the API's back: saved before it was created, assigned to a billing clerk
    broken = {**ticket, "updated_at": "2001-01-01T00:00:00Z", "assignee_id": clerk}
    state = fresh_client.app.state.sandbox
    state.workspaces.get(fresh_client.headers["X-Sandbox-Workspace"]).write("tickets", broken)
    found = {(v["collection"], v["id"], v["invariant"]) for v in _judge(fresh_client).json()[
        "data"]["violations"]}
    assert found == {("tickets", "tkt_acmeprinter", "times-in-order"),
                     ("tickets", "tkt_acmeprinter", "assignee-can-work-tickets")}


def test_spec_check_reports_an_invariant_without_a_write_mode_or_with_a_fix_it_cannot_apply(
) -> None:
    schemas = copy.deepcopy(load_spec().raw["components"]["schemas"])
    schemas["Contract"]["x-invariants"] += [
        {"id": "no-mode", "class": "time", "require": {"end_date": {"null": False}}},
        {"id": "refuse-with-fix", "class": "time", "on-write": "refuse",
         "fix": {"status": "ended"}, "require": {"end_date": {"null": False}}},
        {"id": "fix-of-nothing", "class": "time", "on-write": "derive",
         "fix": {"no_such_field": 1}, "require": {"end_date": {"null": False}}},
    ]
    _, problems = parse_collections(schemas)
    found = " | ".join(p.message for p in problems if "Contract" in p.where)
    assert "no-mode: on-write must be one of ['refuse', 'derive', 'seeded-only']" in found
    assert "refuse-with-fix: fix is a mapping of fields, on a require rule to derive" in found
    assert "fix-of-nothing: fix names ['no_such_field']" in found


def _check_against(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "fixtures", "check", "--against", url,
         *args],
        capture_output=True, text=True, timeout=120,
    )


def test_fixtures_check_against_a_running_sandbox_judges_one_workspace() -> None:
    app, workspace = make_app(), "cli-judged"
    token = ("--admin-token", ADMIN["X-Sandbox-Admin-Token"])
    with LoopbackServer(app) as loopback, httpx.Client(base_url=loopback.url) as c:
        h = {**bearer(key_named(app, "Owner - full")), "X-Sandbox-Workspace": workspace}
        r = c.post(f"{API}/tickets", headers=h, json={"client_id": "cli_acme", "subject": "VPN"})
        assert r.status_code == 201, r.text
        done = _check_against(loopback.url, "--workspace", workspace, *token)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "" and "0 violation(s)" in done.stderr
        # written behind the API's back: saved before it was created
        ticket = {**r.json()["data"], "updated_at": "2001-01-01T00:00:00Z"}
        app.state.sandbox.workspaces.get(workspace).write("tickets", ticket)
        done = _check_against(loopback.url, "--workspace", workspace, "--json", *token)
        assert done.returncode == 1
        assert [(v["id"], v["invariant"]) for v in json.loads(done.stdout)] == [
            (ticket["id"], "times-in-order")
        ]
        done = _check_against(loopback.url, "--workspace", workspace, "--admin-token", "wrong")
        assert done.returncode == 2 and ("401" in done.stderr or "403" in done.stderr)


def test_an_update_that_changes_nothing_leaves_no_audit_entry_and_a_change_leaves_its_diff(
    fresh_client: TestClient,
) -> None:
    h = _owner(fresh_client)
    ticket = fresh_client.get(f"{API}/tickets/tkt_acmeprinter", headers=h).json()["data"]

    def entries() -> list[dict[str, Any]]:
        found = fresh_client.get(f"{API}/audit-log", headers=h, params={"per_page": 100})
        return [e for e in found.json()["data"]["items"] if e["object_id"] == "tkt_acmeprinter"]

    before = len(entries())
    same = fresh_client.patch(f"{API}/tickets/tkt_acmeprinter", headers=h,
                              json={"priority": ticket["priority"]})
    assert same.status_code == 200, same.text
    assert len(entries()) == before
    fresh_client.patch(f"{API}/tickets/tkt_acmeprinter", headers=h, json={"priority": "Critical"})
    after = entries()
    assert len(after) == before + 1
    assert any(e["diff"] == {"priority": [ticket["priority"], "Critical"]} for e in after)


def test_a_client_that_has_left_takes_no_new_tickets_or_contracts(
    fresh_client: TestClient,
) -> None:
    """An archived client is gone: a new ticket or contract for it is refused naming
    `client_id`, and changes nothing; the work it had stays editable."""
    h = _owner(fresh_client)
    leaving = "cli_acme"  # active, with tickets of its own
    # it leaves once settled (tests/test_clients_leave_once_settled.py)
    settle_contracts(fresh_client, h, leaving)
    for ticket in every_record(fresh_client, f"{API}/tickets", h, client_id=leaving):
        if ticket["status"] not in ("Resolved", "Closed"):
            closed = fresh_client.patch(f"{API}/tickets/{ticket['id']}", headers=h,
                                        json={"status": "Closed", "resolution": "Settled."})
            assert closed.status_code == 200, closed.text
    archived = fresh_client.post(f"{API}/clients/{leaving}/archive", headers=h)
    assert archived.status_code == 200, archived.text
    tickets = fresh_client.get(f"{API}/tickets", headers=h, params={"client_id": leaving})
    had = tickets.json()["data"]["total"]
    for path, body in (
        ("tickets", {"subject": "Printer jam", "client_id": leaving}),
        ("contracts", {"name": "Pay as you go", "client_id": leaving, "type": "pay-as-you-go",
                       "start_date": _today(), "sla_tier": "Bronze"}),
    ):
        refused = fresh_client.post(f"{API}/{path}", headers=h, json=body)
        assert refused.status_code == 400, (path, refused.text)
        error = refused.json()["error"]
        assert [d["field"] for d in error["details"]] == ["client_id"], error
        assert "left" in error["message"], error
    tickets = fresh_client.get(f"{API}/tickets", headers=h, params={"client_id": leaving})
    assert tickets.json()["data"]["total"] == had > 0
    old = tickets.json()["data"]["items"][0]["id"]
    kept = fresh_client.patch(f"{API}/tickets/{old}", headers=h, json={"subject": "Renamed"})
    assert kept.status_code == 200, kept.text


def test_a_contract_whose_name_contradicts_its_type_or_tier_is_refused(
    fresh_client: TestClient,
) -> None:
    """The names say what a contract sells ("Standard MSP - Gold tier", "Block hours 40h"): a
    write whose name says another tier or type is refused naming the field that disagrees."""
    h = _owner(fresh_client)
    base = {"client_id": "cli_acme", "start_date": _today()}
    for body, field in (
        ({"name": "Managed service per device - Gold tier", "type": "per-asset"}, "sla_tier"),
        ({"name": "Block hours 40h - Bronze tier", "type": "pay-as-you-go",
          "sla_tier": "Bronze"}, "type"),
        ({"name": "Pay as you go", "type": "block", "block_hours": 10}, "type"),
    ):
        refused = fresh_client.post(f"{API}/contracts", headers=h, json={**base, **body})
        assert refused.status_code == 400, (body, refused.text)
        assert [d["field"] for d in refused.json()["error"]["details"]] == [field], refused.text
    good = {"name": "Block hours 40h - Bronze tier", "type": "block", "block_hours": 40,
            "sla_tier": "Bronze"}
    made = fresh_client.post(f"{API}/contracts", headers=h, json={**base, **good})
    assert made.status_code == 201, made.text
    renamed = fresh_client.patch(f"{API}/contracts/{made.json()['data']['id']}", headers=h,
                                 json={"name": "Standard MSP - Gold tier"})
    assert renamed.status_code == 400, renamed.text


def test_a_domain_is_monitored_once(fresh_client: TestClient) -> None:
    """Adding a domain already monitored is a 409 naming `domain`, and changes nothing."""
    h = _owner(fresh_client)
    listed = fresh_client.get(f"{API}/domains", headers=h).json()["data"]
    taken = listed["items"][0]
    again = fresh_client.post(f"{API}/domains", headers=h,
                              json={"client_id": taken["client_id"], "domain": taken["domain"]})
    assert again.status_code == 409, again.text
    assert [d["field"] for d in again.json()["error"]["details"]] == ["domain"]
    assert fresh_client.get(f"{API}/domains", headers=h).json()["data"]["total"] == listed["total"]
    # a name the seeded world never makes (its labels are www, portal, shop and mail)
    other = {"client_id": taken["client_id"], "domain": f"status.{taken['domain']}"}
    assert fresh_client.post(f"{API}/domains", headers=h, json=other).status_code == 201


def test_ssl_thresholds_with_the_warning_after_critical_are_refused_on_create_and_update(
    fresh_client: TestClient,
) -> None:
    """A domain whose warning would come after critical (fewer warning days than critical ones)
    is refused naming `ssl_warning_days`, on a create and on an update of either threshold, and
    nothing changes; equal thresholds (no warning stage) are accepted."""
    h = _owner(fresh_client)
    before = fresh_client.get(f"{API}/domains", headers=h).json()["data"]["total"]
    body = {"client_id": "cli_acme", "domain": "status.acmecorp.co.uk",
            "ssl_warning_days": 7, "ssl_critical_days": 30}
    refused = fresh_client.post(f"{API}/domains", headers=h, json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in refused.json()["error"]["details"]] == ["ssl_warning_days"]
    assert "ssl_critical_days" in refused.json()["error"]["message"]
    assert fresh_client.get(f"{API}/domains", headers=h).json()["data"]["total"] == before
    made = fresh_client.post(f"{API}/domains", headers=h,
                             json={**body, "ssl_warning_days": 14, "ssl_critical_days": 14})
    assert made.status_code == 201, made.text
    did = made.json()["data"]["id"]
    for change in ({"ssl_critical_days": 20}, {"ssl_warning_days": 10}):
        r = fresh_client.patch(f"{API}/domains/{did}", headers=h, json=change)
        assert r.status_code == 400, (change, r.text)
        assert [d["field"] for d in r.json()["error"]["details"]] == ["ssl_warning_days"]
    shown = fresh_client.get(f"{API}/domains/{did}", headers=h).json()["data"]
    assert (shown["ssl_warning_days"], shown["ssl_critical_days"]) == (14, 14)

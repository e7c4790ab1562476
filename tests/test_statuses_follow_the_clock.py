"""Statuses the spec derives from the clock follow it on every read, not only when a record is
written: an Open invoice is Overdue once its due date has passed, an active contract has ended
once its end date has, a domain whose certificate expires within its warning or critical days
says so. Lists filter and sort on what clients see, and a workspace whose clock moved sees its
own time."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from litestar.testing import TestClient

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world, load_recipe
from opsmerge_sandbox.world.invariants import invariant_problems
from tests.conftest import advance_clock, at, every_record, sandbox_now

H = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}


def _stored(spec: Spec, collection: str, status: str) -> list[dict[str, Any]]:
    """Records the seeded world stores with this status (what a read showed before)."""
    return [r for r in build_world(spec, load_recipe())[collection] if r["status"] == status]


def test_an_open_invoice_past_its_due_date_reads_overdue_without_a_write(
    client: TestClient[Any], spec: Spec
) -> None:
    today = sandbox_now(client).date()
    stored = _stored(spec, "invoices", "Open")
    late = [i for i in stored if date.fromisoformat(i["due_date"]) < today]
    assert late  # the seeded world is older than its invoices' terms
    for invoice in late:
        shown = client.get(f"/api/v1/invoices/{invoice['id']}", headers=H).json()["data"]
        assert shown["status"] == "Overdue", invoice["id"]
    for invoice in every_record(client, "/api/v1/invoices", H):
        if invoice["status"] in ("Open", "Overdue"):
            overdue = date.fromisoformat(invoice["due_date"]) < today
            assert (invoice["status"] == "Overdue") is overdue, invoice["id"]


def test_the_status_filter_and_sort_judge_what_clients_see(client: TestClient[Any]) -> None:
    listed = every_record(client, "/api/v1/invoices", H)
    overdue = {i["id"] for i in listed if i["status"] == "Overdue"}
    assert overdue
    filtered = every_record(client, "/api/v1/invoices", H, status="Overdue")
    assert {i["id"] for i in filtered} == overdue
    page = client.get("/api/v1/invoices", headers=H, params={"status": "Overdue"}).json()["data"]
    assert page["total"] == len(overdue)
    opened = every_record(client, "/api/v1/invoices", H, status="Open")
    assert {i["id"] for i in opened} == {i["id"] for i in listed if i["status"] == "Open"}


def test_an_active_contract_past_its_end_date_reads_ended(
    client: TestClient[Any], spec: Spec
) -> None:
    # a workspace whose clock is past the seeded contracts' end dates (whatever the real date)
    workspace = f"ended-{uuid.uuid4().hex[:8]}"
    advance_clock(client, workspace, 800 * 86_400)
    h = {**H, "X-Sandbox-Workspace": workspace}
    today = sandbox_now(client, workspace).date()
    stored = _stored(spec, "contracts", "active")
    past = [c for c in stored if c["end_date"] and date.fromisoformat(c["end_date"]) < today]
    assert past
    for contract in past:
        shown = client.get(f"/api/v1/contracts/{contract['id']}", headers=h).json()["data"]
        assert shown["status"] == "ended", contract["id"]
    active = {c["id"] for c in every_record(client, "/api/v1/contracts", h, status="active")}
    assert not active & {c["id"] for c in past}


def test_a_workspace_whose_clock_moved_sees_certificates_near_expiry(
    client: TestClient[Any],
) -> None:
    ws = f"ssl-{uuid.uuid4().hex[:8]}"
    headers = {**H, "X-Sandbox-Workspace": ws}
    before = {d["id"]: d for d in every_record(client, "/api/v1/domains", headers)}
    advance_clock(client, ws, 200 * 86_400)
    now = sandbox_now(client, ws)
    moved = 0
    for domain in every_record(client, "/api/v1/domains", headers):
        expires = domain["ssl_expires_at"]
        if expires is None:
            continue
        left = at(expires) - now
        if left < timedelta(days=domain["ssl_critical_days"]):
            assert domain["status"] == "critical", domain["id"]
        elif left < timedelta(days=domain["ssl_warning_days"]):
            assert domain["status"] in ("warning", "critical"), domain["id"]
        moved += domain["status"] != before[domain["id"]]["status"]
    assert moved  # what the moved clock changed, only in that workspace
    default = {d["id"]: d["status"] for d in every_record(client, "/api/v1/domains", H)}
    assert default == {i: d["status"] for i, d in before.items()}
    assert now > datetime.now(UTC) + timedelta(days=199)


def test_spec_check_refuses_on_read_without_a_fix_to_derive() -> None:
    lamp = {
        "properties": {"status": {"type": "string"}, "due": {"type": "string"}},
        "x-invariants": [
            {
                "id": "lit-until-due",
                "class": "time",
                "on-write": "refuse",
                "on-read": "derive",
                "require": {"due": {"not-before": "$today"}},
            }
        ],
    }
    [(collection, problem)] = invariant_problems({"lamps": lamp})
    assert collection == "lamps" and "on-read" in problem


def test_a_domain_without_a_certificate_reading_is_not_critical_for_its_certificate(
    client: TestClient[Any],
) -> None:
    """No expiry date is no expiry: the certificate rules judge a date the SSL check read."""
    ws = f"nossl-{uuid.uuid4().hex[:8]}"
    headers = {**H, "X-Sandbox-Workspace": ws}
    unread = [d for d in every_record(client, "/api/v1/domains", headers)
              if d["ssl_expires_at"] is None]  # fmt: skip
    assert unread
    assert sum(d["status"] == "ok" for d in unread) > len(unread) / 2, unread
    made = []
    for checks in (None, ["http", "dns"], ["ssl"]):
        name = f"{uuid.uuid4().hex[:8]}.acmecorp.co.uk"
        body: dict[str, Any] = {"client_id": "cli_acme", "domain": name}
        if checks is not None:
            body["checks"] = checks
        r = client.post("/api/v1/domains", json=body, headers=headers)
        assert r.status_code == 201, r.text
        assert (r.json()["data"]["status"], r.json()["data"]["ssl_expires_at"]) == ("ok", None)
        made.append(r.json()["data"]["id"])
    advance_clock(client, ws, 7200)
    for rid in made:
        read = client.get(f"/api/v1/domains/{rid}", headers=headers).json()["data"]
        assert read["status"] == "ok", read


def test_a_contract_signed_to_start_later_is_scheduled_until_its_start_date(
    client: TestClient[Any],
) -> None:
    ws = f"later-{uuid.uuid4().hex[:8]}"
    headers = {**H, "X-Sandbox-Workspace": ws}
    start = (sandbox_now(client, ws) + timedelta(days=30)).date().isoformat()
    body = {"client_id": "cli_acme", "name": "Per device from next month", "type": "per-asset",
            "start_date": start, "hourly_rate": 95}  # fmt: skip
    r = client.post("/api/v1/contracts", json=body, headers=headers)
    assert r.status_code == 201 and r.json()["data"]["status"] == "scheduled", r.text
    rid = r.json()["data"]["id"]
    listed = client.get("/api/v1/contracts?status=scheduled", headers=headers).json()["data"]
    assert [c["id"] for c in listed["items"]] == [rid]
    active = client.get("/api/v1/contracts?status=active&per_page=100", headers=headers)
    assert rid not in {c["id"] for c in active.json()["data"]["items"]}
    advance_clock(client, ws, 31 * 86_400)
    assert client.get(f"/api/v1/contracts/{rid}", headers=headers).json()["data"]["status"] == (
        "active"
    )
    # a scheduled contract can be called off before it starts
    r = client.post("/api/v1/contracts", json=body | {"start_date": "2099-01-01"}, headers=headers)
    r = client.post(f"/api/v1/contracts/{r.json()['data']['id']}/void", headers=headers)
    assert r.status_code == 200 and r.json()["data"]["status"] == "voided", r.text

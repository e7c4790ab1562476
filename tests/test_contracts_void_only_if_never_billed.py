"""A contract is voided only when it was never taken up: while an invoice that bills it stands
(not voided), voiding it answers 409 CONFLICT naming the invoices and changes nothing; it is
ended instead (its `end_date` set). Before, a contract the recurring run had billed was voided
and its paid invoices went on billing a voided contract, which the sandbox refuses for any
invoice written (`bills-a-contract-not-voided`) and no seeded record shows."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from litestar.testing import TestClient

from tests.conftest import bearer, conflict, every_record, key_named, sandbox_now

API = "/api/v1"
STANDING = {"Draft", "Open", "Paid", "Overdue"}


def _owner(c: TestClient) -> dict[str, str]:
    return bearer(key_named(c.app, "Owner - full"))


def _billing(c: TestClient, h: dict[str, str], contract_id: str) -> list[dict[str, Any]]:
    """The invoices that bill the contract (the list has no filter by contract)."""
    return [i for i in every_record(c, f"{API}/invoices", h) if i["contract_id"] == contract_id]


def _standing(c: TestClient, h: dict[str, str], contract_id: str) -> list[str]:
    return [i["id"] for i in _billing(c, h, contract_id) if i["status"] in STANDING]


def _voided_entries(c: TestClient, h: dict[str, str], contract_id: str) -> int:
    log = every_record(c, f"{API}/audit-log", h, action="contract.voided")
    return sum(e["object_id"] == contract_id for e in log)


def _refused(c: TestClient, h: dict[str, str], contract_id: str) -> dict[str, Any]:
    return conflict(c, f"{API}/contracts/{contract_id}/void", h)


def test_a_billed_contract_is_not_voided_and_nothing_changes(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    in_force = [x for x in every_record(c, f"{API}/contracts", h)
                if x["status"] in ("active", "scheduled")]
    billed = [x for x in in_force if _standing(c, h, x["id"])]
    assert billed, "the seeded world bills its contracts in force"
    for contract in billed[:3]:
        invoices = _standing(c, h, contract["id"])
        invoices_before = _billing(c, h, contract["id"])
        error = _refused(c, h, contract["id"])
        assert "has billed" in error["message"]
        named = re.findall(r"inv_[0-9a-z]+", error["message"])
        assert named and set(named) <= set(invoices) and len(named) == min(3, len(invoices))
        assert error["details"][0]["location"] == "path"
        got = c.get(f"{API}/contracts/{contract['id']}", headers=h).json()["data"]
        assert got == contract
        assert _billing(c, h, contract["id"]) == invoices_before
        assert _voided_entries(c, h, contract["id"]) == 0


def test_a_billed_contract_is_ended_instead(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    contract = next(x for x in every_record(c, f"{API}/contracts", h)
                    if x["status"] == "active" and _standing(c, h, x["id"]))
    yesterday = (sandbox_now(c) - timedelta(days=1)).date().isoformat()
    ended = c.patch(f"{API}/contracts/{contract['id']}", headers=h, json={"end_date": yesterday})
    assert ended.status_code == 200, ended.text
    assert ended.json()["data"]["status"] == "ended"
    # ended, it is no longer in force, and voiding it is refused for that reason
    assert "needs status" in _refused(c, h, contract["id"])["message"]


def test_a_contract_voids_once_its_every_invoice_is_voided(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    today = sandbox_now(c).date().isoformat()
    made = c.post(f"{API}/contracts", headers=h, json={
        "name": "Pay as you go", "client_id": "cli_acme", "type": "pay-as-you-go",
        "start_date": today, "sla_tier": "Bronze"})
    assert made.status_code == 201, made.text
    contract_id = made.json()["data"]["id"]
    invoice = c.post(f"{API}/invoices", headers=h, json={
        "client_id": "cli_acme", "contract_id": contract_id,
        "lines": [{"description": "Set-up", "quantity": 1, "unit_price": 100.0}]})
    assert invoice.status_code == 201, invoice.text
    invoice_id = invoice.json()["data"]["id"]
    assert invoice_id in _refused(c, h, contract_id)["message"]
    assert c.post(f"{API}/invoices/{invoice_id}/void", headers=h).status_code == 200
    voided = c.post(f"{API}/contracts/{contract_id}/void", headers=h)
    assert voided.status_code == 200, voided.text
    assert voided.json()["data"]["status"] == "voided"
    assert _voided_entries(c, h, contract_id) == 1


def test_no_seeded_voided_contract_has_an_invoice_standing(
    seeded_world: dict[str, list[dict[str, Any]]],
) -> None:
    voided = {x["id"] for x in seeded_world["contracts"] if x["status"] == "voided"}
    assert voided
    standing = [i["id"] for i in seeded_world["invoices"]
                if i["contract_id"] in voided and i["status"] in STANDING]
    assert standing == []

"""An invoice under a contract is issued while the contract runs, from its start date to its end
date, as every seeded run is: one made by hand today for a contract that ended in the summer is
refused naming `issue_date`, and changes nothing (later work is billed without the contract).
Before, it was accepted."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from litestar.testing import TestClient

from tests.conftest import bearer, every_record, key_named

API = "/api/v1"
LINE = {"description": "Onsite visit", "quantity": 1, "unit_price": 65.0,
        "tax_code": "VAT Standard 20%"}


def _owner(c: TestClient) -> dict[str, str]:
    return bearer(key_named(c.app, "Owner - full"))


def _contract(c: TestClient, h: dict[str, str], status: str) -> dict[str, Any]:
    found = [x for x in every_record(c, f"{API}/contracts", h) if x["status"] == status]
    assert found, status
    return found[0]


def _body(contract: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"client_id": contract["client_id"], "contract_id": contract["id"], "lines": [LINE],
            **more}


def _invoices(c: TestClient, h: dict[str, str]) -> int:
    total: int = c.get(f"{API}/invoices", headers=h).json()["data"]["total"]
    return total


def _refused_naming_issue_date(answer: Any) -> None:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert [(d["location"], d["field"]) for d in error["details"]] == [("body", "issue_date")]
    assert "while the contract runs" in error["message"]


def test_an_invoice_today_under_a_contract_that_ended_is_refused(
    fresh_client: TestClient,
) -> None:
    c, h = fresh_client, _owner(fresh_client)
    ended = _contract(c, h, "ended")
    before = _invoices(c, h)
    _refused_naming_issue_date(c.post(f"{API}/invoices", headers=h, json=_body(ended)))
    assert _invoices(c, h) == before
    # the same work, billed without the contract, goes through
    alone = c.post(f"{API}/invoices", headers=h,
                   json={"client_id": ended["client_id"], "lines": [LINE]})
    assert alone.status_code == 201, alone.text


def test_an_invoice_on_the_last_day_of_a_contract_is_issued(fresh_client: TestClient) -> None:
    c, h = fresh_client, _owner(fresh_client)
    ended = _contract(c, h, "ended")
    made = c.post(f"{API}/invoices", headers=h,
                  json=_body(ended, issue_date=ended["end_date"]))
    assert made.status_code == 201, made.text


def test_an_invoice_dated_before_its_contract_started_is_refused(
    fresh_client: TestClient,
) -> None:
    c, h = fresh_client, _owner(fresh_client)
    active = _contract(c, h, "active")
    early = (date.fromisoformat(active["start_date"]) - timedelta(days=1)).isoformat()
    _refused_naming_issue_date(
        c.post(f"{API}/invoices", headers=h, json=_body(active, issue_date=early))
    )


def test_a_draft_moved_past_its_contracts_end_is_refused_and_keeps_its_date(
    fresh_client: TestClient,
) -> None:
    c, h = fresh_client, _owner(fresh_client)
    ended = _contract(c, h, "ended")
    draft = c.post(f"{API}/invoices", headers=h,
                   json=_body(ended, issue_date=ended["end_date"])).json()["data"]
    late = (date.fromisoformat(ended["end_date"]) + timedelta(days=1)).isoformat()
    moved = c.patch(f"{API}/invoices/{draft['id']}", headers=h, json={"issue_date": late})
    _refused_naming_issue_date(moved)
    kept = c.get(f"{API}/invoices/{draft['id']}", headers=h).json()["data"]
    assert kept["issue_date"] == ended["end_date"]

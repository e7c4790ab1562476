"""An invoice's life through the API as the help pages tell it: every invoice made starts as a
Draft (whatever dates it is given) and is sent to leave it; once it has left Draft, what it bills
(its lines, client, contract, currency and dates) stays as it was issued, so a Paid invoice's
total can never move under the payment that settled it. The refusal is a 409 naming the field,
and changes nothing."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.conftest import every_record

H = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}
LINE = {"description": "Onsite visit", "quantity": 1, "unit_price": 90}
FIXED = {
    "lines": [{**LINE, "quantity": 5}],
    "issue_date": "2025-03-01",
    "due_date": "2027-01-31",
}


def _client_id(client: TestClient[Any]) -> str:
    return str(every_record(client, "/api/v1/clients", H, status="active")[0]["id"])


def _make(client: TestClient[Any], **given: Any) -> dict[str, Any]:
    body = {"client_id": _client_id(client), "lines": [LINE], **given}
    made = client.post("/api/v1/invoices", json=body, headers=H)
    assert made.status_code == 201, made.text
    return dict(made.json()["data"])


def test_an_invoice_made_with_dates_in_the_past_starts_as_a_draft_and_can_be_sent(
    fresh_client: TestClient[Any],
) -> None:
    made = _make(fresh_client, issue_date="2026-08-03", due_date="2026-09-02")
    assert made["status"] == "Draft"
    sent = fresh_client.post(f"/api/v1/invoices/{made['id']}/send", headers=H)
    assert sent.status_code == 200, sent.text
    assert sent.json()["data"]["status"] == "Overdue"  # sent after its due date had passed


def test_a_draft_stays_a_draft_when_it_is_edited_weeks_later(
    fresh_client: TestClient[Any],
) -> None:
    made = _make(fresh_client, issue_date="2026-08-03")
    edited = fresh_client.patch(
        f"/api/v1/invoices/{made['id']}", json={"notes": "Thanks"}, headers=H
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["data"]["status"] == "Draft"


def test_an_issued_invoice_keeps_what_it_bills(fresh_client: TestClient[Any]) -> None:
    made = _make(fresh_client)
    path = f"/api/v1/invoices/{made['id']}"
    assert fresh_client.post(f"{path}/send", headers=H).status_code == 200
    for status in ("Open", "Paid"):
        if status == "Paid":
            paid = fresh_client.post(f"{path}/mark-paid", headers=H)
            assert paid.status_code == 200, paid.text
        before = fresh_client.get(path, headers=H).json()["data"]
        assert before["status"] == status
        other = next(c["id"] for c in every_record(fresh_client, "/api/v1/clients", H,
                                                    status="active")
                     if c["id"] != before["client_id"])
        for field, value in [*FIXED.items(), ("client_id", other)]:
            refused = fresh_client.patch(path, json={field: value}, headers=H)
            assert refused.status_code == 409, (status, field, refused.text)
            error = refused.json()["error"]
            assert error["code"] == "CONFLICT" and field in error["message"], error
            assert [d["field"] for d in error["details"]] == [field], error
        assert fresh_client.get(path, headers=H).json()["data"] == before
        noted = fresh_client.patch(path, json={"notes": "Paid with thanks"}, headers=H)
        assert noted.status_code == 200, noted.text
        assert noted.json()["data"]["total"] == before["total"]


def test_a_draft_can_still_be_corrected(fresh_client: TestClient[Any]) -> None:
    made = _make(fresh_client)
    fixed = fresh_client.patch(
        f"/api/v1/invoices/{made['id']}", json={"lines": [{**LINE, "quantity": 2}]}, headers=H
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["data"]["total"] == 2 * made["total"]

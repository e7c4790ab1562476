"""Numbering and defaults the help pages document, through the HTTP API.

Invoice numbers (`INV-YYYY-NNNN`, gapless within the issue date's year), invoice due dates and
billing contacts, one primary contact per client, and the ticket-numbering settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline import sequences
from opsmerge_sandbox.pipeline.strict import StrictChecker
from tests.conftest import ADMIN, bearer, every_record, key_named, make_app

API = "/api/v1"
LINES = [{"description": "Managed service", "quantity": 2, "unit_price": 40}]
NUMBER = re.compile(r"^INV-(\d{4})-(\d{4,})$")


@pytest.fixture()
def h(fresh_client: TestClient) -> dict[str, str]:
    return bearer(key_named(fresh_client.app, "Owner - full"))


def _highest(invoices: list[dict[str, Any]], year: int) -> int:
    found = [NUMBER.match(i["number"]) for i in invoices]
    return max((int(m[2]) for m in found if m and int(m[1]) == year), default=0)


def _invoice(client: TestClient, h: dict[str, str], **fields: Any) -> Any:
    return client.post(
        f"{API}/invoices", headers=h, json={"client_id": "cli_acme", "lines": LINES, **fields}
    )


# --- invoice numbers ---------------------------------------------------------------------------


def test_invoice_numbers_continue_the_issue_year_without_gaps(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    invoices = every_record(fresh_client, f"{API}/invoices", h)
    year = int(max(i["issue_date"] for i in invoices)[:4])
    highest = _highest(invoices, year)
    numbers = [
        _invoice(fresh_client, h, issue_date=f"{year}-06-0{day}").json()["data"]["number"]
        for day in (1, 2, 3)
    ]
    assert numbers == [f"INV-{year}-{n:04d}" for n in range(highest + 1, highest + 4)]


def test_invoice_numbers_restart_at_0001_in_the_next_year(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    invoices = every_record(fresh_client, f"{API}/invoices", h)
    next_year = int(max(i["issue_date"] for i in invoices)[:4]) + 1
    first = _invoice(fresh_client, h, issue_date=f"{next_year}-01-02").json()["data"]
    second = _invoice(fresh_client, h, issue_date=f"{next_year}-03-15").json()["data"]
    assert (first["number"], second["number"]) == (
        f"INV-{next_year}-0001",
        f"INV-{next_year}-0002",
    )


@pytest.fixture()
def broken_answers(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """While `on` is set, every write's answer fails strict checking: a refusal that comes
    after the handler numbered and staged the record, as a store failure would."""
    state = {"on": False}
    real = StrictChecker.check

    def check(self: StrictChecker, op: Any, status: int, *args: Any) -> None:
        if state["on"] and op.method in ("POST", "PATCH"):
            raise ApiError("INTERNAL_ERROR", "the answer broke the spec")
        real(self, op, status, *args)

    monkeypatch.setattr(StrictChecker, "check", check)
    return state


def test_a_refused_invoice_takes_no_number(
    fresh_client: TestClient, h: dict[str, str], broken_answers: dict[str, bool]
) -> None:
    before = _invoice(fresh_client, h, issue_date="2030-05-01").json()["data"]["number"]
    assert (
        _invoice(fresh_client, h, issue_date="2030-05-02", due_date="2030-04-01").status_code == 400
    )
    broken_answers["on"] = True
    assert _invoice(fresh_client, h, issue_date="2030-05-02").status_code == 500
    broken_answers["on"] = False
    after = _invoice(fresh_client, h, issue_date="2030-05-03").json()["data"]["number"]
    assert (before, after) == ("INV-2030-0001", "INV-2030-0002")


def test_an_updated_invoice_keeps_its_number_when_its_issue_date_moves(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    made = _invoice(fresh_client, h, issue_date="2031-02-01").json()["data"]
    r = fresh_client.patch(
        f"{API}/invoices/{made['id']}",
        headers=h,
        json={"issue_date": "2032-01-10", "due_date": "2032-02-10"},
    )
    assert r.status_code == 200 and r.json()["data"]["number"] == made["number"] == "INV-2031-0001"
    again = _invoice(fresh_client, h, issue_date="2031-03-01").json()["data"]
    assert again["number"] == "INV-2031-0002"


@pytest.mark.interpreted
def test_an_invoice_number_reads_only_the_invoices_created_since_the_last_one(
    fresh_client: TestClient, h: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next number once read every invoice the workspace had created (a create slowed as
    they grew); now each is read once, and all again only after one of them changed."""
    numbers = [
        _invoice(fresh_client, h, issue_date=f"2033-01-{d:02d}").json()["data"] for d in (1, 2, 3)
    ]
    read: list[int] = []
    real = sequences._by_year

    def counting(pattern: Any, field: str, records: Any, out: Any = None) -> dict[int, int]:
        records = list(records)
        read.append(len(records))
        return real(pattern, field, records, out)

    monkeypatch.setattr(sequences, "_by_year", counting)
    for d in (4, 5, 6, 7):
        made = _invoice(fresh_client, h, issue_date=f"2033-01-{d:02d}").json()["data"]
        assert made["number"] == f"INV-2033-{d:04d}"
    assert read == [1, 1, 1, 1]  # the one created since the last number was taken
    read.clear()
    r = fresh_client.patch(
        f"{API}/invoices/{numbers[0]['id']}", headers=h, json={"notes": "changed"}
    )
    assert r.status_code == 200, r.text
    assert _invoice(fresh_client, h, issue_date="2033-02-01").json()["data"]["number"] == (
        "INV-2033-0008"
    )
    assert read == [7]  # a created invoice changed: all of them again, once


@pytest.fixture()
def clock_app() -> Iterator[TestClient]:
    """A sandbox of its own: moving its clock cannot disturb the other tests' clock."""
    with TestClient(make_app(), base_url="http://sandbox.local") as c:
        yield c


def test_an_invoice_issued_today_in_a_new_year_on_the_sandbox_clock_is_0001(
    clock_app: TestClient,
) -> None:
    h = bearer(key_named(clock_app.app, "Owner - full"))
    now = datetime.fromisoformat(
        clock_app.get("/_sandbox/clock", headers=ADMIN).json()["data"]["now"].replace("Z", "+00:00")
    )
    new_year = datetime(now.year + 1, 1, 1, 9, tzinfo=now.tzinfo)
    last_year = _invoice(clock_app, h).json()["data"]
    assert last_year["issue_date"] == now.date().isoformat()
    r = clock_app.post(
        "/_sandbox/clock", headers=ADMIN, json={"advance_seconds": (new_year - now).total_seconds()}
    )
    assert r.status_code == 200
    made = _invoice(clock_app, h).json()["data"]
    assert made["issue_date"] == new_year.date().isoformat()
    assert made["number"] == f"INV-{new_year.year}-0001"


# --- due dates and billing contacts -------------------------------------------------------------


def test_an_invoice_without_a_due_date_is_due_thirty_days_after_issue(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    made = _invoice(fresh_client, h, issue_date="2026-12-15").json()["data"]
    assert made["due_date"] == (date(2026, 12, 15) + timedelta(days=30)).isoformat()
    given = _invoice(fresh_client, h, issue_date="2026-12-15", due_date="2026-12-20")
    assert given.json()["data"]["due_date"] == "2026-12-20"


def test_a_due_date_before_the_issue_date_is_refused_naming_the_field(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    r = _invoice(fresh_client, h, issue_date="2026-12-15", due_date="2026-12-14")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in error["details"]] == ["due_date"]
    made = _invoice(fresh_client, h, issue_date="2026-12-15").json()["data"]
    r = fresh_client.patch(
        f"{API}/invoices/{made['id']}", headers=h, json={"due_date": "2026-11-01"}
    )
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "due_date"
    r = fresh_client.patch(
        f"{API}/invoices/{made['id']}", headers=h, json={"issue_date": "2027-06-01"}
    )
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "due_date"
    kept = fresh_client.get(f"{API}/invoices/{made['id']}", headers=h).json()["data"]
    assert (kept["issue_date"], kept["due_date"]) == (made["issue_date"], made["due_date"])


def _client(client: TestClient, h: dict[str, str]) -> str:
    r = client.post(f"{API}/clients", headers=h, json={"name": "Numbering Test Ltd"})
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


def _contact(client: TestClient, h: dict[str, str], client_id: str, **flags: Any) -> Any:
    body = {"client_id": client_id, "name": "Pat Example", "email": "pat@example.org", **flags}
    r = client.post(f"{API}/contacts", headers=h, json=body)
    assert r.status_code == 201, r.text
    return r.json()["data"]


def test_an_invoice_goes_to_the_client_billing_contact_unless_told_otherwise(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    cid = _client(fresh_client, h)
    lonely = _invoice(fresh_client, h, client_id=cid).json()["data"]
    assert lonely["billing_contact_id"] is None  # the client has no billing contact yet
    other = _contact(fresh_client, h, cid)
    billing = _contact(fresh_client, h, cid, is_billing=True)
    assert (
        _invoice(fresh_client, h, client_id=cid).json()["data"]["billing_contact_id"]
        == (billing["id"])
    )
    chosen = _invoice(fresh_client, h, client_id=cid, billing_contact_id=other["id"])
    assert chosen.json()["data"]["billing_contact_id"] == other["id"]
    none = _invoice(fresh_client, h, client_id=cid, billing_contact_id=None)
    assert none.json()["data"]["billing_contact_id"] is None


# --- one primary contact per client ------------------------------------------------------------


def _primaries(client: TestClient, h: dict[str, str], client_id: str) -> list[str]:
    contacts = every_record(client, f"{API}/contacts", h, client_id=client_id)
    return [c["id"] for c in contacts if c["is_primary"]]


def test_making_a_contact_primary_takes_the_flag_from_the_previous_one(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    cid = _client(fresh_client, h)
    first = _contact(fresh_client, h, cid, is_primary=True)
    second = _contact(fresh_client, h, cid, is_primary=True)
    assert _primaries(fresh_client, h, cid) == [second["id"]]
    r = fresh_client.patch(f"{API}/contacts/{first['id']}", headers=h, json={"is_primary": True})
    assert r.status_code == 200 and r.json()["data"]["is_primary"] is True
    assert _primaries(fresh_client, h, cid) == [first["id"]]


def test_a_seeded_client_ends_with_exactly_one_primary_contact(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    contacts = every_record(fresh_client, f"{API}/contacts", h, client_id="cli_acme")
    chosen = next(c for c in contacts if not c["is_primary"])
    r = fresh_client.patch(f"{API}/contacts/{chosen['id']}", headers=h, json={"is_primary": True})
    assert r.status_code == 200
    assert _primaries(fresh_client, h, "cli_acme") == [chosen["id"]]


def test_a_refused_write_moves_no_primary_flag(
    fresh_client: TestClient, h: dict[str, str], broken_answers: dict[str, bool]
) -> None:
    cid = _client(fresh_client, h)
    holder = _contact(fresh_client, h, cid, is_primary=True)
    other = _contact(fresh_client, h, cid)
    r = fresh_client.patch(
        f"{API}/contacts/{other['id']}",
        headers=h,
        json={"is_primary": True, "client_id": "cli_doesnotexist"},
    )
    assert r.status_code == 422
    broken_answers["on"] = True
    r = fresh_client.patch(f"{API}/contacts/{other['id']}", headers=h, json={"is_primary": True})
    assert r.status_code == 500
    body = {"client_id": cid, "name": "X", "email": "x@example.org", "is_primary": True}
    assert fresh_client.post(f"{API}/contacts", headers=h, json=body).status_code == 500
    broken_answers["on"] = False
    assert _primaries(fresh_client, h, cid) == [holder["id"]]


def test_moving_a_primary_contact_to_another_client_takes_that_client_flag(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    a, b = _client(fresh_client, h), _client(fresh_client, h)
    in_a = _contact(fresh_client, h, a, is_primary=True)
    in_b = _contact(fresh_client, h, b, is_primary=True)
    r = fresh_client.patch(f"{API}/contacts/{in_a['id']}", headers=h, json={"client_id": b})
    assert r.status_code == 200
    assert _primaries(fresh_client, h, b) == [in_a["id"]]
    assert (
        fresh_client.get(f"{API}/contacts/{in_b['id']}", headers=h).json()["data"]["is_primary"]
        is False
    )


def test_a_clients_first_contact_is_its_primary_contact(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    cid = _client(fresh_client, h)
    first = _contact(fresh_client, h, cid, is_primary=False)
    assert first["is_primary"] is True
    second = _contact(fresh_client, h, cid)
    assert second["is_primary"] is False
    assert _primaries(fresh_client, h, cid) == [first["id"]]


def test_the_primary_contact_cannot_be_unflagged_only_replaced(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    for others in (0, 1):
        cid = _client(fresh_client, h)
        holder = _contact(fresh_client, h, cid, is_primary=True)
        for _ in range(others):
            _contact(fresh_client, h, cid)
        r = fresh_client.patch(
            f"{API}/contacts/{holder['id']}", headers=h, json={"is_primary": False}
        )
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert [d["field"] for d in error["details"]] == ["is_primary"]
        assert _primaries(fresh_client, h, cid) == [holder["id"]]
    r = fresh_client.patch(
        "/api/v1/contacts/con_acmejane", headers=h, json={"is_primary": False}
    )  # a seeded client's primary contact too
    assert r.status_code == 400 and _primaries(fresh_client, h, "cli_acme") == ["con_acmejane"]


def test_deleting_or_moving_the_primary_contact_passes_the_flag_to_the_earliest_left(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    cid, elsewhere = _client(fresh_client, h), _client(fresh_client, h)
    holder = _contact(fresh_client, h, cid, is_primary=True)
    earliest = _contact(fresh_client, h, cid)
    latest = _contact(fresh_client, h, cid)
    r = fresh_client.delete(f"{API}/contacts/{holder['id']}", headers=h)
    assert r.status_code == 200, r.text
    assert _primaries(fresh_client, h, cid) == [earliest["id"]]
    r = fresh_client.patch(f"{API}/contacts/{earliest['id']}", headers=h,
                           json={"client_id": elsewhere})  # fmt: skip
    assert r.status_code == 200, r.text
    assert _primaries(fresh_client, h, cid) == [latest["id"]]
    assert _primaries(fresh_client, h, elsewhere) == [earliest["id"]]
    assert fresh_client.delete(f"{API}/contacts/{latest['id']}", headers=h).status_code == 200
    assert _primaries(fresh_client, h, cid) == []  # no contacts, no primary


# --- ticket numbering settings -----------------------------------------------------------------

SETTINGS = f"{API}/settings/ticket-numbering"


def _ticket(client: TestClient, h: dict[str, str], **fields: Any) -> Any:
    body = {"subject": "Printer offline", "client_id": "cli_acme", **fields}
    return client.post(f"{API}/tickets", headers=h, json=body)


def test_a_new_next_number_applies_to_the_next_ticket(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    current = fresh_client.get(SETTINGS, headers=h).json()["data"]["next_number"]
    wanted = current + 500
    r = fresh_client.patch(SETTINGS, headers=h, json={"next_number": wanted})
    assert r.status_code == 200 and r.json()["data"]["next_number"] == wanted
    first = _ticket(fresh_client, h).json()["data"]
    second = _ticket(fresh_client, h, type="Problem").json()["data"]
    assert (first["number"], first["reference"]) == (wanted, f"INC-{wanted}")
    assert (second["number"], second["reference"]) == (wanted + 1, f"PRB-{wanted + 1}")
    assert fresh_client.get(SETTINGS, headers=h).json()["data"]["next_number"] == wanted + 2


def test_the_next_ticket_number_follows_the_setting_without_any_change(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    current = fresh_client.get(SETTINGS, headers=h).json()["data"]["next_number"]
    assert _ticket(fresh_client, h).json()["data"]["number"] == current
    assert fresh_client.get(SETTINGS, headers=h).json()["data"]["next_number"] == current + 1


def test_next_number_may_only_move_forward(fresh_client: TestClient, h: dict[str, str]) -> None:
    current = fresh_client.get(SETTINGS, headers=h).json()["data"]
    r = fresh_client.patch(SETTINGS, headers=h, json={"next_number": current["next_number"] - 1})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in error["details"]] == ["next_number"]
    assert fresh_client.get(SETTINGS, headers=h).json()["data"] == current


def test_a_refused_ticket_does_not_move_the_next_number(
    fresh_client: TestClient, h: dict[str, str], broken_answers: dict[str, bool]
) -> None:
    current = fresh_client.get(SETTINGS, headers=h).json()["data"]["next_number"]
    assert _ticket(fresh_client, h, client_id="cli_doesnotexist").status_code == 422
    broken_answers["on"] = True
    assert _ticket(fresh_client, h).status_code == 500
    broken_answers["on"] = False
    assert fresh_client.get(SETTINGS, headers=h).json()["data"]["next_number"] == current
    assert _ticket(fresh_client, h).json()["data"]["number"] == current


def test_a_prefix_applies_to_new_tickets_of_its_type_and_keeps_the_others(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    before = fresh_client.get(SETTINGS, headers=h).json()["data"]["prefixes"]
    seeded = every_record(fresh_client, f"{API}/tickets", h, client_id="cli_acme")
    old = next(t for t in seeded if t["type"] == "Service Request")
    r = fresh_client.patch(SETTINGS, headers=h, json={"prefixes": {"service_request": "SR"}})
    assert r.status_code == 200
    assert r.json()["data"]["prefixes"] == {**before, "service_request": "SR"}
    made = _ticket(fresh_client, h, type="Service Request").json()["data"]
    assert made["reference"] == f"SR-{made['number']}"
    incident = _ticket(fresh_client, h, type="Incident").json()["data"]
    assert incident["reference"] == f"{before['incident']}-{incident['number']}"
    # an existing ticket keeps its reference until its type changes
    r = fresh_client.patch(f"{API}/tickets/{old['id']}", headers=h, json={"status": "Open"})
    assert r.json()["data"]["reference"] == old["reference"]
    r = fresh_client.patch(
        f"{API}/tickets/{incident['id']}", headers=h, json={"type": "Service Request"}
    )
    assert r.json()["data"]["reference"] == f"SR-{incident['number']}"


def test_a_blank_prefix_means_the_built_in_one(fresh_client: TestClient, h: dict[str, str]) -> None:
    before = fresh_client.get(SETTINGS, headers=h).json()["data"]["prefixes"]
    fresh_client.patch(SETTINGS, headers=h, json={"prefixes": {"task": "JOB"}})
    assert _ticket(fresh_client, h, type="Task").json()["data"]["reference"].startswith("JOB-")
    fresh_client.patch(SETTINGS, headers=h, json={"prefixes": {"task": None}})
    made = _ticket(fresh_client, h, type="Task").json()["data"]
    assert made["reference"] == f"{before['task']}-{made['number']}"

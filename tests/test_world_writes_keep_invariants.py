"""Writes through the API are judged by the `x-invariants` marked `on-write: refuse`: a record
that breaks one is refused with a 400 naming the field and nothing is stored."""

from __future__ import annotations

from litestar.testing import TestClient

from opsmerge_sandbox.spec import load_spec
from opsmerge_sandbox.world import build_world, load_recipe
from tests.conftest import bearer, key_named

API = "/api/v1"


def _other_clients_contact() -> str:
    world = build_world(load_spec(), load_recipe(), collections=["contacts"])
    return next(c["id"] for c in world["contacts"] if c["client_id"] not in (None, "cli_acme"))


def test_a_ticket_naming_another_clients_contact_is_refused_naming_the_field(
    fresh_client: TestClient,
) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    before = fresh_client.get(f"{API}/tickets", headers=h, params={"per_page": 1}).json()
    body = {"client_id": "cli_acme", "subject": "VPN disconnects every hour",
            "contact_id": _other_clients_contact()}
    r = fresh_client.post(f"{API}/tickets", headers=h, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == "contact_id"
    after = fresh_client.get(f"{API}/tickets", headers=h, params={"per_page": 1}).json()
    assert after["data"]["total"] == before["data"]["total"]  # nothing stored


def test_a_ticket_with_its_own_clients_contact_is_created(fresh_client: TestClient) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    body = {"client_id": "cli_acme", "subject": "VPN disconnects every hour",
            "contact_id": "con_acmejane"}
    r = fresh_client.post(f"{API}/tickets", headers=h, json=body)
    assert r.status_code == 201, r.text


def test_moving_a_tickets_contact_to_another_client_is_refused(fresh_client: TestClient) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    r = fresh_client.patch(
        f"{API}/tickets/tkt_acmeprinter", headers=h, json={"contact_id": _other_clients_contact()}
    )
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "contact_id"
    r = fresh_client.get(f"{API}/tickets/tkt_acmeprinter", headers=h)
    assert r.json()["data"]["contact_id"] == "con_acmejane"


def test_a_contract_ending_before_it_starts_is_refused(fresh_client: TestClient) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    body = {"client_id": "cli_acme", "name": "Pay as you go", "type": "pay-as-you-go",
            "start_date": "2026-06-01", "end_date": "2026-05-01"}
    r = fresh_client.post(f"{API}/contracts", headers=h, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["field"] == "end_date"
    r = fresh_client.post(f"{API}/contracts", headers=h, json={**body, "end_date": "2027-05-31"})
    assert r.status_code == 201, r.text


def test_a_block_hours_contract_without_its_hours_is_refused_naming_the_field(
    fresh_client: TestClient,
) -> None:
    h = bearer(key_named(fresh_client.app, "Owner - full"))
    before = fresh_client.get(f"{API}/contracts", headers=h, params={"per_page": 1}).json()
    body = {"client_id": "cli_acme", "name": "Block hours - 20h", "type": "block",
            "start_date": "2026-06-01"}
    r = fresh_client.post(f"{API}/contracts", headers=h, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"][0]["field"] == "block_hours"
    after = fresh_client.get(f"{API}/contracts", headers=h, params={"per_page": 1}).json()
    assert after["data"]["total"] == before["data"]["total"]  # nothing stored
    r = fresh_client.post(f"{API}/contracts", headers=h, json={**body, "block_hours": 20})
    assert r.status_code == 201, r.text
    made = r.json()["data"]["id"]
    # a block contract keeps its hours, and one made a block takes some
    r = fresh_client.patch(f"{API}/contracts/{made}", headers=h, json={"block_hours": None})
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "block_hours"
    body = {**body, "name": "Pay as you go", "type": "pay-as-you-go"}
    other = fresh_client.post(f"{API}/contracts", headers=h, json=body).json()["data"]["id"]
    r = fresh_client.patch(f"{API}/contracts/{other}", headers=h, json={"type": "block"})
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "block_hours"
    assert fresh_client.get(f"{API}/contracts/{other}", headers=h).json()["data"]["type"] == (
        "pay-as-you-go"
    )

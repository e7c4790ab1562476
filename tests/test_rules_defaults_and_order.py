"""Documented defaults (monitored-domain checks, SLA tiers) and ordinal sorting, through the API."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.spec import load_spec
from tests.conftest import bearer, key_named

API = "/api/v1"
SPEC = load_spec()


@pytest.fixture()
def h(fresh_client: TestClient) -> dict[str, str]:
    return bearer(key_named(fresh_client.app, "Owner - full"))


def test_a_monitored_domain_gets_every_check_unless_it_names_some(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    every = SPEC.collections["domains"].schema["properties"]["checks"]["items"]["enum"]
    body = {"client_id": "cli_acme", "domain": "acmecorp-shop.co.uk"}
    r = fresh_client.post(f"{API}/domains", headers=h, json=body)
    assert r.status_code == 201 and r.json()["data"]["checks"] == every
    r = fresh_client.post(
        f"{API}/domains", headers=h, json={**body, "domain": "acme-two.co.uk", "checks": ["ssl"]}
    )
    assert r.status_code == 201 and r.json()["data"]["checks"] == ["ssl"]


@pytest.mark.parametrize("tier", ["Gold", "Platinum 24x7"])
def test_a_contract_takes_a_documented_or_custom_sla_tier(
    fresh_client: TestClient, h: dict[str, str], tier: str
) -> None:
    body = {
        "client_id": "cli_acme",
        "name": "Server care",
        "type": "block",
        "block_hours": 20,
        "start_date": "2026-01-01",
        "sla_tier": tier,
    }
    r = fresh_client.post(f"{API}/contracts", headers=h, json=body)
    assert r.status_code == 201, r.text
    cid = r.json()["data"]["id"]
    assert fresh_client.get(f"{API}/contracts/{cid}", headers=h).json()["data"]["sla_tier"] == tier


def test_an_empty_sla_tier_is_refused_naming_the_field(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    body = {"client_id": "cli_acme", "name": "X", "type": "block", "block_hours": 20,
            "start_date": "2026-01-01"}
    r = fresh_client.post(f"{API}/contracts", headers=h, json={**body, "sla_tier": ""})
    assert r.status_code == 400
    assert "sla_tier" in [d["field"] for d in r.json()["error"]["details"]]


def _order(collection: str, field: str) -> list[Any]:
    return list(SPEC.collections[collection].schema["properties"][field]["enum"])


def _listed(
    client: TestClient, h: dict[str, str], path: str, sort: str, **params: str
) -> list[dict[str, Any]]:
    r = client.get(f"{API}{path}", headers=h, params={"sort": sort, "per_page": 100, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["items"])


@pytest.mark.parametrize(
    ("path", "collection", "field"),
    [("/tickets", "tickets", "priority"), ("/alerts", "alerts", "severity")],
)
def test_an_ordinal_enum_sorts_by_its_declared_order(
    fresh_client: TestClient, h: dict[str, str], path: str, collection: str, field: str
) -> None:
    order = _order(collection, field)
    up = [order.index(r[field]) for r in _listed(fresh_client, h, path, field)]
    down = [order.index(r[field]) for r in _listed(fresh_client, h, path, f"-{field}")]
    # the lowest and highest ranks the world holds (no alert is raised at `information`)
    assert up == sorted(up) and up[0] < len(order) - 1
    assert down == sorted(down, reverse=True) and down[0] == len(order) - 1 and down[0] > up[0]


def test_a_created_ticket_sorts_by_priority_among_the_seeded_ones(
    fresh_client: TestClient, h: dict[str, str]
) -> None:
    body = {"subject": "Server down", "client_id": "cli_acme", "priority": "Critical"}
    made = fresh_client.post(f"{API}/tickets", headers=h, json=body).json()["data"]
    order = _order("tickets", "priority")
    found = _listed(fresh_client, h, "/tickets", "-priority", client_id="cli_acme")
    ranks = [order.index(t["priority"]) for t in found]
    assert ranks == sorted(ranks, reverse=True)
    assert made["id"] in [t["id"] for t in found if t["priority"] == "Critical"]

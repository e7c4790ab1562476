"""Business rules the help pages document, held by the seeded world and by writes, as an
integrator reads them through the API: a client's ticket priority floor, an invoice billed to a
billing contact, time saved once the work it records was done, and a rule's firing about a
ticket that existed and met its condition."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world, load_recipe
from opsmerge_sandbox.world.generator import GenerationError
from opsmerge_sandbox.world.invariants import hint_problems
from tests.conftest import at, every_record, make_app, records_by_id, spec_with

H = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}
RANKS = {"Low": 0, "Medium": 1, "High": 2, "Critical": 3}


def _by_id(client: TestClient[Any], path: str) -> dict[str, dict[str, Any]]:
    return records_by_id(client, f"/api/v1/{path}", H)


def test_a_ticket_is_no_lower_than_its_clients_priority_floor(client: TestClient[Any]) -> None:
    clients = _by_id(client, "clients")
    judged = 0
    for ticket in every_record(client, "/api/v1/tickets", H):
        floor = clients[ticket["client_id"]]["default_ticket_priority"]
        if floor is not None:
            assert RANKS[ticket["priority"]] >= RANKS[floor], (ticket["id"], floor)
            judged += 1
    assert judged > 10


def test_a_ticket_written_below_the_floor_is_raised_to_it(fresh_client: TestClient[Any]) -> None:
    clients = every_record(fresh_client, "/api/v1/clients", H, status="active")
    floored = next(c for c in clients if c["default_ticket_priority"] in ("High", "Critical"))
    free = next(c for c in clients if c["default_ticket_priority"] is None)
    floor = floored["default_ticket_priority"]
    body = {"subject": "Printer jam", "client_id": floored["id"], "priority": "Low"}
    made = fresh_client.post("/api/v1/tickets", json=body, headers=H)
    assert made.status_code == 201, made.text
    assert made.json()["data"]["priority"] == floor
    ticket_id = made.json()["data"]["id"]
    lowered = fresh_client.patch(
        f"/api/v1/tickets/{ticket_id}", json={"priority": "Low"}, headers=H
    )
    assert lowered.status_code == 200 and lowered.json()["data"]["priority"] == floor
    body = {"subject": "Printer jam", "client_id": free["id"], "priority": "Low"}
    unfloored = fresh_client.post("/api/v1/tickets", json=body, headers=H)
    assert unfloored.status_code == 201 and unfloored.json()["data"]["priority"] == "Low"


def test_an_invoice_is_billed_to_a_billing_contact_of_its_client(client: TestClient[Any]) -> None:
    contacts = _by_id(client, "contacts")
    billed = 0
    for invoice in every_record(client, "/api/v1/invoices", H):
        contact_id = invoice["billing_contact_id"]
        if contact_id is None:
            continue
        contact = contacts[contact_id]
        assert contact["is_billing"] and contact["client_id"] == invoice["client_id"], invoice["id"]
        billed += 1
    assert billed > 100


def test_time_is_saved_once_the_work_it_records_was_done(client: TestClient[Any]) -> None:
    users = _by_id(client, "users")
    entries = every_record(client, "/api/v1/time-entries", H)
    assert entries
    for entry in entries:
        done = at(entry["started_at"]) + timedelta(minutes=entry["duration_minutes"])
        assert done <= at(entry["created_at"]), entry["id"]
        assert users[entry["user_id"]]["created_at"] <= entry["started_at"], entry["id"]


def test_a_rule_fired_on_a_ticket_that_existed_and_met_its_condition(
    client: TestClient[Any],
) -> None:
    fired = 0
    for rule in every_record(client, "/api/v1/ticket-rules", H):
        wanted = {
            c["field"]: c["value"]
            for c in rule["conditions"]["conditions"]
            if c["operator"] == "=" and c["field"] == "priority"
        }
        for firing in every_record(client, f"/api/v1/ticket-rules/{rule['id']}/firings", H):
            ticket = client.get(f"/api/v1/tickets/{firing['subject_id']}", headers=H).json()["data"]
            assert ticket["created_at"] <= firing["fired_at"], firing["id"]
            if "priority" in wanted:
                assert ticket["priority"] == wanted["priority"], firing["id"]
            fired += 1
    assert fired


def test_spec_check_refuses_a_shifted_time_naming_no_field(spec: Spec) -> None:
    schemas = {name: c.schema for name, c in spec.collections.items()}
    entry = copy.deepcopy(schemas["time_entries"])
    entry["properties"]["created_at"]["x-time"]["after"] = "started_at + {nope}m"
    problems = hint_problems({**schemas, "time_entries": entry})
    assert problems == [
        ("time_entries", "properties.created_at: 'nope': 'nope' is not a field of time_entries")
    ]


def test_a_run_finished_within_its_scripts_timeout(client: TestClient[Any]) -> None:
    scripts = _by_id(client, "scripts")
    finished = 0
    for run in every_record(client, "/api/v1/script-runs", H):
        if run["finished_at"] is not None:
            took = at(run["finished_at"]) - at(run["started_at"])
            timeout = timedelta(seconds=scripts[run["script_id"]]["timeout_seconds"])
            assert took <= timeout, run["id"]
            finished += 1
    assert finished > 100


def test_a_run_went_to_endpoints_still_heard_from(client: TestClient[Any]) -> None:
    agents = _by_id(client, "agents")
    clients = _by_id(client, "clients")
    sent = left = 0
    for run in every_record(client, "/api/v1/script-runs", H):
        for agent_id in run["agent_ids"]:
            agent = agents.get(agent_id)
            if agent is None:  # deleted since; the run keeps its name
                continue
            assert run["created_at"] <= agent["last_seen_at"], (run["id"], agent_id)
            owner = clients[agent["client_id"]]
            if owner["status"] == "archived":
                assert run["created_at"] <= owner["updated_at"], (run["id"], agent_id)
                left += 1
            sent += 1
    assert sent > 100 and left > 0


def test_an_invoice_line_comes_in_the_sizes_its_kind_is_sold_in(client: TestClient[Any]) -> None:
    """Block hours are topped up a block at a time: the block of hours the invoice's contract
    sells, at the contract's hourly rate."""
    contracts = _by_id(client, "contracts")
    judged = 0
    for invoice in every_record(client, "/api/v1/invoices", H):
        for item in invoice["lines"]:
            if item["description"] == "Block hours top-up":
                contract = contracts[invoice["contract_id"]]
                assert item["quantity"] == contract["block_hours"], (invoice["id"], item)
                assert item["unit_price"] == contract["hourly_rate"], (invoice["id"], item)
                judged += 1
    assert judged > 5  # enough top-ups to judge (the default world has ten)


# a line kind billed per record its client has: the list of those records
COUNTED = {"Managed service - per device": "agents", "Domain monitoring": "domains"}


def test_a_per_item_line_bills_what_its_client_had_when_the_invoice_was_made(
    client: TestClient[Any],
) -> None:
    """Quantities are "live counts at run time": a run at 00:01 bills the endpoints enrolled by
    then, not those enrolled later that day."""
    held = {kind: every_record(client, f"/api/v1/{path}", H) for kind, path in COUNTED.items()}
    judged: Counter[str] = Counter()
    for invoice in every_record(client, "/api/v1/invoices", H):
        for item in invoice["lines"]:
            if item["description"] not in COUNTED:
                continue
            had = sum(
                1
                for r in held[item["description"]]
                if r["client_id"] == invoice["client_id"]
                and r["created_at"] <= invoice["created_at"]
            )
            assert item["quantity"] == had > 0, (invoice["id"], item, had)
            judged[item["description"]] += 1
    assert all(judged[kind] > 20 for kind in COUNTED), judged


def test_a_lead_has_signed_nothing_and_has_no_managed_endpoints(client: TestClient[Any]) -> None:
    leads = {c["id"] for c in _by_id(client, "clients").values() if c["status"] == "lead"}
    assert leads
    for path in ("contracts", "invoices", "agents"):
        records = every_record(client, f"/api/v1/{path}", H)
        theirs = [r["id"] for r in records if r["client_id"] in leads]
        assert theirs == [], path


def test_every_client_that_signed_has_a_contract_and_only_they_are_invoiced(
    client: TestClient[Any],
) -> None:
    clients = _by_id(client, "clients").values()
    signed = {c["id"] for c in clients if c["status"] != "lead"}
    under_contract = {c["client_id"] for c in every_record(client, "/api/v1/contracts", H)}
    invoiced = {i["client_id"] for i in every_record(client, "/api/v1/invoices", H)}
    assert signed and invoiced
    assert sorted(signed - under_contract) == []
    assert sorted(invoiced - under_contract) == []


def test_a_client_that_left_has_no_active_contract(client: TestClient[Any]) -> None:
    left = {c["id"] for c in _by_id(client, "clients").values() if c["status"] == "archived"}
    theirs = [c for c in every_record(client, "/api/v1/contracts", H) if c["client_id"] in left]
    assert theirs
    for contract in theirs:
        assert contract["status"] in ("ended", "voided"), contract["id"]


def test_a_client_that_left_has_no_work_still_open(client: TestClient[Any]) -> None:
    left = {c["id"] for c in _by_id(client, "clients").values() if c["status"] == "archived"}
    theirs = [t for t in every_record(client, "/api/v1/tickets", H) if t["client_id"] in left]
    assert theirs
    assert [t["id"] for t in theirs if t["status"] not in ("Resolved", "Closed")] == []


def test_a_new_ticket_has_no_answers_and_no_time_logged(client: TestClient[Any]) -> None:
    new = {t["id"] for t in every_record(client, "/api/v1/tickets", H, status="New")}
    assert new
    entries = every_record(client, "/api/v1/time-entries", H)
    assert entries and not [e["id"] for e in entries if e["ticket_id"] in new]
    for ticket_id in sorted(new):
        comments = client.get(f"/api/v1/tickets/{ticket_id}/comments", headers=H).json()["data"]
        assert comments["total"] == 0, ticket_id


def test_answers_and_time_logged_come_no_later_than_their_tickets_last_change() -> None:
    # a read of every ticket's answers: more reads than one key's budget for a minute
    with TestClient(make_app(rate_limit=10_000), base_url="http://sandbox.local") as client:
        _judge_answers_and_time(client)


def _judge_answers_and_time(client: TestClient[Any]) -> None:
    tickets = _by_id(client, "tickets")
    entries = every_record(client, "/api/v1/time-entries", H)
    assert entries
    for entry in entries:
        assert entry["created_at"] <= tickets[entry["ticket_id"]]["updated_at"], entry["id"]
    answered = 0
    for ticket in tickets.values():
        path = f"/api/v1/tickets/{ticket['id']}/comments"
        for comment in every_record(client, path, H):
            assert comment["created_at"] <= ticket["updated_at"], comment["id"]
            answered += 1
    assert answered > 100


def test_logging_time_moves_its_tickets_updated_at(fresh_client: TestClient[Any]) -> None:
    ticket = every_record(fresh_client, "/api/v1/tickets", H, status="In Progress")[0]
    other = every_record(fresh_client, "/api/v1/tickets", H, status="Open")[0]
    body = {
        "ticket_id": ticket["id"],
        "user_id": "usr_tech",
        "duration_minutes": 30,
        "started_at": ticket["created_at"],
    }
    made = fresh_client.post("/api/v1/time-entries", json=body, headers=H)
    assert made.status_code == 201, made.text
    entry = made.json()["data"]
    touched = fresh_client.get(f"/api/v1/tickets/{ticket['id']}", headers=H).json()["data"]
    assert touched["updated_at"] == entry["created_at"] > ticket["updated_at"]
    moved = fresh_client.patch(
        f"/api/v1/time-entries/{entry['id']}", json={"ticket_id": other["id"]}, headers=H
    )
    assert moved.status_code == 200, moved.text
    now = fresh_client.get(f"/api/v1/tickets/{other['id']}", headers=H).json()["data"]
    assert now["updated_at"] == moved.json()["data"]["updated_at"] > other["updated_at"]
    audit = every_record(fresh_client, "/api/v1/audit-log", H, object_id=ticket["id"])
    assert not [e for e in audit if e["created_at"] >= entry["created_at"]]


def test_a_certificate_date_is_known_only_while_the_ssl_check_runs(client: TestClient[Any]) -> None:
    domains = every_record(client, "/api/v1/domains", H)
    unchecked = [d for d in domains if "ssl" not in d["checks"]]
    assert unchecked and len(unchecked) < len(domains)
    assert [d["id"] for d in unchecked if d["ssl_expires_at"] is not None] == []
    checked = [d for d in domains if "ssl" in d["checks"]]
    assert sum(d["ssl_expires_at"] is not None for d in checked) > len(checked) / 2


def test_turning_the_ssl_check_off_forgets_the_certificate_date(
    fresh_client: TestClient[Any],
) -> None:
    domains = every_record(fresh_client, "/api/v1/domains", H)
    domain = next(d for d in domains if d["ssl_expires_at"] is not None)
    others = [c for c in domain["checks"] if c != "ssl"]
    r = fresh_client.patch(f"/api/v1/domains/{domain['id']}", json={"checks": others}, headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["ssl_expires_at"] is None
    assert r.json()["data"]["checks"] == others


def test_a_hostname_names_one_endpoint_of_a_client_and_a_domain_is_monitored_once(
    client: TestClient[Any],
) -> None:
    agents = every_record(client, "/api/v1/agents", H)
    pairs = Counter((a["client_id"], a["hostname"]) for a in agents)
    assert pairs and max(pairs.values()) == 1
    domains = Counter(d["domain"] for d in every_record(client, "/api/v1/domains", H))
    assert domains and max(domains.values()) == 1


def test_the_generator_draws_again_a_record_that_would_repeat_a_unique_value(spec: Spec) -> None:
    lamp = {
        "type": "object",
        "x-collection": {"name": "lamps", "id-prefix": "lmp"},
        "properties": {
            "id": {"type": "string"},
            "colour": {"type": "string", "enum": ["red", "amber", "green", "blue", "white"]},
            "created_at": {"type": "string", "format": "date-time"},
        },
        "x-invariants": [
            {
                "id": "one-of-each",
                "class": "identity",
                "on-write": "seeded-only",
                "unique": ["colour"],
            },
        ],
    }
    patched = spec_with(spec, {"Lamp": lamp})
    recipe = load_recipe()
    world = build_world(patched, dataclasses.replace(recipe, counts={**recipe.counts, "lamps": 5}))
    assert sorted(x["colour"] for x in world["lamps"]) == ["amber", "blue", "green", "red", "white"]
    with pytest.raises(GenerationError, match="lamps"):
        build_world(patched, dataclasses.replace(recipe, counts={**recipe.counts, "lamps": 6}))


def _shelf(count: dict[str, Any]) -> dict[str, Any]:
    """A collection whose `size` counts the lamps of its colour."""
    return {
        "type": "object",
        "x-collection": {"name": "shelves", "id-prefix": "shf"},
        "properties": {
            "id": {"type": "string"},
            "colour": {"type": "string", "enum": ["red", "amber"]},
            "size": {"type": "integer", "x-count": count},
            "created_at": {"type": "string", "format": "date-time"},
        },
        "x-invariants": [
            {"id": "t", "class": "time", "on-write": "seeded-only", "require": {"size": {"min": 0}}}
        ],
    }


def test_a_count_is_of_the_records_it_names_and_a_bad_one_is_refused_naming_it(
    spec: Spec,
) -> None:
    lamp = {
        "type": "object",
        "x-collection": {"name": "lamps", "id-prefix": "lmp"},
        "properties": {
            "id": {"type": "string"},
            "colour": {"type": "string", "enum": ["red", "amber"]},
            "created_at": {"type": "string", "format": "date-time"},
        },
        "x-invariants": [
            {
                "id": "t",
                "class": "time",
                "on-write": "seeded-only",
                "require": {"colour": ["red", "amber"]},
            }
        ],
    }
    recipe = load_recipe()
    counts = {**recipe.counts, "lamps": 30, "shelves": 4}
    good = spec_with(  # shelves come first in the spec: the lamps they count are made before them
        spec, {"Shelf": _shelf({"collection": "lamps", "where": {"colour": "red"}}), "Lamp": lamp}
    )
    world = build_world(good, dataclasses.replace(recipe, counts=counts))
    red = sum(1 for x in world["lamps"] if x["colour"] == "red")
    assert red and {s["size"] for s in world["shelves"]} == {red}
    bad = spec_with(spec, {"Lamp": lamp, "Shelf": _shelf({"collection": "lamps", "per": "colour"})})
    with pytest.raises(GenerationError, match=r"shelves.*size: x-count takes"):
        build_world(bad, dataclasses.replace(recipe, counts=counts))


def test_every_policy_narrows_one_set_of_tenant_defaults(client: TestClient[Any]) -> None:
    """Policies inherit tenant defaults, then client, site and endpoint: the tenant's own level
    is there once, names itself so and inherits nothing (agents on the stable channel)."""
    policies = every_record(client, "/api/v1/policies", H)
    tenant = [p for p in policies if p["level"] == "tenant"]
    assert [p["id"] for p in tenant] == ["pol_tenant"]
    defaults = tenant[0]
    assert defaults["client_id"] is None and defaults["update_channel"] == "stable"
    assert "Inherit" not in (defaults["connect_enabled"], defaults["connect_auto_install"])
    listed = client.get("/api/v1/policies?level=tenant", headers=H).json()["data"]
    assert [p["id"] for p in listed["items"]] == ["pol_tenant"]
    misnamed = [p["id"] for p in policies if p["name"] == "Tenant defaults" and p is not defaults]
    assert misnamed == []
    assert {p["level"] for p in policies} == {"tenant", "client", "site", "agent"}


def test_each_policy_names_the_one_scope_it_narrows(client: TestClient[Any]) -> None:
    """A site policy names its site and an endpoint override its endpoint (and that endpoint's
    site), each of the client the policy names; a client, a site or an endpoint has one policy
    of its level at most, so the effective policy of an endpoint can be worked out from the API
    alone."""
    policies = every_record(client, "/api/v1/policies", H)
    sites, agents = _by_id(client, "sites"), _by_id(client, "agents")
    scope = {"tenant": None, "client": "client_id", "site": "site_id", "agent": "agent_id"}
    for level, field in scope.items():
        mine = [p for p in policies if p["level"] == level]
        assert mine, level
        if field is not None:
            held = [p[field] for p in mine]
            assert None not in held and len(held) == len(set(held)), (level, held)
    for p in policies:
        if p["level"] in ("tenant", "client"):
            assert p["site_id"] is None and p["agent_id"] is None, p
        if p["level"] == "site":
            assert p["agent_id"] is None, p
            assert sites[p["site_id"]]["client_id"] == p["client_id"], p
        if p["level"] == "agent":
            endpoint = agents[p["agent_id"]]
            assert (endpoint["client_id"], endpoint["site_id"]) == (p["client_id"], p["site_id"]), p
    overrides = [p for p in policies if p["level"] == "agent"]
    site_level = next(p for p in policies if p["level"] == "site")
    at_site = {p["id"] for p in policies if p["site_id"] == site_level["site_id"]}
    listed = client.get(f"/api/v1/policies?site_id={site_level['site_id']}", headers=H).json()
    assert {p["id"] for p in listed["data"]["items"]} == at_site
    assert len(at_site) < len(policies)  # the filter narrowed the list
    override = overrides[0]
    listed = client.get(f"/api/v1/policies?agent_id={override['agent_id']}", headers=H).json()
    assert [p["id"] for p in listed["data"]["items"]] == [override["id"]]

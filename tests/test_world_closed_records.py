"""Records that close stop being named anew (`x-closed`): nothing was made for an archived client
after it was archived, and a disabled rule fired only before it was disabled; the generator keeps
it, the checker's `refs-open` rule judges it, and `spec check` refuses a declaration it cannot
read."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from litestar.testing import TestClient

from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world, load_recipe
from opsmerge_sandbox.world.invariants import check_world
from tests.conftest import every_record, spec_with

H = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}
World = dict[str, list[dict[str, Any]]]


def test_nothing_was_made_for_an_archived_client_after_it_was_archived(client: TestClient) -> None:
    archived = {
        c["id"]: c for c in every_record(client, "/api/v1/clients", H) if c["status"] == "archived"
    }
    assert archived
    judged = 0
    for path in ("tickets", "invoices", "contacts", "contracts", "sites"):
        for rec in every_record(client, f"/api/v1/{path}", H):
            owner = archived.get(rec["client_id"])
            if owner is not None:
                judged += 1
                assert rec["created_at"] <= owner["updated_at"], (path, rec["id"], owner["id"])
    assert judged > 10


def test_an_archived_clients_work_and_records_were_settled_by_the_time_it_left(
    client: TestClient,
) -> None:
    """Its tickets closed, contacts, sites, contracts and monitored domains last changed, and
    every answer and minute of work on its tickets recorded no later than its archiving: no
    remote session with a user of a client that had already left, no contract of it starting or
    running on after it left."""
    archived = {
        c["id"]: c["updated_at"]
        for c in every_record(client, "/api/v1/clients", H)
        if c["status"] == "archived"
    }
    left_at: dict[str, str] = {}  # ticket -> when its client left
    for path in ("tickets", "contacts", "sites", "contracts", "domains"):
        for rec in every_record(client, f"/api/v1/{path}", H):
            gone = archived.get(rec["client_id"])
            if gone is not None:
                assert rec["updated_at"] <= gone, (path, rec["id"], rec["client_id"])
                if path == "tickets":
                    left_at[rec["id"]] = gone
                if path == "contracts":
                    assert rec["start_date"] <= gone[:10], rec
                    assert rec["status"] != "ended" or rec["end_date"] <= gone[:10], rec
    assert len(left_at) > 10
    judged = 0
    for ticket, gone in left_at.items():
        for rec in every_record(client, f"/api/v1/tickets/{ticket}/comments", H):
            judged += 1
            assert rec["created_at"] <= gone, ("comment", rec["id"], ticket)
    for rec in every_record(client, "/api/v1/time-entries", H):
        gone = left_at.get(rec["ticket_id"])
        if gone is not None:
            judged += 1
            assert rec["created_at"] <= gone, ("time entry", rec["id"], rec["ticket_id"])
    assert judged > 10


def test_the_checker_names_each_record_changed_after_its_client_left(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    settled = {
        "Ticket": "tickets", "Contact": "contacts", "Site": "sites", "Contract": "contracts",
        "MonitoredDomain": "domains",
    }
    for name in settled:
        del schemas[name]["allOf"][1]["properties"]["updated_at"]["x-cases"]
    recipe = load_recipe()
    world = build_world(spec_with(spec, schemas), recipe)
    gone = {c["id"]: c["updated_at"] for c in world["clients"] if c["status"] == "archived"}
    late = {
        r["id"]
        for coll in settled.values()
        for r in world[coll]
        if r["client_id"] in gone and r["updated_at"] > gone[r["client_id"]]
    }
    assert late
    real = {name: c.schema for name, c in spec.collections.items()}
    found = check_world(world, real, int(recipe.epoch.timestamp()), recipe.organisation)
    named = {v.record_id for v in found if v.invariant == "settled-before-the-client-left"}
    assert named == late


def test_a_disabled_rule_fired_only_before_it_was_disabled(client: TestClient) -> None:
    rules = [r for r in every_record(client, "/api/v1/ticket-rules", H) if not r["enabled"]]
    assert rules
    fired = 0
    for rule in rules:
        assert rule["enabled_at"] is not None and rule["enabled_at"] <= rule["updated_at"], rule
        for kind in ("firings", "deliveries"):
            for rec in every_record(client, f"/api/v1/ticket-rules/{rule['id']}/{kind}", H):
                fired += 1
                assert rec["created_at"] <= rule["updated_at"], (kind, rec["id"], rule["id"])
    assert fired


LAMP_CLOSED = {"when": {"status": ["broken"]}, "since": "updated_at"}


def _lamp_spec(spec: Spec, closed: dict[str, Any] | None) -> Spec:
    """The spec with lamps (half of them broken) and notes naming them."""
    lamp: dict[str, Any] = {
        "type": "object",
        "x-collection": {"name": "lamps", "id-prefix": "lmp"},
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["on", "broken"], "x-weights": [1, 1]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    }
    if closed is not None:
        lamp["x-closed"] = closed
    note = {
        "type": "object",
        "x-collection": {"name": "lamp_notes", "id-prefix": "lnt"},
        "properties": {
            "id": {"type": "string"},
            "lamp_id": {"type": "string", "x-ref": "lamps"},
            "created_at": {"type": "string", "format": "date-time"},
        },
        "x-invariants": [
            {
                "id": "named-while-open",
                "class": "time",
                "on-write": "seeded-only",
                "refs-open": "created_at",
            },
        ],
    }
    return spec_with(spec, {"Lamp": lamp, "LampNote": note})


def _world(spec: Spec) -> World:
    recipe = load_recipe()
    counts = {**recipe.counts, "lamps": 40, "lamp_notes": 400}
    return build_world(spec, dataclasses.replace(recipe, counts=counts))


def _broken(world: World) -> dict[str, dict[str, Any]]:
    return {lmp["id"]: lmp for lmp in world["lamps"] if lmp["status"] == "broken"}


def test_the_generator_makes_nothing_naming_a_record_after_it_closed(spec: Spec) -> None:
    world = _world(_lamp_spec(spec, LAMP_CLOSED))
    broken = _broken(world)
    notes = [n for n in world["lamp_notes"] if n["lamp_id"] in broken]
    assert broken and notes and len(world["lamp_notes"]) == 400
    for n in notes:
        assert n["created_at"] <= broken[n["lamp_id"]]["updated_at"], n


def test_the_checker_names_each_record_made_after_what_it_names_closed(spec: Spec) -> None:
    world = _world(_lamp_spec(spec, None))  # made as if nothing closed
    closing = _lamp_spec(spec, LAMP_CLOSED)
    schemas = {name: c.schema for name, c in closing.collections.items()}
    recipe = load_recipe()
    found = check_world(world, schemas, int(recipe.epoch.timestamp()), recipe.organisation)
    broken = _broken(world)
    late = {
        n["id"]
        for n in world["lamp_notes"]
        if n["lamp_id"] in broken and n["created_at"] > broken[n["lamp_id"]]["updated_at"]
    }
    assert late
    assert {v.record_id for v in found if v.invariant == "named-while-open"} == late


def test_spec_check_refuses_a_closing_it_cannot_read(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    schemas["Client"]["x-closed"] = {"when": {"status": ["archived"]}, "since": "archived_at"}
    _, problems = parse_collections(schemas)
    assert any(
        "x-closed.since 'archived_at' is not a field of clients" in p.message
        and "Client" in p.where
        for p in problems
    )

"""A client's contracts follow each other: one moving to a new contract has ended the old one,
so it never pays twice for its devices (block hours bought alongside are the documented hybrid).
Drawn independently, one seeded client had four contracts in force at once."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from itertools import pairwise
from typing import Any

from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.spec import Spec

World = dict[str, list[dict[str, Any]]]


def _in_force(world: World) -> dict[str, list[dict[str, Any]]]:
    """Each client's contracts that were ever in force, other than block hours, by start."""
    by: dict[str, list[dict[str, Any]]] = {}
    for ctr in world["contracts"]:
        if ctr["status"] != "voided" and ctr["type"] != "block":
            by.setdefault(ctr["client_id"], []).append(ctr)
    return {cid: sorted(cs, key=lambda c: c["start_date"]) for cid, cs in by.items()}


def test_no_client_has_two_contracts_in_force_at_once(seeded_world: World) -> None:
    both = [
        (a["id"], a["type"], b["id"], b["type"])
        for contracts in _in_force(seeded_world).values()
        for i, a in enumerate(contracts)
        for b in contracts[i + 1 :]
        if a["end_date"] is None or b["start_date"] < a["end_date"]
    ]
    assert both == []


def test_a_contract_a_newer_one_replaced_ended_the_day_it_started(seeded_world: World) -> None:
    pairs = [pair for contracts in _in_force(seeded_world).values() for pair in pairwise(contracts)]
    assert pairs  # some clients moved contract
    assert any(a["end_date"] == b["start_date"] for a, b in pairs)
    assert [
        (a["id"], b["id"]) for a, b in pairs if (a["end_date"] or "9999-12-31") > b["start_date"]
    ] == []


def test_spec_check_names_a_succession_that_reads_a_field_the_records_lack(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    schemas["Contract"]["x-succession"]["until"] = "finished_on"
    _, problems = parse_collections(schemas)
    assert any("x-succession: no field 'finished_on'" in p.message for p in problems), problems


def _successions(world: World) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(old, new) for each contract a newer one of its client replaced."""
    return [
        (a, b)
        for contracts in _in_force(world).values()
        for a, b in pairwise(contracts)
        if a["end_date"] == b["start_date"]
    ]


def test_a_replaced_contract_changed_when_its_successor_was_signed(seeded_world: World) -> None:
    pairs = _successions(seeded_world)
    assert pairs
    assert [(a["id"], a["updated_at"], b["created_at"]) for a, b in pairs
            if a["updated_at"] < b["created_at"]] == []


def test_a_contract_its_client_did_not_take_up_was_voided_within_two_weeks_of_its_start(
    seeded_world: World,
) -> None:
    # a client that left voided what it had running when it went (settled by then: other tests)
    staying = {c["id"] for c in seeded_world["clients"] if c["status"] != "archived"}
    voided = [
        c for c in seeded_world["contracts"]
        if c["status"] == "voided" and c["client_id"] in staying
    ]
    assert voided
    late = [
        (c["id"], c["start_date"], c["updated_at"])
        for c in voided
        if c["updated_at"][:10] > str(date.fromisoformat(c["start_date"]) + timedelta(days=14))
    ]
    assert late == []


def test_the_log_shows_a_replaced_contract_made_without_the_end_its_successor_gave_it(
    seeded_world: World,
) -> None:
    replaced = {a["id"]: a for a, _ in _successions(seeded_world)}
    births = [
        e for e in seeded_world["audit_log"]
        if e["action"] == "contract.created" and e["object_id"] in replaced
    ]
    shown = [
        (e["object_id"], e["diff"]["end_date"][1]) for e in births
        if e["diff"].get("end_date", [None, None])[1] == replaced[e["object_id"]]["end_date"]
    ]
    assert shown == []


def test_spec_check_names_a_succession_whose_grace_is_not_a_number_of_days(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    schemas["Contract"]["x-succession"]["short-within-days"] = "two weeks"
    _, problems = parse_collections(schemas)
    assert any("short-within-days must be a whole number" in p.message for p in problems), problems

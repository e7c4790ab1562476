"""A client's contracts follow each other: one moving to a new contract has ended the old one,
so it never pays twice for its devices (block hours bought alongside are the documented hybrid).
Drawn independently, one seeded client had four contracts in force at once."""

from __future__ import annotations

import copy
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

"""A contract sells each service at one price: its run billed a client's managed devices, backup
storage and domain monitoring at a new price every month (one per-device contract's invoices
charged 22.40, then 44.10, then 31.75 a device), and onsite visits at any rate but the
contract's own, though its notes say visits are billed at the hourly rate. Now a price is drawn
once per contract and service (`x-drawn-per`), and a contract's visits bill its hourly rate; an
invoice made by hand still prices its own lines."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world.invariants import hint_problems

World = dict[str, list[dict[str, Any]]]
VISIT = "Onsite visit"


def _run_lines(world: World) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(inv, line) for inv in world["invoices"] if inv["contract_id"] for line in inv["lines"]]


def test_a_contract_bills_each_service_at_one_price(seeded_world: World) -> None:
    prices: dict[tuple[str, str], set[float]] = {}
    billed = Counter[tuple[str, str]]()
    for inv, line in _run_lines(seeded_world):
        key = (inv["contract_id"], line["description"])
        prices.setdefault(key, set()).add(line["unit_price"])
        billed[key] += 1
    repeated = [k for k, times in billed.items() if times > 1]
    assert len(repeated) > 20  # enough services billed more than once to judge
    assert {k: sorted(v) for k, v in prices.items() if len(v) > 1} == {}


def test_a_contracts_onsite_visits_bill_its_hourly_rate(seeded_world: World) -> None:
    rate = {c["id"]: c["hourly_rate"] for c in seeded_world["contracts"]}
    visits = [(inv, line) for inv, line in _run_lines(seeded_world) if line["description"] == VISIT]
    assert len(visits) > 5
    assert [(inv["id"], line["unit_price"], rate[inv["contract_id"]]) for inv, line in visits
            if line["unit_price"] != rate[inv["contract_id"]]] == []


def test_different_contracts_still_price_a_service_differently(seeded_world: World) -> None:
    per_device = {line["unit_price"] for _, line in _run_lines(seeded_world)
                  if line["description"] == "Managed service - per device"}
    assert len(per_device) > 5


def test_spec_check_names_a_drawn_per_path_it_cannot_read(spec: Spec) -> None:
    schemas = {name: c.schema for name, c in spec.collections.items()}
    invoices = copy.deepcopy(schemas["invoices"])
    price = invoices["properties"]["lines"]["items"]["properties"]["unit_price"]
    price["x-drawn-per"] = ["$parent.contract_id->no_such"]
    problems = hint_problems({**schemas, "invoices": invoices})
    assert [p for name, p in problems if name == "invoices" and "no_such" in p], problems

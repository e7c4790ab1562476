"""An invoice and the contract it bills agree: the recurring run bills a contract of the
invoice's client, during the contract's term, on the contract's billing day (every month,
quarter or year from its start, one invoice a run), for what that contract sells (block hours on
a block contract, per-device service on a per-device or all-inclusive one); an invoice made by
hand names no contract. Integrators reconcile invoices against contracts, so a seeded world where
they disagree teaches them the wrong model, and a write naming another client's contract or a
voided one is refused, naming `contract_id`, and changes nothing."""

from __future__ import annotations

import copy
import itertools
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from litestar.testing import TestClient

from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world
from opsmerge_sandbox.world.recipe import load_recipe
from tests.conftest import every_record, spec_with, violations

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
BLOCK_HOURS = "Block hours top-up"
PER_DEVICE = "Managed service - per device"
MONTHS = {"monthly": 1, "quarterly": 3, "annual": 12}
PERIOD_DAYS = {"monthly": 30, "quarterly": 91, "annual": 365}  # the shortest run of a contract
RULES = {
    "issued-on-the-billing-day",
    "issued-on-the-anniversary",
    "issued-within-the-contract",
    "block-hours-on-a-block-contract",
    "per-device-on-a-device-contract",
}


def _h(ws: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {OWNER}", "X-Sandbox-Workspace": ws}


def test_seeded_invoices_bill_a_contract_of_their_client_in_its_term_for_what_it_sells(
    client: TestClient,
) -> None:
    ws = f"billing-{uuid.uuid4().hex[:10]}"
    contracts = {c["id"]: c for c in every_record(client, "/api/v1/contracts", _h(ws))}
    invoices = every_record(client, "/api/v1/invoices", _h(ws))
    billed = [i for i in invoices if i["contract_id"] is not None]
    by_hand = [i for i in invoices if i["contract_id"] is None]
    assert len(billed) > len(invoices) / 3 and by_hand  # both kinds are there to learn from
    runs = set()
    for inv in billed:
        ctr = contracts[inv["contract_id"]]
        assert ctr["client_id"] == inv["client_id"], inv["id"]
        assert ctr["status"] != "voided", inv["id"]
        assert ctr["start_date"] <= inv["issue_date"], inv["id"]
        assert ctr["end_date"] is None or inv["issue_date"] <= ctr["end_date"], inv["id"]
        # the run fires on the billing day every month or quarter from the start, and on the
        # start's anniversary for a contract billed yearly
        year, month, day = map(int, inv["issue_date"].split("-"))
        if ctr["billing_frequency"] == "annual":
            assert inv["issue_date"][5:] == ctr["start_date"][5:], inv["id"]
        else:
            assert day == ctr["billing_day"], inv["id"]
        since = (year - int(ctr["start_date"][:4])) * 12 + month - int(ctr["start_date"][5:7])
        assert since % MONTHS[ctr["billing_frequency"]] == 0, inv["id"]
        assert (inv["contract_id"], inv["issue_date"]) not in runs, inv["id"]  # one a run
        runs.add((inv["contract_id"], inv["issue_date"]))
    kinds: dict[str, set[str | None]] = {BLOCK_HOURS: set(), PER_DEVICE: set()}
    for inv in invoices:
        kind = contracts[inv["contract_id"]]["type"] if inv["contract_id"] else None
        for line in inv["lines"]:
            if line["description"] in kinds:
                kinds[line["description"]].add(kind)
    assert kinds[BLOCK_HOURS] == {"block"}

    assert kinds[PER_DEVICE] == {"per-asset", "all-you-can-eat"}


def test_the_recurring_run_not_a_user_issued_the_invoices_it_billed(client: TestClient) -> None:
    """The log's entry of a run's invoice names no user and the run as its agent (the platform
    issued it at 00:01 on the billing day); an invoice made by hand was made by a user in the
    web app."""
    ws = f"billing-{uuid.uuid4().hex[:10]}"
    run = {i["id"] for i in every_record(client, "/api/v1/invoices", _h(ws)) if i["contract_id"]}
    made = every_record(client, "/api/v1/audit-log", _h(ws), action="invoice.created")
    by_run = [e for e in made if e["object_id"] in run]
    by_hand = [e for e in made if e["object_id"] not in run]
    assert by_run and by_hand
    for entry in by_run:
        assert entry["actor_id"] is None, entry
        assert entry["user_agent"] == "OpsMerge recurring billing", entry
    for entry in by_hand:
        assert entry["actor_id"] is not None and entry["user_agent"].startswith("Mozilla/"), entry


def test_a_seeded_contract_that_ended_ran_a_billing_period_or_more(client: TestClient) -> None:
    """A contract ended a day or two after it started bills nothing and reads as a mistake:
    every seeded one with an end date ran at least its billing period (a month, a quarter, a
    year), the contracts of clients that left included."""
    ws = f"terms-{uuid.uuid4().hex[:10]}"
    clients = {c["id"]: c for c in every_record(client, "/api/v1/clients", _h(ws))}
    ending = [c for c in every_record(client, "/api/v1/contracts", _h(ws)) if c["end_date"]]
    assert any(clients[c["client_id"]]["status"] == "archived" for c in ending)
    for ctr in ending:
        ran = date.fromisoformat(ctr["end_date"]) - date.fromisoformat(ctr["start_date"])
        assert ran >= timedelta(days=PERIOD_DAYS[ctr["billing_frequency"]]), ctr


def test_the_checker_names_a_contract_that_ended_within_its_first_period(spec: Spec) -> None:
    recipe = load_recipe()
    world = build_world(spec, recipe)
    short = {}
    for ctr in world["contracts"][:6]:
        start = date.fromisoformat(ctr["start_date"])
        ctr["end_date"] = (start + timedelta(days=2)).isoformat()
        short[ctr["id"]] = {"monthly": "runs-a-month", "quarterly": "runs-a-quarter"}.get(
            ctr["billing_frequency"], "runs-a-year"
        )
    found = violations(spec, world)
    named = {rid: rule for rid, rule in found if rule.startswith("runs-a-")}
    assert named == short


def test_the_checker_names_invoices_that_contradict_their_contract(spec: Spec) -> None:
    """A world made without the rules that tie lines and dates to the contract (every line drawn
    from every description, any date) is reported invoice by invoice."""
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    line = schemas["InvoiceLine"]["properties"]["description"]
    line["x-faker"] = {"choices": [BLOCK_HOURS, PER_DEVICE, "Onsite visit"]}
    del line["x-cases"]
    for name, sizes in (("quantity", [10, 40]), ("unit_price", [65, 95])):  # any block, any rate
        for case in schemas["InvoiceLine"]["properties"][name]["x-cases"]:
            if case["when"] == {"description": [BLOCK_HOURS]}:
                del case["x-copy"]
                case["x-range"] = sizes
    del schemas["Invoice"]["x-runs"]  # each invoice draws its contract, and any date
    recipe = load_recipe()
    world = build_world(spec_with(spec, schemas), recipe)
    contracts = {c["id"]: c for c in world["contracts"]}
    wrong: dict[str, set[str]] = {rule: set() for rule in RULES}
    for inv in world["invoices"]:
        ctr = contracts.get(inv["contract_id"] or "")
        kind = ctr["type"] if ctr else None
        descriptions = {line["description"] for line in inv["lines"]}
        if BLOCK_HOURS in descriptions and kind != "block":
            wrong["block-hours-on-a-block-contract"].add(inv["id"])
        if PER_DEVICE in descriptions and kind not in ("per-asset", "all-you-can-eat"):
            wrong["per-device-on-a-device-contract"].add(inv["id"])
        if ctr and not (
            ctr["start_date"] <= inv["issue_date"]
            and (ctr["end_date"] is None or inv["issue_date"] <= ctr["end_date"])
        ):
            wrong["issued-within-the-contract"].add(inv["id"])
        if ctr and ctr["billing_frequency"] == "annual":
            if inv["issue_date"][5:] != ctr["start_date"][5:]:
                wrong["issued-on-the-anniversary"].add(inv["id"])
        elif ctr and int(inv["issue_date"][8:]) != ctr["billing_day"]:
            wrong["issued-on-the-billing-day"].add(inv["id"])
    assert all(wrong.values()), {k: len(v) for k, v in wrong.items()}
    found = violations(spec, world)
    for rule in RULES:
        assert {rid for rid, named in found if named == rule} == wrong[rule], rule


def test_the_checker_names_a_second_invoice_of_one_run(spec: Spec) -> None:
    """An invoice dated like an earlier one of the same contract's run is reported by it."""
    recipe = load_recipe()
    world = build_world(spec, recipe)
    by_contract: dict[str, list[dict[str, Any]]] = {}
    for inv in world["invoices"]:
        if inv["contract_id"] is not None:
            by_contract.setdefault(inv["contract_id"], []).append(inv)
    again = set()
    for invoices in list(by_contract.values())[:3]:
        first, second = sorted(invoices, key=lambda i: i["issue_date"])[:2]
        second["issue_date"] = first["issue_date"]
        later = first if first["id"] > second["id"] else second
        again.add(later["id"])
    found = violations(spec, world)
    assert {rid for rid, rule in found if rule == "one-invoice-per-run"} == again


def test_the_checker_names_a_run_invoice_dated_by_utc_or_made_late_in_its_day(
    spec: Spec,
) -> None:
    """A run invoice issued on the UTC day it was made (the day before, for a London run in
    summer time) is reported, and so is one made late in its day; an invoice made by hand is
    dated by its UTC day and judged by that alone."""
    world = build_world(spec, load_recipe())
    runs = [i for i in world["invoices"] if i["contract_id"] is not None]
    summer = next(i for i in runs if i["created_at"][:10] < i["issue_date"])
    winter = next(i for i in runs if i["created_at"][:10] == i["issue_date"])
    summer["issue_date"] = summer["created_at"][:10]
    summer["due_date"] = (date.fromisoformat(summer["issue_date"]) + timedelta(30)).isoformat()
    winter["created_at"] = f"{winter['issue_date']}T23:30:00Z"
    found = violations(spec, world)
    assert {rid for rid, rule in found if rule == "run-issued-on-the-clients-day"} == {
        summer["id"]
    }
    # the one dated a day early is now made late in its day too
    made_late = {winter["id"], summer["id"]}
    assert {rid for rid, rule in found if rule == "run-made-as-its-day-begins"} == made_late
    assert not {rid for rid, rule in found if rule == "issued-when-created"}


def _runs(ctr: dict[str, Any], epoch: date) -> list[str]:
    """The billing days of a contract from its start until it ended (or the epoch): its
    billing day of every month or quarter, or its start date and each anniversary of it."""
    start = date.fromisoformat(ctr["start_date"])
    end = date.fromisoformat(ctr["end_date"]) if ctr["end_date"] else None
    yearly = ctr["billing_frequency"] == "annual"
    out, step = [], 0
    while True:
        year, month = divmod(start.year * 12 + start.month - 1 + step, 12)
        day = date(year, month + 1, start.day if yearly else min(ctr["billing_day"], 28))
        if day > epoch or (end is not None and day >= end):  # none on the day it ended
            return out
        if day >= start:
            out.append(day.isoformat())
        step += MONTHS[ctr["billing_frequency"]]


def test_every_billing_day_of_a_contract_in_force_has_its_run_invoice(client: TestClient) -> None:
    """The run fires on every billing day, not on a sample of them: a client billed monthly
    since January has an invoice from the run for every month since, and the invoices made by
    hand are the exception."""
    ws = f"runs-{uuid.uuid4().hex[:10]}"
    recipe = load_recipe()
    epoch = recipe.epoch.date()
    invoices = every_record(client, "/api/v1/invoices", _h(ws))
    issued: dict[str, list[str]] = {}
    for inv in invoices:
        if inv["contract_id"] is not None:
            issued.setdefault(inv["contract_id"], []).append(inv["issue_date"])
    missing = {}
    for ctr in every_record(client, "/api/v1/contracts", _h(ws)):
        if ctr["status"] == "voided":
            assert ctr["id"] not in issued, ctr["id"]
            continue
        gaps = sorted(set(_runs(ctr, epoch)) - set(issued.get(ctr["id"], [])))
        if gaps:
            missing[ctr["id"]] = gaps
    assert missing == {}
    by_hand = [i for i in invoices if i["contract_id"] is None]
    assert 0 < len(by_hand) < len(invoices) / 2


def test_a_contract_billed_yearly_is_billed_from_its_start_date_on_each_anniversary(
    client: TestClient,
) -> None:
    """"Annual: on the anniversary": the run bills the first year on the day the contract
    starts, then every year on that day (not on the 1st of the month, a year late)."""
    ws = f"runs-{uuid.uuid4().hex[:10]}"
    epoch = load_recipe().epoch.date().isoformat()
    issued: dict[str, list[str]] = {}
    for inv in every_record(client, "/api/v1/invoices", _h(ws)):
        if inv["contract_id"] is not None:
            issued.setdefault(inv["contract_id"], []).append(inv["issue_date"])
    yearly = [
        c
        for c in every_record(client, "/api/v1/contracts", _h(ws))
        if c["billing_frequency"] == "annual" and c["status"] != "voided"
    ]
    started = [c for c in yearly if c["start_date"] <= epoch]
    assert started
    for ctr in started:
        days = sorted(issued.get(ctr["id"], []))
        assert days and days[0] == ctr["start_date"], (ctr["id"], days)
        assert [d[5:] for d in days] == [ctr["start_date"][5:]] * len(days), ctr["id"]
        assert [int(d[:4]) for d in days] == list(range(int(days[0][:4]), int(days[-1][:4]) + 1))


def test_a_run_invoice_is_made_at_0001_in_the_clients_time_zone_on_its_billing_day(
    client: TestClient,
) -> None:
    """"00:01 in the client's time zone on the billing day": in the first hour of its issue
    date on the client's clock, so a London client's run in British Summer Time is made at
    23:01-23:59 UTC on the day before, and in winter at 00:01-00:59 UTC on the day."""
    ws = f"runs-{uuid.uuid4().hex[:10]}"
    zones = {
        c["id"]: ZoneInfo(c["time_zone"] or "UTC")
        for c in every_record(client, "/api/v1/clients", _h(ws))
    }
    runs = [i for i in every_record(client, "/api/v1/invoices", _h(ws)) if i["contract_id"]]
    assert runs
    summer = 0
    for inv in runs:
        made = datetime.fromisoformat(inv["created_at"].replace("Z", "+00:00"))
        local = made.astimezone(zones[inv["client_id"]])
        assert local.date().isoformat() == inv["issue_date"], inv
        assert "00:01:00" <= local.time().isoformat() <= "00:59:59", (inv["id"], local)
        if made.date().isoformat() < inv["issue_date"]:
            summer += 1
            assert local.utcoffset() == timedelta(hours=1)
    # the seeded year has both: runs in summer time made the evening before, in winter on the day
    assert 0 < summer < len(runs)


def test_spec_check_names_a_run_schedule_that_reads_a_field_its_records_lack(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    schemas["Invoice"]["x-runs"]["day"] = "billing_weekday"
    schemas["Invoice"]["x-runs"]["names"]["contract_ref"] = "id"
    _, problems = parse_collections(schemas)
    messages = [p.message for p in problems]
    assert any("contracts has no field 'billing_weekday'" in m for m in messages), messages
    assert any("no field 'contract_ref' of its own" in m for m in messages), messages


def test_no_seeded_invoice_bills_a_service_on_two_lines(spec: Spec) -> None:
    """Two lines of one service (the per-device service twice, at two prices) bill it twice."""
    world = build_world(spec, load_recipe())
    twice = [
        inv["id"]
        for inv in world["invoices"]
        if len({line["description"] for line in inv["lines"]}) != len(inv["lines"])
    ]
    assert twice == []
    assert sum(len(inv["lines"]) >= 3 for inv in world["invoices"]) > 30  # enough to judge


def test_the_checker_names_an_invoice_that_bills_a_service_twice(spec: Spec) -> None:
    recipe = load_recipe()
    world = build_world(spec, recipe)
    inv = next(i for i in world["invoices"] if len(i["lines"]) >= 2)
    inv["lines"][1] = {**inv["lines"][0], "unit_price": inv["lines"][0]["unit_price"] + 5}
    found = violations(spec, world)
    named = {rid for rid, rule in found if rule == "each-service-on-one-line"}
    assert named == {inv["id"]}


def test_what_a_paying_client_still_owes_fell_due_lately(spec: Spec) -> None:
    """A seeded client that paid this month's invoice has paid last year's too: an invoice
    overdue for more than 90 days, with the client's later ones paid, reads as a mistake."""
    recipe = load_recipe()
    world = build_world(spec, recipe)
    cutoff = (recipe.epoch.date() - timedelta(days=90)).isoformat()
    overdue = [i for i in world["invoices"] if i["status"] == "Overdue"]
    assert overdue  # some are owed, lately
    assert [i["id"] for i in overdue if i["due_date"] < cutoff] == []


def test_the_checker_names_an_invoice_overdue_for_months(spec: Spec) -> None:
    recipe = load_recipe()
    world = build_world(spec, recipe)
    cutoff = (recipe.epoch.date() - timedelta(days=120)).isoformat()
    old = next(i for i in world["invoices"] if i["status"] == "Paid" and i["due_date"] < cutoff)
    old["status"] = "Overdue"
    found = violations(spec, world)
    assert {rid for rid, rule in found if rule == "overdue-is-recent"} == {old["id"]}


def test_no_seeded_run_invoice_is_voided_leaving_its_period_unbilled(spec: Spec) -> None:
    world = build_world(spec, load_recipe())
    run = [i for i in world["invoices"] if i["contract_id"] is not None]
    assert [i["id"] for i in run if i["status"] == "Voided"] == []
    assert any(i["status"] == "Voided" for i in world["invoices"])  # a mistake made by hand is


def test_the_checker_names_a_voided_run_invoice(spec: Spec) -> None:
    recipe = load_recipe()
    world = build_world(spec, recipe)
    run = next(i for i in world["invoices"] if i["contract_id"] and i["status"] == "Paid")
    run["status"] = "Voided"
    found = violations(spec, world)
    assert {rid for rid, rule in found if rule == "a-run-invoice-stands"} == {run["id"]}


def test_invoice_numbers_follow_the_order_invoices_were_issued_in(client: TestClient) -> None:
    """"Gapless within a year, assigned atomically": of two invoices issued the same day, the one
    made first has the lower number (the run's invoices of one night too)."""
    ws = f"numbers-{uuid.uuid4().hex[:10]}"
    invoices = every_record(client, "/api/v1/invoices", _h(ws))
    by_year: dict[str, list[dict[str, Any]]] = {}
    for inv in invoices:
        by_year.setdefault(inv["number"][4:8], []).append(inv)
    same_day = 0
    for issued in by_year.values():
        issued.sort(key=lambda i: i["number"])
        for earlier, later in itertools.pairwise(issued):
            when = (earlier["issue_date"], earlier["created_at"])
            assert when <= (later["issue_date"], later["created_at"]), (earlier, later)
            same_day += earlier["issue_date"] == later["issue_date"]
    assert same_day > 20

"""The seeded world: deterministic, valid against the spec, referentially whole, epoch-bound."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema_rs
import pytest

from opsmerge_sandbox.jsontypes import json_types
from opsmerge_sandbox.spec import Spec, ref_of
from opsmerge_sandbox.world import build_world
from opsmerge_sandbox.world.conditions import (
    Env,
    compile_condition,
    is_shifted,
    time_operand,
    to_seconds,
)
from opsmerge_sandbox.world.context import WorldContext
from opsmerge_sandbox.world.generator import GenerationError, World
from opsmerge_sandbox.world.recipe import Recipe
from tests.conftest import spec_with


@pytest.fixture(scope="module")
def world(spec: Spec, recipe: Recipe) -> World:
    return build_world(spec, recipe)


def _bytes(world: World) -> str:
    return json.dumps(world, sort_keys=True)


def _by_id(world: World) -> dict[str, dict[str, dict[str, Any]]]:
    return {c: {r["id"]: r for r in recs} for c, recs in world.items()}


# -- determinism ------------------------------------------------------------------------------


def test_same_recipe_and_seed_give_byte_identical_worlds(
    spec: Spec, recipe: Recipe, world: World
) -> None:
    assert _bytes(build_world(spec, recipe)) == _bytes(world)


def test_another_seed_gives_another_world(spec: Spec, recipe: Recipe, world: World) -> None:
    other = build_world(spec, dataclasses.replace(recipe, seed=recipe.seed + 1))
    assert _bytes(other) != _bytes(world)
    generated = [c for c, recs in world.items() if len(recs) > len(recipe.records.get(c, []))]
    for name in generated:
        assert other[name] != world[name], name


def test_another_process_at_another_time_dumps_the_same_world(world: World) -> None:
    """Python's string hashing differs per process and the clock moves; the world does not."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "fixtures", "dump"],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert json.loads(out) == world


def test_worlds_built_in_parallel_threads_are_identical(
    spec: Spec, recipe: Recipe, world: World
) -> None:
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(_bytes(build_world(spec, recipe))))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [_bytes(world)] * 2


def test_a_reference_filter_never_gets_the_matches_of_a_freed_one(spec: Spec, world: World) -> None:
    """A build caches which records each `x-ref.where` filter allows; a filter made where a freed
    one lived must still get its own matches (worlds built on two threads once differed so)."""
    users = world["users"]
    ctx = WorldContext(
        seed=1,
        epoch=0,
        counts={"users": len(users)},
        prefixes={"users": "usr"},
        named_ids={},
        schemas={n: c.schema for n, c in spec.collections.items()},
    )
    ctx.world["users"] = users
    statuses = sorted({u["status"] for u in users})
    assert len(statuses) > 1
    for _ in range(20):
        for status in statuses:
            condition = compile_condition("users", {"status": [status]}, ctx.schemas)
            expected = [i for i, u in enumerate(users) if u["status"] == status]
            assert ctx.matching("users", condition) == expected, status
            del condition


def test_record_does_not_depend_on_the_count_of_its_own_collection(
    spec: Spec, recipe: Recipe, world: World
) -> None:
    fewer = dict(recipe.counts, ticket_comments=100, audit_log=10)
    smaller = build_world(spec, dataclasses.replace(recipe, counts=fewer))
    assert smaller["audit_log"] == world["audit_log"][:10]
    for name in ("clients", "contacts", "agents", "checks", "users", "invoices"):
        assert smaller[name] == world[name], name


def test_adding_a_count_for_an_unreferenced_collection_changes_no_other_record(
    spec: Spec, recipe: Recipe
) -> None:
    counts = {k: v for k, v in recipe.counts.items() if k != "audit_log"}
    without = build_world(spec, dataclasses.replace(recipe, counts=counts))
    with_it = build_world(spec, dataclasses.replace(recipe, counts={**counts, "audit_log": 50}))
    assert without["audit_log"] == []
    assert len(with_it["audit_log"]) == 50

    def unread(world: World) -> dict[str, Any]:
        """All but the log, and but the keys' last use: what the log says of them"""
        keys = [{**k, "last_used_at": None} for k in world["api_keys"]]
        return {c: v for c, v in world.items() if c != "audit_log"} | {"api_keys": keys}

    assert unread(with_it) == unread(without)
    assert {k["last_used_at"] for k in without["api_keys"]} == {None}  # no log, no use


WIDGET = {
    "Widget": {
        "type": "object",
        "x-collection": {"name": "widgets", "id-prefix": "wid"},
        "additionalProperties": False,
        "required": ["id", "client_id", "agent_id", "label", "colour", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string", "pattern": "^wid_[0-9a-z]+$"},
            "agent_id": {
                "type": "string",
                "x-ref": {"collection": "agents", "copy": {"client_id": "client_id"}},
            },
            "client_id": {"type": "string", "x-ref": "clients"},
            "label": {"type": "string", "x-faker": {"choices": ["a", "b"]}},
            "colour": {"type": "string", "enum": ["red", "blue"], "x-weights": [9, 1]},
            "seen_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "x-time": {"within_days": 3},
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    }
}


def test_a_new_collection_in_the_spec_is_generated_and_changes_nothing_else(
    spec: Spec, recipe: Recipe, world: World
) -> None:
    patched = spec_with(spec, WIDGET)
    grown = build_world(
        patched, dataclasses.replace(recipe, counts={**recipe.counts, "widgets": 25})
    )
    widgets = grown.pop("widgets")
    assert grown == world
    assert len(widgets) == 25
    validator = jsonschema_rs.validator_for(
        patched.collections["widgets"].schema, validate_formats=True
    )
    agents = _by_id(world)["agents"]
    for w in widgets:
        validator.validate(w)
        assert agents[w["agent_id"]]["client_id"] == w["client_id"]


def test_a_reference_the_seeded_world_never_sets_changes_no_other_value(
    spec: Spec, recipe: Recipe
) -> None:
    """A field only a write sets (null in every seeded record) draws nothing: adding one to a
    collection leaves every other value of the world as it was."""
    counts = {**recipe.counts, "widgets": 25}
    before = build_world(spec_with(spec, WIDGET), dataclasses.replace(recipe, counts=counts))
    widget = copy.deepcopy(WIDGET)
    props = widget["Widget"]["properties"]
    props["replaced_by_id"] = {
        "type": ["string", "null"], "x-ref": "widgets", "x-null-probability": 1.0,
    }
    # placed first, so a draw or a reordering of the record's fields would show everywhere
    widget["Widget"]["properties"] = {"replaced_by_id": props.pop("replaced_by_id"), **props}
    after = build_world(spec_with(spec, widget), dataclasses.replace(recipe, counts=counts))
    assert {w.pop("replaced_by_id") for w in after["widgets"]} == {None}
    assert after == before


def test_free_text_of_random_words_is_refused_naming_the_field(
    spec: Spec, recipe: Recipe
) -> None:
    """Random dictionary words ("Cause rest front resource moment lay us.") read as a bug to an
    integrator: a generated text field says what people write there, or the world is not built."""
    counts = {**recipe.counts, "widgets": 5}
    for hint in ({"x-faker": "sentence"}, {"x-faker": "paragraph"}, {}):
        widget = copy.deepcopy(WIDGET)
        widget["Widget"]["properties"]["label"] = {"type": "string", **hint}
        with pytest.raises(GenerationError, match=r"widgets\.label"):
            build_world(spec_with(spec, widget), dataclasses.replace(recipe, counts=counts))


def test_a_named_record_needs_no_hint_for_the_text_it_gives(spec: Spec, recipe: Recipe) -> None:
    widget = copy.deepcopy(WIDGET)
    widget["Widget"]["properties"]["label"] = {"type": "string"}
    named = {"id": "wid_named", "client_id": "cli_acme", "agent_id": "agt_acmesrv01",
             "label": "Front desk", "colour": "red"}
    world = build_world(
        spec_with(spec, widget),
        dataclasses.replace(recipe, records={**recipe.records, "widgets": [named]}),
    )
    assert [w["label"] for w in world["widgets"]] == ["Front desk"]


def _widget_with_parts(part_kind: dict[str, Any]) -> dict[str, Any]:
    widget = copy.deepcopy(WIDGET)
    widget["Widget"]["properties"]["parts"] = {
        "type": "array", "minItems": 1, "x-faker": {"max": 3},
        "items": {
            "type": "object", "additionalProperties": False, "required": ["kind"],
            "properties": {"kind": {"type": "string", **part_kind}},
        },
    }
    return widget


def test_a_nested_objects_case_reads_the_record_holding_it(spec: Spec, recipe: Recipe) -> None:
    """`$parent.<path>` in a nested object's case reads the record that holds it (an invoice's
    lines follow the contract the invoice bills), through its references too."""
    kind = {
        "x-faker": {"choices": ["plain"]},
        "x-cases": [
            {"when": {"$parent.colour": ["red"]}, "x-faker": {"choices": ["crimson"]}},
            {
                "when": {"$parent.agent_id->billing_category": ["server"]},
                "x-faker": {"choices": ["rack"]},
            },
        ],
    }
    counts = {**recipe.counts, "widgets": 120}
    world = build_world(
        spec_with(spec, _widget_with_parts(kind)), dataclasses.replace(recipe, counts=counts)
    )
    category = {a["id"]: a["billing_category"] for a in world["agents"]}
    seen = set()
    for w in world["widgets"]:
        want = (
            "crimson" if w["colour"] == "red"
            else "rack" if category[w["agent_id"]] == "server" else "plain"
        )
        assert {p["kind"] for p in w["parts"]} == {want}, w
        seen.add(want)
    assert seen == {"crimson", "rack", "plain"}


def _plans_and_bills(runs: dict[str, Any]) -> dict[str, Any]:
    """Plans that keep a schedule (a day of every n-th month from a start, until an end) and
    bills whose first records are its runs (`x-runs`)."""
    return {
        "Plan": {
            "type": "object",
            "x-collection": {"name": "plans", "id-prefix": "pln"},
            "properties": {
                "id": {"type": "string"},
                "started_on": {
                    "type": "string", "format": "date",
                    "x-time": {"after": "created_at", "within_days": 20},
                },
                "day": {"type": "integer", "x-range": [1, 31]},
                "every": {"type": "string", "enum": ["monthly", "quarterly"]},
                "ended_on": {
                    "type": ["string", "null"], "format": "date", "x-null-probability": 0.5,
                    "x-time": {"after": "started_on", "within_days": 300},
                },
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "Bill": {
            "type": "object",
            "x-collection": {"name": "bills", "id-prefix": "bil"},
            "x-runs": runs,
            "properties": {
                "id": {"type": "string"},
                "plan_id": {"type": ["string", "null"], "x-ref": "plans"},
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
    }


RUNS = {
    "of": "plans", "names": {"plan_id": "id"}, "at": "created_at", "day": "day",
    "from": "started_on", "until": "ended_on", "otherwise": {"plan_id": None},
    "every-months": {"field": "every", "map": {"monthly": 1, "quarterly": 3}},
}


def _schedule(plan: dict[str, Any], epoch: str) -> list[str]:
    """The days a plan's schedule runs on, by the epoch: 00:01 on its day (the 28th at the
    latest) of every month or quarter from its start, none on or after its end."""
    start, made = plan["started_on"], plan["created_at"]
    months = {"monthly": 1, "quarterly": 3}[plan["every"]]
    out, step = [], 0
    while True:
        year, month = divmod(int(start[:4]) * 12 + int(start[5:7]) - 1 + step, 12)
        day = f"{year:04d}-{month + 1:02d}-{min(plan['day'], 28):02d}"
        if day > epoch[:10] or (plan["ended_on"] and day >= plan["ended_on"]):
            return out
        if day >= start and f"{day}T00:01:00Z" >= made:
            out.append(day)
        step += months


def test_a_collection_of_runs_has_one_record_for_every_run_of_every_schedule(
    spec: Spec, recipe: Recipe
) -> None:
    """`x-runs`: the first records are the runs, in time order, each naming the record that
    keeps the schedule and made in the run's first hour; the rest hold `otherwise`."""
    counts = {**recipe.counts, "plans": 6, "bills": 200}
    world = build_world(
        spec_with(spec, _plans_and_bills(RUNS)), dataclasses.replace(recipe, counts=counts)
    )
    epoch = recipe.epoch.strftime("%Y-%m-%dT%H:%M:%SZ")
    expected = sorted((d, p["id"]) for p in world["plans"] for d in _schedule(p, epoch))
    bills = world["bills"]
    assert 10 < len(expected) < len(bills)
    runs = [(b["created_at"][:10], b["plan_id"]) for b in bills[: len(expected)]]
    assert sorted(runs) == expected
    assert all("00:01:00" <= b["created_at"][11:19] < "01:00:00" for b in bills[: len(expected)])
    assert all(b["plan_id"] is None for b in bills[len(expected) :])


def test_with_more_runs_than_records_a_collection_keeps_the_latest(
    spec: Spec, recipe: Recipe
) -> None:
    counts = {**recipe.counts, "plans": 6, "bills": 10}
    world = build_world(
        spec_with(spec, _plans_and_bills(RUNS)), dataclasses.replace(recipe, counts=counts)
    )
    epoch = recipe.epoch.strftime("%Y-%m-%dT%H:%M:%SZ")
    every = sorted(d for p in world["plans"] for d in _schedule(p, epoch))
    kept = sorted(b["created_at"][:10] for b in world["bills"])
    assert all(b["plan_id"] is not None for b in world["bills"])
    assert kept == every[-10:]


def test_runs_keep_the_days_of_the_time_zone_their_schedule_names(
    spec: Spec, recipe: Recipe
) -> None:
    """`x-runs.zone`: each run is made at 00:01 on its day in the time zone the schedule's record
    names (UTC when it names none), and `date` holds that day: in Tokyo that is the evening
    before in UTC, in New York the morning of the day."""
    schemas = _plans_and_bills({**RUNS, "zone": "zone", "date": "run_day"})
    schemas["Plan"]["properties"]["zone"] = {
        "type": ["string", "null"], "enum": ["Asia/Tokyo", "America/New_York", None],
    }
    schemas["Bill"]["properties"]["run_day"] = {"type": ["string", "null"], "format": "date"}
    counts = {**recipe.counts, "plans": 9, "bills": 300}
    world = build_world(spec_with(spec, schemas), dataclasses.replace(recipe, counts=counts))
    plans = {p["id"]: p for p in world["plans"]}
    assert {p["zone"] for p in plans.values()} == {"Asia/Tokyo", "America/New_York", None}
    runs = [b for b in world["bills"] if b["plan_id"] is not None]
    assert runs
    for bill in runs:
        plan = plans[bill["plan_id"]]
        zone = ZoneInfo(plan["zone"] or "UTC")
        made = datetime.fromisoformat(bill["created_at"].replace("Z", "+00:00"))
        local = made.astimezone(zone)
        assert local.date().isoformat() == bill["run_day"], (bill, plan["zone"])
        assert "00:01:00" <= local.time().isoformat() <= "00:59:59", (bill, plan["zone"])
        assert bill["run_day"][8:] == f"{min(plan['day'], 28):02d}"
        assert plan["started_on"] <= bill["run_day"]
        assert plan["ended_on"] is None or bill["run_day"] < plan["ended_on"]
    tokyo = [b for b in runs if plans[b["plan_id"]]["zone"] == "Asia/Tokyo"]
    assert tokyo and all(b["created_at"][:10] < b["run_day"] for b in tokyo)


def test_a_run_schedule_that_reads_a_field_its_records_lack_is_refused(
    spec: Spec, recipe: Recipe
) -> None:
    counts = {**recipe.counts, "plans": 2, "bills": 4}
    broken = _plans_and_bills({**RUNS, "day": "weekday"})
    with pytest.raises(ValueError, match="plans has no field 'weekday'"):
        build_world(spec_with(spec, broken), dataclasses.replace(recipe, counts=counts))
    no_zone = _plans_and_bills({**RUNS, "zone": "time_zone", "date": "issued_on"})
    with pytest.raises(ValueError, match=r"x-runs\.zone: .*'time_zone' is not a field of plans"):
        build_world(spec_with(spec, no_zone), dataclasses.replace(recipe, counts=counts))


def test_a_copied_value_is_what_its_path_reads(spec: Spec, recipe: Recipe) -> None:
    """`x-copy`: a field holds what a path reads, through a reference or, in a nested object,
    from the record holding it (`$parent.`)."""
    kind = {"x-copy": "$parent.agent_id->hostname"}
    widget = _widget_with_parts(kind)
    widget["Widget"]["properties"]["platform"] = {"type": "string", "x-copy": "agent_id->platform"}
    counts = {**recipe.counts, "widgets": 40}
    world = build_world(spec_with(spec, widget), dataclasses.replace(recipe, counts=counts))
    agents = {a["id"]: a for a in world["agents"]}
    for w in world["widgets"]:
        agent = agents[w["agent_id"]]
        assert w["platform"] == agent["platform"], w
        assert {p["kind"] for p in w["parts"]} == {agent["hostname"]}, w


def test_a_parent_path_outside_a_nested_object_is_refused(spec: Spec) -> None:
    widget = copy.deepcopy(WIDGET)
    widget["Widget"]["properties"]["label"]["x-cases"] = [
        {"when": {"$parent.colour": ["red"]}, "x-faker": {"choices": ["c"]}},
    ]
    with pytest.raises(ValueError, match=r"label.*is not an object held by a record"):
        spec_with(spec, widget)


def test_a_collection_without_a_count_is_empty(spec: Spec, recipe: Recipe) -> None:
    patched = spec_with(spec, WIDGET)
    assert build_world(patched, recipe)["widgets"] == []


def test_reference_cycles_between_collections_are_refused(spec: Spec, recipe: Recipe) -> None:
    loop = {
        "Egg": {
            "type": "object",
            "x-collection": {"name": "eggs", "id-prefix": "egg"},
            "properties": {"id": {"type": "string"}, "hen_id": {"type": "string", "x-ref": "hens"}},
        },
        "Hen": {
            "type": "object",
            "x-collection": {"name": "hens", "id-prefix": "hen"},
            "properties": {"id": {"type": "string"}, "egg_id": {"type": "string", "x-ref": "eggs"}},
        },
    }
    with pytest.raises(GenerationError, match=r"cycle.*(eggs -> hens|hens -> eggs)"):
        build_world(spec_with(spec, loop), recipe)


def test_a_collection_may_refer_to_its_own_records(spec: Spec, recipe: Recipe) -> None:
    folders = {
        "Folder": {
            "type": "object",
            "x-collection": {"name": "folders", "id-prefix": "fld"},
            "properties": {
                "id": {"type": "string"},
                "parent_id": {
                    "type": ["string", "null"],
                    "x-ref": "folders",
                    "x-null-probability": 0.2,
                },
            },
        },
    }
    world = build_world(
        spec_with(spec, folders),
        dataclasses.replace(recipe, counts={**recipe.counts, "folders": 30}),
    )
    ids = {f["id"] for f in world["folders"]}
    parents = [f["parent_id"] for f in world["folders"] if f["parent_id"] is not None]
    assert parents and set(parents) <= ids


def test_a_named_id_that_a_generated_record_also_gets_is_refused(
    spec: Spec, recipe: Recipe
) -> None:
    records = {**recipe.records, "scripts": [{"id": "scr_000003"}]}
    with pytest.raises(GenerationError, match=r"scripts: a named record takes a generated id"):
        build_world(spec, dataclasses.replace(recipe, records=records))


def test_a_required_reference_to_an_empty_collection_is_refused(spec: Spec, recipe: Recipe) -> None:
    records = {c: r for c, r in recipe.records.items() if c != "agents"}
    counts = dict(recipe.counts, agents=0)
    with pytest.raises(GenerationError, match=r"\.agent_id refers to agents, which has no records"):
        build_world(spec, dataclasses.replace(recipe, counts=counts, records=records))


# -- validity ---------------------------------------------------------------------------------


def test_every_collection_of_the_spec_has_a_list(spec: Spec, world: World) -> None:
    assert list(world) == list(spec.collections)


def test_every_record_validates_against_its_collection_schema(spec: Spec, world: World) -> None:
    failures = []
    for name, records in world.items():
        validator = jsonschema_rs.validator_for(
            spec.collections[name].schema, validate_formats=True
        )
        failures += [
            (name, r["id"], str(e)[:200]) for r in records for e in validator.iter_errors(r)
        ]
    assert failures == []


def test_ids_are_unique_and_match_the_collection_prefix(spec: Spec, world: World) -> None:
    for name, records in world.items():
        ids = [r["id"] for r in records]
        assert len(set(ids)) == len(ids), name
        prefix = spec.collections[name].id_prefix
        assert all(i.startswith(prefix + "_") for i in ids), name


def test_values_are_json_ready(world: World) -> None:
    def plain(v: Any) -> bool:
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, str | int | float | bool)

    assert all(plain(r) for recs in world.values() for r in recs)


def _ref_fields(schema: dict[str, Any]) -> list[tuple[str, str, bool, bool]]:
    """(field, target collection, is an array, may be null) for every x-ref property."""
    out = []
    for field, prop in (schema.get("properties") or {}).items():
        ref = ref_of(prop)
        if ref is not None:
            out.append((field, ref[0], False, "null" in json_types(prop)))
        items = prop.get("items") or {}
        if ref_of(items) is not None:
            out.append((field, ref_of(items)[0], True, False))  # type: ignore[index]
    return out


def test_every_reference_resolves_to_a_record_of_its_collection(spec: Spec, world: World) -> None:
    ids = {c: {r["id"] for r in recs} for c, recs in world.items()}
    checked = 0
    for name, records in world.items():
        for field, target, is_array, may_be_null in _ref_fields(spec.collections[name].schema):
            for rec in records:
                values = rec[field] if is_array else [rec[field]]
                for v in values:
                    if v is None:
                        assert may_be_null, (name, rec["id"], field)
                    else:
                        assert v in ids[target], (name, rec["id"], field, v)
                        checked += 1
    assert checked > 5000


def test_copied_and_matched_references_agree_with_the_referenced_record(
    spec: Spec, world: World
) -> None:
    index = _by_id(world)
    for name, c in spec.collections.items():
        for field, prop in c.schema["properties"].items():
            ref = ref_of(prop)
            if ref is None:
                continue
            target, copies, where = ref
            for rec in world[name]:
                other = index[target].get(rec[field]) if rec[field] else None
                if other is None:
                    continue
                for mine, theirs in copies.items():
                    assert rec[mine] == other[theirs], (name, rec["id"], mine)
                for theirs, mine in where.items():
                    if isinstance(mine, str) and "->" not in mine:  # a match on my own field
                        assert other[theirs] == rec[mine], (name, rec["id"], field)


def test_records_that_share_a_reference_agree_on_it(world: World) -> None:
    agents = _by_id(world)["agents"]
    for alert in world["alerts"]:
        if alert["agent_id"]:
            assert agents[alert["agent_id"]]["client_id"] == alert["client_id"]


# -- time -------------------------------------------------------------------------------------


def _time_fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f: p for f, p in schema["properties"].items() if p.get("format") == "date-time"}


def test_no_timestamp_is_later_than_the_epoch_unless_declared_ahead(
    spec: Spec, recipe: Recipe, world: World
) -> None:
    epoch = recipe.epoch.strftime("%Y-%m-%dT%H:%M:%SZ")
    ahead_seen = 0
    for name, records in world.items():
        for field, prop in _time_fields(spec.collections[name].schema).items():
            ahead = "ahead_days" in (prop.get("x-time") or {})
            for rec in records:
                value = rec.get(field)
                if value is None:
                    continue
                if ahead:
                    ahead_seen += value > epoch
                else:
                    assert value <= epoch, (name, rec["id"], field, value)
    assert ahead_seen > 0


def test_created_within_two_years_and_updated_between_created_and_epoch(
    recipe: Recipe, world: World
) -> None:
    epoch = recipe.epoch.strftime("%Y-%m-%dT%H:%M:%SZ")
    floor = recipe.epoch.replace(year=recipe.epoch.year - 2).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, records in world.items():
        for rec in records:
            assert floor <= rec["created_at"] <= rec["updated_at"] <= epoch, (name, rec["id"])


def test_relative_times_follow_their_anchor(spec: Spec, world: World) -> None:
    checked = 0
    schemas = {n: c.schema for n, c in spec.collections.items()}
    env = Env(lambda c, i: None, 0, {}, schemas)
    for name, c in spec.collections.items():
        for field, prop in c.schema["properties"].items():
            after = (prop.get("x-time") or {}).get("after")
            if not after or "->" in after:  # a path through a reference: an x-invariants matter
                continue
            if is_shifted(after):  # shifted by a constant or a field: compared in seconds
                anchor_of = time_operand(name, after, schemas)
                for rec in world[name]:
                    if rec[field] is not None:
                        anchor_at = anchor_of(rec, env)
                        assert anchor_at is not None, (name, field)
                        assert (to_seconds(rec[field]) or 0) >= anchor_at, (name, field, rec["id"])
                        checked += 1
                continue
            for rec in world[name]:
                if rec[field] is not None:
                    # a date after a timestamp: compared by day
                    anchor = rec[after] and rec[after][: len(rec[field])]
                    assert anchor is not None and rec[field] >= anchor, (name, field)
                    checked += 1
    assert checked > 100


def test_children_are_created_after_what_they_refer_to(world: World) -> None:
    index = _by_id(world)
    for comment in world["ticket_comments"]:
        assert comment["created_at"] >= index["tickets"][comment["ticket_id"]]["created_at"]
    for agent in world["agents"]:
        assert agent["created_at"] >= index["clients"][agent["client_id"]]["created_at"]


def test_conditional_fields_are_null_outside_their_condition(world: World) -> None:
    for alert in world["alerts"]:
        assert (alert["resolved_at"] is None) == (alert["status"] != "resolved")
        assert (alert["acknowledged_by"] is None) == (alert["status"] == "open")
    for ticket in world["tickets"]:
        if ticket["status"] not in ("Resolved", "Closed"):
            assert ticket["resolution"] is None


# -- proportions, named records and keys ------------------------------------------------------


def test_proportions_follow_the_weights(world: World) -> None:
    # the weights hold for the agents of clients still served: an archived client's fell silent
    archived = {c["id"] for c in world["clients"] if c["status"] == "archived"}
    served = [a for a in world["agents"] if a["client_id"] not in archived]
    agents = Counter(a["status"] for a in served)
    assert agents["online"] / len(served) > 0.8
    checks = Counter(c["status"] for c in world["checks"])
    assert checks["pass"] / len(world["checks"]) > 0.75
    platforms = Counter(a["platform"] for a in world["agents"])
    assert platforms.most_common(1)[0][0] == "windows"
    assert len(world["alerts"]) < len(world["checks"]) / 5


def test_counts_come_from_the_recipe_and_never_drop_named_records(
    recipe: Recipe, world: World
) -> None:
    for name, recs in world.items():
        named = len(recipe.records.get(name, []))
        expected = max(recipe.counts.get(name, 0), named)
        if name == "api_keys":
            expected = max(expected, len(recipe.keys))
        assert len(recs) == expected, name


def test_named_records_keep_their_ids_values_and_come_first(recipe: Recipe, world: World) -> None:
    for name, named in recipe.records.items():
        for i, fixed in enumerate(named):
            rec = world[name][i]
            assert {k: rec[k] for k in fixed} == fixed, (name, fixed["id"])
    agent = _by_id(world)["agents"]["agt_acmesrv01"]
    assert (agent["client_id"], agent["hostname"], agent["status"], agent["platform"]) == (
        "cli_acme",
        "ACME-SRV01",
        "online",
        "windows",
    )
    ticket = _by_id(world)["tickets"]["tkt_acmeprinter"]
    # numbers follow creation time, so the named ticket's number is its rank by created_at
    rank = sorted(world["tickets"], key=lambda t: (t["created_at"], t["id"])).index(ticket)
    assert (ticket["number"], ticket["reference"]) == (1001 + rank, f"INC-{1001 + rank}")


def test_generated_ids_count_from_the_record_index(recipe: Recipe, world: World) -> None:
    named = len(recipe.records["clients"])
    assert world["clients"][named]["id"] == f"cli_{named:06d}"


def test_technician_may_change_every_family_but_billing_workflows_settings_users_roles(
    spec: Spec, world: World
) -> None:
    tech = set(_by_id(world)["roles"]["rol_technician"]["permissions"])
    granted = {
        s
        for op in spec.operations
        for s in op.scopes
        if not s.endswith(":read")
        and s.split(":")[0] not in ("psa_billing", "psa_workflows", "settings", "users", "roles")
    }
    assert granted <= tech
    assert not {
        p
        for p in tech
        if p.split(":")[0] in ("psa_billing", "psa_workflows", "settings")
        and not p.endswith(":read")
    }


def test_api_key_records_mirror_the_keys_without_their_secrets(
    recipe: Recipe, world: World
) -> None:
    records = _by_id(world)["api_keys"]
    assert list(records) == [k.id for k in recipe.keys]
    text = _bytes(world)
    for key in recipe.keys:
        rec = records[key.id]
        assert key.key not in text
        assert rec["prefix"] == key.key[:12] + "\u2026"
        assert (rec["owner_id"], rec["access"], rec["scopes"], rec["expires_at"]) == (
            key.user_id,
            key.access,
            list(key.scopes),
            key.expires_at,
        )
        assert (rec["revoked_at"] is not None) == key.revoked
        uses = [
            e["created_at"]
            for e in world["audit_log"]
            if e["action"] == "api_key.used" and e["object_id"] == key.id
        ]
        assert rec["last_used_at"] == max(uses, default=None)  # as the log has it
        if key.expires_at:
            assert rec["created_at"] < key.expires_at


def test_scaled_recipe_keeps_every_guarantee(spec: Spec, recipe: Recipe) -> None:
    """The large recipe is this, bigger: counts scale, references resolve, records validate."""
    counts = {
        k: v * 3
        for k, v in recipe.counts.items()
        if k in ("clients", "sites", "agents", "checks", "alerts")
    }
    counts["users"] = 2  # fewer than the named users: the named ones all stay
    world = build_world(spec, dataclasses.replace(recipe, counts=counts))
    assert len(world["agents"]) == 3 * recipe.counts["agents"]
    assert len(world["users"]) == len(recipe.records["users"])
    named_tickets = len(recipe.records["tickets"])
    assert world["tickets"] == world["tickets"][:named_tickets]  # only the named tickets
    ids = {c: {r["id"] for r in recs} for c, recs in world.items()}
    for check in world["checks"]:
        assert check["agent_id"] in ids["agents"] and check["client_id"] in ids["clients"]
    validator = jsonschema_rs.validator_for(spec.collections["agents"].schema)
    assert all(validator.is_valid(a) for a in world["agents"])


def test_generation_can_be_limited_to_what_some_collections_need(
    spec: Spec, recipe: Recipe, world: World
) -> None:
    part = build_world(spec, recipe, collections=["users"])
    assert part["users"] == world["users"] and part["roles"] == world["roles"]
    assert part["agents"] == []


def test_named_record_with_a_field_the_schema_lacks_is_refused(spec: Spec, recipe: Recipe) -> None:
    records = {**recipe.records, "clients": [{"id": "cli_x", "colour": "red"}]}
    with pytest.raises(GenerationError, match=r"cli_x.*colour"):
        build_world(spec, dataclasses.replace(recipe, records=records))

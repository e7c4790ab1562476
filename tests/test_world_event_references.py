"""Generation hints for records about other records' events: a case naming its own reference
(and copying from it), a reference that names each record once (`unique`, redrawing a record
that finds none left), one naming only what existed by a time (`existed-at`), and a time no
later than another (`x-time.before`); and a record of a change ending at what the changed record
holds now (`x-change`)."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from typing import Any

import pytest

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world
from opsmerge_sandbox.world.generator import GenerationError, World
from opsmerge_sandbox.world.recipe import Recipe
from tests.conftest import spec_with

TIME = {"type": "string", "format": "date-time"}
LAMP = {
    "type": "object",
    "x-collection": {"name": "lamps", "id-prefix": "lmp"},
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["on", "off", "broken"], "x-weights": [6, 6, 1]},
        "created_at": TIME,
        "updated_at": TIME,
    },
}


def _event(actions: list[str], weights: list[int], **object_cases: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "x-collection": {"name": "lamp_events", "id-prefix": "lev"},
        "properties": {
            "id": {"type": "string"},
            "action": {"type": "string", "enum": actions, "x-weights": weights},
            "lamp_id": {"type": ["string", "null"], **object_cases},
            "lamp_status": {"type": ["string", "null"]},
            "diff": {
                "type": "object",
                "x-cases": [
                    {
                        "when": {"action": ["switched"]},
                        "x-change": {
                            "of": "lamp_id",
                            "fields": {"status": {"on": ["off"], "off": ["on", "broken"]}},
                        },
                    }
                ],
            },
            "actor_id": {
                "type": ["string", "null"],
                "x-ref": {"collection": "users", "existed-at": "lamp_id->created_at"},
            },
            "created_at": {
                **TIME,
                "x-cases": [
                    {
                        "when": {"action": ["made"]},
                        "x-time": {"after": "lamp_id->created_at", "exactly": True},
                    },
                    {"when": {"action": ["looked"]}, "x-time": {"before": "lamp_id->updated_at"}},
                ],
            },
        },
    }


CASES = {
    "x-ref": "lamps",
    "x-cases": [
        {"when": {"action": ["made"]}, "x-ref": {"collection": "lamps", "unique": True}},
        {
            "when": {"action": ["broke"]},
            "x-ref": {"collection": "lamps", "unique": True, "where": {"status": ["broken"]}},
        },
        {
            "when": {"action": ["looked"]},
            "x-ref": {"collection": "lamps", "copy": {"lamp_status": "status"}},
        },
    ],
}


def _build(spec: Spec, recipe: Recipe, event: dict[str, Any], lamps: int, events: int) -> World:
    patched = spec_with(spec, {"Lamp": LAMP, "LampEvent": event})
    counts = {**recipe.counts, "lamps": lamps, "lamp_events": events}
    return build_world(patched, dataclasses.replace(recipe, counts=counts))


@pytest.fixture(scope="module")
def world(spec: Spec, recipe: Recipe) -> World:
    return _build(spec, recipe, _event(["made", "broke", "looked"], [3, 3, 4], **CASES), 60, 300)


def _lamps(world: World) -> dict[str, dict[str, Any]]:
    return {lamp["id"]: lamp for lamp in world["lamps"]}


def test_a_case_names_its_own_reference_and_copies_from_it(world: World) -> None:
    lamps = _lamps(world)
    looked = [e for e in world["lamp_events"] if e["action"] == "looked"]
    assert looked
    for e in looked:
        assert e["lamp_status"] == lamps[e["lamp_id"]]["status"], e
    others = [e for e in world["lamp_events"] if e["action"] != "looked"]
    assert all(e["lamp_status"] is None for e in others)


def test_a_unique_reference_names_each_record_once_and_only_what_its_where_allows(
    world: World,
) -> None:
    lamps = _lamps(world)
    broken = [lmp for lmp in world["lamps"] if lmp["status"] == "broken"]
    for action in ("made", "broke"):
        named = Counter(e["lamp_id"] for e in world["lamp_events"] if e["action"] == action)
        assert named and max(named.values()) == 1, (action, named.most_common(2))
    broke = [e["lamp_id"] for e in world["lamp_events"] if e["action"] == "broke"]
    assert all(lamps[i]["status"] == "broken" for i in broke)
    # far more draws fell on "broke" than there are broken lamps: those records were drawn again
    assert len(broke) == len(broken) and len(world["lamp_events"]) == 300


def test_existed_at_names_only_records_made_by_then(world: World) -> None:
    users = {u["id"]: u for u in world["users"]}
    lamps = _lamps(world)
    acted = [e for e in world["lamp_events"] if e["actor_id"] is not None]
    assert acted
    for e in acted:
        assert users[e["actor_id"]]["created_at"] <= lamps[e["lamp_id"]]["created_at"], e


def test_times_follow_the_record_they_are_about(world: World) -> None:
    lamps = _lamps(world)
    for e in world["lamp_events"]:
        lamp = lamps[e["lamp_id"]]
        if e["action"] == "made":
            assert e["created_at"] == lamp["created_at"], e
        elif e["action"] == "looked":
            assert lamp["created_at"] <= e["created_at"] <= lamp["updated_at"], e


def test_the_same_recipe_gives_the_same_redrawn_world(
    spec: Spec, recipe: Recipe, world: World
) -> None:
    again = _build(spec, recipe, _event(["made", "broke", "looked"], [3, 3, 4], **CASES), 60, 300)
    assert again == world


def test_a_unique_reference_with_nothing_left_to_name_fails_the_build_by_name(
    spec: Spec, recipe: Recipe
) -> None:
    only_made = _event(["made"], [1], **CASES)
    with pytest.raises(GenerationError, match=r"lamp_events: record lev_000010 drawn 200 times"):
        _build(spec, recipe, only_made, 10, 11)


def test_a_unique_reference_with_a_matching_where_is_refused(spec: Spec, recipe: Recipe) -> None:
    cases = copy.deepcopy(CASES)
    cases["x-cases"][0]["x-ref"]["where"] = {"status": "lamp_status"}
    with pytest.raises(GenerationError, match=r"x-ref.unique takes a fixed `where` only"):
        _build(spec, recipe, _event(["made", "looked"], [1, 1], **cases), 10, 5)


def test_a_change_ends_at_what_its_record_holds_now_and_came_from_another_value(
    spec: Spec, recipe: Recipe
) -> None:
    world = _build(spec, recipe, _event(["switched", "looked"], [1, 1], **CASES), 60, 200)
    lamps = _lamps(world)
    switched = [e for e in world["lamp_events"] if e["action"] == "switched"]
    assert switched
    for e in switched:
        old, new = e["diff"]["status"]
        assert new == lamps[e["lamp_id"]]["status"] != "broken", e  # a broken lamp has no "from"
        assert old != new and old in ("on", "off", "broken"), e
    assert all(e["diff"] == {} for e in world["lamp_events"] if e["action"] == "looked")


def test_a_named_record_takes_what_it_names_from_a_unique_reference(
    spec: Spec, recipe: Recipe
) -> None:
    """A recipe's record naming a lamp as made leaves no generated record to make it again."""
    named = {"lamp_events": [{"id": "lev_made", "action": "made", "lamp_id": "lmp_000003"}]}
    world = _build(
        spec,
        dataclasses.replace(recipe, records={**recipe.records, **named}),
        _event(["made", "looked"], [1, 1], **CASES),
        20,
        60,
    )
    made = Counter(e["lamp_id"] for e in world["lamp_events"] if e["action"] == "made")
    assert made["lmp_000003"] == 1 and max(made.values()) == 1

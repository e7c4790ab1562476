"""Every agent runs the baseline checks without configuration (facts §6.7): one CPU load check,
one memory check and one disk space check on its system volume, with other checks on top, and
no agent runs two checks of one name. Before, 329 of 600 seeded agents had no CPU check, 21 had
no check at all and 245 ran two checks of the same name ("Disk space C:" twice)."""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from typing import Any

import pytest

from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.spec import Spec
from tests.conftest import every_record, violations

World = dict[str, list[dict[str, Any]]]
SYSTEM_VOLUME = {"windows": "Disk space C:", "linux": "Disk space /", "macos": "Disk space /"}


def _checks_per_agent(world: World) -> dict[str, list[dict[str, Any]]]:
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for check in world["checks"]:
        per[check["agent_id"]].append(check)
    return per


def test_every_agent_runs_one_cpu_one_memory_and_one_system_volume_check(
    seeded_world: World,
) -> None:
    per = _checks_per_agent(seeded_world)
    for agent in seeded_world["agents"]:
        kinds = Counter(c["check_type"] for c in per[agent["id"]])
        names = {c["name"] for c in per[agent["id"]]}
        assert (kinds["cpu"], kinds["memory"]) == (1, 1), (agent["id"], kinds)
        assert SYSTEM_VOLUME[agent["platform"]] in names, (agent["id"], names)


def test_no_agent_runs_two_checks_of_one_name(seeded_world: World) -> None:
    per = _checks_per_agent(seeded_world)
    repeated = {a: n for a, checks in per.items()
                for n, k in Counter(c["name"] for c in checks).items() if k > 1}
    assert repeated == {}


def test_agents_run_other_checks_beside_the_baseline(seeded_world: World) -> None:
    kinds = Counter(c["check_type"] for c in seeded_world["checks"])
    assert {"service", "ping", "http", "script", "eventlog"} <= set(kinds)
    assert len(seeded_world["checks"]) > 3 * len(seeded_world["agents"])


def test_the_checker_names_a_second_cpu_check_and_a_missing_memory_check(
    spec: Spec, seeded_world: World
) -> None:
    changed = copy.deepcopy(seeded_world)
    cpu = next(c for c in changed["checks"] if c["check_type"] == "cpu")
    changed["checks"].append({**cpu, "id": "chk_999999"})
    memory = next(c for c in changed["checks"] if c["check_type"] == "memory")
    changed["checks"].remove(memory)
    found = violations(spec, changed)
    assert ("chk_999999", "one-check-of-a-name-per-agent") in found
    assert (cpu["agent_id"], "every-agent-watches-its-cpu") in found
    assert (memory["agent_id"], "every-agent-watches-its-memory") in found


def test_an_agent_served_lists_its_baseline_checks(client: Any, owner: dict[str, str]) -> None:
    checks = every_record(client, "/api/v1/checks", owner, agent_id="agt_acmesrv01")
    kinds = Counter(c["check_type"] for c in checks)
    assert (kinds["cpu"], kinds["memory"]) == (1, 1)
    assert "Disk space C:" in {c["name"] for c in checks}


@pytest.mark.parametrize(
    ("cover_with", "keep_cover", "named"),
    [
        ({"field": "check_type", "values": ["cpu"]}, False, "cover-with"),
        ({"field": "check_type"}, True, "cover-with"),
        ({"field": "no_such_field", "values": ["cpu"]}, True, "no_such_field"),
    ],
)
def test_a_cover_with_that_cannot_be_followed_is_refused_at_the_check_of_the_spec(
    spec: Spec, cover_with: dict[str, Any], keep_cover: bool, named: str
) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    ref = schemas["CheckWritable"]["properties"]["agent_id"]["x-ref"]
    ref["cover-with"] = cover_with
    if not keep_cover:
        del ref["cover"]
    _, problems = parse_collections(schemas)
    assert any(named in p.message and "Check" in p.where for p in problems), problems

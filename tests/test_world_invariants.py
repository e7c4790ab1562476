"""The seeded world keeps the spec's `x-invariants`, and the checker can tell when it does not."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.progress import progress
from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world, load_recipe
from opsmerge_sandbox.world.conditions import ConditionError, Env, compile_condition
from opsmerge_sandbox.world.invariants import Violation, check_world
from opsmerge_sandbox.world.record_shapes import shape_violations

# conditions that read only their own record: nothing to look up
NO_ENV = Env(lambda collection, record_id: None, 0)

World = dict[str, list[dict[str, Any]]]


def _schemas(spec: Spec) -> dict[str, dict[str, Any]]:
    return {name: c.schema for name, c in spec.collections.items()}


def _check(spec: Spec, world: World, recipe_name: str = "default") -> list[Violation]:
    recipe = load_recipe(recipe_name)
    return check_world(world, _schemas(spec), int(recipe.epoch.timestamp()), recipe.organisation)


@pytest.fixture(scope="module")
def world(spec: Spec) -> World:
    return build_world(spec, load_recipe())


def test_every_collection_declares_invariants(spec: Spec) -> None:
    bare = [n for n, c in spec.collections.items() if not c.schema.get("x-invariants")]
    assert bare == []


def test_default_world_keeps_every_invariant(spec: Spec, world: World) -> None:
    assert [v for v in _check(spec, world)] == []


@pytest.mark.parametrize("seed", [1, 7, 424242])
def test_other_seeds_keep_every_invariant(spec: Spec, seed: int) -> None:
    assert _check(spec, build_world(spec, load_recipe("default", seed))) == []


@pytest.mark.parametrize("seed", [None, 1, 7, 424242])
def test_every_seeded_record_is_one_its_schema_accepts(spec: Spec, seed: int | None) -> None:
    recipe = load_recipe("default", seed) if seed else load_recipe()
    assert shape_violations(build_world(spec, recipe), _schemas(spec)) == []


def test_the_shape_check_names_a_required_field_left_null(spec: Spec, world: World) -> None:
    bad = copy.deepcopy(world)
    entry = bad["audit_log"][3]
    entry["created_at"] = None
    (found,) = shape_violations(bad, _schemas(spec))
    assert (found.collection, found.record_id, found.invariant) == (
        "audit_log",
        entry["id"],
        "matches-its-schema",
    )
    assert found.detail.startswith("created_at: null is not of type")


def test_large_world_keeps_every_invariant(spec: Spec) -> None:
    recipe = load_recipe("large")
    world = build_world(spec, recipe)
    violations = check_world(
        world, _schemas(spec), int(recipe.epoch.timestamp()), recipe.organisation
    )
    assert violations[:20] == []


def _planted(world: World) -> World:
    bad = copy.deepcopy(world)
    mac = next(a for a in bad["agents"] if a["platform"] == "macos")
    mac["hostname"] = "DESKTOP-ABC1234"  # a Windows name on a Mac
    server = next(a for a in bad["agents"] if a["os"] == "Windows Server 2019")
    server["os_version"] = "10.0.22631"  # a Windows 11 build
    entry = bad["time_entries"][0]
    entry["created_at"] = "2020-01-01T00:00:00Z"  # before it started
    invoice = bad["invoices"][0]
    invoice["lines"][0]["tax_code"] = "VAT Zero 0%"
    contact = next(c for c in bad["contacts"] if c["client_id"] and not c["is_primary"])
    contact["is_primary"] = True  # a second primary contact
    alert = next(a for a in bad["alerts"] if a["check_id"])
    alert["alert_type"] = "msp360" if alert["alert_type"] != "msp360" else "cpu"
    first, second = sorted(bad["tickets"], key=lambda t: t["created_at"])[:2]
    first["number"], second["number"] = second["number"], first["number"]
    return {
        **bad,
        "_ids": [  # type: ignore[dict-item]
            {"id": x}
            for x in (
                mac["id"],
                server["id"],
                entry["id"],
                invoice["id"],
                contact["client_id"],
                alert["id"],
                second["id"],  # the later ticket holds the lower number
            )
        ],
    }


def test_checker_lists_planted_violations_by_record_id(spec: Spec, world: World) -> None:
    bad = _planted(world)
    planted = [x["id"] for x in bad.pop("_ids")]
    found = {(v.record_id, v.invariant) for v in _check(spec, bad)}
    ids = {rid for rid, _ in found}
    assert set(planted) <= ids, set(planted) - ids
    rules = {rule for _, rule in found}
    assert {
        "hostname-of-mac",
        "build-of-server-2019",
        "created-after-start",
        "labour-and-services-standard-rated",
        "one-primary-contact",
        "type-of-check",
        "numbers-follow-creation",
    } <= rules


def test_checker_sees_references_to_records_created_later(spec: Spec, world: World) -> None:
    bad = copy.deepcopy(world)
    comment = bad["ticket_comments"][0]
    ticket = next(t for t in bad["tickets"] if t["id"] == comment["ticket_id"])
    ticket["created_at"] = "2026-10-31T23:59:59Z"
    comment["created_at"] = comment["updated_at"] = "2026-10-01T00:00:00Z"
    found = {(v.record_id, v.invariant) for v in _check(spec, bad)}
    assert (comment["id"], "refs-existed-before") in found


def test_checker_sees_a_log_that_contradicts_the_records_it_names(
    spec: Spec, world: World
) -> None:
    bad = copy.deepcopy(world)
    log = bad["audit_log"]
    used = next(e for e in log if e["action"] == "api_key.used")
    used["api_key_name"] = "PSA sync"  # a name no key has
    made = next(e for e in log if e["action"] == "ticket.created")
    twice = {**made, "id": "aud_999999"}  # the same ticket made twice
    log.append(twice)
    paid = next(e for e in log if e["action"] == "invoice.paid")
    invoice = next(i for i in bad["invoices"] if i["id"] == paid["object_id"])
    invoice["status"] = "Open"  # paid, says the log
    moved = next(e for e in log if e["action"] == "ticket.status_changed")
    ticket = next(t for t in bad["tickets"] if t["id"] == moved["object_id"])
    ticket["status"] = "New" if moved["diff"]["status"][1] != "New" else "Open"
    found = {(v.record_id, v.invariant) for v in _check(spec, bad)}
    assert {
        (used["id"], "key-use-names-its-key"),
        (twice["id"], "once-per-record"),
        (paid["id"], "paid-invoice"),
        (moved["id"], "latest-change-is-current"),
    } <= found
    assert (made["id"], "once-per-record") not in found  # the first of the two is not the double


def test_a_path_reads_into_an_object_by_member_and_an_array_by_position(spec: Spec) -> None:
    schemas = _schemas(spec)
    not_reopened = compile_condition("audit_log", {"diff.status.1": {"not-in": ["New"]}}, schemas)
    assert not_reopened({"diff": {"status": ["New", "Open"]}}, NO_ENV)
    assert not not_reopened({"diff": {"status": ["Open", "New"]}}, NO_ENV)
    assert not_reopened({"diff": {"priority": ["Low", "High"]}}, NO_ENV)
    with pytest.raises(ConditionError, match="only the last field, an object or array"):
        compile_condition("audit_log", {"action.verb": ["x"]}, schemas)


def test_min_and_max_take_a_path_to_the_bound_and_let_a_missing_number_pass(spec: Spec) -> None:
    schemas = _schemas(spec)
    warned_first = compile_condition(
        "domains", {"ssl_warning_days": {"min": "ssl_critical_days"}}, schemas
    )
    critical_last = compile_condition(
        "domains", {"ssl_critical_days": {"max": "ssl_warning_days"}}, schemas
    )
    for rule in (warned_first, critical_last):
        assert rule({"ssl_warning_days": 30, "ssl_critical_days": 7}, NO_ENV)
        assert rule({"ssl_warning_days": 7, "ssl_critical_days": 7}, NO_ENV)
        assert not rule({"ssl_warning_days": 7, "ssl_critical_days": 8}, NO_ENV)
        assert rule({"ssl_warning_days": None, "ssl_critical_days": 8}, NO_ENV)
        assert rule({"ssl_warning_days": 7}, NO_ENV)
    with pytest.raises(ConditionError, match="no_such_field"):
        compile_condition("domains", {"ssl_warning_days": {"min": "no_such_field"}}, schemas)
    with pytest.raises(ConditionError, match="a number or a path"):
        compile_condition("domains", {"ssl_warning_days": {"min": True}}, schemas)


def test_spec_check_reports_a_unique_rule_on_a_missing_field(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    schemas["AuditEntry"]["x-invariants"].append(
        {"id": "once", "class": "people", "on-write": "seeded-only", "unique": ["nope"]}
    )
    _, problems = parse_collections(schemas)
    assert any("unique must list fields of audit_log" in p.message for p in problems)


def test_spec_check_reports_an_invariant_on_a_missing_field(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    schemas["Agent"]["x-invariants"].append(
        {"id": "broken", "class": "technology", "require": {"no_such_field": [1]}}
    )
    _, problems = parse_collections(schemas)
    assert any("no_such_field" in p.message and "Agent" in p.where for p in problems)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_fixtures_check_exits_zero_and_prints_nothing_on_stdout_for_the_default_world() -> None:
    done = _cli("fixtures", "check")
    assert done.returncode == 0, done.stdout[-2000:]
    assert done.stdout == ""
    assert "0 violation(s)" in done.stderr


def test_fixtures_check_names_a_bad_named_record_and_exits_one(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        "extends: default\nname: bad\nrecords:\n  agents:\n"
        "    - {id: agt_acmesrv01, site_id: sit_acmelondon, hostname: MAC-ODD01,\n"
        "       platform: windows,\n"
        "       os: Windows Server 2022, os_version: '10.0.20348', arch: x86_64, status: online,\n"
        "       billing_category: server}\n"
    )
    done = _cli("fixtures", "check", "--recipe", str(recipe), "--json")
    assert done.returncode == 1
    rows = json.loads(done.stdout)
    assert {
        "collection": "agents",
        "id": "agt_acmesrv01",
        "invariant": "hostname-of-windows-server",
        "class": "technology",
    }.items() <= next(r for r in rows if r["invariant"] == "hostname-of-windows-server").items()


def test_large_builds_report_plain_progress_on_stderr_and_only_data_on_stdout(
    tmp_path: Path,
) -> None:
    recipe = tmp_path / "mid.yaml"
    recipe.write_text("extends: default\nname: mid\ncounts: {agents: 5000, checks: 20000}\n")
    done = _cli("fixtures", "dump", "--recipe", str(recipe))
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["checks"]) == 20000  # stdout is the JSON and nothing else
    lines = done.stderr.splitlines()
    assert lines[0].startswith("Building world mid") and "started" in lines[0]
    assert "done in" in lines[-1] and 2 <= len(lines) <= 6


def test_a_recipe_asking_more_than_a_unique_rule_allows_fails_naming_the_rule(
    tmp_path: Path,
) -> None:
    """Thirty checks an agent cannot all have names of their own: the build stops and says
    which rule ran out, rather than only that a record never finished."""
    recipe = tmp_path / "crowded.yaml"
    recipe.write_text("extends: default\nname: crowded\ncounts: {checks: 20000}\n")
    done = _cli("fixtures", "dump", "--recipe", str(recipe))
    assert done.returncode == 2 and done.stdout == ""
    assert "the unique rule one-check-of-a-name-per-agent: agent_id = " in done.stderr


def test_small_worlds_build_silently() -> None:
    done = _cli("fixtures", "dump")
    assert done.returncode == 0 and done.stderr == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_draws_a_rich_bar() -> None:
    out = _Terminal()
    with progress("Building world", 100_000, out) as report:
        for done in range(0, 100_001, 25_000):
            report("agents", done, 100_000)
    text = out.getvalue()
    assert "Building world" in text and "100%" in text and "━" in text


def test_spec_check_reports_a_conditional_hint_on_a_missing_field(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    props = schemas["CheckWritable"]["properties"]
    props["check_type"]["x-cases"][0]["when"] = {"agent_id->no_such_field": ["linux"]}
    _, problems = parse_collections(schemas)
    assert any("no_such_field" in p.message and "Check" in p.where for p in problems), problems


def _patterns(node: Any) -> list[str]:
    """Every `pattern` test an invariant or a hint's condition holds, anywhere in the spec."""
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for v in node.values() for p in _patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in _patterns(v)]
    return []


def test_no_pattern_in_the_spec_matches_a_literal_backslash_where_it_means_an_escape(
    spec: Spec,
) -> None:
    # in a single-quoted YAML string `\\b` stays two characters: a regex of a backslash and a
    # `b`, which no text holds, so a negative lookahead written that way never refuses anything
    doubled = [p for p in _patterns(spec.raw) if "\\\\" in p]
    assert doubled == []


def test_the_checker_names_american_spelling_in_a_ticket_and_a_comment(
    spec: Spec, world: World
) -> None:
    bad = copy.deepcopy(world)
    ticket = next(t for t in bad["tickets"] if t["description"])
    ticket["description"] = "The monitor shows the wrong color since the update."
    comment = bad["ticket_comments"][0]
    comment["body"] += " We will center the screen."
    found = {(v.record_id, v.invariant) for v in _check(spec, bad)}
    assert (ticket["id"], "plain-british-english") in found
    assert (comment["id"], "plain-british-english") in found


def _banks(node: Any, where: str = "") -> list[tuple[str, list[str]]]:
    """Every list of strings in the spec's generation hints, with where it is."""
    if isinstance(node, dict):
        return [b for k, v in node.items() for b in _banks(v, f"{where}/{k}")]
    if isinstance(node, list):
        if node and all(isinstance(v, str) for v in node):
            return [(where, node)]
        return [b for i, v in enumerate(node) for b in _banks(v, f"{where}[{i}]")]
    return []


def test_a_bank_of_sentences_holds_whole_sentences(spec: Spec) -> None:
    # a comma inside an unquoted YAML flow list splits a sentence in two: "Connected remotely"
    # and "found the cause and fixed it." were one note
    broken = []
    for where, bank in _banks(spec.raw):
        ends = [s.rstrip().endswith((".", "?", "!")) for s in bank]
        if sum(ends) * 2 < len(bank):
            continue  # not sentences: names, tags, commands
        pairs = zip(bank, ends, strict=True)
        broken += [(where, s) for s, end in pairs if not end or s[0].islower()]
    assert broken == []

"""`spec check` holds the spec to its sunset, changelog and invention promises.

Each broken spec is the bundled one with one thing changed, so a rule that fires on anything else
shows up as an extra problem; the operations are picked by what they are, not by name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.catalogue import load_catalogue
from opsmerge_sandbox.changelog import parse_changelog
from opsmerge_sandbox.extensions import ExtensionError
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import load_spec
from opsmerge_sandbox.speccheck import lint_document
from opsmerge_sandbox.state import build_state

Raw = dict[str, Any]
SPEC = load_spec()
CATALOGUE = load_catalogue()
DEPRECATED = next(op for op in SPEC.operations if op.deprecated and op.sunset)
PLAIN = next(op for op in SPEC.operations if not op.deprecated and op.kind == "get")


def _problems(mutate: Callable[[Raw], None]) -> list[tuple[str, str]]:
    raw = copy.deepcopy(SPEC.raw)
    mutate(raw)
    return [(p.rule, p.message) for p in lint_document(raw, CATALOGUE)]


def _baseline_rules() -> set[str]:
    return {p.rule for p in lint_document(copy.deepcopy(SPEC.raw), CATALOGUE)}


def test_the_bundled_spec_keeps_its_sunset_changelog_and_marker_promises() -> None:
    assert not {"sunset", "changelog", "invented"} & _baseline_rules()
    entries, problems = parse_changelog(SPEC.raw)
    assert problems == [] and entries


def test_a_deprecated_operation_without_its_410_is_a_problem() -> None:
    def drop_410(raw: Raw) -> None:
        del raw["paths"][DEPRECATED.path][DEPRECATED.method.lower()]["responses"]["410"]

    found = [m for rule, m in _problems(drop_410) if rule == "sunset"]
    assert len(found) == 1 and "410" in found[0] and "OPERATION_SUNSET" in found[0]


def test_a_410_without_the_sunset_headers_is_a_problem() -> None:
    def bare_410(raw: Raw) -> None:
        responses = raw["paths"][DEPRECATED.path][DEPRECATED.method.lower()]["responses"]
        gone = copy.deepcopy(raw["components"]["responses"]["Gone"])
        del gone["headers"]["Sunset"]
        responses["410"] = gone

    found = [m for rule, m in _problems(bare_410) if rule == "sunset"]
    assert found == ["410 response lacks Sunset"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda cl: cl[0].update(operations=["noSuchOperation"]), "'noSuchOperation'"),
        (lambda cl: cl[0].update(change="removed"), "change is 'removed'"),
        (lambda cl: cl[0].update(date="30/06/2027"), "not a YYYY-MM-DD date"),
        (lambda cl: cl[0].update(summary=" "), "summary must be a non-empty string"),
        (lambda cl: cl[0].update(invented="yes"), "invented must be true or false"),
        (lambda cl: cl[0].update(author="x"), "unknown key 'author'"),
    ],
)
def test_a_changelog_entry_that_does_not_parse_is_a_problem(
    mutate: Callable[[list[dict[str, Any]]], None], expected: str
) -> None:
    problems = _problems(lambda raw: mutate(raw["x-changelog"]))
    found = [m for rule, m in problems if rule == "changelog"]
    assert found and any(expected in m for m in found), found


def test_a_changelog_that_disagrees_with_the_operations_dates_is_a_problem() -> None:
    def move(raw: Raw) -> None:
        for entry in raw["x-changelog"]:
            if entry["change"] == "sunset" and DEPRECATED.operation_id in entry["operations"]:
                entry["date"] = "2099-01-01"

    found = [m for rule, m in _problems(move) if rule == "changelog"]
    assert any("dated 2099-01-01" in m and "x-sunset" in m for m in found), found


def test_a_deprecated_operation_the_changelog_does_not_announce_is_a_problem() -> None:
    def forget(raw: Raw) -> None:
        raw["x-changelog"] = [
            e for e in raw["x-changelog"] if DEPRECATED.operation_id not in e["operations"]
        ]

    found = [m for rule, m in _problems(forget) if rule == "changelog"]
    assert len(found) == 2 and all(DEPRECATED.operation_id in m for m in found)


def test_a_deprecation_entry_for_an_operation_that_is_not_deprecated_is_a_problem() -> None:
    def claim(raw: Raw) -> None:
        raw["x-changelog"].append(
            {
                "date": "2026-05-01",
                "change": "deprecated",
                "operations": [PLAIN.operation_id],
                "summary": "Deprecated.",
                "invented": True,
            }
        )

    found = [m for rule, m in _problems(claim) if rule == "changelog"]
    assert any("not deprecated: true" in m for m in found), found


def test_an_invented_marker_that_is_not_true_is_a_problem() -> None:
    def weaken(raw: Raw) -> None:
        raw["paths"][PLAIN.path][PLAIN.method.lower()]["x-invented"] = "maybe"
        raw["components"]["schemas"]["Error"]["x-invented"] = False

    found = [m for rule, m in _problems(weaken) if rule == "invented"]
    assert sorted(found) == [
        "x-invented must be true, got 'maybe'",
        "x-invented must be true, got False",
    ]


def test_the_sandbox_refuses_to_start_with_a_changelog_that_does_not_parse(
    tmp_path: Path,
) -> None:
    raw = copy.deepcopy(SPEC.raw)
    raw["x-changelog"][0]["operations"] = ["noSuchOperation"]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = Settings(spec_path=path)
    with pytest.raises(ExtensionError, match="noSuchOperation"):
        create_app(settings, build_state(settings))

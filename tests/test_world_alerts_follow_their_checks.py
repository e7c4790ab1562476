"""Failing checks become alerts: in the seeded world every failing check of a client still served
has raised one alert that is still open or acknowledged, and no passing or disabled check has one.
Before, 151 of 236 failing enabled checks had never raised an alert, nine checks had two open
alerts at once and two disabled checks had one open. A client that left is no longer monitored:
its checks were turned off by the time it left (before, 29 of them were failing, enabled and
unheard)."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.spec import Spec
from tests.conftest import every_record, violations

World = dict[str, list[dict[str, Any]]]
FAILING = {"warning", "fail", "error"}
UNRESOLVED = {"open", "acknowledged"}


def _served(world: World) -> set[str]:
    return {c["id"] for c in world["clients"] if c["status"] != "archived"}


def _should_be_alerted(check: dict[str, Any], served: set[str]) -> bool:
    return check["status"] in FAILING and check["enabled"] and check["client_id"] in served


def test_every_failing_check_of_a_served_client_has_exactly_one_alert_open(
    seeded_world: World,
) -> None:
    served = _served(seeded_world)
    open_per_check = Counter(
        a["check_id"] for a in seeded_world["alerts"]
        if a["status"] in UNRESOLVED and a["check_id"] is not None
    )
    failing = [c for c in seeded_world["checks"] if _should_be_alerted(c, served)]
    assert len(failing) > 100  # enough to judge
    assert [c["id"] for c in failing if open_per_check[c["id"]] != 1] == []
    others = [c["id"] for c in seeded_world["checks"]
              if not _should_be_alerted(c, served) and open_per_check[c["id"]]]
    assert others == []


def test_the_other_check_alerts_were_raised_by_checks_that_pass_again_and_are_resolved(
    seeded_world: World,
) -> None:
    checks = {c["id"]: c for c in seeded_world["checks"]}
    resolved = [a for a in seeded_world["alerts"]
                if a["check_id"] is not None and a["status"] == "resolved"]
    assert len(resolved) > 50
    assert {checks[a["check_id"]]["status"] for a in resolved} == {"pass"}
    assert all(checks[a["check_id"]]["last_run_at"] is not None for a in resolved)
    # and integrations still raise alerts of their own
    assert any(a["check_id"] is None for a in seeded_world["alerts"])


def test_the_checker_names_a_failing_check_whose_alert_was_resolved(
    spec: Spec, seeded_world: World
) -> None:
    changed = copy.deepcopy(seeded_world)
    alert = next(a for a in changed["alerts"] if a["status"] == "open" and a["check_id"])
    alert.update(status="resolved", acknowledged_at=alert["created_at"],
                 resolved_at=alert["created_at"], updated_at=alert["created_at"],
                 acknowledged_by="usr_owner")
    assert (alert["check_id"], "one-open-alert-per-failing-check") in violations(spec, changed)


def test_the_checker_names_a_check_with_two_alerts_open(spec: Spec, seeded_world: World) -> None:
    changed = copy.deepcopy(seeded_world)
    alert = next(a for a in changed["alerts"] if a["status"] == "open" and a["check_id"])
    changed["alerts"].append({**alert, "id": "alr_999999"})
    assert (alert["check_id"], "one-open-alert-per-failing-check") in violations(spec, changed)


def test_the_served_alerts_open_name_every_failing_check_listed(
    client: Any, owner: dict[str, str]
) -> None:
    headers = owner
    failing = [c for status in sorted(FAILING)
               for c in every_record(client, "/api/v1/checks", headers, status=status)]
    open_alerts = [a for status in sorted(UNRESOLVED)
                   for a in every_record(client, "/api/v1/alerts", headers, status=status)]
    served = {c["id"] for c in every_record(client, "/api/v1/clients", headers)
              if c["status"] != "archived"}
    named = Counter(a["check_id"] for a in open_alerts if a["check_id"] is not None)
    wanted = {c["id"] for c in failing if c["enabled"] and c["client_id"] in served}
    assert wanted and set(named) == wanted
    assert max(named.values()) == 1


def test_a_rest_where_without_cover_is_refused_at_the_check_of_the_spec(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    ref = schemas["Alert"]["allOf"][1]["properties"]["check_id"]["x-ref"]
    del ref["cover"]
    _, problems = parse_collections(schemas)
    assert any("rest-where" in p.message and "Alert" in p.where for p in problems), problems


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"no_such_field": ["x"]}, "no_such_field"),
        ({"status": {"no-such-test": 1}}, "no-such-test"),
    ],
)
def test_a_rest_where_that_cannot_be_read_is_refused_at_the_check_of_the_spec(
    spec: Spec, bad: dict[str, Any], named: str
) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    schemas["Alert"]["allOf"][1]["properties"]["check_id"]["x-ref"]["rest-where"] = bad
    _, problems = parse_collections(schemas)
    assert any(named in p.message and "Alert" in p.where for p in problems), problems


def test_a_client_that_left_is_no_longer_monitored(seeded_world: World) -> None:
    """Its checks were turned off by the time it left, so none of them is failing unheard."""
    left = {c["id"]: c["updated_at"] for c in seeded_world["clients"]
            if c["status"] == "archived"}
    theirs = [c for c in seeded_world["checks"] if c["client_id"] in left]
    assert theirs  # enough to judge
    assert [c["id"] for c in theirs if c["enabled"]] == []
    assert [c["id"] for c in theirs if c["updated_at"] > left[c["client_id"]]] == []


def test_the_checker_names_a_check_still_on_for_a_client_that_left(
    spec: Spec, seeded_world: World
) -> None:
    left = {c["id"] for c in seeded_world["clients"] if c["status"] == "archived"}
    changed = copy.deepcopy(seeded_world)
    check = next(c for c in changed["checks"] if c["client_id"] in left)
    check["enabled"] = True
    assert (check["id"], "off-for-a-client-that-left") in violations(spec, changed)

"""Checks and alerts agree with the agents that run and raise them, as an integrator reads them
through the API: an agent runs an enabled check every interval and reports with its heartbeat, a
disabled check stopped running when it was disabled, a check added after its agent fell silent
has not run, an alert was raised by a run its agent reported, and an archived client's agents
fell silent and its domains stopped being checked when it was archived."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

from litestar.testing import TestClient

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world, load_recipe
from tests.conftest import (
    advance_clock,
    at,
    every_record,
    make_app,
    records_by_id,
    spec_with,
)

H = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}


def _by_id(client: TestClient[Any], path: str) -> dict[str, dict[str, Any]]:
    return records_by_id(client, f"/api/v1/{path}", H)


def test_an_enabled_check_ran_within_its_interval_before_its_agent_was_last_heard(
    client: TestClient[Any],
) -> None:
    agents = _by_id(client, "agents")
    judged = 0
    for check in every_record(client, "/api/v1/checks", H):
        if not check["enabled"] or check["last_run_at"] is None:
            continue
        heard = at(agents[check["agent_id"]]["last_seen_at"])
        ran = at(check["last_run_at"])
        assert heard - timedelta(seconds=check["interval_seconds"]) <= ran <= heard, check["id"]
        judged += 1
    assert judged > 1000


def test_a_disabled_check_last_ran_before_it_was_disabled(client: TestClient[Any]) -> None:
    agents = _by_id(client, "agents")
    disabled = [c for c in every_record(client, "/api/v1/checks", H) if not c["enabled"]]
    assert len(disabled) > 10
    for check in disabled:
        if check["last_run_at"] is not None:
            assert check["last_run_at"] <= check["updated_at"], check["id"]
            assert check["last_run_at"] <= agents[check["agent_id"]]["last_seen_at"], check["id"]


def test_a_check_added_after_its_agent_fell_silent_has_not_run(client: TestClient[Any]) -> None:
    agents = _by_id(client, "agents")
    late = [
        c
        for c in every_record(client, "/api/v1/checks", H)
        if c["created_at"] > agents[c["agent_id"]]["last_seen_at"]
    ]
    assert late
    for check in late:
        assert check["last_run_at"] is None, check["id"]
        assert (check["status"], check["message"]) == ("pass", None), check["id"]


def test_an_alert_was_raised_by_a_run_its_agent_reported(client: TestClient[Any]) -> None:
    agents = _by_id(client, "agents")
    checks = _by_id(client, "checks")
    alerts = every_record(client, "/api/v1/alerts", H)
    assert alerts
    for alert in alerts:
        if alert["check_id"] is not None:
            ran = checks[alert["check_id"]]["last_run_at"]
            assert ran is not None and alert["created_at"] <= ran, alert["id"]
        if alert["agent_id"] is not None:
            assert alert["created_at"] <= agents[alert["agent_id"]]["last_seen_at"], alert["id"]


def test_an_archived_clients_agents_fell_silent_when_it_was_archived(
    client: TestClient[Any],
) -> None:
    archived = {c["id"]: c for c in _by_id(client, "clients").values() if c["status"] == "archived"}
    theirs = [a for a in every_record(client, "/api/v1/agents", H) if a["client_id"] in archived]
    assert theirs
    for agent in theirs:
        assert agent["status"] == "offline", agent["id"]
        assert agent["last_seen_at"] <= archived[agent["client_id"]]["updated_at"], agent["id"]


def test_an_archived_clients_domains_stopped_being_checked_when_it_left(
    client: TestClient[Any],
) -> None:
    """Monitoring looks at a customer's domains at least daily, on the running clock; a client
    that left is no longer looked after: its domains were last checked by the time it left and
    stay so as the clock runs on."""
    archived = {c["id"]: c for c in _by_id(client, "clients").values() if c["status"] == "archived"}
    ws = f"domains-{uuid.uuid4().hex[:8]}"
    headers = {**H, "X-Sandbox-Workspace": ws}
    before = {d["id"]: d for d in every_record(client, "/api/v1/domains", headers)}
    gone = [d for d in before.values() if d["client_id"] in archived]
    kept = [d for d in before.values() if d["client_id"] not in archived]
    assert gone and kept
    for d in gone:
        assert d["last_checked_at"] <= archived[d["client_id"]]["updated_at"], d["id"]
    advance_clock(client, ws, 2 * 86_400)
    after = {d["id"]: d for d in every_record(client, "/api/v1/domains", headers)}
    for d in gone:
        assert after[d["id"]]["last_checked_at"] == d["last_checked_at"], d["id"]
    moved = [d for d in kept if d["last_checked_at"] is not None]
    assert moved
    for d in moved:
        assert after[d["id"]]["last_checked_at"] > d["last_checked_at"], d["id"]


def _beacon_world(spec: Spec) -> dict[str, list[dict[str, Any]]]:
    """Beacons (heard from at some time) and pings they ran every `every` seconds before it."""
    beacon = {
        "type": "object",
        "x-collection": {"name": "beacons", "id-prefix": "bcn"},
        "properties": {
            "id": {"type": "string"},
            "heard_at": {"type": "string", "format": "date-time", "x-time": {"within_days": 60}},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    }
    ping = {
        "type": "object",
        "x-collection": {"name": "pings", "id-prefix": "png"},
        "properties": {
            "id": {"type": "string"},
            "beacon_id": {"type": "string", "x-ref": "beacons"},
            "every": {"type": "integer", "enum": [60, 600]},
            "on": {"type": "boolean", "x-probability": 0.5},
            "ran_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "x-time": {"within_seconds": "every", "before": "beacon_id->heard_at"},
                "x-cases": [
                    {
                        "when": {"on": [False]},
                        "x-time": {
                            "within_days": 5,
                            "before": ["updated_at", "beacon_id->heard_at"],
                        },
                    }
                ],
            },
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    }
    recipe = load_recipe()
    counts = {**recipe.counts, "beacons": 30, "pings": 600}
    patched = spec_with(spec, {"Beacon": beacon, "Ping": ping})
    return build_world(patched, dataclasses.replace(recipe, counts=counts))


def test_a_time_within_a_fields_seconds_before_the_earliest_bound(spec: Spec) -> None:
    world = _beacon_world(spec)
    beacons = {b["id"]: b for b in world["beacons"]}
    ran = never = off = 0
    for p in world["pings"]:
        heard = at(beacons[p["beacon_id"]]["heard_at"])
        if p["created_at"] > beacons[p["beacon_id"]]["heard_at"]:
            assert p["ran_at"] is None, p  # bounded before it existed: it has not happened
            never += 1
            continue
        ran_at = at(p["ran_at"])
        assert at(p["created_at"]) <= ran_at <= heard, p
        if p["on"]:
            assert heard - timedelta(seconds=p["every"]) <= ran_at, p
            ran += 1
        else:
            assert p["ran_at"] <= p["updated_at"], p
            off += 1
    assert ran and never and off


def test_an_integration_alert_comes_from_an_integration_that_is_on(
    client: TestClient[Any],
) -> None:
    on = {i["provider"] for i in every_record(client, "/api/v1/integrations", H) if i["enabled"]}
    off = {i["provider"] for i in every_record(client, "/api/v1/integrations", H)} - on
    assert on and off
    raised = [a for a in every_record(client, "/api/v1/alerts", H) if a["check_id"] is None]
    assert raised
    assert [a["id"] for a in raised if a["alert_type"] not in on] == []


def test_an_agent_was_heard_from_after_each_reboot_it_completed() -> None:
    # a read of every agent's reboots: more reads than one key's budget for a minute
    with TestClient(make_app(rate_limit=10_000), base_url="http://sandbox.local") as client:
        _judge_reboots(client)


def _judge_reboots(client: TestClient[Any]) -> None:
    judged = 0
    for agent in every_record(client, "/api/v1/agents", H):
        path = f"/api/v1/agents/{agent['id']}/reboots"
        for reboot in client.get(path, headers=H).json()["data"]["items"]:
            if reboot["completed_at"] is not None:
                assert reboot["completed_at"] <= agent["last_seen_at"], (agent["id"], reboot)
                judged += 1
    assert judged > 10

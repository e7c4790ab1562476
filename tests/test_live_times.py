"""Times that keep pace with the clock (`x-live-time`): the seeded world is made at its epoch
and served on a running clock, and an online agent keeps being heard from (its enabled checks
keep running, its domains keep being looked at) as far behind the clock as it was behind the
epoch; what has stopped stays where it stopped."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from litestar.testing import TestClient

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world import build_world, load_recipe
from opsmerge_sandbox.world.invariants import hint_problems
from tests.conftest import advance_clock, at, every_record, sandbox_now

H = {"Authorization": "Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"}
HEARTBEAT = timedelta(minutes=5)  # online: heard from in the last five minutes


def test_an_online_agent_was_heard_from_in_the_last_five_minutes(client: TestClient[Any]) -> None:
    agents = every_record(client, "/api/v1/agents", H)
    now = sandbox_now(client)
    online = [a for a in agents if a["status"] == "online"]
    assert len(online) > 300
    for agent in online:
        assert now - HEARTBEAT - timedelta(seconds=5) <= at(agent["last_seen_at"]), agent["id"]
        assert at(agent["last_seen_at"]) <= now + timedelta(seconds=5), agent["id"]
    single = client.get(f"/api/v1/agents/{online[0]['id']}", headers=H).json()["data"]
    assert single["last_seen_at"] >= online[0]["last_seen_at"]


def test_what_stopped_stays_where_it_stopped(client: TestClient[Any], spec: Spec) -> None:
    seeded = build_world(spec, load_recipe())
    stored = {a["id"]: a for a in seeded["agents"] if a["status"] == "offline"}
    off = {c["id"]: c for c in seeded["checks"] if not c["enabled"]}
    assert stored and off
    for agent in every_record(client, "/api/v1/agents", H, status="offline"):
        assert agent["last_seen_at"] == stored[agent["id"]]["last_seen_at"], agent["id"]
    for check in every_record(client, "/api/v1/checks", H):
        if not check["enabled"]:
            assert check["last_run_at"] == off[check["id"]]["last_run_at"], check["id"]


def test_an_enabled_check_on_an_online_agent_keeps_running(client: TestClient[Any]) -> None:
    online = {a["id"] for a in every_record(client, "/api/v1/agents", H, status="online")}
    now = sandbox_now(client)
    judged = 0
    for check in every_record(client, "/api/v1/checks", H):
        if check["enabled"] and check["agent_id"] in online and check["last_run_at"] is not None:
            window = HEARTBEAT + timedelta(seconds=check["interval_seconds"] + 5)
            assert now - window <= at(check["last_run_at"]), check["id"]
            judged += 1
    assert judged > 1000


def test_a_workspace_whose_clock_moved_hears_its_agents_then(client: TestClient[Any]) -> None:
    ws = f"beat-{uuid.uuid4().hex[:8]}"
    advance_clock(client, ws, 3 * 86_400)
    now = sandbox_now(client, ws)
    headers = {**H, "X-Sandbox-Workspace": ws}
    latest = client.get(
        "/api/v1/agents", headers=headers, params={"sort": "-last_seen_at", "per_page": 100}
    ).json()["data"]["items"]
    assert [a["last_seen_at"] for a in latest] == sorted(
        (a["last_seen_at"] for a in latest), reverse=True
    )
    assert latest[0]["status"] == "online"
    assert now - HEARTBEAT <= at(latest[0]["last_seen_at"]) <= now
    elsewhere = client.get(f"/api/v1/agents/{latest[0]['id']}", headers=H).json()["data"]
    assert at(elsewhere["last_seen_at"]) < now - timedelta(days=2)


def test_spec_check_refuses_a_live_time_it_cannot_read(spec: Spec) -> None:
    agent = dict(spec.collections["agents"].schema)
    props = dict(agent["properties"])
    props["last_seen_at"] = {**props["last_seen_at"], "x-live-time": {"when": {"mood": ["up"]}}}
    schemas = {name: c.schema for name, c in spec.collections.items()}
    problems = hint_problems({**schemas, "agents": {**agent, "properties": props}})
    assert any("last_seen_at" in p and "mood" in p for _, p in problems), problems

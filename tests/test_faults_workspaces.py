"""Workspaces under load and under faults: writes, rules and rate buckets never cross over."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from faults_live import LiveServer, live_server

PER_WORKSPACE = 40


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with live_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(live: LiveServer) -> Iterator[None]:
    yield
    live.clean()


def _total(live: LiveServer, workspace: str | None) -> int:
    with live.api(workspace=workspace) as api:
        return int(api.get("/api/v1/clients", params={"per_page": 1}).json()["data"]["total"])


async def _create_many(live: LiveServer, workspace: str, n: int) -> list[str]:
    async with live.async_api(workspace) as api:
        answers = await asyncio.gather(
            *(
                api.post("/api/v1/clients", json={"name": f"{workspace} client {i}"})
                for i in range(n)
            )
        )
    assert {a.status_code for a in answers} == {201}
    return [a.json()["data"]["id"] for a in answers]


async def _both(live: LiveServer) -> tuple[list[str], list[str]]:
    first, second = await asyncio.gather(
        _create_many(live, "ci-job-a", PER_WORKSPACE), _create_many(live, "ci-job-b", PER_WORKSPACE)
    )
    return first, second


def test_concurrent_writes_in_two_workspaces_stay_apart(live: LiveServer) -> None:
    seeded = _total(live, None)
    ids_a, ids_b = asyncio.run(_both(live))
    assert len(set(ids_a)) == len(set(ids_b)) == PER_WORKSPACE
    assert _total(live, "ci-job-a") == _total(live, "ci-job-b") == seeded + PER_WORKSPACE
    assert _total(live, None) == seeded
    with live.api(workspace="ci-job-a") as api:
        listed = api.get("/api/v1/clients", params={"per_page": 100, "q": "ci-job"}).json()["data"]
    names = {item["name"] for item in listed["items"]}
    assert names == {f"ci-job-a client {i}" for i in range(PER_WORKSPACE)}
    with live.api(workspace="ci-job-b") as api:
        for record_id in set(ids_a) - set(ids_b):
            assert api.get(f"/api/v1/clients/{record_id}").status_code == 404


def test_a_workspace_scoped_rule_never_touches_another_workspace(live: LiveServer) -> None:
    rule = live.add_rule({"effect": {"status": 503}}, workspace="faulty")  # scoped by the header
    assert rule["match"] == {"workspace": "faulty"}
    with live.api(workspace="faulty") as api:
        assert api.get("/api/v1/clients").status_code == 503
    for other in ("calm", None):
        with live.api(workspace=other) as api:
            assert api.get("/api/v1/clients").status_code == 200
    with live.admin(workspace="calm") as admin:
        assert admin.get("/_sandbox/faults").json()["data"]["items"] == []
        assert admin.delete("/_sandbox/faults").json()["data"]["removed"] == 0
    with live.admin(workspace="faulty") as admin:
        assert [r["id"] for r in admin.get("/_sandbox/faults").json()["data"]["items"]] == [
            rule["id"]
        ]


def test_rate_buckets_are_per_workspace(live: LiveServer) -> None:
    slow = live.key("Low rate limit")
    with live.api(key=slow, workspace="burst") as api:
        statuses = [api.get("/api/v1/auth/me").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    with live.api(key=slow, workspace="quiet") as api:
        response = api.get("/api/v1/auth/me")
    assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining"] == "4"


def test_resetting_one_workspace_leaves_the_others_alone(live: LiveServer) -> None:
    slow = live.key("Low rate limit")
    for workspace in ("left", "right"):
        live.add_rule(
            {"match": {"operation_id": "listSites"}, "effect": {"status": 500}}, workspace
        )
        with live.api(key=slow, workspace=workspace) as api:
            assert api.post("/api/v1/clients", json={"name": f"{workspace} Ltd"}).status_code == 201
            assert [api.get("/api/v1/auth/me").status_code for _ in range(5)][-1] == 429
    seeded = _total(live, None)
    with live.admin() as admin:
        answer = admin.post("/_sandbox/workspaces/left/reset")
    assert answer.status_code == 200
    assert answer.json()["data"] == {"reset": True, "workspace": "left", "buckets": 1, "faults": 1}
    with live.api(key=slow, workspace="left") as api:
        assert api.get("/api/v1/auth/me").status_code == 200
        assert api.get("/api/v1/sites").status_code == 200
    with live.api(key=slow, workspace="right") as api:
        assert api.get("/api/v1/auth/me").status_code == 429
    assert _total(live, "left") == seeded
    with live.api(workspace="right") as api:
        assert api.get("/api/v1/sites").status_code == 500
    assert _total(live, "right") == seeded + 1


def test_a_bad_workspace_name_is_refused(live: LiveServer) -> None:
    with live.admin() as admin:
        refused = admin.post("/_sandbox/workspaces/bad name!/reset")
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["details"][0]["location"] == "path"
        response = admin.get("/_sandbox/faults", params={"workspace": "../etc"})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "workspace"

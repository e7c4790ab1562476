"""Hosted mode: every visitor gets a workspace of their own, and their number stays bounded."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.hosted import HostedPolicy, demo_key, install
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.state import SandboxState, build_state

logging.getLogger("httpx").setLevel(logging.WARNING)


def _keys(state: SandboxState) -> dict[str, str]:
    return {k.id: k.key for k in state.recipe.keys}


Hosted = Callable[..., tuple[TestClient, SandboxState]]


@pytest.fixture
def hosted() -> Iterator[Hosted]:
    """Start hosted sandboxes (lifespan included) with Settings overrides; stopped afterwards."""
    with contextlib.ExitStack() as stack:

        def start(policy: dict[str, int] | None = None, **overrides: Any) -> tuple[TestClient, Any]:
            settings = Settings(hosted=True, cors_origins=("*",), **overrides)
            state = build_state(settings)
            if policy is not None:  # budgets other than the defaults
                install(state, HostedPolicy(state, **policy))
            client = stack.enter_context(TestClient(create_app(settings, state)))
            return client, state

        yield start


def _auth(key: str, workspace: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if workspace is not None:
        headers["X-Sandbox-Workspace"] = workspace
    return headers


def _client_names(client: TestClient, headers: dict[str, str]) -> set[str]:
    r = client.get("/api/v1/clients?per_page=100&sort=-created_at", headers=headers)
    assert r.status_code == 200, r.text
    return {c["name"] for c in r.json()["data"]["items"]}


def test_each_visitor_sees_only_the_writes_of_their_own_workspace(hosted: Hosted) -> None:
    client, state = hosted()
    demo = demo_key(state)
    r = client.post("/api/v1/clients", json={"name": "Alice Ltd"}, headers=_auth(demo, "visitor-a"))
    assert r.status_code == 201, r.text
    assert "Alice Ltd" in _client_names(client, _auth(demo, "visitor-a"))
    assert "Alice Ltd" not in _client_names(client, _auth(demo, "visitor-b"))
    assert "Alice Ltd" not in _client_names(client, _auth(demo))
    assert {"visitor-a", "visitor-b"} <= set(state.workspaces.names())


def test_without_a_header_the_workspace_comes_from_the_key_never_the_default(
    hosted: Hosted,
) -> None:
    client, state = hosted()
    keys = _keys(state)
    r = client.post("/api/v1/clients", json={"name": "Keyed Ltd"}, headers=_auth(keys["key_demo"]))
    assert r.status_code == 201, r.text
    (name,) = state.workspaces.names()
    assert name.startswith("key-key_demo-")  # the key and the caller's address name it
    assert "default" not in state.workspaces.names()
    assert "Keyed Ltd" in _client_names(client, _auth(keys["key_demo"]))
    assert "Keyed Ltd" not in _client_names(client, _auth(keys["key_ownerfull"]))
    assert "default" not in state.workspaces.names()


def test_the_shared_default_workspace_cannot_be_asked_for(hosted: Hosted) -> None:
    client, state = hosted()
    r = client.post("/api/v1/clients", json={"name": "Nope"},
                    headers=_auth(demo_key(state), "default"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "HEADER_INVALID"
    assert "default" in r.json()["error"]["message"]
    assert state.workspaces.names() == []


def test_requests_without_a_usable_key_allocate_no_workspace(hosted: Hosted) -> None:
    client, state = hosted()
    keys = _keys(state)
    for i, auth in enumerate([
        {}, {"Authorization": "Bearer om_sbx_unknown_key"}, _auth(keys["key_revoked"]),
        _auth(keys["key_expired"]), {"Authorization": f"Token {keys['key_demo']}"},
    ]):
        r = client.get("/api/v1/agents", headers={**auth, "X-Sandbox-Workspace": f"visitor-{i}"})
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "AUTH_REQUIRED"
    assert state.workspaces.names() == []
    assert len(state.workspaces.delta.workspaces()) == 0


def test_beyond_the_cap_the_least_recently_used_workspace_is_dropped_at_once(
    hosted: Hosted,
) -> None:
    client, state = hosted(hosted_max_workspaces=3)
    demo = demo_key(state)
    r = client.post("/api/v1/clients", json={"name": "Keep me"}, headers=_auth(demo, "a"))
    assert r.status_code == 201
    for name in ("b", "c", "a", "d"):  # "a" is used again before "d" arrives, so "b" is oldest
        assert client.get("/api/v1/agents?per_page=1", headers=_auth(demo, name)).status_code == 200
        assert len(state.workspaces) <= 3
    assert sorted(state.workspaces.names()) == ["a", "c", "d"]
    assert "Keep me" in _client_names(client, _auth(demo, "a"))
    for i in range(20):
        client.get("/api/v1/agents?per_page=1", headers=_auth(demo, f"many-{i}"))
        assert len(state.workspaces) <= 3
    assert "a" not in state.workspaces.names()


def test_idle_workspaces_are_dropped_by_the_background_sweeper(hosted: Hosted) -> None:
    client, state = hosted(hosted_workspace_ttl=0.2)
    demo = demo_key(state)
    assert client.post("/api/v1/clients", json={"name": "Brief"},
                       headers=_auth(demo, "idle")).status_code == 201
    assert "idle" in state.workspaces.names()
    deadline = time.monotonic() + 5
    while "idle" in state.workspaces.names() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "idle" not in state.workspaces.names()
    assert "idle" not in state.workspaces.delta.workspaces()
    # A visitor coming back starts again from the seeded data.
    assert "Brief" not in _client_names(client, _auth(demo, "idle"))


def test_a_workspace_refuses_writes_beyond_its_change_budget(hosted: Hosted) -> None:
    client, state = hosted(policy={"max_changes": 3})
    demo = demo_key(state)
    for i in range(3):
        r = client.post("/api/v1/clients", json={"name": f"C{i}"}, headers=_auth(demo, "full"))
        assert r.status_code == 201, r.text
    r = client.post("/api/v1/clients", json={"name": "C3"}, headers=_auth(demo, "full"))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "CONFLICT"
    assert "X-Sandbox-Workspace" in r.json()["error"]["message"]
    assert client.get("/api/v1/clients", headers=_auth(demo, "full")).status_code == 200
    r = client.post("/api/v1/clients", json={"name": "C3"}, headers=_auth(demo, "fresh"))
    assert r.status_code == 201


def _ticket(client: TestClient, key: str, workspace: str, size: int) -> Any:
    body = {"subject": "Printer on fire", "client_id": "cli_acme", "description": "x" * size}
    return client.post("/api/v1/tickets", json=body, headers=_auth(key, workspace))


def test_a_workspace_refuses_writes_beyond_its_byte_budget(hosted: Hosted) -> None:
    client, state = hosted(policy={"max_workspace_bytes": 2500})
    demo = demo_key(state)
    first = _ticket(client, demo, "big", 1000)
    assert first.status_code == 201
    assert _ticket(client, demo, "big", 1000).status_code == 201
    r = _ticket(client, demo, "big", 1000)
    assert r.status_code == 409 and "bytes" in r.json()["error"]["message"]
    # A body-less delete costs no bytes, and a new workspace starts with a fresh budget.
    tid = first.json()["data"]["id"]
    deleted = client.delete(f"/api/v1/tickets/{tid}", headers=_auth(demo, "big"))
    assert deleted.status_code in (200, 204), deleted.text
    assert _ticket(client, demo, "other", 1000).status_code == 201


def test_past_the_total_byte_budget_the_least_recently_used_are_evicted(hosted: Hosted) -> None:
    client, state = hosted(policy={"max_total_bytes": 3500})
    demo = demo_key(state)
    for name in ("a", "b", "c"):
        assert _ticket(client, demo, name, 1000).status_code == 201
    assert sorted(state.workspaces.names()) == ["a", "b", "c"]
    assert client.get("/api/v1/agents?per_page=1", headers=_auth(demo, "a")).status_code == 200
    assert _ticket(client, demo, "d", 1000).status_code == 201  # "b" is now the oldest
    assert sorted(state.workspaces.names()) == ["a", "c", "d"]
    policy = state.hosted
    assert policy.total_bytes <= 3500


def test_a_sweep_forgets_spent_rate_windows_and_changes_of_dropped_workspaces(
    hosted: Hosted,
) -> None:
    client, state = hosted()
    demo = demo_key(state)
    for name in ("w1", "w2", "w3"):
        assert client.get("/api/v1/agents?per_page=1", headers=_auth(demo, name)).status_code == 200
    # three visitor windows, and one for the address they all came from
    assert len(state.limiter.storage.expirations) == 4
    # Changes written to a workspace after it was evicted (a request in flight at the time).
    state.workspaces.delta.put("gone", "clients", "cli_x", {"id": "cli_x"}, True, 1)
    policy = state.hosted
    report = policy.sweep()
    assert report.orphans == 1 and "gone" not in state.workspaces.delta.workspaces()
    assert report.windows == 0  # the windows are still running
    state.clock.advance(61)
    report = policy.sweep()
    assert report.windows == 4
    assert len(state.limiter.storage.expirations) == 0
    assert report.alive == 3  # idle time is real time, not the sandbox clock

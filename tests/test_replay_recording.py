"""A recording replayed as a contract (`contracts --replay FILE`): green against a fresh sandbox
and through the proxy, with the ids the recording learnt captured anew and substituted, what it
created deleted, and under the production profile not one unsafe method sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SMALL_RECIPE, contracts_command
from proxy_live import ProxyServer

from opsmerge_contracts.replay import load
from opsmerge_contracts.sandboxes import LoopbackServer, Sandbox, SandboxKeys, start_sandbox
from opsmerge_sandbox import recording
from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.har import HarWriter
from opsmerge_sandbox.proxy.app import ProxyConfig, ValidatingProxy
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import load_spec

ADMIN = "replay-test-admin"
pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def har(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workflow recorded by the sandbox itself, on a sandbox whose ids have moved on (one
    ticket made before recording), so a replay that reused the recorded ids would miss."""
    path = tmp_path_factory.mktemp("replay") / "workflow.har"
    app = create_app(Settings(recipe=str(SMALL_RECIPE)))
    key = SandboxKeys(app.state.sandbox.recipe.keys).owner.key
    with LoopbackServer(app) as server, httpx.Client(
        base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}
    ) as c:
        c.post("/tickets", json={"subject": "Before recording", "client_id": "cli_acme"})
        writer = HarWriter(path)
        recording.install(app, writer, "/api/v1")
        client_id = c.get("/clients", params={"per_page": 1}).json()["data"]["items"][0]["id"]
        ticket = c.post("/tickets", json={"subject": "Replayed", "client_id": client_id})
        tid = ticket.json()["data"]["id"]
        c.get(f"/tickets/{tid}")
        c.patch(f"/tickets/{tid}", json={"priority": "High"})
        c.post(f"/tickets/{tid}/comments", json={"body": "Looked at it"})
        c.get("/tickets", params={"client_id": client_id, "per_page": 5})
        c.delete(f"/tickets/{tid}")
        c.get(f"/tickets/{tid}")
        kept = c.post("/tickets", json={"subject": "Left by the recording", "client_id": client_id})
        writer.close()
    return {"path": path, "ticket": tid, "kept": kept.json()["data"]["id"]}


@pytest.fixture(scope="module")
def target() -> Iterator[Sandbox]:
    box = start_sandbox(Settings(recipe=str(SMALL_RECIPE), admin_token=ADMIN), loopback=True)
    try:
        yield box
    finally:
        box.close()


def _journal(box: Sandbox) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{box.root_url}/_sandbox/requests",
        params={"limit": 1000},
        headers={"X-Sandbox-Admin-Token": ADMIN},
    )
    return list(answer.json()["data"]["items"])


def _clear_journal(box: Sandbox) -> None:
    httpx.delete(f"{box.root_url}/_sandbox/requests", headers={"X-Sandbox-Admin-Token": ADMIN})


def test_the_plan_captures_learnt_ids_and_keeps_the_clients_own_values(
    har: dict[str, Any],
) -> None:
    replay = load(har["path"], load_spec())
    steps = replay.steps
    assert [s.method for s in steps] == ["GET", "POST", "GET", "PATCH", "POST", "GET", "DELETE",
                                         "GET", "POST"]  # fmt: skip
    client_var = dict(steps[0].captures)
    assert client_var and list(client_var.values()) == ["/data/items/0/id"]
    (client,) = client_var
    assert steps[1].json_body == {"subject": "Replayed", "client_id": "${" + client + "}"}
    ticket = next(v for v, p in steps[1].captures if p == "/data/id")
    assert steps[2].path == "/tickets/${" + ticket + "}"
    assert steps[4].path == "/tickets/${" + ticket + "}/comments"
    assert ("client_id", "${" + client + "}") in steps[5].query
    assert steps[1].creates == "tickets" and steps[8].creates == "tickets"
    assert steps[7].expect_status == (404,)
    assert har["ticket"] not in json.dumps([s.path for s in steps])


def test_a_recording_from_the_sandbox_replays_green_against_a_fresh_sandbox(
    har: dict[str, Any], target: Sandbox, tmp_path: Path
) -> None:
    _clear_journal(target)
    result, report = contracts_command(
        target.root_url, tmp_path, "--replay", str(har["path"]),
        env={"OPSMERGE_SANDBOX_ADMIN_TOKEN": ADMIN},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["failures"] == []
    # comments have no delete operation: the one the replay made is listed, never hidden
    assert [(x["collection"], x["reason"]) for x in report["leftovers"]] == [
        ("ticket_comments", "the API has no delete operation for this collection")
    ]
    assert report["summary"]["checks"]["scenario_expectation"]["pass"] == 9
    calls = [e for e in _journal(target) if e["workspace"].startswith("contracts-")]
    created = [e for e in calls if e["operation_id"] == "createTicket"]
    assert len(created) == 2
    got = [e["path"].rsplit("/", 1)[-1] for e in calls if e["operation_id"] == "getTicket"]
    assert got and har["ticket"] not in got  # the id came from the replayed answer
    deletes = [e for e in calls if e["operation_id"] == "deleteTicket"]
    # the recording's own delete, then the cleanup of the ticket it left behind
    assert [e["status"] for e in deletes] == [200, 200]


def _replay_in_process(
    pytester: pytest.Pytester, har: Path, target: str, *args: str
) -> tuple[pytest.RunResult, dict[str, Any]]:
    """The recording named on pytest's command line, as `contracts --replay` runs it, in this
    process (the command itself is proved by the test above)."""
    report = pytester.path / "run"
    result = pytester.runpytest_inprocess(
        str(har), f"--opsmerge-target={target}", "--opsmerge-suite=no",
        f"--opsmerge-report={report}", "-p", "no:cacheprovider", *args,
    )  # fmt: skip
    return result, json.loads(report.with_suffix(".json").read_text())


def test_the_recording_replays_green_through_the_proxy(
    har: dict[str, Any], target: Sandbox, pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("OPSMERGE_SANDBOX_ADMIN_TOKEN", ADMIN)
    proxy = ValidatingProxy(
        ProxyConfig(upstream=target.root_url, spec=load_spec(), admin_token="p")
    )
    with ProxyServer(proxy) as server:
        result, report = _replay_in_process(pytester, har["path"], server.url)
    assert result.ret == 0, result.stdout.str()
    assert report["failures"] == []
    assert proxy.findings.requests >= 9
    assert proxy.findings.violating == 0


def test_under_the_production_profile_no_unsafe_method_is_sent(
    har: dict[str, Any], target: Sandbox, pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("OPSMERGE_API_KEY", target.keys.owner.key)
    monkeypatch.delenv("OPSMERGE_SANDBOX_ADMIN_TOKEN", raising=False)
    _clear_journal(target)
    result, report = _replay_in_process(
        pytester, har["path"], target.root_url, "--opsmerge-profile=production"
    )
    assert result.ret == 0, result.stdout.str()
    methods = {e["method"] for e in _journal(target)}
    assert methods <= {"GET", "HEAD"}, methods
    assert report["stats"]["refused_by_profile"] == 0  # not even attempted
    skipped = report["meta"]["replay_skipped"]
    for method in ("POST", "PATCH", "DELETE"):
        assert any(f": {method} " in line and "production" in line for line in skipped)
    assert any("which no replayed answer gave" in line for line in skipped)
    result.stdout.fnmatch_lines(["*replay, not sent*"])


def test_a_file_that_is_not_a_recording_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "nothing.har"
    bad.write_text("{}")
    result, _ = contracts_command("sandbox", tmp_path, "--replay", str(bad))
    assert result.returncode == 2
    assert "not a HAR recording" in result.stderr


def test_a_recording_made_through_the_proxy_replays_against_the_sandbox_in_process(
    target: Sandbox, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """Recorded in front of a served deployment (here a served sandbox), replayed against the
    harness's own in-process sandbox: the other way round from the tests above."""
    writer = HarWriter(tmp_path / "proxy.har")
    proxy = ValidatingProxy(
        ProxyConfig(upstream=target.root_url, spec=load_spec(), admin_token="p", record=writer)
    )
    key = target.keys.owner.key
    with ProxyServer(proxy) as server, httpx.Client(
        base_url=server.url + "/api/v1",
        headers={"Authorization": f"Bearer {key}", "X-Sandbox-Workspace": "recorded-via-proxy"},
    ) as c:
        made = c.post("/tickets", json={"subject": "Via the proxy", "client_id": "cli_acme"})
        c.get(f"/tickets/{made.json()['data']['id']}")
        c.get("/tickets", params={"per_page": 2})
    writer.close()
    small = Path(__file__).with_name("broken_server.py")
    result, report = _replay_in_process(
        pytester, tmp_path / "proxy.har", "sandbox",
        f"--opsmerge-app={small}:create_small_app",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    assert report["summary"]["checks"]["scenario_expectation"]["pass"] == 3
    assert report["leftovers"] == []  # the ticket the replay made was deleted

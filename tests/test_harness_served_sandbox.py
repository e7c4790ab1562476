"""A run against a developer's running sandbox, given its admin token: fast, and invisible.

The sandbox is served on loopback in this process and the command runs in a subprocess, as a
developer runs `opsmerge-sandbox contracts --target http://127.0.0.1:4010` beside `make serve`.
What the developer sees (every list of the default workspace, the clock, the workspaces, the
keys that work) is read before and after the run and must not change; the journal shows that
every request the run sent carried its own workspace.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from opsmerge_contracts.sandboxes import Sandbox
from opsmerge_sandbox.pipeline.live_times import live_fields_by_prefix, without_live_times
from opsmerge_sandbox.spec import load_spec
from tests.conftest import contracts_command

ROOT = Path(__file__).resolve().parents[1]
# the one probe that must wait out a real rate window (about a minute) on a shared clock
NOT_THE_MINUTE_LONG_PROBE = "not test_rate_limit_retry"


def contracts(
    served: Sandbox, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    return contracts_command(served.root_url, tmp_path, *args, env=env)


def snapshot(served: Sandbox) -> dict[str, Any]:
    """What the developer would see: every top-level list's first page and total (default
    workspace, owner key), the clock's offset, the workspaces in use and the working keys.
    Times that keep pace with the clock are left out: the clock alone moves them."""
    lists: dict[str, Any] = {}
    spec = load_spec()
    live = live_fields_by_prefix(spec)
    with served.client() as client:
        for op in spec.operations:
            if op.kind == "list" and "{" not in op.path and not op.session_only:
                body = client.get(op.path, params={"per_page": 100}).json()
                lists[op.operation_id] = without_live_times(body.get("data", body), live)
    keys = served.admin.list_keys()
    return {
        "lists": lists,
        "clock_offset": served.admin.clock()["offset_seconds"],
        "workspaces": served.admin._call("GET", "/workspaces"),
        "working_keys": sorted(k["id"] for k in keys if k["status"] == "active"),
    }


def test_a_run_with_the_admin_token_leaves_the_developers_world_and_clock_as_they_were(
    served: Sandbox, tmp_path: Path
) -> None:
    served.reset()
    with served.client() as client:  # the developer's own change, which must survive the run
        ticket = client.post(
            "/tickets", json={"subject": "mine", "client_id": "cli_acme", "priority": "High"}
        )
    assert ticket.status_code == 201
    before = snapshot(served)
    served.admin.clear_requests()
    result, data = contracts(
        served,
        tmp_path,
        "-q",
        "-k",
        NOT_THE_MINUTE_LONG_PROBE,
        env={"OPSMERGE_SANDBOX_ADMIN_TOKEN": served.settings.admin_token},
    )
    journal = served.admin.requests(limit=1000)
    assert data, result.stdout[-3000:] + result.stderr[-3000:]
    assert data["meta"]["profile"] == "sandbox"
    # the built-in suite passes against the sandbox it was written for, served or in-process
    # (a delete the sandbox's own rules refuse for one record is tried on another)
    assert result.returncode == 0, [f["message"] for f in data["failures"]]
    workspace = data["meta"]["workspace"]
    assert workspace.startswith("contracts-")
    assert data["stats"]["requests"] > 100  # the run wrote: bodies, deletes, actions
    # a request refused before its caller is known (401) has no workspace yet; all others: the run's
    assert journal and {e["workspace"] for e in journal if e["status"] != 401} == {workspace}
    assert any(e["method"] in ("POST", "PATCH", "PUT", "DELETE") for e in journal)
    assert snapshot(served) == before
    assert served.admin.clock()["offset_seconds"] == before["clock_offset"]


def test_two_runs_never_share_a_workspace(served: Sandbox, tmp_path: Path) -> None:
    token = {"OPSMERGE_SANDBOX_ADMIN_TOKEN": served.settings.admin_token}
    _, first = contracts(served, tmp_path, "-q", "-k", "test_unknown_id", env=token)
    _, second = contracts(served, tmp_path, "-q", "-k", "test_unknown_id", env=token)
    assert first["meta"]["workspace"] != second["meta"]["workspace"]
    assert _no_workspace_but_default(served)


def test_with_the_admin_token_the_run_needs_no_key_and_never_waits_on_a_rate_window(
    served: Sandbox, tmp_path: Path
) -> None:
    """More requests than one window of the sandbox's 300 a minute, and not a second paced: the
    run's own key is minted for it, with a limit it cannot reach."""
    served.reset()
    result, data = contracts(
        served,
        tmp_path,
        "-q",
        "-k",
        "test_pagination or test_conforms or test_rate_limit_headers",
        env={"OPSMERGE_SANDBOX_ADMIN_TOKEN": served.settings.admin_token},
    )
    assert data, result.stdout[-3000:] + result.stderr[-3000:]
    assert data["stats"]["requests"] > 300
    assert data["stats"]["paced_seconds"] == 0 and data["stats"]["throttled"] == 0
    assert served.settings.admin_token not in result.stdout + result.stderr
    assert served.settings.admin_token not in json.dumps(data)


def test_the_run_key_keeps_the_given_keys_owner_and_scopes(
    served: Sandbox, tmp_path: Path
) -> None:
    served.reset()
    limited = served.keys.limited
    result, data = contracts(
        served,
        tmp_path,
        "--key",
        limited.key,
        "--admin-token",
        served.settings.admin_token,
        "-q",
        "-k",
        "test_unknown_id",
    )
    assert data, result.stdout[-3000:] + result.stderr[-3000:]
    minted = [k for k in served.admin.list_keys() if k["name"].startswith("contracts run")]
    assert minted and minted[-1]["status"] == "revoked"  # revoked when the run ended
    assert minted[-1]["scopes"] == sorted(limited.scopes or [])
    assert minted[-1]["user_id"] == limited.user_id


def test_a_wait_against_a_served_sandbox_moves_only_the_runs_workspace_clock(
    served: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retry-After is waited out on the run's own workspace clock: no real sleep, and the
    developer's clock (the sandbox's, and the default workspace's) never moves."""
    from opsmerge_contracts import probes
    from opsmerge_contracts.options import Options
    from opsmerge_contracts.session import Contract, ContractRun

    served.reset()
    slept: list[float] = []
    monkeypatch.setattr(probes.time, "sleep", slept.append)
    run = ContractRun(
        Options(
            target=served.root_url,
            target_given=True,
            key=served.keys.owner.key,
            profile="sandbox",
            admin_token=served.settings.admin_token,
        )
    )
    try:
        probes._wait(Contract(run, "wait"), 7)
        assert run.target.workspace and run.target.workspace.startswith("contracts-")
        assert run.target.admin is not None
        assert run.target.admin.clock()["offset_seconds"] == 7
    finally:
        run.close()
    assert slept == []
    assert served.admin.clock()["offset_seconds"] == 0
    assert _no_workspace_but_default(served)


def test_the_run_refuses_to_work_in_the_default_workspace_it_would_reset(
    served: Sandbox, tmp_path: Path
) -> None:
    result, data = contracts(
        served,
        tmp_path,
        "-q",
        "--opsmerge-workspace=default",
        env={"OPSMERGE_SANDBOX_ADMIN_TOKEN": served.settings.admin_token},
    )
    assert result.returncode == 4 and not data  # pytest's usage error, before any request
    assert "--opsmerge-workspace cannot be 'default'" in result.stdout + result.stderr
    assert _no_workspace_but_default(served)


def _no_workspace_but_default(served: Sandbox) -> bool:
    """Nothing of a run is left: at most the default workspace (opened on its first use)."""
    return set(served.admin._call("GET", "/workspaces")["items"]) <= {"default"}

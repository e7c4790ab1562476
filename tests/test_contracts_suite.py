"""The built-in suite end to end: zero failures against the sandbox within the time budget, the
production profile read-only under a budget, contracts for an operation added to the spec, and the
`opsmerge-sandbox contracts` command's exit status."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import broken_server
import pytest
import yaml

from opsmerge_contracts.sandboxes import Sandbox, start_sandbox
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import SPEC_PATH, load_spec
from opsmerge_sandbox.yamlio import load_yaml

pytest_plugins = ["pytester"]

SUITE_SECONDS = (
    60  # the bound for the full spec-derived suite against the in-process sandbox
)


def report_of(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_full_suite_passes_against_the_sandbox_within_a_minute(
    pytester: pytest.Pytester,
) -> None:
    report = pytester.path / "full.json"
    junit = pytester.path / "junit.xml"
    started = time.perf_counter()
    result = pytester.runpytest_inprocess(
        "--opsmerge-target=sandbox",
        f"--opsmerge-report={report}",
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
    )
    elapsed = time.perf_counter() - started
    print(f"full contract suite against the in-process sandbox: {elapsed:.1f} s")
    data = report_of(report)
    assert data["failures"] == [], json.dumps(data["failures"][:3], indent=1)
    assert result.ret == 0
    outcomes = data["summary"]["tests"]
    assert (
        outcomes.get("passed", 0) >= 250 and "failed" not in outcomes and "skipped" not in outcomes
    )
    assert data["summary"]["operations"] == len(load_spec().operations)
    assert elapsed < SUITE_SECONDS
    junit_text = junit.read_text()
    assert 'name="opsmerge_operations" value="listTickets"' in junit_text
    result.stdout.fnmatch_lines(["*OpsMerge contracts*", "*contracts: * passed*"])


@pytest.fixture(scope="module")
def loopback() -> Iterator[Sandbox]:
    box = start_sandbox(Settings(recipe=str(broken_server.SMALL_RECIPE)), loopback=True)
    try:
        yield box
    finally:
        box.close()


def test_production_sends_only_get_and_head_and_stays_within_its_budget(
    pytester: pytest.Pytester, loopback: Sandbox
) -> None:
    loopback.reset()
    loopback.admin.clear_requests()
    report = pytester.path / "prod.json"
    budget = 120
    result = pytester.runpytest_inprocess(
        f"--opsmerge-target={loopback.root_url}",
        f"--opsmerge-key={loopback.keys.owner.key}",
        "--opsmerge-profile=production",
        f"--opsmerge-budget={budget}",
        f"--opsmerge-report={report}",
        "-p",
        "no:cacheprovider",
    )
    journal = loopback.admin.requests(limit=1000)
    assert journal, "nothing reached the target"
    assert {entry["method"] for entry in journal} <= {"GET", "HEAD"}
    assert len(journal) <= budget
    data = report_of(report)
    assert data["stats"]["requests"] <= budget and data["stats"]["refused_by_profile"] == 0
    reasons = " ".join(s["reason"] for s in data["skipped"])
    assert "the production profile sends only GET and HEAD" in reasons
    assert f"the request budget of {budget} is spent" in reasons
    assert data["failures"] == []
    assert result.ret == 0


def test_an_operation_added_to_the_spec_gets_contracts_with_no_code(
    pytester: pytest.Pytester,
) -> None:
    spec = load_yaml(SPEC_PATH)
    listing = json.loads(json.dumps(spec["paths"]["/clients"]["get"]))
    listing["operationId"] = "listClientsAgain"
    listing["summary"] = "List clients (a second route)"
    spec["paths"]["/clients-again"] = {"get": listing}
    path = pytester.path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = pytester.runpytest_inprocess(
        "--opsmerge-target=sandbox",
        f"--opsmerge-spec={path}",
        "-k",
        "listClientsAgain",
        "-v",
        "-p",
        "no:cacheprovider",
    )
    result.stdout.fnmatch_lines(
        [
            "*test_conforms?listClientsAgain? PASSED*",
            "*test_auth?listClientsAgain? PASSED*",
            "*test_pagination?listClientsAgain? PASSED*",
        ]
    )
    assert result.ret == 0


def test_the_contracts_command_exits_non_zero_when_a_contract_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = f"--opsmerge-app={Path(broken_server.__file__)}:create_broken_app"
    command = [
        sys.executable,
        "-m",
        "opsmerge_sandbox.cli",
        "contracts",
        "--target",
        "sandbox",
        "--",
        "-k",
        "test_auth and getTicket and not Numbering and not Rule",
        app,
        "-p",
        "no:logging",
    ]
    monkeypatch.setenv(broken_server.ENV, "no_www_authenticate")
    failed = pytester.run(*command, timeout=300)
    assert failed.ret == 1
    failed.stdout.fnmatch_lines(["*[[]www_authenticate[]]*", "*1 failed*"])
    monkeypatch.setenv(broken_server.ENV, "none")
    passed = pytester.run(*command, timeout=300)
    assert passed.ret == 0
    passed.stdout.fnmatch_lines(["*1 passed*"])

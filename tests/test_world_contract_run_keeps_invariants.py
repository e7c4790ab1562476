"""After the built-in contract suite has written through the API, every record it created or
changed still keeps the invariants marked `on-write: refuse` or `derive`: the world stays
coherent after a contract run, judged by the same checker the control API serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.invariant_endpoints import judge_workspace
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.state import SandboxState

pytest_plugins = ["pytester"]

BUILT: list[SandboxState] = []  # the state of each app the run's factory built


def recording_app(settings: Settings) -> Any:
    """The sandbox app, remembered so the test can judge what the run left in it."""
    app = create_app(settings)
    BUILT.append(app.state.sandbox)
    return app


def test_a_contract_run_leaves_no_written_record_breaking_an_invariant(
    pytester: pytest.Pytester,
) -> None:
    BUILT.clear()
    report = pytester.path / "run.json"
    result = pytester.runpytest_inprocess(
        "--opsmerge-target=sandbox",
        f"--opsmerge-app={__name__}:recording_app",
        f"--opsmerge-report={report}",
        "-p",
        "no:cacheprovider",
    )
    data = json.loads(Path(report).read_text())
    assert data["failures"] == [], json.dumps(data["failures"][:3], indent=1)
    assert result.ret == 0
    assert len(BUILT) == 1
    state = BUILT[0]
    judged, found = judge_workspace(state, "default")
    assert sum(judged.values()) > 20, judged  # the run changed records in many collections
    broken = sorted({f"{v.collection} {v.invariant}: {v.record_id} {v.detail}" for v in found})
    assert broken == [], "\n".join(broken)

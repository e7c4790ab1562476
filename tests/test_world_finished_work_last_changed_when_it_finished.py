"""What has run its course last changed when it ended: a script run that finished in June was
"updated" in July, a reboot done in September changed in October, an alert resolved at 07:18
changed twelve days later (their `updated_at` drawn anywhere up to the epoch), and nothing says
what changed. A record's last change is its latest step: made, started, acknowledged, ended."""

from __future__ import annotations

from typing import Any

import pytest

from opsmerge_sandbox.spec import Spec
from tests.conftest import rules_broken_by

World = dict[str, list[dict[str, Any]]]

# collection -> status -> the field holding the time of the step that status is
LAST_STEP = {
    "script_runs": {"completed": "finished_at", "failed": "finished_at", "running": "started_at",
                    "queued": "created_at"},
    "agent_reboots": {"completed": "completed_at", "queued": "created_at"},
    "alerts": {"resolved": "resolved_at", "acknowledged": "acknowledged_at", "open": "created_at"},
}


@pytest.mark.parametrize("collection", sorted(LAST_STEP))
def test_a_record_last_changed_at_its_latest_step(seeded_world: World, collection: str) -> None:
    steps = LAST_STEP[collection]
    records = [r for r in seeded_world[collection] if r["status"] in steps]
    assert len(records) > 20  # enough to judge
    assert [(r["id"], r["status"], r[steps[r["status"]]], r["updated_at"]) for r in records
            if r["updated_at"] != r[steps[r["status"]]]] == []


def test_the_checker_names_a_finished_run_changed_after_it_ended(
    spec: Spec, seeded_world: World
) -> None:
    _, broken = rules_broken_by(spec, seeded_world, "script_runs",
                                lambda r: r["status"] == "completed",
                                updated_at="2026-10-31T12:00:00Z")
    assert "last-changed-when-it-ended" in broken

"""A ticket's priority and queue follow what it is about: drawn independently, a request to
install Adobe Acrobat was Critical as often as Low (9 of 32 seeded ones were Critical), and an
MFA reset or a phishing report sat in the Projects queue. Routine requests are mostly Low or
Medium and never Critical unless their client's floor says so; a failed backup, a failing UPS
or a phishing report is more often High or Critical; only project work goes to Projects."""

from __future__ import annotations

from typing import Any

from opsmerge_sandbox.spec import Spec
from tests.conftest import rules_broken_by

World = dict[str, list[dict[str, Any]]]
ROUTINE = {"Install Adobe Acrobat", "Request access to finance share",
           "Shared mailbox permissions", "MFA reset for user", "New starter laptop setup",
           "Server patching window"}
SERIOUS = {"Backup job failed overnight", "Disk space low on file server",
           "Replace failing UPS battery", "Phishing email reported"}
PROJECTS = {"New starter laptop setup", "Disk space low on file server", "Server patching window"}


def _floors(world: World) -> dict[str, Any]:
    return {c["id"]: c["default_ticket_priority"] for c in world["clients"]}


def test_a_routine_request_is_critical_only_where_its_client_says_every_ticket_is(
    seeded_world: World,
) -> None:
    floor = _floors(seeded_world)
    routine = [t for t in seeded_world["tickets"] if t["subject"] in ROUTINE]
    assert len(routine) > 60
    assert [(t["id"], t["subject"]) for t in routine
            if t["priority"] == "Critical" and floor[t["client_id"]] != "Critical"] == []


def test_serious_incidents_are_more_urgent_than_routine_requests(seeded_world: World) -> None:
    floor = _floors(seeded_world)

    def urgent(subjects: set[str]) -> float:
        ts = [t for t in seeded_world["tickets"]
              if t["subject"] in subjects and floor[t["client_id"]] in (None, "Low")]
        return sum(t["priority"] in ("High", "Critical") for t in ts) / len(ts)

    assert urgent(SERIOUS) > urgent(ROUTINE) + 0.3


def test_only_project_work_is_queued_as_a_project(seeded_world: World) -> None:
    tickets = seeded_world["tickets"]
    assert any(t["queue"] == "Projects" for t in tickets)
    assert sorted({t["subject"] for t in tickets if t["queue"] == "Projects"} - PROJECTS) == []


def test_the_checker_names_a_password_reset_queued_as_a_project(
    spec: Spec, seeded_world: World
) -> None:
    _, broken = rules_broken_by(spec, seeded_world, "tickets",
                                lambda t: t["subject"] == "MFA reset for user", queue="Projects")
    assert "projects-queue-holds-project-work" in broken

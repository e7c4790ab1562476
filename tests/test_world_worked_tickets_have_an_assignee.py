"""A ticket someone is working, waiting on its customer, resolved or closed has a technician on
it: a seeded ticket In Progress with nobody assigned contradicts itself (62 of 400 did, across
every status past Open). New and Open tickets may still wait in their queue."""

from __future__ import annotations

from typing import Any

from opsmerge_sandbox.spec import Spec
from tests.conftest import rules_broken_by

World = dict[str, list[dict[str, Any]]]
WORKED = {"In Progress", "Waiting on Customer", "Resolved", "Closed"}


def test_a_ticket_past_open_has_a_technician_assigned(seeded_world: World) -> None:
    tickets = seeded_world["tickets"]
    assert sum(t["status"] in WORKED for t in tickets) > 100  # enough to judge
    assert [(t["id"], t["status"]) for t in tickets
            if t["status"] in WORKED and t["assignee_id"] is None] == []


def test_tickets_waiting_in_a_queue_are_still_seeded(seeded_world: World) -> None:
    waiting = [t for t in seeded_world["tickets"] if t["status"] in ("New", "Open")]
    assert any(t["assignee_id"] is None for t in waiting)


def test_the_checker_names_a_worked_ticket_left_unassigned(
    spec: Spec, seeded_world: World
) -> None:
    _, broken = rules_broken_by(spec, seeded_world, "tickets",
                                lambda t: t["status"] == "In Progress", assignee_id=None)
    assert "worked-by-someone" in broken

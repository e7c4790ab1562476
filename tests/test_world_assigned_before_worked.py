"""A ticket is assigned before its assignee works on it: the audit log's `ticket.assigned` entry
(the ticket's assignment, from nobody to its assignee) was drawn anywhere before the ticket last
changed, so 80 of 117 time entries, 64 of 135 comments and 8 of 23 status changes that a
ticket's assignee made came before the log says the ticket was assigned to them. Now a ticket
is triaged in its first quarter hour: assigned then, and worked on after."""

from __future__ import annotations

from typing import Any

from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world.timefmt import format_datetime, parse_time
from tests.conftest import rules_broken_by

World = dict[str, list[dict[str, Any]]]
MINUTE = 60


def _assignments(world: World) -> dict[str, tuple[str, str]]:
    """ticket id -> (when the log says it was assigned, to whom)."""
    return {
        e["object_id"]: (e["created_at"], e["diff"]["assignee_id"][1])
        for e in world["audit_log"]
        if e["action"] == "ticket.assigned"
    }


def test_the_assignee_logs_time_only_after_the_assignment(seeded_world: World) -> None:
    assigned = _assignments(seeded_world)
    entries = [e for e in seeded_world["time_entries"]
               if e["ticket_id"] in assigned and e["user_id"] == assigned[e["ticket_id"]][1]]
    assert len(entries) > 50
    assert [(e["id"], e["started_at"], assigned[e["ticket_id"]][0]) for e in entries
            if parse_time(e["started_at"]) < parse_time(assigned[e["ticket_id"]][0])] == []


def test_the_assignee_comments_only_after_the_assignment(seeded_world: World) -> None:
    assigned = _assignments(seeded_world)
    comments = [c for c in seeded_world["ticket_comments"]
                if c["ticket_id"] in assigned and c["author_id"] == assigned[c["ticket_id"]][1]]
    assert len(comments) > 50
    assert [(c["id"], c["created_at"]) for c in comments
            if parse_time(c["created_at"]) < parse_time(assigned[c["ticket_id"]][0])] == []


def test_the_assignee_moves_the_status_only_after_the_assignment(seeded_world: World) -> None:
    assigned = _assignments(seeded_world)
    moves = [e for e in seeded_world["audit_log"]
             if e["action"] == "ticket.status_changed" and e["object_id"] in assigned
             and e["actor_id"] == assigned[e["object_id"]][1]]
    assert len(moves) > 10
    assert [(e["id"], e["created_at"]) for e in moves
            if parse_time(e["created_at"]) < parse_time(assigned[e["object_id"]][0])] == []


def test_a_ticket_is_assigned_in_its_first_quarter_hour(seeded_world: World) -> None:
    made = {t["id"]: parse_time(t["created_at"]) for t in seeded_world["tickets"]}
    delays = [parse_time(at) - made[tid] for tid, (at, _) in _assignments(seeded_world).items()]
    assert len(delays) > 40
    assert all(1 * MINUTE <= d <= 15 * MINUTE for d in delays)


def test_the_checker_names_time_logged_before_triage(spec: Spec, seeded_world: World) -> None:
    made = {t["id"]: parse_time(t["created_at"]) for t in seeded_world["tickets"]}
    entry = seeded_world["time_entries"][0]
    early = format_datetime(made[entry["ticket_id"]] + 5 * MINUTE)
    _, broken = rules_broken_by(spec, seeded_world, "time_entries",
                                lambda e: e["id"] == entry["id"], started_at=early)
    assert "worked-after-triage" in broken


def test_the_checker_names_an_assignment_long_after_the_ticket(
    spec: Spec, seeded_world: World
) -> None:
    made = {t["id"]: parse_time(t["created_at"]) for t in seeded_world["tickets"]}
    entry = next(e for e in seeded_world["audit_log"] if e["action"] == "ticket.assigned")
    late = format_datetime(made[entry["object_id"]] + 180 * MINUTE)
    _, broken = rules_broken_by(spec, seeded_world, "audit_log",
                                lambda e: e["id"] == entry["id"], created_at=late, updated_at=late)
    assert "assigned-at-triage" in broken

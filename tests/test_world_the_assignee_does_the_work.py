"""The technician a ticket is assigned to is the one working it: 541 of 700 seeded time entries
and 718 of 900 comments on tickets came from someone other than the ticket's assignee, so a
ticket assigned to one technician read as worked by everyone else. Now the time logged on an
assigned ticket and its replies to the requester are its assignee's; colleagues still add
internal notes, and an unassigned ticket's work is whoever picked it up."""

from __future__ import annotations

from typing import Any

from opsmerge_sandbox.spec import Spec
from tests.conftest import rules_broken_by

World = dict[str, list[dict[str, Any]]]


def _assignees(world: World) -> dict[str, str | None]:
    return {t["id"]: t["assignee_id"] for t in world["tickets"]}


def test_time_on_an_assigned_ticket_is_logged_by_its_assignee(seeded_world: World) -> None:
    assignee = _assignees(seeded_world)
    entries = [e for e in seeded_world["time_entries"] if assignee[e["ticket_id"]]]
    assert len(entries) > 100
    assert [(e["id"], e["user_id"], assignee[e["ticket_id"]]) for e in entries
            if e["user_id"] != assignee[e["ticket_id"]]] == []


def test_replies_on_an_assigned_ticket_come_from_its_assignee(seeded_world: World) -> None:
    assignee = _assignees(seeded_world)
    replies = [c for c in seeded_world["ticket_comments"]
               if c["public"] and assignee[c["ticket_id"]]]
    assert len(replies) > 100
    assert [(c["id"], c["author_id"]) for c in replies
            if c["author_id"] != assignee[c["ticket_id"]]] == []


def test_colleagues_still_add_internal_notes(seeded_world: World) -> None:
    assignee = _assignees(seeded_world)
    notes = [c for c in seeded_world["ticket_comments"] if not c["public"]]
    assert any(c["author_id"] != assignee[c["ticket_id"]] for c in notes)


def test_the_checker_names_time_logged_by_someone_else(spec: Spec, seeded_world: World) -> None:
    assignee = _assignees(seeded_world)
    entry = next(e for e in seeded_world["time_entries"] if assignee[e["ticket_id"]])
    other = next(u["id"] for u in seeded_world["users"]
                 if u["id"] != assignee[entry["ticket_id"]] and u["status"] == "active")
    _, broken = rules_broken_by(spec, seeded_world, "time_entries",
                                lambda e: e["id"] == entry["id"], user_id=other)
    assert "logged-by-the-assignee" in broken


def test_a_tickets_status_is_moved_on_by_its_assignee(seeded_world: World) -> None:
    assignee = _assignees(seeded_world)
    moves = [e for e in seeded_world["audit_log"]
             if e["action"] == "ticket.status_changed" and assignee[e["object_id"]]]
    assert len(moves) > 40
    assert [(e["id"], e["actor_id"]) for e in moves
            if e["actor_id"] != assignee[e["object_id"]]] == []

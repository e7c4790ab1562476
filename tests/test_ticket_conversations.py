"""A seeded ticket's comments read as the team's conversation with the requester: in order, in
the team's voice, closed only once the ticket is resolved, and with internal notes that are
notes to the team rather than words to the requester."""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.spec import Spec
from tests.conftest import violations

World = dict[str, list[dict[str, Any]]]
CLOSED = {"Resolved", "Closed"}


def _banks(spec: Spec) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The spec's public turns and internal notes, by ticket subject."""
    body = spec.collections["ticket_comments"].schema["properties"]["body"]
    notes = next(c for c in body["x-cases"] if c["when"] == {"public": [False]})
    return body["x-by"]["values"], notes["x-by"]["values"]


def _threads(world: World, public: bool) -> list[tuple[dict[str, Any], list[str]]]:
    """Each ticket with its public (or internal) comments' bodies, oldest first."""
    tickets = {t["id"]: t for t in world["tickets"]}
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in world["ticket_comments"]:
        if c["public"] is public:
            by[c["ticket_id"]].append(c)
    return [
        (tickets[tid], [c["body"] for c in sorted(cs, key=lambda c: c["created_at"])])
        for tid, cs in by.items()
    ]


def test_a_tickets_public_comments_open_with_its_first_turn_and_close_only_when_resolved(
    spec: Spec, seeded_world: World
) -> None:
    turns, _ = _banks(spec)
    wrong = []
    for ticket, bodies in _threads(seeded_world, public=True):
        mine = turns[ticket["subject"]]
        closing = mine[-1]
        resolved = ticket["status"] in CLOSED
        if len(bodies) >= 2 and bodies[0] != mine[0]:
            wrong.append((ticket["id"], "does not open with the first turn", bodies[0]))
        if closing in bodies[:-1]:
            wrong.append((ticket["id"], "closes before its last comment", bodies))
        if not resolved and closing in bodies:
            wrong.append((ticket["id"], f"closes while {ticket['status']}", closing))
        if resolved and bodies[-1] != closing:
            wrong.append((ticket["id"], "resolved without the closing turn", bodies[-1]))
    assert wrong == []


def test_a_tickets_public_comments_follow_the_turns_in_order_without_repeating_one(
    spec: Spec, seeded_world: World
) -> None:
    turns, _ = _banks(spec)
    wrong = []
    for ticket, bodies in _threads(seeded_world, public=True):
        mine = turns[ticket["subject"]]
        if len(bodies) > len(mine) - 1:
            continue  # more comments than turns: a middle turn comes round again
        places = [mine.index(b) for b in bodies]
        if places != sorted(places) or len(set(bodies)) != len(bodies):
            wrong.append((ticket["id"], places))
    assert wrong == []
    assert sum(len(b) >= 3 for _, b in _threads(seeded_world, public=True)) > 30  # enough to judge


def test_internal_notes_are_the_teams_own_and_never_repeat_on_a_ticket(
    spec: Spec, seeded_world: World
) -> None:
    turns, notes = _banks(spec)
    wrong = []
    for ticket, bodies in _threads(seeded_world, public=False):
        subject = ticket["subject"]
        foreign = [b for b in bodies if b not in notes[subject] or b in turns[subject]]
        repeated = len(bodies) <= len(notes[subject]) and len(set(bodies)) != len(bodies)
        if foreign or repeated:
            wrong.append((ticket["id"], bodies))
    assert wrong == []


def test_the_checker_names_a_comment_in_which_the_team_thanks_itself(
    spec: Spec, seeded_world: World
) -> None:
    bad = copy.deepcopy(seeded_world)
    comment = bad["ticket_comments"][0]
    comment["body"] = "Thanks, the printer is printing again."
    assert (comment["id"], "written-by-the-team") in violations(spec, bad)
    comment["body"] = "Thanks for reporting it; please do not click any links in the email."
    assert (comment["id"], "written-by-the-team") not in violations(spec, bad)


def test_spec_check_names_a_conversation_that_says_neither_whose_nor_in_what_order(
    spec: Spec,
) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    body = schemas["TicketCommentWritable"]["properties"]["body"]
    body["x-by"]["turns"] = {"among": {"public": [True]}}
    _, problems = parse_collections(schemas)
    assert any("x-by.turns needs `per` and `order-by`" in p.message for p in problems)


def test_a_ticket_waiting_on_its_requester_last_asked_them_something(seeded_world: World) -> None:
    """"Waiting on Customer" means the ball is in the requester's court: the team's last public
    comment asks them something, not "we are looking into it"."""
    waiting = [
        (ticket["id"], bodies[-1])
        for ticket, bodies in _threads(seeded_world, public=True)
        if ticket["status"] == "Waiting on Customer"
    ]
    assert len(waiting) > 10  # enough to judge
    assert [(tid, last) for tid, last in waiting if not last.endswith("?")] == []

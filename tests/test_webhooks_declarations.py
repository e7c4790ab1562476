"""`x-sandbox-events` is checked where it is declared: a bad declaration stops the sandbox at
start and `spec check` reports it, through the same parser, naming what is wrong."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from opsmerge_sandbox.catalogue import load_catalogue
from opsmerge_sandbox.extensions import ExtensionError
from opsmerge_sandbox.spec import load_spec, parse_spec
from opsmerge_sandbox.speccheck import lint_document

RAW = load_spec().raw
Mutate = Callable[[dict[str, Any]], None]


def _events(raw: dict[str, Any]) -> dict[str, Any]:
    ext: dict[str, Any] = raw["x-sandbox-events"]
    return ext


def _set(path: tuple[str, ...], value: Any) -> Mutate:
    def mutate(raw: dict[str, Any]) -> None:
        node = _events(raw)
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


CASES: list[tuple[str, Mutate, str]] = [
    ("no rules collection", _set(("rules", "collection"), "rulez"), "rules.collection 'rulez'"),
    (
        "an event on an unknown collection",
        _set(("events", "ticket.created", "collection"), "tikets"),
        "events.ticket.created.collection 'tikets' names no collection",
    ),
    (
        "a clock on a field the subject lacks",
        _set(("events", "ticket.scheduled_stale", "clock", "from"), "touched_at"),
        "clock.from 'touched_at' is not a field of the subject",
    ),
    (
        "an offset for a value the field never holds",
        _set(("events", "ticket.sla_warning", "clock", "after", "seconds", "Urgent"), 60),
        "priority never holds 'Urgent'",
    ),
    (
        "an action setting a field the subject lacks",
        _set(("actions", "set_priority"), {"set": {"urgency": "value"}}),
        "'urgency' is not a field of tickets",
    ),
    (
        "an event the rules schema does not offer",
        _set(("events", "ticket.merged"), {"collection": "tickets", "write": "updated"}),
        "trigger enum",
    ),
    (
        "a retry schedule that is not seconds",
        _set(("delivery", "retry-after-seconds"), ["soon"]),
        "retry-after-seconds must list positive numbers",
    ),
    ("an unknown key", _set(("deliveries",), {}), "unknown key 'deliveries'"),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_declaration_is_refused_at_load_and_reported_by_spec_check(
    mutate: Mutate, expected: str
) -> None:
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(ExtensionError) as refused:
        parse_spec(raw)
    assert expected in str(refused.value)
    problems = [p for p in lint_document(raw, load_catalogue()) if p.rule == "events"]
    assert any(expected in p.message for p in problems), problems


def test_the_bundled_declarations_parse_into_the_engine_model() -> None:
    model = load_spec().events
    assert model is not None
    assert model.rules == "ticket_rules" and model.subject == "tickets"
    assert {e.name for e in model.clock_events} == {
        "ticket.sla_warning",
        "ticket.scheduled_stale",
        "ticket.scheduled_customer_silence",
    }
    assert model.actions["assign_to_user"].sets == {"assignee_id": "user_id"}
    assert model.delivery.attempts == 6

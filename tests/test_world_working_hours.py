"""People's times fall mostly in their working day (`x-time.hours`): drawn evenly over the clock
and the week, tickets came in at 3 am on a Sunday as often as at 10 am on a Tuesday (27% of them
between 08:00 and 18:00 on a weekday), and technicians logged work round the clock. A machine's
times (a recurring invoice run at one minute past midnight, a key used by a program) stay as
they were."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from opsmerge_sandbox.extensions import parse_collections
from opsmerge_sandbox.spec import Spec
from opsmerge_sandbox.world.working_hours import read_hours

World = dict[str, list[dict[str, Any]]]
LONDON = ZoneInfo("Europe/London")
OFFICE = {"zone": "Europe/London", "days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
          "from": "08:00", "to": "18:00", "share": 1.0}


def _working(stamp: str) -> bool:
    local = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(LONDON)
    return local.weekday() < 5 and 8 <= local.hour < 18


def _share(stamps: list[str], enough: int = 40) -> float:
    assert len(stamps) > enough  # enough to judge
    return sum(map(_working, stamps)) / len(stamps)


@pytest.mark.parametrize(("collection", "field", "least"), [
    ("tickets", "created_at", 0.75),
    ("tickets", "updated_at", 0.7),
    ("time_entries", "started_at", 0.8),
    ("ticket_comments", "created_at", 0.75),
])
def test_most_of_what_people_do_falls_in_their_working_day(
    seeded_world: World, collection: str, field: str, least: float
) -> None:
    assert _share([r[field] for r in seeded_world[collection]]) >= least


def test_people_sign_in_and_change_tickets_in_their_working_day(seeded_world: World) -> None:
    log = seeded_world["audit_log"]
    for action in ("user.login", "ticket.status_changed", "ticket.assigned"):
        assert _share([e["created_at"] for e in log if e["action"] == action]) >= 0.75, action


def test_some_tickets_still_come_in_out_of_hours(seeded_world: World) -> None:
    assert _share([t["created_at"] for t in seeded_world["tickets"]]) < 0.97


def test_the_recurring_run_still_issues_its_invoices_at_night(seeded_world: World) -> None:
    runs = [e["created_at"] for e in seeded_world["audit_log"]
            if e["action"] == "invoice.created" and e["actor_id"] is None]
    assert _share(runs, enough=10) < 0.25


def test_a_time_moved_into_working_hours_stays_in_its_window_summer_and_winter() -> None:
    hours = read_hours(OFFICE)
    rng = random.Random(7)
    moved_in = 0
    for _ in range(2000):
        lo = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp()) + rng.randrange(700 * 86400)
        hi = lo + rng.randrange(4 * 86400, 7 * 86400)
        ts = lo + rng.randrange(hi - lo)
        got = hours.shape(ts, lo, hi, rng)
        assert lo <= got <= hi
        moved_in += _working(datetime.fromtimestamp(got, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert moved_in == 2000  # four days always hold a whole weekday


def test_a_sunday_night_moves_to_the_nearest_weekday_in_office_hours() -> None:
    hours = read_hours(OFFICE)
    sunday = int(datetime(2026, 7, 5, 2, 0, tzinfo=UTC).timestamp())  # 03:00 in London
    got = datetime.fromtimestamp(
        hours.shape(sunday, sunday - 3 * 86400, sunday + 3 * 86400, random.Random(1)), LONDON
    )
    assert got.weekday() in (0, 4) and 8 <= got.hour < 18


def test_spec_check_names_working_hours_it_cannot_read(spec: Spec) -> None:
    schemas = copy.deepcopy(spec.raw["components"]["schemas"])
    created = schemas["Ticket"]["allOf"][1]["properties"]["created_at"]
    created["x-time"]["hours"] = {**OFFICE, "zone": "Mars/Olympus", "from": "19:00"}
    _, problems = parse_collections(schemas)
    messages = " ".join(p.message for p in problems)
    assert "no time zone 'Mars/Olympus'" in messages
    assert "from and to must be HH:MM, from before to" in messages

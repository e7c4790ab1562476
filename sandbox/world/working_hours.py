"""`x-time.hours`: times people make fall mostly in their working hours.

Drawn evenly over the day and the week, a service desk's tickets came in at 3 am on a Sunday as
often as at 10 am on a Tuesday, and technicians logged work round the clock. A time with

    x-time: {..., hours: {zone: Europe/London, days: [Mon, Tue, Wed, Thu, Fri],
                          from: '08:00', to: '18:00', share: 0.85}}

is drawn as before and then, `share` of the time, moved into working hours: to a moment between
`from` and `to` (in `zone`, summer time included) on its own day when that is a working day,
else (or when that moment is out of its window) on the nearest working day after or before it.
A move that would leave the window the field's other rules allow (after its ticket was raised,
before the epoch) is not made, so the shaping never breaks a rule the time already kept; the
rest of the times stay where they fell (a server alert at night, a ticket mailed in at the
weekend).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAYS", "WorkingHours", "hours_problems", "read_hours"]

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
KEYS = ("zone", "days", "from", "to", "share")


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """When people work: the zone, weekdays (Monday 0), the day's start and end in minutes, and
    the share of times moved into them."""

    zone: ZoneInfo
    days: frozenset[int]
    start: int
    end: int
    share: float

    def shape(self, ts: int, lo: int, hi: int, rng: random.Random) -> int:
        """`ts`, or, `share` of the time, a moment in working hours near it within [lo, hi]."""
        if rng.random() >= self.share:
            return ts
        minute = self.start + int((self.end - self.start) * rng.random())
        second = int(rng.random() * 60)
        day = datetime.fromtimestamp(ts, self.zone).date()
        for candidate in self._near(day):
            local = datetime.combine(candidate, time(minute // 60, minute % 60, second), self.zone)
            moved = int(local.astimezone(UTC).timestamp())
            if lo <= moved <= hi:
                return moved
        return ts

    def _near(self, day: date) -> list[date]:
        """The day itself when people work on it, then the nearest working days after and before
        it (the nearer first), for a window its own day's hours fall outside."""
        after = next(day + timedelta(n) for n in range(1, 8) if (day + timedelta(n)).weekday()
                     in self.days)
        before = next(day - timedelta(n) for n in range(1, 8) if (day - timedelta(n)).weekday()
                      in self.days)
        around = [after, before] if after - day <= day - before else [before, after]
        return [day, *around] if day.weekday() in self.days else around


def _minutes(value: Any) -> int | None:
    """Minutes into the day of `HH:MM`, or None when it is not one."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        return None
    hours, minutes = value[:2], value[3:]
    if not (hours.isdigit() and minutes.isdigit()) or int(hours) > 24 or int(minutes) > 59:
        return None
    return min(int(hours) * 60 + int(minutes), 24 * 60)


def hours_problems(rule: Any) -> list[str]:
    """What is wrong with an `x-time.hours` declaration."""
    if not isinstance(rule, Mapping):
        return ["x-time.hours must be a mapping"]
    out = [f"x-time.hours: unknown key {k!r}" for k in rule if k not in KEYS]
    try:
        ZoneInfo(str(rule.get("zone")))
    except (ZoneInfoNotFoundError, ValueError):
        out.append(f"x-time.hours: no time zone {rule.get('zone')!r}")
    days = rule.get("days")
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        out.append(f"x-time.hours: days must list some of {', '.join(DAYS)}")
    start, end = _minutes(rule.get("from")), _minutes(rule.get("to"))
    if start is None or end is None or start >= end:
        out.append("x-time.hours: from and to must be HH:MM, from before to")
    share = rule.get("share")
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        out.append("x-time.hours: share must be a number from 0 to 1")
    return out


def read_hours(rule: Mapping[str, Any]) -> WorkingHours:
    """The working hours a sound declaration (`hours_problems` found nothing) describes."""
    return WorkingHours(
        ZoneInfo(str(rule["zone"])),
        frozenset(DAYS.index(d) for d in rule["days"]),
        _minutes(rule["from"]) or 0,
        _minutes(rule["to"]) or 24 * 60,
        float(rule["share"]),
    )

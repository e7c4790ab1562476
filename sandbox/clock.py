"""The sandbox clock: real time plus an offset that QA can move forward.

Key expiry, rate-limit windows and action lifecycles all read this clock, so a test can cross an
expiry or a rate window by advancing it instead of sleeping. It never moves backwards.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    __slots__ = ("_iso", "offset")

    def __init__(self) -> None:
        self.offset = 0.0
        self._iso: tuple[int, str] = (-1, "")

    def now(self) -> float:
        return time.time() + self.offset

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def iso(self) -> str:
        """Now as ISO 8601 at second precision; formatted once per second, not per call."""
        second = int(self.now())
        if self._iso[0] != second:
            self._iso = (second, format_iso(second))
        return self._iso[1]

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds


def format_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> float:
    """Seconds since the epoch for an ISO 8601 timestamp or date (UTC when no zone is given)."""
    text = value.replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()

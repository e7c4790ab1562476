"""The sandbox clock: real time plus an offset that QA can move forward.

Key expiry, rate-limit windows and action lifecycles all read this clock, so a test can cross an
expiry or a rate window by advancing it instead of sleeping. Advancing never moves it backwards;
only a reset of the whole sandbox puts it back to real time.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

# The latest time the clock may show. Every timestamp the sandbox writes must stay formattable
# (datetime stops at 9999-12-31), and some are set after "now" (key expiries up to ten years
# ahead, fault-rule expiries, action deadlines), so the clock stops well short of that end.
LATEST = datetime(9000, 1, 1, tzinfo=UTC).timestamp()


class ClockRangeError(ValueError):
    """A clock change the sandbox refuses: backwards, not a finite number, or past LATEST."""


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

    def headroom(self) -> float:
        """How many seconds the clock may still be advanced."""
        return max(0.0, LATEST - self.now())

    def advance(self, seconds: float) -> None:
        """Move forward; ClockRangeError (and no change) for a move the sandbox cannot show."""
        if not math.isfinite(seconds):
            raise ClockRangeError("the clock moves by a finite number of seconds")
        if seconds < 0:
            raise ClockRangeError("the clock only moves forward")
        if seconds > self.headroom():
            raise ClockRangeError(
                f"the clock cannot pass {format_iso(LATEST)}; it may advance at most "
                f"{int(self.headroom())} more seconds"
            )
        self.offset += seconds

    def reset(self) -> None:
        """Back to real time (a reset of the whole sandbox, when every record is reseeded)."""
        self.offset = 0.0


def format_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def formattable(ts: float) -> bool:
    """True when format_iso can write this time (datetime stops at years 1 and 9999)."""
    try:
        format_iso(ts)
    except (ValueError, OverflowError, OSError):
        return False
    return True


def parse_iso(value: str) -> float:
    """Seconds since the epoch for an ISO 8601 timestamp or date (UTC when no zone is given)."""
    text = value.replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()

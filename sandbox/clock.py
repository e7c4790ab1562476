"""The sandbox clock: real time plus an offset that QA can move forward.

Key expiry, rate-limit windows and action lifecycles all read this clock, so a test can cross an
expiry or a rate window by advancing it instead of sleeping. Advancing never moves it backwards;
only a reset of the whole sandbox puts it back to real time.

A workspace may run ahead of the sandbox's clock (`advance(..., workspace=)`): a CI job moves the
time of its own workspace without moving a developer's, and a reset of that workspace puts it
back. A request reads the clock of the workspace it names (`use_workspace`, set once per request
from its header; every request runs in its own task, so the setting never leaks into another),
and reads one instant however often it asks (`begin_instant`).
"""

from __future__ import annotations

import math
import time
from contextvars import ContextVar, Token
from datetime import UTC, datetime

# The latest time the clock may show. Every timestamp the sandbox writes must stay formattable
# (datetime stops at 9999-12-31), and some are set after "now" (key expiries up to ten years
# ahead, fault-rule expiries, action deadlines), so the clock stops well short of that end.
LATEST = datetime(9000, 1, 1, tzinfo=UTC).timestamp()


class ClockRangeError(ValueError):
    """A clock change the sandbox refuses: backwards, not a finite number, or past LATEST."""


_WORKSPACE: ContextVar[str] = ContextVar("sandbox_clock_workspace", default="")


class Instant:
    """The real time one request happens at: the moment it started, read for every later read of
    the clock until it is answered, so the times one write sets (a record's `created_at`, a
    field set to now, its audit entry) never straddle a second. Offsets still apply on top, so
    a workspace resolved later, or a clock moved by the request, still counts."""

    __slots__ = ("at",)

    def __init__(self, at: float | None) -> None:
        self.at = at  # None: live time (no request, or one answered whose tasks live on)


# the default is live time; only `end_instant` writes to an instant, and only None, so the
# shared default never changes (and `Clock.now` needs no test for a missing one)
_INSTANT: ContextVar[Instant] = ContextVar(
    "sandbox_clock_instant", default=Instant(None)  # noqa: B039
)


def begin_instant() -> Token[Instant]:
    """Hold the clock's real time, as of now, for the rest of the current request."""
    return _INSTANT.set(Instant(time.time()))


def end_instant(token: Token[Instant]) -> None:
    """Let the clock run again (`token`: what `begin_instant` returned): the request is
    answered, and tasks it started, which share its instant, read live time."""
    _INSTANT.get().at = None
    _INSTANT.reset(token)


def use_workspace(name: str) -> None:
    """Read the clock of this workspace for the rest of the current request."""
    _WORKSPACE.set(name)


class Clock:
    __slots__ = ("_iso", "ahead", "offset")

    def __init__(self) -> None:
        self.offset = 0.0
        # workspace -> seconds its own clock runs ahead of the sandbox's (only forward)
        self.ahead: dict[str, float] = {}
        self._iso: tuple[int, str] = (-1, "")

    def now(self) -> float:
        real = _INSTANT.get().at  # the request's instant, read inline: this is on every request
        if real is None:
            real = time.time()
        ahead = self.ahead
        if ahead:
            return real + self.offset + ahead.get(_WORKSPACE.get(), 0.0)
        return real + self.offset

    def offset_of(self, workspace: str | None = None) -> float:
        """Seconds ahead of real time: the sandbox's clock, or one workspace's."""
        return self.offset + (self.ahead.get(workspace, 0.0) if workspace else 0.0)

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def iso(self) -> str:
        """Now as ISO 8601 at second precision; formatted once per second, not per call."""
        second = int(self.now())
        if self._iso[0] != second:
            self._iso = (second, format_iso(second))
        return self._iso[1]

    def headroom(self, workspace: str | None = None) -> float:
        """How many seconds the clock (or a workspace's) may still be advanced."""
        furthest = max([self.offset, *(self.offset + a for a in self.ahead.values())])
        if workspace is not None:
            furthest = self.offset_of(workspace)
        return max(0.0, LATEST - (time.time() + furthest))

    def advance(self, seconds: float, workspace: str | None = None) -> None:
        """Move forward, the sandbox's clock or only one workspace's; ClockRangeError (and no
        change) for a move the sandbox cannot show."""
        if not math.isfinite(seconds):
            raise ClockRangeError("the clock moves by a finite number of seconds")
        if seconds < 0:
            raise ClockRangeError("the clock only moves forward")
        room = self.headroom(workspace)
        if seconds > room:
            raise ClockRangeError(
                f"the clock cannot pass {format_iso(LATEST)}; it may advance at most "
                f"{int(room)} more seconds"
            )
        if workspace is None:
            self.offset += seconds
        elif seconds:
            self.ahead[workspace] = self.ahead.get(workspace, 0.0) + seconds

    def reset(self, workspace: str | None = None) -> None:
        """Back to real time (a reset of the whole sandbox, when every record is reseeded), or
        one workspace back to the sandbox's clock (a reset of that workspace)."""
        if workspace is not None:
            self.ahead.pop(workspace, None)
            return
        self.offset = 0.0
        self.ahead.clear()


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

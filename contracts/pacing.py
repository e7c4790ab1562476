"""Pacing: stay under each key's rate limit using the X-RateLimit-* headers, and wait out 429s.

The server says how much of the window is left after every response; before the next request
with the same key, the pacer waits for the window to reset when nothing (or only the reserve) is
left. A 429 is not a contract failure: the pacer waits Retry-After (or the window's Reset when the
header is missing) and the request is sent again.

How to wait is injected: real sleep against a deployment, advancing the sandbox clock against a
sandbox the run owns (the sandbox's windows run on that clock, so it is the same wait, without
the minutes).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Wait = Callable[[float], None]


@dataclass(slots=True)
class Window:
    limit: int
    remaining: int
    reset: int  # seconds until the window resets, as the server said
    seen_at: float  # monotonic time the server said it


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def bucket_of(authorization: str | None) -> str:
    """The pacing bucket of a credential; a digest, so the pacer holds no secret."""
    return hashlib.sha256((authorization or "").encode()).hexdigest()[:16]


class Pacer:
    def __init__(
        self,
        wait: Wait = time.sleep,
        reserve: int = 0,
        max_retries: int = 3,
        fallback_wait: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wait = wait
        self.reserve = reserve
        self.max_retries = max_retries
        self.fallback_wait = fallback_wait
        self.monotonic = monotonic
        self.windows: dict[str, Window] = {}
        self.waited = 0.0  # seconds waited in all, for the report
        self.throttled = 0  # 429s absorbed
        self._lock = threading.Lock()

    def before(self, bucket: str) -> float:
        """Wait, if needed, so the next request with this bucket fits in its window."""
        window = self.windows.get(bucket)
        if window is None or window.remaining > self.reserve:
            return 0.0
        left = window.reset - (self.monotonic() - window.seen_at)
        self.windows.pop(bucket, None)
        if left <= 0:
            return 0.0
        self._wait(left)
        return left

    def after(self, bucket: str, headers: Mapping[str, str]) -> None:
        """Remember what the server said about the bucket's window."""
        limit = _int(headers, "x-ratelimit-limit")
        remaining = _int(headers, "x-ratelimit-remaining")
        reset = _int(headers, "x-ratelimit-reset")
        if limit is None or remaining is None or reset is None:
            return
        with self._lock:
            self.windows[bucket] = Window(limit, remaining, reset, self.monotonic())

    def throttled_wait(self, bucket: str, headers: Mapping[str, str]) -> float:
        """After a 429: wait Retry-After, else the window's Reset, else a short fallback."""
        seconds = _int(headers, "retry-after")
        if seconds is None:
            seconds = _int(headers, "x-ratelimit-reset")
        wait = float(seconds) if seconds is not None else self.fallback_wait
        self.throttled += 1
        self.windows.pop(bucket, None)
        self._wait(max(wait, 0.0))
        return wait

    def _wait(self, seconds: float) -> None:
        self.waited += seconds
        if seconds > 0:
            self.wait(seconds)

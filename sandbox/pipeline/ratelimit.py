"""Stage 4: 300 requests per minute per key, in `limits`' fixed windows.

A fixed one-minute window per key (and per workspace, so parallel CI jobs never share a budget),
keyed as `limits` keys its items. The embedded storage keeps the windows in two dictionaries read
through the sandbox clock (one clock read per request), so advancing the clock crosses a window
exactly as waiting would, and the headers tell the truth: a retry after `Retry-After` seconds
succeeds, one before it does not.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from limits import RateLimitItemPerMinute

from opsmerge_sandbox.errors import ApiError

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.stores import ClockStore, RateBuckets

WINDOW_SECONDS = 60
# The rate-limit header names, written once: every stage that sends or checks them reads these.
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
RETRY_AFTER_HEADER = "retry-after"


def rate_limit_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    """The X-RateLimit-* headers for a bucket: its limit, what is left, seconds to the reset."""
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(reset),
    }


def bucket_of(workspace: str, key_id: str) -> str:
    """A key's bucket in a workspace: parallel CI jobs in their own workspaces never share one
    (workspace names never hold `/`, so the bucket also names its workspace for `reset`)."""
    return f"{workspace}/{key_id}"


class WindowCounts:
    """Fixed windows by key: the count, and when the window ends on the sandbox clock.

    The same data, keys and expiry rule as `limits`' MemoryStorage (a window starts at its first
    hit and lasts the item's expiry; a window read at or after its end is forgotten), without
    what an event loop that owns its state does not need: a lock per key, a Counter, the
    storage's error-wrapping decorators and its expiry thread. `limits`' Redis storage is the
    shared implementation behind the same `RateBuckets` interface.
    """

    __slots__ = ("clock", "expirations", "storage")

    def __init__(self, clock: ClockStore) -> None:
        self.clock = clock
        self.storage: dict[str, int] = {}  # key -> requests counted in its window
        self.expirations: dict[str, float] = {}  # key -> when its window ends

    def incr(self, key: str, expiry: float, now: float | None = None) -> int:
        """Count one hit in the key's window (a new window if there is none running)."""
        if now is None:
            now = self.clock.now()
        ends = self.expirations.get(key)
        if ends is None or ends <= now:
            self.expirations[key] = now + expiry
            self.storage[key] = 1
            return 1
        used = self.storage[key] = self.storage[key] + 1
        return used

    def get(self, key: str) -> int:
        """The count of the key's running window (0, and the window forgotten, once ended)."""
        if self.expirations.get(key, 0) <= self.clock.now():
            self.clear(key)
            return 0
        return self.storage.get(key, 0)

    def clear(self, key: str) -> None:
        self.storage.pop(key, None)
        self.expirations.pop(key, None)

    def reset(self) -> int:
        n = len(self.storage)
        self.storage.clear()
        self.expirations.clear()
        return n


class RateState(NamedTuple):
    """A bucket as the X-RateLimit-* headers describe it (a tuple: made on every request)."""

    limit: int
    remaining: int
    reset: int  # seconds until the window resets

    def headers(self) -> dict[str, str]:
        return rate_limit_headers(self.limit, self.remaining, self.reset)


_new_state = tuple.__new__


class RateLimiter:
    def __init__(self, clock: ClockStore) -> None:
        self.clock = clock
        self.storage = WindowCounts(clock)
        self._items: dict[int, RateLimitItemPerMinute] = {}
        self._keys: dict[tuple[str, int], str] = {}

    def _item(self, limit: int) -> RateLimitItemPerMinute:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = RateLimitItemPerMinute(limit)
        return item

    def _key(self, bucket: str, limit: int) -> str:
        key = self._keys.get((bucket, limit))
        if key is None:
            if len(self._keys) > 50_000:  # buckets come and go with workspaces: stay bounded
                self._keys.clear()
            key = self._keys[(bucket, limit)] = self._item(limit).key_for(bucket)
        return key

    def _state(self, key: str, limit: int, used: int, now: float | None = None) -> RateState:
        if now is None:
            now = self.clock.now()
        reset = max(0, math.ceil(self.storage.expirations.get(key, now) - now))
        return RateState(limit, max(0, limit - used), reset if used else WINDOW_SECONDS)

    def hit(self, bucket: str, limit: int) -> RateState:
        """Count one request; a 429 with truthful headers when the window is spent.

        This is the fixed-window step of `limits`' FixedWindowRateLimiter (incr, then compare
        with the item's amount), taken inline so one storage call gives both the verdict and
        the count the headers report, read at one instant of the clock.
        """
        key = self._keys.get((bucket, limit)) or self._key(bucket, limit)
        now = self.clock.now()
        counts, ends = self.storage.storage, self.storage.expirations
        end = ends.get(key)
        if end is None or end <= now:  # WindowCounts.incr, inline: this runs on every request
            end = ends[key] = now + WINDOW_SECONDS
            used = counts[key] = 1
        else:
            used = counts[key] = counts[key] + 1
        # the tuple made directly: RateState's constructor is a Python function, on every request
        state = _new_state(RateState, (limit, max(0, limit - used), max(0, math.ceil(end - now))))
        if used > limit:
            retry = max(1, state.reset)
            raise ApiError(
                "RATE_LIMITED",
                f"API key rate limit exceeded: {limit} requests per minute. Retry after {retry} s.",
                headers={**state.headers(), RETRY_AFTER_HEADER: str(retry)},
            )
        return state

    def peek(self, bucket: str, limit: int) -> RateState:
        key = self._key(bucket, limit)
        return self._state(key, limit, self.storage.get(key))

    def forget_spent(self) -> int:
        """Drop the windows that have ended (a window is otherwise dropped only when read again)."""
        storage = self.storage
        now = self.clock.now()
        spent = [k for k, expiry in list(storage.expirations.items()) if expiry <= now]
        for key in spent:
            storage.get(key)  # reading an expired window forgets it
        return len(spent)

    def reset(self, workspace: str | None = None) -> int:
        """Empty every bucket, or only one workspace's (buckets are `<workspace>/<key id>`)."""
        if workspace is None:
            return self.storage.reset()
        prefix = f"{RateLimitItemPerMinute(1).namespace}/{workspace}/"
        keys = [k for k in self.storage.storage if k.startswith(prefix)]
        for key in keys:
            self.storage.clear(key)
        return len(keys)


class RateLimit:
    """Stage: count the request in the caller's bucket; 429 with truthful headers past it."""

    def __init__(self, limiter: RateBuckets, enabled: bool) -> None:
        self.limiter = limiter
        self.enabled = enabled

    def __call__(self, ctx: RequestContext) -> None:
        if self.enabled:
            ctx.rate = self.limiter.hit(ctx.bucket, ctx.limit)

"""Stage 4: 300 requests per minute per key, counted by `limits`.

A fixed one-minute window per key (and per workspace, so parallel CI jobs never share a budget).
The storage is `limits`' in-memory storage read through the sandbox clock, so advancing the clock
crosses a window exactly as waiting would, and the headers tell the truth: a retry after
`Retry-After` seconds succeeds, one before it does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage

from sandbox.clock import Clock
from sandbox.errors import ApiError

if TYPE_CHECKING:
    from sandbox.pipeline.context import RequestContext
    from sandbox.stores import RateBuckets

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


class ClockedMemoryStorage(MemoryStorage):
    """`limits`' memory storage with expiries measured on the sandbox clock."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        self.get(key)
        with self.locks[key]:
            self.storage[key] += amount
            if self.storage[key] == amount:
                self.expirations[key] = self.clock.now() + expiry
        return self.storage.get(key, 0)

    def get(self, key: str) -> int:
        if self.expirations.get(key, 0) <= self.clock.now():
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
            self.locks.pop(key, None)
        return self.storage.get(key, 0)

    def get_expiry(self, key: str) -> float:
        return self.expirations.get(key, self.clock.now())

    def reset(self) -> int:
        n = len(self.storage)
        self.storage.clear()
        self.expirations.clear()
        self.locks.clear()
        self.events.clear()
        return n


@dataclass(frozen=True, slots=True)
class RateState:
    limit: int
    remaining: int
    reset: int  # seconds until the window resets

    def headers(self) -> dict[str, str]:
        return rate_limit_headers(self.limit, self.remaining, self.reset)


class RateLimiter:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.storage = ClockedMemoryStorage(clock)
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

    def _state(self, key: str, limit: int, used: int) -> RateState:
        now = self.clock.now()
        reset = max(0, math.ceil(self.storage.expirations.get(key, now) - now))
        return RateState(limit, max(0, limit - used), reset if used else WINDOW_SECONDS)

    def hit(self, bucket: str, limit: int) -> RateState:
        """Count one request; a 429 with truthful headers when the window is spent.

        This is the fixed-window step of `limits`' FixedWindowRateLimiter (incr, then compare
        with the item's amount), taken inline so one storage call gives both the verdict and
        the count the headers report.
        """
        key = self._key(bucket, limit)
        used = self.storage.incr(key, self._item(limit).get_expiry())
        state = self._state(key, limit, used)
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
        keys = [k for k in list(self.storage.storage) if k.startswith(prefix)]
        for key in keys:
            self.storage.clear(key)
        return len(keys)


class RateLimit:
    """Stage: count the request in the caller's bucket; 429 with truthful headers past it."""

    def __init__(self, limiter: RateBuckets, enabled: bool) -> None:
        self.limiter = limiter
        self.enabled = enabled

    async def __call__(self, ctx: RequestContext) -> None:
        if self.enabled:
            ctx.rate = self.limiter.hit(ctx.bucket, ctx.limit)

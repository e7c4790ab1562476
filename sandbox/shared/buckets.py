"""Rate windows on shared state: `limits`' Redis storage, the same fixed windows as in one process.

A hit runs `limits`' own `incr_expire` script (the storage's fixed-window step: count, and start
the window's expiry on its first hit) and reads the window's time left, inside the request's one
script (its text, as `limits` ships it, is a function there: `stages.admit_script`). A burst
spread over any number of workers is counted in one place, so exactly `limit` requests pass
and each answer's headers tell the count Redis gave it.

Windows expire on Redis's clock; the sandbox clock can be moved forward, and when it is, every
window it concerns is shortened by the same amount (`shorten`), so crossing a window by advancing
the clock works as it does in one process.
"""

from __future__ import annotations

import math

from limits import RateLimitItemPerMinute

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.ratelimit import RETRY_AFTER_HEADER, WINDOW_SECONDS, RateState
from opsmerge_sandbox.shared.link import UNREACHABLE, Link, unavailable


class SharedRateBuckets:
    """The `RateBuckets` of a shared sandbox (the request path uses `key`, `state`, `refusal`)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._items: dict[int, RateLimitItemPerMinute] = {}
        self._keys: dict[tuple[str, int], str] = {}
        source = link.bridge.SCRIPT_INCR_EXPIRE  # its text (bytes), for one-script hits
        self.incr_source: str = source.decode() if isinstance(source, bytes) else source
        self._incr_sync = link.sync_script(link.bridge.SCRIPT_INCR_EXPIRE)
        self.namespace = RateLimitItemPerMinute(1).namespace

    def key(self, bucket: str, limit: int) -> str:
        found = self._keys.get((bucket, limit))
        if found is None:
            if len(self._keys) > 50_000:
                self._keys.clear()
            item = self._items.get(limit)
            if item is None:
                item = self._items[limit] = RateLimitItemPerMinute(limit)
            found = self._keys[(bucket, limit)] = self.link.rate_key(item.key_for(bucket))
        return found

    # ------------------------------------------------------------------ the request path
    @staticmethod
    def state(limit: int, used: int, pttl: int) -> RateState:
        """The bucket as its headers tell it, from the count and time left Redis gave."""
        reset = max(0, math.ceil(pttl / 1000)) if pttl > 0 else WINDOW_SECONDS
        return RateState(limit, max(0, limit - used), reset)

    @staticmethod
    def refusal(state: RateState) -> ApiError:
        """The 429 of a spent bucket, with truthful headers."""
        retry = max(1, state.reset)
        return ApiError(
            "RATE_LIMITED",
            f"API key rate limit exceeded: {state.limit} requests per minute. "
            f"Retry after {retry} s.",
            headers={**state.headers(), RETRY_AFTER_HEADER: str(retry)},
        )

    def verdict(self, limit: int, used: int, pttl: int) -> RateState:
        """The bucket's state; a 429 past the limit."""
        state = self.state(limit, used, pttl)
        if used > limit:
            raise self.refusal(state)
        return state

    async def undo(self, keys: list[str]) -> None:
        """Take back hits counted for a request that turned out to belong elsewhere."""
        if keys:
            pipe = self.link.client.pipeline(transaction=False)
            for key in keys:
                pipe.decr(key)
            await pipe.execute()

    # ------------------------------------------------------------------ RateBuckets
    def hit(self, bucket: str, limit: int) -> RateState:
        key = self.key(bucket, limit)
        try:
            pipe = self.link.sync.pipeline(transaction=False)
            self._incr_sync([key], [WINDOW_SECONDS, 1], client=pipe)
            pipe.pttl(key)
            used, pttl = pipe.execute()
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc
        return self.verdict(limit, int(used), int(pttl))

    def peek(self, bucket: str, limit: int) -> RateState:
        key = self.key(bucket, limit)
        try:
            pipe = self.link.sync.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            used, pttl = pipe.execute()
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc
        used = int(used or 0)
        return RateState(limit, max(0, limit - used),
                         math.ceil(pttl / 1000) if used and pttl > 0 else WINDOW_SECONDS)

    def _pattern(self, workspace: str | None) -> str:
        return self.link.rate_key(f"{self.namespace}/{workspace + '/' if workspace else ''}") + "*"

    def reset(self, workspace: str | None = None) -> int:
        """Empty every bucket, or one workspace's; returns how many windows went."""
        try:
            keys = list(self.link.sync.scan_iter(match=self._pattern(workspace), count=1000))
            if keys:
                self.link.sync.delete(*keys)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc
        return len(keys)

    def forget_spent(self) -> int:
        return 0  # Redis drops a window when it ends

    async def shorten(self, seconds: float, workspace: str | None) -> None:
        """The sandbox clock moved `seconds` ahead: every window concerned ends that much
        sooner (and those it passes end now)."""
        client = self.link.client
        keys = [k async for k in client.scan_iter(match=self._pattern(workspace), count=1000)]
        if not keys:
            return
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
        left = await pipe.execute()
        cut = int(seconds * 1000)
        pipe = client.pipeline(transaction=False)
        for key, ms in zip(keys, left, strict=True):
            if ms is None or ms < 0:
                continue
            if ms <= cut:
                pipe.delete(key)
            else:
                pipe.pexpire(key, ms - cut)
        await pipe.execute()

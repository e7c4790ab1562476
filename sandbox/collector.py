"""The cyclic garbage collector of a serving process: full passes on a timer, survivors frozen.

A request makes no reference cycles (`tests/test_collector.py` holds that), so what outlives one
is what the store keeps: records, audit entries, journal lines, trees of plain values that die by
reference count when they die at all. CPython 3.11's collector still walks every one of them on
each full pass, and it starts a full pass whenever the objects promoted since the last one reach a
quarter of the survivors, which requests in flight reach quickly. Under a write burst that made a
60-190 ms pause about once a second, growing with the store.

So a serving process takes the full passes over: automatic collection stays on for the young
generations (cheap; they catch cycles early), never for the oldest; a background task runs a full
pass every `interval` seconds and freezes what survived it (`gc.freeze`), so each pass walks only
what arrived since the last one, and its pause is bounded by the write rate, not the store's size.

The interval is short (`PASS_INTERVAL_S`): the work is the same however it is split (each survivor
is walked once), but the pause is what it walked since the last pass, and every request in flight
waits it out (on shared state, a pass in a worker holding a workspace's lock stalls every worker's
writers). Under a burst of creates, a pass a second paused a worker 15-25 ms (once 120 ms), and
creates' p99 was 35-41 ms on 2 Redis workers and 24 ms in memory; ten a second, ~1.5 ms each,
and 25-28 ms and 13-17 ms (`benchmarks/README.md`).
A frozen object that later joined a cycle would never be collected; the test above keeps requests
from making any.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar import Litestar

NEVER = 2**31 - 1  # a gen-2 threshold the count of young passes cannot reach
PASS_INTERVAL_S = 0.1  # between full passes in a serving process (see above)


@dataclass
class Collector:
    """Full passes on a timer for a long-running server; `interval` in seconds."""

    interval: float = PASS_INTERVAL_S
    passes: int = 0
    longest_ms: float = 0.0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def take_over(self) -> None:
        """Collect and freeze what start-up built (the seeded world never dies), then keep the
        automatic collector to the young generations."""
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, NEVER)

    def full_pass(self) -> float:
        """One full pass over what is not frozen, then freeze its survivors; its pause in ms."""
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        took = (time.perf_counter() - started) * 1000
        self.passes += 1
        self.longest_ms = max(self.longest_ms, took)
        return took

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.full_pass()

    async def start(self) -> None:
        """The app's start-up hook: the timer runs on the server's event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="collector")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def install(app: Litestar, collector: Collector) -> None:
    """Hand a serving app's full passes to `collector` (its start-up and shutdown hooks)."""
    collector.take_over()
    app.on_startup.append(collector.start)
    app.on_shutdown.append(collector.stop)

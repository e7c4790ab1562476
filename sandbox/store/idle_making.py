"""Deferred records made while the sandbox has nothing else to do.

A workspace in memory defers the records written far more often than read (an audit log's
entries, `Workspace.defer`): a create leaves a few references, and the first read of the
collection makes every one of them. After a burst of 190,000 creates that first read took
about a second, and every request behind it on the event loop waited as long.

So once no request has used a workspace for `idle_after` seconds, a background task makes them,
`slice` records at a time (a few milliseconds each), and looks again between slices: a request
that arrives meanwhile is served after at most one slice, and the task waits for the next quiet
moment. A server kept busy leaves the records to the read that needs them, as before, so the
deferral still saves its work under load. A data directory or shared state makes every record at
commit; there is nothing to make, and the task is not started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from opsmerge_sandbox.background import while_serving
from opsmerge_sandbox.store.workspace import Workspaces

IDLE_AFTER_S = 0.25  # no request for this long: the server is idle
INTERVAL_S = 0.1  # how often an idle server is looked for
SLICE = 1000  # records made between two looks (~5 ms of audit entries)
log = logging.getLogger(__name__)


@dataclass
class IdleMaking:
    """Makes the workspaces' deferred records in slices while no request comes in."""

    workspaces: Workspaces
    idle_after: float = IDLE_AFTER_S
    interval: float = INTERVAL_S
    slice: int = SLICE
    made: int = 0  # records made so far, for the curious

    def step(self, now: float) -> int:
        """One slice, if no request has used a workspace for `idle_after` seconds by `now`
        (`time.monotonic()`); how many records it made."""
        if now - self.workspaces.last_used() < self.idle_after:
            return 0
        made = self.workspaces.make_deferred(self.slice)
        self.made += made
        return made

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            while True:
                try:
                    made = self.step(time.monotonic())
                except Exception:
                    # the record that failed, and those after it, stay deferred for the read
                    # that needs them, which reports the failure to its caller
                    log.exception("making deferred records failed; left to the reads")
                    return
                if not made:
                    break
                await asyncio.sleep(0)  # a request read meanwhile goes before the next slice

    def running(self, _app: object) -> AbstractAsyncContextManager[None]:
        """The app's lifespan hook: the task runs while the app serves."""
        return while_serving(self.run, "idle-making")

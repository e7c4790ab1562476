"""A task that runs beside the app for as long as it serves: started by the app's lifespan,
cancelled and awaited when it shuts down (the hosted sweeper, the rule engine's clock, the idle
making of deferred records)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def while_serving(
    run: Callable[[], Coroutine[Any, Any, None]], name: str
) -> AsyncIterator[None]:
    """Run `run()` as a task named `name` until the block ends, then cancel it and wait for it
    to finish (an error it ended with is raised here)."""
    task = asyncio.create_task(run(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""`serve --workers N`: every worker starts serving once all N listen, not one by one.

Each worker builds its own state (the seeded world, its app) and then listens on a socket of its
own on the address (`accept.py`); the kernel spreads new connections over the sockets listening
at that moment. A worker that listened as soon as it was ready took every connection made
before the others were: a client that connects at once and keeps its connections alive (a load
tool, a CI job's pool) stayed on that one worker, and N workers served what one does. So each
worker, once ready, opens its listening socket, says so in a directory the parent made (a file
named by its process id) and waits until N have said so before it serves; the first answer then
comes from a sandbox whose workers all listen. (Saying "ready" before listening left a window:
the first worker past the wait could answer while the last had not yet called `listen`.) A
connection made meanwhile waits in its worker's queue until the worker serves. A worker that is
restarted later finds N already there and serves at once; if a worker never gets ready, the
others serve after `WAIT_S` anyway, and say why in the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("sandbox.workers")

DIR_ENV = "OPSMERGE_SANDBOX_WORKERS_READY_DIR"  # where the workers say they are ready
COUNT_ENV = "OPSMERGE_SANDBOX_WORKERS_READY_COUNT"  # how many workers there are
WAIT_S = 120.0  # longest a ready worker waits for the others before it serves anyway
POLL_S = 0.01


async def all_ready() -> None:
    """Say this worker is ready; return once every worker has (or after WAIT_S). Nothing to wait
    for outside `serve --workers`."""
    where, count = os.environ.get(DIR_ENV), int(os.environ.get(COUNT_ENV) or 0)
    if not where or count < 2:
        return
    folder = Path(where)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + WAIT_S
    while (ready := sum(1 for _ in folder.iterdir())) < count:
        if time.monotonic() > deadline:
            log.warning("serving with %d of %d workers ready after %g s", ready, count, WAIT_S)
            return
        await asyncio.sleep(POLL_S)

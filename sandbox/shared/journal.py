"""The request journal on shared state: one capped Redis list for every worker.

A request adds its entry to a buffer that a background task writes to the list in batches (one
transaction per batch on the request path's connection: the entries pushed, then the list cut
to its newest `size`), so the journal costs the request path nothing it waits for. Reading the
journal first writes this worker's buffer; entries other workers buffered in the last few
milliseconds may not be there yet. The list keeps the newest `size` entries exactly: a reader
never sees a batch pushed and not yet cut.

A list rather than a stream: an entry pushed to a list cost the store a fifth of a stream
entry's work (a stream entry is an ID and a field in a radix tree, and a batch of them needed a
script), and nothing here reads entries by ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec

from opsmerge_sandbox.journal import Entry, Journal
from opsmerge_sandbox.shared.link import UNREACHABLE, Link, unavailable

log = logging.getLogger("sandbox.shared")
_encode = msgspec.json.Encoder().encode
BATCH = 256  # entries per push at most, so one command never holds the store up for long


class SharedJournal(Journal):
    def __init__(self, size: int, link: Link) -> None:
        super().__init__(size)
        self.size = size
        self.link = link
        # not the `journal` key of earlier versions, a stream: a store kept from one of them
        # would refuse list commands on it
        self.list = link.key("requests")
        self._buffer: list[bytes] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, entry: Entry) -> None:
        self._buffer.append(_encode(entry))
        if self._writer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # written by the next read
            self._writer = loop.create_task(self._write(), name="journal-writer")

    def _commands(self, batch: list[bytes]) -> list[tuple[Any, ...]]:
        """A batch's commands, to run as one transaction: the pushes, then the cut."""
        pushes = [("RPUSH", self.list, *batch[i : i + BATCH])
                  for i in range(0, len(batch), BATCH)]
        return [*pushes, ("LTRIM", self.list, -self.size, -1)]

    async def _write(self) -> None:
        wire = self.link.wire
        try:
            while self._buffer:
                batch, self._buffer = self._buffer, []
                # queued together (so sent in one write, nothing between them)
                sent = [wire.call(*command) for command in
                        [("MULTI",), *self._commands(batch), ("EXEC",)]]
                answers = await asyncio.gather(*sent, return_exceptions=True)
                done = answers[-1]
                failed = [a for a in [*answers, *(done if isinstance(done, list) else [])]
                          if isinstance(a, BaseException)]
                if failed:
                    log.warning("journal: %d entries not written (%s)", len(batch), failed[0])
        finally:
            self._writer = None

    def _flush_sync(self) -> None:
        batch, self._buffer = self._buffer, []
        if batch:
            pipe = self.link.sync.pipeline(transaction=True)
            for command in self._commands(batch):
                pipe.execute_command(*command)
            pipe.execute()

    def __len__(self) -> int:
        try:
            self._flush_sync()
            return int(self.link.sync.llen(self.list))
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    def clear(self) -> None:
        try:
            self._buffer.clear()
            self.link.sync.delete(self.list)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    def recent(self, limit: int = 100, workspace: str | None = None) -> list[dict[str, Any]]:
        try:
            self._flush_sync()
            rows = self.link.sync.lrange(self.list, 0, -1)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc
        local = Journal(self.size)
        for raw in rows:
            local.add(Entry(*msgspec.json.decode(raw)))
        return local.recent(limit, workspace)


async def stop(journal: SharedJournal) -> None:
    """At shutdown: what is buffered is written."""
    task = journal._writer
    if task is not None:
        with contextlib.suppress(Exception):
            await task

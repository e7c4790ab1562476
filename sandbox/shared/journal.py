"""The request journal on shared state: one capped Redis stream for every worker.

A request adds its entry to a buffer that a background task writes to the stream in batches
(one write on the request path's connection for many requests), so the journal costs the request
path nothing it waits for. Reading the journal first writes this worker's buffer; entries other
workers buffered in the last few milliseconds may not be there yet. The stream keeps the newest
`size` entries exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
import redis.exceptions

from opsmerge_sandbox.journal import Entry, Journal
from opsmerge_sandbox.shared.link import UNREACHABLE, Link, unavailable

log = logging.getLogger("sandbox.shared")
_encode = msgspec.json.Encoder().encode
_NOT_WRITTEN: tuple[type[Exception], ...] = (*UNREACHABLE, redis.exceptions.ResponseError)


class SharedJournal(Journal):
    def __init__(self, size: int, link: Link) -> None:
        super().__init__(size)
        self.size = size
        self.link = link
        self.stream = link.key("journal")
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

    async def _write(self) -> None:
        wire = self.link.wire
        try:
            while self._buffer:
                batch, self._buffer = self._buffer, []
                for raw in batch[:-1]:  # answered in order: waiting for the last waits for all
                    wire.post("XADD", self.stream, "MAXLEN", self.size, "*", "e", raw)
                dropped = wire.dropped
                try:
                    await wire.call("XADD", self.stream, "MAXLEN", self.size, "*", "e", batch[-1])
                except _NOT_WRITTEN as exc:
                    log.warning("journal: up to %d entries not written (%s)", len(batch), exc)
                else:
                    if wire.dropped != dropped:
                        log.warning("journal: %d entries not written", wire.dropped - dropped)
        finally:
            self._writer = None

    def _flush_sync(self) -> None:
        batch, self._buffer = self._buffer, []
        if batch:
            pipe = self.link.sync.pipeline(transaction=False)
            for raw in batch:
                pipe.xadd(self.stream, {"e": raw}, maxlen=self.size, approximate=False)
            pipe.execute()

    def __len__(self) -> int:
        try:
            self._flush_sync()
            return int(self.link.sync.xlen(self.stream))
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    def clear(self) -> None:
        try:
            self._buffer.clear()
            self.link.sync.delete(self.stream)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc

    def recent(self, limit: int = 100, workspace: str | None = None) -> list[dict[str, Any]]:
        try:
            self._flush_sync()
            rows = self.link.sync.xrange(self.stream)
        except UNREACHABLE as exc:
            raise unavailable(exc) from exc
        local = Journal(self.size)
        for _, fields in rows:
            local.add(Entry(*msgspec.json.decode(fields[b"e"])))
        return local.recent(limit, workspace)


async def stop(journal: SharedJournal) -> None:
    """At shutdown: what is buffered is written."""
    task = journal._writer
    if task is not None:
        with contextlib.suppress(Exception):
            await task

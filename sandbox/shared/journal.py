"""The request journal on shared state: one capped Redis stream for every worker.

A request adds its entry to a buffer that a background task writes to the stream in batches
(one script run on the request path's connection per batch, which adds the entries and then
trims the stream once), so the journal costs the request path nothing it waits for. Reading the
journal first writes this worker's buffer; entries other workers buffered in the last few
milliseconds may not be there yet. The stream keeps the newest `size` entries exactly.
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
# a batch of entries, then the stream cut to its newest ARGV[1] (one command for many requests:
# packing and answering each XADD alone cost the worker more than the rest of the journal)
APPEND = """
for i = 2, #ARGV do redis.call('XADD', KEYS[1], '*', 'e', ARGV[i]) end
redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
return #ARGV - 1
"""
BATCH = 256  # entries per script run at most, so one run never holds the store up for long


class SharedJournal(Journal):
    def __init__(self, size: int, link: Link) -> None:
        super().__init__(size)
        self.size = size
        self.link = link
        self.stream = link.key("journal")
        self._buffer: list[bytes] = []
        self._writer: asyncio.Task[None] | None = None
        self._append = link.script(APPEND)

    def add(self, entry: Entry) -> None:
        self._buffer.append(_encode(entry))
        if self._writer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # written by the next read
            self._writer = loop.create_task(self._write(), name="journal-writer")

    async def _write(self) -> None:
        keys = [self.stream]
        try:
            while self._buffer:
                batch, self._buffer = self._buffer, []
                runs = []  # every run sent at once, then their answers awaited in order
                for i in range(0, len(batch), BATCH):
                    args = [self.size, *batch[i : i + BATCH]]
                    runs.append((self._append.send(keys, args), args))
                for sent, args in runs:
                    try:
                        await self._append.answer(sent, keys, args)
                    except _NOT_WRITTEN as exc:
                        log.warning("journal: %d entries not written (%s)", len(args) - 1, exc)
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

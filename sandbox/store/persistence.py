"""Where the delta lives: a TinyDB snapshot plus an append-only change log, per data directory.

On disk, `delta.json` is a TinyDB document (one set of tables per workspace) that users can open
with TinyDB, and `delta.log` holds the commits made since: one JSON line per commit (a
workspace's changes, or the workspaces a reset dropped). A write appends its line and makes it
durable (data and size, as `fdatasync` does) before it is acknowledged; writes that arrive while
a batch is being written share the next one (group commit). The file work runs on one writer
thread, never on the event loop, in as few calls that block as it can (`ChangeLog.append`); the
thread hands each batch's outcome straight back to the loop, where its writers go on.

At open the snapshot is loaded and the log replayed on top (a torn last line, from a crash in the
middle of an append, is dropped), then the two are folded into a new snapshot (compaction). The
same happens in the background once the log outgrows the snapshot, and at shutdown. Replaying a
line twice changes nothing, so a crash at any step of a compaction loses nothing.

In memory (no data directory) nothing touches a disk and no second copy of the changes is kept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

DELTA_FILE = "delta.json"
LOG_FILE = "delta.log"
FOLDING_LOG_FILE = "delta.log.1"  # the log a compaction is folding into the snapshot
SHARDS = 256
FIELDS = ("collection", "id", "record", "created", "seq")
COMPACT_MIN_BYTES = 16 * 1024  # the log is folded in once it is larger than this and the snapshot
SNAPSHOT_SYNC_BYTES = 1 << 20  # a snapshot being written is flushed each time it grows this much
_TABLE_NAME = re.compile(r"^ws:(.+):([0-9a-f]{2})$")
_DOC_ID = re.compile(r"^[1-9][0-9]*$")  # as TinyDB writes them: str(int)
_encode = msgspec.json.Encoder().encode
# per-write sync (Linux 4.7 and later); None once a file system turned it down
_DSYNC: int | None = getattr(os, "RWF_DSYNC", None)
_decode_doc = msgspec.json.Decoder(dict[str, Any]).decode
log = logging.getLogger(__name__)

Record = dict[str, Any]
# (collection, record id, record or None when deleted, created by a client, sequence number);
# a record queued for the log is already encoded (msgspec.Raw), one read back from it is a dict
Change = tuple[str, str, Record | msgspec.Raw | None, bool, int]
# what one log line holds: ("put", workspace, changes) or ("drop", workspace names, ())
Entry = tuple[str, tuple[str, ...], Sequence[Change]]


class StoreError(Exception):
    """The data directory or its store files cannot be used; raised at open, before serving."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _document_problem(doc: Any) -> str | None:
    """What is wrong with one stored document, or None when it is well formed."""
    if not isinstance(doc, dict):
        return f"it is {_json_type(doc)}, not an object"
    missing = [f for f in FIELDS if f not in doc]
    if missing:
        return "it lacks " + ", ".join(repr(f) for f in missing)
    for field in ("collection", "id"):
        if not isinstance(doc[field], str) or not doc[field]:
            return f"{field!r} is {_json_type(doc[field])}, not a non-empty string"
    record = doc["record"]
    if record is not None and not isinstance(record, dict):
        return f"'record' is {_json_type(record)}, not an object or null"
    if record is not None and record.get("id") != doc["id"]:
        return f"the record's id {record.get('id')!r} is not the document's id {doc['id']!r}"
    if not isinstance(doc["created"], bool):
        return f"'created' is {_json_type(doc['created'])}, not a boolean"
    seq = doc["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        number = isinstance(seq, int | float) and not isinstance(seq, bool)
        what = repr(seq) if number else _json_type(seq)
        return f"'seq' is {what}, not a positive integer"
    return None


def validate_document(data: Any) -> str | None:
    """What is wrong with a whole store document, or None when every table and document is sound.

    Checked once at open, so a damaged file stops the start with one clear line instead of
    failing every request that touches a bad record.
    """
    if not isinstance(data, dict):
        return f"the store file holds {_json_type(data)}, not an object of tables"
    seen: dict[str, set[tuple[str, str]]] = {}
    for name, table in data.items():
        named = _TABLE_NAME.match(name)
        if named is None:
            return f"table {name!r} is not named ws:<workspace>:<shard as 2 hex digits>"
        if not isinstance(table, dict):
            return f"table {name!r} is {_json_type(table)}, not an object of documents"
        keys = seen.setdefault(named.group(1), set())
        for doc_id, doc in table.items():
            if not _DOC_ID.match(doc_id):
                return f"table {name!r} has document id {doc_id!r}, not a positive integer"
            if int(doc_id) % SHARDS != int(named.group(2), 16):
                return f"table {name!r} holds document {doc_id}, which belongs to another shard"
            problem = _document_problem(doc)
            if problem:
                return f"document {doc_id} of table {name!r}: {problem}"
            key = (doc["collection"], doc["id"])
            if key in keys:
                return f"{key[0]} record {key[1]!r} is stored twice in one workspace"
            keys.add(key)
    return None


def _open_directory(data_dir: Path) -> Path:
    """The store file's path, once the directory is known to exist and to take writes."""
    path = data_dir / DELTA_FILE
    try:
        if data_dir.exists() and not data_dir.is_dir():
            raise StoreError(f"{data_dir}: the data directory is not a directory")
        data_dir.mkdir(parents=True, exist_ok=True)
        if path.exists() and not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise StoreError(f"{path}: the store file is {kind}")
    except OSError as exc:
        raise StoreError(f"{data_dir}: cannot use the data directory ({exc.strerror})") from exc
    # permission bits do not stop root, so only a real write tells whether writes will work
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=data_dir)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise StoreError(
            f"{data_dir}: the data directory does not take writes ({exc.strerror})"
        ) from exc
    return path




def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one parsed log line, or None when it is a well-formed commit."""
    if not isinstance(entry, dict):
        return f"it is {_json_type(entry)}, not an object"
    if "drop" in entry:
        names = entry["drop"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            return "'drop' is not an array of workspace names"
        return None
    ws, changes = entry.get("ws"), entry.get("changes")
    if not isinstance(ws, str) or not ws:
        return "'ws' is not a workspace name"
    if not isinstance(changes, list):
        return "'changes' is not an array"
    for change in changes:
        if not isinstance(change, list) or len(change) != len(FIELDS):
            return f"a change is not an array of {len(FIELDS)} fields ({', '.join(FIELDS)})"
        problem = _document_problem(dict(zip(FIELDS, change, strict=True)))
        if problem:
            return f"a change of {change[1]!r}: {problem}"
    return None


def _parse_entry(entry: dict[str, Any]) -> Entry:
    if "drop" in entry:
        return ("drop", tuple(entry["drop"]), ())
    changes = [(c[0], c[1], c[2], c[3], c[4]) for c in entry["changes"]]
    return ("put", (entry["ws"],), changes)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_log(path: Path) -> list[Entry]:
    """The commits one log file holds, in order; a torn last line is cut off the file.

    A crash in the middle of an append leaves at most the last line incomplete, and that commit
    was never acknowledged. Damage anywhere else is not a crash's doing: StoreError, one line.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the change log ({exc.strerror})") from exc
    entries: list[Entry] = []
    lines = data.split(b"\n")
    complete = lines[:-1]  # the text after the last newline is a torn line (or nothing)
    for number, line in enumerate(complete, 1):
        try:
            entry = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path}: line {number} is not a JSON commit ({exc})") from exc
        problem = _entry_problem(entry)
        if problem:
            raise StoreError(f"{path}: line {number}: {problem}")
        entries.append(_parse_entry(entry))
    if lines[-1]:
        kept = len(data) - len(lines[-1])
        log.warning("%s: dropping a torn last line (%d bytes)", path, len(lines[-1]))
        try:
            with open(path, "r+b") as fh:
                fh.truncate(kept)
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StoreError(f"{path}: cannot cut a torn last line ({exc.strerror})") from exc
    return entries


def _write_durably(fd: int, data: bytes, offset: int) -> None:
    """Write `data` at `offset` and make it durable before returning.

    One system call where the kernel has per-write sync (`pwritev2` with `RWF_DSYNC`: the data
    and the size that makes it readable, as `fdatasync` gives): every call that blocks hands the
    interpreter's lock back, and on a busy event loop the writer thread waits up to a switch
    interval to take it again, so a batch's write and fsync as two calls kept its writers
    waiting a step longer (see benchmarks/README.md, "The write path").
    """
    global _DSYNC
    view = memoryview(data)
    if _DSYNC is not None:
        try:
            while view:
                written = os.pwritev(fd, [view], offset, _DSYNC)
                view, offset = view[written:], offset + written
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL) or len(view) != len(data):
                raise
            _DSYNC = None  # not asked again on every append
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
    os.fsync(fd)


class ChangeLog:
    """The log file; every method runs on the store's writer thread."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOG_FILE
        self.folding = data_dir / FOLDING_LOG_FILE
        self._fd: int | None = None
        self._inode = 0
        # where the next append writes, which the file is cut back to first when a failed
        # append left bytes past it; -1 until the file is opened (what it holds then is whole)
        self._intact = -1
        self._uncut = False

    def append(self, data: bytes) -> None:
        """Write `data` durably at the end; on any error the file is as it was before.

        Two calls that block on the way when all is well (the check that the file is still
        ours, and the durable write), so the writer thread takes the interpreter's lock back
        from the event loop twice a batch.
        """
        created = False
        if self._fd is not None and not self._still_there():
            self.close()  # replaced or removed under us (by another store on the directory)
            self.forget_position()
        if self._fd is None:
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            stat = os.fstat(self._fd)
            self._inode = stat.st_ino
            if self._intact < 0 or stat.st_size < self._intact:
                self._intact = stat.st_size
            self._uncut = stat.st_size != self._intact
        fd = self._fd
        if self._uncut:  # an earlier failed append left bytes behind: cut them first
            os.ftruncate(fd, self._intact)
            os.fsync(fd)
            self._uncut = False
        start = self._intact
        try:
            _write_durably(fd, data, start)
            if created:  # the new file's directory entry must be durable too
                _fsync_dir(self.path.parent)
        except OSError:
            self._undo(start, created)
            raise
        self._intact = start + len(data)

    @property
    def size(self) -> int:
        """How much the log holds, as far as its appends know (0 until the first one)."""
        return max(self._intact, 0)

    def _still_there(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self._inode
        except FileNotFoundError:
            return False

    def _undo(self, start: int, created: bool) -> None:
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            if fd is not None:
                os.close(fd)
            if created:
                self.path.unlink(missing_ok=True)
                _fsync_dir(self.path.parent)
            else:
                with open(self.path, "r+b") as fh:
                    fh.truncate(start)
                    os.fsync(fh.fileno())
        if not created:  # a cut that failed is retried before the next append
            self._intact = start

    def rotate(self) -> None:
        """Move the log aside for a compaction; the next append starts a new log.

        When an earlier compaction left a folding log behind, this log is appended to it, so the
        folding log always holds every commit the snapshot may lack, in order.
        """
        self.close()
        if not self.path.exists():
            return
        if self.folding.exists():
            with open(self.folding, "ab") as out:
                out.write(self.path.read_bytes())
                out.flush()
                os.fsync(out.fileno())
            self.path.unlink()
        else:
            os.replace(self.path, self.folding)
        _fsync_dir(self.path.parent)
        self.forget_position()

    def forget_position(self) -> None:
        """The log file was moved aside or removed: the next append starts from what the file
        then holds (nothing, unless another store on the directory wrote one)."""
        self._intact, self._uncut = -1, False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_snapshot(path: Path, tables: dict[str, dict[str, bytes]]) -> int:
    """Replace the snapshot with `tables` (each document already encoded) atomically; returns
    its size.

    Flushed to the disk a megabyte at a time as it is written: an append's flush on the
    same file system waits for the file system's other dirty data (ext4 orders data before
    the journal commit that makes the append durable), so one flush of a whole snapshot at the
    end (27-44 MB under a burst of creates) held appends for up to 170 ms.

    The documents come encoded (`DeltaStore._tables`): encoding the whole document here, on
    the compaction's thread, held the interpreter's lock against the event loop for as long as
    a snapshot took to write (0.4-0.9 s at 13-48 MB), and halved the rate of durable creates
    meanwhile. Joining encoded documents is a small part of that work, one table at a time.
    """
    fd, tmp = tempfile.mkstemp(prefix=".delta-", dir=path.parent)
    size = synced = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            sep = b"{"
            for name, table in tables.items():
                docs = b",".join([b'"' + doc_id.encode() + b'":' + raw
                                  for doc_id, raw in table.items()])
                chunk = sep + _encode(name) + b":{" + docs + b"}"
                fh.write(chunk)
                size += len(chunk)
                sep = b","
                if size - synced >= SNAPSHOT_SYNC_BYTES:
                    fh.flush()
                    os.fdatasync(fh.fileno())
                    synced = size
            fh.write(b"}" if tables else b"{}")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return size + 1


def _failed(future: asyncio.Future[None]) -> None:
    """Mark a batch's error as seen: a reset nobody awaits must not log a stray warning."""
    if not future.cancelled():
        future.exception()


class DeltaStore:
    """The changes clients made, per workspace: (collection, id) -> record, or None when deleted.

    The durable TinyDB document is what the snapshot and the log hold together, kept as its
    tables with each document encoded as the snapshot writes it (`document` decodes it whole):
    encoded once, when it is applied, so a compaction only joins bytes (see `write_snapshot`).
    It changes only once a batch is on disk, on the event loop. Each (collection, id) keeps one
    TinyDB document id, so a change is an upsert by document id. In memory there is no
    document: the workspaces' views are all there is, so a write costs nothing here.
    """

    def __init__(self, data_dir: Path | None) -> None:
        self._tables: dict[str, dict[str, bytes]] = {}  # table -> document id -> document
        # workspace -> collection -> record id -> its document id. Nested by strings rather
        # than keyed by (collection, id) tuples: a dict of strings and numbers is never tracked
        # by the cyclic collector, while one with tuple keys was untracked by each full pass and
        # tracked again by its next insert, so every pass walked every record ever written
        # (~8 ms a pass at 40,000 records, under a burst of durable creates)
        self._doc_ids: dict[str, dict[str, dict[str, int]]] = {}
        self._next_ids: dict[str, int] = {}
        self._queue: list[tuple[bytes, Entry]] = []
        self._queued: asyncio.Future[None] | None = None  # the future of the queued batch
        self._writing = False  # a batch is with the writer thread (or about to be)
        self._drained: asyncio.Future[None] | None = None  # what `settle` waits on meanwhile
        self._compaction: asyncio.Task[None] | None = None
        # workspaces whose drop is queued or being written -> that batch's future
        self._dropping: dict[str, asyncio.Future[None]] = {}
        # after a failed batch: (workspaces changed, workspaces dropped) -> memory as stored
        self.on_failure: Callable[[set[str], set[str]], None] | None = None
        self.durable = data_dir is not None
        # whether each commit's records are written somewhere (a record a workspace defers is
        # then made at commit); in memory the views are all there is
        self.keeps_records = self.durable
        # in memory the workspaces' views are the only copy that is ever read: only the names
        # of workspaces with changes are kept (to find changes no workspace holds any more)
        self._changed: set[str] = set()
        if data_dir is None:
            return
        self.path = _open_directory(Path(data_dir))
        self._load_snapshot()
        self.log = ChangeLog(self.path.parent)
        for entry in [*read_log(self.log.folding), *read_log(self.log.path)]:
            self._apply(entry)
        self._snapshot_size = 0
        self._fold()
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._compactor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-fold")

    # ------------------------------------------------------------------ open
    def _load_snapshot(self) -> None:
        path = self.path
        try:
            text = path.read_text() if path.exists() else ""
            data = json.loads(text) if text.strip() else None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the store file ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise StoreError(f"{path}: the store file is not UTF-8 text") from exc
        except json.JSONDecodeError as exc:
            raise StoreError(
                f"{path}: the store file is not valid JSON ({exc.msg} at line {exc.lineno}, "
                f"column {exc.colno})"
            ) from exc
        problem = None if data is None else validate_document(data)
        if problem:
            raise StoreError(f"{path}: {problem}")
        tables: dict[str, dict[str, Any]] = data or {}
        self._tables = {name: {doc_id: _encode(doc) for doc_id, doc in table.items()}
                        for name, table in tables.items()}
        for name, table in tables.items():
            ws = name[3:].rsplit(":", 1)[0]
            ids = self._doc_ids.setdefault(ws, {})
            for doc_id, doc in table.items():
                ids.setdefault(doc["collection"], {})[doc["id"]] = int(doc_id)
        for ws, ids in self._doc_ids.items():
            # after the highest id in use, so a file with gaps in its ids never gets a clash
            self._next_ids[ws] = max((max(c.values()) for c in ids.values() if c), default=0) + 1

    def _fold(self) -> None:
        """Compaction at open: the snapshot takes in both logs, which are then removed.

        A fresh directory gets an empty snapshot, so there is always a store file to open.
        """
        logs = self.log.path.exists() or self.log.folding.exists()
        if not logs and self.path.exists() and self.path.stat().st_size:
            self._snapshot_size = self.path.stat().st_size if self.path.exists() else 0
            return
        try:
            self._snapshot_size = write_snapshot(self.path, self._tables)
            for path in (self.log.folding, self.log.path):
                path.unlink(missing_ok=True)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot compact the store ({exc.strerror})") from exc
        self.log.forget_position()

    # ------------------------------------------------------------------ the durable document
    @property
    def document(self) -> dict[str, dict[str, Any]]:
        """The durable TinyDB document, decoded (a copy: to read it whole)."""
        return {name: {doc_id: _decode_doc(raw) for doc_id, raw in table.items()}
                for name, table in self._tables.items()}

    @staticmethod
    def _table_name(workspace: str, doc_id: int) -> str:
        return f"ws:{workspace}:{doc_id % SHARDS:02x}"

    def _apply(self, entry: Entry) -> None:
        kind, names, changes = entry
        if kind == "drop":
            self._forget(names)
            return
        workspace = names[0]
        ids = self._doc_ids.setdefault(workspace, {})
        next_id = self._next_ids.get(workspace, 1)
        tables = self._tables
        for collection, record_id, record, created, seq in changes:
            of_collection = ids.get(collection)
            if of_collection is None:
                of_collection = ids[collection] = {}
            doc_id = of_collection.get(record_id)
            if doc_id is None:
                doc_id = of_collection[record_id] = next_id
                next_id += 1
            name = self._table_name(workspace, doc_id)
            table = tables.get(name)
            if table is None:
                table = tables[name] = {}
            table[str(doc_id)] = _encode({
                "collection": collection,
                "id": record_id,
                "record": record,
                "created": created,
                "seq": seq,
            })
        self._next_ids[workspace] = next_id

    def _forget(self, workspaces: Iterable[str]) -> None:
        prefixes = tuple(f"ws:{name}:" for name in workspaces)
        for name in [t for t in self._tables if t.startswith(prefixes)]:
            del self._tables[name]
        for name in workspaces:
            self._doc_ids.pop(name, None)
            self._next_ids.pop(name, None)

    def workspaces(self) -> list[str]:
        if not self.durable:
            return sorted(self._changed)
        return sorted({t[3:].rsplit(":", 1)[0] for t in self._tables if t.startswith("ws:")})

    def pending(self, workspace: str) -> asyncio.Future[None] | None:
        """The batch of a drop of this workspace not yet durable, if any."""
        return self._dropping.get(workspace)

    def load(self, workspace: str) -> list[dict[str, Any]]:
        """The durable changes of one workspace (none once its drop is queued)."""
        if workspace in self._dropping or not self.durable:
            return []
        prefix = f"ws:{workspace}:"
        tables = [t for name, t in self._tables.items() if name.startswith(prefix)]
        return [_decode_doc(raw) for t in tables for raw in t.values()]

    # ------------------------------------------------------------------ writes
    def commit(self, workspace: str, changes: Sequence[Change]) -> asyncio.Future[None] | None:
        """Queue one commit; the future (None in memory) completes once the log holds it.

        The future fails with the OSError of its batch's write; by then `on_failure` has put
        the memory of every workspace in that batch, and of every commit queued after it, back
        to the durable document.
        """
        if not self.durable:
            self._changed.add(workspace)
            return None
        # each record encoded once, for the log line now and for its document once written
        encoded: list[Change] = [
            (collection, rid, None if record is None else msgspec.Raw(_encode(record)),
             created, seq)
            for collection, rid, record, created, seq in changes
        ]
        entry: Entry = ("put", (workspace,), encoded)
        line = _encode({"ws": workspace, "changes": encoded}) + b"\n"
        return self._enqueue(line, entry)

    def put(
        self,
        workspace: str,
        collection: str,
        record_id: str,
        record: dict[str, Any] | None,
        created: bool,
        seq: int,
    ) -> asyncio.Future[None] | None:
        return self.commit(workspace, [(collection, record_id, record, created, seq)])

    def drop(self, *workspaces: str) -> asyncio.Future[None] | None:
        """Forget the changes of these workspaces with one log line (all or nothing)."""
        if not self.durable:
            self._changed.difference_update(workspaces)
            return None
        entry: Entry = ("drop", tuple(workspaces), ())
        future = self._enqueue(_encode({"drop": list(workspaces)}) + b"\n", entry)
        for name in workspaces:
            self._dropping[name] = future
        return future

    def _enqueue(self, line: bytes, entry: Entry) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future = self._queued
        if future is None:
            future = self._queued = loop.create_future()
            future.add_done_callback(_failed)
        self._queue.append((line, entry))
        if not self._writing:
            self._writing = True
            # after the rest of this loop step, so the step's other commits share the fsync
            loop.call_soon(self._write_queued, loop)
        return future

    def _write_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the queued commits to the writer thread as one batch (one fsync). The thread
        hands the outcome straight back to the loop (`_written`): no task in between, so the
        batch's writers go on in the loop step that learns it is on disk."""
        batch, future = self._queue, self._queued
        self._queue, self._queued = [], None
        assert future is not None
        data = b"".join(line for line, _ in batch)

        def back(done: concurrent.futures.Future[None]) -> None:  # on the writer thread
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._written, loop, batch, future, done)

        self._writer.submit(self.log.append, data).add_done_callback(back)

    def _written(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[bytes, Entry]],
        future: asyncio.Future[None],
        done: concurrent.futures.Future[None],
    ) -> None:
        exc = done.exception()
        if exc is not None:
            if not isinstance(exc, OSError):  # not the disk's doing: still nothing was saved
                log.error("writing %d commit(s) failed", len(batch), exc_info=exc)
                exc = OSError(errno.EIO, f"{type(exc).__name__}: {exc}")
            self._fail(batch, future, exc)
        else:
            for _, entry in batch:
                self._apply(entry)
            self._settle_drops(future)
            future.set_result(None)
            if self._compaction is None and self.log.size > max(
                COMPACT_MIN_BYTES, self._snapshot_size
            ):
                self._start_compaction(loop)
        if self._queue:
            self._write_queued(loop)
            return
        self._writing = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _fail(
        self, batch: list[tuple[bytes, Entry]], future: asyncio.Future[None], exc: OSError
    ) -> None:
        """A batch was not saved: it and everything queued after it fail, memory goes back."""
        later, self._queued = self._queued, None
        failed, self._queue = batch + self._queue, []
        log.error("%d commit(s) not saved: %s", len(failed), exc)
        changed = {names[0] for _, (kind, names, _) in failed if kind == "put"}
        dropped = {name for _, (kind, names, _) in failed if kind == "drop" for name in names}
        self._settle_drops(future, later)
        if self.on_failure is not None:
            self.on_failure(changed, dropped)
        for f in (future, later):
            if f is not None:
                f.set_exception(exc)

    def _settle_drops(self, *futures: asyncio.Future[None] | None) -> None:
        """Forget the queued drops of these batches (written, or failed)."""
        done = [n for n, f in self._dropping.items() if f in futures]
        for name in done:
            del self._dropping[name]

    # ------------------------------------------------------------------ compaction
    def _start_compaction(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fold the log into a new snapshot in the background; writes go on meanwhile.

        Called between batches, when the durable document is exactly snapshot + log: the log is
        moved aside (queued on the writer thread before any later append) and the document as
        it is now is written on the compaction thread.
        """
        frozen = {name: dict(table) for name, table in self._tables.items()}
        rotated = loop.run_in_executor(self._writer, self.log.rotate)
        self._compaction = loop.create_task(self._compact(frozen, rotated), name="store-fold")

    async def _compact(
        self, frozen: dict[str, dict[str, bytes]], rotated: asyncio.Future[None]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            await rotated
            self._snapshot_size = await loop.run_in_executor(
                self._compactor, self._replace_snapshot, frozen
            )
        except OSError as exc:
            log.error("compaction of %s failed (the log keeps every change): %s", self.path, exc)
        finally:
            self._compaction = None

    def _replace_snapshot(self, frozen: dict[str, dict[str, bytes]]) -> int:
        size = write_snapshot(self.path, frozen)
        self.log.folding.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)
        return size

    async def settle(self) -> None:
        """Wait until every queued commit and any compaction under way have finished."""
        while self._writing or self._compaction is not None:
            if self._writing:
                if self._drained is None:
                    self._drained = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._drained)
            elif self._compaction is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._compaction)

    async def compact(self) -> None:
        """Write what is queued, then fold the whole log into the snapshot, on the writer thread.

        Appends wait meanwhile; the background compaction is the one that lets them go on.
        """
        if not self.durable:
            return
        await self.settle()
        loop = asyncio.get_running_loop()
        frozen = {name: dict(table) for name, table in self._tables.items()}
        await loop.run_in_executor(self._writer, self._fold_all, frozen)

    def _fold_all(self, frozen: dict[str, dict[str, bytes]]) -> None:
        self.log.rotate()
        if self.log.folding.exists():
            self._snapshot_size = self._replace_snapshot(frozen)

    async def close(self) -> None:
        """At shutdown: write what is queued, fold the log into the snapshot, stop the threads."""
        if not self.durable:
            return
        try:
            await self.compact()
        except OSError as exc:
            log.error("compaction of %s at shutdown failed (the log keeps every change): %s",
                      self.path, exc)
        self._writer.shutdown(wait=True)
        self._compactor.shutdown(wait=True)

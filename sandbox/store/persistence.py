"""Where the delta lives: TinyDB tables, one set per workspace, written atomically.

TinyDB's JSON storage re-reads the file on every query and writes it in place, so a crash can
leave half a file. This storage keeps the parsed document in memory (reads are free) and writes
each change to a temporary file that replaces the old one, so the file on disk is always a whole
document holding every acknowledged write. The event loop is the only writer.

TinyDB's tables change the storage's cached document in place before they call `write()`, so a
failed write would still leave its change in memory, to be saved by the next write. Changes are
therefore written here as a new document (copy-on-write, one storage write per commit, however
many tables it touches), and the cached document is replaced only once that write succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import MemoryStorage, Storage

DELTA_FILE = "delta.json"
SHARDS = 256
FIELDS = ("collection", "id", "record", "created", "seq")
_TABLE_NAME = re.compile(r"^ws:(.+):([0-9a-f]{2})$")
_DOC_ID = re.compile(r"^[1-9][0-9]*$")  # as TinyDB writes them: str(int)

Record = dict[str, Any]
# (collection, record id, record or None when deleted, created by a client, sequence number)
Change = tuple[str, str, Record | None, bool, int]


class StoreError(Exception):
    """The data directory or its store file cannot be used; raised at open, before serving."""


class AtomicJSONStorage(Storage):
    def __init__(self, path: str | Path, **_: Any) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, Any] | None = None

    def read(self) -> dict[str, Any] | None:
        if self._data is None and self.path.exists():
            text = self.path.read_text()
            self._data = json.loads(text) if text.strip() else None
        return self._data

    def write(self, data: dict[str, Any]) -> None:
        """Replace the file with `data`; an OSError leaves file and cached document unchanged."""
        try:
            self._replace(data)
        except _AfterReplace as failed:
            # the new file is in place but may not survive a crash: put the old document back, so
            # the change this write failed to make cannot reappear at the next start
            with contextlib.suppress(OSError, _AfterReplace):
                self._replace(self._data or {})
            raise failed.error from None
        self._data = data

    def _replace(self, data: dict[str, Any]) -> None:
        encoded = json.dumps(data, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=".delta-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(encoded)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        try:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise _AfterReplace(exc) from exc

    def close(self) -> None:
        pass


class _AfterReplace(Exception):
    """The new file replaced the old one, but making that rename durable failed."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


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


class DeltaStore:
    """The changes clients made, per workspace: (collection, id) -> record, or None when deleted.

    Each (collection, id) keeps one TinyDB document id, so a write is an upsert by document id
    rather than a query over every stored change.
    """

    def __init__(self, data_dir: Path | None) -> None:
        if data_dir is None:
            self.db = TinyDB(storage=MemoryStorage)
        else:
            path = _open_directory(Path(data_dir))
            self.db = TinyDB(path, storage=AtomicJSONStorage)
            try:
                data = self.db.storage.read()
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
        # a memory store cannot fail between building a document and storing it, so it may
        # change its document in place; every other storage gets a new document per commit
        self._in_place = isinstance(self.db.storage, MemoryStorage)
        self._doc_ids: dict[str, dict[tuple[str, str], int]] = {}
        self._next_ids: dict[str, int] = {}

    @property
    def durable(self) -> bool:
        return isinstance(self.db.storage, AtomicJSONStorage)

    @staticmethod
    def _table_name(workspace: str, doc_id: int) -> str:
        # a commit copies every table it touches, so changes are spread over small tables
        return f"ws:{workspace}:{doc_id % SHARDS:02x}"

    def _tables(self, workspace: str) -> list[str]:
        prefix = f"ws:{workspace}:"
        return [t for t in self.db.tables() if t.startswith(prefix)]

    def workspaces(self) -> list[str]:
        return sorted({t[3:].rsplit(":", 1)[0] for t in self.db.tables() if t.startswith("ws:")})

    def _ids(self, workspace: str) -> dict[tuple[str, str], int]:
        ids = self._doc_ids.get(workspace)
        if ids is None:
            ids = self._doc_ids[workspace] = {}
            for name in self._tables(workspace):
                for d in self.db.table(name, cache_size=0).all():
                    ids[(d["collection"], d["id"])] = d.doc_id
            # after the highest id in use, so a file with gaps in its ids never gets a clash
            self._next_ids[workspace] = max(ids.values(), default=0) + 1
        return ids

    def load(self, workspace: str) -> list[dict[str, Any]]:
        return [
            d for name in self._tables(workspace) for d in self.db.table(name, cache_size=0).all()
        ]

    def commit(self, workspace: str, changes: Sequence[Change]) -> None:
        """Store every change with one storage write: all of them are durable, or none is.

        Raises the storage's OSError when the write fails; the cached document, the document
        ids and the file are then exactly as before, so a later commit cannot carry the change.
        """
        ids = self._ids(workspace)
        next_id = self._next_ids[workspace]
        new_ids: dict[tuple[str, str], int] = {}
        current = self.db.storage.read() or {}
        tables: dict[str, dict[str, Any]] = {}
        for collection, record_id, record, created, seq in changes:
            key = (collection, record_id)
            doc_id = new_ids.get(key) or ids.get(key)
            if doc_id is None:
                doc_id = new_ids[key] = next_id
                next_id += 1
            name = self._table_name(workspace, doc_id)
            table = tables.get(name)
            if table is None:
                old = current.get(name)
                table = tables[name] = (
                    old if self._in_place and old is not None else dict(old or {})
                )
            table[str(doc_id)] = {
                "collection": collection,
                "id": record_id,
                "record": record,
                "created": created,
                "seq": seq,
            }
        document = current if self._in_place else dict(current)
        document.update(tables)
        self.db.storage.write(document)
        ids.update(new_ids)
        self._next_ids[workspace] = next_id

    def put(
        self,
        workspace: str,
        collection: str,
        record_id: str,
        record: dict[str, Any] | None,
        created: bool,
        seq: int,
    ) -> None:
        self.commit(workspace, [(collection, record_id, record, created, seq)])

    def drop(self, *workspaces: str) -> None:
        """Forget the changes of these workspaces, with one storage write (all or nothing)."""
        prefixes = tuple(f"ws:{name}:" for name in workspaces)
        current = self.db.storage.read() or {}
        if not any(name.startswith(prefixes) for name in current):
            self._forget(workspaces)
            return
        kept = {name: t for name, t in current.items() if not name.startswith(prefixes)}
        self.db.storage.write(kept)
        self._forget(workspaces)

    def _forget(self, workspaces: Iterable[str]) -> None:
        for name in workspaces:
            self._doc_ids.pop(name, None)
            self._next_ids.pop(name, None)

"""Where the delta lives: TinyDB tables, one per workspace, written atomically.

TinyDB's JSON storage re-reads the file on every query and writes it in place, so a crash can
leave half a file. This storage keeps the parsed document in memory (reads are free) and writes
each change to a temporary file that replaces the old one, so the file on disk is always a whole
document holding every acknowledged write. The event loop is the only writer.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import MemoryStorage, Storage
from tinydb.table import Document

DELTA_FILE = "delta.json"
SHARDS = 256


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
        encoded = json.dumps(data, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=".delta-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(encoded)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._data = data

    def close(self) -> None:
        pass


class DeltaStore:
    """The changes clients made, per workspace: (collection, id) -> record, or None when deleted.

    Each (collection, id) keeps one TinyDB document id, so a write is an upsert by document id
    rather than a query over every stored change.
    """

    def __init__(self, data_dir: Path | None) -> None:
        if data_dir is None:
            self.db = TinyDB(storage=MemoryStorage)
        else:
            self.db = TinyDB(Path(data_dir) / DELTA_FILE, storage=AtomicJSONStorage)
        self._doc_ids: dict[str, dict[tuple[str, str], int]] = {}

    @property
    def durable(self) -> bool:
        return isinstance(self.db.storage, AtomicJSONStorage)

    def _table(self, workspace: str, shard: int) -> Any:
        return self.db.table(f"ws:{workspace}:{shard:02x}", cache_size=0)

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
        return ids

    def load(self, workspace: str) -> list[dict[str, Any]]:
        return [
            d for name in self._tables(workspace) for d in self.db.table(name, cache_size=0).all()
        ]

    def put(
        self,
        workspace: str,
        collection: str,
        record_id: str,
        record: dict[str, Any] | None,
        created: bool,
        seq: int,
    ) -> None:
        ids = self._ids(workspace)
        doc_id = ids.get((collection, record_id))
        new = doc_id is None
        if doc_id is None:
            doc_id = ids[(collection, record_id)] = len(ids) + 1
        doc = {
            "collection": collection,
            "id": record_id,
            "record": record,
            "created": created,
            "seq": seq,
        }
        # TinyDB rewrites a whole table on every write, so changes are spread over small tables
        table = self._table(workspace, doc_id % SHARDS)
        if new:
            table.insert(Document(doc, doc_id=doc_id))
        else:
            table.update(doc, doc_ids=[doc_id])

    def drop(self, workspace: str) -> None:
        for name in self._tables(workspace):
            self.db.drop_table(name)
        self._doc_ids.pop(workspace, None)

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

from tinydb import Query, TinyDB
from tinydb.storages import MemoryStorage, Storage

DELTA_FILE = "delta.json"


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
    """The changes clients made, per workspace: (collection, id) -> record, or None when deleted."""

    def __init__(self, data_dir: Path | None) -> None:
        if data_dir is None:
            self.db = TinyDB(storage=MemoryStorage)
        else:
            self.db = TinyDB(Path(data_dir) / DELTA_FILE, storage=AtomicJSONStorage)
        self._q = Query()

    @property
    def durable(self) -> bool:
        return isinstance(self.db.storage, AtomicJSONStorage)

    def _table(self, workspace: str) -> Any:
        return self.db.table(f"ws:{workspace}", cache_size=0)

    def workspaces(self) -> list[str]:
        return [t[3:] for t in self.db.tables() if t.startswith("ws:")]

    def load(self, workspace: str) -> list[dict[str, Any]]:
        return list(self._table(workspace).all())

    def put(
        self,
        workspace: str,
        collection: str,
        record_id: str,
        record: dict[str, Any] | None,
        created: bool,
        seq: int,
    ) -> None:
        doc = {
            "collection": collection,
            "id": record_id,
            "record": record,
            "created": created,
            "seq": seq,
        }
        q = self._q
        self._table(workspace).upsert(doc, (q.collection == collection) & (q.id == record_id))

    def drop(self, workspace: str) -> None:
        self.db.drop_table(f"ws:{workspace}")

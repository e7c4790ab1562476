"""The request journal: recent exchanges, so a test can assert what its client really did.

A bounded deque: memory stays flat however many requests pass. Keys appear only as their name
and prefix, never in full.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.clock import format_iso


@dataclass(frozen=True, slots=True)
class Entry:
    at: float  # sandbox-clock seconds; formatted when the journal is read
    method: str
    path: str
    query: str
    operation_id: str | None
    status: int
    key_name: str | None
    key_prefix: str | None
    workspace: str
    fault: str | None
    duration_ms: float


class Journal:
    def __init__(self, size: int) -> None:
        self._entries: deque[Entry] = deque(maxlen=size)

    def add(self, entry: Entry) -> None:
        self._entries.append(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def recent(self, limit: int = 100, workspace: str | None = None) -> list[dict[str, Any]]:
        items = [e for e in self._entries if workspace is None or e.workspace == workspace]
        return [
            {**asdict(e), "at": format_iso(e.at), "duration_ms": round(e.duration_ms, 3)}
            for e in items[-limit:]
        ]

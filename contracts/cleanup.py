"""What a run created, deleted in reverse order when the test that created it ends.

Reverse order matters: a comment is created after its ticket and must go first. A record whose
collection has no delete operation, or whose delete fails, is a leftover: reported, never hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

# delete(path) -> the HTTP status of the DELETE
Deleter = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class Created:
    collection: str
    id: str
    delete_path: str | None  # API path, or None when the collection has no delete operation
    by: str  # the test (or scenario) that created it


@dataclass(frozen=True, slots=True)
class Leftover:
    collection: str
    id: str
    by: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Cleanup:
    def __init__(self, delete: Deleter) -> None:
        self._delete = delete
        self._stack: list[Created] = []

    def __len__(self) -> int:
        return len(self._stack)

    def track(self, collection: str, record_id: str, delete_path: str | None, by: str) -> None:
        if any(c.collection == collection and c.id == record_id for c in self._stack):
            return
        self._stack.append(Created(collection, record_id, delete_path, by))

    def forget(self, collection: str, record_id: str) -> None:
        """The test deleted it itself."""
        self._stack = [
            c for c in self._stack if not (c.collection == collection and c.id == record_id)
        ]

    def run(self) -> list[Leftover]:
        """Delete everything tracked, newest first; what could not be deleted is returned."""
        leftovers: list[Leftover] = []
        while self._stack:
            item = self._stack.pop()
            if item.delete_path is None:
                leftovers.append(
                    Leftover(
                        item.collection,
                        item.id,
                        item.by,
                        "the API has no delete operation for this collection",
                    )
                )
                continue
            try:
                status = self._delete(item.delete_path)
            except Exception as exc:  # a failed cleanup must not stop the others
                leftovers.append(
                    Leftover(item.collection, item.id, item.by, f"delete raised {exc!r}")
                )
                continue
            if not (200 <= status < 300 or status == 404):
                leftovers.append(
                    Leftover(
                        item.collection,
                        item.id,
                        item.by,
                        f"DELETE {item.delete_path} answered {status}",
                    )
                )
        return leftovers

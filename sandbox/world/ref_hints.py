"""What an object schema says about the records its fields name: one reading of `x-ref` (on a
field or its array's items) and `x-ref-by`, for the checker's reference rules and the
generator's bounds alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RefHint", "ref_hints"]


@dataclass(frozen=True, slots=True)
class RefHint:
    """A field naming records: of one collection (`x-ref`, on it or on its array's items) or of
    the collection another field's value picks (`x-ref-by`). `history`: it records what an
    action was aimed at, so what it names may be gone, or closed, since."""

    name: str
    fixed: str | None
    by_field: str | None = None
    by_map: Mapping[str, str] = field(default_factory=dict)
    history: bool = False

    def target(self, record: Mapping[str, Any]) -> str | None:
        """The collection the field names a record of, in this record."""
        if self.fixed is not None:
            return self.fixed
        return self.by_map.get(str(record.get(self.by_field))) if self.by_field else None


def ref_hints(schema: Mapping[str, Any]) -> list[RefHint]:
    """Every field of an object schema that names records, read from its own hints."""
    out: list[RefHint] = []
    for name, prop in (schema.get("properties") or {}).items():
        ref = prop.get("x-ref")
        if ref is None and isinstance(prop.get("items"), Mapping):
            ref = prop["items"].get("x-ref")
        if isinstance(ref, str):
            out.append(RefHint(name, ref))
        elif isinstance(ref, Mapping):
            out.append(RefHint(name, str(ref["collection"]), history=ref.get("history") is True))
        elif isinstance(prop.get("x-ref-by"), Mapping):
            by = prop["x-ref-by"]
            collections = dict(by.get("collections") or {})
            history = by.get("history") is True
            out.append(RefHint(name, None, str(by["field"]), collections, history))
    return out

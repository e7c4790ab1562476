"""Sort fields that know their declared order: an ordinal enum sorts by rank, not by text.

`sort_key` receives only the name of the field to sort by, and two collections may hold fields
of the same name with different orders; a `SortField` is that name (it compares and hashes like
the plain string, so cached orders stay keyed the same) carrying its enum's ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SortField(str):
    """A field name with the ranks of its enum values (`x-ordinal`): value -> position."""

    ranks: Mapping[Any, int]

    def __new__(cls, name: str, ranks: Mapping[Any, int]) -> SortField:
        field = super().__new__(cls, name)
        field.ranks = ranks
        return field


def ranks_of(field: str) -> Mapping[Any, int] | None:
    """The declared order of a sort field, or None for one that sorts by its values."""
    return getattr(field, "ranks", None)

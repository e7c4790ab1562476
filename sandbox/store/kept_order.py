"""A view's query results kept in order across its writes, so a list after a create costs the
records created since rather than a sort of the whole collection.

A view's result cache (`QueryCache`) is emptied by every write: a list that follows a create
used to filter and sort every record again (~70 ms for 60,000 tickets, on the event loop). What
a view keeps here survives creations. Each result remembers how many of the view's `appended`
creations it holds; the next query of the same key filters only the creations after those and
puts each in its place by binary search. A write that does more than append (a change or
deletion of a record, an undo) drops every kept result (`CollectionView.reshape`), and the next
query sorts again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]
Key = Callable[[Record], Any]


@dataclass(slots=True)
class KeptOrder:
    """One query's records in order, holding the view's first `read` creations."""

    read: int
    records: list[Record]


def merged(records: list[Record], new: list[Record], key: Key, descending: bool) -> list[Record]:
    """`records` (ordered by `key`, reversed when `descending`) with `new` put in their places,
    as a new list; keys are unique (each ends with the record's id), so each place is exact."""
    if not new:
        return records
    new = sorted(new, key=key, reverse=descending)
    if not records:
        return new
    first, last = key(new[0]), key(new[-1])
    if _before(key(records[-1]), first, descending):  # the usual case: newest at the end
        return records + new
    if _before(last, key(records[0]), descending):  # or at the start (newest first)
        return new + records
    out: list[Record] = []
    lo = 0
    for record in new:
        at = _place(records, key(record), key, descending, lo)
        out += records[lo:at]
        out.append(record)
        lo = at
    out += records[lo:]
    return out


def worth_merging(held: int, new: int) -> bool:
    """Whether binary searches (`new` of them, ~log2 `held` keys each) beat sorting again."""
    return new * max(1, held.bit_length()) < held


def _before(a: Any, b: Any, descending: bool) -> bool:
    """Whether key `a` comes before key `b` in the order."""
    return bool(a > b) if descending else bool(a < b)


def _place(records: list[Record], k: Any, key: Key, descending: bool, lo: int) -> int:
    """The index at which a record of key `k` belongs among `records[lo:]`."""
    hi = len(records)
    while lo < hi:
        mid = (lo + hi) // 2
        if _before(key(records[mid]), k, descending):
            lo = mid + 1
        else:
            hi = mid
    return lo

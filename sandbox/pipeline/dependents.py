"""The records that read another record through a reference, and what a change to it does to them.

A record's write rules may read a record it names: a check's client is its agent's (`x-ref` copy),
a ticket's contact must be one of the ticket's client (`contact_id->client_id`). Judged only on
the record's own writes, a change to the record read (an agent moved to another client, a contact
moved, a contract's dates moved) left the records naming it contradicting their rules. So a change
to a record also, in the same transaction:

- copies what its readers copy from it (`x-ref.copy`) into each of them, and on to the records
  that copy from those (an agent's client to its checks, a check's to its alerts);
- is refused (400 naming the changed field, and the first reader and rule it would break) when a
  reader would break a `refuse` or `derive` rule that reads the changed field through its
  reference (a `derive` fix is the reader's own: a change elsewhere does not rewrite it). A rule
  marked `referenced-change: allow` binds only its record's own writes (a ticket assigned to a
  user who is deactivated later keeps its assignee; a client's priority floor raises each ticket
  on its next write).

Built from the spec at start; `Resources` makes the writes (`pipeline/resources.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.store.base import Record, matches
from opsmerge_sandbox.store.workspace import Workspace
from opsmerge_sandbox.world.conditions import condition_paths
from opsmerge_sandbox.world.invariants import Invariant

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.resources import RefField


@dataclass(frozen=True, slots=True)
class Copier:
    """Records of `collection` copy `pairs` (mine, theirs) from the record `field` names."""

    collection: str
    field: str
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Reader:
    """Records of `collection` judge `rule` reading, through `field`, the record it names."""

    collection: str
    field: str
    rule: Invariant


class Dependents:
    """By collection, who copies from its records; by (collection, field), whose rules read it."""

    def __init__(
        self, refs: Mapping[str, Sequence[RefField]], invariants: Iterable[Invariant]
    ) -> None:
        self.copiers: dict[str, list[Copier]] = {}
        for name, fields in refs.items():
            for rf in fields:
                if rf.copy and not rf.many:  # copies are made from a single reference
                    self.copiers.setdefault(rf.target, []).append(
                        Copier(name, rf.field, rf.copy)
                    )
        self.readers: dict[tuple[str, str], list[Reader]] = {}
        for inv in invariants:
            if inv.kind != "require" or inv.each is not None:
                continue  # items of an array field are judged on their record's own writes
            if inv.raw.get("referenced-change", "refuse") != "refuse":
                continue
            targets = {rf.field: rf.target for rf in refs.get(inv.collection, ())}
            seen: set[tuple[tuple[str, str], str]] = set()
            for path in condition_paths(inv.raw.get("when")) + condition_paths(
                inv.raw.get("require")
            ):
                hops = [p.strip() for p in path.split("->")]
                if len(hops) < 2 or hops[0] not in targets:
                    continue
                read = (targets[hops[0]], hops[1].split(".", 1)[0])
                if (read, hops[0]) in seen:
                    continue
                seen.add((read, hops[0]))
                self.readers.setdefault(read, []).append(Reader(inv.collection, hops[0], inv))

        # the collections whose records something copies from or judges a rule on
        self.read = frozenset(self.copiers) | frozenset(c for c, _ in self.readers)

    def readers_of(self, collection: str, changed: Iterable[str]) -> list[tuple[str, Reader]]:
        """(field, reader) of each rule reading one of the `changed` fields of a record of
        `collection`."""
        readers = self.readers
        return [(name, r) for name in changed for r in readers.get((collection, name), ())]


COPY_DEPTH = 8  # copies pass on this many references at most (a chain, never a cycle, in a spec)


def staged_first(ws: Workspace) -> Callable[[str, Any], Record | None]:
    """A lookup that sees the open transaction's writes (a reader is judged against the change
    that is about to be committed), else the workspace's records."""
    transaction = ws.transaction
    staged = transaction.staged if transaction is not None else {}
    get = ws.get

    def lookup(collection: str, record_id: Any) -> Record | None:
        key = (collection, record_id)
        return staged[key] if key in staged else get(collection, record_id)

    return lookup


def naming(ws: Workspace, collection: str, field: str, record_id: str) -> list[Record]:
    """The records of `collection` that name `record_id` in `field` (a list field: among its
    ids), as the open transaction leaves them."""
    transaction = ws.transaction
    staged = transaction.staged if transaction is not None else {}
    out = []
    for found in ws.view(collection).query([(field, record_id)], None, "id", False):
        key = (collection, found["id"])
        if key in staged:
            now = staged[key]
            if now is None or not matches(now, [(field, record_id)], None):
                continue  # deleted, or no longer naming it, in this transaction
            found = now
        out.append(found)
    return out


def breaks_reader(field: str, reader: Reader, record: Record, why: str, body: Any) -> ApiError:
    """The 400 of a change to `field` that would leave `record` breaking the reader's rule."""
    rule = reader.rule
    message = rule.message or f"breaks the rule {rule.id}"
    told = f"{reader.collection} record {record['id']} names this record ({reader.field})"
    where = Detail("body", field, f"{message}: {told} ({why})")
    if not (isinstance(body, Mapping) and field in body):
        where = Detail("path", "id", f"{field}: {message}: {told} ({why})")
    return ApiError(
        "VALIDATION_ERROR",
        f"{field}: {told} and would break its rule: {message} ({why}).",
        [where],
    )

"""The other side of `x-refuse-while` and `x-on-enter`: a record does not take up a state its
referenced record's state rules out.

`x-refuse-while` keeps a client from being archived while its tickets are open, and `x-on-enter`
switches off its checks as it is archived: both say that while a record holds a state (`into`),
no record naming it holds another (`holding`). Judged only on the first record's writes, the
second side stayed open: a ticket of an archived client could be opened again, a check of it
switched back on, a contact given portal access. So a change that takes a record into `holding`,
or moves a record holding it to name another record, is refused (400 naming the field) while
the record it names holds `into` as the clock shows it. A create is judged by `x-closed`
(nothing made later names a client that has left).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.extensions import StateRule, holds_values
from opsmerge_sandbox.spec import Collection

Record = dict[str, Any]
Shown = Callable[[str, Any], Record | None]  # (collection, id) -> the record as clients see it


class StateGuards:
    """By collection, the state rules of the records its records name (collection, rule)."""

    def __init__(self, collections: Mapping[str, Collection]) -> None:
        self.by_collection: dict[str, list[tuple[str, StateRule]]] = {}
        for name, coll in collections.items():
            for rule in (*coll.blockers, *coll.followers):
                if rule.holding:  # a rule about every record naming it rules out no state
                    self.by_collection.setdefault(rule.collection, []).append((name, rule))

    def check(
        self, collection: str, before: Record, after: Record, shown: Shown, body: Any
    ) -> None:
        """Refuse a change of a record of `collection` into a state the record it names rules
        out, naming the field that took it there."""
        for named, rule in self.by_collection.get(collection, ()):
            if not holds_values(after, rule.holding):
                continue
            moved = before.get(rule.field) != after.get(rule.field)
            if holds_values(before, rule.holding) and not moved:
                continue  # held already, naming the same record: not this write's doing
            other_id = after.get(rule.field)
            other = shown(named, other_id) if other_id is not None else None
            if other is None or not holds_values(other, rule.into):
                continue
            entered = [f for f in rule.holding if before.get(f) != after.get(f)]
            field = rule.field if moved else (entered or [*rule.holding])[0]
            state = ", ".join(f"{f} {other.get(f)!r}" for f in rule.into)
            taken = ", ".join(f"{f} {after.get(f)!r}" for f in rule.holding)
            message = (
                f"{collection} record {after['id']} names {named} record {other_id} "
                f"({rule.field}), which holds {state}: while it does, no {collection} record "
                f"naming it holds {taken}"
            )
            given = isinstance(body, Mapping) and field in body
            raise ApiError(
                "VALIDATION_ERROR",
                f"{field}: {message}.",
                [Detail("body", field, message) if given else Detail("path", "id", message)],
            )

"""The other side of `x-refuse-while` and `x-on-enter`: a record does not take up a state its
referenced record's state rules out.

`x-refuse-while` keeps a client from being archived while its tickets are open, and `x-on-enter`
switches off its checks as it is archived: both say that while a record holds a state (`into`),
no record naming it holds another (`holding`). Judged only on the first record's writes, the
second side stayed open: a ticket of an archived client could be opened again, a check of it
switched back on, a contact given portal access. So a change that takes a record into `holding`,
or moves a record holding it to name another record, is refused (400 naming the field) while
the record it names holds `into` as the clock shows it. A create is judged by `x-closed`
(nothing made later names a client that has left); `check_named` holds `x-closed` on every
write: a record closed now (an archived client) is named anew by nothing, whether a create
names it or an update moves a reference to it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any, NoReturn

from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.extensions import StateRule, holds_values
from opsmerge_sandbox.spec import Collection
from opsmerge_sandbox.world.closings import Closing, closing_references, closings
from opsmerge_sandbox.world.conditions import Env

Record = dict[str, Any]
Shown = Callable[[str, Any], Record | None]  # (collection, id) -> the record as clients see it
_Plain = tuple[tuple[str, frozenset[Any]], ...]  # (field, values) a closed record holds


class StateGuards:
    """By collection, the state rules of the records its records name (collection, rule)."""

    def __init__(self, collections: Mapping[str, Collection]) -> None:
        self.by_collection: dict[str, list[tuple[str, StateRule]]] = {}
        for name, coll in collections.items():
            for rule in (*coll.blockers, *coll.followers):
                if rule.holding:  # a rule about every record naming it rules out no state
                    self.by_collection.setdefault(rule.collection, []).append((name, rule))
        # by collection, (field, collection it names, how those close, and when that is a
        # state of the record's own fields, (field, closing values) of each: read at once)
        self.closable: dict[str, list[tuple[str, str, Closing, _Plain | None]]] = {}
        schemas = {n: c.schema for n, c in collections.items()}
        closed = closings(schemas)
        for name, refs in closing_references(schemas).items():
            for field, target in refs:
                when = schemas[target]["x-closed"]["when"]
                plain: _Plain | None = tuple(
                    (f, frozenset(v)) for f, v in when.items()
                    if isinstance(v, list) and "->" not in f
                )
                if len(plain or ()) != len(when) or collections[target].lifecycle is not None:
                    plain = None  # judged by the condition itself
                self.closable.setdefault(name, []).append((field, target, closed[target], plain))

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

    def check_named(
        self,
        collection: str,
        before: Record | None,
        after: Record,
        get: Shown,
        env: Callable[[], Env],
        body: Any,
    ) -> None:
        """Refuse a write that names anew (a create, or a reference changed) a record closed
        now (`x-closed`), naming the field. `get` reads the records named (as the clock shows
        them, for a closing the clock moves); `env` makes what a closing's condition reads."""
        for field, target, closing, plain in self.closable.get(collection, ()):
            value = after.get(field)
            if value is None:
                continue
            kept: Container[Any] = ()
            if before is not None:  # an update: only a reference it changed names anew
                old = before.get(field)
                if value == old:
                    continue
                kept = set(old) if isinstance(old, list) else {old}
            for rid in value if value.__class__ is list else (value,):
                other = get(target, rid) if rid not in kept else None
                if other is None:
                    continue
                if plain is not None:  # the usual closing: a state of the record's own fields
                    for name, closing_values in plain:
                        if other.get(name) not in closing_values:
                            break
                    else:
                        self._closed(field, target, rid, other, closing, body, before is None)
                    continue
                if closing.closed_at(other, env()) is not None:
                    self._closed(field, target, rid, other, closing, body, before is None)

    @staticmethod
    def _closed(
        field: str,
        target: str,
        rid: Any,
        other: Record,
        closing: Closing,
        body: Any,
        creating: bool,
    ) -> NoReturn:
        """The 400 of a write that names a closed record anew (a create names the record's
        field, given or copied from a reference; an update the field it was sent, else its id)."""
        message = (
            f"{target} record {rid} is closed ({closing.since} {other.get(closing.since)}): "
            "no record names it anew"
        )
        given = creating or (isinstance(body, Mapping) and field in body)
        raise ApiError(
            "VALIDATION_ERROR",
            f"{field}: {message}.",
            [Detail("body", field, message) if given else Detail("path", "id", message)],
        )

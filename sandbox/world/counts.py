"""`x-count`: a number that is how many records of another collection match, as they stood at a
time: a per-endpoint invoice line bills the endpoints its client had enrolled by the issue date
("billable assets are counted live at invoice time").

A count is of records generated earlier (`generation_order` puts the counted collection first).
In a nested object (an invoice's line) the values it matches on and its time come from the record
that holds it, written `$parent.<field>`; that record's fields are made before the object.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Any

from opsmerge_sandbox.world.conditions import PARENT, path_head, to_seconds
from opsmerge_sandbox.world.context import (
    Draft,
    FieldPlan,
    GenerationError,
    Redraw,
    Schema,
    WorldContext,
)

_KEYS = ("collection", "where", "created-by", "min")


def _parts(schema: Any) -> Iterator[Mapping[str, Any]]:
    """A property schema and each schema within it: its cases, `allOf` parts, nested
    properties and items (where counts and conditions may be declared)."""
    if not isinstance(schema, Mapping):
        return
    yield schema
    for part in [*(schema.get("x-cases") or ()), *(schema.get("allOf") or ())]:
        yield from _parts(part)
    props = schema.get("properties")
    if isinstance(props, Mapping):
        for prop in props.values():
            yield from _parts(prop)
    yield from _parts(schema.get("items"))


def _declarations(schema: Any) -> Iterator[Mapping[str, Any]]:
    """Each `x-count` in a property schema: its own, its cases', and its nested parts'."""
    for part in _parts(schema):
        if isinstance(part.get("x-count"), Mapping):
            yield part["x-count"]


def _case_conditions(schema: Any) -> Iterator[Mapping[str, Any]]:
    """Each `x-cases` condition in a property schema and its nested parts."""
    for part in _parts(schema):
        for case in part.get("x-cases") or ():
            if isinstance(case, Mapping) and isinstance(case.get("when"), Mapping):
                yield case["when"]


def count_targets(schema: Any) -> Iterator[str]:
    """The collections an `x-count` anywhere in a schema counts."""
    for decl in _declarations(schema):
        if isinstance(decl.get("collection"), str):
            yield decl["collection"]


def parent_fields(schema: Any) -> list[str]:
    """The fields of the holding record a nested schema reads (`$parent.<path>`, in its counts,
    its cases' conditions, its copies and `x-drawn-per`): the holding record makes them before
    the object."""
    sources: list[Any] = []
    for decl in _declarations(schema):
        where = decl.get("where")
        sources += [*(where.values() if isinstance(where, Mapping) else ()), decl.get("created-by")]
    for when in _case_conditions(schema):
        sources += list(when)
    sources += [part.get("x-copy") for part in _parts(schema)]
    sources += [p for part in _parts(schema) for p in part.get("x-drawn-per") or ()]
    found: list[str] = []
    for source in sources:
        if isinstance(source, str) and source.startswith(PARENT):
            field = path_head(source[len(PARENT) :])
            if field and field not in found:
                found.append(field)
    return found


def count_plan(name: str, prop: Schema, ctx: WorldContext, where: str) -> FieldPlan:
    """How many records of `collection` match `where` (their field: a value, or `$parent.<field>`
    of the holding record), counting those created by `created-by` (a time, or a `$parent.`
    field) when it is given. A count below `min` draws the record again (a per-endpoint line
    bills at least one endpoint)."""
    decl = prop["x-count"]
    if not isinstance(decl, Mapping) or set(decl) - set(_KEYS):
        raise GenerationError(f"{where}.{name}: x-count takes {', '.join(_KEYS)}")
    collection = decl.get("collection")
    match = decl.get("where") or {}
    if not isinstance(collection, str) or collection not in ctx.schemas:
        raise GenerationError(f"{where}.{name}: x-count.collection {collection!r} is no collection")
    if not isinstance(match, Mapping) or len(match) != 1:
        raise GenerationError(f"{where}.{name}: x-count.where matches one field of {collection}")
    ((field, wanted),) = match.items()
    by = decl.get("created-by")
    least = decl.get("min", 0)
    if isinstance(least, bool) or not isinstance(least, int):
        raise GenerationError(f"{where}.{name}: x-count.min must be a whole number")
    # their field's value -> creation times of the records holding it, sorted: made at the first
    # count, once the counted collection is generated
    indexes: list[dict[Any, list[int]]] = []

    def times_of(value: Any) -> list[int]:
        if not indexes:
            index: dict[Any, list[int]] = {}
            created = ctx.created.get(collection, [])
            for i, record in enumerate(ctx.world.get(collection, [])):
                index.setdefault(record.get(field), []).append(
                    created[i] if i < len(created) else 0
                )
            for times in index.values():
                times.sort()
            indexes.append(index)
        return indexes[0].get(value, [])

    def read(d: Draft, source: Any) -> Any:
        if isinstance(source, str) and source.startswith(PARENT):
            holder = d.parent
            if holder is None:
                raise GenerationError(f"{where}.{name}: {source} outside a nested object")
            return holder.rec.get(source[len(PARENT) :])
        return source

    def counted(d: Draft) -> int:
        times = times_of(read(d, wanted))
        moment = read(d, by) if by is not None else None
        bound = to_seconds(moment)
        if bound is None:
            return len(times)
        if isinstance(moment, str) and len(moment) == 10:
            bound += 86_399  # a date counts what was made by the end of that day
        return bisect.bisect_right(times, bound)

    def make(d: Draft) -> int:
        n = counted(d)
        if n < least:
            raise Redraw
        return n

    return FieldPlan(name, make)

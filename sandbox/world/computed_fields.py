"""Computed read-only fields: sequences, templates and derived sums, from the schema hints.

The seeded world and the server both call `derive_fields`, so a ticket created through the API
gets its number and reference the same way a seeded one does, and an updated invoice has its
totals recomputed from its new lines. What a record's numbers depend on beyond the record (the
next number a settings record holds, prefixes an admin chose, the count of this year's invoices)
comes in as `Numbers`; `settle_seeded` gives a whole seeded collection the numbering and flags
that depend on more than one record.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from opsmerge_sandbox.spec import Collection

Record = dict[str, Any]
Maps = Mapping[str, Mapping[Any, Any]]  # template variable -> value -> what it becomes


@dataclass(frozen=True, slots=True)
class Numbers:
    """What computed fields take from outside the record.

    `sequences`: numbers for `x-sequence` fields (a counter's next number) instead of
    `start + seq - 1`; `scoped`: `(seq, year)` for `per-year-of` templates; `maps`: per template
    field, variable values that replace the built-in `map` (a blank one keeps it).
    """

    sequences: Mapping[str, int] = field(default_factory=dict)
    scoped: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    maps: Mapping[str, Maps] = field(default_factory=dict)


_NONE = Numbers()


@dataclass(frozen=True, slots=True)
class _Step:
    kind: str  # "sequence", "derive" or "template"
    name: str
    run: Callable[[Record, int, int, Numbers], None]
    inputs: frozenset[str] = frozenset()  # fields a template reads: recomputed when they change
    per_year_of: str | None = None


_plans: dict[tuple[str, int], list[_Step]] = {}


def derive_fields(
    collection: Collection,
    record: dict[str, Any],
    seq: int,
    year: int,
    numbers: Numbers = _NONE,
    changed: Container[str] | None = None,
) -> None:
    """Fill the `x-sequence`, `x-derive` and `x-template` fields of `record` in place.

    `seq` is the record's 1-based position in its collection (kept on update), `year` the year
    used by templates such as `INV-{year}-{seq:04d}` (a `per-year-of` template takes the year of
    its date field instead). With `changed` (an update's fields) numbers are kept as assigned and
    a template is recomputed only when a field it reads changed; sums are always recomputed.
    """
    for step in _steps(collection):
        if changed is not None:
            if step.kind == "sequence" or step.per_year_of is not None:
                continue
            if step.kind == "template" and not any(f in changed for f in step.inputs):
                continue
        step.run(record, seq, year, numbers)


def template_pattern(collection: Collection, name: str) -> re.Pattern[str] | None:
    """A pattern reading `seq` and `year` back out of a template field's values."""
    prop = (collection.schema.get("properties") or {}).get(name) or {}
    rule = prop.get("x-template")
    if not isinstance(rule, Mapping):
        return None
    parts = []
    for literal, var, _spec, _conv in string.Formatter().parse(rule["format"]):
        parts.append(re.escape(literal))
        if var in ("seq", "year"):
            parts.append(rf"(?P<{var}>[0-9]+)")
        elif var is not None:
            parts.append(".*?")
    return re.compile("".join(parts) + "$")


def year_of(value: Any) -> int | None:
    """The year of an ISO date or date-time, or None."""
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10]).year
        except ValueError:
            return None
    return None


def settle_seeded(collection: Collection, records: list[Record]) -> None:
    """Give a generated collection what depends on more than one record, in place.

    `per-year-of` templates are numbered 1, 2, ... within each year, in date order and, within a
    day, in the order the records were made (gapless, restarting every January); an
    `x-sequence` with `order-by` numbers records in the order of that field (ties by position),
    and templates reading it follow; an `x-exclusive` flag stays
    with the first record holding it in each scope, and with `required` the first record of a
    scope with no holder takes it.
    """
    _renumber(collection, records)
    for step in _steps(collection):
        if step.per_year_of is None:
            continue
        by_year: dict[int, list[tuple[str, str, int]]] = {}
        for i, rec in enumerate(records):
            y = year_of(rec.get(step.per_year_of))
            if y is not None:
                # ties (one day's records) in the order they were made
                made = str(rec.get("created_at") or "")
                by_year.setdefault(y, []).append((str(rec.get(step.per_year_of)), made, i))
        for y, dated in by_year.items():
            for n, (_, _, i) in enumerate(sorted(dated), start=1):
                step.run(records[i], n, y, Numbers(scoped={step.name: (n, y)}))
    props = collection.schema.get("properties") or {}
    for flag, per in _exclusive(collection).items():
        holders: set[Any] = set()
        first: dict[Any, dict[str, Any]] = {}
        for rec in records:
            scope = rec.get(per)
            if scope is None:
                continue
            first.setdefault(scope, rec)
            if rec.get(flag) is True:
                if scope in holders:
                    rec[flag] = False
                holders.add(scope)
        if props[flag]["x-exclusive"].get("required") is True:
            for scope, rec in first.items():
                if scope not in holders:
                    rec[flag] = True


def _renumber(collection: Collection, records: list[Record]) -> None:
    props = collection.schema.get("properties") or {}
    for name, prop in props.items():
        rule = prop.get("x-sequence")
        if not isinstance(rule, Mapping) or not rule.get("order-by"):
            continue
        by = str(rule["order-by"])
        start = int(rule.get("start", 1))
        order = sorted(range(len(records)), key=lambda i: (str(records[i].get(by) or ""), i))
        for n, i in enumerate(order):
            records[i][name] = start + n
        followers = [
            s for s in _steps(collection) if s.kind == "template" and name in s.inputs
        ]
        for rec in records:
            for step in followers:
                step.run(rec, 0, 0, _NONE)


def _exclusive(collection: Collection) -> dict[str, str]:
    props = collection.schema.get("properties") or {}
    return {
        name: prop["x-exclusive"]["per"]
        for name, prop in props.items()
        if isinstance(prop.get("x-exclusive"), Mapping)
    }


def _steps(collection: Collection) -> list[_Step]:
    key = (collection.name, id(collection.schema))
    steps = _plans.get(key)
    if steps is None:
        steps = _plans[key] = _compile(collection.schema)
    return steps


def has_computed(collection: Collection) -> bool:
    """Whether any property is computed, so callers can skip the work for most collections."""
    return any(
        k in prop
        for prop in (collection.schema.get("properties") or {}).values()
        for k in ("x-sequence", "x-template", "x-derive")
    )


def _compile(schema: dict[str, Any]) -> list[_Step]:
    props: dict[str, Any] = schema.get("properties") or {}
    sequences: list[_Step] = []
    derived: list[tuple[str, list[str], _Step]] = []
    templates: list[_Step] = []
    for name, prop in props.items():
        if "x-sequence" in prop:
            sequences.append(_Step("sequence", name, _sequence(name, prop["x-sequence"])))
        if "x-derive" in prop:
            rule = prop["x-derive"]
            step = _Step("derive", name, _derive(name, rule, props))
            derived.append((name, list(rule.get("add") or []), step))
        if "x-template" in prop:
            templates.append(_template(name, prop["x-template"]))
    return [*sequences, *_in_dependency_order(derived), *templates]


def _sequence(name: str, rule: dict[str, Any]) -> Callable[[Record, int, int, Numbers], None]:
    start = int(rule.get("start", 1))

    def step(record: Record, seq: int, year: int, numbers: Numbers) -> None:
        given = numbers.sequences.get(name)
        record[name] = given if given is not None else start + seq - 1

    return step


def _template(name: str, rule: dict[str, Any]) -> _Step:
    fmt: str = rule["format"]
    mapped: dict[str, dict[str, Any]] = dict(rule.get("vars") or {})
    per_year_of: str | None = rule.get("per-year-of")
    reads = {v for _, v, _, _ in string.Formatter().parse(fmt) if v and v not in ("seq", "year")}
    inputs = frozenset((reads - set(mapped)) | {spec["field"] for spec in mapped.values()})
    # the record's fields the format names (a name's base, before any `.` or `[`): only these
    # are copied for it, not the whole record (a create formats its templates on every call)
    bases = {re.split(r"[.\[]", v, maxsplit=1)[0] for v in reads}
    from_record = tuple(sorted(bases - set(mapped) - {"seq", "year"}))

    def step(record: Record, seq: int, year: int, numbers: Numbers) -> None:
        if per_year_of is not None:
            scoped = numbers.scoped.get(name)
            if scoped is not None:
                seq, year = scoped
            else:
                year = year_of(record.get(per_year_of)) or year
        values = {f: record[f] for f in from_record if f in record}
        values["seq"], values["year"] = seq, year
        chosen = numbers.maps.get(name) or {}
        for var, spec in mapped.items():
            raw = record.get(spec["field"])
            override = (chosen.get(var) or {}).get(raw)
            values[var] = override if override else (spec.get("map") or {}).get(raw, raw)
        record[name] = fmt.format_map(values)

    return _Step("template", name, step, inputs, per_year_of)


def _line_products(record: Record, over: str, of: list[str]) -> list[tuple[dict[str, Any], float]]:
    out = []
    for line in record.get(over) or ():
        product = 1.0
        for f in of:
            product *= float(line.get(f) or 0)
        out.append((line, product))
    return out


def _derive(
    name: str, rule: dict[str, Any], props: dict[str, Any]
) -> Callable[[Record, int, int, Numbers], None]:
    if "add" in rule:
        parts = list(rule["add"])

        def add(record: Record, seq: int, year: int, numbers: Numbers) -> None:
            record[name] = round(sum(float(record.get(p) or 0) for p in parts), 2)

        return add
    if "sum" in rule:
        over, of = rule["sum"], list(rule.get("of") or [])

        def total(record: Record, seq: int, year: int, numbers: Numbers) -> None:
            record[name] = round(sum(p for _, p in _line_products(record, over, of)), 2)

        return total
    if "tax" in rule:
        over, of = rule["tax"], list(rule.get("of") or [])
        rate_by = rule.get("rate-by") or {}
        field = rate_by.get("field")
        rates = {k: float(v) for k, v in (rate_by.get("map") or {}).items()}
        item_props = ((props.get(over) or {}).get("items") or {}).get("properties") or {}
        default_code = (item_props.get(field) or {}).get("default") if field else None
        flat = float(rule.get("rate", 0))

        def tax(record: Record, seq: int, year: int, numbers: Numbers) -> None:
            amount = 0.0
            for line, product in _line_products(record, over, of):
                rate = rates.get(line.get(field, default_code), 0.0) if field else flat
                amount += product * rate
            record[name] = round(amount, 2)

        return tax
    raise ValueError(f"unknown x-derive rule on {name}: {rule}")


def _in_dependency_order(derived: list[tuple[str, list[str], _Step]]) -> list[_Step]:
    names = {n for n, _, _ in derived}
    done: set[str] = set()
    out: list[_Step] = []
    pending = list(derived)
    while pending:
        for i, (n, needs, step) in enumerate(pending):
            if all(x in done or x not in names for x in needs):
                out.append(step)
                done.add(n)
                pending.pop(i)
                break
        else:
            raise ValueError(f"x-derive fields depend on each other: {[n for n, _, _ in pending]}")
    return out


def exclusive_flags(collection: Collection) -> dict[str, str]:
    """`x-exclusive` flags of a collection: flag field -> the field that scopes it."""
    return _exclusive(collection)


__all__ = [
    "Numbers",
    "derive_fields",
    "exclusive_flags",
    "has_computed",
    "settle_seeded",
    "template_pattern",
    "year_of",
]

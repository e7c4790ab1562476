"""Computed read-only fields: sequences, templates and derived sums, from the schema hints.

The seeded world and the server both call `derive_fields`, so a ticket created through the API
gets its number and reference the same way a seeded one does, and an updated invoice has its
totals recomputed from its new lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.spec import Collection

Record = dict[str, Any]
Step = Callable[[Record, int, int], None]

_plans: dict[tuple[str, int], list[Step]] = {}


def derive_fields(collection: Collection, record: dict[str, Any], seq: int, year: int) -> None:
    """Fill the `x-sequence`, `x-derive` and `x-template` fields of `record` in place.

    `seq` is the record's 1-based position in its collection (kept on update), `year` the year
    used by templates such as `INV-{year}-{seq:04d}`.
    """
    key = (collection.name, id(collection.schema))
    steps = _plans.get(key)
    if steps is None:
        steps = _compile(collection.schema)
        _plans[key] = steps
    for step in steps:
        step(record, seq, year)


def has_computed(collection: Collection) -> bool:
    """Whether any property is computed, so callers can skip the work for most collections."""
    return any(
        k in prop
        for prop in (collection.schema.get("properties") or {}).values()
        for k in ("x-sequence", "x-template", "x-derive")
    )


def _compile(schema: dict[str, Any]) -> list[Step]:
    props: dict[str, Any] = schema.get("properties") or {}
    sequences: list[Step] = []
    derived: list[tuple[str, list[str], Step]] = []
    templates: list[Step] = []
    for name, prop in props.items():
        if "x-sequence" in prop:
            sequences.append(_sequence(name, prop["x-sequence"]))
        if "x-derive" in prop:
            rule = prop["x-derive"]
            derived.append((name, list(rule.get("add") or []), _derive(name, rule, props)))
        if "x-template" in prop:
            templates.append(_template(name, prop["x-template"]))
    return [*sequences, *_in_dependency_order(derived), *templates]


def _sequence(name: str, rule: dict[str, Any]) -> Step:
    start = int(rule.get("start", 1))

    def step(record: Record, seq: int, year: int) -> None:
        record[name] = start + seq - 1

    return step


def _template(name: str, rule: dict[str, Any]) -> Step:
    fmt: str = rule["format"]
    mapped: dict[str, dict[str, Any]] = dict(rule.get("vars") or {})

    def step(record: Record, seq: int, year: int) -> None:
        values = {**record, "seq": seq, "year": year}
        for var, spec in mapped.items():
            raw = record.get(spec["field"])
            values[var] = (spec.get("map") or {}).get(raw, raw)
        record[name] = fmt.format(**values)

    return step


def _line_products(record: Record, over: str, of: list[str]) -> list[tuple[dict[str, Any], float]]:
    out = []
    for line in record.get(over) or ():
        product = 1.0
        for f in of:
            product *= float(line.get(f) or 0)
        out.append((line, product))
    return out


def _derive(name: str, rule: dict[str, Any], props: dict[str, Any]) -> Step:
    if "add" in rule:
        parts = list(rule["add"])

        def add(record: Record, seq: int, year: int) -> None:
            record[name] = round(sum(float(record.get(p) or 0) for p in parts), 2)

        return add
    if "sum" in rule:
        over, of = rule["sum"], list(rule.get("of") or [])

        def total(record: Record, seq: int, year: int) -> None:
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

        def tax(record: Record, seq: int, year: int) -> None:
            amount = 0.0
            for line, product in _line_products(record, over, of):
                rate = rates.get(line.get(field, default_code), 0.0) if field else flat
                amount += product * rate
            record[name] = round(amount, 2)

        return tax
    raise ValueError(f"unknown x-derive rule on {name}: {rule}")


def _in_dependency_order(derived: list[tuple[str, list[str], Step]]) -> list[Step]:
    names = {n for n, _, _ in derived}
    done: set[str] = set()
    out: list[Step] = []
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

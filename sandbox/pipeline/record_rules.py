"""The property-level business rules of a collection's schema, applied to creates and updates.

Each rule is a hint on a property (parsed by `sandbox.extensions` into `FieldRules`), so the
code here names no resource:

- `x-default-from`: a create fills the field, when the body leaves it out, from another field
  (a date N days later) or from the earliest matching record of another collection;
- `x-not-before`: a date that may not be earlier than another field's (400 naming the field);
- `x-forward-only`: an update may not lower the number (400 naming the field);
- `x-merge`: a PATCH of the object field changes only the keys it names;
- `x-exclusive`: one record per scope holds the flag; setting it takes it from the holder, in
  the same transaction as the write. With `required: true` one always does: the first record
  of a scope takes it, the holder cannot clear it (400 naming the flag: set it on another
  record to move it), and when the holder is deleted or leaves its scope the earliest made of
  the scope's remaining records takes it;
- `x-touches`: a write of the record is a change of the record it names (a comment is activity
  on its ticket), whose `updated_at` moves to the write's time in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.extensions import DefaultFrom, FieldRules
from opsmerge_sandbox.store.workspace import Workspace

Record = dict[str, Any]


def fill_defaults(ws: Workspace, rules: FieldRules, values: Record) -> None:
    """Fill the `x-default-from` fields a create's body left out, in place."""
    for field, rule in rules.defaults.items():
        if field in values:
            continue
        value = _default(ws, rule, values)
        if value is not None:
            values[field] = value


def _default(ws: Workspace, rule: DefaultFrom, values: Record) -> Any:
    if rule.field is not None:
        start = _date(values.get(rule.field))
        return None if start is None else (start + timedelta(days=rule.add_days)).isoformat()
    assert rule.lookup is not None
    wanted: list[tuple[str, Any]] = []
    for theirs, expr in rule.where.items():
        if isinstance(expr, str) and expr.startswith("$record."):
            expr = values.get(expr.partition(".")[2])
            if expr is None:
                return None  # nothing to match on: no default
        wanted.append((theirs, expr))
    found = ws.view(rule.lookup).query(wanted, None, "created_at", False)
    return found[0].get(rule.take) if found else None


def check(rules: FieldRules, record: Record, changed: Mapping[str, Any] | None = None) -> None:
    """Refuse a record whose dates are out of order (`x-not-before`): 400 naming the field.

    On an update (`changed`) only a pair of which a field changed is checked, so an old record
    that already broke the rule can still be edited elsewhere.
    """
    details = []
    for field, other in rules.not_before.items():
        if changed is not None and field not in changed and other not in changed:
            continue
        mine, theirs = _date(record.get(field)), _date(record.get(other))
        if mine is not None and theirs is not None and mine < theirs:
            details.append(
                Detail("body", field, f"{record[field]} is before {other} {record[other]}")
            )
    if details:
        raise ApiError(
            "VALIDATION_ERROR",
            f"{details[0].field} may not be before {rules.not_before[details[0].field]}.",
            details,
        )


def apply_update(
    rules: FieldRules, current: Record, changes: Mapping[str, Any], record: Record
) -> None:
    """Merge `x-merge` objects and refuse lowering an `x-forward-only` number, in place."""
    details = []
    for field in rules.forward_only:
        new, old = changes.get(field), current.get(field)
        if isinstance(new, int | float) and isinstance(old, int | float) and new < old:
            details.append(Detail("body", field, f"may only move forward: {new} is below {old}"))
    if details:
        raise ApiError("VALIDATION_ERROR", f"{details[0].field} {details[0].message}.", details)
    for field in rules.merge:
        new, old = changes.get(field), current.get(field)
        if isinstance(new, Mapping) and isinstance(old, Mapping):
            record[field] = {**old, **new}


def settle(
    ws: Workspace,
    collection: str,
    rules: FieldRules,
    record: Record,
    now: str,
    before: Record | None = None,
) -> None:
    """Take each `x-exclusive` flag the record now holds from the others in its scope (one
    that must always be held: keep it held); move on the `updated_at` of each record it
    `x-touches`. `before` is the record as it was, on an update."""
    for field, target in rules.touches.items():
        named = ws.get(target, record[field]) if record.get(field) is not None else None
        if named is not None and named.get("updated_at", now) < now:
            ws.write(target, {**named, "updated_at": now})
    for flag, per in rules.exclusive.items():
        held = flag in rules.held
        if held and before is not None:
            _left_by_holder(ws, collection, flag, per, record, before, now)
        scope = record.get(per)
        if scope is None or (record.get(flag) is not True and not held):
            continue
        view = ws.view(collection)
        others = [
            r
            for r in view.query([(per, scope), (flag, True)], None, "id", False)
            if r["id"] != record["id"]
        ]
        if record.get(flag) is True:
            for other in others:
                ws.write(collection, {**other, flag: False, "updated_at": now})
        elif held and not others:
            record[flag] = True  # the scope's first record, or one that had none: it holds it now


def _left_by_holder(
    ws: Workspace, collection: str, flag: str, per: str, record: Record, before: Record, now: str
) -> None:
    """An update of the holder of a flag some record of every scope must hold: clearing it is
    refused; leaving the scope passes it on."""
    old = before.get(per) if before.get(flag) is True else None
    if old is None:
        return
    if record.get(per) != old:  # it leaves: the earliest left takes it
        _pass_on(ws, collection, flag, per, old, record["id"], now)
    elif record.get(flag) is not True:
        raise ApiError(
            "VALIDATION_ERROR",
            f"Every {per} with records has exactly one {flag} record, and this is {old}'s; make "
            f"another of its records {flag} to move it.",
            [Detail("body", flag, f"cannot be cleared on the only {flag} record of its {per}")],
        )


def settle_delete(
    ws: Workspace, collection: str, rules: FieldRules, record: Record, now: str
) -> None:
    """After a delete: a flag that must always be held passes from the deleted record to the
    earliest made of its scope's remaining records."""
    for flag in rules.held:
        per = rules.exclusive[flag]
        scope = record.get(per)
        if record.get(flag) is not True or scope is None:
            continue
        _pass_on(ws, collection, flag, per, scope, record["id"], now)


def _pass_on(
    ws: Workspace, collection: str, flag: str, per: str, scope: Any, gone: str, now: str
) -> None:
    """The flag's holder `gone` left `scope`: its earliest made remaining record takes it
    (records made in the same second, in the order they were made)."""
    view = ws.view(collection)
    left = [r for r in view.query([(per, scope)], None, "id", False) if r["id"] != gone]
    if left and not any(r.get(flag) is True for r in left):
        first = min(left, key=lambda r: (r.get("created_at") or "", view.seq_of(r["id"])))
        ws.write(collection, {**first, flag: True, "updated_at": now})


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None

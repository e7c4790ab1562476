"""A rule's condition tree, judged on the subject before and after the change.

A group is `{match: all | any, conditions: [...]}`; a leaf is `{field, operator, value}`. An
empty group matches every event. `changed` compares the record before and after the write, so
it never holds when there is no "before" (a create, a clock event); with a `value` it holds only
when the field changed to that value. Every other operator reads the record after the change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Record = Mapping[str, Any]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _leaf(leaf: Mapping[str, Any], before: Record | None, after: Record) -> bool:
    field = str(leaf.get("field"))
    op = leaf.get("operator")
    want = leaf.get("value")
    found = after.get(field)
    if op == "=":
        return bool(found == want)
    if op == "!=":
        return bool(found != want)
    if op == "in":
        return isinstance(want, list) and found in want
    if op == "not_in":
        return isinstance(want, list) and found not in want
    if op == "contains":
        if isinstance(found, list):
            return want in found
        return isinstance(found, str) and str(want).lower() in found.lower()
    if op == "is_empty":
        return _empty(found)
    if op == "is_not_empty":
        return not _empty(found)
    if op == "changed":
        if before is None or before.get(field) == found:
            return False
        return "value" not in leaf or found == want
    return False


def matches(tree: Any, before: Record | None, after: Record) -> bool:
    """Whether the subject meets the rule's conditions (None or an empty group: always)."""
    if not isinstance(tree, Mapping):
        return True
    items = tree.get("conditions") or []
    if "field" in tree:
        return _leaf(tree, before, after)
    results = (matches(item, before, after) for item in items)
    if tree.get("match") == "any":
        return not items or any(results)
    return all(results)

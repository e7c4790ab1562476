"""The API changelog: the spec's root `x-changelog`, parsed and checked against the operations.

The article promises a changelog beside the reference that announces deprecations and sunsets
(and beta changes). OpsMerge publishes none we could read, so the spec holds one as data: each
entry is a dated `added`, `changed`, `deprecated` or `sunset` change, naming the operations it is
about, with `invented: true` where the history is the sandbox's own. A changelog that disagrees
with the operations would announce a date the headers do not send, so the parser also holds every
`deprecated` and `sunset` entry to the operation's `x-deprecated-at` and `x-sunset`, and every
deprecated operation to an entry of each kind.

Like `sandbox.extensions`, every problem is reported with where it is; the docs refuse to start
with a changelog that does not parse, and `spec check` reports the same problems.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opsmerge_sandbox.extensions import ExtensionProblem

CHANGES = ("added", "changed", "deprecated", "sunset")
ENTRY_KEYS = frozenset({"date", "change", "operations", "summary", "invented"})
# the operation's date a deprecated or sunset entry must repeat
_DATE_OF_CHANGE = {"deprecated": "x-deprecated-at", "sunset": "x-sunset"}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True, slots=True)
class ChangeOperation:
    operation_id: str
    method: str  # upper case
    path: str


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    date: str  # YYYY-MM-DD
    change: str  # one of CHANGES
    operations: tuple[ChangeOperation, ...]
    summary: str
    invented: bool

    def in_effect(self, now: float) -> bool:
        """Whether the change has happened on a clock showing `now` (from 00:00 UTC that day)."""
        start = dt.datetime.fromisoformat(self.date).replace(tzinfo=dt.UTC).timestamp()
        return now >= start

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "date": self.date,
            "change": self.change,
            "operations": [
                {"operation_id": o.operation_id, "method": o.method, "path": o.path}
                for o in self.operations
            ],
            "summary": self.summary,
            "invented": self.invented,
            "in_effect": self.in_effect(now),
        }


def _operations(raw: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    paths = raw.get("paths")
    for path, item in paths.items() if isinstance(paths, Mapping) else ():
        for method in _METHODS:
            op = item.get(method) if isinstance(item, Mapping) else None
            if isinstance(op, Mapping) and isinstance(op.get("operationId"), str):
                yield path, method.upper(), op


def _date(value: Any) -> str | None:
    """A YYYY-MM-DD date as text (YAML reads an unquoted date as a date), or None."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value).isoformat() if len(value) == 10 else None
        except ValueError:
            return None
    return None


Changelog = tuple[ChangeEntry, ...]


def parse_changelog(raw: Mapping[str, Any]) -> tuple[Changelog, list[ExtensionProblem]]:
    """The root `x-changelog` of a spec, newest first, with every problem found."""
    problems: list[ExtensionProblem] = []
    ops = {op["operationId"]: (path, method, op) for path, method, op in _operations(raw)}
    value = raw.get("x-changelog")
    if value is None:
        value = []
    if not isinstance(value, list):
        problems.append(ExtensionProblem("x-changelog", f"must be a list, not {value!r}"))
        value = []
    entries: list[ChangeEntry] = []
    announced: set[tuple[str, str]] = set()
    for i, item in enumerate(value):
        where = f"x-changelog[{i}]"
        found = _entry(item, where, ops, problems)
        if found is not None:
            entries.append(found)
            announced.update((o.operation_id, found.change) for o in found.operations)
    for op_id, (_, _, op) in ops.items():
        if op.get("deprecated") is not True:
            continue
        for change in ("deprecated", "sunset"):
            if (op_id, change) not in announced:
                problems.append(
                    ExtensionProblem(
                        "x-changelog",
                        f"deprecated operation {op_id} has no {change!r} entry "
                        "(the changelog announces every deprecation and sunset)",
                    )
                )
    entries.sort(key=lambda e: (e.date, CHANGES.index(e.change)), reverse=True)
    return tuple(entries), problems


def _entry(
    item: Any,
    where: str,
    ops: Mapping[str, tuple[str, str, Mapping[str, Any]]],
    problems: list[ExtensionProblem],
) -> ChangeEntry | None:
    def problem(message: str) -> None:
        problems.append(ExtensionProblem(where, message))

    if not isinstance(item, Mapping):
        problem(f"must be a mapping with date, change, summary, got {item!r}")
        return None
    before = len(problems)
    for key in item:
        if key not in ENTRY_KEYS:
            problem(f"has an unknown key {key!r} (known: {', '.join(sorted(ENTRY_KEYS))})")
    date = _date(item.get("date"))
    if date is None:
        problem(f"date {item.get('date')!r} is not a YYYY-MM-DD date")
    change = item.get("change")
    if change not in CHANGES:
        problem(f"change is {change!r}; expected one of {', '.join(CHANGES)}")
    summary = item.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        problem("summary must be a non-empty string")
    invented = item.get("invented", False)
    if not isinstance(invented, bool):
        problem(f"invented must be true or false, got {invented!r}")
    names = item.get("operations", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problem(f"operations must be a list of operationIds, got {names!r}")
        names = []
    if change in _DATE_OF_CHANGE and not names:
        problem(f"a {change!r} entry names the operations it is about")
    operations = []
    for name in names:
        if name not in ops:
            problem(f"operations names {name!r}, which no operation has as operationId")
            continue
        path, method, op = ops[name]
        operations.append(ChangeOperation(name, method, path))
        if change in _DATE_OF_CHANGE:
            key = _DATE_OF_CHANGE[change]
            if op.get("deprecated") is not True:
                problem(f"{change} entry for {name}, which is not deprecated: true")
            elif _date(op.get(key)) is not None and _date(op.get(key)) != date:
                # (a missing or malformed date is the deprecation rule's to report, once)
                problem(f"{change} entry for {name} is dated {date}; its {key} is {op.get(key)}")
    if len(problems) > before:
        return None
    assert date is not None and isinstance(change, str) and isinstance(summary, str)
    return ChangeEntry(date, change, tuple(operations), summary.strip(), invented)

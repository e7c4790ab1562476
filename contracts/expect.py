"""Expectations a scenario step states about its response, and how one is judged.

Kept apart from the scenario runner so the `scenario_expectation` check can judge a recorded
exchange without running anything.

An expectation is a mapping:
    status: 201 | [200, 201]
    code: SCOPE_DENIED                      # error.code of the envelope
    json: {/data/status: New, /data/items: {len: 2}, /data/total: {gte: 1}}
    headers: {WWW-Authenticate: {startswith: Bearer}, Deprecation: true, Retry-After: false}
A value under `json` or `headers` is compared for equality, unless it is a mapping of matchers:
`exists`, `type`, `len`, `gte`, `lte`, `contains`, `startswith`, `matches` (a regular expression),
`equals`. Under `headers`, `true` and `false` alone mean "present" and "absent".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from opsmerge_contracts.exchange import Exchange
from opsmerge_sandbox.jsontypes import JSON_TYPES

_MISSING = object()
MATCHERS = frozenset(
    {"exists", "type", "len", "gte", "lte", "contains", "startswith", "matches", "equals"}
)


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at an RFC 6901 JSON pointer, or `_MISSING`."""
    if pointer in ("", "/"):
        return document
    if not pointer.startswith("/"):
        raise ValueError(f"a JSON pointer starts with '/': {pointer!r}")
    node = document
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if part not in node:
                return _MISSING
            node = node[part]
        elif isinstance(node, list):
            if not part.lstrip("-").isdigit():
                return _MISSING
            index = int(part)
            if not -len(node) <= index < len(node):
                return _MISSING
            node = node[index]
        else:
            return _MISSING
    return node


def is_missing(value: Any) -> bool:
    return value is _MISSING


def _is_matcher(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and set(value) <= MATCHERS


def match_value(actual: Any, expected: Any) -> str | None:
    """None when `actual` satisfies `expected`, else a short reason."""
    if not _is_matcher(expected):
        if actual is _MISSING:
            return "is missing"
        return (
            None if _equal(actual, expected) else f"is {_show(actual)}, expected {_show(expected)}"
        )
    for name, want in expected.items():
        reason = _MATCH[name](actual, want)
        if reason:
            return reason
    return None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return (
            a is b if isinstance(a, bool) and isinstance(b, bool) else a == b and type(a) is type(b)
        )
    return a == b


def _show(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _exists(actual: Any, want: Any) -> str | None:
    present = actual is not _MISSING
    if present == bool(want):
        return None
    return "is missing" if want else f"is present ({_show(actual)}), expected it absent"


def _type(actual: Any, want: str) -> str | None:
    kinds = JSON_TYPES.get(want)
    if kinds is None:
        return f"unknown type {want!r} in the expectation"
    if actual is _MISSING:
        return "is missing"
    if isinstance(actual, bool) and want in ("integer", "number"):
        return f"is a boolean, expected {want}"
    return None if isinstance(actual, kinds) else f"is {_show(actual)}, expected a {want}"


def _len(actual: Any, want: Any) -> str | None:
    if not isinstance(actual, list | str | dict):
        return f"is {_show(actual)}, which has no length"
    if _is_matcher(want):
        reason = match_value(len(actual), want)
        return None if reason is None else f"has length {len(actual)}: {reason}"
    return None if len(actual) == want else f"has length {len(actual)}, expected {want}"


def _gte(actual: Any, want: Any) -> str | None:
    ok = isinstance(actual, int | float) and not isinstance(actual, bool) and actual >= want
    return None if ok else f"is {_show(actual)}, expected at least {want}"


def _lte(actual: Any, want: Any) -> str | None:
    ok = isinstance(actual, int | float) and not isinstance(actual, bool) and actual <= want
    return None if ok else f"is {_show(actual)}, expected at most {want}"


def _contains(actual: Any, want: Any) -> str | None:
    if isinstance(actual, str) and isinstance(want, str):
        return None if want in actual else f"is {_show(actual)}, expected it to contain {want!r}"
    if isinstance(actual, list):
        return None if any(_equal(v, want) for v in actual) else f"does not contain {_show(want)}"
    return f"is {_show(actual)}, which cannot contain {_show(want)}"


def _startswith(actual: Any, want: str) -> str | None:
    ok = isinstance(actual, str) and actual.lower().startswith(str(want).lower())
    return None if ok else f"is {_show(actual)}, expected it to start with {want!r}"


def _matches(actual: Any, want: str) -> str | None:
    ok = isinstance(actual, str) and re.search(want, actual) is not None
    return None if ok else f"is {_show(actual)}, expected it to match /{want}/"


def _equals(actual: Any, want: Any) -> str | None:
    return match_value(actual, want)


_MATCH = {
    "exists": _exists,
    "type": _type,
    "len": _len,
    "gte": _gte,
    "lte": _lte,
    "contains": _contains,
    "startswith": _startswith,
    "matches": _matches,
    "equals": _equals,
}


def unmet(expect: Mapping[str, Any], exchange: Exchange) -> Iterator[str]:
    """Each part of `expect` the exchange's response does not meet, as a sentence."""
    response = exchange.response
    if "status" in expect:
        want = expect["status"]
        allowed = list(want) if isinstance(want, list | tuple) else [want]
        if response.status not in [int(s) for s in allowed]:
            yield f"status is {response.status}, expected {' or '.join(str(s) for s in allowed)}"
    body = response.json()
    if "code" in expect:
        code = resolve_pointer(body, "/error/code") if body is not None else _MISSING
        if code is _MISSING:
            yield f"no error code in the body, expected {expect['code']}"
        elif code != expect["code"]:
            yield f"error code is {code}, expected {expect['code']}"
    for pointer, want in (expect.get("json") or {}).items():
        actual = resolve_pointer(body, pointer) if body is not None else _MISSING
        reason = match_value(actual, want)
        if reason:
            yield f"{pointer} {reason}"
    for name, want in (expect.get("headers") or {}).items():
        actual = response.header(name)
        value: Any = _MISSING if actual is None else actual
        if want is True or want is False:
            reason = _exists(value, want)
        else:
            if isinstance(want, int | float) and not isinstance(want, bool) and actual is not None:
                value = _number(actual)
            reason = match_value(value, want)
        if reason:
            yield f"header {name} {reason}"


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text

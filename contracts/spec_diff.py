"""`drift --against NEWSPEC`: the changes between two spec versions that would break the traffic.

Only the operations the recording used are compared, and for responses only the statuses it
saw, so the list is what this integration would meet, not every change in the document. Written
here rather than taken from a library: the maintained OpenAPI diff tools are a Go program
(oasdiff) and an npm one (openapi-changes), neither installable with the package, and the
Python ones on PyPI are single releases without upkeep; and the comparison needs our flattened
schemas (`allOf` merged) and the operations the traffic used, which this module already has.

A change is `breaking` (an existing client's request or its reading of an answer stops
working) or `warning` (it works, but something to act on: a deprecation, a new enum value that a
client switching on the field does not know).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from opsmerge_contracts.checks import response_key
from opsmerge_sandbox.jsontypes import json_types
from opsmerge_sandbox.spec import Operation, Spec

BREAKING, WARNING = "breaking", "warning"
_DEPTH = 8


def compare(
    old: Spec, new: Spec, used: Iterable[str], statuses: dict[str, set[int]]
) -> list[dict[str, Any]]:
    """Changes from `old` to `new` for the operations (ids of `old`) the traffic used."""
    by_route = {(op.method, op.path): op for op in new.operations}
    by_id = {op.operation_id: op for op in new.operations}
    out: list[dict[str, Any]] = []
    for op_id in sorted(set(used)):
        try:
            before = old.operation(op_id)
        except KeyError:
            continue
        after = by_route.get((before.method, before.path)) or by_id.get(op_id)
        for level, change in _operation(before, after, statuses.get(op_id, set())):
            out.append({"operation": op_id, "level": level, "change": change})
    return out


def _operation(
    before: Operation, after: Operation | None, seen: set[int]
) -> Iterator[tuple[str, str]]:
    if after is None:
        yield BREAKING, f"{before.method} {before.path} is gone"
        return
    if (after.method, after.path) != (before.method, before.path):
        yield BREAKING, f"moved from {before.method} {before.path} to {after.method} {after.path}"
    if after.deprecated and not before.deprecated:
        sunset = f" (sunset {after.sunset})" if after.sunset else ""
        yield WARNING, f"deprecated{sunset}"
    added_scopes = set(after.scopes) - set(before.scopes)
    if added_scopes:
        yield BREAKING, f"needs scope {', '.join(sorted(added_scopes))} now"
    if after.session_only and not before.session_only:
        yield BREAKING, "refuses API keys now (session only)"
    old_params = {(p.location, p.name): p for p in before.params}
    new_params = {(p.location, p.name): p for p in after.params}
    for key, param in new_params.items():
        if key not in old_params and param.required:
            yield BREAKING, f"new required {key[0]} parameter `{key[1]}`"
    for key, param in old_params.items():
        if key[0] == "path":
            continue
        if key not in new_params:
            yield BREAKING, f"{key[0]} parameter `{key[1]}` removed"
            continue
        if new_params[key].required and not param.required:
            yield BREAKING, f"{key[0]} parameter `{key[1]}` is required now"
        yield from _schema(param.schema, new_params[key].schema, f"`{key[1]}`", request=True)
    if after.body_required and not before.body_required:
        yield BREAKING, "the request body is required now"
    if before.body_schema and after.body_schema:
        yield from _schema(before.body_schema, after.body_schema, "request body", request=True)
    elif before.body_schema and not after.body_schema:
        yield BREAKING, "takes no request body any more"
    for status in sorted(seen):
        old_key, new_key = response_key(before, status), response_key(after, status)
        if old_key is None:
            continue  # the traffic's status was undocumented already: drift reports it
        if new_key is None:
            yield BREAKING, f"status {status} is no longer documented"
            continue
        old_schema, new_schema = before.responses.get(old_key), after.responses.get(new_key)
        if old_schema and new_schema:
            yield from _schema(old_schema, new_schema, f"{status} response", request=False)


def _schema(
    old: Any, new: Any, where: str, request: bool, depth: int = 0
) -> Iterator[tuple[str, str]]:
    """Breaking differences between two schemas of one place. In a request, what the client
    sends must stay acceptable; in a response, what the client reads must stay there."""
    if depth > _DEPTH or not isinstance(old, dict) or not isinstance(new, dict):
        return
    old_types, new_types = set(json_types(old)), set(json_types(new))
    if old_types and new_types:
        # a request may send what it sent before; a response may send only what it did before
        sent, allowed = (old_types, new_types) if request else (new_types, old_types)
        if "number" in allowed:
            allowed = allowed | {"integer"}
        if not sent <= allowed:
            yield BREAKING, f"{where}: type {_or(old_types)} -> {_or(new_types)}"
            return
    old_enum, new_enum = old.get("enum"), new.get("enum")
    if isinstance(old_enum, list) and isinstance(new_enum, list):
        removed = [v for v in old_enum if v not in new_enum]
        added = [v for v in new_enum if v not in old_enum]
        if request and removed:
            yield BREAKING, f"{where}: no longer accepts {', '.join(map(str, removed))}"
        if not request and added:
            yield WARNING, f"{where}: may now be {', '.join(map(str, added))}"
    elif not request and isinstance(old_enum, list) and new_enum is None:
        yield WARNING, f"{where}: no longer limited to {len(old_enum)} values"
    elif request and old_enum is None and isinstance(new_enum, list):
        yield BREAKING, f"{where}: only accepts {', '.join(map(str, new_enum))} now"
    old_props, new_props = old.get("properties") or {}, new.get("properties") or {}
    old_req, new_req = set(old.get("required") or ()), set(new.get("required") or ())
    if isinstance(old_props, dict) and isinstance(new_props, dict):
        for name, schema in old_props.items():
            here = f"{where} `{name}`"
            if name not in new_props:
                if request and new.get("additionalProperties") is False:
                    yield BREAKING, f"{here} is no longer accepted"
                elif not request:
                    yield BREAKING, f"{here} removed"
                continue
            if not request and name in old_req and name not in new_req:
                yield BREAKING, f"{here} may be missing now (no longer required)"
            yield from _schema(schema, new_props[name], here, request, depth + 1)
        if request:
            for name in sorted(new_req - old_req):
                yield BREAKING, f"{where} `{name}` is required now"
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        yield from _schema(old["items"], new["items"], f"{where}[]", request, depth + 1)


def _or(types: set[str]) -> str:
    return " or ".join(sorted(types))

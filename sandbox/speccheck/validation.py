"""The OpenAPI 3.1 step: `openapi_spec_validator`, its errors made readable and placed.

The validator reports JSON-schema errors with a path relative to whatever it was checking,
sometimes one schema deep inside the document, and with long messages. A spec author needs the
operation or component it is in and one short sentence, so each error is shortened and traced
back to its place in the document (by its path when that leads from the root, else by finding
the one node it was raised for).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opsmerge_sandbox.speccheck.paths import format_path, locate
from opsmerge_sandbox.speccheck.problems import Problem

_MAX_MESSAGE = 300


def validate_document(raw: dict[str, Any]) -> list[Problem]:
    """OpenAPI 3.1 validation, each error made readable and placed at its operation or component."""
    from openapi_spec_validator import OpenAPIV31SpecValidator
    from openapi_spec_validator.validation.exceptions import DuplicateOperationIDError
    from referencing.exceptions import Unresolvable

    problems: list[Problem] = []
    try:
        for error in OpenAPIV31SpecValidator(raw).iter_errors():
            if isinstance(error, DuplicateOperationIDError):
                continue  # the operation-id rule says it, naming both operations
            problems.append(_from_validation_error(raw, error))
    except Unresolvable as exc:
        ref = str(getattr(exc, "ref", "?"))
        ref = "#" + ref if ref.startswith("/") else ref
        message = f"validation stopped early at the unresolvable $ref {ref!r}; fix it and re-run"
        problems.append(Problem("document", message))
    except Exception as exc:  # its later stages assume an already valid structure
        if not problems:
            problems.append(Problem("document", f"the validator failed: {_short(repr(exc))}"))
    return problems


def _from_validation_error(raw: dict[str, Any], error: Any) -> Problem:
    from jsonschema.exceptions import best_match

    if error.context:
        error = best_match(error.context) or error
    message = _short(str(error.message).split("\n\n", 1)[0])
    parts = _document_path(raw, error)
    if parts is None:
        return Problem("document", message)
    where, _ = locate(raw, parts)
    return Problem(where, f"{message} (at {format_path(parts)})" if parts else message)


def _document_path(raw: dict[str, Any], error: Any) -> tuple[Any, ...] | None:
    """The error's path in the document.

    Whole-document errors carry it. Errors from checking one schema carry a path relative to that
    schema: find the node the path leads from (by identity first, then by equality), if unique.
    """
    path = _in_document(raw, tuple(error.absolute_path))
    if path is not None:
        return path
    path = tuple(error.absolute_path)
    by_identity: list[tuple[Any, ...]] = []
    by_equality: list[tuple[Any, ...]] = []
    for base, node in _nodes(raw, ()):
        found = _follow(node, path)
        if found is error.instance:
            by_identity.append(base + path)
        elif found is not _MISSING and found == error.instance:
            by_equality.append(base + path)
    for candidates in (by_identity, by_equality):
        if len(candidates) == 1:
            return candidates[0]
    return None


_MISSING = object()


def _in_document(raw: dict[str, Any], path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The path with the document's own keys (the validator reports `200` for `'200'`), or None
    when it does not lead anywhere from the root (a path relative to one schema, then)."""
    node: Any = raw
    keys: list[Any] = []
    for part in path:
        if isinstance(node, dict):
            key = part if part in node else str(part)
            if key not in node:
                return None
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key = part
        else:
            return None
        keys.append(key)
        node = node[key]
    return tuple(keys)


def _follow(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if not (in_dict or in_list):
            return _MISSING
        node = node[part]
    return node


def _nodes(node: Any, parts: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        yield parts, node
        for key, value in node.items():
            yield from _nodes(value, (*parts, key))
    elif isinstance(node, list):
        yield parts, node
        for i, value in enumerate(node):
            yield from _nodes(value, (*parts, i))


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."

"""Rules about things that belong to no single operation: references, the Error schema, collections.

They run once per document and report `Problem`s directly, at the component they are about.
The `refs` rule also lets every other rule stay simple: a broken `$ref` is reported here once,
and the operation rules that trip over it step aside (see `checks.lint_document`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opsmerge_sandbox.spec import flatten
from opsmerge_sandbox.speccheck.document import BrokenRef, Document, component_section
from opsmerge_sandbox.speccheck.paths import format_path, locate
from opsmerge_sandbox.speccheck.problems import Problem

DocumentRule = Callable[[Document], Iterable[Problem]]
DOCUMENT_RULES: list[DocumentRule] = []


def document_rule(func: DocumentRule) -> DocumentRule:
    DOCUMENT_RULES.append(func)
    return func


@document_rule
def _refs(doc: Document) -> Iterator[Problem]:
    """Every `$ref` is local and points at something (other rules rely on it)."""
    for parts, ref in _walk_refs(doc.raw, ()):
        try:
            doc.lookup(ref)
        except BrokenRef:
            where, _ = locate(doc.raw, parts)
            reason = "is not a local reference" if not ref.startswith("#/") else "points nowhere"
            yield Problem(where, f"$ref {ref!r} {reason} (at {format_path(parts)})", "refs")


def _walk_refs(node: Any, parts: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield parts, ref
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _walk_refs(value, (*parts, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, dict | list):
                yield from _walk_refs(value, (*parts, i))


@document_rule
def _error_schema(doc: Document) -> Iterator[Problem]:
    """The one Error schema is the error envelope every error response points at."""
    where = "components.schemas.Error"
    schema = component_section(doc.raw, "schemas").get("Error")
    if not isinstance(schema, dict):
        yield Problem(where, "is missing: every error response must use it", "error-schema")
        return
    try:
        flat = flatten(doc.resolve(schema))
    except BrokenRef:
        return
    error = flat.get("properties", {}).get("error", {})
    inner = set(error.get("required", []))
    if "error" not in flat.get("required", []) or not {"code", "message"} <= inner:
        yield Problem(where, "must require error with error.code and error.message", "error-schema")


@document_rule
def _collections(doc: Document) -> Iterator[Problem]:
    """x-collection, x-lifecycle and x-create-set parse, and names and id prefixes are unique.

    The problems are those `sandbox.extensions` finds when the sandbox loads the spec.
    """
    for problem in doc.collection_problems:
        yield Problem(problem.where, problem.message, "collections")

"""Rules for what the spec promises about change and about its own inventions.

A deprecated operation stops working on its sunset date with `410 OPERATION_SUNSET`, so its
responses must document that 410 (with the Deprecation and Sunset headers it still carries), or
a client generated from the spec has no branch for it. The changelog (`x-changelog`) must parse
and agree with the operations' dates (`sandbox.changelog` decides, as when the docs load it).
An `x-invented` marker is a boolean `true`: anything else would read as a marker to a person and
as nothing to the docs page that shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opsmerge_sandbox.changelog import parse_changelog
from opsmerge_sandbox.pipeline.sunset import SUNSET_CODE
from opsmerge_sandbox.speccheck.document import Document, OperationView
from opsmerge_sandbox.speccheck.document_rules import document_rule
from opsmerge_sandbox.speccheck.operation_rules import operation_rule
from opsmerge_sandbox.speccheck.paths import format_path, locate
from opsmerge_sandbox.speccheck.problems import Finding, Problem

INVENTED = "x-invented"


@operation_rule("sunset")
def _sunset_response(doc: Document, op: OperationView) -> Iterator[Finding]:
    if op.raw.get("deprecated") is not True:
        return
    gone = str(doc.catalogue.status_of(SUNSET_CODE)) if SUNSET_CODE in doc.catalogue.codes else None
    if gone is None:
        yield Finding(f"is deprecated, but the error catalogue lacks {SUNSET_CODE}")
        return
    response = next((r for r in doc.responses(op) if r.status == gone), None)
    if response is None:
        yield Finding(f"is deprecated but documents no {gone} ({SUNSET_CODE}) response")
        return
    names = response.header_names()
    missing = [h for h in ("Deprecation", "Sunset") if h.lower() not in names]
    if missing:
        yield Finding(f"{response.label} lacks {', '.join(missing)}", response.component)


@document_rule
def _changelog(doc: Document) -> Iterator[Problem]:
    """x-changelog parses, names real operations and repeats their deprecation and sunset dates."""
    _, problems = parse_changelog(doc.raw)
    for problem in problems:
        yield Problem(problem.where, problem.message, "changelog")


@document_rule
def _invented_markers(doc: Document) -> Iterator[Problem]:
    """Every `x-invented` in the document is `true`."""
    for parts, value in _walk_markers(doc.raw, ()):
        if value is not True:
            where, rest = locate(doc.raw, parts)
            at = f" (at {format_path(rest)})" if rest else ""
            yield Problem(where, f"{INVENTED} must be true, got {value!r}{at}", "invented")


def _walk_markers(node: Any, parts: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        if INVENTED in node:
            yield parts, node[INVENTED]
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _walk_markers(value, (*parts, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, dict | list):
                yield from _walk_markers(value, (*parts, i))

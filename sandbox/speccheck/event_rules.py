"""The document rule for `x-sandbox-events`: the rules that fire, checked by the parser the
sandbox itself loads them with, so `spec check` and the start-up refusal say the same thing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opsmerge_sandbox.events.declarations import EXTENSION, parse_events
from opsmerge_sandbox.spec import flatten
from opsmerge_sandbox.speccheck.document import BrokenRef, Document, component_section
from opsmerge_sandbox.speccheck.document_rules import document_rule
from opsmerge_sandbox.speccheck.problems import Problem


@document_rule
def _events(doc: Document) -> Iterator[Problem]:
    """Collections, fields, triggers and actions named by `x-sandbox-events` exist."""
    if EXTENSION not in doc.raw:
        return
    schemas = component_section(doc.raw, "schemas")
    properties: dict[str, Any] = {}
    for collection, schema_name in doc.collections.items():
        try:
            flat = flatten(doc.resolve(schemas[schema_name]))
        except BrokenRef:
            continue  # reported once by the refs rule
        properties[collection] = flat.get("properties") or {}
    _, problems = parse_events(doc.raw, properties)
    for problem in problems:
        yield Problem(EXTENSION, problem.message, "events")

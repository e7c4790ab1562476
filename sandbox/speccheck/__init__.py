"""`opsmerge-sandbox spec check`: validate an OpenAPI document, then lint the OpsMerge conventions.

The sandbox and the contracts read everything from the spec, so a spec that breaks a convention
breaks them quietly (an operation without scopes is served to every key, an error example with a
code the catalogue lacks teaches clients a code the server never sends). The check runs in two
steps: `openapi_spec_validator` answers "is this OpenAPI 3.1?" (`validation`), then one small
rule per convention answers "is this the OpsMerge API the tools expect?" (`operation_rules`,
`response_rules`, `sandbox_rules`, `document_rules`, over the model in `document`). Each rule
names the operation it found a problem in; a problem in a shared component
(`components.responses.RateLimited`, say) is reported once, at the component, with the
operations that use it (`lint`). The CLI entry point is `sandbox.commands.spec_check`.
"""

from __future__ import annotations

from opsmerge_sandbox.speccheck.document import (
    BrokenRef,
    Document,
    OperationView,
    ResponseView,
    build_document,
    count_operations,
)
from opsmerge_sandbox.speccheck.document_rules import DOCUMENT_RULES, document_rule
from opsmerge_sandbox.speccheck.lint import check_spec, lint_document
from opsmerge_sandbox.speccheck.operation_rules import OPERATION_RULES, operation_rule
from opsmerge_sandbox.speccheck.paths import format_path, locate
from opsmerge_sandbox.speccheck.problems import Finding, Problem
from opsmerge_sandbox.speccheck.validation import validate_document

__all__ = [
    "DOCUMENT_RULES",
    "OPERATION_RULES",
    "BrokenRef",
    "Document",
    "Finding",
    "OperationView",
    "Problem",
    "ResponseView",
    "build_document",
    "check_spec",
    "count_operations",
    "document_rule",
    "format_path",
    "lint_document",
    "locate",
    "operation_rule",
    "validate_document",
]

"""The two steps of a check put together: OpenAPI validation, then the OpsMerge conventions.

Validation comes first because it answers the more basic question ("is this OpenAPI 3.1?").
The convention rules then run operation by operation; a problem found in a shared component
(`components.responses.RateLimited`, say) would otherwise repeat for every operation using it,
so it is reported once, at the component, with the operations that use it.
"""

from __future__ import annotations

from typing import Any

from opsmerge_sandbox.catalogue import Catalogue
from opsmerge_sandbox.speccheck import (  # noqa: F401  (register their rules)
    audit_rules,
    auth_rules,
    event_rules,
    marker_rules,
    response_rules,
    sandbox_rules,
)
from opsmerge_sandbox.speccheck.document import BrokenRef, build_document
from opsmerge_sandbox.speccheck.document_rules import DOCUMENT_RULES
from opsmerge_sandbox.speccheck.operation_rules import OPERATION_RULES
from opsmerge_sandbox.speccheck.problems import Finding, Problem
from opsmerge_sandbox.speccheck.validation import validate_document


def lint_document(raw: dict[str, Any], catalogue: Catalogue) -> list[Problem]:
    """Every convention rule over the document; problems in shared components are merged."""
    doc = build_document(raw, catalogue)
    problems: list[Problem] = []
    for doc_rule in DOCUMENT_RULES:
        problems.extend(doc_rule(doc))
    shared: dict[tuple[str, str, str], list[str]] = {}
    for op in doc.operations:
        for name, rule in OPERATION_RULES:
            try:
                findings = list(rule(doc, op))
            except BrokenRef:
                continue  # reported once by the refs rule
            except (TypeError, AttributeError, KeyError, ValueError) as exc:
                findings = [Finding(f"could not apply this rule ({type(exc).__name__}: {exc})")]
            for finding in findings:
                if finding.component:
                    key = (finding.component, finding.message, name)
                    shared.setdefault(key, []).append(op.name)
                else:
                    problems.append(Problem(op.where, finding.message, name))
    for (component, message, name), users in shared.items():
        shown = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
        problems.append(Problem(component, f"{message} (used by {shown})", name))
    return list(dict.fromkeys(problems))


def check_spec(raw: dict[str, Any], catalogue: Catalogue) -> list[Problem]:
    """Validation problems first, then convention problems; empty when the spec is sound."""
    return validate_document(raw) + lint_document(raw, catalogue)

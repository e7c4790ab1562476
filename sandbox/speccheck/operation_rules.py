"""The operation rules and their registry, plus the rules about what an operation declares.

Each convention is one function with one signature, `(Document, OperationView) -> Finding...`,
registered under the name the report shows, so adding a convention is adding one function and
a reader can find the code behind `[security]` by its name. The registry lists rules in the
order they are registered, and that is the order an operation's problems are printed in: the
identity and security rules here, then `response_rules`, then `sandbox_rules` (see `checks`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opsmerge_sandbox.speccheck.document import Document, OperationView, component_section
from opsmerge_sandbox.speccheck.problems import Finding

STABILITY_TIERS = frozenset({"stable", "beta", "internal"})
SCOPE_PATTERN = re.compile(r"^[a-z][a-z_]*:(read|write|execute)$")
OPERATION_ID_PATTERN = re.compile(r"^[a-z][A-Za-z0-9]*$")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

OperationRule = Callable[[Document, OperationView], Iterable[Finding]]
OPERATION_RULES: list[tuple[str, OperationRule]] = []


def operation_rule(name: str) -> Callable[[OperationRule], OperationRule]:
    def register(func: OperationRule) -> OperationRule:
        OPERATION_RULES.append((name, func))
        return func

    return register


@operation_rule("operation-id")
def _operation_id(doc: Document, op: OperationView) -> Iterator[Finding]:
    value = op.raw.get("operationId")
    if not isinstance(value, str) or not value:
        yield Finding("has no operationId")
        return
    if not OPERATION_ID_PATTERN.match(value):
        yield Finding(f"operationId {value!r} is not lowerCamelCase")
    first = doc.first_with_id[value]
    if first is not op:
        yield Finding(f"operationId {value!r} is already used by {first.method} {first.path}")


@operation_rule("tag")
def _tag(doc: Document, op: OperationView) -> Iterator[Finding]:
    tags = op.raw.get("tags")
    if not isinstance(tags, list) or len(tags) != 1:
        count = len(tags) if isinstance(tags, list) else 0
        yield Finding(f"needs exactly one tag, has {count}")
        return
    declared = doc.raw.get("tags")
    if isinstance(declared, list):
        names = {t.get("name") for t in declared if isinstance(t, dict)}
        if tags[0] not in names:
            yield Finding(f"tag {tags[0]!r} is not declared in the top-level tags")


@operation_rule("summary")
def _summary(doc: Document, op: OperationView) -> Iterator[Finding]:
    summary = op.raw.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        yield Finding("has no summary")


@operation_rule("stability")
def _stability(doc: Document, op: OperationView) -> Iterator[Finding]:
    tier = op.raw.get("x-stability")
    if tier not in STABILITY_TIERS:
        allowed = ", ".join(sorted(STABILITY_TIERS))
        yield Finding(f"x-stability is {tier!r}; expected one of {allowed}")


@operation_rule("security")
def _security(doc: Document, op: OperationView) -> Iterator[Finding]:
    security = op.raw.get("security", doc.raw.get("security"))
    if security is None:
        yield Finding("has no security requirement (use [] for a public operation)")
        return
    if not isinstance(security, list):
        yield Finding("security must be a list of requirements")
        return
    schemes = component_section(doc.raw, "securitySchemes")
    bearer = 0
    for requirement in security:
        if not isinstance(requirement, dict) or len(requirement) != 1:
            yield Finding("each security requirement must name exactly one scheme")
            continue
        [(scheme, scopes)] = requirement.items()
        if scheme not in schemes:
            yield Finding(f"security scheme {scheme!r} is not declared in components")
        if scheme == "sessionAuth":
            if scopes:
                yield Finding("sessionAuth takes no scopes")
        elif scheme == "bearerAuth":
            bearer += 1
            yield from _bearer_scopes(op, scopes)
        else:
            yield Finding(f"security scheme {scheme!r} is neither bearerAuth nor sessionAuth")
    if bearer > 1:
        yield Finding("lists bearerAuth more than once")


def _bearer_scopes(op: OperationView, scopes: Any) -> Iterator[Finding]:
    if not isinstance(scopes, list) or len(scopes) > 1:
        yield Finding(f"bearerAuth takes at most one scope, got {scopes!r}")
        return
    for scope in scopes:
        if not isinstance(scope, str) or not SCOPE_PATTERN.match(scope):
            yield Finding(f"scope {scope!r} is not family:level (level read, write or execute)")
            continue
        level = scope.split(":", 1)[1]
        if op.method in READ_METHODS and level != "read":
            yield Finding(f"scope {scope!r} on a {op.method}: reads need a :read scope")
        elif op.method not in READ_METHODS and level == "read":
            yield Finding(f"scope {scope!r} on a {op.method}: changes need :write or :execute")

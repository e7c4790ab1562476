"""The operation rule for `x-sandbox`, the extension that tells the sandbox how to serve a call.

The sandbox builds its routes from `x-sandbox` alone, so a typo there (an unknown kind or key, a
collection no schema declares, an error code the catalogue lacks or whose status the operation
does not document) would only show up as a wrong answer at run time; this rule says it first.
What is valid is decided in one place, `sandbox.extensions`, which also parses the extension
when the sandbox loads the spec; this rule adds what needs the catalogue and the responses.
"""

from __future__ import annotations

from collections.abc import Iterator

from opsmerge_sandbox.speccheck.document import Document, OperationView
from opsmerge_sandbox.speccheck.operation_rules import operation_rule
from opsmerge_sandbox.speccheck.problems import Finding


@operation_rule("x-sandbox")
def _x_sandbox(doc: Document, op: OperationView) -> Iterator[Finding]:
    for message in op.hint_problems:
        yield Finding(message)
    codes = list(op.hints.codes()) + list(_blocker_codes(doc, op))
    if not codes:
        return
    documented = {r.status for r in doc.responses(op)}
    for key, code in codes:
        where = key if key.startswith("components.") else f"x-sandbox.{key}"
        if code not in doc.catalogue.codes:
            yield Finding(f"{where} {code!r} is not in the error catalogue")
        elif str(doc.catalogue.status_of(code)) not in documented:
            status = doc.catalogue.status_of(code)
            yield Finding(f"{where} {code} answers {status}, which is not documented")


def _blocker_codes(doc: Document, op: OperationView) -> Iterator[tuple[str, str]]:
    """The codes of the collection's `x-refuse-while` rules an update or an action may answer:
    one that sets a rule's `into` field, or whose body may (an update's body with no closed set
    of fields may set any); each code once, at the first rule giving it."""
    hints = op.hints
    if hints.kind not in ("update", "action"):
        return
    schema_name = doc.collections.get(hints.collection or "")
    body = doc.body_fields(op) if hints.kind == "update" else set()
    seen: set[str] = set()
    for rule in doc.blockers.get(hints.collection or "", ()):
        entered = any(f in hints.sets or body is None or f in body for f in rule.into)
        if entered and rule.code not in seen:
            seen.add(rule.code)
            yield f"components.schemas.{schema_name}.x-refuse-while[{rule.at}].code", rule.code

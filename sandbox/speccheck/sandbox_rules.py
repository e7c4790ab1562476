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
    codes = list(op.hints.codes())
    if not codes:
        return
    documented = {r.status for r in doc.responses(op)}
    for key, code in codes:
        if code not in doc.catalogue.codes:
            yield Finding(f"x-sandbox.{key} {code!r} is not in the error catalogue")
        elif str(doc.catalogue.status_of(code)) not in documented:
            status = doc.catalogue.status_of(code)
            yield Finding(f"x-sandbox.{key} {code} answers {status}, which is not documented")

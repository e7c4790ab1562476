"""The operation rule for `x-sandbox`, the extension that tells the sandbox how to serve a call.

The sandbox builds its routes from `x-sandbox` alone, so a typo there (an unknown kind, a
collection no schema declares, an error code the catalogue lacks or whose status the operation
does not document) would only show up as a wrong answer at run time; this rule says it first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sandbox.speccheck.document import Document, OperationView
from sandbox.speccheck.operation_rules import operation_rule
from sandbox.speccheck.problems import Finding

SANDBOX_KINDS = frozenset({"list", "get", "create", "update", "delete", "action", "identity"})


@operation_rule("x-sandbox")
def _x_sandbox(doc: Document, op: OperationView) -> Iterator[Finding]:
    ext = op.raw.get("x-sandbox")
    if not isinstance(ext, dict):
        yield Finding("has no x-sandbox extension (how the sandbox serves it)")
        return
    kind = ext.get("kind")
    if kind not in SANDBOX_KINDS:
        allowed = ", ".join(sorted(SANDBOX_KINDS))
        yield Finding(f"x-sandbox.kind is {kind!r}; expected one of {allowed}")
    if kind not in (None, "identity") and "collection" not in ext:
        yield Finding(f"x-sandbox.kind {kind} needs x-sandbox.collection")
    for key, name in _collection_names(ext):
        if name not in doc.collections:
            yield Finding(f"{key} {name!r} names no schema with a matching x-collection")
    documented = {r.status for r in doc.responses(op)}
    for key, code in ext.items():
        if not (key == "code" or str(key).endswith("-code")):
            continue
        if code not in doc.catalogue.codes:
            yield Finding(f"x-sandbox.{key} {code!r} is not in the error catalogue")
        elif str(doc.catalogue.status_of(code)) not in documented:
            status = doc.catalogue.status_of(code)
            yield Finding(f"x-sandbox.{key} {code} answers {status}, which is not documented")
    yield from _refusals(doc, ext, documented)


def _refusals(doc: Document, ext: dict[str, Any], documented: set[str]) -> Iterator[Finding]:
    """`refuse-when`: a list of {field, contains | equals, last?, code, message} guards."""
    rules = ext.get("refuse-when")
    if rules is None:
        return
    if not isinstance(rules, list):
        yield Finding("x-sandbox.refuse-when must be a list of guards")
        return
    for i, rule in enumerate(rules):
        where = f"x-sandbox.refuse-when[{i}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("field"), str):
            yield Finding(f"{where} needs a field name")
            continue
        if ("contains" in rule) == ("equals" in rule):
            yield Finding(f"{where} needs exactly one of contains or equals")
        if not isinstance(rule.get("last", False), bool):
            yield Finding(f"{where}.last must be true or false")
        if not isinstance(rule.get("message"), str) or not rule["message"]:
            yield Finding(f"{where} needs a message")
        code = rule.get("code")
        if code not in doc.catalogue.codes:
            yield Finding(f"{where}.code {code!r} is not in the error catalogue")
        elif str(doc.catalogue.status_of(code)) not in documented:
            yield Finding(f"{where}.code {code} answers {doc.catalogue.status_of(code)}, "
                          "which is not documented")


def _collection_names(ext: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if "collection" in ext:
        yield "x-sandbox.collection", ext["collection"]
    for key in ("parent", "creates"):
        sub = ext.get(key)
        if isinstance(sub, dict) and "collection" in sub:
            yield f"x-sandbox.{key}.collection", sub["collection"]

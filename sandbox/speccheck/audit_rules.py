"""The document rule for `x-sandbox-audit`: where every API write records its entry.

The sandbox stages an entry for each write it serves; a typo in the declaration (a collection or
field the schemas lack) would surface only on the first write, as a 500. And an entry's action and
object type are values of the log's own fields: one a write records that the field's enum does
not offer is an entry its own schema refuses, which a client validating answers rejects. This
rule says both first, in the words the sandbox uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opsmerge_sandbox.pipeline.audit import AuditModel, model_problems, operation_actions
from opsmerge_sandbox.spec import flatten
from opsmerge_sandbox.speccheck.document import BrokenRef, Document, component_section
from opsmerge_sandbox.speccheck.document_rules import document_rule
from opsmerge_sandbox.speccheck.problems import Problem
from opsmerge_sandbox.world.key_records import keys_collection

WHERE = "x-sandbox-audit"


@document_rule
def _audit_model(doc: Document) -> Iterator[Problem]:
    """`x-sandbox-audit` names the log's collection and fields, and every action a write can
    record is one the log's action and object-type fields offer."""
    if "x-sandbox-audit" not in doc.raw:
        return
    properties = _properties(doc)
    problems = list(model_problems(doc.raw, properties))
    for message in problems:
        yield Problem(WHERE, message, "audit")
    model = AuditModel.from_spec(doc.raw)
    if problems or model is None:
        return
    offered = {part: _enum(properties, model, part) for part in ("action", "object-type")}
    yield from _key_use(doc, model, offered["action"])
    for op in doc.operations:
        for kind, action in operation_actions(model, doc.collections, op.hints):
            for part, value in (("object-type", kind), ("action", action)):
                allowed = offered[part]
                if allowed is not None and value not in allowed:
                    field = model.fields[part]
                    yield Problem(
                        op.where,
                        f"records audit entries with {field} {value!r}, which "
                        f"{model.collection}.{field} does not offer (add it to its enum, or "
                        "name the verb with x-sandbox.audit)",
                        "audit",
                    )


def _key_use(
    doc: Document, model: AuditModel, actions: frozenset[Any] | None
) -> Iterator[Problem]:
    """A logged key use names the collection listing the keys, and its action is the log's."""
    if model.key_use is None:
        return
    collection = keys_collection(doc.raw.get("x-sandbox-auth"))
    if collection not in doc.collections:
        yield Problem(
            WHERE, "key-use needs x-sandbox-auth.keys.collection: the collection listing keys",
            "audit",
        )
        return
    action = f"{model.object_type(collection, doc.collections[collection])}.{model.key_use[0]}"
    if actions is not None and action not in actions:
        field = model.fields["action"]
        yield Problem(
            WHERE,
            f"key-use records entries with {field} {action!r}, which "
            f"{model.collection}.{field} does not offer",
            "audit",
        )


def _properties(doc: Document) -> dict[str, dict[str, Any]]:
    """Each collection's flattened properties (a schema with a broken $ref has none)."""
    schemas = component_section(doc.raw, "schemas")
    out: dict[str, dict[str, Any]] = {}
    for collection, schema_name in doc.collections.items():
        try:
            flat = flatten(doc.resolve(schemas[schema_name]))
        except BrokenRef:
            flat = {}  # reported once by the refs rule
        out[collection] = dict(flat.get("properties") or {})
    return out


def _enum(
    properties: dict[str, dict[str, Any]], model: AuditModel, part: str
) -> frozenset[Any] | None:
    """The values the log's field for `part` offers (None: any string)."""
    prop = properties[model.collection].get(model.fields[part]) or {}
    values = prop.get("enum")
    return frozenset(values) if isinstance(values, list) else None

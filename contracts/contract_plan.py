"""Which contracts each spec operation gets, decided from the spec alone.

The built-in suite parametrizes over these lists, so an operation added to the spec gets its
contracts with no code: every operation gets the conformance and auth contracts, list operations
the pagination walk, create and update operations generated bodies, and reads by id the unknown-id
contract. What a profile allows (writes only in sandbox and staging) is decided when they run.
"""

from __future__ import annotations

from opsmerge_sandbox.jsontypes import json_types
from opsmerge_sandbox.spec import Operation, Spec, ref_of

SAFE_METHODS = frozenset({"GET", "HEAD"})


def is_write(op: Operation) -> bool:
    return op.method not in SAFE_METHODS


def path_params(op: Operation) -> list[str]:
    return [seg[1:-1] for seg in op.path.split("/") if seg.startswith("{") and seg.endswith("}")]


def conformance_operations(spec: Spec) -> list[Operation]:
    return list(spec.operations)


def auth_operations(spec: Spec) -> list[Operation]:
    return list(spec.operations)


def list_operations(spec: Spec) -> list[Operation]:
    return [op for op in spec.operations if op.kind == "list" and not op.session_only]


def body_operations(spec: Spec) -> list[Operation]:
    return [
        op
        for op in spec.operations
        if op.kind in ("create", "update") and op.body_schema and not op.session_only
    ]


def unknown_id_operations(spec: Spec) -> list[Operation]:
    return [
        op
        for op in spec.operations
        if op.method == "GET" and "id" in path_params(op) and not op.session_only
    ]


def role_matrix_operations(spec: Spec) -> list[Operation]:
    """Every operation an API key may be sent to (session-only ones refuse every key alike)."""
    return [op for op in spec.operations if not op.session_only]


def collection_op(spec: Spec, collection: str, kind: str) -> Operation | None:
    """The operation of a kind serving a collection by id (get, delete) or as a whole (create)."""
    for op in spec.operations:
        if op.kind != kind or op.hints.collection != collection or op.session_only:
            continue
        if kind in ("get", "delete", "update") and "id" not in path_params(op):
            continue
        if kind == "create" and op.hints.parent is None and "{" in op.path:
            continue
        return op
    return None


def sibling_references(spec: Spec, op: Operation) -> list[tuple[str, tuple[str, ...]]]:
    """(body field, the record's fields the named record must share) for each reference an
    action sets from its body to its own collection (a merge of the record into another): the
    collection's invariants refuse any but another record like it, one with the same required
    references that are never null (the same client) in a state the action allows (its
    `when`), which the body's schema cannot say."""
    collection = op.hints.collection
    coll = spec.collections.get(collection or "")
    if op.kind != "action" or coll is None:
        return []
    props = coll.schema.get("properties") or {}
    required = set(coll.schema.get("required") or ())
    shared = tuple(
        f
        for f, prop in props.items()
        if f in required and ref_of(prop) is not None and "null" not in json_types(prop)
    )
    return [
        (name, shared)
        for field, name in op.hints.sets_from_body.items()
        if (ref_of(props.get(field) or {}) or ("",))[0] == collection
    ]


def webhook_operations(spec: Spec) -> list[Operation]:
    """The writes that are events (`x-sandbox-events`): a rule on each must post its webhook."""
    model = spec.events
    if model is None:
        return []
    found: list[Operation] = []
    for event in model.events.values():
        if event.collection is None:
            continue
        kind = "create" if event.on == "created" else "update"
        op = collection_op(spec, event.collection, kind)
        if op is not None and op not in found:
            found.append(op)
    return found

"""Builds a plausible request for any operation of the spec, from the spec and the seeded world.

Path ids come from records that satisfy the operation's `x-sandbox.when`; bodies copy the
fields of an existing record of the collection (the world generator made them valid) and fill
references with real ids. Nothing here names a resource, so a new operation is covered for free.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opsmerge_contracts.contract_plan import sibling_references
from opsmerge_contracts.probes import unique_value
from opsmerge_sandbox.jsontypes import json_types
from opsmerge_sandbox.pipeline.record_invariants import WriteInvariants
from opsmerge_sandbox.spec import Operation, Schema, ref_of
from opsmerge_sandbox.state import SandboxState

_unique = itertools.count(1)


@dataclass
class Call:
    method: str
    path: str
    json: Any = None


_clock_rules: dict[int, WriteInvariants] = {}


def _clock(state: SandboxState) -> WriteInvariants:
    """The spec's rules whose statuses follow the clock, compiled once per spec."""
    rules = _clock_rules.get(id(state.spec))
    if rules is None:
        schemas = {n: c.schema for n, c in state.spec.collections.items()}
        rules = _clock_rules[id(state.spec)] = WriteInvariants(schemas)
    return rules


def _record(
    state: SandboxState,
    collection: str,
    when: Mapping[str, Sequence[Any]] | None = None,
    avoid: set[str] | None = None,
    settled: bool = False,
) -> dict[str, Any]:
    """The first record `when` admits as it reads now; `settled`: one that no record of the
    collection's `x-refuse-while` rules holds back (a client with no open work to leave), else,
    when every one is held back (each contract in force has billed), the first, whose answer is
    then the rule's documented refusal."""
    view = state.workspaces.get().view(collection)
    filters: list[tuple[str, Any]] = []
    now = int(state.clock.now())
    held: dict[str, Any] | None = None
    for record in view.query(filters, None, "id", False):
        if avoid and record["id"] in avoid:
            continue
        # judged as the record reads now: a status the clock moved since it was stored
        shown = _clock(state).follow_clock(collection, record, now) or record
        if not all(shown.get(f) in allowed for f, allowed in (when or {}).items()):
            continue
        if settled and _held_back(state, collection, record["id"], now):
            held = held or record
            continue
        return record
    if held is not None:
        return held
    raise LookupError(f"no {collection} record satisfies {when}")


def _held_back(state: SandboxState, collection: str, record_id: str, now: int) -> bool:
    """Whether a record of a `refuse-while` rule's collection names the record and holds its
    values, as it reads now."""
    workspace = state.workspaces.get()
    for rule in state.spec.collections[collection].blockers:
        for other in workspace.view(rule.collection).query(
            [(rule.field, record_id)], None, "id", False
        ):
            if rule.holds(_clock(state).follow_clock(rule.collection, other, now) or other):
                return True
    return False


def _ref_of(schema: Schema) -> str | None:
    ref = ref_of(schema)
    return ref[0] if ref else None


def body_for(
    state: SandboxState,
    op: Operation,
    source: dict[str, Any] | None,
    subject: dict[str, Any] | None = None,
) -> Any:
    schema = op.body_schema
    if schema is None:
        return None
    props: dict[str, Schema] = schema.get("properties", {})
    body: dict[str, Any] = {}
    wanted = set(schema.get("required", [])) | ({k for k in props if source and k in source})
    for name in props:
        if name not in wanted:
            continue
        prop = props[name]
        target = _ref_of(prop)
        items = prop.get("items") if isinstance(prop.get("items"), dict) else None
        if target:
            # the source's own reference, when it has one: its times were made to follow it (and
            # its own null, where the source names none: another client's record would not fit)
            named = (source or {}).get(name)
            if named is None and source and name in source and "null" in json_types(prop):
                body[name] = None
            else:
                body[name] = named if isinstance(named, str) else _record(state, target)["id"]
        elif items is not None and _ref_of(items):
            # a script runs only on agents of its platforms (the spec's x-invariants refuse others)
            fits = None
            if subject and "platforms" in subject:
                fits = {"platform": subject["platforms"]}
            body[name] = [_record(state, _ref_of(items) or "", fits)["id"]]
        elif prop.get("format") == "email":
            body[name] = f"new.person{next(_unique)}@example.com"
        elif source and name in source:
            body[name] = source[name]
        elif "default" in prop:
            body[name] = prop["default"]
        elif "enum" in prop:
            body[name] = next(v for v in prop["enum"] if v is not None)
        elif "string" in json_types(prop):
            body[name] = "Sandbox test value"
    for name in op.hints.unique_fields if op.kind == "create" else ():
        value = body.get(name)
        if isinstance(value, str) and "@" not in value:  # one no other record holds
            body[name] = unique_value(value, f"n{next(_unique)}")
    if op.kind == "update":
        # an update needs at least one field; keep the ones that are safe to re-send
        body = {k: v for k, v in body.items() if not _ref_of(props[k])} or body
        if not body:
            name = next(iter(props))
            body = {name: (source or {}).get(name)}
    return body


def call_for(state: SandboxState, op: Operation) -> Call:
    hints = op.hints
    collection = hints.collection
    record: dict[str, Any] | None = None
    path = op.path
    if hints.parent is not None:
        parent_record = _record(state, hints.parent.collection)
        path = path.replace("{" + hints.parent.param + "}", parent_record["id"])
    if "{id}" in path and collection:
        blockers = state.spec.collections[collection].blockers
        settled = op.kind == "action" and any(f in hints.sets for b in blockers for f in b.into)
        record = _record(state, collection, hints.when, settled=settled)
        path = path.replace("{id}", record["id"])
    elif hints.fixed_id and collection:
        record = state.workspaces.get().get(collection, hints.fixed_id)
    elif collection and state.bases[collection].records:
        record = state.bases[collection].records[0]
    source = record if op.kind in ("create", "update") else None
    if op.kind == "action" and op.body_schema is not None:
        source = None
    body = body_for(state, op, source, record)
    if op.kind == "action" and record is not None and isinstance(body, dict):
        _name_a_sibling(state, op, record, body)
    return Call(op.method, path, body)


def _name_a_sibling(
    state: SandboxState, op: Operation, record: dict[str, Any], body: dict[str, Any]
) -> None:
    """An action that sets a reference to its own collection from the body (a merge into
    another record) names another record like its own (`contract_plan.sibling_references`)."""
    collection = op.hints.collection or ""
    for name, shared in sibling_references(state.spec, op):
        if name in body:
            like = {f: (record[f],) for f in shared}
            body[name] = _record(state, collection, {**like, **op.hints.when}, {record["id"]})["id"]

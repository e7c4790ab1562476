"""The probes: what each derived contract sends, recorded with the roles the checks judge.

A probe decides what to send from the spec and the profile, sends it through the test's
`Contract` (so the safety gate, the budget and the pacing apply), and ends with `verify()`.
What cannot be sent under the profile or against this target is skipped with the reason.
Writes touch only records the run created, except in the sandbox profile, where seeded records
may be changed too (the caller's own user and roles never are).
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from opsmerge_contracts import rolekeys
from opsmerge_contracts.bodies import invalid_bodies, valid_bodies
from opsmerge_contracts.contract_plan import (
    collection_op,
    is_write,
    path_params,
    sibling_references,
)
from opsmerge_contracts.session import LIMITED, Contract
from opsmerge_contracts.webhook_receiver import WebhookReceiver
from opsmerge_sandbox.events.declarations import (
    ACTION_TYPE,
    ACTIONS,
    CONDITIONS,
    ENABLED,
    SECRET,
    TRIGGER,
)
from opsmerge_sandbox.extensions import thaw
from opsmerge_sandbox.spec import Operation

PLACEHOLDER = "contracts0missing"
MALFORMED = (
    ("unknown", "Bearer om_contracts_unknown_key_0000000000"),
    ("malformed", "Bearer not-an-opsmerge-key"),
)


# --- helpers ----------------------------------------------------------------------------------


def _collection(op: Operation) -> str:
    return op.hints.collection or ""


def _prefix(c: Contract, collection: str) -> str:
    coll = c.spec.collections.get(collection)
    return coll.id_prefix if coll else "x"


def _require_scope(c: Contract, op: Operation) -> None:
    scopes = c.run.scopes_of(c.target.key)
    if scopes is None:
        pytest.fail(
            "the key's identity could not be read from the identity operation "
            "(/auth/me): is the key valid for this target?",
            pytrace=False,
        )
    missing = [s for s in op.scopes if s not in scopes]
    if missing:
        pytest.skip(f"the key lacks {', '.join(missing)}")


def _require_writes(c: Contract, op: Operation) -> None:
    if c.profile == "production" and is_write(op):
        pytest.skip(f"the production profile sends only GET and HEAD ({op.method} {op.path})")


def _fill(op: Operation, values: dict[str, str]) -> str:
    path = op.path
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return path


def _parent_id(c: Contract, op: Operation) -> str | None:
    parent = op.hints.parent
    if parent is None:
        return None
    return c.run.pool.real_id(parent.collection)


def _path(
    c: Contract,
    op: Operation,
    record_id: str | None = None,
    placeholders: bool = False,
    parent_id: str | None = None,
) -> str:
    """The op's path with every parameter filled: real ids, or placeholders when asked."""
    values: dict[str, str] = {}
    parent = op.hints.parent
    for name in path_params(op):
        if parent is not None and name == parent.param:
            value = parent_id or (None if placeholders else _parent_id(c, op))
            value = value or f"{_prefix(c, parent.collection)}_{PLACEHOLDER}"
        elif name == "id":
            value = record_id
            if value is None and not placeholders:
                value = c.run.pool.real_id(_collection(op))
                if value is None:
                    pytest.skip(
                        f"the target has no {_collection(op)} record to use for {op.operation_id}"
                    )
            value = value or f"{_prefix(c, _collection(op))}_{PLACEHOLDER}"
        else:
            pytest.skip(f"cannot fill the path parameter {name!r} of {op.operation_id}")
        values[name] = value
    return _fill(op, values)


def _data(response: Any) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("data") if isinstance(body, dict) else None


_SERIAL = itertools.count(1)


def unique_value(value: Any, mark: str) -> Any:
    """A value for a field no two records may share, made this body's own.

    Records a delete only retires (a deactivated user) keep their values, so a body repeated in a
    later run, or by another contract, must not meet its own earlier record.
    """
    if not isinstance(value, str) or not value:
        return value
    local, at, domain = value.partition("@")
    if at:
        return f"{local[: 64 - len(mark) - 1]}+{mark}@{domain}"
    if "." in value:  # a dotted name (a domain): a label in front keeps it one
        return f"{mark}.{value}"
    return f"{value}-{mark}"


def _bodies(c: Contract, op: Operation) -> list[dict[str, Any]]:
    assert op.body_schema is not None
    coll = c.spec.collections.get(_collection(op))
    record = coll.schema if coll else None
    bodies = valid_bodies(op.body_schema, c.run.pool.pick, c.run.options.examples, record)
    if not bodies:
        pytest.skip(f"no body could be generated from the request schema of {op.operation_id}")
    for body in bodies:
        for field in op.hints.unique_fields:
            if field in body:
                mark = f"{uuid.uuid4().hex[:6]}{next(_SERIAL)}"
                body[field] = unique_value(body[field], mark)
    return bodies


def _comparable(c: Contract, op: Operation, body: dict[str, Any]) -> dict[str, Any]:
    """The sent fields a read-back should show: the resource's own, less those the server sets."""
    coll = c.spec.collections.get(_collection(op))
    props = (coll.schema.get("properties") or {}) if coll else {}
    server_set = set(op.hints.sets)
    return {k: v for k, v in body.items() if k in props and k not in server_set}


def own_record(c: Contract, collection: str, parent_id: str | None = None) -> str | None:
    """Create a record of the collection for this test (tracked for deletion), if the API can."""
    create = collection_op(c.spec, collection, "create")
    if create is None or create.body_schema is None:
        return None
    coll = c.spec.collections.get(collection)
    record = coll.schema if coll else None
    body = valid_bodies(create.body_schema, c.run.pool.pick, c.run.options.examples, record)[:1]
    if not body:
        return None
    response = c.call(
        create.method, _path(c, create, parent_id=parent_id), json=body[0], role="setup"
    )
    data = _data(response)
    if response.status_code >= 300 or not isinstance(data, dict) or "id" not in data:
        return None
    c.track(collection, str(data["id"]))
    c.touched_world = True
    return str(data["id"])


def _writable_record(
    c: Contract,
    op: Operation,
    when: Mapping[str, Any] | None = None,
    exclude: Sequence[str] = (),
) -> str:
    """A record to change: one the test creates, else (sandbox profile) a seeded one.

    `exclude` names seeded records already found refused (a delete a documented rule forbids).
    """
    collection = _collection(op)
    created = None if exclude else own_record(c, collection)
    if created is not None:
        if not when:
            return created
        get = collection_op(c.spec, collection, "get")
        if get is not None:
            record = _data(c.call("GET", _path(c, get, created), role="setup"))
            if isinstance(record, dict) and all(record.get(f) in v for f, v in when.items()):
                return created
    if c.profile == "staging" and is_write(op) and op.kind in ("update", "delete"):
        pytest.skip(
            f"staging changes only records the run created, and {op.operation_id} "
            f"has no usable create operation for {collection}"
        )
    seeded = c.run.pool.real_id(collection, writable=True, when=when, exclude=exclude)
    if seeded is None:
        wanted = "; ".join(f"{f} {' or '.join(map(str, v))}" for f, v in (when or {}).items())
        state = f" in a state that allows it ({wanted})" if wanted else ""
        pytest.skip(f"the target has no {collection} record{state} for {op.operation_id}")
    c.touched_world = True
    return seeded


def _readback(
    c: Contract, op: Operation, record_id: str, sent: dict[str, Any], parent_id: str | None = None
) -> None:
    collection = _collection(op)
    comparable = _comparable(c, op, sent)
    get = collection_op(c.spec, collection, "get")
    if get is not None:
        c.call("GET", _path(c, get, record_id), role="readback", meta={"sent": comparable})
        return
    nested = c.run.pool.nested_list_op(collection)
    if nested is not None and parent_id is not None:
        path = _path(c, nested, parent_id=parent_id)
        c.call(
            "GET",
            path,
            params={"per_page": 100},
            role="readback",
            meta={"sent": comparable, "find_id": record_id},
        )


def _parent_for(c: Contract, op: Operation) -> str | None:
    """The parent a nested create attaches to: one the test creates under staging."""
    parent = op.hints.parent
    if op.kind != "create" or parent is None:
        return None
    parent_id = own_record(c, parent.collection) if c.profile == "staging" else None
    parent_id = parent_id or c.run.pool.real_id(parent.collection)
    if parent_id is None:
        pytest.skip(f"the target has no {parent.collection} record to attach to")
    return parent_id


def _target_record(c: Contract, op: Operation) -> str | None:
    """The record an update or action changes (None when its path names none)."""
    if "id" in path_params(op):
        return _writable_record(c, op, op.hints.when)
    if c.profile == "staging" and op.kind in ("update", "delete"):
        pytest.skip(
            f"staging changes only records the run created; {op.operation_id} changes "
            f"the {_collection(op)} record every caller shares"
        )
    return None


def _write(
    c: Contract,
    op: Operation,
    body: dict[str, Any],
    record_id: str | None = None,
    parent_id: str | None = None,
) -> None:
    """Send one valid body (create or update) and read the record back."""
    path = _path(c, op, record_id, parent_id=parent_id)
    response = c.call(op.method, path, json=body, role="valid-body", meta={"body": body})
    data = _data(response)
    if response.status_code >= 300 or not isinstance(data, dict):
        return
    c.touched_world = True
    new_id = str(data.get("id") or record_id or op.hints.fixed_id or "")
    if op.kind == "create" and new_id:
        c.track(_collection(op), new_id)
    if new_id:
        _readback(c, op, new_id, body, parent_id)


# --- the derived contracts ----------------------------------------------------------------------


def conformance(c: Contract, op: Operation) -> None:
    """One well-formed request that must succeed, judged by every response check."""
    if op.session_only:
        _require_writes(c, op)
        body: dict[str, Any] | None = {} if op.body_schema else None
        c.call(op.method, _path(c, op, placeholders=True), role="session-only", json=body)
        c.verify()
        return
    _require_scope(c, op)
    if op.kind in ("identity", "list", "get") or not is_write(op):
        c.call(op.method, _path(c, op), role="well-formed", operation=op)
    elif op.kind in ("create", "update"):
        _require_writes(c, op)
        body = _bodies(c, op)[0]
        record_id = _target_record(c, op)
        _write(c, op, body, record_id, _parent_for(c, op))
    elif op.kind == "delete":
        _require_writes(c, op)
        _delete(c, op)
    else:
        _require_writes(c, op)
        _action(c, op)
    c.verify()


# a documented refusal of a seeded record (403 protected, 409 still referred to): try another
DELETE_REFUSALS = (403, 409)
DELETE_CANDIDATES = 5


def _delete(c: Contract, op: Operation) -> None:
    """Delete one record. The record may be one a documented rule keeps (still referred to:
    409; protected by a role rule, such as a generated body that made an owner: 403); such a
    refusal is judged by every other check and a seeded record is tried next, so only a target
    that refuses every candidate fails the test."""
    collection = _collection(op)
    refused: list[str] = []
    while True:
        record_id = _writable_record(c, op, op.hints.when, exclude=refused)
        response = c.call("DELETE", _path(c, op, record_id), role="well-formed", operation=op)
        documented = response.status_code in op.documented_statuses
        if response.status_code not in DELETE_REFUSALS or not documented:
            break
        if len(refused) + 1 >= DELETE_CANDIDATES:
            break  # the last refusal stays well-formed: it fails `request_succeeds`
        c.exchanges[-1].role = "refused-candidate"
        refused.append(record_id)
    if 200 <= response.status_code < 300:
        c.cleanup.forget(collection, record_id)
        c.touched_world = True
        get = collection_op(c.spec, collection, "get")
        if get is None:
            return
        path = _path(c, get, record_id)
        if op.hints.soft_delete:  # retired, not erased: it reads back in its retired state
            # an expression ($now...) has no value to compare; the fixed fields say the state
            fields = {
                k: v
                for k, v in thaw(op.hints.soft_delete).items()
                if not (isinstance(v, str) and v.startswith("$"))
            }
            c.call("GET", path, role="deleted-retired", meta={"id": record_id, "fields": fields})
        else:
            c.call("GET", path, role="deleted-gone", meta={"id": record_id})


def _action(c: Contract, op: Operation) -> None:
    record_id = _target_record(c, op)
    body = _bodies(c, op)[0] if op.body_schema else None
    if body is not None:
        _fit_to_the_record(c, op, record_id, body)
        _fit_a_sibling(c, op, record_id, body)
    response = c.call(
        op.method, _path(c, op, record_id), role="well-formed", operation=op, json=body
    )
    c.touched_world = True
    creates = op.hints.creates
    data = _data(response)
    if creates and 200 <= response.status_code < 300 and isinstance(data, dict) and "id" in data:
        c.track(creates.collection, str(data["id"]))


def _fit_to_the_record(
    c: Contract, op: Operation, record_id: str | None, body: dict[str, Any]
) -> None:
    """Name, in an action's body, records the record it creates may name: the created record's
    `x-ref.where` may read the action's own record (a script run goes to agents on one of the
    script's `platforms`: `where: {platform: script_id->platforms}`, `script_id` being the
    path's id), which the body's own schema cannot say. The action's record is read once."""
    creates = op.hints.creates
    created = c.spec.collections.get(creates.collection) if creates is not None else None
    if creates is None or created is None or record_id is None:
        return
    props = created.schema.get("properties") or {}
    from_path = {f for f, expr in creates.fields.items() if expr == "$path.id"}
    own: dict[str, Any] | None = None
    for field, expr in creates.fields.items():
        source, _, name = str(expr).partition(".")
        if source != "$body" or body.get(name) is None:
            continue
        prop = props.get(field) or {}
        ref = prop.get("x-ref") or (prop.get("items") or {}).get("x-ref")
        if not isinstance(ref, dict) or not isinstance(ref.get("collection"), str):
            continue
        wanted: dict[str, Any] = {}
        for theirs, path in (ref.get("where") or {}).items():
            head, hop, tail = str(path).partition("->")
            if not hop or head.strip() not in from_path or "->" in tail:
                continue
            if own is None:
                get = collection_op(c.spec, _collection(op), "get")
                got = _data(c.call("GET", _path(c, get, record_id), role="setup")) if get else None
                own = got if isinstance(got, dict) else {}
            value = own.get(tail.strip())
            if value is not None:
                wanted[theirs] = value if isinstance(value, list) else [value]
        if not wanted:
            continue
        named = body[name] if isinstance(body[name], list) else [body[name]]
        fitted: list[Any] = []
        for _ in named:
            chosen = c.run.pool.pick(ref["collection"], wanted, fitted)
            if chosen is None:
                break
            fitted.append(chosen)
        if fitted:
            body[name] = fitted if isinstance(body[name], list) else fitted[0]


def _fit_a_sibling(
    c: Contract, op: Operation, record_id: str | None, body: dict[str, Any]
) -> None:
    """Name, where an action sets a reference to its own collection from the body (a merge of
    the record into another), another record like the action's own, never the record itself
    (`contract_plan.sibling_references`). The action's record is read once."""
    collection = _collection(op)
    if record_id is None:
        return
    own: dict[str, Any] | None = None
    for name, shared in sibling_references(c.spec, op):
        if name not in body:
            continue
        if own is None:
            get = collection_op(c.spec, collection, "get")
            got = _data(c.call("GET", _path(c, get, record_id), role="setup")) if get else None
            own = got if isinstance(got, dict) else {}
        wanted: dict[str, Any] = {f: [own[f]] for f in shared if own.get(f) is not None}
        wanted.update({f: list(allowed) for f, allowed in op.hints.when.items()})
        chosen = c.run.pool.pick(collection, wanted, [record_id])
        if chosen is None:
            pytest.skip(f"the target has no other {collection} record like {record_id} to name")
        body[name] = chosen


def bodies(c: Contract, op: Operation) -> None:
    """More generated valid bodies (accepted, read back as sent) and invalid ones (400)."""
    _require_writes(c, op)
    if c.profile == "production":
        pytest.skip("generated bodies run only in the sandbox and staging profiles")
    _require_scope(c, op)
    examples = _bodies(c, op)
    record_id = _target_record(c, op)
    parent_id = _parent_for(c, op)
    for body in examples[1:]:
        _write(c, op, body, record_id, parent_id)
    assert op.body_schema is not None
    path = _path(c, op, record_id, parent_id=parent_id)
    for mutation in invalid_bodies(op.body_schema, examples[0], seed=op.operation_id):
        response = c.call(
            op.method,
            path,
            json=mutation.body,
            role="invalid-body",
            meta={"mutation": mutation.name},
        )
        data = _data(response)
        if (
            op.kind == "create"
            and response.status_code < 300
            and isinstance(data, dict)
            and "id" in data
        ):
            c.track(_collection(op), str(data["id"]))
    c.verify()


def auth(c: Contract, op: Operation) -> None:
    """No key, malformed keys, a key without the scope and (for reads) one with exactly it."""
    _require_writes(c, op)
    write = is_write(op)
    path = _path(c, op, placeholders=write)
    body: dict[str, Any] | None = {} if op.body_schema else None
    c.call(op.method, path, key=None, role="no-key", json=body)
    for kind, header in MALFORMED:
        c.call(
            op.method,
            path,
            authorization=header,
            role="malformed-key",
            meta={"kind": kind},
            json=body,
        )
    if not op.session_only:
        denied = _denied_key(c, op)
        if denied is not None:
            key, missing = denied
            c.call(
                op.method, path, key=key, role="scope-denied", meta={"missing": missing}, json=body
            )
        granted = None if write else _granted_key(c, op)
        if granted is not None:
            key, scopes = granted
            c.call(op.method, path, key=key, role="scope-granted", meta={"scopes": scopes})
    c.verify()


def _denied_key(c: Contract, op: Operation) -> tuple[str, str] | None:
    """A key that lacks the op's scope: minted in a sandbox, else the limited key if it lacks it."""
    if not op.scopes:
        return None
    family, _, level = op.scopes[0].partition(":")
    if c.target.admin is not None:
        other = (  # a read scope of another family, taken from the spec's operations
            f"{family}:read"
            if level != "read"
            else next(
                (
                    s
                    for o in c.spec.operations
                    for s in o.scopes
                    if s.endswith(":read") and s.partition(":")[0] != family
                ),
                None,
            )
        )
        if other is None:
            return None
        key = c.target.mint((other,))
        return (key, ", ".join(op.scopes)) if key else None
    if c.target.limited_key:
        scopes = c.run.scopes_of(c.target.limited_key) or set()
        missing = [s for s in op.scopes if s not in scopes]
        if missing:
            return LIMITED, ", ".join(missing)
    return None


def _granted_key(c: Contract, op: Operation) -> tuple[str, str] | None:
    """A key with exactly the op's scopes (any valid key for an op that needs none)."""
    # an op that needs no scope is tried with the scope of the spec's first list operation
    needed = tuple(op.scopes) or next(
        (tuple(o.scopes[:1]) for o in c.spec.operations if o.kind == "list" and o.scopes), ()
    )
    if c.target.admin is not None:
        key = c.target.mint(needed)
        return (key, ", ".join(needed)) if key else None
    if c.target.limited_key:
        scopes = c.run.scopes_of(c.target.limited_key) or set()
        if all(s in scopes for s in op.scopes):
            return LIMITED, ", ".join(op.scopes) or "any scope"
    return None


NOT_A_BODY = "contracts: not a request body"  # valid JSON, invalid for every object schema


def role_matrix(c: Contract, op: Operation) -> None:
    """Every key of the role matrix on this operation: FORBIDDEN, SCOPE_DENIED or success.

    A read is sent as it would be used (real ids). A write is sent in a form the API refuses
    after authorizing it (a placeholder id, a body that is not an object), so a key that may
    make it changes nothing and one that may not is refused first. Under the production profile
    writes are not sent: what they would have proven is reported as not proven, not passed.
    """
    keys = c.run.role_keys()
    if not keys:
        pytest.skip(
            "no keys per role: give --opsmerge-key-for ROLE=KEY (or a keys file), or the "
            "target's admin token so the run can mint them"
        )
    write = is_write(op)
    unproven = []
    for k in keys:
        expected, scope = k.expectation(op)
        if write and c.profile == "production":
            unproven.append((k, expected, "the production profile sends only GET and HEAD"))
            continue
        if expected == rolekeys.REFUSED:  # sent and judged, but which refusal cannot be said
            unproven.append(
                (k, expected, "FORBIDDEN and SCOPE_DENIED not told apart: give a full-access "
                 "key of the same user too")
            )
        path = _path(c, op, placeholders=write)
        body: Any = NOT_A_BODY if write and op.body_schema is not None else None
        c.call(
            op.method,
            path,
            key=k.key,
            role=rolekeys.EXCHANGE_ROLE[expected],
            meta={"who": k.who, "label": k.label, "scope": scope, "write": write},
            operation=op,
            **({"json": body} if body is not None else {}),
        )
    for k, expected, reason in unproven:
        c.run.report.add_unproven(
            {
                "test": c.nodeid,
                "operation": op.operation_id,
                "key": k.label,
                "roles": ", ".join(k.role_names),
                "expected": rolekeys.EXPECTED_ANSWER[expected],
                "reason": reason,
            }
        )
    if c.exchanges:
        c.verify()
    if write and c.profile == "production":
        pytest.skip(
            f"not proven for {op.operation_id} ({op.method} {op.path}): the production profile "
            "sends only GET and HEAD; expected "
            + "; ".join(
                f"{k.label} {rolekeys.EXPECTED_ANSWER[e]}" for k, e, _ in unproven
            )
        )


def unknown_id(c: Contract, op: Operation) -> None:
    _require_scope(c, op)
    missing = f"{_prefix(c, _collection(op))}_{PLACEHOLDER}"
    c.call("GET", _path(c, op, missing), role="unknown-id", meta={"id": missing})
    c.verify()


# --- pagination ----------------------------------------------------------------------------------

DEFAULT_PER_PAGE = 50
MAX_PAGES = {"default": 10, "small": 10, "max": 20}


def _per_page_default(op: Operation) -> int:
    for p in op.params:
        if p.name == "per_page":
            return int(p.schema.get("default", DEFAULT_PER_PAGE))
    return DEFAULT_PER_PAGE


def _paged_parent(c: Contract, op: Operation) -> str | None:
    """For a nested list, a parent with several children (the walk needs more than one page)."""
    parent = op.hints.parent
    if parent is None:
        return None
    best, best_total = None, -1
    for record in c.run.pool.records(parent.collection)[:6]:
        with c.target.client() as client:
            response = client.get(
                _fill(op, {parent.param: record["id"]}),
                params={"per_page": 1},
                extensions={"opsmerge": {"record": False}},
            )
        data = _data(response)
        total = data.get("total") if isinstance(data, dict) else None
        if isinstance(total, int) and total > best_total:
            best, best_total = str(record["id"]), total
        if best_total >= 5:
            break
    return best


def pagination(c: Contract, op: Operation) -> None:
    """Walk the list at several page sizes; probe the bounds and the page past the end."""
    _require_scope(c, op)
    parent_id = _paged_parent(c, op) if op.hints.parent is not None else None
    path = _path(c, op, parent_id=parent_id)
    default = _per_page_default(op)
    first = c.call(
        "GET", path, role="page", meta={"walk": "default", "page": 1, "per_page": default}
    )
    data = _data(first)
    total = data.get("total") if isinstance(data, dict) else None
    if first.status_code != 200 or not isinstance(total, int):
        c.verify()
        pytest.fail(f"{op.operation_id} did not answer a first page ({first.status_code})")
    if total <= 70:
        small = min(7, max(1, total // 2))
    else:
        small = min(99, math.ceil(total / MAX_PAGES["small"]))
    walks = [
        ("default", None, MAX_PAGES["default"]),
        ("max", 100, MAX_PAGES["max"]),
        ("small", small, MAX_PAGES["small"]),
    ]
    planned = (
        sum(min(cap, max(1, math.ceil(total / (size or default)))) for _, size, cap in walks) + 4
    )
    if not c.target.guard.budget.allows(planned):
        pytest.skip(
            f"the pagination walk of {op.operation_id} needs about {planned} requests; "
            f"the budget has {c.target.guard.budget.remaining} left"
        )
    last_pages: dict[str, int] = {}
    for name, size, cap in walks:
        per_page = size or default
        label = "default" if size is None else f"per_page={size}"
        pages = max(1, math.ceil(total / per_page))
        truncated = pages > cap
        start = 2 if size is None else 1
        for page in range(start, min(pages, cap) + 1):
            params: dict[str, Any] = {"page": page}
            if size is not None:
                params["per_page"] = size
            response = c.call(
                "GET",
                path,
                params=params,
                role="page",
                meta={"walk": label, "page": page, "per_page": per_page, "truncated": truncated},
            )
            page_data = _data(response)
            items = page_data.get("items") if isinstance(page_data, dict) else None
            if response.status_code != 200 or not items:
                break
        last_pages[name] = pages
        if truncated:
            for ex in c.exchanges:
                if ex.role == "page" and ex.meta.get("walk") == label:
                    ex.meta["truncated"] = True
    c.call(
        "GET",
        path,
        params={"page": 1, "per_page": small},
        role="page-repeat",
        meta={"walk": f"per_page={small}", "page": 1},
    )
    c.call(
        "GET",
        path,
        params={"per_page": 101},
        role="page-bounds",
        meta={"param": "per_page", "value": 101},
    )
    c.call("GET", path, params={"page": 0}, role="page-bounds", meta={"param": "page", "value": 0})
    past = last_pages["max"] + 1
    c.call(
        "GET",
        path,
        params={"page": past, "per_page": 100},
        role="page-past-end",
        meta={"page": past, "total": total},
    )
    c.verify()


# --- rate limits --------------------------------------------------------------------------------


def _identity_op(c: Contract) -> Operation:
    op = next((o for o in c.spec.operations if o.kind == "identity"), None)
    if op is None:
        pytest.skip("the spec has no identity operation to spend requests on")
    return op


def rate_limit_burst(c: Contract) -> None:
    """Three requests in a row: headers on each, Remaining going down."""
    op = _identity_op(c)
    for _ in range(3):
        c.call("GET", op.path, role="burst")
    c.verify()


def _wait(c: Contract, seconds: float) -> None:
    """Advance the clock of a sandbox the run started, or of the run's own workspace on a served
    sandbox that keeps one per workspace; anything else is waited in real time (a shared clock
    cannot be moved back)."""
    if c.target.admin is not None and c.target.owns_clock:
        c.target.admin.advance_clock(seconds)
    else:
        time.sleep(seconds)


def _retry_wait(response: Any) -> float:
    for name in ("retry-after", "x-ratelimit-reset"):
        value = response.headers.get(name, "")
        if value.strip().isdigit():
            return float(value.strip())
    return 60.0


def rate_limit_retry(c: Contract) -> None:
    """Exceed a key's limit: a 429 with Retry-After, and after waiting it the retry passes."""
    op = _identity_op(c)
    if c.target.admin is not None:  # minting is control traffic, allowed under every profile
        limit = 3
        key = c.target.mint(None, rate_limit=limit, name="contracts rate limit")
        assert key is not None
        remaining = limit
    else:
        key = c.target.limited_key or c.target.key
        probe = c.call("GET", op.path, key=key, role="burst", pace=False, retry_429=False)
        remaining = int(probe.headers.get("x-ratelimit-remaining", "0") or 0)
        limit = int(probe.headers.get("x-ratelimit-limit", "0") or 0)
        if not c.target.guard.budget.allows(remaining + 2):
            pytest.skip(
                f"exceeding the rate limit needs {remaining + 2} more requests; "
                f"the budget has {c.target.guard.budget.remaining} left"
            )
    for _ in range(remaining):
        c.call("GET", op.path, key=key, role="burst", pace=False, retry_429=False)
    over = c.call(
        "GET",
        op.path,
        key=key,
        role="rate-exceeded",
        pace=False,
        retry_429=False,
        meta={"n": limit + 1, "limit": limit},
    )
    if over.status_code == 429:
        waited = _retry_wait(over)
        _wait(c, waited)
        c.call(
            "GET",
            op.path,
            key=key,
            role="rate-retry",
            meta={"waited": waited},
            pace=False,
            retry_429=False,
        )
    c.verify()


# --- webhooks ------------------------------------------------------------------------------------

WEBHOOK_WAIT = 10.0  # seconds a delivery may take to arrive
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def webhooks(c: Contract, op: Operation) -> None:
    """The write `op` is an event: a rule on it posts a webhook to a receiver on this machine,
    signed with the rule's secret, whose body the spec's `webhooks` describe. Only a sandbox
    (in process or on loopback) can reach this machine's loopback; a deployment is skipped."""
    model = c.spec.events
    host = urlsplit(c.run.options.target).hostname
    if not c.run.options.in_process and host not in _LOOPBACK_HOSTS:
        pytest.skip("a deployment cannot post webhooks to this machine's loopback receiver")
    assert model is not None  # the plan offers only operations that are events
    _require_scope(c, op)
    _require_writes(c, op)
    event = next(
        e
        for e in model.events.values()
        if e.collection == _collection(op) and (e.on == "created") == (op.kind == "create")
    )
    action = next((a for a in model.actions.values() if a.webhook), None)
    rules = collection_op(c.spec, model.rules, "create")
    if action is None or action.webhook is None or rules is None:
        pytest.skip("the spec declares no webhook action, or no way to create a rule")
    with WebhookReceiver() as receiver:
        body = _bodies(c, rules)[0]
        body.pop(CONDITIONS, None)  # no conditions: the rule fires on every event
        body.update(
            {
                TRIGGER: event.name,
                ENABLED: True,
                ACTIONS: [{ACTION_TYPE: action.name, action.webhook: receiver.url}],
            }
        )
        response = c.call(rules.method, _path(c, rules), json=body, role="setup")
        rule = _data(response)
        if response.status_code >= 300 or not isinstance(rule, dict) or "id" not in rule:
            pytest.fail(f"the rule could not be created ({response.status_code}): {response.text}")
        c.track(model.rules, str(rule["id"]))
        c.touched_world = True
        receiver.trust(str(rule["id"]), str(rule.get(SECRET) or ""))
        _write(c, op, _bodies(c, op)[0], _target_record(c, op), _parent_for(c, op))
        hooks = []
        for delivery in receiver.wait_for(rule_id=str(rule["id"]), timeout=WEBHOOK_WAIT):
            exchange = delivery.exchange(receiver.url, receiver.status)
            exchange.operation_id = op.operation_id  # the write that made the event
            exchange.meta["verified"] = delivery.verified
            hooks.append(exchange)
    try:
        c.verify(only=["webhook_payload"], exchanges=hooks)  # what the receiver got
    finally:
        c.verify()  # the API's own answers, by every check (both are reported either way)

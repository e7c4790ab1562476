"""Stage 7: the resource handlers, one per `x-sandbox.kind`, naming no resource.

What a handler reads and writes comes from the operation's `x-sandbox` extension and the
collection's schema: which collection, which path parameter scopes it, which fields an action sets
and what it creates. Values in those extensions may be expressions: `$now`, `$caller.user_id`,
`$path.<param>`, `$body.<field>`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.clock import format_iso, parse_iso
from sandbox.errors import ApiError, Detail
from sandbox.extensions import DEFAULT_CONFLICT_CODE, thaw
from sandbox.jsontypes import json_types
from sandbox.pipeline.authenticate import Caller
from sandbox.pipeline.ratelimit import RateState
from sandbox.spec import Collection, Operation, Spec, ref_of
from sandbox.store.workspace import CollectionView, Workspace
from sandbox.stores import ClockStore
from sandbox.world.computed_fields import derive_fields

Record = dict[str, Any]
_ids = random.Random()  # record ids need to be unique, not secret
_RESERVED_QUERY = frozenset({"page", "per_page", "sort", "q", "__code", "__example", "__dynamic"})


@dataclass(slots=True)
class HandlerCall:
    """One request as the handlers see it, after every earlier stage passed."""

    op: Operation
    workspace: Workspace
    caller: Caller | None
    params: dict[str, Any]
    supplied: frozenset[str]  # query parameters the client actually sent
    body: Any
    rate: RateState | None = None


def _ref_target(schema: dict[str, Any]) -> str | None:
    ref = ref_of(schema)
    return ref[0] if ref else None


@dataclass(frozen=True, slots=True)
class RefField:
    field: str
    target: str
    many: bool
    copy: tuple[tuple[str, str], ...]  # (my_field, their_field)


def reference_fields(collection: Collection) -> list[RefField]:
    out = []
    for name, prop in collection.schema.get("properties", {}).items():
        target = _ref_target(prop)
        many = False
        if target is None and isinstance(prop.get("items"), dict):
            target = _ref_target(prop["items"])
            many = target is not None
        if target is None:
            continue
        ref = ref_of(prop)
        copy = tuple(ref[1].items()) if ref else ()
        out.append(RefField(name, target, many, copy))
    return out


class Resources:
    """The handlers for every kind of operation, prepared from the spec."""

    def __init__(
        self,
        spec: Spec,
        clock: ClockStore,
        identity: Callable[[HandlerCall], Record],
        raw: bool = True,
    ) -> None:
        self.spec = spec
        self.raw = raw
        self.clock = clock
        self._identity = identity
        self.refs = {name: reference_fields(c) for name, c in spec.collections.items()}
        # collection -> [(referencing collection, field)], for refusing deletes still in use
        self.referrers: dict[str, list[tuple[str, str]]] = {}
        for name, fields in self.refs.items():
            for rf in fields:
                self.referrers.setdefault(rf.target, []).append((name, rf.field))
        self._kinds: dict[str, Callable[[HandlerCall], tuple[int, Any]]] = {
            "list": self.list,
            "get": self.get,
            "create": self.create,
            "update": self.update,
            "delete": self.delete,
            "action": self.action,
            "identity": self.identity,
        }

    def handle(self, ex: HandlerCall) -> tuple[int, Any]:
        handler = self._kinds.get(ex.op.kind)
        if handler is None:
            raise ApiError(
                "INTERNAL_ERROR", f"{ex.op.operation_id} has no x-sandbox kind this sandbox serves."
            )
        return handler(ex)

    # ------------------------------------------------------------------ helpers
    def _collection(self, ex: HandlerCall, name: str | None = None) -> Collection:
        return self.spec.collections[name or ex.op.hints.collection or ""]

    def _value(self, expr: Any, ex: HandlerCall, record: Record | None = None) -> Any:
        if not isinstance(expr, str) or not expr.startswith("$"):
            return thaw(expr)
        if expr == "$now":
            return self.clock.iso()
        source, _, key = expr[1:].partition(".")
        if source == "caller":
            return getattr(ex.caller, key, None) if ex.caller else None
        if source == "path":
            return ex.params.get(key)
        if source == "body":
            return (ex.body or {}).get(key) if isinstance(ex.body, dict) else None
        if source == "record":
            return (record or {}).get(key)
        return expr

    def present(self, coll: Collection, view: CollectionView, record: Record) -> Any:
        """A record as clients see it now: created records follow their lifecycle on the clock.

        Unchanged seeded records come back pre-encoded (unless strict mode wants dicts to check).
        """
        if coll.lifecycle is None or not view.is_created(record["id"]):
            return view.base.raw(record) if self.raw else record
        start = parse_iso(record[coll.lifecycle.clock])
        elapsed = self.clock.now() - start
        out = dict(record)
        for step in coll.lifecycle.steps:
            if step.after > elapsed:
                break
            for field, value in step.sets.items():
                if isinstance(value, str) and value.startswith("+"):
                    value = format_iso(start + float(value[1:]))
                out[field] = thaw(value)
        return out

    def _found(self, ex: HandlerCall, coll: Collection, record_id: str) -> Record:
        record = ex.workspace.get(coll.name, record_id)
        if record is None:
            raise ApiError("NOT_FOUND", f"No {coll.name} record with id {record_id!r}.")
        return record

    def _record_id(self, ex: HandlerCall) -> str:
        fixed = ex.op.hints.fixed_id
        return fixed if fixed else str(ex.params.get("id", ""))

    def _parent_filter(self, ex: HandlerCall) -> tuple[str, Any] | None:
        parent = ex.op.hints.parent
        if parent is None:
            return None
        value = ex.params.get(parent.param)
        self._found(ex, self.spec.collections[parent.collection], str(value))
        return (parent.field, value)

    def _check_refs(
        self, ex: HandlerCall, coll: Collection, record: Record, fields: set[str] | None
    ) -> None:
        """Copy what references carry (an agent's client, say), then refuse dangling references."""
        refs = [rf for rf in self.refs[coll.name] if fields is None or rf.field in fields]
        for rf in refs:
            if rf.copy and not rf.many and record.get(rf.field) is not None:
                target = ex.workspace.get(rf.target, record[rf.field])
                if target is not None:
                    for mine, theirs in rf.copy:
                        record[mine] = target.get(theirs)
        details = []
        for rf in self.refs[coll.name]:
            if (
                fields is not None
                and rf.field not in fields
                and not any(mine == rf.field for r in refs for mine, _ in r.copy)
            ):
                continue
            value = record.get(rf.field)
            values = value if rf.many and isinstance(value, list) else [value]
            for v in values:
                if v is not None and ex.workspace.get(rf.target, v) is None:
                    details.append(Detail("body", rf.field, f"no {rf.target} record with id {v!r}"))
        if details:
            raise ApiError(
                "REFERENCE_NOT_FOUND",
                f"The body refers to a record that does not exist: {details[0].field} "
                f"({details[0].message}).",
                details,
            )

    def _fill(self, coll: Collection, values: Record) -> Record:
        """A complete record in schema order: given values, then defaults, then empties."""
        out: Record = {}
        for name, prop in coll.schema.get("properties", {}).items():
            if name in values:
                out[name] = values[name]
            elif "default" in prop:
                out[name] = prop["default"]
            else:
                types = json_types(prop)
                if "null" in types:
                    out[name] = None
                elif prop.get("enum"):
                    out[name] = prop["enum"][0]
                elif "array" in types:
                    out[name] = []
                elif "object" in types:
                    out[name] = {}
                elif "boolean" in types:
                    out[name] = False
                elif "integer" in types or "number" in types:
                    out[name] = prop.get("minimum", 0)
                else:
                    out[name] = ""
        return out

    def _new_record(
        self, ex: HandlerCall, coll: Collection, given: Record, set_: Mapping[str, Any]
    ) -> Record:
        view = ex.workspace.view(coll.name)
        now = self.clock.iso()
        values: Record = {}
        for name, expr in ex.op.hints.defaults.items():
            if given.get(name) is None:
                values[name] = self._value(expr, ex)
        values.update({k: v for k, v in given.items()})
        values.update(thaw(coll.create_set))
        values.update({k: self._value(v, ex) for k, v in set_.items()})
        values["id"] = f"{coll.id_prefix}_{_ids.getrandbits(48):012x}"
        values["created_at"] = now
        values["updated_at"] = now
        record = self._fill(coll, values)
        self._check_refs(ex, coll, record, None)
        derive_fields(
            coll, record, len(view.base) + view.created_count + 1, self.clock.now_dt().year
        )
        return record

    # ------------------------------------------------------------------ kinds
    def list(self, ex: HandlerCall) -> tuple[int, Any]:
        hints = ex.op.hints
        coll = self._collection(ex)
        view = ex.workspace.view(coll.name)
        filters: list[tuple[str, Any]] = []
        parent = self._parent_filter(ex)
        if parent:
            filters.append(parent)
        renames = hints.filter_fields
        for name in sorted(ex.supplied):
            if name in _RESERVED_QUERY or name not in ex.params:
                continue
            filters.append((renames.get(name, name), ex.params[name]))
        search = None
        q = ex.params.get("q") if "q" in ex.supplied else None
        if q and hints.search_fields:
            search = (hints.search_fields, str(q).lower())
        sort = str(ex.params.get("sort") or "id")
        descending = sort.startswith("-")
        volatile = coll.lifecycle is not None
        found = view.query(filters, search, sort.lstrip("-"), descending, volatile)
        page, per_page = int(ex.params.get("page", 1)), int(ex.params.get("per_page", 50))
        start = (page - 1) * per_page
        page_records = found[start : start + per_page]
        if self.raw and coll.lifecycle is None:
            raw = view.base.raw
            items = [raw(r) for r in page_records]
        else:
            items = [self.present(coll, view, r) for r in page_records]
        return ex.op.success_status, {
            "items": items,
            "total": len(found),
            "page": page,
            "per_page": per_page,
        }

    def get(self, ex: HandlerCall) -> tuple[int, Any]:
        coll = self._collection(ex)
        record = self._found(ex, coll, self._record_id(ex))
        return ex.op.success_status, self.present(coll, ex.workspace.view(coll.name), record)

    def create(self, ex: HandlerCall) -> tuple[int, Any]:
        hints = ex.op.hints
        coll = self._collection(ex)
        given = dict(ex.body or {})
        parent = self._parent_filter(ex)
        if parent:
            given[parent[0]] = parent[1]
        for field in hints.unique_fields:
            if given.get(field) is not None:
                view = ex.workspace.view(coll.name)
                if view.query([(field, given[field])], None, "id", False):
                    raise ApiError(
                        "CONFLICT",
                        f"A {coll.name} record with this {field} already exists.",
                        [Detail("body", field, "already exists")],
                    )
        record = self._new_record(ex, coll, given, hints.sets)
        ex.workspace.write(coll.name, record)
        return ex.op.success_status, self.present(coll, ex.workspace.view(coll.name), record)

    def update(self, ex: HandlerCall) -> tuple[int, Any]:
        coll = self._collection(ex)
        rid = self._record_id(ex)
        current = self._found(ex, coll, rid)
        changes = dict(ex.body or {})
        record = {**current, **changes, "updated_at": self.clock.iso()}
        self._check_refs(ex, coll, record, set(changes))
        view = ex.workspace.view(coll.name)
        derive_fields(coll, record, view.seq_of(rid), self.clock.now_dt().year)
        ex.workspace.write(coll.name, record)
        return ex.op.success_status, self.present(coll, view, record)

    def _check_when(self, ex: HandlerCall, coll: Collection, record: Record) -> None:
        for field, allowed in ex.op.hints.when.items():
            if record.get(field) not in allowed:
                code = ex.op.hints.conflict_code or DEFAULT_CONFLICT_CODE
                wanted = " or ".join(repr(a) for a in allowed)
                raise ApiError(
                    code,
                    f"{ex.op.summary} needs {field} {wanted}; {coll.name} record {record['id']} "
                    f"has {field} {record.get(field)!r}.",
                )

    def _check_refusals(self, ex: HandlerCall, coll: Collection, record: Record) -> None:
        """The operation's `refuse-when` guards: records the documented rules protect.

        With `last: true` a guard protects only the last record that matches it (the tenant's
        last Owner), so the others stay removable.
        """
        for rule in ex.op.hints.refuse_when:
            if not rule.hits(record):
                continue
            if rule.last:
                view = ex.workspace.view(coll.name)
                others = (
                    r
                    for r in view.query([], None, "id", False)
                    if r["id"] != record["id"] and rule.hits(r)
                )
                if next(others, None) is not None:
                    continue
            raise ApiError(rule.code, rule.message)

    def delete(self, ex: HandlerCall) -> tuple[int, Any]:
        coll = self._collection(ex)
        rid = self._record_id(ex)
        record = self._found(ex, coll, rid)
        self._check_when(ex, coll, record)
        self._check_refusals(ex, coll, record)
        if ex.op.hints.refuse_if_referenced:
            for other, field in self.referrers.get(coll.name, []):
                users = ex.workspace.view(other).query([(field, rid)], None, "id", False)
                if users:
                    raise ApiError(
                        "IN_USE",
                        f"{coll.name} record {rid} is still referenced by {len(users)} {other} "
                        f"record(s) ({field}); remove those first.",
                    )
        ex.workspace.delete(coll.name, rid)
        return ex.op.success_status, {"id": rid, "deleted": True}

    def action(self, ex: HandlerCall) -> tuple[int, Any]:
        hints = ex.op.hints
        coll = self._collection(ex)
        rid = self._record_id(ex)
        record = self._found(ex, coll, rid)
        self._check_when(ex, coll, record)
        updated = record
        if hints.sets:
            updated = {**record, **{k: self._value(v, ex, record) for k, v in hints.sets.items()}}
            updated["updated_at"] = self.clock.iso()
            ex.workspace.write(coll.name, updated)
        creates = hints.creates
        if creates is not None:
            target = self.spec.collections[creates.collection]
            given = {k: self._value(v, ex, record) for k, v in creates.fields.items()}
            given = {k: v for k, v in given.items() if v is not None}
            new = self._new_record(ex, target, given, {})
            ex.workspace.write(target.name, new)
            return ex.op.success_status, self.present(target, ex.workspace.view(target.name), new)
        return ex.op.success_status, self.present(coll, ex.workspace.view(coll.name), updated)

    def identity(self, ex: HandlerCall) -> tuple[int, Any]:
        return ex.op.success_status, self._identity(ex)

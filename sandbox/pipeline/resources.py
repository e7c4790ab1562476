"""Stage 7: the resource handlers, one per `x-sandbox.kind`, naming no resource.

What a handler reads and writes comes from the operation's `x-sandbox` extension and the
collection's schema: which collection, which path parameter scopes it, which fields an action sets
and what it creates. Values in those extensions may be expressions: `$now`, `$caller.user_id`,
`$path.<param>`, `$body.<field>`.
"""

from __future__ import annotations

import builtins
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import msgspec

from opsmerge_sandbox.clock import format_iso, parse_iso
from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.extensions import (
    DEFAULT_CONFLICT_CODE,
    StateRule,
    collection_rules,
    thaw,
)
from opsmerge_sandbox.jsontypes import json_types
from opsmerge_sandbox.pipeline import record_rules
from opsmerge_sandbox.pipeline.authenticate import Caller
from opsmerge_sandbox.pipeline.dependents import (
    COPY_DEPTH,
    Dependents,
    breaks_reader,
    naming,
    staged_first,
)
from opsmerge_sandbox.pipeline.live_times import LiveTimes
from opsmerge_sandbox.pipeline.ratelimit import RateState
from opsmerge_sandbox.pipeline.record_invariants import WriteInvariants
from opsmerge_sandbox.pipeline.sequences import Numbering
from opsmerge_sandbox.pipeline.state_guards import StateGuards
from opsmerge_sandbox.spec import Collection, Operation, Spec, ref_of
from opsmerge_sandbox.store.base import matches, sort_key
from opsmerge_sandbox.store.ordinal import SortField
from opsmerge_sandbox.store.workspace import CollectionView, Workspace
from opsmerge_sandbox.stores import ClockStore
from opsmerge_sandbox.world.computed_fields import Numbers, derive_fields
from opsmerge_sandbox.world.conditions import Env, Lookup
from opsmerge_sandbox.world.invariants import check_record

Record = dict[str, Any]
_ids = random.Random()  # record ids need to be unique, not secret
_NOTHING_MOVES: frozenset[str] = frozenset()
_PAGES_MAX = 512  # pages remembered pre-encoded; past it the memory starts over
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


@dataclass(frozen=True, slots=True)
class FillPlan:
    """What `fill` gives each field a write leaves out, read from a collection's schema once:
    `template` holds every field in schema order with its default or empty value, `fresh` the
    fields whose empty value is a new list or mapping for each record (never shared)."""

    template: dict[str, Any]
    fresh: tuple[tuple[str, Callable[[], Any]], ...]


def fill_plan(coll: Collection) -> FillPlan:
    """Each field in schema order with the value a record gets when a write leaves it out: the
    schema's default, else the empty value of its type (null when it may be null)."""
    template: dict[str, Any] = {}
    fresh: list[tuple[str, Callable[[], Any]]] = []
    for name, prop in coll.schema.get("properties", {}).items():
        if "default" in prop:
            template[name] = prop["default"]
            continue
        types = json_types(prop)
        empty: Any
        if "null" in types:
            empty = None
        elif prop.get("enum"):
            empty = prop["enum"][0]
        elif "array" in types:
            empty = None
            fresh.append((name, list))
        elif "object" in types:
            empty = None
            fresh.append((name, dict))
        elif "boolean" in types:
            empty = False
        elif "integer" in types or "number" in types:
            empty = prop.get("minimum", 0)
        else:
            empty = ""
        template[name] = empty
    return FillPlan(template, tuple(fresh))


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


def shown_once_fields(spec: Spec) -> dict[str, frozenset[str]]:
    """Per collection, the fields marked `x-shown-once`: only a create's answer shows them."""
    out = {}
    for name, coll in spec.collections.items():
        found = frozenset(
            f for f, prop in coll.schema.get("properties", {}).items() if prop.get("x-shown-once")
        )
        if found:
            out[name] = found
    return out


def _without(data: Any, hidden: frozenset[str]) -> Any:
    """A record, or a page's records, without the hidden fields (pre-encoded seeded records
    are decoded first: their bytes hold every field)."""
    if isinstance(data, msgspec.Raw):
        data = msgspec.json.decode(data)
    if isinstance(data, dict) and isinstance(data.get("items"), list | msgspec.Raw):
        items = data["items"]
        if isinstance(items, msgspec.Raw):
            items = msgspec.json.decode(items)
        return {**data, "items": [_without(r, hidden) for r in items]}
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k not in hidden}
    return data


def _is_history(prop: Mapping[str, Any]) -> bool:
    """`x-ref.history`: the field records what a record named when it was made (what a past
    action was aimed at); it keeps the id once that record is deleted, so it never blocks
    the delete."""
    ref = prop.get("x-ref")
    items = prop.get("items")
    if ref is None and isinstance(items, Mapping):
        ref = items.get("x-ref")
    return isinstance(ref, Mapping) and ref.get("history") is True


def _within(record: Record, bounds: list[tuple[str, str, Any]]) -> bool:
    """Whether the record's fields lie within every (field, from | until, value) bound."""
    for field, bound, value in bounds:
        found = record.get(field)
        if found is None or (found < value if bound == "from" else found > value):
            return False
    return True


class Resources:
    """The handlers for every kind of operation, prepared from the spec."""

    def __init__(
        self,
        spec: Spec,
        clock: ClockStore,
        identity: Callable[[HandlerCall], Record],
        raw: bool = True,
        world_epoch: float | None = None,
        like: Resources | None = None,
    ) -> None:
        """`world_epoch`: when the seeded world was made (its recipe's epoch), from which
        live times keep pace with the clock; None keeps them as stored. `like`: handlers of
        the same spec and world (the rule engine's) whose rules, invariants and numbering,
        compiled from the spec alone, these share instead of compiling them again at start."""
        self.spec = spec
        self.raw = raw
        self.clock = clock
        self._identity = identity
        self.live: LiveTimes
        if like is None or like.spec is not spec or like.live.epoch != world_epoch:
            self.refs = {name: reference_fields(c) for name, c in spec.collections.items()}
            # the schemas' property rules (x-default-from, x-exclusive, x-ordinal, ...)
            self.rules = collection_rules(spec.resolved.get("components", {}).get("schemas", {}))
            self.numbering = Numbering(spec.collections, self.rules)
            schemas = {n: c.schema for n, c in spec.collections.items()}
            self.invariants = WriteInvariants(schemas)
            self.live = LiveTimes(schemas, world_epoch)
            self.dependents = Dependents(self.refs, self.invariants.compiled)
        else:
            self.refs, self.rules, self.numbering = like.refs, like.rules, like.numbering
            self.invariants, self.live = like.invariants, like.live
            self.dependents = like.dependents
        self._moving = {
            name: moving
            for name, c in spec.collections.items()
            if (
                moving := self.invariants.clock_fields.get(name, frozenset())
                | self.live.fields(name)
                | (c.lifecycle.moving_fields if c.lifecycle is not None else frozenset())
            )
        }
        # seeded records as they read in the clock's current second: id -> (record, encoded)
        self._shown: dict[int, tuple[Record, Any]] = {}
        self._pages_now: dict[tuple[int, ...], tuple[builtins.list[Record], Any]] = {}
        self._shown_second = -1
        # collections whose records may read otherwise than stored, whatever their lifecycle
        self._moves_on_read = frozenset(self.invariants.clock_fixes) | frozenset(
            self.live.by_collection
        )
        # of those, the ones whose seeded records read as they and the clock's second alone
        # say (no lifecycle, no live time reading another record): encoded once a second
        self._by_second = frozenset(
            name
            for name in self._moves_on_read
            if raw
            and spec.collections[name].lifecycle is None
            and name not in self.live.reads_others
        )
        # collection -> [(referencing collection, field)], for refusing deletes still in use
        self.referrers: dict[str, list[tuple[str, str]]] = {}
        for name, fields in self.refs.items():
            props = spec.collections[name].schema.get("properties", {})
            for rf in fields:
                if not _is_history(props.get(rf.field) or {}):
                    self.referrers.setdefault(rf.target, []).append((name, rf.field))
        # the state rules records take up against what they name (`state_guards.py`)
        self.guards = StateGuards(spec.collections)
        # the ids of a page's records -> (those records, the page pre-encoded)
        self._pages: dict[tuple[int, ...], tuple[builtins.list[Record], Any]] = {}
        self._kinds: dict[str, Callable[[HandlerCall], tuple[int, Any]]] = {
            "list": self.list,
            "get": self.get,
            "create": self.create,
            "update": self.update,
            "delete": self.delete,
            "action": self.action,
            "identity": self.identity,
        }
        # collection -> fields only the answer to a create shows (`x-shown-once`: a secret)
        self.shown_once = shown_once_fields(spec)
        # collection -> a check of each record a create or update writes (the rule engine's)
        self.write_checks: dict[str, Callable[[Workspace, Record], None]] = {}
        # collection -> what `fill` puts in each field a write leaves out, read from the schema
        # once (every create fills its record and its audit entries; every collection a fill
        # is asked for is one of the spec's)
        self._fills = {name: fill_plan(c) for name, c in spec.collections.items()}

    def handle(self, ex: HandlerCall) -> tuple[int, Any]:
        handler = self._kinds.get(ex.op.kind)
        if handler is None:
            raise ApiError(
                "INTERNAL_ERROR", f"{ex.op.operation_id} has no x-sandbox kind this sandbox serves."
            )
        status, data = handler(ex)
        if self.shown_once and ex.op.kind != "create":
            hidden = self.shown_once.get(ex.op.hints.collection or "")
            if hidden:
                data = _without(data, hidden)
        return status, data

    # ------------------------------------------------------------------ helpers
    def _collection(self, ex: HandlerCall, name: str | None = None) -> Collection:
        return self.spec.collections[name or ex.op.hints.collection or ""]

    def _value(self, expr: Any, ex: HandlerCall, record: Record | None = None) -> Any:
        if not isinstance(expr, str) or not expr.startswith("$"):
            return thaw(expr)
        if expr == "$now":
            return self.clock.iso()
        if expr == "$today":
            return self.clock.now_dt().date().isoformat()
        if expr == "$secret":  # a fresh signing key, shown once (see `x-shown-once`)
            return "whsec_" + secrets.token_hex(24)
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

    def present(
        self,
        coll: Collection,
        view: CollectionView,
        record: Record,
        encoded: bool = True,
        lookup: Lookup | None = None,
    ) -> Any:
        """A record as clients see it now: created records follow their lifecycle on the clock,
        statuses the clock's rules give, times that keep pace with it (`lookup` reads the
        records a live time's condition names).

        Unchanged seeded records come back pre-encoded (unless strict mode wants dicts to check).
        """
        lifecycle = coll.lifecycle
        stepping = lifecycle is not None and lifecycle.follows(
            record, view.is_created(record["id"])
        )
        if not stepping and coll.name not in self._moves_on_read:
            return view.base.raw(record) if self.raw and encoded else record
        now = self.clock.now()
        if coll.name in self._by_second and encoded and view.base.is_seeded(record):
            # what a seeded record shows then depends only on it and the clock's second: each
            # is encoded once a second, not once a read
            self._this_second(now)
            hit = self._shown.get(id(record))
            if hit is None:
                shown_now = self._shown_now(coll, record, now, lookup)
                raw = view.base.raw(record) if shown_now is record else view.base.encoded(shown_now)
                hit = self._shown[id(record)] = (record, raw)
            return hit[1]
        out = record
        if lifecycle is not None and stepping and isinstance(record.get(lifecycle.clock), str):
            start = parse_iso(record[lifecycle.clock])
            elapsed = now - start
            out = dict(record)
            for step in lifecycle.steps:
                if step.after > elapsed:
                    break
                for field, value in step.sets.items():
                    if isinstance(value, str) and value.startswith("+"):
                        value = format_iso(start + float(value[1:]))
                    out[field] = thaw(value)
        out = self._shown_now(coll, out, now, lookup)
        if out is record and not stepping:
            return view.base.raw(record) if self.raw and encoded else record
        return out

    def _shown_now(
        self, coll: Collection, record: Record, now: float, lookup: Lookup | None
    ) -> Record:
        """The record with the statuses the clock's rules give and its live times moved on (a
        copy), or the record itself when the clock changes nothing."""
        out = record
        shown = self.invariants.follow_clock(coll.name, out, int(now))
        if shown is not None:
            out = shown
        live = self.live.shown(coll.name, out, now, lookup)
        return out if live is None else live

    def as_clock_shows(self, collection: str, record: Record) -> Record:
        """A stored record with the statuses the clock's rules give it now."""
        if collection not in self.invariants.clock_fixes:  # no clock rule: no need of the time
            return record
        shown = self.invariants.follow_clock(collection, record, int(self.clock.now()))
        return record if shown is None else shown

    def moving_fields(self, coll: Collection) -> frozenset[str]:
        """Fields whose stored values are not what clients see now: a lifecycle's steps, the
        statuses the clock's rules set and the live times."""
        return self._moving.get(coll.name, _NOTHING_MOVES)

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
        self,
        ex: HandlerCall,
        coll: Collection,
        record: Record,
        fields: set[str] | None,
        lookup: Lookup | None = None,
    ) -> None:
        """Copy what references carry (an agent's client, say), then refuse dangling references
        (`lookup`: the write's own remembered reads, else the workspace's)."""
        get = ex.workspace.get if lookup is None else lookup
        every = self.refs[coll.name]
        refs = every if fields is None else [rf for rf in every if rf.field in fields]
        for rf in refs:
            if rf.copy and not rf.many and record.get(rf.field) is not None:
                target = get(rf.target, record[rf.field])
                if target is not None:
                    for mine, theirs in rf.copy:
                        record[mine] = target.get(theirs)
        details = []
        for rf in every:
            if (
                fields is not None
                and rf.field not in fields
                and not any(mine == rf.field for r in refs for mine, _ in r.copy)
            ):
                continue
            value = record.get(rf.field)
            if value is None:
                continue
            values = value if rf.many and isinstance(value, list) else [value]
            for v in values:
                if v is not None and get(rf.target, v) is None:
                    details.append(Detail("body", rf.field, f"no {rf.target} record with id {v!r}"))
        if details:
            raise ApiError(
                "REFERENCE_NOT_FOUND",
                f"The body refers to a record that does not exist: {details[0].field} "
                f"({details[0].message}).",
                details,
            )

    def fill(self, coll: Collection, values: Record) -> Record:
        """A complete record in schema order: given values, then defaults, then empties."""
        plan = self._fills[coll.name]
        out = plan.template.copy()  # every field, in schema order; the values below keep it
        for name, make in plan.fresh:
            out[name] = make()
        if values.keys() <= out.keys():  # the usual case: only the schema's fields
            out.update(values)
            return out
        for name, value in values.items():
            if name in out:
                out[name] = value
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
        values.update(given)
        if coll.create_set:  # most collections set nothing read-only on a create
            values.update(thaw(coll.create_set))
        if set_:
            values.update({k: self._value(v, ex) for k, v in set_.items()})
        rules = self.rules[coll.name]
        if rules.defaults:  # the record rules are called only where the schema has some
            record_rules.fill_defaults(ex.workspace, rules, values)
        values["id"] = f"{coll.id_prefix}_{_ids.getrandbits(48):012x}"
        values["created_at"] = now
        values["updated_at"] = now
        record = self.fill(coll, values)
        lookup = ex.workspace.reads()  # the records this create reads, each looked up once
        self._check_refs(ex, coll, record, None, lookup)
        if rules.not_before:
            record_rules.check(rules, record)
        at = self.clock.now_dt()
        env = self.invariants.env(lookup, int(at.timestamp()))
        self.invariants.derive(env, coll.name, record)
        seq, year = len(view.base) + view.created_count + 1, at.year
        numbers = self.numbering.for_create(ex.workspace, coll, record, seq, year, now, lookup)
        derive_fields(coll, record, seq, year, numbers)
        if rules.touches or rules.exclusive:
            record_rules.settle(ex.workspace, coll.name, rules, record, now)
        self.invariants.check(env, coll.name, record)
        self._check_named(ex, coll, None, record, lookup)  # after the rules with words of their own
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
        ranges = hints.filter_ranges
        bounds: list[tuple[str, str, Any]] = []
        for name in sorted(ex.supplied):
            if name in _RESERVED_QUERY or name not in ex.params:
                continue
            if name in ranges:
                field, bound = ranges[name]
                bounds.append((field, bound, ex.params[name]))
                continue
            filters.append((renames.get(name, name), ex.params[name]))
        search = None
        q = ex.params.get("q") if "q" in ex.supplied else None
        if q and hints.search_fields:
            search = (hints.search_fields, str(q).lower())
        sort = str(ex.params.get("sort") or "id")
        descending = sort.startswith("-")
        sort_field = sort.lstrip("-")
        ranks = self.rules[coll.name].ordinal.get(sort_field)
        if ranks is not None:  # an ordinal enum sorts by its declared order
            sort_field = SortField(sort_field, ranks)
        page, per_page = int(ex.params.get("page", 1)), int(ex.params.get("per_page", 50))
        start = (page - 1) * per_page
        moving = self.moving_fields(coll)
        if not moving:
            found = view.query(filters, search, sort_field, descending, False)
            if bounds:
                found = [r for r in found if _within(r, bounds)]
            page_records = found[start : start + per_page]
            if self.raw:
                items = self._page_items(view, page_records)
            else:
                items = [self.present(coll, view, r, lookup=ex.workspace.get) for r in page_records]
            total = len(found)
        else:
            # records move on the clock: the fields that move are filtered and sorted on what
            # clients see, not on what is stored
            later = [(f, v) for f, v in filters if f in moving]
            found = view.query(
                [(f, v) for f, v in filters if f not in moving],
                search,
                sort_field,
                descending,
                True,
            )
            if bounds:
                found = [r for r in found if _within(r, bounds)]
            if later or str(sort_field) in moving:
                shown = [
                    self.present(coll, view, r, encoded=False, lookup=ex.workspace.get)
                    for r in found
                ]
                shown = [r for r in shown if matches(r, later, None)]
                shown.sort(key=sort_key(sort_field), reverse=descending)
                items, total = shown[start : start + per_page], len(shown)
            else:
                items = self._page_now(coll, view, found[start : start + per_page], ex.workspace)
                total = len(found)
        return ex.op.success_status, {
            "items": items,
            "total": total,
            "page": page,
            "per_page": per_page,
        }

    def _page_now(
        self, coll: Collection, view: CollectionView, page: builtins.list[Record], ws: Workspace
    ) -> Any:
        """A page of records that read otherwise than stored, as they read now; a page of
        seeded records whose reading depends only on them and the clock's second is encoded
        once that second."""
        steady = coll.name in self._by_second
        key = tuple(map(id, page))
        if steady:
            self._this_second(self.clock.now())
            hit = self._pages_now.get(key)
            if hit is not None:
                return hit[1]
        items = [self.present(coll, view, r, lookup=ws.get) for r in page]
        if not steady or not all(isinstance(i, msgspec.Raw) for i in items):
            return items
        joined = msgspec.Raw(b"[" + b",".join(items) + b"]")
        if len(self._pages_now) >= _PAGES_MAX:
            self._pages_now.clear()
        self._pages_now[key] = (page, joined)  # holds the records, so their id()s are not reused
        return joined

    def _this_second(self, now: float) -> None:
        """Forget what was encoded for an earlier second of the clock."""
        second = int(now)
        if second != self._shown_second:
            self._shown.clear()
            self._pages_now.clear()
            self._shown_second = second

    def _page_items(self, view: CollectionView, page: builtins.list[Record]) -> Any:
        """A page's items, pre-encoded, remembered by the identity of its records.

        `raw()` depends only on which record object it is given (an unchanged seeded record is
        always the same object and the same bytes), so a page of the same objects is the same
        bytes: one msgspec.Raw for the whole array when every record is an unchanged seeded one.
        """
        key = tuple(map(id, page))
        hit = self._pages.get(key)
        if hit is not None:
            return hit[1]
        raw = view.base.raw
        items: Any = [raw(r) for r in page]
        if all(isinstance(i, msgspec.Raw) for i in items):
            items = msgspec.Raw(b"[" + b",".join(items) + b"]")
        if len(self._pages) >= _PAGES_MAX:
            self._pages.clear()
        self._pages[key] = (page, items)  # holds the records, so their id()s are not reused
        return items

    def get(self, ex: HandlerCall) -> tuple[int, Any]:
        coll = self._collection(ex)
        record = self._found(ex, coll, self._record_id(ex))
        return ex.op.success_status, self.present(
            coll, ex.workspace.view(coll.name), record, lookup=ex.workspace.get
        )

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
        self._check_refusals(ex, coll, None, record)
        check = self.write_checks.get(coll.name)
        if check is not None:
            check(ex.workspace, record)
        ex.workspace.write(coll.name, record)
        return ex.op.success_status, self.present(
            coll, ex.workspace.view(coll.name), record, lookup=ex.workspace.get
        )

    def update(self, ex: HandlerCall) -> tuple[int, Any]:
        coll = self._collection(ex)
        rid = self._record_id(ex)
        current = self._found(ex, coll, rid)
        changes = dict(ex.body or {})
        now = self.clock.iso()
        record = {**current, **changes, "updated_at": now}
        self._carry_live_times(ex, coll, current, record)
        rules = self.rules[coll.name]
        record_rules.apply_update(rules, current, changes, record)
        self._check_refs(ex, coll, record, set(changes))
        record_rules.check(rules, record, changes)
        self._check_refusals(ex, coll, current, record)
        self._check_blockers(ex, coll, current, record)
        env = self.invariants.env(ex.workspace.get, int(self.clock.now_dt().timestamp()))
        self.invariants.derive(env, coll.name, record)
        view = ex.workspace.view(coll.name)
        numbers = Numbers(maps=self.numbering.maps(ex.workspace, coll))
        year = self.clock.now_dt().year
        derive_fields(coll, record, view.seq_of(rid), year, numbers, changed=set(changes))
        record_rules.settle(ex.workspace, coll.name, rules, record, now, before=current)
        check = self.write_checks.get(coll.name)
        if check is not None:
            check(ex.workspace, record)
        self.invariants.check(env, coll.name, record, set(changes))
        self._check_named(ex, coll, current, record)
        self._check_guards(ex, coll, current, record)
        ex.workspace.write(coll.name, record)
        self._move_followers(ex, coll, current, record)
        self._update_dependents(ex, coll, current, record)
        return ex.op.success_status, self.present(coll, view, record, lookup=ex.workspace.get)

    def _check_when(self, ex: HandlerCall, coll: Collection, record: Record) -> None:
        """The record must be in a state the operation allows, as clients see it now (a record
        that moves on the clock is judged in its current step)."""
        if not ex.op.hints.when:
            return
        if self.moving_fields(coll):
            record = self.present(
                coll, ex.workspace.view(coll.name), record, encoded=False, lookup=ex.workspace.get
            )
        for field, allowed in ex.op.hints.when.items():
            if record.get(field) not in allowed:
                code = ex.op.hints.conflict_code or DEFAULT_CONFLICT_CODE
                wanted = " or ".join(repr(a) for a in allowed)
                raise ApiError(
                    code,
                    f"{ex.op.summary} needs {field} {wanted}; {coll.name} record {record['id']} "
                    f"has {field} {record.get(field)!r}.",
                )

    def _check_refusals(
        self, ex: HandlerCall, coll: Collection, before: Record | None, after: Record | None
    ) -> None:
        """The operation's `refuse-when` guards: writes the documented rules forbid.

        Each guard is read on the write from `before` to `after` (None: no record); a caller
        the guard exempts (`unless-caller`, `unless-self`) passes. With `last: true` a guard
        protects only the last record that matches it (the tenant's last Owner), so the others
        stay changeable.
        """
        guards = ex.op.hints.refuse_when
        if not guards:
            return
        caller = ex.caller.user if ex.caller is not None else None
        rid = (before or after or {}).get("id")
        for rule in guards:
            if not rule.hits_write(before, after):
                continue
            if rule.unless_caller is not None and rule.unless_caller.hits(caller):
                continue
            if rule.unless_self and caller is not None and caller.get("id") == rid:
                continue
            if rule.last:
                view = ex.workspace.view(coll.name)
                others = (
                    r for r in view.query([], None, "id", False) if r["id"] != rid and rule.hits(r)
                )
                if next(others, None) is not None:
                    continue
            kept = rule.kept_field(before, after) if rule.keeps else None
            if kept is not None:  # the refusal names the field the write may not change
                details = [Detail("body", kept, rule.message)]
                raise ApiError(rule.code, f"{kept}: {rule.message}", details)
            raise ApiError(rule.code, rule.message)

    def _check_blockers(
        self, ex: HandlerCall, coll: Collection, before: Record, after: Record
    ) -> None:
        """The collection's `x-refuse-while` rules: a write into a state (a client archived) is
        refused while records that name the record hold theirs (a contract still in force),
        judged as clients see them now; the error names how many and the first of them."""
        for rule in coll.blockers:
            if not rule.entered(before, after):
                continue
            holding = [found["id"] for found, _ in self._holding(ex, rule, before["id"])]
            if holding:
                more = f" and {len(holding) - 3} more" if len(holding) > 3 else ""
                held = f"{rule.collection}: {', '.join(holding[:3])}{more}"
                given = [f for f in rule.into if isinstance(ex.body, dict) and f in ex.body]
                where = Detail("body", given[0], rule.message) if given else None
                raise ApiError(
                    rule.code,
                    f"{given[0] + ': ' if given else ''}{rule.message} ({held}).",
                    [where or Detail("path", "id", rule.message)],
                )

    def _holding(
        self, ex: HandlerCall, rule: StateRule, record_id: str
    ) -> builtins.list[tuple[Record, Record]]:
        """(stored, as clients see it now) of each record of the rule's collection that names
        `record_id` in the rule's field and holds the rule's `holding`."""
        other = self.spec.collections[rule.collection]
        view = ex.workspace.view(other.name)
        moving = bool(self.moving_fields(other))
        out = []
        for found in view.query([(rule.field, record_id)], None, "id", False):
            shown = (
                self.present(other, view, found, encoded=False, lookup=ex.workspace.get)
                if moving
                else found
            )
            if rule.holds(shown):
                out.append((found, shown))
        return out

    def _carry_live_times(
        self, ex: HandlerCall, coll: Collection, before: Record, after: Record
    ) -> None:
        """A write that stops a live time (`x-live-time`: a check switched off) keeps it at what
        clients saw, not at its stored value from the world's epoch; one that starts it again
        makes it run from now (`LiveTimes.carry`)."""
        self.live.carry(coll.name, before, after, self.clock.now(), ex.workspace.get)

    def _move_followers(
        self, ex: HandlerCall, coll: Collection, before: Record, after: Record
    ) -> None:
        """The collection's `x-on-enter` rules: a write into a state (a client archived) also
        changes the records that name the record and hold theirs (its checks switched off, its
        open alerts resolved), in the same transaction, so none is left contradicting it.

        Each is changed as an update of the rule's fields would change it: from the record as
        the clock shows it, stamped now, with the derive rules applied and the invariants of
        those fields judged (one broken refuses the whole write). Its audit entry and events
        follow from the transaction, as for any other write."""
        for rule in coll.followers:
            if not rule.entered(before, after):
                continue
            other = self.spec.collections[rule.collection]
            now, moment = self.clock.iso(), int(self.clock.now_dt().timestamp())
            env = self.invariants.env(ex.workspace.get, moment)
            changed = set(rule.sets)
            for found, shown in self._holding(ex, rule, after["id"]):
                values = {k: self._value(v, ex, found) for k, v in rule.sets.items()}
                if all(shown.get(k) == v for k, v in values.items()):
                    continue
                self._rewrite(ex, other, found, values, now, env, changed)

    def _rewrite(
        self,
        ex: HandlerCall,
        coll: Collection,
        found: Record,
        values: Mapping[str, Any],
        now: str,
        env: Env,
        changed: set[str],
    ) -> Record:
        """Stage a change the sandbox makes to a record another write reached (`x-on-enter`,
        a copy from a reference): as an update of `values` would change it, from the record as
        the clock shows it, stamped `now`, derived and judged on the `changed` fields."""
        base = self.as_clock_shows(coll.name, found)
        moved = {**base, **values, "updated_at": now}
        self._carry_live_times(ex, coll, base, moved)
        self.invariants.derive(env, coll.name, moved)
        self.invariants.check(env, coll.name, moved, changed)
        self._check_guards(ex, coll, found, moved)
        ex.workspace.write(coll.name, moved)
        return moved

    def _update_dependents(
        self, ex: HandlerCall, coll: Collection, before: Record, after: Record, depth: int = 0
    ) -> None:
        """`dependents.py`: the records naming this one copy what they copy from it again (and
        on to those copying from them), then a change that leaves one of them breaking a rule
        reading the changed field is refused, naming the field, the record and the rule."""
        if coll.name not in self.dependents.read:
            return  # no record reads this collection's records through a reference
        changed = [k for k in after if after.get(k) != before.get(k)]
        ws, rid = ex.workspace, after["id"]
        env = self.invariants.env(staged_first(ws), int(self.clock.now_dt().timestamp()))
        for copier in self.dependents.copiers.get(coll.name, ()):
            if depth >= COPY_DEPTH or not any(t in changed for _, t in copier.pairs):
                continue
            other = self.spec.collections[copier.collection]
            values = {mine: after.get(theirs) for mine, theirs in copier.pairs}
            for found in naming(ws, copier.collection, copier.field, rid):
                if all(found.get(k) == v for k, v in values.items()):
                    continue
                moved = self._rewrite(ex, other, found, values, self.clock.iso(), env, set(values))
                self._update_dependents(ex, other, found, moved, depth + 1)
        for name, reader in self.dependents.readers_of(coll.name, changed):
            for found in naming(ws, reader.collection, reader.field, rid):
                why = check_record(reader.rule, found, env)
                if why is not None:
                    raise breaks_reader(name, reader, found, why, ex.body)

    def _check_named(
        self,
        ex: HandlerCall,
        coll: Collection,
        before: Record | None,
        after: Record,
        get: Callable[[str, Any], Record | None] | None = None,
    ) -> None:
        """`x-closed` on a write: nothing names anew a record closed now (`state_guards.py`).
        `get`: a create's own reads (the state before its transaction), else the records as
        clients see them now."""
        if coll.name not in self.guards.closable:
            return
        ws = ex.workspace
        self.guards.check_named(
            coll.name, before, after, get or self._shown_lookup(ex),
            lambda: self.invariants.env(ws.get, int(self.clock.now())), ex.body,
        )  # fmt: skip

    def _check_guards(
        self, ex: HandlerCall, coll: Collection, before: Record, after: Record
    ) -> None:
        """A change into a state the record it names rules out is refused (`state_guards.py`);
        the lookup it reads through is made only for a collection with such a rule."""
        if coll.name in self.guards.by_collection:
            self.guards.check(coll.name, before, after, self._shown_lookup(ex), ex.body)

    def _shown_lookup(self, ex: HandlerCall) -> Callable[[str, Any], Record | None]:
        """Records as clients see them now, the open transaction's writes included."""
        lookup = staged_first(ex.workspace)

        def shown(collection: str, record_id: Any) -> Record | None:
            found = lookup(collection, record_id)
            return None if found is None else self.as_clock_shows(collection, found)

        return shown

    def _referring(
        self, ex: HandlerCall, collection: str, rid: str, skip: tuple[str, ...] = ()
    ) -> builtins.list[tuple[str, str, Record]]:
        """Every (collection, field, record) that refers to record `rid` of `collection`."""
        found = []
        for other, field in self.referrers.get(collection, []):
            if other in skip:
                continue
            for record in ex.workspace.view(other).query([(field, rid)], None, "id", False):
                found.append((other, field, record))
        return found

    def _erase(self, ex: HandlerCall, coll: Collection, rid: str) -> None:
        """Erase a record, and its `cascade` dependants, leaving no dangling reference.

        A reference from outside the cascade (or to a dependant from outside it) refuses the
        whole delete with 409 IN_USE; nothing is erased then.
        """
        cascade = ex.op.hints.cascade
        doomed = [(coll.name, rid)]
        for other, field, record in self._referring(ex, coll.name, rid):
            if other not in cascade or isinstance(record.get(field), list):
                self._in_use(coll.name, rid, other, field, record)
            doomed.append((other, record["id"]))
        for other, dependant in doomed[1:]:
            for third, field, record in self._referring(ex, other, dependant, cascade):
                self._in_use(other, dependant, third, field, record)
        for collection, record_id in reversed(doomed):
            ex.workspace.delete(collection, record_id)

    @staticmethod
    def _in_use(collection: str, rid: str, other: str, field: str, record: Record) -> NoReturn:
        raise ApiError(
            "IN_USE",
            f"{collection} record {rid} is still referenced by {other} record {record['id']} "
            f"({field}); remove or change that first.",
            [Detail("path", "id", f"referenced by {other}.{field} of {record['id']}")],
        )

    def delete(self, ex: HandlerCall) -> tuple[int, Any]:
        hints = ex.op.hints
        coll = self._collection(ex)
        rid = self._record_id(ex)
        record = self._found(ex, coll, rid)
        self._check_when(ex, coll, record)
        if hints.soft_delete:
            # the record stays (what refers to it stays valid), in its retired state
            kept = {
                **record,
                **{k: self._value(v, ex, record) for k, v in hints.soft_delete.items()},
            }
            kept["updated_at"] = self.clock.iso()
            self._carry_live_times(ex, coll, record, kept)
            self._check_refusals(ex, coll, record, None)
            ex.workspace.write(coll.name, kept)
            self._update_dependents(ex, coll, record, kept)
        else:
            self._check_refusals(ex, coll, record, None)
            self._erase(ex, coll, rid)
            rules = self.rules[coll.name]
            record_rules.settle_delete(ex.workspace, coll.name, rules, record, self.clock.iso())
        return ex.op.success_status, {"id": rid, "deleted": True}

    def action(self, ex: HandlerCall) -> tuple[int, Any]:
        hints = ex.op.hints
        coll = self._collection(ex)
        rid = self._record_id(ex)
        record = self._found(ex, coll, rid)
        self._check_when(ex, coll, record)
        updated = record
        if hints.sets:  # from the record as it reads now: a status the clock moved stays moved
            shown = self.as_clock_shows(coll.name, record)
            updated = {**shown, **{k: self._value(v, ex, record) for k, v in hints.sets.items()}}
            updated["updated_at"] = self.clock.iso()
            self._carry_live_times(ex, coll, shown, updated)
            self._check_given(ex, coll, updated)
        self._check_refusals(ex, coll, record, updated)
        self._check_blockers(ex, coll, record, updated)
        if hints.sets:
            self._check_named(ex, coll, record, updated)
            self._check_guards(ex, coll, record, updated)
            ex.workspace.write(coll.name, updated)
            self._move_followers(ex, coll, record, updated)
            self._update_dependents(ex, coll, record, updated)
        creates = hints.creates
        if creates is not None:
            target = self.spec.collections[creates.collection]
            given = {k: self._value(v, ex, record) for k, v in creates.fields.items()}
            given = {k: v for k, v in given.items() if v is not None}
            new = self._new_record(ex, target, given, {})
            ex.workspace.write(target.name, new)
            view = ex.workspace.view(target.name)
            return ex.op.success_status, self.present(target, view, new, lookup=ex.workspace.get)
        return ex.op.success_status, self.present(
            coll, ex.workspace.view(coll.name), updated, lookup=ex.workspace.get
        )

    def _check_given(self, ex: HandlerCall, coll: Collection, updated: Record) -> None:
        """What an action sets from its body is checked as an update's fields are: references
        that exist and the invariants writes keep; a refusal names the body's field."""
        given = ex.op.hints.sets_from_body
        if not given:
            return
        try:
            self._check_refs(ex, coll, updated, set(given))
            env = self.invariants.env(ex.workspace.get, int(self.clock.now_dt().timestamp()))
            self.invariants.check(env, coll.name, updated, set(given))
        except ApiError as exc:
            raise exc.naming(given) from None

    def identity(self, ex: HandlerCall) -> tuple[int, Any]:
        return ex.op.success_status, self._identity(ex)

"""The audit trail: every write through the API leaves an entry, written with the write itself.

The help pages describe the audit log as tamper-evident and complete for writes: who did it (the
user, and here the key's name, never the key), what kind of object and which one, when, from where,
and a diff of the changed fields. The spec's root `x-sandbox-audit` names the collection and which
of its fields hold each part; the entries are staged in the request's own transaction, so a write
and its entry are saved together or not at all. An entry is deferred (`Workspace.defer`): the
transaction keeps the call that makes it, and in memory it is made when the log is first read;
the log is written on every write and read far less, and a made entry was most of what a create
kept and a quarter of its time (`benchmarks/README.md`). With a data directory or shared state,
which store every record at commit, an entry is made and staged at once. A deferred create's
diff is read from the record it stored, which no later write changes in place (a write stores a
new record).

A number a create takes from a counter held in another record (`x-sequence.next-from`) moves that
counter on in the same transaction; that move is the created record's bookkeeping, not a change
anyone made to the holder, so it leaves no entry of its own (the created record's entry holds the
number). An operation on the holder's own collection that changes the counter is logged as usual.

An entry's action is `<object type>.<verb>`: the object type is the collection's schema name in
snake case (`TimeEntry` -> `time_entry`) unless `x-sandbox-audit.object-types` names another, the
verb the operation's `audit` hint, else `created`, `modified` or `deleted` by what happened to the
record. An update that changes a field `x-sandbox-audit.field-verbs` names for its collection is
logged under that field's verb (`ticket.status_changed`, as the seeded entries and the help pages'
families name a status change), the fields it changes with no verb of their own in a `modified`
entry beside it. A verb given as `{verb, to}` names only a change to that value (a contact's
`portal_user` set to true: `contact.portal_access_granted`); any other change to the field is a
modification. `spec check` holds every action and object type a write can record to the log's
enums.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass
from itertools import compress
from operator import ne
from typing import TYPE_CHECKING, Any

from opsmerge_sandbox.extensions import FieldRules, OperationHints
from opsmerge_sandbox.pipeline.address import client_address, parse_networks
from opsmerge_sandbox.spec import BOOKKEEPING, Collection, Operation, Spec, unlogged_fields
from opsmerge_sandbox.world.key_records import last_use

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.store.workspace import Workspace

Record = dict[str, Any]
Diff = dict[str, tuple[Any, Any]]  # field -> (old, new)
# `entry`'s arguments after the diff (id, actor, key name, action, object type and id, address,
# user agent, time): what a deferred entry keeps until it is made
_Made = tuple[str, str | None, str | None, str, str, str, str, str, str]
# the parts of an entry, as `x-sandbox-audit.fields` names them
AUDIT_PARTS = (
    "actor",
    "key-name",
    "action",
    "object-type",
    "object-id",
    "diff",
    "address",
    "user-agent",
)
def object_type(schema_name: str) -> str:
    """`TimeEntry` -> `time_entry`: how an entry names the kind of object a write touched."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", schema_name).lower()


_OBJECT_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")
_KNOWN_KEYS = ("collection", "fields", "object-types", "field-verbs", "key-use")


@dataclass(frozen=True, slots=True)
class AuditModel:
    """The root `x-sandbox-audit`: the entries' collection, the field of each part, and the
    object type of a collection whose records the log names otherwise than by its schema (the
    settings records: `settings`, as the log's own entries and the help pages name them)."""

    collection: str
    fields: Mapping[str, str]  # part -> field of the entry
    object_types: Mapping[str, str]  # collection -> the object type its entries name
    # collection -> field -> (the verb of an update that changes it, only to this value or ANY)
    field_verbs: Mapping[str, Mapping[str, tuple[str, Any]]]
    # a key's use: (the verb, once per how many seconds per key and workspace); None: unlogged
    key_use: tuple[str, int] | None = None

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any]) -> AuditModel | None:
        ext = raw.get("x-sandbox-audit")
        if not isinstance(ext, Mapping):
            return None
        types = ext.get("object-types")
        verbs = ext.get("field-verbs")
        use = ext.get("key-use")
        key_use = None
        if isinstance(use, Mapping) and isinstance(use.get("every-seconds"), int):
            key_use = (str(use.get("verb")), int(use["every-seconds"]))
        return cls(
            str(ext.get("collection")),
            dict(ext.get("fields") or {}),
            {str(k): str(v) for k, v in types.items()} if isinstance(types, Mapping) else {},
            {
                str(name): {str(f): _field_verb(v) for f, v in by_field.items()}
                for name, by_field in (verbs.items() if isinstance(verbs, Mapping) else ())
                if isinstance(by_field, Mapping)
            },
            key_use,
        )

    def object_type(self, collection: str, schema_name: str) -> str:
        """The object type entries about the collection's records name."""
        return self.object_types.get(collection) or object_type(schema_name)

    def split(self, collection: str, verb: str, diff: Diff) -> list[tuple[str, Diff]]:
        """(verb, its part of the diff) of each entry a change logged as `verb` makes: a
        modification's fields named in `field-verbs` go under their verbs, the rest under
        `modified`."""
        verbs = self.field_verbs.get(collection)
        if verb != "modified" or not verbs:
            return [(verb, diff)]
        parts: dict[str, Diff] = {}
        for name, pair in diff.items():
            own, to = verbs.get(name, ("modified", ANY))
            named = own if to is ANY or pair[1] == to else "modified"
            parts.setdefault(named, {})[name] = pair
        return list(parts.items())

    def verbs(self, collection: str, verb: str) -> list[str]:
        """Every verb `split` can log a change logged as `verb` under."""
        if verb != "modified":
            return [verb]
        named = [v for v, _ in self.field_verbs.get(collection, {}).values()]
        return list(dict.fromkeys([verb, *named]))


ANY = object()  # a field verb for any change to its field


def _field_verb(value: Any) -> tuple[str, Any]:
    """`verb` (any change) or `{verb, to}` (a change to that value) as (verb, value or ANY)."""
    if isinstance(value, Mapping):
        return str(value.get("verb")), value.get("to", ANY)
    return str(value), ANY


def entry_verb(own: str | None, before: bool, after: bool) -> str:
    """The verb of a changed record's entry: the operation's own (`x-sandbox.audit`, for its own
    collection), else what happened to the record: made, removed or changed."""
    if own:
        return own
    if not before:
        return "created"
    return "modified" if after else "deleted"


def model_problems(
    raw: Mapping[str, Any], properties: Mapping[str, Container[str]]
) -> Iterator[str]:
    """What is wrong with `x-sandbox-audit`; `properties` holds each collection's fields."""
    ext = raw.get("x-sandbox-audit")
    if ext is None:
        return
    if not isinstance(ext, Mapping):
        yield "must be a mapping of collection and fields"
        return
    for key in ext:
        if key not in _KNOWN_KEYS:
            yield f"has an unknown key {key!r} (known: {', '.join(_KNOWN_KEYS)})"
    problems, types = _keyed(ext, "object-types", "the object type its entries name", properties)
    yield from problems
    for name, value in types:
        if not isinstance(value, str) or not _OBJECT_TYPE.match(value):
            yield f"object-types.{name} must be a snake_case object type, got {value!r}"
    problems, verbs = _keyed(ext, "field-verbs", "{field: verb}", properties)
    yield from problems
    for name, by_field in verbs:
        if name not in properties:
            continue
        if not isinstance(by_field, Mapping):
            yield f"field-verbs.{name} must map a field to the verb of a change to it"
            continue
        for field, given in by_field.items():
            if field not in properties[name]:
                yield f"field-verbs.{name}.{field} is not a field of {name}"
            if isinstance(given, Mapping) and (set(given) - {"verb", "to"} or "to" not in given):
                yield f"field-verbs.{name}.{field} must be a verb or {{verb, to: <the value>}}"
                continue
            verb = given.get("verb") if isinstance(given, Mapping) else given
            if not isinstance(verb, str) or not _OBJECT_TYPE.match(verb):
                yield f"field-verbs.{name}.{field} must be a snake_case verb, got {verb!r}"
    use = ext.get("key-use")
    if use is not None and not (
        isinstance(use, Mapping)
        and isinstance(use.get("verb"), str)
        and _OBJECT_TYPE.match(use["verb"])
        and isinstance(use.get("every-seconds"), int)
        and not isinstance(use["every-seconds"], bool)
        and use["every-seconds"] > 0
    ):
        yield "key-use must be {verb: <snake_case verb>, every-seconds: <seconds, at least 1>}"
    collection = ext.get("collection")
    if not isinstance(collection, str) or collection not in properties:
        yield f"collection {collection!r} names no collection"
        return
    fields = ext.get("fields")
    if not isinstance(fields, Mapping):
        yield "fields must map each part of an entry to a field of the collection"
        return
    for part in AUDIT_PARTS:
        if part not in fields:
            yield f"fields lacks {part!r} (every part: {', '.join(AUDIT_PARTS)})"
    for part, field in fields.items():
        if part not in AUDIT_PARTS:
            yield f"fields has an unknown part {part!r} (known: {', '.join(AUDIT_PARTS)})"
        elif field not in properties[collection]:
            yield f"fields.{part} {field!r} is not a field of {collection}"


def _keyed(
    ext: Mapping[str, Any], key: str, what: str, properties: Mapping[str, Container[str]]
) -> tuple[list[str], list[tuple[Any, Any]]]:
    """(problems, entries) of a part of `x-sandbox-audit` keyed by collection: it must be a
    mapping whose keys name collections; the entries are checked by the caller."""
    found = ext.get(key, {})
    if not isinstance(found, Mapping):
        return [f"{key} must map a collection to {what}"], []
    unknown = [f"{key} names no collection {name!r}" for name in found if name not in properties]
    return unknown, list(found.items())


def operation_actions(
    model: AuditModel, collections: Mapping[str, str], hints: OperationHints
) -> Iterator[tuple[str, str]]:
    """(object type, action id) of each entry a write operation can record: for its own record,
    for a record its action creates, for the records its delete takes along. `collections`:
    collection -> schema name."""
    kind, own = hints.kind, hints.collection
    if own is None or own not in collections or own == model.collection:
        return
    if kind in ("list", "get", "identity"):
        return
    # what the write does to its own record: (it was there, it is there after); a delete that
    # keeps the record (soft-delete) changes it
    outcome = {"create": (False, True), "delete": (True, bool(hints.soft_delete))}
    verb = entry_verb(hints.audit, *outcome.get(kind, (True, True)))
    touched = [(own, v) for v in model.verbs(own, verb)]
    if hints.creates is not None:
        touched.append((hints.creates.collection, entry_verb(None, False, True)))
    touched += [(name, entry_verb(None, True, False)) for name in hints.cascade]
    for name, done in touched:
        if name in collections and name != model.collection:
            kind_of = model.object_type(name, collections[name])
            yield kind_of, f"{kind_of}.{done}"


def _diff(
    before: Record | None, after: Record | None, unlogged: frozenset[str] = BOOKKEEPING
) -> dict[str, tuple[Any, Any]]:
    """`{field: (old, new)}` for every field the write changed (a create: from null), leaving out
    `unlogged` fields: bookkeeping, and secrets (`x-shown-once`), never copied into the log.

    Pairs are tuples (JSON arrays once encoded) so the log can grow without growing the cyclic
    collector's work: a tuple of plain values, and then the entry holding it, drop out of the
    collector's sight, where lists would be walked on every full pass for as long as the log
    is kept."""
    if before is None:  # a create: every field it sets, each read once
        # one comprehension over the record's items: half the instructions of a chain of
        # iterators calling `unlogged.__contains__` (a method wrapper: an argument tuple a call)
        return {
            name: (None, value)
            for name, value in (after or {}).items()
            if value is not None and name not in unlogged
        }
    old, new = before, after or {}
    if [*old] == [*new]:
        # the same fields in the same order (a counter moved on, a field or two set): only
        # those whose values differ are looked at one by one
        differ = compress(old, map(ne, old.values(), new.values()))
        return {name: (old[name], new[name]) for name in differ if name not in unlogged}
    return {
        name: (old.get(name), new.get(name))
        for name in dict.fromkeys([*old, *new])
        if name not in unlogged and old.get(name) != new.get(name)
    }


class AuditTrail:
    """Stages an audit entry for each record a request's write changes."""

    def __init__(
        self,
        spec: Spec,
        model: AuditModel,
        now: Callable[[], str],
        fill: Callable[[Collection, Record], Record],
        trusted_proxies: tuple[str, ...] = (),
        rules: Mapping[str, FieldRules] | None = None,
        watched: frozenset[str] = frozenset(),
    ) -> None:
        self.model = model
        # entries are made when the log is first read (`Workspace.defer`), unless a rule
        # watches the log's writes, which needs them among the staged changes
        self.deferring = model.collection not in watched
        self.entries = spec.collections[model.collection]
        self.types = {
            name: model.object_type(name, c.schema_name) for name, c in spec.collections.items()
        }
        self.now = now
        self.fill = fill
        # a record as clients saw it before the write (a status the clock moved since it was
        # stored): what a change is logged from
        self.shown: Callable[[str, Record], Record] | None = None
        self.trusted = parse_networks(trusted_proxies)
        self.unlogged = frozenset().union(
            *(unlogged_fields(c.schema) for c in spec.collections.values())
        )
        # (collection, record id) -> the fields of that record other creates take numbers from
        counted: dict[tuple[str, str], set[str]] = {}
        for field_rules in (rules or {}).values():
            for c in field_rules.counters.values():
                counted.setdefault((c.collection, c.record_id), set()).add(c.field)
        # collection -> what its diffs leave out: the keys' last use moves with the log's entry of
        # it (`pipeline/key_use.py`), no change anyone made to the key
        keys = last_use(spec.resolved.get("x-sandbox-auth"))
        self.unlogged_in = {keys[0]: self.unlogged | frozenset(keys[1])} if keys else {}
        self.counters = {
            (c, rid): self.unlogged_in.get(c, self.unlogged) | fields
            for (c, rid), fields in counted.items()
        }
        self._last_id = 0
        # (collection, verb) -> the action its entries name, for verbs `split` never splits
        self._named: dict[tuple[str, str], str] = {}

    def _next_id(self) -> str:
        """Ids that grow with time, so entries of one second still list newest first."""
        self._last_id = max(self._last_id + 1, time.time_ns() // 1000)
        return f"{self.entries.id_prefix}_{self._last_id:013x}"

    @classmethod
    def from_spec(
        cls,
        spec: Spec,
        now: Callable[[], str],
        fill: Callable[[Collection, Record], Record],
        trusted_proxies: tuple[str, ...] = (),
        rules: Mapping[str, FieldRules] | None = None,
        watched: frozenset[str] = frozenset(),
    ) -> AuditTrail | None:
        """`rules`: the collections' field rules, whose counters a create moves unlogged;
        `watched`: the collections whose writes rules watch."""
        model = AuditModel.from_spec(spec.resolved)
        if model is None:
            return None
        return cls(spec, model, now, fill, trusted_proxies, rules, watched)

    def _actions(
        self, op: Operation, collection: str, before: Any, after: Any, diff: Diff
    ) -> list[tuple[str, Diff]]:
        """The entries one changed record gets: (action, its part of the diff)."""
        verb = self._verb(op, collection, before, after)
        if verb != "modified":  # one entry
            return [(self._action(collection, verb), diff)]
        named = self.types[collection]
        return [(f"{named}.{v}", part) for v, part in self.model.split(collection, verb, diff)]

    @staticmethod
    def _verb(op: Operation, collection: str, before: Any, after: Any) -> str:
        own = op.hints.audit if collection == op.hints.collection else None
        return entry_verb(own, before is not None, after is not None)

    def _action(self, collection: str, verb: str) -> str:
        """The action of an entry with a verb `split` never splits, named once per collection
        and verb."""
        key = (collection, verb)
        action = self._named.get(key)
        if action is None:
            action = self._named[key] = f"{self.types[collection]}.{verb}"
        return action

    def maker(self, collection: str, record_id: str) -> str:
        """How a write the sandbox makes itself names its maker (a rule) in `key-name`."""
        return f"{self.types[collection]} {record_id}"

    def origin(self, ctx: RequestContext) -> tuple[str, str]:
        """(address, user agent) a request came from, as its entries record them."""
        headers = ctx.headers
        address = client_address(ctx.request.scope, headers, self.trusted) if headers else ""
        agent = (headers.get("user-agent") if headers else None) or ""
        return address, agent

    def record(self, ctx: RequestContext, ws: Workspace) -> None:
        """Stage one entry per changed record, in the request's transaction."""
        caller = ctx.caller
        address, agent = self.origin(ctx)
        actor = caller.user_id if caller else None
        self.stage(ws, ctx.op, actor, caller.key.name if caller else None, address, agent)

    def entry(
        self,
        diff: Mapping[str, Any],
        entry_id: str,
        actor: str | None,
        key_name: str | None,
        action: str,
        object_type: str,
        object_id: str,
        address: str,
        agent: str,
        now: str | None = None,
    ) -> Record:
        """One entry, filled as a record of the log's collection, made `now` (None: now). The
        diff comes first: a deferred entry keeps the rest of these arguments as one tuple
        (`_Made`), and a creation's reads its diff from the record when it is made
        (`_created_entry`)."""
        f = self.model.fields
        if now is None:
            now = self.now()
        entry = {
            "id": entry_id,
            f["actor"]: actor,
            f["key-name"]: key_name,
            f["action"]: action,
            f["object-type"]: object_type,
            f["object-id"]: object_id,
            f["diff"]: diff,
            f["address"]: address[:64],
            f["user-agent"]: agent[:256],
            "created_at": now,
            "updated_at": now,
        }
        return self.fill(self.entries, entry)

    def _created_entry(self, record: Record, unlogged: frozenset[str], made: _Made) -> Record:
        """The entry of a record's creation, its diff read from the record when the entry is
        made: a stored record is never changed in place (a write stores a new one)."""
        return self.entry(_diff(None, record, unlogged), *made)

    def _changed_entry(self, diff: Diff, made: _Made) -> Record:
        """The entry of a change, made when the log is read."""
        return self.entry(diff, *made)

    def stage(
        self,
        ws: Workspace,
        op: Operation,
        actor: str | None,
        key_name: str | None,
        address: str = "",
        agent: str = "",
    ) -> None:
        """Stage one entry per record the open transaction changes, made by `actor` through
        `key_name` (a write the sandbox makes itself, such as a rule's action, names its maker
        there)."""
        transaction = ws.transaction
        if transaction is None:
            return
        log, own = self.model.collection, op.hints.collection
        deferring, now = self.deferring and ws.defers, self.now()
        # a copy: the entries staged below join the same transaction
        for (collection, record_id), after in [*transaction.staged.items()]:
            if collection == log:
                continue
            before = ws.get(collection, record_id)
            unlogged = self.unlogged_in.get(collection, self.unlogged)
            if before is None and after is not None and deferring:  # a creation: one entry
                action = self._action(collection, self._verb(op, collection, None, after))
                entry_id = self._next_id()
                made = (entry_id, actor, key_name, action, self.types[collection], record_id,
                        address, agent, now)  # fmt: skip
                ws.defer(log, entry_id, self._created_entry, after, unlogged, made)
                continue
            if before is not None and self.shown is not None:
                before = self.shown(collection, before)
            if self.counters and collection != own:
                unlogged = self.counters.get((collection, record_id), unlogged)
            diff = _diff(before, after, unlogged)
            if before is not None and after is not None and not diff:
                continue  # a write that changed nothing but bookkeeping leaves no entry
            for action, part in self._actions(op, collection, before, after, diff):
                entry_id = self._next_id()
                made = (entry_id, actor, key_name, action, self.types[collection], record_id,
                        address, agent, now)  # fmt: skip
                if deferring:
                    ws.defer(log, entry_id, self._changed_entry, part, made)
                else:
                    ws.write(log, self.entry(part, *made))

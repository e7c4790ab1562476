"""`x-invariants`: what must hold of every record of a collection, declared beside its schema.

Each invariant is data in the spec, in the condition language of `conditions`:

    x-invariants:
    - {id: name-by-kind, class: technology, when: {kind: [b]},
       require: {name: {pattern: '^B-'}}}
    - {id: one-primary, class: names, one-per: {field: parent_id, of: parents,
       where: {is_primary: [true]}}}
    - {id: numbers-follow-time, class: time, increases-with: {field: number, by: created_at}}
    - {id: refs-existed, class: time, refs-before: created_at}
    - {id: made-once, class: people, when: {action: [made]}, unique: [action, object_id]}
    - {id: named-while-open, class: time, refs-open: created_at}

`require` (with an optional `when`) is judged record by record, so a write through the API can be
judged by it too. `one-per` (exactly one record matching `where` per record of `of` that
`of-where` admits, none for the others),
`increases-with` (ordered by `by`, the field's numbers increase), `refs-before` (every record
a reference names was created no later than this one), `refs-open` (no record a reference names
had closed by then, `x-closed`: see `closings`) and `unique` (no two records `when` holds for
share the values of these fields: an event that happens once to a record) look at whole
collections.

The checker evaluates these declarations; it knows nothing of how the generator made the values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from opsmerge_sandbox.ref_options import cover_rounds, rest_where
from opsmerge_sandbox.world.closings import Closing, closings
from opsmerge_sandbox.world.conditions import (
    HOLDER,
    Condition,
    ConditionError,
    Env,
    Schemas,
    compile_condition,
    compile_path,
    compile_template,
    read_birth,
    time_operand,
    to_seconds,
)
from opsmerge_sandbox.world.ref_hints import RefHint, ref_hints
from opsmerge_sandbox.world.runs import runs_problems
from opsmerge_sandbox.world.succession import succession_problems
from opsmerge_sandbox.world.working_hours import hours_problems

__all__ = [
    "COLLECTION_HINTS",
    "WRITE_MODES",
    "Invariant",
    "Violation",
    "apply_fix",
    "check_record",
    "check_world",
    "check_written",
    "compile_invariants",
    "hint_problems",
    "invariant_problems",
]

RULE_KEYS = (
    "id",
    "class",
    "when",
    "require",
    "each",
    "one-per",
    "increases-with",
    "refs-before",
    "refs-open",
    "unique",
    "message",
    "on-write",
    "fix",
    "on-read",
    "referenced-change",
)
_KINDS = ("require", "one-per", "increases-with", "refs-before", "refs-open", "unique")
# what a write through the API does about an invariant: `refuse` a record that breaks it (400
# naming the field, nothing stored); `derive` it (the server sets the fields it reads, so it holds
# by construction, and a live workspace is judged by it); `seeded-only` (realism that values a
# client supplies cannot be held to: its own names, addresses, free text)
WRITE_MODES = ("refuse", "derive", "seeded-only")


@dataclass(frozen=True, slots=True)
class Violation:
    collection: str
    record_id: str
    invariant: str
    klass: str
    detail: str


@dataclass(frozen=True, slots=True)
class Invariant:
    """One compiled `x-invariants` entry of a collection."""

    collection: str
    id: str
    klass: str
    kind: str  # require | one-per | increases-with | refs-before | refs-open | unique
    when: Condition
    require: Condition
    decl: Mapping[str, Any]
    message: str
    each: str | None = None  # an array field: `when` and `require` judge each of its items
    refs: tuple[RefHint, ...] = ()  # a refs- rule's reference fields, read once
    closings: Mapping[str, Closing] = field(default_factory=dict)  # refs-open: x-closed, compiled

    @property
    def raw(self) -> Mapping[str, Any]:
        return self.decl

    @property
    def decl_on_write(self) -> str:
        """One of `WRITE_MODES`: what a write through the API does about this invariant."""
        return str(self.decl.get("on-write"))

    @property
    def holds_for_writes(self) -> bool:
        """Whether records written through the API keep it (refused or derived)."""
        return self.decl_on_write != "seeded-only"

    @property
    def fix(self) -> Mapping[str, Any]:
        """What the server sets on a written record (or array item) that breaks it (`derive`)."""
        return self.decl.get("fix") or {}

    @property
    def per_record(self) -> bool:
        return self.kind == "require"


def _declared(schemas: Schemas) -> Iterable[tuple[str, int, Mapping[str, Any]]]:
    for name, schema in schemas.items():
        for i, raw in enumerate(schema.get("x-invariants") or ()):
            yield name, i, raw


def _compile_one(
    name: str, raw: Any, schemas: Schemas, shut: Callable[[], dict[str, Closing]]
) -> Invariant:
    if not isinstance(raw, Mapping):
        raise ConditionError("an invariant is a mapping with id, class and one rule")
    unknown = sorted(set(raw) - set(RULE_KEYS))
    if unknown:
        raise ConditionError(f"unknown key(s) {unknown}: expected {list(RULE_KEYS)}")
    rid, klass = raw.get("id"), raw.get("class")
    if not isinstance(rid, str) or not rid or not isinstance(klass, str) or not klass:
        raise ConditionError("an invariant needs a non-empty id and class")
    kinds = [k for k in _KINDS if k in raw]
    if len(kinds) != 1:
        raise ConditionError(f"{rid}: needs exactly one of {list(_KINDS)}, got {kinds}")
    kind = kinds[0]
    props = (schemas.get(name) or {}).get("properties") or {}
    each = raw.get("each")
    scope = name
    if each is not None:
        items = (props.get(each) or {}).get("items") if isinstance(each, str) else None
        if kind != "require" or not isinstance(items, Mapping) or "properties" not in items:
            raise ConditionError(f"{rid}: each must name an array-of-objects field of {name}")
        scope = f"{name}.{each}[]"
        schemas = {**schemas, scope: items}
    when = compile_condition(scope, raw.get("when"), schemas)
    require = compile_condition(scope, raw.get("require"), schemas) if kind == "require" else when
    decl = raw[kind]
    if raw.get("on-write") not in WRITE_MODES:
        raise ConditionError(f"{rid}: on-write must be one of {list(WRITE_MODES)}")
    if raw.get("on-write") == "refuse" and kind not in ("require", "refs-before"):
        raise ConditionError(f"{rid}: on-write refuse judges one record: a require or refs-before")
    if kind == "one-per":
        if not isinstance(decl, Mapping) or decl.get("field") not in props:
            raise ConditionError(f"{rid}: one-per.field must name a field of {name}")
        if decl.get("of") not in schemas:
            raise ConditionError(f"{rid}: one-per.of must name a collection")
        compile_condition(name, decl.get("where"), schemas)
        compile_condition(str(decl["of"]), decl.get("of-where"), schemas)
    elif kind == "increases-with":
        if not isinstance(decl, Mapping) or decl.get("field") not in props:
            raise ConditionError(f"{rid}: increases-with.field must name a field of {name}")
        compile_path(name, str(decl.get("by")), schemas)
    elif kind in ("refs-before", "refs-open") and decl not in props:
        raise ConditionError(f"{rid}: {kind} must name a time field of {name}")
    elif kind == "unique" and (
        not isinstance(decl, list) or not decl or any(f not in props for f in decl)
    ):
        raise ConditionError(f"{rid}: unique must list fields of {name}")
    fix = raw.get("fix")
    if fix is not None:
        scope_props = (schemas.get(scope) or {}).get("properties") or {}
        if raw.get("on-write") != "derive" or kind != "require" or not isinstance(fix, Mapping):
            raise ConditionError(f"{rid}: fix is a mapping of fields, on a require rule to derive")
        missing = sorted(str(f) for f in fix if f not in scope_props)
        if missing:
            raise ConditionError(f"{rid}: fix names {missing}, not fields of {scope}")
    if raw.get("referenced-change", "refuse") not in ("refuse", "allow"):
        raise ConditionError(f"{rid}: referenced-change is `refuse` or `allow`")
    on_read = raw.get("on-read")
    if on_read is not None and (on_read != "derive" or fix is None):
        raise ConditionError(f"{rid}: on-read is `derive`, on a rule with a fix")
    message = str(raw.get("message") or "")
    refs = tuple(ref_hints(schemas.get(name) or {})) if kind.startswith("refs-") else ()
    closed: dict[str, Closing] = {}
    if kind == "refs-open":
        try:
            closed = shut()
        except ValueError as exc:
            raise ConditionError(f"{rid}: {exc}") from None
    return Invariant(name, rid, klass, kind, when, require, raw, message, each, refs, closed)


def _closings_once(schemas: Schemas) -> Callable[[], dict[str, Closing]]:
    """The schemas' `x-closed`, compiled on first need and then kept (every `refs-open` rule
    reads the same)."""
    kept: list[dict[str, Closing]] = []

    def get() -> dict[str, Closing]:
        if not kept:
            kept.append(closings(schemas))
        return kept[0]

    return get


def compile_invariants(schemas: Schemas) -> list[Invariant]:
    """Every collection's invariants, compiled; a bad declaration raises `ConditionError`."""
    out = []
    shut = _closings_once(schemas)
    for name, i, raw in _declared(schemas):
        try:
            out.append(_compile_one(name, raw, schemas, shut))
        except ConditionError as exc:
            raise ConditionError(f"{name} x-invariants[{i}]: {exc}") from None
    return out


def invariant_problems(schemas: Schemas) -> list[tuple[str, str]]:
    """(collection, problem) for each declaration that does not compile: for `spec check`."""
    problems = []
    shut = _closings_once(schemas)
    for name, i, raw in _declared(schemas):
        try:
            _compile_one(name, raw, schemas, shut)
        except ConditionError as exc:
            problems.append((name, f"x-invariants[{i}]: {exc}"))
    return problems


def check_record(inv: Invariant, rec: Mapping[str, Any], env: Env) -> str | None:
    """Why one record breaks a per-record invariant, or None."""
    if inv.each is not None:
        for i, item in enumerate(rec.get(inv.each) or ()):
            if isinstance(item, Mapping):
                why = _check_one(inv, item, env)
                if why is not None:
                    return f"{inv.each}[{i}].{why}"
        return None
    return _check_one(inv, rec, env)


def apply_fix(inv: Invariant, rec: dict[str, Any], env: Env) -> bool:
    """Set the invariant's `fix` fields on the record (or on each array item) that breaks it;
    whether anything was set."""
    targets = [rec]
    if inv.each is not None:  # items are copied first: they may be a stored record's
        rec[inv.each] = [dict(i) if isinstance(i, Mapping) else i for i in rec.get(inv.each) or ()]
        targets = [i for i in rec[inv.each] if isinstance(i, dict)]
    fixed = False
    for target in targets:
        if inv.fix and _check_one(inv, target, env) is not None:
            target.update(inv.fix)
            fixed = True
    return fixed


def _check_one(inv: Invariant, rec: Mapping[str, Any], env: Env) -> str | None:
    if not inv.when(rec, env) or inv.require(rec, env):
        return None  # the whole condition in one call; only a broken one is read entry by entry
    failing = inv.require.failing(rec, env)
    if failing is None:
        return None
    return f"{failing[0]} = {_show(failing[1])}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_DIGITS = re.compile(r"\d+")


def _order_key(value: Any) -> tuple[int, ...]:
    if isinstance(value, bool) or value is None:
        return ()
    if isinstance(value, int | float):
        return (int(value),)
    return tuple(int(d) for d in _DIGITS.findall(str(value)))


def world_env(
    world: Mapping[str, list[dict[str, Any]]],
    schemas: Schemas,
    epoch: int,
    organisation: Mapping[str, Any],
) -> Env:
    """An `Env` reading references from a whole world (an id index per collection, built once)."""
    index: dict[str, dict[Any, Mapping[str, Any]]] = {}

    def lookup(collection: str, rid: Any) -> Mapping[str, Any] | None:
        table = index.get(collection)
        if table is None:
            table = index[collection] = {r.get("id"): r for r in world.get(collection, ())}
        return table.get(rid)

    return Env(lookup, epoch, dict(organisation), schemas)


def check_world(
    world: Mapping[str, list[dict[str, Any]]],
    schemas: Schemas,
    epoch: int,
    organisation: Mapping[str, Any],
    invariants: list[Invariant] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Violation]:
    """Every violation of every declared invariant in `world`, by collection and record id."""
    invs = compile_invariants(schemas) if invariants is None else invariants
    env = world_env(world, schemas, epoch, organisation)
    out: list[Violation] = []
    total = len(invs)
    for n, inv in enumerate(invs):
        records = world.get(inv.collection, [])
        if inv.kind == "require":
            out += _requires(inv, records, env)
        elif inv.kind == "one-per":
            out += _one_per(inv, records, world, env)
        elif inv.kind == "increases-with":
            out += _increases(inv, records, env)
        elif inv.kind == "unique":
            out += _unique(inv, records, env)
        elif inv.kind == "refs-open":
            out += _refs_open(inv, records, env)
        else:
            out += _refs_before(inv, records, env)
        if progress is not None:
            progress(inv.collection, n + 1, total)
    return out


def check_written(
    invariants: Iterable[Invariant],
    written: Mapping[str, Sequence[Mapping[str, Any]]],
    everything: Callable[[str], Sequence[Mapping[str, Any]]],
    env: Env,
) -> list[Violation]:
    """Violations, by the records clients created or changed (`written`, per collection), of
    every invariant that writes keep (`on-write` refuse or derive).

    Whole-collection rules read every record (`everything(collection)`) but report only what
    involves a written one: a number out of order next to it, a scope it belongs to.
    """
    out: list[Violation] = []
    for inv in invariants:
        if not inv.holds_for_writes:
            continue
        mine = written.get(inv.collection) or ()
        if inv.kind == "require":
            out += _requires(inv, mine, env)
        elif inv.kind == "refs-before":
            out += _refs_before(inv, mine, env, live=True)
        elif inv.kind == "increases-with" and mine:
            ids = {r.get("id") for r in mine}
            out += _increases(inv, everything(inv.collection), env, ids)
        elif inv.kind == "refs-open":
            out += _refs_open(inv, mine, env)
        elif inv.kind == "unique" and mine:
            out += _unique(inv, everything(inv.collection), env, {r.get("id") for r in mine})
        elif inv.kind == "one-per":
            of, field = inv.decl["one-per"]["of"], inv.decl["one-per"]["field"]
            scopes = {r.get("id") for r in written.get(of) or ()}
            scopes |= {r.get(field) for r in mine}
            judged = [r for r in everything(of) if r.get("id") in scopes]
            out += _one_per(inv, everything(inv.collection), {of: judged}, env)
    return out


def _violation(inv: Invariant, rec: Mapping[str, Any], detail: str) -> Violation:
    why = f"{inv.message}: {detail}" if inv.message else detail
    return Violation(inv.collection, str(rec.get("id")), inv.id, inv.klass, why)


def _one_per(
    inv: Invariant,
    records: Iterable[Mapping[str, Any]],
    world: Mapping[str, Iterable[Mapping[str, Any]]],
    env: Env,
) -> list[Violation]:
    """Exactly one matching record per record of `of` that `of-where` admits (all of them when
    it is absent), and none for the others (a check that passes has no alert still open)."""
    decl = inv.decl["one-per"]
    field, of = decl["field"], decl["of"]
    where = compile_condition(inv.collection, decl.get("where"), env.schemas)
    admitted = compile_condition(of, decl.get("of-where"), env.schemas)
    holders: dict[Any, list[Mapping[str, Any]]] = {}
    for rec in records:
        if inv.when(rec, env) and where(rec, env):
            holders.setdefault(rec.get(field), []).append(rec)
    out = []
    for scope in world.get(of, []):
        found = holders.get(scope.get("id"), [])
        wanted = 1 if admitted(scope, env) else 0
        if len(found) != wanted:
            detail = (
                f"{len(found)} {inv.collection} records with {field} = {scope.get('id')!r}"
                f" (wants {wanted})"
            )
            out.append(Violation(of, str(scope.get("id")), inv.id, inv.klass, detail))
    return out


def _unique(
    inv: Invariant,
    records: Iterable[Mapping[str, Any]],
    env: Env,
    involving: Container[Any] | None = None,
) -> list[Violation]:
    """Each record `when` holds for that shares its `unique` fields' values with an earlier one
    (by the earlier one's id), when either is `involving` (every record without it)."""
    fields = tuple(inv.decl["unique"])
    first: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    out = []
    for rec in records:
        if not inv.when(rec, env):
            continue
        values = tuple(_hashable(rec.get(f)) for f in fields)
        earlier = first.setdefault(values, rec)
        if earlier is rec:
            continue
        if involving is None or rec.get("id") in involving or earlier.get("id") in involving:
            named = ", ".join(f"{f} = {_show(rec.get(f))}" for f in fields)
            out.append(_violation(inv, rec, f"{named} as {earlier.get('id')!r} already has"))
    return out


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, list | dict) else value


def _increases(
    inv: Invariant,
    records: Iterable[Mapping[str, Any]],
    env: Env,
    involving: Container[Any] | None = None,
) -> list[Violation]:
    decl = inv.decl["increases-with"]
    field = decl["field"]
    by = compile_path(inv.collection, str(decl["by"]), env.schemas)
    rows = []
    for rec in records:
        if inv.when(rec, env):
            moment = to_seconds(by(rec, env))
            if moment is not None and rec.get(field) is not None:
                rows.append((moment, _order_key(rec.get(field)), rec))
    rows.sort(key=lambda row: (row[0], row[1]))
    out = []
    for (t0, k0, prev), (t1, k1, rec) in pairwise(rows):
        if k1 <= k0 and (
            involving is None or rec.get("id") in involving or prev.get("id") in involving
        ):
            detail = (
                f"{field} {rec.get(field)!r} ({decl['by']} {t1}) does not follow "
                f"{prev.get('id')}'s {prev.get(field)!r} ({t0})"
            )
            out.append(_violation(inv, rec, detail))
    return out


def _requires(
    inv: Invariant, records: Iterable[Mapping[str, Any]], env: Env
) -> list[Violation]:
    out = []
    for rec in records:
        why = check_record(inv, rec, env)
        if why is not None:
            out.append(_violation(inv, rec, why))
    return out


def _refs_open(
    inv: Invariant, records: Iterable[Mapping[str, Any]], env: Env
) -> list[Violation]:
    """Each record naming, other than through a history reference, a record that had closed
    (`x-closed`) before the record's own time."""
    mine = str(inv.decl["refs-open"])
    out = []
    for rec in records:
        at = to_seconds(rec.get(mine))
        if at is None or not inv.when(rec, env):
            continue
        for ref, target, rid in _named(inv.refs, rec):
            rule = inv.closings.get(target)
            if rule is None or ref.history:
                continue
            other = env.lookup(target, rid)
            closed = rule.closed_at(other, env) if other is not None else None
            if other is not None and closed is not None and closed < at:
                why = f"{ref.name} = {rid!r}, closed at {other.get(rule.since)}"
                out.append(_violation(inv, rec, why))
    return out


def _named(
    refs: Iterable[RefHint], rec: Mapping[str, Any]
) -> Iterator[tuple[RefHint, str, Any]]:
    """(the field, the collection, the id) of each record `rec` names."""
    for ref in refs:
        value = rec.get(ref.name)
        if value is None:
            continue
        target = ref.target(rec)
        if target is None:
            continue
        for rid in value if isinstance(value, list) else (value,):
            yield ref, target, rid


def _refs_before(
    inv: Invariant,
    records: Iterable[Mapping[str, Any]],
    env: Env,
    live: bool = False,
) -> list[Violation]:
    out = []
    for rec in records:
        why = refs_before_problem(inv, rec, env, live)
        if why is not None:
            out.append(_violation(inv, rec, why))
    return out


def refs_before_problem(
    inv: Invariant, rec: Mapping[str, Any], env: Env, live: bool = False
) -> str | None:
    """Why a record names a record that does not exist or was created after it, or None.

    `live`: a workspace clients write to, where a reference may be set by a later change (so it
    must have existed by the record's last write, `updated_at`) and a history reference
    (`x-ref.history`) may name a record deleted since; the seeded world has neither.
    """
    if not inv.when(rec, env):
        return None
    mine = str(inv.decl["refs-before"])
    at = to_seconds(rec.get(mine))
    if at is None:
        return None
    if live:
        at = max(at, to_seconds(rec.get("updated_at")) or at)
    lookup = env.lookup
    for ref, target, rid in _named(inv.refs, rec):
        other = lookup(target, rid)
        if other is None:
            if live and ref.history:
                continue
            return f"{ref.name} = {rid!r} is not a record of {target}"
        then = to_seconds(other.get(mine))
        if then is not None and then > at:
            return f"{ref.name} = {rid!r} was created after this record ({other.get(mine)})"
    return None


def _any_slot(slot: str) -> Callable[[Any], str]:
    return lambda rng: ""


def _hint_problems_of(
    scope: str, props: Mapping[str, Any], schemas: Schemas, where: str
) -> list[str]:
    """Problems in the conditional generation hints of one object's properties."""
    out: list[str] = []
    for name, prop in props.items():
        if not isinstance(prop, Mapping):
            continue
        at = f"{where}{name}"
        try:
            for i, case in enumerate(prop.get("x-cases") or ()):
                if not isinstance(case, Mapping) or not isinstance(case.get("when", {}), Mapping):
                    raise ConditionError(f"x-cases[{i}] must be a mapping with a `when` mapping")
                compile_condition(scope, case.get("when"), schemas)
                out += _hint_problems_of(scope, {name: case}, schemas, where)
            if "x-format" in prop:
                compile_template(scope, str(prop["x-format"]), schemas, _any_slot)
            if "x-copy" in prop:
                compile_path(scope, str(prop["x-copy"]), schemas)
            by = prop.get("x-by")
            if isinstance(by, Mapping) and "->" in str(by.get("field", "")):
                compile_path(scope, str(by["field"]), schemas)
            turns = by.get("turns") if isinstance(by, Mapping) else None
            if turns is not None:
                if not isinstance(turns, Mapping) or not {"per", "order-by"} <= turns.keys():
                    raise ConditionError("x-by.turns needs `per` and `order-by` fields")
                compile_condition(scope, turns.get("among"), schemas)
                compile_condition(scope, turns.get("last-when"), schemas)
            change = prop.get("x-change")
            if isinstance(change, Mapping) and isinstance(change.get("fields"), Mapping):
                for field in change["fields"]:
                    compile_path(scope, f"{change.get('of')}->{field}", schemas)
            if "x-birth" in prop:
                read_birth(scope, prop["x-birth"], schemas)
            live = prop.get("x-live-time")
            if live is not None:
                if not isinstance(live, Mapping) or not isinstance(live.get("when", {}), Mapping):
                    raise ConditionError("x-live-time is a mapping with an optional `when` mapping")
                compile_condition(scope, live.get("when") or {}, schemas)
            for drawn in prop.get("x-drawn-per") or ():
                compile_path(scope, str(drawn), schemas)
            rule = prop.get("x-time") or {}
            arms = [c for c in prop.get("x-cases") or () if isinstance(c, Mapping)]
            for timing in [rule, *(c.get("x-time") for c in arms)]:
                if isinstance(timing, Mapping) and "hours" in timing:
                    out += [f"properties.{at}: {p}" for p in hours_problems(timing["hours"])]
            before = rule.get("before")
            for bound in [rule.get("after"), *(before if isinstance(before, list) else [before])]:
                if isinstance(bound, str) and ("->" in bound or "{" in bound):
                    time_operand(scope, bound, schemas)
            ref = prop.get("x-ref") or (prop.get("items") or {}).get("x-ref")
            if isinstance(ref, Mapping):
                if isinstance(ref.get("existed-at"), str):
                    compile_path(scope, ref["existed-at"], schemas)
                target = str(ref.get("collection"))
                where_ = ref.get("where") or {}
                fixed = {k: v for k, v in where_.items() if not isinstance(v, str)}
                compile_condition(target, fixed, schemas)
                try:
                    rounds, rest = cover_rounds(ref), rest_where(ref)
                except ValueError as exc:
                    raise ConditionError(str(exc)) from None
                if rounds is not None:
                    compile_path(scope, rounds[0], schemas)
                if rest is not None:
                    compile_condition(target, rest, schemas)
                for v in where_.values():
                    if isinstance(v, str) and "->" in v:
                        compile_path(scope, v, schemas)
        except ConditionError as exc:
            out.append(f"properties.{at}: {exc}")
        items = prop.get("items")
        if isinstance(items, Mapping) and isinstance(items.get("properties"), Mapping):
            inner = f"{scope}.{name}[]"
            held = {**items, HOLDER: scope}  # its hints may read the record holding it
            out += _hint_problems_of(
                inner, items["properties"], {**schemas, inner: held}, f"{name}[]."
            )
    return out


def hint_problems(schemas: Schemas) -> list[tuple[str, str]]:
    """(collection, problem) for conditional generation hints (`x-cases`, `x-format`, `x-copy`,
    paths in `x-by`, `x-time.after` and `.before`, `x-ref.where`, `.rest-where`, `.cover-with` and
    `.existed-at`,
    `x-change`, `x-birth`, a collection's `x-runs` and `x-succession`) that name a field no
    schema has or cannot be read."""
    out = []
    for name, schema in schemas.items():
        props = schema.get("properties") or {}
        out += [(name, p) for p in _hint_problems_of(name, props, schemas, "")]
        for key, problems_of in COLLECTION_HINTS.items():
            if key in schema:
                out += [(name, p) for p in problems_of(schema[key], props, schemas)]
    return out


# hints a collection's schema holds beside its properties (not in them), each with its check
COLLECTION_HINTS: dict[str, Callable[[Any, Mapping[str, Any], Schemas], list[str]]] = {
    "x-runs": runs_problems,
    "x-succession": succession_problems,
}

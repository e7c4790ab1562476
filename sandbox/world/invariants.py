"""`x-invariants`: what must hold of every record of a collection, declared beside its schema.

Each invariant is data in the spec, in the condition language of `conditions`:

    x-invariants:
    - {id: name-by-kind, class: technology, when: {kind: [b]},
       require: {name: {pattern: '^B-'}}}
    - {id: one-primary, class: names, one-per: {field: parent_id, of: parents,
       where: {is_primary: [true]}}}
    - {id: numbers-follow-time, class: time, increases-with: {field: number, by: created_at}}
    - {id: refs-existed, class: time, refs-before: created_at}

`require` (with an optional `when`) is judged record by record, so a write through the API can be
judged by it too. `one-per` (exactly one record matching `where` per record of `of`),
`increases-with` (ordered by `by`, the field's numbers increase) and `refs-before` (every record
a reference names was created no later than this one) look at whole collections.

The checker evaluates these declarations; it knows nothing of how the generator made the values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from opsmerge_sandbox.world.conditions import (
    Condition,
    ConditionError,
    Env,
    Schemas,
    compile_condition,
    compile_path,
    compile_template,
    to_seconds,
)

__all__ = [
    "Invariant",
    "Violation",
    "check_record",
    "check_world",
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
    "message",
    "on-write",
)
_KINDS = ("require", "one-per", "increases-with", "refs-before")


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
    kind: str  # require | one-per | increases-with | refs-before
    when: Condition
    require: Condition
    decl: Mapping[str, Any]
    message: str
    each: str | None = None  # an array field: `when` and `require` judge each of its items

    @property
    def raw(self) -> Mapping[str, Any]:
        return self.decl

    @property
    def decl_on_write(self) -> str | None:
        """`refuse`: a create or update breaking it is answered 400 (per-record rules only)."""
        value = self.decl.get("on-write")
        return str(value) if value is not None else None

    @property
    def per_record(self) -> bool:
        return self.kind == "require"


def _declared(schemas: Schemas) -> Iterable[tuple[str, int, Mapping[str, Any]]]:
    for name, schema in schemas.items():
        for i, raw in enumerate(schema.get("x-invariants") or ()):
            yield name, i, raw


def _compile_one(name: str, raw: Any, schemas: Schemas) -> Invariant:
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
    if raw.get("on-write") not in (None, "refuse") or ("on-write" in raw and kind != "require"):
        raise ConditionError(f"{rid}: on-write must be refuse, and only on a require rule")
    if kind == "one-per":
        if not isinstance(decl, Mapping) or decl.get("field") not in props:
            raise ConditionError(f"{rid}: one-per.field must name a field of {name}")
        if decl.get("of") not in schemas:
            raise ConditionError(f"{rid}: one-per.of must name a collection")
        compile_condition(name, decl.get("where"), schemas)
    elif kind == "increases-with":
        if not isinstance(decl, Mapping) or decl.get("field") not in props:
            raise ConditionError(f"{rid}: increases-with.field must name a field of {name}")
        compile_path(name, str(decl.get("by")), schemas)
    elif kind == "refs-before" and decl not in props:
        raise ConditionError(f"{rid}: refs-before must name a time field of {name}")
    message = str(raw.get("message") or "")
    return Invariant(name, rid, klass, kind, when, require, raw, message, each)


def compile_invariants(schemas: Schemas) -> list[Invariant]:
    """Every collection's invariants, compiled; a bad declaration raises `ConditionError`."""
    out = []
    for name, i, raw in _declared(schemas):
        try:
            out.append(_compile_one(name, raw, schemas))
        except ConditionError as exc:
            raise ConditionError(f"{name} x-invariants[{i}]: {exc}") from None
    return out


def invariant_problems(schemas: Schemas) -> list[tuple[str, str]]:
    """(collection, problem) for each declaration that does not compile: for `spec check`."""
    problems = []
    for name, i, raw in _declared(schemas):
        try:
            _compile_one(name, raw, schemas)
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


def _check_one(inv: Invariant, rec: Mapping[str, Any], env: Env) -> str | None:
    if not inv.when(rec, env):
        return None
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


_Ref = tuple[str, str | None, str | None, dict[str, str]]  # field, target, or dispatch field+map


def _refs(schema: Mapping[str, Any]) -> list[_Ref]:
    out: list[_Ref] = []
    for name, prop in (schema.get("properties") or {}).items():
        ref = prop.get("x-ref")
        if ref is None and isinstance(prop.get("items"), Mapping):
            ref = prop["items"].get("x-ref")
        if isinstance(ref, str):
            out.append((name, ref, None, {}))
        elif isinstance(ref, Mapping):
            out.append((name, str(ref["collection"]), None, {}))
        elif isinstance(prop.get("x-ref-by"), Mapping):
            by = prop["x-ref-by"]
            out.append((name, None, str(by["field"]), dict(by.get("collections") or {})))
    return out


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
            for rec in records:
                why = check_record(inv, rec, env)
                if why is not None:
                    out.append(_violation(inv, rec, why))
        elif inv.kind == "one-per":
            out += _one_per(inv, records, world, env)
        elif inv.kind == "increases-with":
            out += _increases(inv, records, env)
        else:
            out += _refs_before(inv, records, schemas, env)
        if progress is not None:
            progress(inv.collection, n + 1, total)
    return out


def _violation(inv: Invariant, rec: Mapping[str, Any], detail: str) -> Violation:
    why = f"{inv.message}: {detail}" if inv.message else detail
    return Violation(inv.collection, str(rec.get("id")), inv.id, inv.klass, why)


def _one_per(
    inv: Invariant, records: list[dict[str, Any]], world: Mapping[str, Any], env: Env
) -> list[Violation]:
    decl = inv.decl["one-per"]
    field, of = decl["field"], decl["of"]
    where = compile_condition(inv.collection, decl.get("where"), env.schemas)
    holders: dict[Any, list[Mapping[str, Any]]] = {}
    for rec in records:
        if inv.when(rec, env) and where(rec, env):
            holders.setdefault(rec.get(field), []).append(rec)
    out = []
    for scope in world.get(of, []):
        found = holders.get(scope.get("id"), [])
        if len(found) != 1:
            detail = f"{len(found)} {inv.collection} records with {field} = {scope.get('id')!r}"
            out.append(Violation(of, str(scope.get("id")), inv.id, inv.klass, detail))
    return out


def _increases(inv: Invariant, records: list[dict[str, Any]], env: Env) -> list[Violation]:
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
        if k1 <= k0:
            detail = (
                f"{field} {rec.get(field)!r} ({decl['by']} {t1}) does not follow "
                f"{prev.get('id')}'s {prev.get(field)!r} ({t0})"
            )
            out.append(_violation(inv, rec, detail))
    return out


def _refs_before(
    inv: Invariant, records: list[dict[str, Any]], schemas: Schemas, env: Env
) -> list[Violation]:
    mine = str(inv.decl["refs-before"])
    refs = _refs(schemas.get(inv.collection) or {})
    out = []
    for rec in records:
        if not inv.when(rec, env):
            continue
        at = to_seconds(rec.get(mine))
        if at is None:
            continue
        for name, fixed, by_field, by_map in refs:
            value = rec.get(name)
            target = fixed or (by_map.get(str(rec.get(by_field))) if by_field else None)
            if value is None or target is None:
                continue
            for rid in value if isinstance(value, list) else [value]:
                other = env.lookup(target, rid)
                if other is None:
                    out.append(
                        _violation(inv, rec, f"{name} = {rid!r} is not a record of {target}")
                    )
                    continue
                then = to_seconds(other.get(mine))
                if then is not None and then > at:
                    detail = f"{name} = {rid!r} was created after this record ({other.get(mine)})"
                    out.append(_violation(inv, rec, detail))
    return out


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
            by = prop.get("x-by")
            if isinstance(by, Mapping) and "->" in str(by.get("field", "")):
                compile_path(scope, str(by["field"]), schemas)
            after = (prop.get("x-time") or {}).get("after")
            if isinstance(after, str) and "->" in after:
                compile_path(scope, after, schemas)
            ref = prop.get("x-ref") or (prop.get("items") or {}).get("x-ref")
            if isinstance(ref, Mapping):
                target = str(ref.get("collection"))
                where_ = ref.get("where") or {}
                fixed = {k: v for k, v in where_.items() if not isinstance(v, str)}
                compile_condition(target, fixed, schemas)
                for v in where_.values():
                    if isinstance(v, str) and "->" in v:
                        compile_path(scope, v, schemas)
        except ConditionError as exc:
            out.append(f"properties.{at}: {exc}")
        items = prop.get("items")
        if isinstance(items, Mapping) and isinstance(items.get("properties"), Mapping):
            inner = f"{scope}.{name}[]"
            out += _hint_problems_of(
                inner, items["properties"], {**schemas, inner: items}, f"{name}[]."
            )
    return out


def hint_problems(schemas: Schemas) -> list[tuple[str, str]]:
    """(collection, problem) for conditional generation hints (`x-cases`, `x-format`, paths in
    `x-by`, `x-time.after` and `x-ref.where`) that name a field no schema has or cannot be read."""
    return [
        (name, problem)
        for name, schema in schemas.items()
        for problem in _hint_problems_of(name, schema.get("properties") or {}, schemas, "")
    ]

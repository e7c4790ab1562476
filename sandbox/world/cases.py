"""Conditional generation hints: `x-cases` (which hints apply, by a condition on the record and
the records it refers to), `x-format` (text built from other fields and random parts), `x-copy`
(the value a path reads: a block-hours line bills its contract's block at its rate), `x-by`
keyed by a path (a child record's text by its parent's subject), `x-change` (a record of a
change to another record, ending at what that record holds now) and `x-birth` (a record of
another record's creation: what it was made with).

The conditions are the coherence language of `conditions`, the same one `x-invariants` is
written in; a case's hints are any of the property hints (`x-faker`, `x-weights`, `x-range`,
`x-time`, `x-by`, `x-format`, `const`, ...), merged over the property's own.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Callable
from typing import Any

from opsmerge_sandbox.spec import unlogged_fields
from opsmerge_sandbox.world.conditions import (
    ConditionError,
    Schemas,
    compile_condition,
    compile_path,
    compile_template,
    condition_fields,
    path_head,
    read_birth,
    template_paths,
)
from opsmerge_sandbox.world.context import (
    Draft,
    FieldPlan,
    GenerationError,
    Redraw,
    Schema,
    WorldContext,
)
from opsmerge_sandbox.world.hints import maybe_null, nullable
from opsmerge_sandbox.world.providers import faker_maker

__all__ = [
    "birth_plan", "by_plan", "cases_plan", "change_plan", "copy_plan", "format_plan", "take_turns",
]

_UPPER = string.ascii_uppercase + string.digits
PlanOf = Callable[[str, Schema], FieldPlan]  # builds the plan of one property schema
# hints that each choose how a value is made: a case giving one drops the property's others
_MAKERS = (
    "x-faker", "x-by", "x-format", "x-time", "x-range", "const", "x-null-probability", "x-ref",
    "x-ref-by", "x-change", "x-birth", "x-count", "x-copy",
)


def cases_plan(
    name: str, prop: Schema, ctx: WorldContext, scope: str, schemas: Schemas, plan_of: PlanOf
) -> FieldPlan:
    """The first case whose `when` holds gives its hints; a case without `when` always holds;
    no case holding falls back to the property's own hints."""
    base = {k: v for k, v in prop.items() if k != "x-cases"}
    arms: list[tuple[Callable[[Any, Any], bool], FieldPlan]] = []
    deps: list[str] = []
    for i, case in enumerate(prop["x-cases"]):
        if not isinstance(case, dict):
            raise GenerationError(f"{scope}.{name}: x-cases[{i}] must be a mapping")
        hints = {k: v for k, v in case.items() if k != "when"}
        own_base = base
        if any(k in hints for k in _MAKERS):  # a case's own maker replaces the property's
            own_base = {k: v for k, v in base.items() if k not in _MAKERS}
        try:
            test = compile_condition(scope, case.get("when"), schemas)
        except ConditionError as exc:
            raise GenerationError(f"{scope}.{name}: x-cases[{i}].when: {exc}") from None
        plan = plan_of(name, {**own_base, **hints})
        arms.append((test.fast(), plan))
        deps += [*condition_fields(case.get("when")), *plan.deps]
    fallback = plan_of(name, base)
    deps += fallback.deps
    env = ctx.env
    own = tuple(dict.fromkeys(x for x in deps if x != name))

    def on_fixed(d: Draft, value: Any) -> None:
        """A recipe gave the value: the case that holds hears it (a unique reference takes
        the record it names)."""
        plan = next((p for test, p in arms if test(d.rec, env)), fallback)
        if plan.on_fixed is not None:
            plan.on_fixed(d, value)

    def make(d: Draft) -> Any:
        rec = d.rec
        for test, plan in arms:
            if test(rec, env):
                return plan.make(d)
        return fallback.make(d)

    path = _one_path(prop["x-cases"])
    if path is None:
        return FieldPlan(name, make, own, on_fixed)
    # every case judges one and the same path's value alone (the usual shape: a pool per value
    # of another field): which case holds is judged once per value, then looked up
    get = compile_path(scope, path, schemas)
    chosen: dict[Any, FieldPlan] = {}

    def by_value(d: Draft) -> Any:
        value = get(d.rec, env)
        try:
            plan = chosen.get(value)
        except TypeError:  # a value that cannot key a table (a list) is judged every time
            return make(d)
        if plan is None:
            plan = chosen[value] = next((p for test, p in arms if test(d.rec, env)), fallback)
        return plan.make(d)

    return FieldPlan(name, by_value, own, on_fixed)


def _one_path(cases: list[dict[str, Any]]) -> str | None:
    """The path every case's `when` reads and nothing else (no other field in an operand or
    template), else None: then which case holds follows from that path's value."""
    paths = set()
    for case in cases:
        when = case.get("when")
        if not isinstance(when, dict) or len(when) != 1:
            return None
        ((path, _),) = when.items()
        path = str(path)
        if path.startswith("$") or condition_fields(when) != [path_head(path)]:
            return None
        paths.add(path)
    return paths.pop() if len(paths) == 1 else None


def _random_slot(ctx: WorldContext, where: str) -> Callable[[str], Callable[[Any], str]]:
    def compile_slot(slot: str) -> Callable[[Any], str]:
        kind, arg = slot[0], slot[1:]
        if kind == "@":
            maker = faker_maker(arg, {}, ctx, where)
            return lambda d: str(maker(d))
        if kind in ("#", "%"):
            try:
                n = int(arg)
            except ValueError:
                raise GenerationError(f"{where}: {{{slot}}} needs a count") from None
            chars = _UPPER if kind == "#" else string.digits
            return lambda d: "".join(d.rng.choices(chars, k=n))
        options = arg.split("|")
        size = len(options)
        return lambda d: options[int(d.rng.random() * size)]

    return compile_slot


def format_plan(
    name: str, prop: Schema, ctx: WorldContext, scope: str, schemas: Schemas, null_p: float
) -> FieldPlan:
    """`x-format`: a template over the record's fields (and the records they name) with random
    slots: `{@provider}` (Faker), `{#N}` (N capitals or digits), `{%N}` (N digits), `{?a|b}`."""
    template = prop["x-format"]
    where = f"{scope}.{name}"
    try:
        render = compile_template(scope, str(template), schemas, _random_slot(ctx, where))
    except ConditionError as exc:
        raise GenerationError(f"{where}: x-format: {exc}") from None
    env = ctx.env
    max_len = prop.get("maxLength")
    fallback: Any = None if nullable(prop) else ""

    def make(d: Draft) -> Any:
        text = render(d.rec, env, d)
        if text is None:
            return fallback
        return text[:max_len] if max_len is not None else text

    deps = tuple(dict.fromkeys(h for h in map(path_head, template_paths(str(template))) if h))
    return FieldPlan(name, maybe_null(make, null_p), deps)


def copy_plan(
    name: str, prop: Schema, ctx: WorldContext, scope: str, schemas: Schemas
) -> FieldPlan:
    """`x-copy: <path>`: the value the path reads, through references or from the record
    holding a nested object (`$parent.contract_id->hourly_rate`); a record where it reads
    nothing is drawn again."""
    source = str(prop["x-copy"])
    try:
        get = compile_path(scope, source, schemas)
    except ConditionError as exc:
        raise GenerationError(f"{scope}.{name}: x-copy: {exc}") from None
    env = ctx.env

    def make(d: Draft) -> Any:
        value = get(d.rec, env)
        if value is None:
            raise Redraw
        return copy.deepcopy(value) if isinstance(value, dict | list) else value

    head = path_head(source)
    return FieldPlan(name, make, (head,) if head else ())


def birth_plan(
    name: str, prop: Schema, ctx: WorldContext, scope: str, schemas: Schemas
) -> FieldPlan:
    """`x-birth: {of: <reference field>, made-with: {field: value}, made-at: [field]}`: a record
    of a creation, `{field: [null, value]}` for each field of the record `of` names, in its
    schema's order, as the record was made: what it holds now, but for the fields `made-with`
    names, which later changes moved on (a ticket is made New and worked on; null: a field set
    only later) or a settling rule did (`WorldContext.made_with`), and those `made-at` names,
    which held the moment it was made (when a user was invited). Nulls, bookkeeping times and
    secrets are left out, as in the entries the API writes."""
    try:
        of, named, made_with, made_at = read_birth(scope, prop["x-birth"], schemas)
    except ConditionError as exc:
        raise GenerationError(f"{scope}.{name}: x-birth: {exc}") from None
    logged = {  # what the API's own entries list of a record
        collection: [f for f in schema.get("properties") or {} if f not in skipped]
        for collection, schema in schemas.items()
        for skipped in (unlogged_fields(schema),)
    }
    env = ctx.env

    def make(d: Draft) -> dict[str, Any]:
        found = named(d.rec, env)
        if found is None:
            raise Redraw
        collection, record = found
        made = {
            **ctx.made_with.get((collection, str(record.get("id"))), {}),
            **made_with,
            **dict.fromkeys(made_at, record.get("created_at")),
        }
        out: dict[str, Any] = {}
        for field in logged.get(collection, ()):
            value = made[field] if field in made else record.get(field)
            if value is not None:
                out[field] = [None, copy.deepcopy(value)]
        return out

    return FieldPlan(name, make, (of,))


def by_plan(
    name: str, prop: Schema, ctx: WorldContext, scope: str, schemas: Schemas, null_p: float
) -> FieldPlan:
    """`x-by`: choices keyed by another field's value, or by a path's (`parent_id->subject`);
    with `turns`, a conversation the collection's records take in order (`take_turns`)."""
    by = prop["x-by"]
    source = str(by["field"])
    table = {k: list(v) for k, v in by["values"].items()}
    fallback = None if nullable(prop) else next(iter(table.values()), [None])[0]
    containers = any(isinstance(o, dict | list) for v in table.values() for o in v)
    env = ctx.env
    if "->" in source:
        try:
            get = compile_path(scope, source, schemas)
        except ConditionError as exc:
            raise GenerationError(f"{scope}.{name}: x-by: {exc}") from None
        read: Callable[[Draft], Any] = lambda d: get(d.rec, env)  # noqa: E731
    else:
        read = lambda d: d.rec.get(source)  # noqa: E731
    turns = "turns" in by

    def make(d: Draft) -> Any:
        options = table.get(read(d))
        if not options:
            return fallback
        if turns:  # a placeholder: `take_turns` gives the turns once the collection is made
            return options[0]
        value = options[int(d.rng.random() * len(options))]
        return copy.deepcopy(value) if containers else value

    head = path_head(source) or source
    return FieldPlan(name, maybe_null(make, null_p), (head,))


def take_turns(scope: str, props: Schema, records: list[dict[str, Any]], ctx: WorldContext) -> None:
    """`x-by.turns: {per, order-by, among, last-when}`: the options are a conversation's turns,
    taken in order by the records of one parent (`per`) that `among` admits, ordered by
    `order-by`: the first record opens it, the last closes it where `last-when` holds (the
    ticket is resolved; until then the closing turn is not reached), and those between take
    the middle turns in order, so no two comments of a ticket repeat while turns are left."""
    for name, prop in props.items():
        if not isinstance(prop, dict):
            continue
        for hints in (prop, *(prop.get("x-cases") or ())):  # a case's own conversation too
            by = hints.get("x-by")
            if isinstance(by, dict) and "turns" in by:
                _take_turns(scope, name, by, records, ctx)


def _take_turns(
    scope: str, name: str, by: dict[str, Any], records: list[dict[str, Any]], ctx: WorldContext
) -> None:
    """One `x-by.turns` rule over a made collection (see `take_turns`)."""
    rule = by["turns"]
    last_when = rule.get("last-when") if isinstance(rule, dict) else None
    try:
        among = compile_condition(scope, rule.get("among") or {}, ctx.schemas)
        closed = compile_condition(scope, last_when, ctx.schemas) if last_when else None
        subject = compile_path(scope, str(by["field"]), ctx.schemas)
    except (ConditionError, AttributeError) as exc:
        raise GenerationError(f"{scope}.{name}: x-by.turns: {exc}") from None
    per, order = str(rule.get("per")), str(rule.get("order-by"))
    env, table = ctx.env, by["values"]
    threads: dict[Any, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get(per) is not None and among(rec, env):
            threads.setdefault(rec[per], []).append(rec)
    for thread in threads.values():
        thread.sort(key=lambda r: str(r.get(order)))
        options = table.get(subject(thread[0], env))
        if not options:
            continue
        closing = closed is not None and closed(thread[0], env)
        turns = _turns(len(thread), len(options), closed is not None, closing)
        for rec, turn in zip(thread, turns, strict=True):
            rec[name] = options[turn]


def _turns(count: int, options: int, closes: bool, closing: bool) -> list[int]:
    """Which turn each of `count` records in order takes: the opening (0), then the middle
    turns in order (cycling when the records outnumber them); where the conversation `closes`,
    its last option is the closing turn, kept out of the middle and taken last when `closing`."""
    last = options - 1 if closes else options
    middle = list(range(1, last)) or [0]
    if closing and count and options > 1:
        return [*_turns(count - 1, options, closes, False), options - 1]
    return [0, *(middle[i % len(middle)] for i in range(count - 1))][:count]


def change_plan(
    name: str, prop: Schema, ctx: WorldContext, scope: str, schemas: Schemas
) -> FieldPlan:
    """`x-change: {of: <reference field>, fields: {field: olds}}`: `{field: [old, new]}` where
    `new` is what the record `of` names holds now (a logged change that is its latest one) and
    `old` one of `olds` other than it: a list, or a mapping from the new value to the values it
    may have come from. The field is drawn among those with an old value to offer; a record
    with none is drawn again."""
    rule = prop["x-change"]
    if not isinstance(rule, dict) or not isinstance(rule.get("fields"), dict):
        raise GenerationError(f"{scope}.{name}: x-change needs `of` and a `fields` mapping")
    of = str(rule.get("of"))
    readers: list[tuple[str, Callable[[Any, Any], Any], Any]] = []
    for field, olds in rule["fields"].items():
        try:
            get = compile_path(scope, f"{of}->{field}", schemas)
        except ConditionError as exc:
            raise GenerationError(f"{scope}.{name}: x-change: {exc}") from None
        readers.append((str(field), get, olds))
    env = ctx.env

    def make(d: Draft) -> dict[str, Any]:
        options: list[tuple[str, list[Any], Any]] = []
        for field, get, olds in readers:
            new = get(d.rec, env)
            came_from = olds.get(new) if isinstance(olds, dict) and new.__class__ is str else olds
            fits = [o for o in came_from or () if o != new] if isinstance(came_from, list) else []
            if fits:
                options.append((field, fits, new))
        if not options:
            raise Redraw
        field, fits, new = options[int(d.rng.random() * len(options))]
        old = fits[int(d.rng.random() * len(fits))]
        return {field: [copy.deepcopy(old), copy.deepcopy(new)]}

    return FieldPlan(name, make, (path_head(of) or of,))

"""The spec's vendor extensions, parsed and validated once into frozen, typed values.

`x-sandbox` on an operation says how the sandbox serves it; `x-collection`, `x-lifecycle` and
`x-create-set` on a schema declare a collection of records. The handlers, the start-up indexes,
the spec check and the contracts all read these, and each used to pick keys out of the raw
mappings with its own idea of a default. Here each extension is read once: every problem is
reported (with the operation or schema it is in) rather than the first, and what comes out is
immutable (tuples and read-only mappings), so no reader can change what the next one sees.

`load_spec` refuses a spec whose extensions do not parse; `spec check` reports the same problems
through the same functions, so the two cannot disagree about what is valid.
"""

from __future__ import annotations

import copyreg
import dataclasses
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

SANDBOX_KINDS = frozenset({"list", "get", "create", "update", "delete", "action", "identity"})
DEFAULT_CONFLICT_CODE = "CONFLICT"
EXPRESSION_SOURCES = ("now", "caller", "path", "body", "record")
_SCALARS = (str, int, float, bool, type(None))
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


def _read_only(items: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(items)


def _reduce_read_only(
    mapping: MappingProxyType[str, Any],
) -> tuple[Callable[..., MappingProxyType[str, Any]], tuple[dict[str, Any]]]:
    return _read_only, (dict(mapping),)


# A read-only mapping cannot be pickled by default; the start-up cache pickles the prepared spec.
copyreg.pickle(MappingProxyType, _reduce_read_only)


def freeze(value: Any) -> Any:
    """`value` with every list made a tuple and every mapping read-only, all the way down."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A fresh JSON-ready copy of a frozen value: what a record may hold and a client may change."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


# --- what comes out ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parent:
    """A nested operation's parent: the path parameter naming it and the field that holds it."""

    param: str
    field: str
    collection: str


@dataclass(frozen=True, slots=True)
class Creates:
    """The record an action creates: its collection, and its fields (values or expressions)."""

    collection: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Guard:
    """A `refuse-when` guard: the records a documented rule protects, and the error it gives.

    With `last` the guard protects only the last record it matches (the tenant's last Owner).
    """

    field: str
    test: str  # "contains" (the field is a list holding value) or "equals"
    value: Any  # one JSON scalar
    last: bool
    code: str
    message: str

    def hits(self, record: Mapping[str, Any]) -> bool:
        found = record.get(self.field)
        if self.test == "contains":
            return isinstance(found, list) and self.value in found
        return bool(found == self.value)


@dataclass(frozen=True, slots=True)
class OperationHints:
    """An operation's `x-sandbox`: how the sandbox serves it, naming no resource in code."""

    kind: str  # one of SANDBOX_KINDS ("" only in a spec check of a broken spec)
    collection: str | None = None
    # `id`: the one record a singleton operation serves
    fixed_id: str | None = None
    parent: Parent | None = None
    # `filter-fields`: query parameter -> the record field it filters
    filter_fields: Mapping[str, str] = dataclasses.field(default_factory=_empty)
    # `search`: the fields `q` searches
    search_fields: tuple[str, ...] = ()
    # fields a create fills when the body leaves them out
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=_empty)
    # `set`: fields a create or an action sets
    sets: Mapping[str, Any] = dataclasses.field(default_factory=_empty)
    creates: Creates | None = None
    # field -> allowed values; a record outside them gets the conflict code
    when: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=_empty)
    # `conflict-code`, when given; DEFAULT_CONFLICT_CODE otherwise
    conflict_code: str | None = None
    # `unique`: fields no two records may share
    unique_fields: tuple[str, ...] = ()
    refuse_when: tuple[Guard, ...] = ()
    refuse_if_referenced: bool = False

    def codes(self) -> Iterator[tuple[str, str]]:
        """(key, code) for every error code the extension names, as the spec spells the key."""
        if self.conflict_code is not None:
            yield "conflict-code", self.conflict_code
        for i, guard in enumerate(self.refuse_when):
            yield f"refuse-when[{i}].code", guard.code


@dataclass(frozen=True, slots=True)
class Step:
    """A lifecycle step: `after` seconds on the clock, these fields take these values.

    A value `"+N"` is the clock field's time plus N seconds.
    """

    after: float
    sets: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """`x-lifecycle`: the steps a created record passes, counted from its `clock` field."""

    clock: str
    steps: tuple[Step, ...]  # in order of `after`


@dataclass(frozen=True, slots=True)
class CollectionHints:
    """A schema's `x-collection` with its `x-lifecycle` and `x-create-set`."""

    name: str
    id_prefix: str
    lifecycle: Lifecycle | None
    create_set: Mapping[str, Any]  # read-only fields a create sets


@dataclass(frozen=True, slots=True)
class ExtensionProblem:
    """One thing wrong with an extension: where it is (operation or schema) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ExtensionError(ValueError):
    """A spec whose extensions do not parse: every problem, not just the first."""

    def __init__(self, problems: Sequence[ExtensionProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"the spec's vendor extensions are invalid:\n{lines}")


# --- parsing ----------------------------------------------------------------------------------


class _Reader:
    """Problems found so far in one extension, each prefixed with where it is."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[ExtensionProblem] = []

    def problem(self, message: str) -> None:
        self.problems.append(ExtensionProblem(self.where, message))

    def text(self, value: Any, key: str) -> str | None:
        if isinstance(value, str) and value:
            return value
        self.problem(f"{key} must be a non-empty string, got {value!r}")
        return None

    def texts(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.problem(f"{key} must be a non-empty list of field names, got {value!r}")
            return ()
        bad = [v for v in value if not isinstance(v, str) or not v]
        if bad:
            self.problem(f"{key} must list field names; {bad[0]!r} is not one")
            return ()
        return tuple(value)

    def mapping(self, value: Any, key: str) -> Mapping[str, Any] | None:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return value
        self.problem(f"{key} must be a mapping of field names, got {value!r}")
        return None

    def values(self, value: Any, key: str) -> Mapping[str, Any]:
        """A mapping of field -> value, where a string starting with `$` must be an expression."""
        found = self.mapping(value, key)
        if found is None:
            return _EMPTY
        for name, expr in found.items():
            if isinstance(expr, str) and expr.startswith("$") and not _is_expression(expr):
                self.problem(
                    f"{key}.{name} {expr!r} is not an expression: use $now or "
                    "$caller.<field>, $path.<param>, $body.<field>, $record.<field>"
                )
        return freeze(found)

    def unknown_keys(
        self, value: Mapping[str, Any], known: tuple[str, ...] | frozenset[str], key: str
    ) -> None:
        for name in value:
            if name not in known:
                listed = ", ".join(sorted(known))
                self.problem(f"{key} has an unknown key {name!r} (known: {listed})")


def _is_expression(expr: str) -> bool:
    source, dot, field = expr[1:].partition(".")
    if source == "now":
        return not dot
    return source in EXPRESSION_SOURCES and bool(dot) and bool(field)


OPERATION_KEYS = frozenset(
    {
        "kind",
        "collection",
        "id",
        "parent",
        "filter-fields",
        "search",
        "defaults",
        "set",
        "creates",
        "when",
        "conflict-code",
        "unique",
        "refuse-when",
        "refuse-if-referenced",
    }
)


def parse_operation(
    ext: Any, where: str, collections: Container[str]
) -> tuple[OperationHints, list[ExtensionProblem]]:
    """An operation's `x-sandbox`, with every problem found; `collections` are the declared names.

    The hints are complete only when there are no problems; with problems, each broken part is
    left at its default so that a spec check can go on to judge the rest.
    """
    r = _Reader(where)
    if not isinstance(ext, Mapping):
        r.problem("has no x-sandbox extension (how the sandbox serves it)")
        return OperationHints(kind=""), r.problems
    r.unknown_keys(ext, OPERATION_KEYS, "x-sandbox")
    kind = ext.get("kind")
    known_kind = kind if isinstance(kind, str) and kind in SANDBOX_KINDS else ""
    if not known_kind:
        allowed = ", ".join(sorted(SANDBOX_KINDS))
        r.problem(f"x-sandbox.kind is {kind!r}; expected one of {allowed}")
    collection = None
    if "collection" in ext:
        collection = _collection_name(r, ext["collection"], "x-sandbox.collection", collections)
    elif kind not in (None, "identity"):
        r.problem(f"x-sandbox.kind {kind} needs x-sandbox.collection")
    renames: Mapping[str, str] = _EMPTY
    if "filter-fields" in ext:
        found = r.mapping(ext["filter-fields"], "x-sandbox.filter-fields")
        bad = [k for k, v in (found or {}).items() if not isinstance(v, str) or not v]
        if bad:
            r.problem(f"x-sandbox.filter-fields.{bad[0]} must name a record field")
        elif found is not None:
            renames = freeze(found)
    refuse_if_referenced = ext.get("refuse-if-referenced", False)
    if not isinstance(refuse_if_referenced, bool):
        r.problem(
            f"x-sandbox.refuse-if-referenced must be true or false, got {refuse_if_referenced!r}"
        )
        refuse_if_referenced = False
    hints = OperationHints(
        kind=known_kind,
        collection=collection,
        fixed_id=r.text(ext["id"], "x-sandbox.id") if "id" in ext else None,
        parent=_parent(r, ext["parent"], collections) if "parent" in ext else None,
        filter_fields=renames,
        search_fields=r.texts(ext["search"], "x-sandbox.search") if "search" in ext else (),
        defaults=r.values(ext["defaults"], "x-sandbox.defaults") if "defaults" in ext else _EMPTY,
        sets=r.values(ext["set"], "x-sandbox.set") if "set" in ext else _EMPTY,
        creates=_creates(r, ext["creates"], collections) if "creates" in ext else None,
        when=_when(r, ext["when"]) if "when" in ext else _EMPTY,
        conflict_code=(
            r.text(ext["conflict-code"], "x-sandbox.conflict-code")
            if "conflict-code" in ext
            else None
        ),
        unique_fields=r.texts(ext["unique"], "x-sandbox.unique") if "unique" in ext else (),
        refuse_when=_guards(r, ext["refuse-when"]) if "refuse-when" in ext else (),
        refuse_if_referenced=refuse_if_referenced,
    )
    return hints, r.problems


def _collection_name(r: _Reader, value: Any, key: str, collections: Container[str]) -> str | None:
    if not isinstance(value, str):
        r.problem(f"{key} must be a collection name, got {value!r}")
        return None
    if value not in collections:
        r.problem(f"{key} {value!r} names no schema with a matching x-collection")
        return None
    return value


def _parent(r: _Reader, value: Any, collections: Container[str]) -> Parent | None:
    if not isinstance(value, Mapping):
        r.problem(f"x-sandbox.parent must be a mapping of param, field, collection; got {value!r}")
        return None
    r.unknown_keys(value, ("param", "field", "collection"), "x-sandbox.parent")
    param = r.text(value.get("param"), "x-sandbox.parent.param")
    field = r.text(value.get("field"), "x-sandbox.parent.field")
    collection = _collection_name(
        r, value.get("collection"), "x-sandbox.parent.collection", collections
    )
    if param is None or field is None or collection is None:
        return None
    return Parent(param, field, collection)


def _creates(r: _Reader, value: Any, collections: Container[str]) -> Creates | None:
    if not isinstance(value, Mapping):
        r.problem(f"x-sandbox.creates must be a mapping of collection and fields, got {value!r}")
        return None
    r.unknown_keys(value, ("collection", "fields"), "x-sandbox.creates")
    collection = _collection_name(
        r, value.get("collection"), "x-sandbox.creates.collection", collections
    )
    fields = r.values(value.get("fields", {}), "x-sandbox.creates.fields")
    return Creates(collection, fields) if collection is not None else None


def _when(r: _Reader, value: Any) -> Mapping[str, tuple[Any, ...]]:
    found = r.mapping(value, "x-sandbox.when")
    if found is None:
        return _EMPTY
    out: dict[str, tuple[Any, ...]] = {}
    for field, allowed in found.items():
        if not isinstance(allowed, list) or not allowed:
            r.problem(f"x-sandbox.when.{field} must be a non-empty list of allowed values")
        elif not all(isinstance(v, _SCALARS) for v in allowed):
            r.problem(f"x-sandbox.when.{field} must list single values (text, numbers, null)")
        else:
            out[field] = tuple(allowed)
    return MappingProxyType(out)


_GUARD_KEYS = ("field", "contains", "equals", "last", "code", "message")


def _guards(r: _Reader, value: Any) -> tuple[Guard, ...]:
    """`refuse-when`: a list of {field, contains | equals, last?, code, message} guards."""
    if not isinstance(value, list):
        r.problem("x-sandbox.refuse-when must be a list of guards")
        return ()
    guards = []
    for i, rule in enumerate(value):
        key = f"x-sandbox.refuse-when[{i}]"
        if not isinstance(rule, Mapping) or not isinstance(rule.get("field"), str):
            r.problem(f"{key} needs a field name")
            continue
        before = len(r.problems)
        r.unknown_keys(rule, _GUARD_KEYS, key)
        tests = [t for t in ("contains", "equals") if t in rule]
        if len(tests) != 1:
            r.problem(f"{key} needs exactly one of contains or equals")
        elif not isinstance(rule[tests[0]], _SCALARS):
            r.problem(f"{key}.{tests[0]} must be a single value (text, a number or null)")
        if not isinstance(rule.get("last", False), bool):
            r.problem(f"{key}.last must be true or false")
        if not isinstance(rule.get("message"), str) or not rule["message"]:
            r.problem(f"{key} needs a message")
        if not isinstance(rule.get("code"), str) or not rule["code"]:
            r.problem(f"{key}.code {rule.get('code')!r} is not an error code")
        if len(r.problems) == before:
            guards.append(
                Guard(
                    field=rule["field"],
                    test=tests[0],
                    value=rule[tests[0]],
                    last=rule.get("last", False),
                    code=rule["code"],
                    message=rule["message"],
                )
            )
    return tuple(guards)


def parse_collections(
    schemas: Any,
) -> tuple[dict[str, tuple[str, CollectionHints]], list[ExtensionProblem]]:
    """Every schema's `x-collection` (with its lifecycle and create-set), by collection name.

    Returns name -> (schema name, hints), and every problem found, at `components.schemas.<X>`.
    Names and id prefixes must be unique: the store and the ids rely on it.
    """
    found: dict[str, tuple[str, CollectionHints]] = {}
    problems: list[ExtensionProblem] = []
    seen: dict[tuple[str, str], str] = {}
    for schema_name, schema in schemas.items() if isinstance(schemas, Mapping) else ():
        if not isinstance(schema, Mapping) or "x-collection" not in schema:
            continue
        r = _Reader(f"components.schemas.{schema_name}")
        hints = _collection(r, schema)
        problems += r.problems
        if hints is None:
            continue
        for key, value in (("name", hints.name), ("id-prefix", hints.id_prefix)):
            other = seen.setdefault((key, value), schema_name)
            if other != schema_name:
                message = f"x-collection {key} {value!r} is also used by {other}"
                problems.append(ExtensionProblem(r.where, message))
        found.setdefault(hints.name, (schema_name, hints))
    return found, problems


def _collection(r: _Reader, schema: Mapping[str, Any]) -> CollectionHints | None:
    decl = schema["x-collection"]
    if not isinstance(decl, Mapping) or not decl.get("name") or not decl.get("id-prefix"):
        r.problem("x-collection needs name and id-prefix")
        return None
    r.unknown_keys(decl, ("name", "id-prefix"), "x-collection")
    name = r.text(decl["name"], "x-collection.name")
    prefix = r.text(decl["id-prefix"], "x-collection.id-prefix")
    lifecycle = _lifecycle(r, schema["x-lifecycle"]) if "x-lifecycle" in schema else None
    create_set = _EMPTY
    if "x-create-set" in schema:
        found = r.mapping(schema["x-create-set"], "x-create-set")
        create_set = freeze(found) if found is not None else _EMPTY
    if name is None or prefix is None:
        return None
    return CollectionHints(name, prefix, lifecycle, create_set)


def _lifecycle(r: _Reader, value: Any) -> Lifecycle | None:
    if not isinstance(value, Mapping):
        r.problem(f"x-lifecycle must be a mapping of clock and steps, got {value!r}")
        return None
    r.unknown_keys(value, ("clock", "steps"), "x-lifecycle")
    clock = r.text(value.get("clock", "created_at"), "x-lifecycle.clock")
    raw_steps = value.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        r.problem("x-lifecycle.steps must be a non-empty list of {after, set}")
        return None
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps):
        key = f"x-lifecycle.steps[{i}]"
        if not isinstance(raw, Mapping):
            r.problem(f"{key} must be a mapping of after and set")
            continue
        r.unknown_keys(raw, ("after", "set"), key)
        after = raw.get("after")
        if isinstance(after, bool) or not isinstance(after, int | float) or after < 0:
            r.problem(f"{key}.after must be a number of seconds, 0 or more, got {after!r}")
            continue
        sets = r.mapping(raw.get("set"), f"{key}.set")
        if sets is None:
            continue
        if steps and after < steps[-1].after:
            r.problem(f"{key}.after {after} comes before the step above it: list steps in order")
        steps.append(Step(after, freeze(sets)))
    if clock is None or len(steps) != len(raw_steps):
        return None
    return Lifecycle(clock, tuple(steps))

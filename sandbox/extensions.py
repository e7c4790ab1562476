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

from opsmerge_sandbox.ref_options import ref_of

SANDBOX_KINDS = frozenset({"list", "get", "create", "update", "delete", "action", "identity"})
DEFAULT_CONFLICT_CODE = "CONFLICT"
EXPRESSION_SOURCES = ("now", "today", "secret", "caller", "path", "body", "record")
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
class Condition:
    """One test on a record: its field holds `value` (a list containing it, or equal to it), or
    does not equal it."""

    field: str
    test: str  # "contains" (the field is a list holding value), "equals" or "not-equals"
    value: Any  # one JSON scalar

    def hits(self, record: Mapping[str, Any] | None) -> bool:
        if record is None:
            return False
        found = record.get(self.field)
        if self.test == "contains":
            return isinstance(found, list) and self.value in found
        if self.test == "not-equals":
            return bool(found != self.value)
        return bool(found == self.value)


GUARD_CHANGES = ("added", "removed", "changed")


@dataclass(frozen=True, slots=True)
class Guard:
    """A `refuse-when` guard: the records a documented rule protects, and the error it gives.

    The condition is read on the record as it is (a create: as it would be). With `change` the
    guard hits only when the write makes the condition start (`added`), stop (`removed`) or
    either (`changed`) holding. With `keeps` it hits a change to one of those fields of a record
    that met the condition before the write (what an issued record bills stays as issued).
    `unless_caller` exempts callers whose own user record meets a condition (an Owner),
    `unless_self` a caller acting on its own record, and with `last` the guard protects only the
    last record it matches (the tenant's last Owner).
    """

    field: str
    test: str  # "contains" (the field is a list holding value), "equals" or "not-equals"
    value: Any  # one JSON scalar
    last: bool
    code: str
    message: str
    change: str | None = None  # one of GUARD_CHANGES
    unless_caller: Condition | None = None
    unless_self: bool = False
    keeps: tuple[str, ...] = ()

    @property
    def condition(self) -> Condition:
        return Condition(self.field, self.test, self.value)

    def hits(self, record: Mapping[str, Any]) -> bool:
        return self.condition.hits(record)

    def hits_write(self, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
        """Whether a write taking a record from `before` to `after` meets the guard's test
        (None: no record, as before a create or after a delete)."""
        if self.keeps:
            return self.kept_field(before, after) is not None
        was, will = self.condition.hits(before), self.condition.hits(after)
        if self.change == "added":
            return will and not was
        if self.change == "removed":
            return was and not will
        if self.change == "changed":
            return was != will
        return was if before is not None else will

    def kept_field(
        self, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
    ) -> str | None:
        """The first of `keeps` the write changes on a record that met the condition, if any."""
        if before is None or after is None or not self.condition.hits(before):
            return None
        return next((f for f in self.keeps if before.get(f) != after.get(f)), None)


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
    # `filter-ranges`: query parameter -> (record field, "from" or "until"): a bound, inclusive
    filter_ranges: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=_empty)
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
    # `soft-delete`: a delete sets these fields and keeps the record (what references it stays
    # valid); without it a delete erases the record, refused while another record refers to it
    soft_delete: Mapping[str, Any] = dataclasses.field(default_factory=_empty)
    # `cascade`: collections whose records referring to the deleted one go with it (an agent's
    # checks and alerts); references from anywhere else refuse the delete with IN_USE
    cascade: tuple[str, ...] = ()
    # `audit`: the verb of the audit entry this operation's write records (`voided` ->
    # `invoice.voided`); by default `created`, `modified` or `deleted`
    audit: str | None = None

    @property
    def sets_from_body(self) -> dict[str, str]:
        """`set` fields whose value is the body's (`$body.<field>`): record field -> body field."""
        return {
            name: expr[len("$body.") :]
            for name, expr in self.sets.items()
            if isinstance(expr, str) and expr.startswith("$body.")
        }

    def codes(self) -> Iterator[tuple[str, str]]:
        """(key, code) for every error code the extension names, as the spec spells the key."""
        if self.conflict_code is not None:
            yield "conflict-code", self.conflict_code
        elif self.when:
            yield "when", DEFAULT_CONFLICT_CODE  # a record outside `when` gets the conflict code
        if self.cascade:
            yield "cascade", "IN_USE"  # a reference from outside the cascade refuses the delete
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
    # with `when`, every record holding these values follows the steps, seeded ones included
    # (an invitation expires however it was made); without it only records clients create do
    when: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=_empty)

    @property
    def moving_fields(self) -> frozenset[str]:
        """The fields the steps set: stored values of these are not what clients see."""
        return frozenset(k for step in self.steps for k in step.sets)

    def follows(self, record: Mapping[str, Any], created: bool) -> bool:
        """Whether `record` (as stored) moves through the steps on the clock."""
        if not self.when:
            return created
        return holds_values(record, self.when)


def holds_values(record: Mapping[str, Any] | None, values: Mapping[str, tuple[Any, ...]]) -> bool:
    """Whether a record holds one of the allowed values in each field (`{field: [values]}`)."""
    return record is not None and all(record.get(f) in v for f, v in values.items())


@dataclass(frozen=True, slots=True)
class StateRule:
    """A rule about a write that takes a record into a state (`into`) and the records of
    `collection` that name it in `field` and hold `holding` (every one when it is empty), as
    the clock shows them: what `x-refuse-while` and `x-on-enter` share."""

    into: Mapping[str, tuple[Any, ...]]
    collection: str
    field: str
    holding: Mapping[str, tuple[Any, ...]]

    def entered(self, before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
        """Whether the write from `before` (None: a create) to `after` enters the state."""
        return holds_values(after, self.into) and not holds_values(before, self.into)

    def holds(self, record: Mapping[str, Any]) -> bool:
        return holds_values(record, self.holding)


@dataclass(frozen=True, slots=True)
class Blocker(StateRule):
    """An `x-refuse-while` rule: the write is refused (`code`) while such records hold theirs:
    a client under a contract in force, or with tickets still open, is not archived."""

    code: str
    message: str
    at: int  # its place in the schema's `x-refuse-while` list (where a check points)


@dataclass(frozen=True, slots=True)
class Follower(StateRule):
    """An `x-on-enter` rule: the write also sets `sets` on such records, in the same
    transaction: an archived client's checks are switched off with it."""

    sets: Mapping[str, Any]  # field -> a value, or an expression such as `$now`


@dataclass(frozen=True, slots=True)
class CollectionHints:
    """A schema's `x-collection` with its `x-lifecycle`, `x-create-set`, `x-refuse-while` and
    `x-on-enter`."""

    name: str
    id_prefix: str
    lifecycle: Lifecycle | None
    create_set: Mapping[str, Any]  # read-only fields a create sets
    rules: FieldRules = dataclasses.field(default_factory=lambda: NO_RULES)  # property hints
    blockers: tuple[Blocker, ...] = ()
    followers: tuple[Follower, ...] = ()


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
                    f"{key}.{name} {expr!r} is not an expression: use $now, $today, $secret or "
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
    if source in ("now", "today", "secret"):
        return not dot
    return source in EXPRESSION_SOURCES and bool(dot) and bool(field)


OPERATION_KEYS = frozenset(
    {
        "kind",
        "collection",
        "id",
        "parent",
        "filter-fields",
        "filter-ranges",
        "search",
        "defaults",
        "set",
        "creates",
        "when",
        "conflict-code",
        "unique",
        "refuse-when",
        "soft-delete",
        "cascade",
        "audit",
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
    soft_delete: Mapping[str, Any] = _EMPTY
    if "soft-delete" in ext:
        if kind != "delete":
            r.problem("x-sandbox.soft-delete belongs on a delete operation")
        soft_delete = r.values(ext["soft-delete"], "x-sandbox.soft-delete")
    cascade: tuple[str, ...] = ()
    if "cascade" in ext:
        if kind != "delete":
            r.problem("x-sandbox.cascade belongs on a delete operation")
        names = r.texts(ext["cascade"], "x-sandbox.cascade")
        cascade = tuple(
            n for n in names if _collection_name(r, n, "x-sandbox.cascade", collections)
        )
    hints = OperationHints(
        kind=known_kind,
        collection=collection,
        fixed_id=r.text(ext["id"], "x-sandbox.id") if "id" in ext else None,
        parent=_parent(r, ext["parent"], collections) if "parent" in ext else None,
        filter_fields=renames,
        filter_ranges=_ranges(r, ext["filter-ranges"]) if "filter-ranges" in ext else _EMPTY,
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
        soft_delete=soft_delete,
        cascade=cascade,
        audit=_verb(r, ext["audit"]) if "audit" in ext else None,
    )
    return hints, r.problems


def _ranges(r: _Reader, value: Any) -> Mapping[str, tuple[str, str]]:
    """`filter-ranges`: {param: {field, bound: from | until}}, an inclusive bound on a field."""
    found = r.mapping(value, "x-sandbox.filter-ranges")
    out: dict[str, tuple[str, str]] = {}
    for param, rule in (found or {}).items():
        key = f"x-sandbox.filter-ranges.{param}"
        if not isinstance(rule, Mapping):
            r.problem(f"{key} must be a mapping of field and bound")
            continue
        r.unknown_keys(rule, ("field", "bound"), key)
        field = r.text(rule.get("field"), f"{key}.field")
        if rule.get("bound") not in ("from", "until"):
            r.problem(f"{key}.bound must be from or until, got {rule.get('bound')!r}")
        elif field is not None:
            out[param] = (field, rule["bound"])
    return MappingProxyType(out)


def _verb(r: _Reader, value: Any) -> str | None:
    """An audit verb: lower-case words joined by `_` (`voided`, `invitation_resent`)."""
    if isinstance(value, str) and value and value.replace("_", "").isalpha() and value.islower():
        return value
    r.problem(f"x-sandbox.audit must be a verb in lower case (e.g. voided), got {value!r}")
    return None


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


def _when(r: _Reader, value: Any, key: str = "x-sandbox.when") -> Mapping[str, tuple[Any, ...]]:
    found = r.mapping(value, key)
    if found is None:
        return _EMPTY
    out: dict[str, tuple[Any, ...]] = {}
    for field, allowed in found.items():
        if not isinstance(allowed, list) or not allowed:
            r.problem(f"{key}.{field} must be a non-empty list of allowed values")
        elif not all(isinstance(v, _SCALARS) for v in allowed):
            r.problem(f"{key}.{field} must list single values (text, numbers, null)")
        else:
            out[field] = tuple(allowed)
    return MappingProxyType(out)


_GUARD_KEYS = (
    "field",
    "contains",
    "equals",
    "last",
    "code",
    "message",
    "change",
    "unless-caller",
    "unless-self",
    "keeps",
    "not-equals",
)


def _condition(r: _Reader, rule: Any, key: str) -> Condition | None:
    """{field, contains | equals | not-equals}: one test on a record."""
    if not isinstance(rule, Mapping) or not isinstance(rule.get("field"), str) or not rule["field"]:
        r.problem(f"{key} needs a field name")
        return None
    tests = [t for t in ("contains", "equals", "not-equals") if t in rule]
    if len(tests) != 1:
        r.problem(f"{key} needs exactly one of contains, equals or not-equals")
        return None
    if not isinstance(rule[tests[0]], _SCALARS):
        r.problem(f"{key}.{tests[0]} must be a single value (text, a number or null)")
        return None
    return Condition(rule["field"], tests[0], rule[tests[0]])


def _guards(r: _Reader, value: Any) -> tuple[Guard, ...]:
    """`refuse-when`: a list of guards, each {field, contains | equals | not-equals, code,
    message} with optional `change`, `keeps` (field names), `unless-caller` ({field, contains |
    equals}), `unless-self` and `last`."""
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
        condition = _condition(r, {k: v for k, v in rule.items() if k != "unless-caller"}, key)
        for flag in ("last", "unless-self"):
            if not isinstance(rule.get(flag, False), bool):
                r.problem(f"{key}.{flag} must be true or false")
        change = rule.get("change")
        if change is not None and change not in GUARD_CHANGES:
            r.problem(f"{key}.change is {change!r}; expected one of {', '.join(GUARD_CHANGES)}")
        keeps = rule.get("keeps", [])
        if not isinstance(keeps, list) or not all(isinstance(f, str) and f for f in keeps):
            r.problem(f"{key}.keeps must be a list of field names")
            keeps = []
        if keeps and change is not None:
            r.problem(f"{key} takes change or keeps, not both")
        exempt = None
        if "unless-caller" in rule:
            if isinstance(rule["unless-caller"], Mapping):
                r.unknown_keys(rule["unless-caller"], _GUARD_KEYS[:3], f"{key}.unless-caller")
            exempt = _condition(r, rule["unless-caller"], f"{key}.unless-caller")
        if not isinstance(rule.get("message"), str) or not rule["message"]:
            r.problem(f"{key} needs a message")
        if not isinstance(rule.get("code"), str) or not rule["code"]:
            r.problem(f"{key}.code {rule.get('code')!r} is not an error code")
        if len(r.problems) == before and condition is not None:
            guards.append(
                Guard(
                    field=condition.field,
                    test=condition.test,
                    value=condition.value,
                    last=rule.get("last", False),
                    code=rule["code"],
                    message=rule["message"],
                    change=change,
                    unless_caller=exempt,
                    unless_self=rule.get("unless-self", False),
                    keeps=tuple(keeps),
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
    clashed = False
    for schema_name, schema in schemas.items() if isinstance(schemas, Mapping) else ():
        if not isinstance(schema, Mapping) or "x-collection" not in schema:
            continue
        r = _Reader(f"components.schemas.{schema_name}")
        hints = _collection(r, schema)
        problems += r.problems
        if hints is None:
            clashed = True
            continue
        for key, value in (("name", hints.name), ("id-prefix", hints.id_prefix)):
            other = seen.setdefault((key, value), schema_name)
            if other != schema_name:
                message = f"x-collection {key} {value!r} is also used by {other}"
                problems.append(ExtensionProblem(r.where, message))
                clashed = True
        found.setdefault(hints.name, (schema_name, hints))
    fields = {n: _properties(schemas[s], schemas) for n, (s, _) in found.items()}
    every: Mapping[str, Mapping[str, Any]] = _Unjudged() if clashed else fields
    for name, (schema_name, hints) in list(found.items()):
        r = _Reader(f"components.schemas.{schema_name}")
        rules = _field_rules(r, fields[name], every)
        raw = schemas[schema_name].get("x-refuse-while")
        blockers = _blockers(r, raw, name, every) if raw is not None else ()
        raw = schemas[schema_name].get("x-on-enter")
        followers = _followers(r, raw, name, every) if raw is not None else ()
        problems += r.problems
        found[name] = (schema_name, dataclasses.replace(hints, rules=rules, blockers=blockers,
                                                        followers=followers))
    if not clashed:
        problems += _invariant_problems(schemas, found, fields)
    return found, problems


def _invariant_problems(
    schemas: Mapping[str, Any],
    found: Mapping[str, tuple[str, CollectionHints]],
    fields: Mapping[str, Mapping[str, Any]],
) -> list[ExtensionProblem]:
    """`x-invariants`, `x-closed` and collection hints (`COLLECTION_HINTS`) that do not
    compile (a field no schema has, a bad test)."""
    from opsmerge_sandbox.world.closings import closing_problems  # the world imports us
    from opsmerge_sandbox.world.invariants import (
        COLLECTION_HINTS,
        hint_problems,
        invariant_problems,
    )

    def item_fields(prop: Any) -> Any:
        items = prop.get("items") if isinstance(prop, Mapping) else None
        if isinstance(items, Mapping) and "$ref" in items:
            target = schemas.get(str(items["$ref"]).rsplit("/", 1)[-1]) or {}
            found_items = {**target, **items, "properties": _properties(items, schemas)}
            return {**prop, "items": found_items}
        return prop

    view = {
        name: {
            "properties": {k: item_fields(v) for k, v in fields[name].items()},
            "x-invariants": (schemas.get(schema_name) or {}).get("x-invariants") or [],
            "x-closed": (schemas.get(schema_name) or {}).get("x-closed"),
            **{
                key: hint
                for key, hint in (schemas.get(schema_name) or {}).items()
                if key in COLLECTION_HINTS
            },
        }
        for name, (schema_name, _) in found.items()
    }
    return [
        ExtensionProblem(f"components.schemas.{found[name][0]}", problem)
        for name, problem in [
            *closing_problems(view),
            *invariant_problems(view),
            *hint_problems(view),
        ]
    ]


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


_BLOCKER_KEYS = ("into", "collection", "field", "holding", "code", "message")
_FOLLOWER_KEYS = ("into", "collection", "field", "holding", "set")


def _blockers(
    r: _Reader, value: Any, own: str, fields: Mapping[str, Mapping[str, Any]]
) -> tuple[Blocker, ...]:
    """`x-refuse-while`: a list of {into, collection, field, holding, code, message}; `field`
    must refer to this collection and `into` and `holding` name fields their records have."""
    found = []
    for i, rule, key, before in _rules_of(r, value, "x-refuse-while", _BLOCKER_KEYS):
        into, other, field, holding = _referrers_in(r, rule, key, own, fields)
        for text in ("code", "message"):
            if not isinstance(rule.get(text), str) or not rule[text]:
                r.problem(f"{key} needs a {text}")
        if len(r.problems) == before and into and holding:
            found.append(Blocker(into, other, field, holding, rule["code"], rule["message"], i))
    return tuple(found)


def _followers(
    r: _Reader, value: Any, own: str, fields: Mapping[str, Mapping[str, Any]]
) -> tuple[Follower, ...]:
    """`x-on-enter`: a list of {into, collection, field, holding (optional), set}; `set` names
    fields of the referring collection, each with a value it allows or an expression."""
    found = []
    for _, rule, key, before in _rules_of(r, value, "x-on-enter", _FOLLOWER_KEYS):
        into, other, field, holding = _referrers_in(r, rule, key, own, fields, optional=True)
        sets = r.values(rule.get("set"), f"{key}.set")
        if not sets:
            r.problem(f"{key}.set must name at least one field to set")
        theirs = fields.get(other) or {}
        if not isinstance(fields, _Unjudged) and theirs:
            for name, wanted in sets.items():
                prop = theirs.get(name)
                if prop is None or name == "id":
                    r.problem(f"{key}.set.{name} is not a field of {other} a rule may set")
                    continue
                allowed = prop.get("enum") if isinstance(prop, Mapping) else None
                literal = not (isinstance(wanted, str) and wanted.startswith("$"))
                if literal and isinstance(allowed, list) and wanted not in allowed:
                    r.problem(f"{key}.set.{name} {wanted!r} is not one of its values {allowed}")
        if len(r.problems) == before and into:
            found.append(Follower(into, other, field, holding, sets))
    return tuple(found)


def _rules_of(
    r: _Reader, value: Any, name: str, keys: tuple[str, ...]
) -> Iterator[tuple[int, Mapping[str, Any], str, int]]:
    """(place, rule, where, problems before it) of each rule of a list extension that is a
    mapping; the rest reported, and so are unknown keys (which leave the rule out)."""
    if not isinstance(value, list):
        r.problem(f"{name} must be a list of rules")
        return
    for i, rule in enumerate(value):
        key = f"{name}[{i}]"
        if not isinstance(rule, Mapping):
            r.problem(f"{key} must be a mapping of {', '.join(keys)}")
            continue
        before = len(r.problems)
        r.unknown_keys(rule, keys, key)
        yield i, rule, key, before


def _referrers_in(
    r: _Reader, rule: Mapping[str, Any], key: str, own: str,
    fields: Mapping[str, Mapping[str, Any]], optional: bool = False,
) -> tuple[Mapping[str, tuple[Any, ...]], str, str, Mapping[str, tuple[Any, ...]]]:
    """A rule's state of this collection (`into`), the records that name a record of it
    (`collection`, `field`) and the state of theirs it is about (`holding`, which may be left
    out when `optional`); each checked against the fields the records have."""
    into = _when(r, rule.get("into"), f"{key}.into")
    given = rule.get("holding")
    holding = _EMPTY if optional and given is None else _when(r, given, f"{key}.holding")
    other, field = rule.get("collection"), rule.get("field")
    if not isinstance(fields, _Unjudged):  # else the collections' own problem is reported
        theirs = fields.get(other) if isinstance(other, str) else None
        if theirs is None:
            r.problem(f"{key}.collection {other!r} is not a collection")
        elif not isinstance(field, str) or field not in theirs:
            r.problem(f"{key}.field {field!r} is not a field of {other}")
        elif own not in _targets_of(theirs[field]):
            r.problem(f"{key}.field {other}.{field} does not refer to {own}")
        for label, tested, of in (
            (f"{key}.into", into, own), (f"{key}.holding", holding, other)
        ):
            missing = [f for f in tested if f not in (fields.get(str(of)) or {})]
            if missing:
                r.problem(f"{label}.{missing[0]} is not a field of {of}")
    return into, str(other), str(field), holding


def _targets_of(prop: Any) -> set[str]:
    """The collections a property's `x-ref` (or its items') names."""
    if not isinstance(prop, Mapping):
        return set()
    items = prop.get("items")
    try:
        found = ref_of(dict(prop)) or (ref_of(dict(items)) if isinstance(items, Mapping) else None)
    except (KeyError, TypeError):  # a malformed x-ref: the reference rules report it
        return set()
    return {str(found[0])} if found else set()


def _lifecycle(r: _Reader, value: Any) -> Lifecycle | None:
    if not isinstance(value, Mapping):
        r.problem(f"x-lifecycle must be a mapping of clock and steps, got {value!r}")
        return None
    r.unknown_keys(value, ("clock", "steps", "when"), "x-lifecycle")
    when: Mapping[str, tuple[Any, ...]] = _EMPTY
    if "when" in value:
        when = _when(r, value["when"], "x-lifecycle.when")
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
    return Lifecycle(clock, tuple(steps), when)


# --- property-level rules (x-ordinal, x-default-from, x-not-before, x-exclusive, ...) ----------


@dataclass(frozen=True, slots=True)
class RecordField:
    """`{collection, id, field}`: one field of one fixed record (a settings record, say)."""

    collection: str
    record_id: str
    field: str


@dataclass(frozen=True, slots=True)
class VarOverride:
    """A template variable read from a record's mapping (`override`): the variable's source
    value picks the mapping's key through `keys`; a blank entry keeps the built-in `map`."""

    source: RecordField
    keys: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DefaultFrom:
    """`x-default-from`: what a create puts in a field the body leaves out.

    Either a date `add_days` after another field (`field`), or the `take` field of the earliest
    created record of `lookup` matching `where` (values may be `$record.<field>` of the new one).
    """

    field: str | None = None
    add_days: int = 0
    lookup: str | None = None
    where: Mapping[str, Any] = dataclasses.field(default_factory=_empty)
    take: str = "id"


@dataclass(frozen=True, slots=True)
class FieldRules:
    """The property-level rules of one collection's schema, by field."""

    # `x-ordinal`: field -> value -> rank, the enum's declared order
    ordinal: Mapping[str, Mapping[Any, int]] = dataclasses.field(default_factory=_empty)
    defaults: Mapping[str, DefaultFrom] = dataclasses.field(default_factory=_empty)
    # `x-not-before`: field -> the field it may not be earlier than
    not_before: Mapping[str, str] = dataclasses.field(default_factory=_empty)
    # `x-exclusive`: flag field -> the field whose value scopes it (one holder per value)
    exclusive: Mapping[str, str] = dataclasses.field(default_factory=_empty)
    # `x-exclusive.required`: the flags some record of every scope with records always holds
    held: tuple[str, ...] = ()
    # `x-touches`: reference field -> the collection whose record a write of this one changes
    touches: Mapping[str, str] = dataclasses.field(default_factory=_empty)
    forward_only: tuple[str, ...] = ()  # `x-forward-only`: an update may not lower them
    merge: tuple[str, ...] = ()  # `x-merge`: object fields a PATCH merges into
    # `x-sequence.next-from`: sequence field -> the record field holding the next number
    counters: Mapping[str, RecordField] = dataclasses.field(default_factory=_empty)
    # `x-template.per-year-of`: template field -> the date field whose year scopes `{seq}`
    yearly: Mapping[str, str] = dataclasses.field(default_factory=_empty)
    # `x-template.vars.<var>.override`: template field -> var -> where its values come from
    overrides: Mapping[str, Mapping[str, VarOverride]] = dataclasses.field(default_factory=_empty)


NO_RULES: FieldRules = FieldRules()


class _Unjudged(dict[str, Any]):
    """Every collection, holding every field: what the rules see when the collections
    themselves are broken (a name used twice, one that does not parse). A reference to another
    collection is then not judged, so the one mistake is reported once, where it is."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __getitem__(self, key: str) -> Any:
        return self


_SEQUENCE_KEYS = ("start", "next-from", "order-by")
_TEMPLATE_KEYS = ("format", "vars", "per-year-of")
_VAR_KEYS = ("field", "map", "override")
_RECORD_FIELD_KEYS = ("collection", "id", "field")
_DEFAULT_FROM_KEYS = ("field", "add-days", "lookup", "where", "take")


def _properties(schema: Any, schemas: Mapping[str, Any], depth: int = 0) -> Mapping[str, Any]:
    """A schema's properties with those of its `allOf` parts, following local schema `$ref`s
    (the spec check reads the document as written, the sandbox after resolving it)."""
    if not isinstance(schema, Mapping) or depth > 20:
        return _EMPTY
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return _properties(schemas.get(ref.rsplit("/", 1)[1]), schemas, depth + 1)
    out: dict[str, Any] = {}
    for part in schema.get("allOf") or ():
        out.update(_properties(part, schemas, depth + 1))
    props = schema.get("properties")
    if isinstance(props, Mapping):
        out.update(props)
    return out


def _types(prop: Mapping[str, Any]) -> set[str]:
    found = prop.get("type")
    return set(found) if isinstance(found, list) else {found} if isinstance(found, str) else set()


def _field_rules(
    r: _Reader, props: Mapping[str, Any], every: Mapping[str, Mapping[str, Any]]
) -> FieldRules:
    """Parse the rule hints on one collection's properties; `every` holds each collection's."""
    ordinal: dict[str, Mapping[Any, int]] = {}
    defaults: dict[str, DefaultFrom] = {}
    not_before: dict[str, str] = {}
    exclusive: dict[str, str] = {}
    held: list[str] = []
    touches: dict[str, str] = {}
    forward_only: list[str] = []
    merge: list[str] = []
    counters: dict[str, RecordField] = {}
    yearly: dict[str, str] = {}
    overrides: dict[str, Mapping[str, VarOverride]] = {}
    for name, prop in props.items():
        if not isinstance(prop, Mapping):
            continue
        key = f"properties.{name}"
        if "x-ordinal" in prop:
            enum = prop.get("enum")
            if prop["x-ordinal"] is not True:
                r.problem(f"{key}.x-ordinal must be true, got {prop['x-ordinal']!r}")
            elif not isinstance(enum, list) or not enum:
                r.problem(f"{key}.x-ordinal needs an enum: the declared order is the sort order")
            else:
                ordinal[name] = MappingProxyType({v: i for i, v in enumerate(enum)})
        if "x-default-from" in prop:
            found = _default_from(r, prop["x-default-from"], f"{key}.x-default-from", props, every)
            if found is not None:
                defaults[name] = found
        if "x-not-before" in prop:
            other = prop["x-not-before"]
            if not isinstance(other, str) or other not in props or other == name:
                r.problem(f"{key}.x-not-before must name another field, got {other!r}")
            else:
                not_before[name] = other
        if "x-exclusive" in prop:
            decl = prop["x-exclusive"]
            per = decl.get("per") if isinstance(decl, Mapping) else None
            if isinstance(decl, Mapping):
                r.unknown_keys(decl, ("per", "required"), f"{key}.x-exclusive")
            if "boolean" not in _types(prop):
                r.problem(f"{key}.x-exclusive belongs on a boolean field (a flag)")
            elif not isinstance(per, str) or per not in props or per == name:
                r.problem(f"{key}.x-exclusive.per must name another field, got {per!r}")
            else:
                exclusive[name] = per
                if decl.get("required") is True:
                    held.append(name)
                elif decl.get("required", False) is not False:
                    r.problem(f"{key}.x-exclusive.required must be true or false")
        if "x-touches" in prop:
            ref = prop.get("x-ref")
            target = ref.get("collection") if isinstance(ref, Mapping) else None
            if prop["x-touches"] is not True:
                r.problem(f"{key}.x-touches must be true, got {prop['x-touches']!r}")
            elif not isinstance(target, str):
                r.problem(f"{key}.x-touches belongs on a reference (a field with an x-ref)")
            elif target in every and "updated_at" not in every[target]:
                r.problem(f"{key}.x-touches names {target!r}, whose records have no updated_at")
            else:
                touches[name] = target
        for hint, wanted, out in (
            ("x-forward-only", {"integer", "number"}, forward_only),
            ("x-merge", {"object"}, merge),
        ):
            if hint not in prop:
                continue
            if prop[hint] is not True:
                r.problem(f"{key}.{hint} must be true, got {prop[hint]!r}")
            elif not wanted & _types(prop):
                r.problem(f"{key}.{hint} belongs on a field of type {' or '.join(sorted(wanted))}")
            else:
                out.append(name)
        if "x-sequence" in prop:
            counter = _sequence(r, prop["x-sequence"], f"{key}.x-sequence", every)
            if counter is not None:
                counters[name] = counter
        if "x-template" in prop:
            where = f"{key}.x-template"
            year_field, found_overrides = _template(r, prop["x-template"], where, props, every)
            if year_field is not None:
                yearly[name] = year_field
            if found_overrides:
                overrides[name] = MappingProxyType(found_overrides)
    return FieldRules(
        ordinal=MappingProxyType(ordinal),
        defaults=MappingProxyType(defaults),
        not_before=MappingProxyType(not_before),
        exclusive=MappingProxyType(exclusive),
        held=tuple(held),
        touches=MappingProxyType(touches),
        forward_only=tuple(forward_only),
        merge=tuple(merge),
        counters=MappingProxyType(counters),
        yearly=MappingProxyType(yearly),
        overrides=MappingProxyType(overrides),
    )


def _record_field(
    r: _Reader, value: Any, key: str, every: Mapping[str, Mapping[str, Any]]
) -> RecordField | None:
    if not isinstance(value, Mapping):
        r.problem(f"{key} must be a mapping of collection, id and field; got {value!r}")
        return None
    r.unknown_keys(value, _RECORD_FIELD_KEYS, key)
    collection, record_id, field = (value.get(k) for k in _RECORD_FIELD_KEYS)
    if not isinstance(collection, str) or collection not in every:
        r.problem(f"{key}.collection {collection!r} names no schema with a matching x-collection")
        return None
    if not isinstance(record_id, str) or not record_id:
        r.problem(f"{key}.id must be a record id, got {record_id!r}")
        return None
    if not isinstance(field, str) or field not in every[collection]:
        r.problem(f"{key}.field {field!r} is not a field of {collection}")
        return None
    return RecordField(collection, record_id, field)


def _sequence(
    r: _Reader, value: Any, key: str, every: Mapping[str, Mapping[str, Any]]
) -> RecordField | None:
    if not isinstance(value, Mapping):
        r.problem(f"{key} must be a mapping of start and next-from, got {value!r}")
        return None
    r.unknown_keys(value, _SEQUENCE_KEYS, key)
    start = value.get("start", 1)
    if isinstance(start, bool) or not isinstance(start, int):
        r.problem(f"{key}.start must be a whole number, got {start!r}")
    if "next-from" not in value:
        return None
    return _record_field(r, value["next-from"], f"{key}.next-from", every)


def _template(
    r: _Reader,
    value: Any,
    key: str,
    props: Mapping[str, Any],
    every: Mapping[str, Mapping[str, Any]],
) -> tuple[str | None, dict[str, VarOverride]]:
    if not isinstance(value, Mapping) or not isinstance(value.get("format"), str):
        r.problem(f"{key} needs a format string")
        return None, {}
    r.unknown_keys(value, _TEMPLATE_KEYS, key)
    year_of = value.get("per-year-of")
    if year_of is not None and (
        not isinstance(year_of, str)
        or year_of not in props
        or (props[year_of] or {}).get("format") not in ("date", "date-time")
    ):
        r.problem(f"{key}.per-year-of must name a date field of the schema, got {year_of!r}")
        year_of = None
    found: dict[str, VarOverride] = {}
    variables = value.get("vars") or {}
    if not isinstance(variables, Mapping):
        r.problem(f"{key}.vars must be a mapping of variable names")
        return year_of, found
    for var, decl in variables.items():
        where = f"{key}.vars.{var}"
        if not isinstance(decl, Mapping) or decl.get("field") not in props:
            r.problem(f"{where}.field must name a field of the schema")
            continue
        r.unknown_keys(decl, _VAR_KEYS, where)
        if "override" not in decl:
            continue
        over = decl["override"]
        bare = {k: v for k, v in over.items() if k != "keys"} if isinstance(over, Mapping) else over
        source = _record_field(r, bare, f"{where}.override", every)
        keys = over.get("keys") if isinstance(over, Mapping) else None
        if not isinstance(keys, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in keys.items()
        ):
            r.problem(f"{where}.override.keys must map each value of {decl['field']} to a key")
        elif source is not None:
            found[str(var)] = VarOverride(source, MappingProxyType(dict(keys)))
    return year_of, found


def _default_from(
    r: _Reader,
    value: Any,
    key: str,
    props: Mapping[str, Any],
    every: Mapping[str, Mapping[str, Any]],
) -> DefaultFrom | None:
    if not isinstance(value, Mapping):
        r.problem(f"{key} must be a mapping ({{field, add-days}} or {{lookup, where, take}})")
        return None
    r.unknown_keys(value, _DEFAULT_FROM_KEYS, key)
    if ("field" in value) == ("lookup" in value):
        r.problem(f"{key} needs exactly one of field (with add-days) or lookup (with where, take)")
        return None
    if "field" in value:
        field, days = value["field"], value.get("add-days", 0)
        if not isinstance(field, str) or field not in props:
            r.problem(f"{key}.field {field!r} is not a field of the schema")
            return None
        if isinstance(days, bool) or not isinstance(days, int):
            r.problem(f"{key}.add-days must be a whole number of days, got {days!r}")
            return None
        return DefaultFrom(field=field, add_days=days)
    lookup, take = value["lookup"], value.get("take", "id")
    if not isinstance(lookup, str) or lookup not in every:
        r.problem(f"{key}.lookup {lookup!r} names no schema with a matching x-collection")
        return None
    theirs = every[lookup]
    if not isinstance(take, str) or (take != "id" and take not in theirs):
        r.problem(f"{key}.take {take!r} is not a field of {lookup}")
        return None
    where = r.mapping(value.get("where", {}), f"{key}.where")
    if where is None:
        return None
    before = len(r.problems)
    for field, wanted in where.items():
        if field not in theirs:
            r.problem(f"{key}.where.{field} is not a field of {lookup}")
        elif isinstance(wanted, str) and wanted.startswith("$"):
            source, _, mine = wanted[1:].partition(".")
            if source != "record" or mine not in props:
                r.problem(f"{key}.where.{field} {wanted!r} must be $record.<a field of the schema>")
        elif not isinstance(wanted, _SCALARS):
            r.problem(f"{key}.where.{field} must be a single value or $record.<field>")
    if len(r.problems) != before:
        return None
    return DefaultFrom(lookup=lookup, where=freeze(dict(where)), take=take)


def collection_rules(schemas: Any) -> dict[str, FieldRules]:
    """Each collection's property rules, from the resolved `components.schemas` of a loaded spec."""
    return {name: hints.rules for name, (_, hints) in parse_collections(schemas)[0].items()}

"""The coherence language: paths between records, tests on values and text templates.

One small language serves both sides of coherence. The generator reads it in conditional hints
(`x-cases`, `x-format`, `x-by`, `x-ref.where`): which value pool, range or time rule applies to a
record. The checker reads it in `x-invariants`: what must hold of every record. Neither side
names a resource; the spec's declarations do.

A **path** is a field name, or fields joined by `->` that follow references: `parent_id->domain`
reads the `domain` of the record `parent_id` points at (through `x-ref`, array items' `x-ref`, or
`x-ref-by`). A path through an array gives a list. A field of type object or array may be read
into with `.`: a member by name, an item by position (`diff.status.1`, the new value a change
records); a member read across an array of objects gives each item's (`lines.description`).
`$epoch`, `$today` (the epoch's date) and `$org.<field>` (the recipe's organisation) are roots
of their own, and so is `$parent.<path>` in a nested object's hints: the path on the record that
holds the object (an invoice line's `$parent.contract_id->type`).

A **test** is a list of allowed values, or a mapping of operators: `in`, `not-in`, `null`,
`empty`, `pattern`, `equals` / `not-equals` / `starts-with` / `ends-with` / `contains` (a
template), `in-path` (a path giving the allowed values), `contains-any`, `min` / `max` (a
number, or a path giving one: `{min: critical_days}`), and the time comparisons `before`,
`not-before`, `after`, `not-after`, `at` against an operand such as `$epoch - 5m` or
`issue_date + 30d` (units s, m, h, d; the count may be a field of the record,
`$epoch + {warning_days}d`). A value that is null passes every operator but `in`, `null` and
`empty` (a missing timestamp is not out of order); a list passes when every element does
(`contains-any`: when one does).

A **template** is text with `{path|filter|...}` slots; filters: `lower`, `upper`, `slug`,
`first`, `last`, `stem` (all words but the last), `initial`, `date`, `year`, `month-day` (a
date's `MM-DD`, its anniversary), `pad2` (a number as two digits, as a date writes a day),
`date-in <path>` (a timestamp's date on the clock of the time zone the path names, UTC when it
names none: `{created_at|date-in client_id->time_zone}`). A
slot whose value is
null makes the whole template null.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opsmerge_sandbox.jsontypes import json_types

Record = Mapping[str, Any]
Lookup = Callable[[str, Any], Record | None]  # (collection, id) -> record


def no_lookup(collection: str, record_id: Any) -> None:
    """A lookup for conditions judged on the record alone: no other record is found."""
    return None
Schemas = Mapping[str, Mapping[str, Any]]  # collection -> flattened schema

__all__ = [
    "HOLDER",
    "PARENT",
    "Condition",
    "ConditionError",
    "Env",
    "Test",
    "compile_condition",
    "compile_path",
    "compile_template",
    "condition_fields",
    "is_shifted",
    "no_lookup",
    "operand_heads",
    "path_head",
    "template_paths",
    "time_operand",
    "to_seconds",
    "zone_named",
]


PARENT = "$parent."  # a nested object's paths into the record holding it
PARENT_KEY = PARENT[:-1]  # where a nested object's draft carries the record holding it
HOLDER = "x-holder"  # in a nested object's scope schema: the scope of the record holding it


class ConditionError(ValueError):
    """A path, test or template that cannot be read."""


@dataclass(slots=True)
class Env:
    """What a path may read beyond its record: other records, the epoch, the organisation."""

    lookup: Lookup
    epoch: int
    organisation: Mapping[str, Any] = field(default_factory=dict)
    schemas: Schemas = field(default_factory=dict)

    @property
    def today(self) -> int:
        return self.epoch - self.epoch % 86_400


Getter = Callable[[Record, Env], Any]
Test = Callable[[Record, Env], bool]

_TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "dame", "rev"})


@lru_cache(maxsize=4096)
def _parse_seconds(text: str) -> int | None:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def to_seconds(value: Any) -> int | None:
    """Seconds since 1970 of a timestamp, a date (its midnight) or a number; else None."""
    if value.__class__ is str:  # the usual case first: a stored timestamp
        return _parse_seconds(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        return _parse_seconds(value)
    return None


def path_head(path: str) -> str | None:
    """The record field a path starts from (None for `$` roots): what a hint waits for."""
    return None if path.startswith("$") else path.split("->", 1)[0].split(".", 1)[0].strip()


def _dig(value: Any, members: tuple[str, ...]) -> Any:
    """What `.member` and `.N` read inside an object or array value (None where it has none);
    a member by name of an array reads it in each item, giving the list of what they hold."""
    for i, m in enumerate(members):
        if isinstance(value, Mapping):
            value = value.get(m)
        elif isinstance(value, list) and m.isdigit():
            value = value[int(m)] if int(m) < len(value) else None
        elif isinstance(value, list):
            rest = members[i:]
            return [v for v in (_dig(item, rest) for item in value) if v is not None]
        else:
            return None
    return value


def _ref_target(prop: Mapping[str, Any]) -> tuple[str | None, str | None, Mapping[str, str]]:
    """(fixed collection, dispatch field, dispatch map) of a reference property."""
    ref = prop.get("x-ref")
    if ref is None and isinstance(prop.get("items"), Mapping):
        ref = prop["items"].get("x-ref")
    if isinstance(ref, str):
        return ref, None, {}
    if isinstance(ref, Mapping):
        return str(ref["collection"]), None, {}
    by = prop.get("x-ref-by")
    if isinstance(by, Mapping):
        return None, str(by["field"]), dict(by.get("collections") or {})
    return None, None, {}


def compile_path(collection: str, path: str, schemas: Schemas) -> Getter:
    """A getter for `path` on records of `collection`; unknown fields fail here, not later."""
    path = path.strip()
    if path in ("$epoch", "$today"):
        return (lambda r, e: e.epoch) if path == "$epoch" else (lambda r, e: e.today)
    if path.startswith("$org."):
        key = path[5:]
        return lambda r, e: e.organisation.get(key)
    if path.startswith(PARENT):
        return _holder_path(collection, path, schemas)
    if path.startswith("$"):
        raise ConditionError(
            f"unknown root {path!r}: expected $epoch, $today, $org.<field> or $parent.<path>"
        )
    parts = [p.strip() for p in path.split("->")]
    steps: list[tuple[str, str | None, str | None, Mapping[str, str]]] = []
    current: str | None = collection
    members: tuple[str, ...] = ()  # what the last field's value is read into
    for i, part in enumerate(parts):
        props = (schemas.get(current) or {}).get("properties") or {} if current else {}
        part, *inside = part.split(".")
        if current is not None and part not in props and part != "id":
            raise ConditionError(f"{path!r}: {part!r} is not a field of {current}")
        if inside:
            kinds = set(json_types(props.get(part) or {})) if current is not None else set()
            if i != len(parts) - 1 or (kinds and not kinds & {"object", "array"}):
                raise ConditionError(
                    f"{path!r}: only the last field, an object or array, may be read into"
                )
            members = tuple(inside)
        if i == len(parts) - 1:
            steps.append((part, None, None, {}))
            break
        fixed, by_field, by_map = _ref_target(props.get(part) or {})
        if fixed is None and by_field is None:
            raise ConditionError(f"{path!r}: {part!r} of {current} refers to no collection")
        steps.append((part, fixed, by_field, by_map))
        current = fixed  # None after an x-ref-by hop: the next field is not judged

    def get(rec: Record, env: Env) -> Any:
        values: list[Any] = [rec]
        many = False
        for name, fixed, by_field, by_map in steps:
            out: list[Any] = []
            for holder in values:
                value = holder.get(name) if isinstance(holder, Mapping) else None
                if fixed is None and by_field is None:
                    if isinstance(value, list):
                        many = True
                        out.extend(value)
                    else:
                        out.append(value)
                    continue
                target = fixed or (by_map.get(holder.get(by_field)) if by_field else None)
                ids = value if isinstance(value, list) else [value]
                many = many or isinstance(value, list)
                for rid in ids:
                    out.append(env.lookup(target, rid) if target and rid is not None else None)
            values = out
        if many:
            return [v for v in values if v is not None]
        return values[0] if values else None

    if members:
        whole = _whole(steps, get)
        return lambda rec, env: _dig(whole(rec, env), members)
    return _whole(steps, get)


# the record a reference names, with the collection it is in
Named = Callable[[Record, Env], tuple[str, Record] | None]


def compile_reference(collection: str, name: str, schemas: Schemas) -> Named:
    """A reader of the record one reference field names, with the collection it is in (for a
    field whose `x-ref-by` picks the collection by another field, the one it picks), or None."""
    props = (schemas.get(collection) or {}).get("properties") or {}
    if name not in props:
        raise ConditionError(f"{name!r} is not a field of {collection}")
    fixed, by_field, by_map = _ref_target(props[name])
    if fixed is None and by_field is None:
        raise ConditionError(f"{name!r} of {collection} refers to no collection")

    def get(rec: Record, env: Env) -> tuple[str, Record] | None:
        rid = rec.get(name)
        target = fixed or by_map.get(rec.get(by_field))  # type: ignore[arg-type]
        if rid is None or target is None or isinstance(rid, list):
            return None
        other = env.lookup(target, rid)
        return None if other is None else (target, other)

    return get


def read_birth(
    collection: str, rule: Any, schemas: Schemas
) -> tuple[str, Named, Mapping[str, Any], list[str]]:
    """The parts of an `x-birth` (a record of another record's making): its `of` field and the
    reader of the record it names, `made-with` and `made-at`; ConditionError naming what is
    wrong. The generator and `spec check` both read it here."""
    made_with = rule.get("made-with", {}) if isinstance(rule, Mapping) else None
    made_at = rule.get("made-at", []) if isinstance(rule, Mapping) else None
    if not isinstance(made_with, Mapping) or not isinstance(made_at, list):
        raise ConditionError(
            "x-birth is `of`, and optionally a `made-with` mapping and a `made-at` list"
        )
    of = str(rule.get("of"))
    return of, compile_reference(collection, of, schemas), made_with, made_at


def _holder_path(collection: str, path: str, schemas: Schemas) -> Getter:
    """`$parent.<path>`: the path read on the record holding a nested object, which the object's
    draft carries under `$parent` while it is made."""
    holder = (schemas.get(collection) or {}).get(HOLDER)
    if not isinstance(holder, str):
        raise ConditionError(f"{path!r}: {collection} is not an object held by a record")
    inner = compile_path(holder, path[len(PARENT) :], schemas)

    def get(rec: Record, env: Env) -> Any:
        held_by = rec.get(PARENT_KEY)
        return inner(held_by, env) if held_by is not None else None

    return get


def _whole(
    steps: list[tuple[str, str | None, str | None, Mapping[str, str]]], get: Getter
) -> Getter:
    """The getter of a path's fields, with a shortcut for one field and for one hop."""
    if len(steps) == 1:
        name = steps[0][0]
        return lambda rec, env: rec.get(name)
    if len(steps) == 2 and steps[0][1] is not None:  # one hop through a fixed reference: fast
        (first, coll, _, _), (second, _, _, _) = steps

        def hop(rec: Record, env: Env) -> Any:
            rid = rec.get(first)
            if rid is None:
                return None
            if rid.__class__ is list:
                return get(rec, env)
            other = env.lookup(coll, rid)  # type: ignore[arg-type]
            return other.get(second) if other is not None else None

        return hop
    if len(steps) == 2 and steps[0][2] is not None:  # one hop whose collection a field picks
        (first, _, by_field, by_map), (second, _, _, _) = steps

        def hop_by(rec: Record, env: Env) -> Any:
            rid = rec.get(first)
            target = by_map.get(rec.get(by_field))  # type: ignore[arg-type]
            if rid is None or target is None:
                return None
            if rid.__class__ is list:
                return get(rec, env)
            other = env.lookup(target, rid)
            return other.get(second) if other is not None else None

        return hop_by
    return get


# --- templates --------------------------------------------------------------------------------

_SLOT = re.compile(r"\{([^{}]+)\}")


def _words(text: str) -> list[str]:
    return [w for w in text.replace(",", " ").split() if w]


def _first(text: str) -> str:
    words = _words(text)
    while len(words) > 1 and words[0].lower().rstrip(".") in _TITLES:
        words = words[1:]
    return words[0] if words else ""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower().replace("&", "and"))


FILTERS: dict[str, Callable[[str], str]] = {
    "lower": str.lower,
    "upper": str.upper,
    "slug": _slug,
    "first": _first,
    "last": lambda t: (_words(t) or [""])[-1],
    "stem": lambda t: " ".join(_words(t)[:-1]) or t,
    "initial": lambda t: _first(t)[:1],
    "date": lambda t: t[:10],
    "year": lambda t: t[:4],
    "month-day": lambda t: t[5:10],
    "pad2": lambda t: t.zfill(2),  # a day or month number as a date writes it (`-{day|pad2}`)
}

Token = Callable[[Any], str]  # a random slot (`@provider`, `#N`, `?a|b`): draws from its arg


def _constant(text: str) -> Callable[[Record, Env, Any], str | None]:
    return lambda r, e, g: text


def _random_part(token: Token) -> Callable[[Record, Env, Any], str | None]:
    return lambda r, e, g: token(g)


def template_paths(template: str) -> list[str]:
    """The paths a template's slots read (random slots excluded), their filters' too."""
    out = []
    for slot in _SLOT.findall(template):
        if slot[:1] in ("@", "#", "%", "?"):
            continue
        path, *names = (p.strip() for p in slot.split("|"))
        out.append(path)
        out += [n[len(DATE_IN) :].strip() for n in names if n.startswith(DATE_IN)]
    return out


DATE_IN = "date-in "  # `{created_at|date-in client_id->time_zone}`: the day on that zone's clock


def zone_named(name: Any) -> tzinfo:
    """The time zone a record names (an IANA name); UTC when it names none, or none known."""
    if not isinstance(name, str) or not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _local_date(text: str, zone: Any) -> str | None:
    """The date of a timestamp on the clock of the time zone named `zone` (`zone_named`)."""
    seconds = to_seconds(text)
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, zone_named(zone)).date().isoformat()


Filter = Callable[[str, Record, "Env"], str | None]


def _compile_filter(collection: str, name: str, template: str, schemas: Schemas) -> Filter:
    if name.startswith(DATE_IN):
        zone_of = compile_path(collection, name[len(DATE_IN) :], schemas)
        return lambda t, r, e: _local_date(t, zone_of(r, e))
    plain = FILTERS.get(name)
    if plain is None:
        raise ConditionError(f"template {template!r}: unknown filter {name!r}")
    return lambda t, r, e: plain(t)


def compile_template(
    collection: str,
    template: str,
    schemas: Schemas,
    random_slot: Callable[[str], Token] | None = None,
) -> Callable[[Record, Env, Any], str | None]:
    """A renderer of `template` for records of `collection`: `(record, env, rng) -> text`.

    Slots starting with `@`, `#`, `%` or `?` are random (the generator's); `random_slot`
    compiles them, and without it they are refused (a checked template is deterministic).
    """
    parts: list[Callable[[Record, Env, Any], str | None]] = []
    pos = 0
    for match in _SLOT.finditer(template):
        literal = template[pos : match.start()]
        if literal:
            parts.append(_constant(literal))
        pos = match.end()
        slot = match.group(1)
        if slot[:1] in ("@", "#", "%", "?"):
            if random_slot is None:
                raise ConditionError(f"template {template!r}: random slot {{{slot}}} not allowed")
            parts.append(_random_part(random_slot(slot)))
            continue
        path, *names = (p.strip() for p in slot.split("|"))
        chain = [_compile_filter(collection, n, template, schemas) for n in names]
        getter = compile_path(collection, path, schemas)

        def render(r: Record, e: Env, g: Any, get: Getter = getter, fs: list[Any] = chain) -> Any:
            value = get(r, e)
            if value is None or isinstance(value, list):
                return None
            text: str | None = str(value)
            for f in fs:
                text = f(text, r, e)
                if text is None:
                    return None
            return text

        parts.append(render)
    tail = template[pos:]
    if tail:
        parts.append(_constant(tail))

    def run(rec: Record, env: Env, rng: Any = None) -> str | None:
        out = []
        for part in parts:
            piece = part(rec, env, rng)
            if piece is None:
                return None
            out.append(piece)
        return "".join(out)

    return run


# --- tests ------------------------------------------------------------------------------------

# `$epoch - 5m`, `issue_date + 30d`, or a count the record holds: `$epoch + {warning_days}d`
_OPERAND = re.compile(
    r"^\s*(?P<path>[^+]+?)\s*"
    r"(?:(?P<sign>[+-])\s*(?:(?P<n>\d+)|\{(?P<field>"
    r"[A-Za-z_][A-Za-z0-9_]*(?:->[A-Za-z_][A-Za-z0-9_]*)*)\})\s*(?P<unit>[smhd]))?\s*$"
)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
# the comparisons themselves (no Python frame per comparison: every time test makes one)
_TIME_OPS: dict[str, Callable[[int, int], bool]] = {
    "before": operator.lt,
    "not-before": operator.ge,
    "after": operator.gt,
    "not-after": operator.le,
    "at": operator.eq,
}
OPERATORS = frozenset(
    {
        "in",
        "not-in",
        "null",
        "empty",
        "pattern",
        "equals",
        "not-equals",
        "starts-with",
        "ends-with",
        "contains",
        "in-path",
        "contains-any",
        "distinct",
        "min",
        "max",
        *_TIME_OPS,
    }
)


def _operand(text: str) -> re.Match[str] | None:
    return _OPERAND.match(text.replace(" - ", " -").replace(" + ", " +"))


def operand_heads(text: str) -> list[str]:
    """The record fields a time operand reads: its path's head, and its shift field's when the
    shift is a field or a path (`started_at + {script_id->timeout_seconds}s`)."""
    return [h for h in map(path_head, operand_paths(text)) if h]


def operand_paths(text: str) -> list[str]:
    """The paths a time operand reads: its own, and its shift's when that is a field or path."""
    m = _operand(text)
    if m is None:
        return []
    field = m.group("field")
    return [m.group("path").strip(), *([field.strip()] if field else [])]


def is_shifted(text: str) -> bool:
    """Whether a time operand adds or takes away a time (`started_at + {minutes}m`)."""
    m = _operand(text)
    return bool(m and m.group("sign"))


def time_operand(collection: str, text: Any, schemas: Schemas) -> Getter:
    """A time read from a path, shifted by a constant or a field: `started_at + {minutes}m`."""
    if not isinstance(text, str):
        raise ConditionError(f"a time operand must be text such as '$epoch - 5m', got {text!r}")
    m = _operand(text)
    if not m:
        raise ConditionError(f"cannot read time operand {text!r}")
    get = compile_path(collection, m.group("path"), schemas)
    if not m.group("sign"):
        root = m.group("path").strip()
        if root == "$epoch":  # seconds already, read straight from the env
            return lambda r, e: int(e.epoch)
        if root == "$today":
            return lambda r, e: int(e.today)
        if is_plain(root):  # a field of the record itself, read straight from it

            def field_seconds(r: Record, e: Env) -> int | None:
                value = r.get(root)  # the usual case, a stored timestamp, parsed at once
                return _parse_seconds(value) if value.__class__ is str else to_seconds(value)

            return field_seconds
        return lambda r, e: to_seconds(get(r, e))
    unit = _UNIT[m.group("unit")] * (1 if m.group("sign") == "+" else -1)
    if m.group("field"):
        count = compile_path(collection, m.group("field"), schemas)

        def by_field(r: Record, e: Env) -> int | None:
            base, n = to_seconds(get(r, e)), count(r, e)
            if base is None or isinstance(n, bool) or not isinstance(n, int | float):
                return None
            return base + int(n * unit)

        return by_field
    delta = int(m.group("n")) * unit

    def shifted(r: Record, e: Env) -> int | None:
        base = to_seconds(get(r, e))
        return None if base is None else base + delta

    return shifted


def _every(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if value is None:
            return True
        if isinstance(value, list):
            return all(check(v) for v in value if v is not None)
        return check(value)

    return test


def _bound_by_path(
    collection: str, op: str, path: str, schemas: Schemas
) -> Callable[[Any, Record, Env], bool]:
    """`min` / `max` against the number a path gives, tested as against a constant one; with
    no number there (null, not yet set) the value passes, as with every other operator."""
    other = compile_path(collection, path, schemas)
    at_least = op == "min"

    def bounded(v: Any, r: Record, e: Env) -> bool:
        bound = other(r, e)
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            return True
        return _every((lambda x: x >= bound) if at_least else (lambda x: x <= bound))(v)

    return bounded


def _op(collection: str, op: str, arg: Any, schemas: Schemas) -> Callable[[Any, Record, Env], bool]:
    if op in ("in", "not-in"):
        if not isinstance(arg, list):
            raise ConditionError(f"{op} needs a list of values, got {arg!r}")
        allowed = frozenset(arg) if all(isinstance(a, str | int | None) for a in arg) else arg
        if op == "in":
            return lambda v, r, e: (
                all(x in allowed for x in v) if isinstance(v, list) else v in allowed
            )
        return lambda v, r, e: (
            not any(x in allowed for x in v) if isinstance(v, list) else v not in allowed
        )
    if op in ("null", "empty"):
        if not isinstance(arg, bool):
            raise ConditionError(f"{op} needs true or false, got {arg!r}")
        if op == "null":
            return lambda v, r, e: (v is None) is arg
        return lambda v, r, e: (v is None or (hasattr(v, "__len__") and len(v) == 0)) is arg
    if op == "distinct":  # no value of a list repeats (an invoice's services, one line each)
        if not isinstance(arg, bool):
            raise ConditionError(f"distinct needs true or false, got {arg!r}")
        return lambda v, r, e: (not isinstance(v, list) or len(set(map(repr, v))) == len(v)) is arg
    if op == "pattern":
        try:
            rx = re.compile(str(arg))
        except re.error as exc:
            raise ConditionError(f"pattern {arg!r}: {exc}") from None
        check = _every(lambda v: rx.search(str(v)) is not None)
        return lambda v, r, e: check(v)
    if op in ("equals", "not-equals", "starts-with", "ends-with", "contains"):
        render = compile_template(collection, str(arg), schemas)
        compare: Callable[[str, str], bool] = {
            "equals": lambda a, b: a == b,
            "not-equals": lambda a, b: a != b,
            "starts-with": str.startswith,
            "ends-with": str.endswith,
            "contains": lambda a, b: b in a,
        }[op]

        def text_test(v: Any, r: Record, e: Env) -> bool:
            want = render(r, e, None)
            if v is None or want is None:
                return True
            if isinstance(v, list):
                return all(compare(str(x), want) for x in v)
            return compare(str(v), want)

        return text_test
    if op == "in-path":
        other = compile_path(collection, str(arg), schemas)

        def in_path(v: Any, r: Record, e: Env) -> bool:
            allowed = other(r, e)
            if v is None or allowed is None:
                return True
            pool = allowed if isinstance(allowed, list) else [allowed]
            return all(x in pool for x in v) if isinstance(v, list) else v in pool

        return in_path
    if op == "contains-any":
        if not isinstance(arg, list):
            raise ConditionError(f"contains-any needs a list of values, got {arg!r}")
        wanted = frozenset(arg)
        return lambda v, r, e: any(x in wanted for x in v) if isinstance(v, list) else v in wanted
    if op in ("min", "max"):
        if isinstance(arg, str):  # a path: another field bounds this one (warning after critical)
            return _bound_by_path(collection, op, arg, schemas)
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            raise ConditionError(f"{op} needs a number or a path, got {arg!r}")
        bound = float(arg)
        check = _every(
            (lambda v: float(v) >= bound) if op == "min" else (lambda v: float(v) <= bound)
        )
        return lambda v, r, e: check(v)
    if op in _TIME_OPS:
        operand = time_operand(collection, arg, schemas)
        cmp = _TIME_OPS[op]

        def time_test(v: Any, r: Record, e: Env) -> bool:
            other = operand(r, e)
            if other is None:
                return True
            if v.__class__ is str:  # the usual case: one stored timestamp
                s = _parse_seconds(v)
                return s is None or cmp(s, other)
            values = v if isinstance(v, list) else [v]
            for x in values:
                s = to_seconds(x)
                if s is not None and not cmp(s, other):
                    return False
            return True

        return time_test
    raise ConditionError(f"unknown operator {op!r}: expected one of {sorted(OPERATORS)}")


def compile_test(collection: str, path: str, test: Any, schemas: Schemas) -> Test:
    """One `path: test` entry as a function of (record, env)."""
    get = compile_path(collection, path, schemas)
    spec = {"in": test} if isinstance(test, list) else test
    if not isinstance(spec, Mapping) or not spec:
        raise ConditionError(f"{path}: a test is a list of values or a mapping of operators")
    # YAML reads a bare `null:` key as None: it means the `null` operator
    ops = [
        _op(collection, "null" if op is None else str(op), arg, schemas) for op, arg in spec.items()
    ]
    name = path.strip()
    direct = is_plain(name)  # a field of the record itself, read straight from it
    if len(ops) == 1:
        only = ops[0]
        if isinstance(test, list) and all(isinstance(a, str | int | None) for a in test):
            allowed = frozenset(test)  # the common case, a value among values: one call

            def member(r: Record, e: Env) -> bool:
                v = r.get(name) if direct else get(r, e)
                if v.__class__ is list:
                    return all(x in allowed for x in v)
                return v in allowed

            return member
        if direct:
            return lambda r, e: only(r.get(name), r, e)
        return lambda r, e: only(get(r, e), r, e)
    if len(ops) == 2:  # a range (`not-before` and `not-after`): both in one expression
        first, second = ops

        def both(r: Record, e: Env) -> bool:
            value = r.get(name) if direct else get(r, e)
            return first(value, r, e) and second(value, r, e)

        return both

    def all_ops(r: Record, e: Env) -> bool:
        value = get(r, e)
        return all(op(value, r, e) for op in ops)

    return all_ops


def is_plain(path: str) -> bool:
    """Whether a path is one field of the record itself (no reference, member or root)."""
    return "->" not in path and "." not in path and not path.startswith("$")


class Condition:
    """A compiled condition: every entry must hold; `failing` names the first that does not.

    Calling it runs one function made once for the whole condition (no loop for the usual one
    or two entries): the generator and the checker call it for every record."""

    __slots__ = ("_fn", "entries")

    def __init__(self, entries: tuple[tuple[str, Getter, Test], ...]) -> None:
        self.entries = entries
        tests = [t for _, _, t in entries]
        fn: Test
        if not tests:
            fn = lambda r, e: True  # noqa: E731
        elif len(tests) == 1:
            fn = tests[0]
        elif len(tests) == 2:
            a, b = tests
            fn = lambda r, e: a(r, e) and b(r, e)  # noqa: E731
        else:
            fn = lambda r, e: all(t(r, e) for t in tests)  # noqa: E731
        self._fn = fn

    def __call__(self, rec: Record, env: Env) -> bool:
        return self._fn(rec, env)

    def fast(self) -> Test:
        """The condition as a plain function, for hot loops."""
        return self._fn

    def failing(self, rec: Record, env: Env) -> tuple[str, Any] | None:
        """The first entry that does not hold, with the value it read."""
        for path, get, test in self.entries:
            if not test(rec, env):
                return path, get(rec, env)
        return None


def compile_condition(collection: str, condition: Any, schemas: Schemas) -> Condition:
    """A `{path: test, ...}` mapping as a `Condition` over records of `collection`."""
    if condition is None:
        return Condition(())
    if not isinstance(condition, Mapping):
        raise ConditionError(f"a condition is a mapping of path -> test, got {condition!r}")
    return Condition(
        tuple(
            (
                str(p),
                compile_path(collection, str(p), schemas),
                compile_test(collection, str(p), t, schemas),
            )
            for p, t in condition.items()
        )
    )


def condition_fields(condition: Any) -> list[str]:
    """The record fields a condition starts from: what a conditional hint waits for."""
    return [h for h in map(path_head, condition_paths(condition)) if h]


def condition_paths(condition: Any) -> list[str]:
    """Every path a condition reads (`client_id->status`), its tests' operands included."""
    if not isinstance(condition, Mapping):
        return []
    out: list[str] = []
    for path, test in condition.items():
        out.append(str(path).strip())
        if isinstance(test, Mapping):
            for op, arg in test.items():
                op = "null" if op is None else str(op)
                if op in _TIME_OPS and isinstance(arg, str):
                    out += operand_paths(arg)
                elif op == "in-path" or (op in ("min", "max") and isinstance(arg, str)):
                    out.append(str(arg).strip())
                elif op in ("equals", "not-equals", "starts-with", "ends-with", "contains"):
                    out += template_paths(str(arg))
    return out

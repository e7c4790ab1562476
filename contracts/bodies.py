"""Request bodies generated from the request schemas with hypothesis-jsonschema.

Valid bodies come from `from_schema` on the schema with our `x-` hints stripped; references
(`x-ref` fields) are then replaced with real ids from the target, and the hints that relate
fields (`x-when`, `x-time.after`) are applied so a body is valid in meaning as well as in shape.
Invalid bodies are valid ones with one thing broken (a required field dropped, a field of the
wrong type, an unknown field, nothing at all for an update), each named for the report.

Generation is slow (seconds per hundred examples), so examples are few, drawn once per schema
and cached, and derandomized: the same run sends the same bodies.
"""

from __future__ import annotations

import copy
import json
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from opsmerge_sandbox.jsontypes import JSON_TYPES, allows_null, json_types
from opsmerge_sandbox.spec import ref_of, strip_extensions
from opsmerge_sandbox.world.conditions import operand_heads

Schema = dict[str, Any]
# pick(collection, where, exclude) -> an id of a record matching `where` not in `exclude`, or None
Picker = Callable[[str, dict[str, Any], list[Any]], Any]

_CACHE: dict[tuple[str, int], list[dict[str, Any]]] = {}


def _formats() -> dict[str, Any]:
    from hypothesis import strategies as st

    words = st.from_regex(r"[a-z][a-z0-9]{1,9}", fullmatch=True)
    moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31))
    return {
        "uuid": st.uuids().map(str),
        # plain addresses: servers differ on the exotic corners of RFC 5322, which is not the point
        "email": st.builds(lambda a, b: f"{a}@{b}.example.com", words, words),
        "date-time": moments.map(lambda d: d.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")),
        "date": st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)).map(str),
        # a URL a target may call back (a webhook): the discard port on loopback, so a contract
        # run never makes a deployment post anywhere, and a sandbox's allow list accepts it
        "uri": words.map(lambda w: f"http://127.0.0.1:9/{w}"),
    }


def examples(schema: Schema, n: int = 3) -> list[dict[str, Any]]:
    """Up to `n` bodies valid against `schema`, the same ones on every run (cached)."""
    key = (json.dumps(schema, sort_keys=True), n)
    if key not in _CACHE:
        plain = strip_extensions(schema)
        _CACHE[key] = [snap_multiples(plain, body) for body in _draw(plain, n)]
    return copy.deepcopy(_CACHE[key])


def _draw(schema: Schema, n: int) -> list[dict[str, Any]]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import HypothesisWarning
    from hypothesis_jsonschema import from_schema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HypothesisWarning)
        strategy = from_schema(schema, custom_formats=_formats(), allow_x00=False)
    found: list[Any] = []

    @settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        if value not in found:
            found.append(value)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HypothesisWarning)
        collect()
    return [v for v in found if isinstance(v, dict)][:n]


# --- making a shape-valid body valid in meaning ---------------------------------------------


def _fixed_filters(where: dict[str, Any]) -> dict[str, Any]:
    """The `x-ref.where` entries that list the allowed values of one of the target's own fields
    (`{status: [active]}`): a body names only such records. Paths and other tests are the
    sandbox generator's; a body leaves them to the target."""
    out: dict[str, Any] = {
        theirs: list(allowed)
        for theirs, allowed in where.items()
        if isinstance(allowed, list) and "->" not in theirs
    }
    # one hop through the target's own reference, judged by any of the values it reaches
    # (`role_ids->permissions: {contains-any: [...]}`): a user whose role may do the work
    for theirs, test in where.items():
        if "->" in theirs and isinstance(test, dict) and isinstance(test.get("contains-any"), list):
            out[theirs] = {"contains-any": list(test["contains-any"])}
    return out


def fill_references(schema: Schema, body: dict[str, Any], pick: Picker) -> dict[str, Any]:
    """Replace every `x-ref` value with a real id of the collection it names."""
    props: dict[str, Schema] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    # fields without `where` first, so a `where` can read the id they were given
    order = sorted(props, key=lambda name: bool((ref_of(props[name]) or ("", {}, {}))[2]))
    for name in order:
        prop = props[name]
        if name not in body:
            continue
        ref = ref_of(prop)
        if ref is not None and body[name] is not None:
            collection, _, where = ref  # `where` maps their field to my field, or to values
            filters = {
                theirs: body.get(mine)
                for theirs, mine in where.items()
                if isinstance(mine, str) and mine in body
            }
            filters.update(_fixed_filters(where))
            chosen = pick(collection, filters, [])
            if chosen is None and filters:
                chosen = None if allows_null(prop) else pick(collection, {}, [])
            if chosen is None and not allows_null(prop):
                if name in required:
                    chosen = pick(collection, {}, [])
                else:
                    body.pop(name)
                    continue
            body[name] = chosen
        items = prop.get("items")
        item_ref = ref_of(items) if isinstance(items, dict) else None
        if item_ref is not None and isinstance(body[name], list):
            collection = item_ref[0]
            wanted = max(len(body[name]), int(prop.get("minItems") or 0))
            ids: list[Any] = []
            fixed = _fixed_filters(item_ref[2])
            while len(ids) < wanted:
                candidate = pick(collection, fixed, ids)
                if candidate is None or candidate in ids:
                    break
                ids.append(candidate)
            body[name] = ids
        elif isinstance(items, dict) and isinstance(body[name], list):
            for element in body[name]:  # objects in a list may refer to records too
                variant = _variant(items, element)
                if variant is not None:
                    fill_references(variant, element, pick)
    return body


def _variant(schema: Schema, value: Any) -> Schema | None:
    """The object schema (itself, or the `oneOf`/`anyOf` option whose `const`s it holds) that
    describes `value`, when that schema has properties to fill."""
    if not isinstance(value, dict):
        return None
    for option in [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]:
        props = option.get("properties") if isinstance(option, dict) else None
        if not props:
            continue
        consts = {k: p["const"] for k, p in props.items() if isinstance(p, dict) and "const" in p}
        if all(value.get(k) == v for k, v in consts.items()):
            return option
    return None


def apply_relations(schema: Schema, body: dict[str, Any]) -> dict[str, Any]:
    """Honour `x-when` (null unless another field allows it), `x-time.after` and
    `x-not-before` (ordering), and leave out `x-forward-only` fields: a value that may only grow
    depends on the record's current one, which a body drawn from the schema cannot know."""
    props: dict[str, Schema] = schema.get("properties") or {}
    for name, prop in props.items():
        if name not in body:
            continue
        if prop.get("x-forward-only") is True:
            body.pop(name)
            continue
        when = prop.get("x-when")
        if isinstance(when, dict):
            allowed = all(
                body.get(f, props.get(f, {}).get("default")) in vals for f, vals in when.items()
            )
            if not allowed:
                if allows_null(prop):
                    body[name] = None
                else:
                    body.pop(name)
                continue
        timing = prop.get("x-time")
        after = timing.get("after") if isinstance(timing, dict) else None
        if isinstance(after, str) and "->" in after and isinstance(body[name], str):
            # after a time of the record a reference names (a ticket's creation), which a body
            # cannot read: now is after every record that exists, and not in the future
            body[name] = _now_like(body[name])
            continue
        # after another field of the body (`start_date`, or `start_date + 30d`: the API refuses
        # only an end before the start, so the body keeps that order)
        heads = operand_heads(after) if isinstance(after, str) else []
        if isinstance(timing, dict) and heads and heads[0] in body and body[name] is not None:
            body[name] = _not_before(body[name], body[heads[0]], timing)
        earliest = prop.get("x-not-before")
        if isinstance(earliest, str) and earliest in body and body[name] is not None:
            body[name] = _not_before(body[name], body[earliest], {})
    return body


def snap_multiples(schema: Schema, value: Any) -> Any:
    """Numbers under `multipleOf` made exact multiples: the generator builds them by multiplying
    floats (`51220.520000000004` for 0.01), which a strict validator rightly refuses."""
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        return {k: snap_multiples(props.get(k) or {}, v) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [snap_multiples(schema["items"], v) for v in value]
    step = schema.get("multipleOf")
    if isinstance(value, float) and isinstance(step, int | float) and step > 0:
        places = max(0, -Decimal(str(step)).as_tuple().exponent)  # type: ignore[operator]
        return round(round(value / step) * step, places)
    return value


def _now_like(value: str) -> str:
    """The current moment, written as `value` is (a date or a UTC timestamp)."""
    now = datetime.now(UTC)
    return now.date().isoformat() if len(value) == 10 else now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_before(value: str, other: Any, timing: dict[str, Any]) -> str:
    if not isinstance(other, str) or not isinstance(value, str):
        return value
    if len(value) == 10:
        start = date.fromisoformat(other[:10])
        mine = date.fromisoformat(value)
        if timing.get("exactly"):
            return str(start + timedelta(days=int(timing.get("within_days") or 0)))
        return str(max(mine, start))
    try:
        start_dt = datetime.fromisoformat(other.replace("Z", "+00:00"))
        mine_dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if mine_dt >= start_dt:
        return value
    return (start_dt + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def valid_bodies(
    schema: Schema, pick: Picker, n: int = 3, record: Schema | None = None
) -> list[dict[str, Any]]:
    """Bodies valid in shape and meaning; `record`, the collection's schema, adds the order its
    write rules keep between two numbers of the body (`keep_bounds`)."""
    bodies = [
        apply_relations(schema, fill_references(schema, body, pick)) for body in examples(schema, n)
    ]
    if record is not None:
        bodies = [keep_bounds(record, body) for body in bodies]
    needed = int(schema.get("minProperties") or 0)
    return [body for body in bodies if len(body) >= needed]


def bounds(record: Schema) -> list[tuple[str, str, str]]:
    """(field, `min` or `max`, other field) of each write rule (`x-invariants` judged on writes,
    with no `when`) that bounds one number of the record by another of it."""
    props: Schema = record.get("properties") or {}
    out = []
    for rule in record.get("x-invariants") or []:
        if rule.get("on-write") not in ("refuse", "derive") or "when" in rule:
            continue
        for field, test in (rule.get("require") or {}).items():
            if field not in props or not isinstance(test, dict):
                continue
            for op in ("min", "max"):
                other = test.get(op)
                if isinstance(other, str) and other in props:
                    out.append((str(field), op, other))
    return out


def keep_bounds(record: Schema, body: dict[str, Any]) -> dict[str, Any]:
    """A body naming either number of a bounded pair names both, in the order the rule keeps:
    the one it leaves out is a default or a stored value the body cannot see, so it is sent."""
    props: Schema = record.get("properties") or {}
    for field, op, other in bounds(record):
        if field not in body and other not in body:
            continue
        mine = body.get(field, props[field].get("default"))
        theirs = body.get(other, props[other].get("default"))
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (mine, theirs)):
            continue
        if (mine < theirs) if op == "min" else (mine > theirs):
            if field in body:
                theirs = mine  # the body's own value stays; the partner follows it
            else:
                mine = theirs
        body[field], body[other] = mine, theirs
    return body


# --- invalid bodies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mutation:
    name: str  # what was broken, for the report
    body: Any


_WRONG = {
    "string": 12345,
    "integer": "not a number",
    "number": "not a number",
    "boolean": "yes",
    "array": "not a list",
    "object": "not an object",
}


def _wrong_value(prop: Schema) -> Any:
    kinds = json_types(prop)
    for k in kinds:
        if k in _WRONG:
            wrong = _WRONG[k]
            # a wrong value must not be acceptable under another of the allowed types
            if not any(
                isinstance(wrong, JSON_TYPES.get(other, ())) for other in kinds if other != k
            ):
                return wrong
    if "enum" in prop:
        return "not-one-of-the-allowed-values"
    return None


def invalid_bodies(schema: Schema, valid: dict[str, Any], seed: str = "") -> list[Mutation]:
    """A few bodies each broken in one named way, derived from a valid one."""
    rng = random.Random(seed)
    props: dict[str, Schema] = schema.get("properties") or {}
    out: list[Mutation] = []
    required = [r for r in schema.get("required") or [] if r in valid]
    if required:
        field = rng.choice(required)
        body = {k: v for k, v in valid.items() if k != field}
        out.append(Mutation(f"a body without the required field {field!r}", body))
    typed = [name for name in props if _wrong_value(props[name]) is not None]
    if typed:
        field = rng.choice(sorted(typed))
        body = dict(valid)
        body[field] = _wrong_value(props[field])
        out.append(
            Mutation(f"a body with {field!r} of the wrong type ({json.dumps(body[field])})", body)
        )
    if schema.get("additionalProperties") is False:
        out.append(Mutation("a body with an unknown field", {**valid, "no_such_field_xyz": 1}))
    if int(schema.get("minProperties") or 0) >= 1:
        out.append(Mutation("an empty body", {}))
    out.append(Mutation("a JSON array instead of an object", [valid]))
    return out

"""The root `x-sandbox-events` extension, parsed once into frozen, typed values.

The spec says which writes are events (a create or update in a collection; a create in a child
collection, with its parent as the subject), which clock times are events (a date field of the
subject plus an offset, while a condition holds), where the rules, their firings and their
webhook deliveries live, what each action does (the fields it sets from its own parameters, or a
webhook or an email), and how deliveries are retried. The engine reads only these values, so no
code names a resource. Every problem is reported with where it is, as `x-sandbox` problems are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opsmerge_sandbox.extensions import ExtensionProblem, freeze


def _none() -> Mapping[str, Any]:
    return freeze({})


EXTENSION = "x-sandbox-events"
# the fields every rules schema has: the engine's own vocabulary, checked at load
TRIGGER = "trigger"
ENABLED = "enabled"
CONDITIONS = "conditions"
ACTIONS = "actions"
SECRET = "signing_secret"
ACTION_TYPE = "type"  # the field of an action that names its type
_RULE_FIELDS = (TRIGGER, ENABLED, CONDITIONS, ACTIONS, "days", SECRET, "enabled_at")
_DELIVERY_KEYS = (
    "retry-after-seconds",
    "disable-after",
    "timeout-seconds",
    "max-payload-bytes",
    "max-url-length",
    "headers",
)
_HEADER_PARTS = ("signature", "event", "delivery", "attempt")


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """How long after the `from` field the clock event comes: a fixed number of seconds, the
    seconds for the subject's value of `by`, or a number of `unit` from the rule's own field."""

    seconds: float | None = None
    by: str | None = None
    by_seconds: Mapping[str, float] = field(default_factory=_none)
    rule_field: str | None = None
    unit: float = 1.0
    default: float = 0.0

    def of(self, subject: Mapping[str, Any], rule: Mapping[str, Any]) -> float | None:
        """Seconds after the anchor; None when the subject's value has no offset."""
        if self.seconds is not None:
            return self.seconds
        if self.by is not None:
            return self.by_seconds.get(str(subject.get(self.by)))
        given = rule.get(self.rule_field or "")
        count = given if isinstance(given, int | float) and not isinstance(given, bool) else None
        return (count if count is not None else self.default) * self.unit


@dataclass(frozen=True, slots=True)
class ClockTrigger:
    anchor: str  # a date-time field of the subject
    after: ClockOffset
    when: Mapping[str, tuple[Any, ...]]  # field -> allowed values, on the subject at that time

    def holds(self, subject: Mapping[str, Any]) -> bool:
        return all(subject.get(f) in allowed for f, allowed in self.when.items())


@dataclass(frozen=True, slots=True)
class EventType:
    """One event name: a write to `collection` (`on`), or a time on the clock."""

    name: str
    collection: str | None = None  # the collection whose writes are this event
    on: str | None = None  # created | updated
    subject_field: str | None = None  # the written record names its subject here (a child)
    include_as: str | None = None  # the payload's name for the written child record
    clock: ClockTrigger | None = None


@dataclass(frozen=True, slots=True)
class ActionKind:
    """What one action type does: set subject fields from its parameters, post, or mail."""

    name: str
    sets: Mapping[str, str] = field(
        default_factory=_none
    )  # subject field -> the action's parameter
    webhook: str | None = None  # the parameter holding the URL
    email: Mapping[str, str] = field(
        default_factory=_none
    )  # to / subject / body -> the action's parameter


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    retry_after: tuple[float, ...]  # seconds before each retry, on the sandbox clock
    disable_after: int  # consecutive failed attempts that disable the action
    timeout: float
    max_payload_bytes: int
    max_url_length: int
    headers: Mapping[str, str]  # signature / event / delivery / attempt -> header name

    @property
    def attempts(self) -> int:
        return 1 + len(self.retry_after)


@dataclass(frozen=True, slots=True)
class EventModel:
    rules: str  # the rules collection
    subject: str  # the collection rules act on
    firings: str
    deliveries: str
    events: Mapping[str, EventType]
    actions: Mapping[str, ActionKind]
    delivery: DeliveryPolicy

    @property
    def watched(self) -> frozenset[str]:
        """The collections whose writes may be events."""
        return frozenset(e.collection for e in self.events.values() if e.collection)

    @property
    def clock_events(self) -> tuple[EventType, ...]:
        return tuple(e for e in self.events.values() if e.clock is not None)


class _Problems:
    def __init__(self) -> None:
        self.found: list[ExtensionProblem] = []

    def add(self, message: str) -> None:
        self.found.append(ExtensionProblem(EXTENSION, message))


def _number(p: _Problems, value: Any, key: str, minimum: float = 0) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= minimum:
        return float(value)
    p.add(f"{key} must be a number of at least {minimum}, got {value!r}")
    return minimum


def _unknown(p: _Problems, value: Mapping[str, Any], known: tuple[str, ...], key: str) -> None:
    for name in value:
        if name not in known:
            p.add(f"{key} has an unknown key {name!r} (known: {', '.join(known)})")


def parse_events(
    raw: Mapping[str, Any], properties: Mapping[str, Mapping[str, Any]]
) -> tuple[EventModel | None, list[ExtensionProblem]]:
    """The root's `x-sandbox-events` (None when absent); `properties` maps every collection to
    its schema's properties, so each field the extension names is checked to exist."""
    p = _Problems()
    ext = raw.get(EXTENSION)
    if ext is None:
        return None, []
    if not isinstance(ext, Mapping):
        p.add("must be a mapping of rules, events, actions and delivery")
        return None, p.found
    _unknown(p, ext, ("rules", "events", "actions", "delivery"), EXTENSION)
    rules = ext.get("rules")
    names: dict[str, str] = {}
    if not isinstance(rules, Mapping):
        p.add("rules must map collection, subject, firings and deliveries to collections")
    else:
        _unknown(p, rules, ("collection", "subject", "firings", "deliveries"), "rules")
        for key in ("collection", "subject", "firings", "deliveries"):
            name = rules.get(key)
            if not isinstance(name, str) or name not in properties:
                p.add(f"rules.{key} {name!r} names no collection")
            else:
                names[key] = name
    if "collection" in names:
        for fld in _RULE_FIELDS:
            if fld not in properties[names["collection"]]:
                p.add(f"rules.collection {names['collection']} lacks the field {fld!r}")
    subject = names.get("subject")
    events = dict(_events(p, ext.get("events"), properties, subject))
    actions = dict(_actions(p, ext.get("actions"), properties, subject))
    if "collection" in names and actions:
        declared = _names(ext.get("events"))
        raw_actions = _names(ext.get("actions"))
        rule_fields = properties[names["collection"]]
        _check_rule_schema(p, rule_fields, declared, actions, subject, properties, raw_actions)
    delivery = _delivery(p, ext.get("delivery"))
    if p.found or len(names) < 4 or delivery is None:
        if not p.found:
            p.add("is incomplete")
        return None, p.found
    model = EventModel(
        rules=names["collection"],
        subject=names["subject"],
        firings=names["firings"],
        deliveries=names["deliveries"],
        events=freeze(events),
        actions=freeze(actions),
        delivery=delivery,
    )
    return model, []


def _names(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _events(
    p: _Problems, value: Any, properties: Mapping[str, Mapping[str, Any]], subject: str | None
) -> Iterator[tuple[str, EventType]]:
    if not isinstance(value, Mapping) or not value:
        p.add("events must map each event name to its source")
        return
    for name, decl in value.items():
        key = f"events.{name}"
        if not isinstance(decl, Mapping):
            p.add(f"{key} must be a mapping")
            continue
        if "clock" in decl:
            _unknown(p, decl, ("clock",), key)
            clock = _clock(p, decl["clock"], f"{key}.clock", properties.get(subject or "", {}))
            if clock is not None:
                yield name, EventType(name, clock=clock)
            continue
        _unknown(p, decl, ("collection", "write", "subject-field", "as"), key)
        coll = decl.get("collection")
        if not isinstance(coll, str) or coll not in properties:
            p.add(f"{key}.collection {coll!r} names no collection")
            continue
        on = decl.get("write")
        if on not in ("created", "updated"):
            p.add(f"{key}.write must be created or updated, got {on!r}")
            continue
        via = decl.get("subject-field")
        if via is None and coll != subject:
            p.add(f"{key}: a write to {coll} is about a {subject} record only with subject-field")
            continue
        if via is not None and via not in properties[coll]:
            p.add(f"{key}.subject-field {via!r} is not a field of {coll}")
            continue
        include = decl.get("as")
        if include is not None and (not isinstance(include, str) or via is None):
            p.add(f"{key}.as names the written record in the payload, for a subject-field event")
            continue
        yield name, EventType(name, coll, on, via, include)


def _clock(p: _Problems, value: Any, key: str, fields: Mapping[str, Any]) -> ClockTrigger | None:
    if not isinstance(value, Mapping):
        p.add(f"{key} must be a mapping of from, after and when")
        return None
    _unknown(p, value, ("from", "after", "when"), key)
    anchor = value.get("from")
    if not isinstance(anchor, str) or anchor not in fields:
        p.add(f"{key}.from {anchor!r} is not a field of the subject")
        return None
    after = value.get("after")
    offset: ClockOffset | None = None
    if isinstance(after, int | float) and not isinstance(after, bool):
        offset = ClockOffset(seconds=_number(p, after, f"{key}.after"))
    elif isinstance(after, Mapping) and "by" in after:
        _unknown(p, after, ("by", "seconds"), f"{key}.after")
        by, seconds = after.get("by"), after.get("seconds")
        if not isinstance(by, str) or by not in fields or not isinstance(seconds, Mapping):
            p.add(f"{key}.after.by must name a subject field, with seconds per value")
            return None
        allowed = fields[by].get("enum")
        for v, s in seconds.items():
            _number(p, s, f"{key}.after.seconds.{v}")
            if allowed is not None and v not in allowed:
                p.add(f"{key}.after.seconds.{v}: {by} never holds {v!r}")
        offset = ClockOffset(
            by=by, by_seconds=freeze({str(k): float(v) for k, v in seconds.items()})
        )
    elif isinstance(after, Mapping) and "rule-field" in after:
        _unknown(p, after, ("rule-field", "unit-seconds", "default"), f"{key}.after")
        offset = ClockOffset(
            rule_field=str(after["rule-field"]),
            unit=_number(p, after.get("unit-seconds", 1), f"{key}.after.unit-seconds", 1),
            default=_number(p, after.get("default", 0), f"{key}.after.default"),
        )
    else:
        p.add(f"{key}.after must be seconds, {{by, seconds}} or {{rule-field, unit-seconds}}")
        return None
    when: dict[str, tuple[Any, ...]] = {}
    raw_when = value.get("when", {})
    if not isinstance(raw_when, Mapping):
        p.add(f"{key}.when must map subject fields to their allowed values")
    else:
        for f, allowed in raw_when.items():
            if f not in fields or not isinstance(allowed, list) or not allowed:
                p.add(f"{key}.when.{f} must be a subject field with a list of values")
            else:
                when[f] = tuple(allowed)
    return ClockTrigger(anchor, offset, freeze(when))


def _actions(
    p: _Problems, value: Any, properties: Mapping[str, Mapping[str, Any]], subject: str | None
) -> Iterator[tuple[str, ActionKind]]:
    if not isinstance(value, Mapping) or not value:
        p.add("actions must map each action type to what it does")
        return
    fields = properties.get(subject or "", {})
    for name, decl in value.items():
        key = f"actions.{name}"
        if not isinstance(decl, Mapping) or len(decl) != 1:
            p.add(f"{key} must hold exactly one of set, webhook, email")
            continue
        if "set" in decl:
            sets = decl["set"]
            if not isinstance(sets, Mapping) or not sets:
                p.add(f"{key}.set must map subject fields to the action's parameters")
                continue
            bad = [f for f in sets if f not in fields]
            if bad:
                p.add(f"{key}.set: {bad[0]!r} is not a field of {subject}")
                continue
            yield name, ActionKind(name, sets=freeze({str(k): str(v) for k, v in sets.items()}))
        elif "webhook" in decl:
            if not isinstance(decl["webhook"], str):
                p.add(f"{key}.webhook must name the action's URL parameter")
                continue
            yield name, ActionKind(name, webhook=decl["webhook"])
        elif "email" in decl:
            email = decl["email"]
            if not isinstance(email, Mapping) or set(email) != {"to", "subject", "body"}:
                p.add(f"{key}.email must map to, subject and body to the action's parameters")
                continue
            yield name, ActionKind(name, email=freeze({k: str(v) for k, v in email.items()}))
        else:
            p.add(f"{key} must hold one of set, webhook, email")


def _check_rule_schema(
    p: _Problems,
    rule_fields: Mapping[str, Any],
    events: Mapping[str, Any],
    actions: Mapping[str, ActionKind],
    subject: str | None,
    properties: Mapping[str, Mapping[str, Any]],
    declared_actions: Mapping[str, Any],
) -> None:
    """The rules schema offers exactly the declared triggers, actions and subject fields."""
    triggers = rule_fields.get("trigger", {}).get("enum")
    if triggers is not None and set(triggers) != set(events):
        p.add(f"the rules' trigger enum {sorted(triggers)} is not the declared events")
    item = rule_fields.get("actions", {}).get("items", {})
    variants = [item, *item.get("oneOf", []), *item.get("anyOf", [])]
    types: set[str] = set()
    params: set[str] = set()
    for variant in variants:
        props = variant.get("properties", {}) if isinstance(variant, Mapping) else {}
        kind_schema = props.get("type", {})
        types.update(kind_schema.get("enum") or [])
        if "const" in kind_schema:
            types.add(kind_schema["const"])
        params.update(props)
    if types and types != set(declared_actions):
        p.add(f"the rules' action types {sorted(types)} are not the declared actions")
    for kind in actions.values():
        wanted = [
            *kind.sets.values(),
            *([kind.webhook] if kind.webhook else []),
            *kind.email.values(),
        ]
        for param in wanted:
            if params and param not in params:
                p.add(f"actions.{kind.name} reads the parameter {param!r} no rule action has")
    leaf = _condition_leaf(rule_fields.get("conditions", {}))
    offered = leaf.get("properties", {}).get("field", {}).get("enum")
    subject_fields = properties.get(subject or "", {})
    for name in offered or ():
        if name not in subject_fields:
            p.add(f"the rules' condition field {name!r} is not a field of {subject}")


def _condition_leaf(tree: Mapping[str, Any]) -> Mapping[str, Any]:
    """The leaf condition schema inside the rules' condition tree (the first with `field`)."""
    items = tree.get("properties", {}).get("conditions", {}).get("items", {})
    for option in [items, *items.get("anyOf", []), *items.get("oneOf", [])]:
        if "field" in option.get("properties", {}):
            return option
    return {}


def _delivery(p: _Problems, value: Any) -> DeliveryPolicy | None:
    if not isinstance(value, Mapping):
        p.add("delivery must say how webhooks are retried and limited")
        return None
    _unknown(p, value, _DELIVERY_KEYS, "delivery")
    retries = value.get("retry-after-seconds")
    if not isinstance(retries, list) or not all(
        isinstance(s, int | float) and not isinstance(s, bool) and s > 0 for s in retries
    ):
        p.add("delivery.retry-after-seconds must list positive numbers of seconds")
        retries = []
    headers = value.get("headers")
    if not isinstance(headers, Mapping) or set(headers) != set(_HEADER_PARTS):
        p.add(f"delivery.headers must name the header of each of {', '.join(_HEADER_PARTS)}")
        headers = {}
    return DeliveryPolicy(
        retry_after=tuple(float(s) for s in retries),
        disable_after=int(_number(p, value.get("disable-after"), "delivery.disable-after", 1)),
        timeout=_number(p, value.get("timeout-seconds"), "delivery.timeout-seconds", 0.1),
        max_payload_bytes=int(
            _number(p, value.get("max-payload-bytes"), "delivery.max-payload-bytes", 1024)
        ),
        max_url_length=int(_number(p, value.get("max-url-length"), "delivery.max-url-length", 16)),
        headers=freeze({str(k): str(v) for k, v in headers.items()}),
    )

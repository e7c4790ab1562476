"""Fault rules: what to match, what to do, and when (next N, every Nth, a seeded chance, until T).

A rule is data, the same whether it arrives through `POST /_sandbox/faults` or a YAML file.
Probability draws come from the rule's own `random.Random(seed)`, so the same requests against
the same rules give the same faults on every run. Expiry is measured on the sandbox clock, so
advancing the clock ends a rule exactly as waiting would.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any

from opsmerge_sandbox.clock import format_iso, formattable, parse_iso
from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.pipeline.authenticate import ApiKey, key_state
from opsmerge_sandbox.pipeline.workspace_name import RULE, is_workspace_name
from opsmerge_sandbox.stores import ClockStore

CONNECTION_EFFECTS = ("reset", "truncate", "malformed_json", "trickle")
# what a rule may do to a webhook delivery instead of a request
DELIVERY_EFFECTS = ("duplicate", "delay", "reorder", "drop")
DEFAULT_REORDER_HOLD_MS = 2000
DEFAULT_CHUNK_BYTES = 64
DEFAULT_INTERVAL_MS = 100
MAX_RULES = 1000


@dataclass(frozen=True, slots=True)
class Match:
    """Every given field must hold; a rule without a workspace matches every workspace."""

    method: str | None = None
    path: str | None = None
    operation_id: str | None = None
    key: str | None = None  # a key's name or id
    workspace: str | None = None
    _path_re: re.Pattern[str] | None = field(default=None, repr=False, compare=False)
    # a rule on webhook deliveries (`deliveries: true`) matches no request, and the reverse
    deliveries: bool = False
    rule_id: str | None = None  # deliveries of this event rule only
    event_type: str | None = None  # deliveries of this event type only

    def hits(
        self, method: str, path: str, relative: str, operation_id: str, key: ApiKey, workspace: str
    ) -> bool:
        if self.deliveries:
            return False
        if self.workspace is not None and self.workspace != workspace:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.operation_id is not None and self.operation_id != operation_id:
            return False
        if self.key is not None and self.key != key.id and self.key != key.name:
            return False
        if self._path_re is not None:
            return bool(self._path_re.match(path) or self._path_re.match(relative))
        return True

    def hits_delivery(self, workspace: str, rule_id: str, event_type: str) -> bool:
        if not self.deliveries:
            return False
        if self.workspace is not None and self.workspace != workspace:
            return False
        if self.rule_id is not None and self.rule_id != rule_id:
            return False
        return self.event_type is None or self.event_type == event_type

    def as_dict(self) -> dict[str, Any]:
        if self.deliveries:
            found = {
                "workspace": self.workspace,
                "rule_id": self.rule_id,
                "event_type": self.event_type,
            }
            return {"deliveries": True, **{k: v for k, v in found.items() if v is not None}}
        out = {
            "method": self.method,
            "path": self.path,
            "operation_id": self.operation_id,
            "key": self.key,
            "workspace": self.workspace,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Effect:
    status: int | None = None
    delay_ms: int = 0
    retry_after: int | None = None
    connection: str | None = None  # reset | truncate | malformed_json | trickle
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    interval_ms: int = DEFAULT_INTERVAL_MS
    process: bool = True  # reset: does the request reach the handler before the connection drops?
    delivery: str | None = None  # duplicate | delay | reorder | drop (a webhook delivery)

    def label(self) -> str:
        parts = []
        if self.delivery is not None:
            parts.append(f"delivery {self.delivery}")
        if self.status is not None:
            parts.append(f"status {self.status}")
        if self.connection is not None:
            parts.append(self.connection.replace("_", " "))
        if self.delay_ms:
            parts.append(f"delay {self.delay_ms} ms")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.delivery is not None:
            out["delivery"] = self.delivery
        if self.status is not None:
            out["status"] = self.status
        if self.delay_ms:
            out["delay_ms"] = self.delay_ms
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.connection is not None:
            out["connection"] = self.connection
            if self.connection == "reset":
                out["process"] = self.process
            if self.connection == "trickle":
                out["chunk_bytes"] = self.chunk_bytes
                out["interval_ms"] = self.interval_ms
        return out


@dataclass(slots=True)
class Rule:
    id: str
    name: str | None
    match: Match
    effect: Effect | None  # None: a bookkeeping entry (the expiring-key scenario)
    created_at: str
    times: int | None = None
    every: int | None = None
    probability: float | None = None
    seed: int | None = None
    expires_at: float | None = None
    scenario: str | None = None
    key: ApiKey | None = None  # the key an expiring-key scenario minted
    matched: int = 0
    fired: int = 0
    _rng: random.Random | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.probability is not None:
            self._rng = random.Random(self.seed)

    @property
    def label(self) -> str:
        """How the journal names this rule: its id and what it does."""
        what = self.name or self.scenario or (self.effect.label() if self.effect else "")
        return f"{self.id} {what}".strip()

    def status(self, now: float) -> str:
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.times is not None and self.fired >= self.times:
            return "exhausted"
        return "active"

    def live(self, now: float) -> bool:
        return self.effect is not None and self.status(now) == "active"

    def draw(self) -> bool:
        """Count one matching request and decide whether the rule fires on it."""
        self.matched += 1
        if self.every is not None and self.matched % self.every:
            return False
        if self._rng is not None and self._rng.random() >= (self.probability or 0.0):
            return False
        self.fired += 1
        return True

    def view(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "scenario": self.scenario,
            "match": self.match.as_dict(),
            "effect": self.effect.as_dict() if self.effect else None,
            "times": self.times,
            "every": self.every,
            "probability": self.probability,
            "seed": self.seed,
            "expires_at": format_iso(self.expires_at) if self.expires_at is not None else None,
            "matched": self.matched,
            "fired": self.fired,
            "remaining": max(0, self.times - self.fired) if self.times is not None else None,
            "status": self.status(now),
            "created_at": self.created_at,
        }
        if self.key is not None:
            key = self.key
            out["key"] = {
                "id": key.id,
                "name": key.name,
                "prefix": key.prefix,
                "expires_at": key.expires_at,
            }
            out["status"] = key_state(key, now).value
        return out


class FaultRegistry:
    """Every rule of one sandbox, in the order they were added (the first that fires wins)."""

    def __init__(self, clock: ClockStore, revoke: Callable[[str], object] | None = None) -> None:
        self.clock = clock
        self.rules: list[Rule] = []
        self._next = 0
        # removing an expiring-key scenario revokes its key, through the sandbox's key store
        self._revoke = revoke

    def new_id(self) -> str:
        self._next += 1
        return f"flt_{self._next}"

    def ensure_room(self) -> None:
        if len(self.rules) >= MAX_RULES:  # every request walks the list: keep it short
            raise ApiError(
                "CONFLICT",
                f"The sandbox already holds {MAX_RULES} fault rules; delete some first.",
            )

    def add(self, rule: Rule) -> Rule:
        self.ensure_room()
        self.rules.append(rule)
        return rule

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def remove(self, rule_id: str) -> Rule | None:
        rule = self.get(rule_id)
        if rule is not None:
            self.rules.remove(rule)
            self._retire(rule)
        return rule

    def clear(self, workspace: str | None = None) -> list[Rule]:
        """Remove every rule, or those scoped to one workspace; returns what was removed."""
        gone = [r for r in self.rules if workspace is None or r.match.workspace == workspace]
        gone_ids = {r.id for r in gone}
        self.rules = [r for r in self.rules if r.id not in gone_ids]
        for rule in gone:
            self._retire(rule)
        return gone

    def _retire(self, rule: Rule) -> None:
        """A removed expiring-key scenario takes its key with it."""
        if rule.key is None:
            return
        if self._revoke is not None:
            self._revoke(rule.key.id)
        else:
            rule.key.revoked = True

    def listed(self, workspace: str | None = None) -> list[dict[str, Any]]:
        now = self.clock.now()
        return [
            r.view(now) for r in self.rules if workspace is None or r.match.workspace == workspace
        ]

    def pick_delivery(self, workspace: str, rule_id: str, event_type: str) -> Rule | None:
        """The first live delivery rule that matches this webhook delivery and fires on it."""
        now = self.clock.now()
        for rule in self.rules:
            hit = rule.live(now) and rule.match.hits_delivery(workspace, rule_id, event_type)
            if hit and rule.draw():
                return rule
        return None

    def pick(
        self, method: str, path: str, relative: str, operation_id: str, key: ApiKey, workspace: str
    ) -> Rule | None:
        """The first live rule that matches this request and fires on it."""
        now = self.clock.now()
        for rule in self.rules:
            hit = rule.live(now) and rule.match.hits(
                method, path, relative, operation_id, key, workspace
            )
            if hit and rule.draw():  # draw() counts the match, so only matching rules call it
                return rule
        return None


# ------------------------------------------------------------------ parsing


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule is checked against when it is added."""

    clock: ClockStore
    operation_ids: frozenset[str]
    methods: frozenset[str]
    keys: Any  # KeyRing
    default_seed: int
    default_workspace: str | None = None


def _bad(field_name: str, message: str) -> ApiError:
    return ApiError(
        "VALIDATION_ERROR",
        f"Invalid fault rule: {field_name}: {message}.",
        [Detail("body", field_name, message)],
    )


def _unknown(field_name: str, message: str) -> ApiError:
    return ApiError(
        "REFERENCE_NOT_FOUND",
        f"Invalid fault rule: {field_name}: {message}.",
        [Detail("body", field_name, message)],
    )


def parse_match(raw: dict[str, Any], ctx: Context) -> Match:
    if raw.get("deliveries"):
        return _delivery_match(raw, ctx)
    for name in ("rule_id", "event_type"):
        if name in raw:
            raise _bad(f"match.{name}", "only applies with deliveries: true")
    method = raw.get("method")
    if method is not None:
        method = str(method).upper()
        if method not in ctx.methods:
            raise _bad(
                "match.method",
                f"no operation uses {method}; use one of {', '.join(sorted(ctx.methods))}",
            )
    op_id = raw.get("operation_id")
    if op_id is not None and op_id not in ctx.operation_ids:
        raise _unknown("match.operation_id", f"the spec has no operation {op_id!r}")
    key = raw.get("key")
    if key is not None and not any(key in (k.id, k.name) for k in ctx.keys):
        raise _unknown("match.key", f"no sandbox key has the name or id {key!r}")
    workspace = raw.get("workspace", ctx.default_workspace)
    if workspace is not None and not is_workspace_name(workspace):
        raise _bad("match.workspace", f"must be {RULE}")
    path = raw.get("path")
    path_re = re.compile(translate(path)) if path is not None else None
    return Match(method, path, op_id, key, workspace, path_re)


def _delivery_match(raw: dict[str, Any], ctx: Context) -> Match:
    """A match on webhook deliveries: of one workspace, event rule or event type."""
    for name in ("method", "path", "operation_id", "key"):
        if name in raw:
            raise _bad(f"match.{name}", "matches requests; a deliveries rule matches deliveries")
    workspace = raw.get("workspace", ctx.default_workspace)
    if workspace is not None and not is_workspace_name(workspace):
        raise _bad("match.workspace", f"must be {RULE}")
    return Match(
        workspace=workspace,
        deliveries=True,
        rule_id=raw.get("rule_id"),
        event_type=raw.get("event_type"),
    )


def _delivery_effect(raw: dict[str, Any]) -> Effect:
    what = raw["delivery"]
    if what not in DELIVERY_EFFECTS:
        raise _bad("effect.delivery", f"must be one of {', '.join(DELIVERY_EFFECTS)}")
    for name in ("status", "connection", "retry_after", "process", "chunk_bytes", "interval_ms"):
        if name in raw:
            raise _bad(f"effect.{name}", "does not apply to a delivery; use delay_ms alone")
    delay = int(raw.get("delay_ms", 0))
    if what == "delay" and delay <= 0:
        raise _bad("effect.delay_ms", "a delayed delivery needs delay_ms above 0")
    if what == "reorder" and not delay:
        delay = DEFAULT_REORDER_HOLD_MS
    return Effect(delay_ms=delay, delivery=what)


def parse_effect(raw: dict[str, Any]) -> Effect:
    if raw.get("delivery") is not None:
        return _delivery_effect(raw)
    status = raw.get("status")
    connection = raw.get("connection")
    delay = int(raw.get("delay_ms", 0))
    if status is None and connection is None and not delay:
        raise _bad("effect", "give a status, a delay_ms or a connection effect")
    if status is not None and not 400 <= int(status) <= 599:
        raise _bad("effect.status", "a forced status must be from 400 to 599")
    if connection is not None and connection not in CONNECTION_EFFECTS:
        raise _bad("effect.connection", f"must be one of {', '.join(CONNECTION_EFFECTS)}")
    if connection == "reset" and status is not None:
        raise _bad("effect.status", "a reset connection sends no status; drop one of the two")
    if connection != "reset" and "process" in raw:
        raise _bad("effect.process", "only applies to connection: reset")
    if connection != "trickle" and ("chunk_bytes" in raw or "interval_ms" in raw):
        raise _bad("effect", "chunk_bytes and interval_ms only apply to connection: trickle")
    retry_after = raw.get("retry_after")
    if retry_after is not None and status not in (429, 503):
        raise _bad("effect.retry_after", "only applies with status 429 or 503")
    return Effect(
        status=int(status) if status is not None else None,
        delay_ms=delay,
        retry_after=int(retry_after) if retry_after is not None else None,
        connection=connection,
        chunk_bytes=int(raw.get("chunk_bytes", DEFAULT_CHUNK_BYTES)),
        interval_ms=int(raw.get("interval_ms", DEFAULT_INTERVAL_MS)),
        process=bool(raw.get("process", True)),
    )


def expiry_of(raw: dict[str, Any], clock: ClockStore) -> float | None:
    if "expires_in" in raw and "expires_at" in raw:
        raise _bad("expires_at", "give expires_in or expires_at, not both")
    if "expires_in" in raw:
        return clock.now() + float(raw["expires_in"])
    if "expires_at" in raw:
        try:
            expires = parse_iso(str(raw["expires_at"]))
        except ValueError:
            raise _bad("expires_at", "must be an ISO 8601 date-time") from None
        if not formattable(expires):  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            raise _bad("expires_at", "must fall between the years 1 and 9999 in UTC")
        return expires
    return None


def parse_rule(
    raw: dict[str, Any],
    ctx: Context,
    rule_id: str,
    scenario: str | None = None,
    key: ApiKey | None = None,
) -> Rule:
    """A Rule from its JSON form (already checked against the FaultRequest schema)."""
    probability = raw.get("probability")
    seed = raw.get("seed")
    if seed is not None and probability is None:
        raise _bad("seed", "only applies with a probability")
    if probability is not None:
        probability = float(probability)
        if not 0.0 < probability <= 1.0:
            raise _bad("probability", "must be more than 0 and at most 1")
        seed = int(seed) if seed is not None else ctx.default_seed
    effect = parse_effect(raw["effect"]) if raw.get("effect") is not None else None
    if effect is None and key is None:
        raise _bad("effect", "a rule needs an effect")
    match = parse_match(raw.get("match") or {}, ctx)
    if effect is not None and match.deliveries != (effect.delivery is not None):
        raise _bad(
            "effect.delivery",
            "a rule with match.deliveries needs a delivery effect, and only such a rule has one",
        )
    return Rule(
        id=rule_id,
        name=raw.get("name"),
        match=match,
        effect=effect,
        created_at=ctx.clock.iso(),
        times=int(raw["times"]) if raw.get("times") is not None else None,
        every=int(raw["every"]) if raw.get("every") is not None else None,
        probability=probability,
        seed=seed,
        expires_at=expiry_of(raw, ctx.clock),
        scenario=scenario,
        key=key,
    )

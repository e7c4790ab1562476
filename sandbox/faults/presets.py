"""Named scenarios for QA: presets that expand into ordinary rules (or, for a key, a minted key).

    rate-limit-storm  every Nth matching request answers 429 (default every 5th, Retry-After 1)
    flaky-5xx         a seeded share of matching requests answers 503 (default 5%)
    expiring-key      a fresh key that stops working T seconds from now on the sandbox clock

They go through the same path as a hand-written rule (`POST /_sandbox/faults` or the YAML file),
so they list, count, expire and delete like one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opsmerge_sandbox.clock import format_iso
from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.faults.rules import Context, Rule, parse_rule
from opsmerge_sandbox.pipeline.authenticate import ApiKey
from opsmerge_sandbox.world.recipe import owner_key


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    params_schema: str  # a component schema of admin.yaml
    allowed: frozenset[str]  # top-level request fields it takes besides scenario and params


_RULE_FIELDS = frozenset({"name", "match", "times", "expires_in", "expires_at"})

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "rate-limit-storm",
            "Every Nth matching request answers 429 with truthful "
            "Retry-After and X-RateLimit-* headers (params: every=5, retry_after=1).",
            "RateLimitStormParams",
            _RULE_FIELDS,
        ),
        Scenario(
            "flaky-5xx",
            "A seeded share of matching requests answers 503, the same ones on "
            "every run (params: probability=0.05, seed, status=503, retry_after).",
            "Flaky5xxParams",
            _RULE_FIELDS,
        ),
        Scenario(
            "expiring-key",
            "Mints a key that works until expires_in seconds from now on the "
            "sandbox clock, then gets 401 (params: expires_in=60, like, name, secret).",
            "ExpiringKeyParams",
            frozenset({"name"}),
        ),
    )
}


def _bad(field_name: str, message: str) -> ApiError:
    return ApiError(
        "VALIDATION_ERROR",
        f"Invalid fault scenario: {field_name}: {message}.",
        [Detail("body", field_name, message)],
    )


def catalogue() -> list[dict[str, str]]:
    return [
        {"name": s.name, "summary": s.summary, "params": s.params_schema}
        for s in SCENARIOS.values()
    ]


def _storm(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "effect": {"status": 429, "retry_after": params.get("retry_after", 1)},
        "every": params.get("every", 5),
    }


def _flaky(params: dict[str, Any]) -> dict[str, Any]:
    effect: dict[str, Any] = {"status": params.get("status", 503)}
    if params.get("retry_after") is not None:
        if effect["status"] != 503:
            raise _bad("params.retry_after", "only applies with status 503")
        effect["retry_after"] = params["retry_after"]
    rule: dict[str, Any] = {"effect": effect, "probability": params.get("probability", 0.05)}
    if params.get("seed") is not None:
        rule["seed"] = params["seed"]
    return rule


_PRESETS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "rate-limit-storm": _storm,
    "flaky-5xx": _flaky,
}


def _template_key(ctx: Context, like: str | None) -> ApiKey:
    """The key to copy: the one named by `like`, else the key that stands for the tenant."""
    if like is None:
        key = owner_key(ctx.keys, ctx.clock.now())
        if key is None:
            raise _bad("params.like", "the sandbox has no usable full-access key to copy")
        return key
    found = next((k for k in ctx.keys if like in (k.id, k.name)), None)
    if found is None:
        raise ApiError(
            "REFERENCE_NOT_FOUND",
            f"Invalid fault scenario: params.like: no key {like!r}.",
            [Detail("body", "params.like", "no sandbox key has this name or id")],
        )
    return found


def mint_expiring(ctx: Context, params: dict[str, Any]) -> ApiKey:
    """A key like an existing one (owner, scopes, rate limit) that expires on the sandbox clock."""
    like = _template_key(ctx, params.get("like"))
    seconds = float(params.get("expires_in", 60))
    expires_at = format_iso(ctx.clock.now() + seconds)
    name = params.get("name") or f"expiring key ({seconds:g} s)"
    scopes = sorted(like.scopes) if like.access == "custom" else None
    secret = params.get("secret")
    if secret is not None and ctx.keys.lookup(secret) is not None:
        raise _bad("params.secret", "another key already has this secret")
    return ctx.keys.mint(
        name=name,
        user_id=like.user_id,
        scopes=scopes,
        expires_at=expires_at,
        rate_limit=like.rate_limit,
        created_at=ctx.clock.iso(),
        secret=secret,
    )


def expand(body: dict[str, Any], ctx: Context, rule_id: str) -> Rule:
    """The rule a scenario request stands for (params already checked against their schema)."""
    scenario = SCENARIOS[body["scenario"]]
    extra = sorted(set(body) - scenario.allowed - {"scenario", "params"})
    if extra:
        raise _bad(
            extra[0],
            f"{scenario.name} takes {', '.join(sorted(scenario.allowed))} and "
            "params; set the rest through params",
        )
    params = body.get("params") or {}
    if scenario.name == "expiring-key":
        key = mint_expiring(ctx, {"name": body.get("name"), **params})
        return parse_rule({"name": body.get("name")}, ctx, rule_id, scenario.name, key)
    preset = _PRESETS[scenario.name](params)
    raw = {**{k: v for k, v in body.items() if k in scenario.allowed}, **preset}
    return parse_rule(raw, ctx, rule_id, scenario.name)

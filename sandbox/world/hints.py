"""Reading a property schema's basic hints: its types, whether null is allowed and how often
(`x-null-probability`), and weighted picks (`enum` with `x-weights`, `x-faker` choices)."""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from opsmerge_sandbox.jsontypes import json_types
from opsmerge_sandbox.world.context import GenerationError, Maker, Schema


def types_of(schema: Schema) -> set[str]:
    """The schema's `type` as a set, whether it was given as one name or a list."""
    return set(json_types(schema))


def nullable(schema: Schema) -> bool:
    """Whether null validates: the type must allow it, and an enum must list it too."""
    if "enum" in schema:
        return None in schema["enum"]
    return "null" in types_of(schema) or not types_of(schema)


def null_probability(schema: Schema) -> float:
    """How often the property is null: `x-null-probability`, if null validates at all."""
    return float(schema.get("x-null-probability", 0) or 0) if nullable(schema) else 0.0


def maybe_null(make: Maker, null_p: float) -> Maker:
    """The maker, returning null with probability `null_p` instead."""
    if not null_p:
        return make
    return lambda d: None if d.rng.random() < null_p else make(d)


def weighted(values: list[Any], weights: list[float] | None) -> Callable[[random.Random], Any]:
    """A picker of one of `values`, uniform or by `weights` aligned with them."""
    if not values:
        raise GenerationError("an enum with no values")
    if not weights:
        n = len(values)
        return lambda rng: values[int(rng.random() * n)]
    if len(weights) != len(values):
        raise GenerationError(f"x-weights {weights} do not align with enum {values}")
    cum = list(accumulate(float(w) for w in weights))
    total = cum[-1]
    if total <= 0:
        raise GenerationError(f"x-weights {weights} sum to zero")
    last = len(values) - 1
    return lambda rng: values[min(bisect.bisect_right(cum, rng.random() * total), last)]

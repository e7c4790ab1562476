"""Value makers: one small function per property, compiled once per collection from its schema.

A maker takes the record being built (`Draft`) and returns the property's value, drawing only
from the record's own random stream, so a record never depends on the order of generation. The
schema hints decide everything (`x-faker`, `x-weights`, `x-probability`, `x-null-probability`,
`x-ref`, `x-by`, `x-time`, `x-when`, `x-range`); computed fields (`x-sequence`, `x-template`,
`x-derive`) are left to `derive`.

This module is the one import point for the generator; the work lives in small modules:
`seeding` (stable seeds), `timefmt` (timestamp text), `pools` (Faker and text pools),
`context` (Draft, FieldPlan, WorldContext), `hints` (types, nulls, weights), `providers`
(`x-faker`), `makers` (plain values), `refs` (`x-ref`), `times` (`x-time`) and `plans`
(compiling and ordering a schema's plans).
"""

from __future__ import annotations

from opsmerge_sandbox.world.context import (
    Draft,
    FieldPlan,
    GenerationError,
    Maker,
    Redraw,
    Schema,
    WorldContext,
)
from opsmerge_sandbox.world.hints import nullable
from opsmerge_sandbox.world.makers import compile_value
from opsmerge_sandbox.world.plans import COMPUTED, compile_plans, object_maker, order_plans
from opsmerge_sandbox.world.pools import POOL_SIZE, POOLED_PROVIDERS, faker_generator
from opsmerge_sandbox.world.providers import CUSTOM_PROVIDERS
from opsmerge_sandbox.world.seeding import stable_int
from opsmerge_sandbox.world.timefmt import DAY, format_date, format_datetime, parse_time
from opsmerge_sandbox.world.times import HISTORY_DAYS

__all__ = [
    "COMPUTED",
    "CUSTOM_PROVIDERS",
    "DAY",
    "HISTORY_DAYS",
    "POOLED_PROVIDERS",
    "POOL_SIZE",
    "Draft",
    "FieldPlan",
    "GenerationError",
    "Maker",
    "Redraw",
    "Schema",
    "WorldContext",
    "compile_plans",
    "compile_value",
    "faker_generator",
    "format_date",
    "format_datetime",
    "nullable",
    "object_maker",
    "order_plans",
    "parse_time",
    "stable_int",
]

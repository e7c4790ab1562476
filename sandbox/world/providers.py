"""`x-faker` makers: Faker providers by name, pooled where repeats are harmless, plus a few
custom providers that are faster than Faker's and named in the spec like any other."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any

from opsmerge_sandbox.world.context import Draft, GenerationError, Maker, Schema, WorldContext
from opsmerge_sandbox.world.pools import POOLED_PROVIDERS

_HOST_PREFIXES = ("DESKTOP", "LAPTOP", "WS", "PC", "SRV", "VM", "MAC", "NB")
_HOST_CHARS = string.ascii_uppercase + string.digits


def _hostname_upper(rng: random.Random) -> str:
    tail = "".join(rng.choices(_HOST_CHARS, k=7))
    return f"{rng.choice(_HOST_PREFIXES)}-{tail}"


def _ipv4_private(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        return f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if r < 0.9:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _ipv4_public(rng: random.Random) -> str:
    first = rng.choice((31, 51, 62, 77, 81, 82, 86, 90, 109, 151, 185, 194, 212, 213, 217))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


CUSTOM_PROVIDERS: dict[str, Callable[[random.Random], str]] = {
    "hostname_upper": _hostname_upper,
    "ipv4_private": _ipv4_private,
    "ipv4_public": _ipv4_public,
}


# Faker's lorem providers string random dictionary words together ("Cause rest front resource
# moment lay us."): text no technician, client or accountant wrote, which an integrator reading
# the data takes for a bug. A free-text field says what people write there: `x-faker` choices,
# `x-by` on a field it follows, or `x-format`.
RANDOM_WORDS = frozenset(
    {"sentence", "sentences", "paragraph", "paragraphs", "text", "texts", "word", "words"}
)


def random_words_refused(where: str, provider: str = "") -> GenerationError:
    drawn = f"x-faker {provider!r} strings random words together" if provider else (
        "a string with no hint would be random words"
    )
    return GenerationError(
        f"{where}: {drawn}; say what people write there (x-faker choices, x-by or x-format)"
    )


def faker_maker(provider: str, schema: Schema, ctx: WorldContext, where: str) -> Maker:
    """A maker for a named provider, cut to the schema's `maxLength`; unknown names fail, and
    so do the providers of random words."""
    if provider in RANDOM_WORDS:
        raise random_words_refused(where, provider)
    max_len = schema.get("maxLength")
    custom = CUSTOM_PROVIDERS.get(provider)
    if custom is not None:
        return lambda d: custom(d.rng)
    if not hasattr(ctx.faker, provider):
        raise GenerationError(f"{where}: unknown x-faker provider {provider!r}")
    if provider in POOLED_PROVIDERS:
        pool = ctx.pool(provider)
        if max_len is not None:
            pool = [v[:max_len] if isinstance(v, str) else v for v in pool]
        size = len(pool)
        return lambda d: pool[int(d.rng.random() * size)]
    gen = ctx.faker
    method = getattr(gen, provider)

    def make(d: Draft) -> Any:
        gen.random = d.rng
        value = method()
        return value[:max_len] if max_len is not None and isinstance(value, str) else value

    return make

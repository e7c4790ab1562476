"""Faker access: one generator per locale and thread, and seeded pools of free text.

Calling Faker for every sentence is slow; where repeats are harmless a field draws from a pool
built once per seed and provider instead.
"""

from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING, Any

from opsmerge_sandbox.world.seeding import stable_int

if TYPE_CHECKING:
    from faker import Generator

POOL_SIZE = 256  # enough variety for free text; building a pool costs ~10-30 us a value
# Free text where repeats are harmless: drawn from a seeded pool rather than a Faker call each.
POOLED_PROVIDERS = frozenset(
    {
        "sentence",
        "sentences",
        "paragraph",
        "text",
        "job",
        "city",
        "street_address",
        "address",
        "catch_phrase",
        "bs",
        "word",
        "words",
        "user_agent",
    }
)

_local = threading.local()
_POOLS: dict[tuple[int, str], list[Any]] = {}


def faker_generator(locale: str = "en_GB") -> Generator:
    """One Faker generator per locale and thread; each record lends it its own random stream
    (so two threads building worlds at once cannot swap streams)."""
    cache: dict[str, Generator] = _local.__dict__.setdefault("fakers", {})
    gen = cache.get(locale)
    if gen is None:
        from faker import Factory
        from faker.providers.lorem.en_US import Provider as EnglishLorem

        gen = Factory.create(locale)
        gen.add_provider(EnglishLorem)  # English words read better than Latin in a demo
        cache[locale] = gen
    return gen


def seeded_pool(gen: Generator, seed: int, provider: str) -> list[Any]:
    """Seeded values of a free-text provider, shared by every field that asks for it.

    A pool depends only on the seed and the provider, so it is kept for the next build
    (a workspace reset rebuilds the same world)."""
    key = (seed, provider)
    values = _POOLS.get(key)
    if values is None:
        saved = gen.random
        gen.random = random.Random(stable_int(seed, "pool", provider))
        try:
            method = getattr(gen, provider)
            values = [method() for _ in range(POOL_SIZE)]
        finally:
            gen.random = saved
        if len(_POOLS) > 64:
            _POOLS.clear()
        _POOLS[key] = values
    return values

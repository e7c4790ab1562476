"""Stable seeds: the world must come out the same in every process, so no `hash()` anywhere."""

from __future__ import annotations

import hashlib


def stable_int(*parts: object) -> int:
    """A 64-bit integer from the parts; unlike `hash()`, the same in every process."""
    text = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")

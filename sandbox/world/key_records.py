"""Which collection lists the recipe's API keys, and what each of its fields shows of a key.

The spec says it, under `x-sandbox-auth.keys`:

    keys:
      collection: <the x-collection that mirrors the keys>
      fields: {<record field>: <what of the key it shows>, ...}

What a field may show: the recipe key's own `name`, `access`, `scopes`, `expires_at` and
`user_id`; `prefix`, the first characters of the secret (never the secret); `revoked`, when the
key was revoked (the record's update time) or null; `used`, when the key was last used, as the
audit log's latest entry of its use says (`x-sandbox-audit.key-use`; null until it has one); and
null, for a field a recipe key leaves empty. Fields the mapping leaves out are generated like any
other. The spec check and the world generator both read the mapping through
`key_mapping_problems`, so they refuse the same mistakes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opsmerge_sandbox.world.recipe import KeySpec

PREFIX_CHARS = 12  # what the key list shows of a secret: enough to recognise it, not to use it
REVOKED = "revoked"  # filled in once the record has its times
USED = "used"  # filled in from the log's entries of the key's use (null until it has one)
_SHOWN: dict[str, Callable[[KeySpec], Any]] = {
    "name": lambda k: k.name,
    "access": lambda k: k.access,
    "scopes": lambda k: list(k.scopes),
    "expires_at": lambda k: k.expires_at,
    "user_id": lambda k: k.user_id,
    "prefix": lambda k: k.key[:PREFIX_CHARS] + "\u2026",
}
SOURCES = (*_SHOWN, REVOKED, USED)


@dataclass(frozen=True, slots=True)
class KeyRecords:
    collection: str
    fields: dict[str, str | None]  # record field -> what of the key it shows (None: null)

    def record(self, key: KeySpec) -> dict[str, Any]:
        """What the key list shows of a key before the generator adds the record's times."""
        out: dict[str, Any] = {"id": key.id}
        for field, source in self.fields.items():
            if source != REVOKED:
                out[field] = _SHOWN[source](key) if source in _SHOWN else None
        return out

    def revoked_fields(self) -> list[str]:
        return [f for f, source in self.fields.items() if source == REVOKED]


def key_mapping_problems(ext: Any, properties: Mapping[str, Iterable[str]]) -> list[str]:
    """What is wrong with an `x-sandbox-auth.keys` mapping; `properties` maps every collection
    to its field names."""
    if not isinstance(ext, dict):
        return ["keys must be a mapping with collection and fields"]
    problems = []
    collection = ext.get("collection")
    if collection not in properties:
        problems.append(f"keys.collection {collection!r} names no x-collection")
    fields = ext.get("fields")
    if not isinstance(fields, dict) or not fields:
        return [*problems, "keys.fields must map record fields to what of a key they show"]
    known = (
        set(properties[collection])
        if isinstance(collection, str) and collection in properties
        else None
    )
    for field, source in fields.items():
        if known is not None and field not in known:
            problems.append(f"keys.fields.{field} is not a property of {collection}")
        if source is not None and source not in SOURCES:
            problems.append(
                f"keys.fields.{field} shows {source!r}; expected one of "
                f"{', '.join(SOURCES)} or null"
            )
    return problems


def keys_collection(auth_ext: Any) -> str | None:
    """The collection `x-sandbox-auth.keys` names, None when it names none (unchecked: what
    reads it must still find the collection)."""
    ext = auth_ext.get("keys") if isinstance(auth_ext, dict) else None
    collection = ext.get("collection") if isinstance(ext, dict) else None
    return collection if isinstance(collection, str) else None


def key_records(auth_ext: Any, properties: Mapping[str, Iterable[str]]) -> KeyRecords | None:
    """The spec's key mapping (`x-sandbox-auth`, resolved), None when it has none.

    Raises ValueError naming the first problem of a mapping the spec check would refuse.
    """
    ext = auth_ext.get("keys") if isinstance(auth_ext, dict) else None
    if ext is None:
        return None
    problems = key_mapping_problems(ext, properties)
    if problems:
        raise ValueError(f"x-sandbox-auth.{problems[0]}")
    return KeyRecords(str(ext["collection"]), dict(ext["fields"]))


def last_use(auth_ext: Any) -> tuple[str, tuple[str, ...]] | None:
    """(the keys' collection, its fields that show the key's last use) when the mapping has
    such fields, else None: what the generator fills from the seeded log, what a request that
    logs a use moves on, and what neither the log's diffs nor a hosted budget count
    (unchecked, as `keys_collection`)."""
    collection = keys_collection(auth_ext)
    fields = auth_ext["keys"].get("fields") if collection is not None else None
    if not isinstance(fields, dict):
        return None
    shown = tuple(str(f) for f, source in fields.items() if source == USED)
    return (collection, shown) if collection is not None and shown else None

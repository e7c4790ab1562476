"""Seed recipes: the small YAML files that, with the spec, decide the whole seeded world.

A recipe names a seed, a fixed epoch (every timestamp counts back from it, never from the
clock), record counts, a few named records with fixed ids that docs and tests rely on, and the
API keys. `extends: <name or path>` reuses another recipe and overrides what it lists, so the
large recipe keeps the default's named records and keys without copying them.

A key may carry a `role` saying what the sandbox itself uses it for (`demo`: the key a hosted docs
page offers), so no code has to recognise a key by its name.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import opsmerge_sandbox as sandbox
from opsmerge_sandbox.pipeline.authenticate import ApiKey, KeyState, key_state
from opsmerge_sandbox.yamlio import load_yaml

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.authorize import AuthModel

KEY_ACCESS = ("full", "custom")
DEMO = "demo"
KEY_ROLES = (DEMO,)  # what the sandbox itself may use a recipe key for
_MERGED = ("counts", "records")  # merged key by key over the base recipe; the rest is replaced


class RecipeError(ValueError):
    """A recipe is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class KeySpec:
    id: str  # "key_..." (matches the api_keys id pattern ^key_[0-9a-z]+$)
    key: str  # the full secret, "om_..."
    name: str
    user_id: str  # owner (a users record id)
    access: str  # "full" | "custom"
    scopes: tuple[str, ...]  # for custom access; () for full
    expires_at: str | None  # ISO 8601 UTC "2026-...Z"
    revoked: bool
    rate_limit: int | None  # requests/minute; None = the recipe/global default
    role: str | None = None  # one of KEY_ROLES: what the sandbox itself uses the key for


@dataclass(frozen=True)
class Recipe:
    name: str
    seed: int
    epoch: datetime  # tz-aware UTC
    organisation: dict[str, Any]  # {id, name, region}
    rate_limit: int  # default per-key limit
    counts: dict[str, int]
    records: dict[str, list[dict[str, Any]]]  # named records with fixed ids
    keys: tuple[KeySpec, ...]


def fixtures_dirs() -> list[Path]:
    """Where named recipes live: the source checkout first, then the installed data files."""
    beside = Path(sandbox.__file__).resolve().parent.parent
    return [
        beside / "fixtures",
        Path(sys.prefix) / "share" / "opsmerge-sandbox" / "fixtures",
        beside / "share" / "opsmerge-sandbox" / "fixtures",  # `pip install --target DIR`
    ]


def _resolve(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    text = str(name_or_path)
    looks_like_path = text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text
    if looks_like_path:
        path = Path(text)
        if not path.is_absolute() and relative_to is not None and not path.exists():
            path = relative_to / path
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {text}")
        return path
    for folder in fixtures_dirs():
        candidate = folder / f"{text}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in fixtures_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise RecipeError(
        f"unknown recipe {text!r}: expected one of {', '.join(known) or '(none found)'} "
        "or a path to a YAML file"
    )


def _load_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise RecipeError(f"recipe {path} extends itself through {' -> '.join(map(str, seen))}")
    try:
        raw = load_yaml(path)
    except Exception as exc:  # yaml.YAMLError and decoding errors alike
        raise RecipeError(f"recipe {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {path} must be a mapping at the top level")
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw
    base = _load_raw(_resolve(base_name, path.parent), (*seen, path))
    for key in _MERGED:
        if key in raw:
            if not isinstance(raw[key], dict):
                raise RecipeError(f"recipe {path}: {key!r} must be a mapping")
            raw[key] = {**(base.get(key) or {}), **raw[key]}
    return {**base, **raw}


def _iso_utc(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError as exc:
            raise RecipeError(f"{field}: not an ISO 8601 timestamp: {value!r}") from exc
    else:
        raise RecipeError(f"{field}: expected an ISO 8601 timestamp, got {value!r}")
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def format_ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> Any:
    """YAML turns unquoted timestamps into datetimes; the world holds JSON-ready strings."""
    if isinstance(value, datetime):
        return format_ts(_iso_utc(value, "timestamp"))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _key(raw: Any, where: str) -> KeySpec:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: a key must be a mapping")
    missing = [f for f in ("id", "key", "name", "user_id") if not raw.get(f)]
    if missing:
        raise RecipeError(f"{where}: missing {', '.join(missing)}")
    access = raw.get("access", "full")
    if access not in KEY_ACCESS:
        raise RecipeError(f"{where}: access must be one of {KEY_ACCESS}, got {access!r}")
    scopes = tuple(raw.get("scopes") or ())
    if access == "full" and scopes:
        raise RecipeError(f"{where}: a full-access key takes no scopes")
    expires = raw.get("expires_at")
    rate = raw.get("rate_limit")
    if rate is not None and (not isinstance(rate, int) or rate < 1):
        raise RecipeError(f"{where}: rate_limit must be a positive integer")
    role = raw.get("role")
    if role is not None and role not in KEY_ROLES:
        raise RecipeError(f"{where}: role must be one of {KEY_ROLES}, got {role!r}")
    return KeySpec(
        id=str(raw["id"]),
        key=str(raw["key"]),
        name=str(raw["name"]),
        user_id=str(raw["user_id"]),
        access=access,
        scopes=scopes,
        expires_at=None if expires is None else format_ts(_iso_utc(expires, f"{where}.expires_at")),
        revoked=bool(raw.get("revoked", False)),
        rate_limit=rate,
        role=role,
    )


def parse_recipe(raw: dict[str, Any], name: str, seed: int | None = None) -> Recipe:
    """Check and normalise a recipe mapping (already merged with what it extends)."""
    where = f"recipe {name}"
    for field in ("seed", "epoch", "organisation"):
        if field not in raw:
            raise RecipeError(f"{where}: missing {field!r}")
    counts = raw.get("counts") or {}
    if not isinstance(counts, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()
    ):
        raise RecipeError(f"{where}: counts must map collection names to integers >= 0")
    records = raw.get("records") or {}
    if not isinstance(records, dict):
        raise RecipeError(f"{where}: records must map collection names to lists")
    named: dict[str, list[dict[str, Any]]] = {}
    for coll, items in records.items():
        if not isinstance(items, list) or not all(
            isinstance(r, dict) and r.get("id") for r in items
        ):
            raise RecipeError(f"{where}: records.{coll} must be a list of mappings with an id")
        ids = [r["id"] for r in items]
        if len(set(ids)) != len(ids):
            raise RecipeError(f"{where}: records.{coll} repeats an id")
        named[str(coll)] = [_plain(r) for r in items]
    keys = tuple(_key(k, f"{where}: keys[{i}]") for i, k in enumerate(raw.get("keys") or []))
    for label, values in (("id", [k.id for k in keys]), ("key", [k.key for k in keys])):
        if len(set(values)) != len(values):
            raise RecipeError(f"{where}: two keys share a {label}")
    org = raw["organisation"]
    if not isinstance(org, dict) or not {"id", "name", "region"} <= org.keys():
        raise RecipeError(f"{where}: organisation needs id, name and region")
    rate_limit = raw.get("rate_limit", 300)
    if not isinstance(rate_limit, int) or rate_limit < 1:
        raise RecipeError(f"{where}: rate_limit must be a positive integer")
    return Recipe(
        name=str(raw.get("name", name)),
        seed=int(raw["seed"] if seed is None else seed),
        epoch=_iso_utc(raw["epoch"], f"{where}: epoch"),
        organisation=dict(org),
        rate_limit=rate_limit,
        counts={str(k): int(v) for k, v in counts.items()},
        records=named,
        keys=keys,
    )


def load_recipe(name_or_path: str = "default", seed: int | None = None) -> Recipe:
    """Load a recipe by name (`default`, `large`: files in fixtures/) or by path."""
    path = _resolve(name_or_path)
    return parse_recipe(_load_raw(path), path.stem, seed)


def demo_keys(recipe: Recipe) -> list[KeySpec]:
    """The recipe's keys with `role: demo`: the only keys a hosted docs page offers."""
    return [k for k in recipe.keys if k.role == DEMO]


def api_key(key: KeySpec, created_at: str) -> ApiKey:
    """A recipe key as the sandbox holds it at start (before any revocation through the API)."""
    return ApiKey(
        id=key.id,
        secret=key.key,
        name=key.name,
        user_id=key.user_id,
        access=key.access,
        scopes=frozenset(key.scopes),
        expires_at=key.expires_at,
        revoked=key.revoked,
        rate_limit=key.rate_limit,
        created_at=created_at,
    )


def owner_key(keys: Iterable[ApiKey], now: float) -> ApiKey | None:
    """The key that stands for the tenant where none is named: the first full-access key that
    works at `now`. Its owner is the default owner of keys made at run time."""
    return next(
        (k for k in keys if k.access == "full" and key_state(k, now) is KeyState.ACTIVE), None
    )


def key_status(
    key: KeySpec,
    users_by_id: dict[str, dict[str, Any]],
    now: datetime,
    auth: AuthModel | None = None,
) -> str:
    """Why a key would be refused, or "active". Revoked wins, then expired, then its owner.

    The decision is `key_state`'s, the one authentication makes; which owner statuses disable a
    key is the spec's (`auth`, by default the bundled spec's `x-sandbox-auth`).
    """
    if auth is None:
        auth = _bundled_auth()
    owner = users_by_id.get(key.user_id)
    owner_active = owner is not None and owner.get(auth.status_field) not in auth.inactive_statuses
    state = key_state(api_key(key, format_ts(now)), now.timestamp(), owner_active)
    return state.value.replace(" ", "_")


def _bundled_auth() -> AuthModel:
    from opsmerge_sandbox.pipeline.authorize import AuthModel
    from opsmerge_sandbox.spec import load_spec

    return AuthModel.from_spec(load_spec().resolved)

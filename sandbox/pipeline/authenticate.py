"""Stage 2: who is calling. Turns the Authorization header into a Caller, or a 401.

The messages name the copy-paste mistakes the OpsMerge article lists (stray whitespace, no space
after `Bearer`) and never repeat the key, not even in part.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from opsmerge_sandbox.clock import parse_iso
from opsmerge_sandbox.errors import ApiError

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.stores import ClockStore, KeyStore

KEY_PREFIX = "om_"
_SECRETS_MAX = 1024
_WHITESPACE = re.compile(r"\s")


@dataclass(slots=True)
class ApiKey:
    """A key the sandbox accepts: the recipe's fixed keys plus any minted through the admin API."""

    id: str
    secret: str
    name: str
    user_id: str
    access: str  # full | custom
    scopes: frozenset[str]
    expires_at: str | None
    revoked: bool
    rate_limit: int | None
    created_at: str = "1970-01-01T00:00:00Z"
    expires_ts: float | None = field(default=None)

    def __post_init__(self) -> None:
        self.expires_ts = parse_iso(self.expires_at) if self.expires_at else None

    @property
    def prefix(self) -> str:
        """What may be shown of the key: enough to recognise it, never enough to use it."""
        return self.secret[:10] + "…"


@dataclass(slots=True)
class Caller:
    key: ApiKey
    user: dict

    @property
    def user_id(self) -> str:
        return self.key.user_id


class KeyRing:
    def __init__(self, keys: list[ApiKey]) -> None:
        self._by_secret: dict[str, ApiKey] = {k.secret: k for k in keys}
        self._by_id: dict[str, ApiKey] = {k.id: k for k in keys}

    def __iter__(self) -> Iterator[ApiKey]:
        return iter(self._by_id.values())

    def by_id(self, key_id: str) -> ApiKey | None:
        return self._by_id.get(key_id)

    def lookup(self, secret: str) -> ApiKey | None:
        return self._by_secret.get(secret)

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key (it fails authentication from now on); None for an unknown id."""
        key = self._by_id.get(key_id)
        if key is not None:
            key.revoked = True
        return key

    def add(self, key: ApiKey) -> None:
        self._by_secret[key.secret] = key
        self._by_id[key.id] = key

    def mint(
        self,
        *,
        name: str,
        user_id: str,
        scopes: list[str] | None,
        expires_at: str | None,
        rate_limit: int | None,
        created_at: str,
        secret: str | None = None,
    ) -> ApiKey:
        """Make a key at run time and add it: the one place the sandbox mints keys.

        Scopes make a custom-access key (an empty list too); None makes a full-access one. A
        random secret unless `secret` fixes it (a scenario matching a client's configuration).
        """
        if secret is None:
            random_part = secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
            secret = KEY_PREFIX + "sbx_" + random_part
        key = ApiKey(
            id="key_" + secrets.token_hex(6),
            secret=secret,
            name=name,
            user_id=user_id,
            access="custom" if scopes is not None else "full",
            scopes=frozenset(scopes or ()),
            expires_at=expires_at,
            revoked=False,
            rate_limit=rate_limit,
            created_at=created_at,
        )
        self.add(key)
        return key


def _unauthorized(message: str, code: str = "AUTH_REQUIRED", invalid: bool = True) -> ApiError:
    challenge = 'Bearer realm="OpsMerge API"'
    if invalid:
        challenge += ', error="invalid_token"'
    return ApiError(code, message, headers={"www-authenticate": challenge})


def parse_bearer(header: str | None) -> str:
    """The key from an Authorization header, or a 401 that says what is wrong with the header."""
    if header is None or header.strip() == "":
        raise _unauthorized(
            "Missing API key: send the header 'Authorization: Bearer om_...'.", invalid=False
        )
    scheme, sep, rest = header.partition(" ")
    if not sep:
        if header[:6].lower() == "bearer" and header[6:].lstrip().startswith(KEY_PREFIX):
            raise _unauthorized("No space between 'Bearer' and the key: write 'Bearer om_...'.")
        if header[:6].lower() == "bearer":
            raise _unauthorized(
                "The Authorization header has the Bearer scheme but no key after it."
            )
        raise _unauthorized("The Authorization header must read 'Bearer om_...'.")
    if scheme.lower() != "bearer":
        if scheme.startswith(KEY_PREFIX):
            raise _unauthorized(
                "The Authorization header starts with a key, not a scheme: write 'Bearer om_...'."
            )
        # the scheme is client text that may be a secret of some kind: it is never repeated
        raise _unauthorized("Unsupported authorization scheme: API keys use 'Bearer om_...'.")
    if rest == "" or rest.strip() == "":
        raise _unauthorized("The Authorization header has the Bearer scheme but no key after it.")
    if _WHITESPACE.search(rest):
        raise _unauthorized(
            "The API key contains stray whitespace (a space, tab or line break, often from "
            "copy-paste): send 'Bearer om_...' with exactly one space and nothing after the key."
        )
    if not rest.startswith(KEY_PREFIX):
        raise _unauthorized("That is not an OpsMerge API key: keys start with 'om_'.")
    return rest


class KeyState(StrEnum):
    """Whether a key works, and if not, why: the one answer every part of the sandbox uses."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    OWNER_INACTIVE = "owner deactivated"


def key_state(key: ApiKey, now: float, owner_active: bool = True) -> KeyState:
    """The state of a key at `now`; the key listings, scenarios and authentication all ask this."""
    if key.revoked:
        return KeyState.REVOKED
    if key.expires_ts is not None and key.expires_ts <= now:
        return KeyState.EXPIRED
    if not owner_active:
        return KeyState.OWNER_INACTIVE
    return KeyState.ACTIVE


def find_key(header: str | None, keys: KeyStore, now: float) -> ApiKey:
    """The key of a well-formed bearer header if it is neither unknown, revoked nor expired.

    Its owner is checked by `check_owner` once the caller's workspace is known; nothing is
    allocated for a request until both pass.
    """
    return check_key(parse_bearer(header), keys, now)


def check_key(secret: str, keys: KeyStore, now: float) -> ApiKey:
    """The key with this secret if it is neither unknown, revoked nor expired (else a 401)."""
    key = keys.lookup(secret)
    if key is None:
        raise _unauthorized("Unknown API key: it may have been mistyped, or deleted.")
    state = key_state(key, now)
    if state is KeyState.REVOKED:
        raise _unauthorized("This API key was revoked: create a new key.")
    if state is KeyState.EXPIRED:
        raise _unauthorized(f"This API key expired at {key.expires_at}: create a new key.")
    return key


def check_owner(key: ApiKey, user: dict | None, is_inactive: Callable[[dict], bool]) -> Caller:
    """The caller, once the key's owner is known to exist and be active in the workspace."""
    if user is None or is_inactive(user):
        raise _unauthorized(
            "The owner of this API key is deactivated, so the key no longer works.",
            code="AUTH_DISABLED",
        )
    return Caller(key, user)


def authenticate(
    header: str | None,
    keys: KeyStore,
    find_user: Callable[[str], dict | None],
    is_inactive: Callable[[dict], bool],
    clock: ClockStore,
) -> Caller:
    """Resolve the caller; `find_user` reads the key's owner from the caller's workspace."""
    key = find_key(header, keys, clock.now())
    return check_owner(key, find_user(key.user_id), is_inactive)


class Authenticate:
    """Stage: the bearer key, refused (401) when missing, malformed, unknown, revoked or expired.

    The key's owner is checked by the next stage, in the workspace the request names; nothing
    is allocated for a request until both pass.
    """

    def __init__(self, keys: Callable[[], KeyStore], clock: ClockStore, enabled: bool) -> None:
        self._keys = keys
        self.clock = clock
        self.enabled = enabled
        # well-formed Authorization values -> their key's secret: a client sends the same
        # header on every request, and its parse depends on nothing else (bounded)
        self._secrets: dict[str, str] = {}

    def __call__(self, ctx: RequestContext) -> None:
        if self.enabled:
            assert ctx.headers is not None
            header = ctx.headers.get("authorization")
            secret = self._secrets.get(header) if header is not None else None
            if secret is None:
                secret = parse_bearer(header)  # a 401 naming what is wrong with the header
                if len(self._secrets) >= _SECRETS_MAX:
                    self._secrets.clear()
                self._secrets[header] = secret  # type: ignore[index]  # parse_bearer took it
            ctx.key = check_key(secret, self._keys(), self.clock.now())

"""Stage 3: may this caller do this? The role first, then the key's scopes.

Scopes narrow and never widen: a full-access key can do what its owner's roles allow; a
custom-scope key can do only what both its scopes and those roles allow. The scope an operation
needs is read from its `security` requirement in the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.authenticate import Caller
from opsmerge_sandbox.spec import Operation
from opsmerge_sandbox.store.workspace import Workspace

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext


AUTH_FIELDS = (
    "users",
    "roles",
    "role-ids-field",
    "permissions-field",
    "status-field",
    "inactive-statuses",
)


@dataclass(frozen=True, slots=True)
class AuthModel:
    """Where the spec keeps users and roles (the root `x-sandbox-auth` extension)."""

    users: str
    roles: str
    role_ids_field: str
    permissions_field: str
    status_field: str
    inactive_statuses: frozenset[str]
    # statuses of users who have never signed in, so hold no keys (optional: none by default)
    keyless_statuses: frozenset[str] = frozenset()

    @classmethod
    def from_spec(cls, resolved: dict) -> AuthModel:
        """Read `x-sandbox-auth`; the spec names every part (a missing one is a ValueError)."""
        ext = resolved.get("x-sandbox-auth") or {}
        missing = [k for k in AUTH_FIELDS if not ext.get(k)]
        if missing:
            raise ValueError(f"the spec's x-sandbox-auth lacks {', '.join(missing)}")
        return cls(
            users=ext["users"],
            roles=ext["roles"],
            role_ids_field=ext["role-ids-field"],
            permissions_field=ext["permissions-field"],
            status_field=ext["status-field"],
            inactive_statuses=frozenset(ext["inactive-statuses"]),
            keyless_statuses=frozenset(ext.get("keyless-statuses") or ()),
        )


def grants(permissions: frozenset[str] | set[str], scope: str) -> bool:
    """Whether a permission set covers `family:level`; `*:level` covers every family."""
    if scope in permissions:
        return True
    _, _, level = scope.partition(":")
    return f"*:{level}" in permissions


def authorize(
    op: Operation,
    caller: Caller,
    role_permissions: set[str],
    roles: list[tuple[str, str]] | list[str],
) -> None:
    """Refuse the call (403) unless the roles, then the key's scopes, allow it.

    `roles` are (id, name) pairs or names; the names are read only for a refusal's message.
    """
    if op.session_only:
        raise ApiError(
            "API_KEY_FORBIDDEN",
            f"{op.method} {op.path} is session-only: API keys cannot call it. Use the web app.",
        )
    if not op.scopes:
        return
    scope = op.scopes[0]
    if not grants(role_permissions, scope):
        names = [r if isinstance(r, str) else r[1] for r in roles]
        raise ApiError(
            "FORBIDDEN",
            f"The role of this key's owner ({', '.join(names) or 'no role'}) does not allow "
            f"{scope}.",
        )
    if caller.key.access == "custom" and not grants(caller.key.scopes, scope):
        raise ApiError("SCOPE_DENIED", f"API key lacks required scope {scope}.")


def effective_scopes(
    families: list[str], role_permissions: set[str], caller: Caller | None
) -> list[str]:
    """Every `family:level` the caller may use: the role's permissions narrowed by the key
    (with no caller, what the role allows)."""
    out = []
    for family in families:
        for level in ("read", "write", "execute"):
            scope = f"{family}:{level}"
            if grants(role_permissions, scope) and (
                caller is None or caller.key.access == "full" or grants(caller.key.scopes, scope)
            ):
                out.append(scope)
    return out


class RolePermissions:
    """What a user's roles allow, remembered until the workspace's users or roles change."""

    def __init__(self, auth: AuthModel) -> None:
        self.auth = auth
        self._cache: dict[tuple[str, str, int, int], tuple[set[str], list[tuple[str, str]]]] = {}

    def of(self, ws: Workspace, user: dict) -> tuple[set[str], list[tuple[str, str]]]:
        """The union of the user's roles' permissions, and those roles as (id, name)."""
        auth = self.auth
        key = (ws.name, user["id"], ws.view(auth.users).version, ws.view(auth.roles).version)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = self._cache[key] = self._compute(ws, user)
        return hit

    def _compute(self, ws: Workspace, user: dict) -> tuple[set[str], list[tuple[str, str]]]:
        auth = self.auth
        perms: set[str] = set()
        roles: list[tuple[str, str]] = []
        for rid in user.get(auth.role_ids_field) or ():
            role = ws.get(auth.roles, rid)
            if role is not None:
                perms.update(role.get(auth.permissions_field) or ())
                roles.append((rid, str(role.get("name", rid))))
        return perms, roles


class Authorize:
    """Stage: the owner's roles (403 FORBIDDEN), then the key's scopes (403 SCOPE_DENIED)."""

    def __init__(self, permissions: RolePermissions) -> None:
        self.permissions = permissions

    def __call__(self, ctx: RequestContext) -> None:
        assert ctx.workspace is not None and ctx.caller is not None
        perms, roles = self.permissions.of(ctx.workspace, ctx.caller.user)
        authorize(ctx.op, ctx.caller, perms, roles)

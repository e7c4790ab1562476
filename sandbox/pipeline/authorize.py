"""Stage 3: may this caller do this? The role first, then the key's scopes.

Scopes narrow and never widen: a full-access key can do what its owner's roles allow; a
custom-scope key can do only what both its scopes and those roles allow. The scope an operation
needs is read from its `security` requirement in the spec.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.errors import ApiError
from sandbox.pipeline.authenticate import Caller
from sandbox.spec import Operation


@dataclass(frozen=True, slots=True)
class AuthModel:
    """Where the spec keeps users and roles (the root `x-sandbox-auth` extension)."""

    users: str
    roles: str
    role_ids_field: str
    permissions_field: str
    status_field: str
    inactive_statuses: frozenset[str]

    @classmethod
    def from_spec(cls, resolved: dict) -> AuthModel:
        ext = resolved.get("x-sandbox-auth") or {}
        return cls(
            users=ext.get("users", "users"),
            roles=ext.get("roles", "roles"),
            role_ids_field=ext.get("role-ids-field", "role_ids"),
            permissions_field=ext.get("permissions-field", "permissions"),
            status_field=ext.get("status-field", "status"),
            inactive_statuses=frozenset(ext.get("inactive-statuses", ["deactivated"])),
        )


def grants(permissions: frozenset[str] | set[str], scope: str) -> bool:
    """Whether a permission set covers `family:level`; `*:level` covers every family."""
    if scope in permissions:
        return True
    _, _, level = scope.partition(":")
    return f"*:{level}" in permissions


def authorize(
    op: Operation, caller: Caller, role_permissions: set[str], role_names: list[str]
) -> None:
    if op.session_only:
        raise ApiError(
            "API_KEY_FORBIDDEN",
            f"{op.method} {op.path} is session-only: API keys cannot call it. Use the web app.",
        )
    if not op.scopes:
        return
    scope = op.scopes[0]
    if not grants(role_permissions, scope):
        roles = ", ".join(role_names) or "no role"
        raise ApiError(
            "FORBIDDEN",
            f"The role of this key's owner ({roles}) does not allow {scope}.",
        )
    if caller.key.access == "custom" and not grants(caller.key.scopes, scope):
        raise ApiError("SCOPE_DENIED", f"API key lacks required scope {scope}.")


def effective_scopes(families: list[str], role_permissions: set[str], caller: Caller) -> list[str]:
    """Every `family:level` the caller may use: the role's permissions narrowed by the key."""
    out = []
    for family in families:
        for level in ("read", "write", "execute"):
            scope = f"{family}:{level}"
            if grants(role_permissions, scope) and (
                caller.key.access == "full" or grants(caller.key.scopes, scope)
            ):
                out.append(scope)
    return out

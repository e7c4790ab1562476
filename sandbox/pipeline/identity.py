"""The `identity` kind (`auth/me`): who the caller is, their roles, scopes and rate budget.

The effective scopes listed are only those that exist: a scope some operation's `security`
requires. A role that grants `*:write` covers every family, but a level no operation of a family
uses (writing the read-only audit log, say) is no permission a client could ever exercise, and
listing it would tell an integrator a key can do something the API has no way to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opsmerge_sandbox.pipeline.authorize import RolePermissions, effective_scopes
from opsmerge_sandbox.pipeline.ratelimit import WINDOW_SECONDS, bucket_of

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.resources import HandlerCall
    from opsmerge_sandbox.state import SandboxState


class Identity:
    def __init__(self, state: SandboxState, permissions: RolePermissions) -> None:
        self.state = state
        self.permissions = permissions
        self.families = state.spec.families
        self.existing = state.spec.scopes

    def __call__(self, ex: HandlerCall) -> dict[str, Any]:
        assert ex.caller is not None
        key, user = ex.caller.key, ex.caller.user
        perms, roles = self.permissions.of(ex.workspace, user)
        rate = ex.rate or self.state.limiter.peek(
            bucket_of(ex.workspace.name, key.id), self.state.rate_limit_of(key)
        )
        return {
            "key": {
                "id": key.id,
                "name": key.name,
                "prefix": key.prefix,
                "access": key.access,
                "expires_at": key.expires_at,
                "created_at": key.created_at,
            },
            "user": {
                "id": user["id"],
                "name": user.get("name", ""),
                "email": user.get("email", ""),
                "status": user.get("status", ""),
            },
            "roles": [{"id": rid, "name": name} for rid, name in roles],
            "scopes": [
                scope
                for scope in effective_scopes(self.families, perms, ex.caller)
                if scope in self.existing
            ],
            # what the roles allow before the key narrows it, so a client can tell a 403
            # SCOPE_DENIED (the key) from a 403 FORBIDDEN (the role) before it calls
            "role_scopes": [
                scope
                for scope in effective_scopes(self.families, perms, None)
                if scope in self.existing
            ],
            "organisation": dict(self.state.recipe.organisation),
            "rate_limit": {
                "limit": rate.limit,
                "remaining": rate.remaining,
                "reset": rate.reset,
                "window_seconds": WINDOW_SECONDS,
            },
        }

"""Stage: the caller's workspace, resolved only once the caller is fully known.

It finishes authentication (the key's owner must exist and be active in the workspace the request
names, read without creating it) and only then opens the workspace, so a request that ends in
401, or names a bad workspace, allocates nothing. Plain mode takes the name from
`X-Sandbox-Workspace` (else `default`); hosted mode asks its policy, which names a workspace per
visitor and holds each client address to a budget of its own before opening anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.address import client_address, parse_networks
from opsmerge_sandbox.pipeline.authenticate import Caller, check_owner
from opsmerge_sandbox.pipeline.ratelimit import bucket_of
from opsmerge_sandbox.pipeline.workspace_name import WORKSPACE_HEADER, workspace_name
from opsmerge_sandbox.store.workspace import Workspaces
from opsmerge_sandbox.world.recipe import owner_key

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.state import SandboxState


class ResolveWorkspace:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.trusted = parse_networks(state.settings.trusted_proxies)

    def _inactive(self, user: dict) -> bool:
        auth = self.state.auth
        return user.get(auth.status_field) in auth.inactive_statuses

    def __call__(self, ctx: RequestContext) -> None:
        self._resolve(ctx)
        assert ctx.workspace is not None and ctx.caller is not None
        ctx.bucket = bucket_of(ctx.workspace.name, ctx.caller.key.id)
        ctx.limit = self.state.rate_limit_of(ctx.caller.key)

    def _resolve(self, ctx: RequestContext) -> None:
        state = self.state
        assert ctx.headers is not None
        if ctx.key is None:  # auth off: everyone is the first full-access key's owner
            name = workspace_name(ctx.headers.get(WORKSPACE_HEADER)) or Workspaces.DEFAULT
            ctx.workspace = state.workspaces.get(name)
            ctx.caller = self._open_caller(ctx)
            return
        key, hosted = ctx.key, state.hosted
        address = ""
        if hosted is not None:
            address = client_address(ctx.request.scope, ctx.headers, self.trusted)
            name = hosted.name_for(ctx.headers, key, address)
        else:
            given = ctx.headers.get(WORKSPACE_HEADER)  # checked only when sent
            name = (workspace_name(given) if given is not None else None) or Workspaces.DEFAULT
        owner = state.workspaces.read(name, state.auth.users, key.user_id)
        ctx.caller = check_owner(key, owner, self._inactive)
        if hosted is None:
            ctx.workspace = state.workspaces.get(name)
            return
        # the address's budget before the workspace: a caller past it must not evict visitors
        hosted.hit_address(address)
        ctx.workspace = hosted.open(name)

    def _open_caller(self, ctx: RequestContext) -> Caller:
        assert ctx.workspace is not None
        key = owner_key(self.state.keys, self.state.clock.now())
        if key is None:
            raise ApiError("AUTH_REQUIRED", "With auth off, the recipe needs a working full key.")
        user = ctx.workspace.get(self.state.auth.users, key.user_id) or {"id": key.user_id}
        return Caller(key, user)

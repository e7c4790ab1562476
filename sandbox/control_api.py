"""The control API under /_sandbox, for QA and tests (described in openapi/admin.yaml).

Every endpoint needs the admin token in X-Sandbox-Admin-Token, compared in constant time. Bodies
are validated against admin.yaml with the same validators as the API, and errors use the same
envelope. In hosted mode none of this is mounted.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

from litestar import Request, Response, route
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler

from opsmerge_sandbox.clock import ClockRangeError, begin_instant, end_instant, format_iso
from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.pipeline.authenticate import ApiKey, key_state
from opsmerge_sandbox.pipeline.envelope import error_response, json_response
from opsmerge_sandbox.pipeline.headers import repeated_single_valued
from opsmerge_sandbox.pipeline.read_request import read_body
from opsmerge_sandbox.pipeline.validate import compile_schema, decode_json, schema_details
from opsmerge_sandbox.pipeline.workspace_name import (
    WORKSPACE_HEADER,
    is_workspace_name,
    workspace_name,
)
from opsmerge_sandbox.spec import flatten, resolve_refs
from opsmerge_sandbox.state import SandboxState
from opsmerge_sandbox.store.workspace import Workspace
from opsmerge_sandbox.world.recipe import owner_key
from opsmerge_sandbox.yamlio import load_yaml

ADMIN_SPEC_PATH = Path(__file__).parent / "openapi" / "admin.yaml"
TOKEN_HEADER = "x-sandbox-admin-token"
_TOKEN_BYTES = TOKEN_HEADER.encode()
PREFIX = "/_sandbox"

Handler = Callable[[Request, Any], Awaitable[tuple[int, Any]] | tuple[int, Any]]


@cache
def admin_schemas() -> dict[str, Any]:
    """The component schemas of admin.yaml, resolved and flattened: read once per process."""
    resolved = resolve_refs(load_yaml(ADMIN_SPEC_PATH))
    return {name: flatten(s) for name, s in resolved["components"]["schemas"].items()}


@cache
def admin_validator(schema_name: str) -> Any:
    """The compiled validator of one admin.yaml schema, shared by every control endpoint."""
    return compile_schema(admin_schemas()[schema_name])


class AdminApi:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.schemas = admin_schemas()
        self.routes: list[tuple[str, str, str | None, Handler]] = []

    # ---------------------------------------------------------- plumbing
    def validator(self, schema_name: str) -> Any:
        return admin_validator(schema_name)

    async def _read(self, request: Request) -> bytes:
        """The body, refused past the sandbox's body limit, read as the API reads its bodies."""
        return await read_body(request.receive, self.state.settings.max_body_bytes)

    async def body(
        self, request: Request, schema_name: str | None, required: bool, checked: bool = True
    ) -> Any:
        """The JSON body, checked against `schema_name` unless the caller checks it itself
        (`checked=False`: parsed, and handed on to the one place that validates it)."""
        raw = await self._read(request)
        if not raw:
            if required:
                raise ApiError(
                    "VALIDATION_ERROR",
                    "A JSON request body is required.",
                    [Detail("body", "", "a JSON body is required")],
                )
            return {}
        if schema_name is None:
            return {}
        media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if media != "application/json":  # as the API answers: the body is JSON, and says so
            raise ApiError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"Send the body as application/json (got {media[:60] or 'no Content-Type'}).",
            )
        data = decode_json(raw)
        if not checked:
            return data
        details = schema_details(self.validator(schema_name), data, "body")
        if details:
            raise ApiError(
                "VALIDATION_ERROR",
                f"Invalid request: {details[0].field}: {details[0].message}.",
                details,
            )
        return data

    @staticmethod
    def _single_headers(request: Request) -> None:
        """A header that must be sent once and came twice is refused, as the API refuses it:
        with two admin tokens or two workspaces, which one counts would be a guess."""
        raw = request.scope["headers"]
        repeated = repeated_single_valued(raw)
        if repeated is None and sum(k.lower() == _TOKEN_BYTES for k, _ in raw) > 1:
            repeated = "X-Sandbox-Admin-Token"
        if repeated is not None:
            raise ApiError(
                "HEADER_INVALID",
                f"The {repeated} header appears more than once: send it exactly once.",
                [Detail("header", repeated, "repeated")],
            )

    def _authorised(self, request: Request) -> None:
        given = request.headers.get(TOKEN_HEADER, "")
        if not secrets.compare_digest(
            given.encode("utf-8", "replace"), self.state.settings.admin_token.encode()
        ):
            raise ApiError(
                "AUTH_REQUIRED",
                "The sandbox control API needs the admin token in X-Sandbox-Admin-Token "
                "(printed in the serve banner).",
                headers={"www-authenticate": 'Bearer realm="OpsMerge Sandbox control API"'},
            )

    def add(self, method: str, path: str, fn: Handler, schema: str | None = None) -> None:
        self.routes.append((method, path, schema, fn))

    def handlers(self) -> list[HTTPRouteHandler]:
        out = []
        for method, path, _schema, fn in self.routes:
            out.append(
                route(
                    PREFIX + path,
                    http_method=[HttpMethod(method)],
                    include_in_schema=False,
                    status_code=200,
                    name=f"admin:{method}:{path}",
                )(self._wrap(fn))
            )
        return out

    def _wrap(self, fn: Handler) -> Callable[[Request], Awaitable[Response[bytes]]]:
        async def handler(request: Request) -> Response[bytes]:
            held = begin_instant()  # a key's `created_at` and its expiry: one instant
            try:
                self._single_headers(request)
                self._authorised(request)
                shared = self.state.shared
                if shared is None:
                    status, data = await _run(fn, request)
                else:  # on the latest shared state; a change is published to every worker
                    status, data = await shared.around(
                        request.method not in ("GET", "HEAD"),
                        _workspaces_of(request),
                        lambda: _run(fn, request),
                    )
                return json_response(status, {"data": data})
            except ApiError as err:
                return error_response(err)
            finally:
                end_instant(held)

        return handler


async def _run(fn: Handler, request: Request) -> tuple[int, Any]:
    result = fn(request, None)
    if isinstance(result, Awaitable):
        result = await result
    return result


def _workspaces_of(request: Request) -> list[str]:
    """The workspaces a control request may read or reset: the default one, and the one its
    header, query or path names (shared state catches these up before the request runs)."""
    names = {"default"}
    for given in (
        request.headers.get(WORKSPACE_HEADER),
        request.query_params.get("workspace"),
        request.path_params.get("name"),
    ):
        if given is not None and is_workspace_name(given):
            names.add(given)
    return sorted(names)


def build_admin(state: SandboxState) -> AdminApi:
    """The core control endpoints; later stages (faults) add theirs to the same AdminApi."""
    api = AdminApi(state)

    async def reset(request: Request, _: Any) -> tuple[int, Any]:
        body = await api.body(request, "ResetRequest", required=False)
        ws = body.get("workspace")
        await state.workspaces.reset(ws)  # answered once the reset is durable
        if body.get("keys"):
            state.keys = state.fresh_keys()
        state.limiter.reset(ws)
        # every record is reseeded, so nothing is left dated on the moved clock (a workspace's
        # own clock goes back to the sandbox's with its records)
        state.clock.reset(ws)
        if state.events is not None:  # queued webhooks and outboxes go with the records
            state.events.forget(ws)
        return 200, {"reset": True, "workspace": ws or "*", "keys": bool(body.get("keys"))}

    def list_keys(request: Request, _: Any) -> tuple[int, Any]:
        return 200, {"items": [_key_view(state, k) for k in state.keys]}

    async def mint_key(request: Request, _: Any) -> tuple[int, Any]:
        body = await api.body(request, "MintKeyRequest", required=True)
        # the owner is looked up in the workspace the header names (a user a CI run invited
        # there); the key then works wherever its owner exists
        named = workspace_name(request.headers.get(WORKSPACE_HEADER))
        ws = state.workspaces.get(named) if named is not None else state.workspaces.get()
        users = ws.view(state.auth.users)
        user_id = body.get("user_id")
        if user_id is None and body.get("role"):
            user_id = _user_with_role(state, body["role"], ws)
        user_id = user_id or _default_owner(state)
        user = users.get(user_id)
        if user is None:
            raise ApiError(
                "REFERENCE_NOT_FOUND",
                f"No user with id {user_id!r}.",
                [Detail("body", "user_id", "no such user")],
            )
        status = user.get(state.auth.status_field)
        if status in state.auth.keyless_statuses:
            raise ApiError(
                "CONFLICT",
                f"User {user_id!r} is {status}: a user who has never signed in holds no API "
                "keys (a key is made by its owner in the web app).",
                [Detail("body", "user_id", f"user is {status}")],
            )
        scopes = body.get("scopes")
        if scopes is not None:
            known = state.spec.scopes
            unknown = [s for s in scopes if s not in known]
            if unknown:
                raise ApiError(
                    "VALIDATION_ERROR",
                    f"Unknown scope {unknown[0]!r}: a key's scopes are those the spec's "
                    "operations require (family:level, e.g. agents:read).",
                    [Detail("body", "scopes", f"unknown scope {s!r}") for s in unknown],
                )
        expires_at = body.get("expires_at")
        if body.get("expires_in") is not None:
            expires_at = format_iso(state.clock.now() + float(body["expires_in"]))
        key = state.keys.mint(
            name=body.get("name", "minted key"),
            user_id=user_id,
            scopes=body.get("scopes"),
            expires_at=expires_at,
            rate_limit=body.get("rate_limit"),
            created_at=state.clock.iso(),
        )
        return 201, {**_key_view(state, key), "key": key.secret}

    def revoke_key(request: Request, _: Any) -> tuple[int, Any]:
        key = state.keys.revoke(request.path_params["key_id"])
        if key is None:
            raise ApiError("NOT_FOUND", "No sandbox key with that id.")
        return 200, _key_view(state, key)

    def reset_rate_limits(request: Request, _: Any) -> tuple[int, Any]:
        return 200, {"reset": True, "buckets": state.limiter.reset()}

    def _clock_view(workspace: str | None) -> dict[str, Any]:
        offset = state.clock.offset_of(workspace)
        view: dict[str, Any] = {"now": format_iso(time.time() + offset), "offset_seconds": offset}
        if workspace is not None:
            view["workspace"] = workspace
        return view

    def _clock_workspace(request: Request) -> str | None:
        """The workspace whose own clock a control request reads or moves (its header)."""
        return workspace_name(request.headers.get(WORKSPACE_HEADER))

    def get_clock(request: Request, _: Any) -> tuple[int, Any]:
        return 200, _clock_view(_clock_workspace(request))

    async def advance_clock(request: Request, _: Any) -> tuple[int, Any]:
        workspace = _clock_workspace(request)
        body = await api.body(request, "AdvanceClockRequest", required=True)
        try:
            state.clock.advance(float(body["advance_seconds"]), workspace)
        except ClockRangeError as exc:
            raise ApiError(
                "VALIDATION_ERROR",
                f"Invalid request: advance_seconds: {exc}.",
                [Detail("body", "advance_seconds", str(exc))],
            ) from None
        if state.events is not None:  # retries and clock triggers the move made due run now
            await state.events.run_due_now()
        return 200, _clock_view(workspace)

    def list_requests(request: Request, _: Any) -> tuple[int, Any]:
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            raise ApiError(
                "VALIDATION_ERROR",
                "limit must be an integer.",
                [Detail("query", "limit", "must be an integer")],
            ) from None
        if not 1 <= limit <= 1000:
            raise ApiError(
                "VALIDATION_ERROR",
                "limit must be between 1 and 1000.",
                [Detail("query", "limit", "must be between 1 and 1000")],
            )
        workspace = workspace_name(request.query_params.get("workspace"), "query", "workspace")
        items = state.journal.recent(limit, workspace)
        return 200, {"items": items, "total": len(items)}

    def clear_requests(request: Request, _: Any) -> tuple[int, Any]:
        state.journal.clear()
        return 200, {"cleared": True}

    def list_workspaces(request: Request, _: Any) -> tuple[int, Any]:
        return 200, {"items": state.workspaces.names()}

    api.add("POST", "/reset", reset)
    api.add("GET", "/keys", list_keys)
    api.add("POST", "/keys", mint_key)
    api.add("DELETE", "/keys/{key_id:str}", revoke_key)
    api.add("POST", "/rate-limits/reset", reset_rate_limits)
    api.add("GET", "/clock", get_clock)
    api.add("POST", "/clock", advance_clock)
    api.add("GET", "/requests", list_requests)
    api.add("DELETE", "/requests", clear_requests)
    api.add("GET", "/workspaces", list_workspaces)
    return api


def _default_owner(state: SandboxState) -> str:
    """Who owns a key minted without user_id or role: the owner of the recipe's first working
    full-access key, so the recipe, not the code, names the default user."""
    key = owner_key(state.keys, state.clock.now())
    if key is None:
        raise ApiError(
            "VALIDATION_ERROR",
            "Invalid request: user_id: the sandbox has no working full-access key whose owner "
            "could own this key; give user_id or role.",
            [Detail("body", "user_id", "required: no default owner")],
        )
    return key.user_id


def _user_with_role(state: SandboxState, role: str, ws: Workspace) -> str:
    roles = ws.view(state.auth.roles)
    role_ids = [
        rid
        for rid in (r["id"] for r in roles.query([], None, "id", False))
        if rid == role or (roles.get(rid) or {}).get("name", "").lower() == role.lower()
    ]
    if not role_ids:
        raise ApiError(
            "REFERENCE_NOT_FOUND", f"No role {role!r}.", [Detail("body", "role", "no such role")]
        )
    users = ws.view(state.auth.users)
    for user in users.query([(state.auth.role_ids_field, role_ids[0])], None, "id", False):
        uid = user["id"]
        status = user.get(state.auth.status_field)
        if status not in state.auth.inactive_statuses | state.auth.keyless_statuses:
            return uid
    raise ApiError(
        "REFERENCE_NOT_FOUND",
        f"No active user holds role {role!r}.",
        [Detail("body", "role", "no active user holds it")],
    )


def _key_view(state: SandboxState, key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "user_id": key.user_id,
        "access": key.access,
        "scopes": sorted(key.scopes) if key.access == "custom" else "full",
        "expires_at": key.expires_at,
        "status": key_state(key, state.clock.now()).value,
        "rate_limit": state.rate_limit_of(key),
    }

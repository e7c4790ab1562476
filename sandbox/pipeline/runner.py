"""One request through every stage, in the order DESIGN.md gives, with one error path.

    authenticate -> authorize -> rate limit -> faults -> validate -> resource -> envelope -> strict

Every stage raises ApiError to answer early; the runner turns it into the same envelope, adds the
rate-limit headers the caller's bucket has at that moment, and records the exchange.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from litestar import Request, Response

from sandbox.clock import parse_iso
from sandbox.errors import ApiError
from sandbox.hosted import HostedPolicy, policy_for
from sandbox.journal import Entry
from sandbox.pipeline.address import client_address, parse_networks
from sandbox.pipeline.authenticate import Caller, check_owner, find_key
from sandbox.pipeline.authorize import authorize, effective_scopes
from sandbox.pipeline.envelope import JSON, EncodedResponse, encode
from sandbox.pipeline.headers import RequestHeaders
from sandbox.pipeline.ratelimit import WINDOW_SECONDS, RateState
from sandbox.pipeline.resources import Exchange, Resources
from sandbox.pipeline.strict import StrictChecker
from sandbox.pipeline.validate import OperationValidator
from sandbox.pipeline.workspace_name import WORKSPACE_HEADER, workspace_name
from sandbox.spec import Operation
from sandbox.state import SandboxState
from sandbox.store.workspace import Workspace, Workspaces

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(slots=True)
class Outcome:
    """What the faults stage decided for one request (None of it when no rule matched)."""

    name: str | None = None  # shown in the journal
    delay: float = 0.0  # seconds to wait before answering
    error: ApiError | None = None  # answer with this instead of running the handler
    warning: str | None = None  # a Warning header, e.g. for a status the spec does not document
    transform: Callable[[Response[bytes]], Awaitable[Response[bytes]] | Response[bytes]] | None = (
        None
    )
    extra: dict[str, Any] = field(default_factory=dict)


FaultStage = Callable[
    [Operation, Request, RequestHeaders, Caller, Workspace, RateState, SandboxState],
    Outcome | None,
]


def _deprecation_headers(op: Operation) -> dict[str, str]:
    if not op.deprecated:
        return {}
    headers = {}
    if op.deprecated_at:
        headers["deprecation"] = f"@{int(parse_iso(op.deprecated_at))}"
    if op.sunset:
        headers["sunset"] = formatdate(parse_iso(op.sunset), usegmt=True)
    return headers


class Pipeline:
    def __init__(self, state: SandboxState, faults: FaultStage | None = None) -> None:
        self.state = state
        self.faults = faults
        self.resources = Resources(
            state.spec, state.clock, self.identity, raw=not state.settings.strict
        )
        self.strict = StrictChecker() if state.settings.strict else None
        self.validators = {op.operation_id: OperationValidator(op) for op in state.spec.operations}
        self.deprecation = {
            op.operation_id: _deprecation_headers(op) for op in state.spec.operations
        }
        self.families = state.spec.families
        self._perms: dict[tuple[str, str, int, int], tuple[set[str], list[tuple[str, str]]]] = {}
        self.hosted: HostedPolicy | None = policy_for(state) if state.settings.hosted else None
        self.trusted = parse_networks(state.settings.trusted_proxies)

    # -------------------------------------------------------------- stage helpers
    def enter(self, scope: Any, headers: RequestHeaders) -> tuple[Workspace, Caller]:
        """Authenticate, then open the caller's workspace: in that order, so a request that
        ends in 401 (or a bad workspace name) allocates nothing.
        """
        state = self.state
        address = client_address(scope, headers, self.trusted) if self.hosted else ""
        if not state.settings.auth:
            ws = state.workspaces.get(
                workspace_name(headers.get(WORKSPACE_HEADER)) or Workspaces.DEFAULT
            )
            return ws, self._open_caller(ws)
        key = find_key(headers.get("authorization"), state.keys, state.clock.now())
        if self.hosted is not None:
            name = self.hosted.name_for(headers, key, address)
        else:
            name = workspace_name(headers.get(WORKSPACE_HEADER)) or Workspaces.DEFAULT
        auth = state.auth
        owner = state.workspaces.read(name, auth.users, key.user_id)
        caller = check_owner(key, owner, self._inactive)
        if self.hosted is None:
            return state.workspaces.get(name), caller
        # the address's budget before the workspace: a caller past it must not evict visitors
        self.hosted.hit_address(address)
        return self.hosted.open(name), caller

    def _inactive(self, user: dict) -> bool:
        auth = self.state.auth
        return user.get(auth.status_field) in auth.inactive_statuses

    def _role_permissions(
        self, ws: Workspace, user: dict
    ) -> tuple[set[str], list[tuple[str, str]]]:
        """What the user's roles allow; remembered until the workspace's users or roles change."""
        auth = self.state.auth
        key = (ws.name, user["id"], ws.view(auth.users).version, ws.view(auth.roles).version)
        hit = self._perms.get(key)
        if hit is None:
            if len(self._perms) > 10_000:
                self._perms.clear()
            hit = self._perms[key] = self._compute_permissions(ws, user)
        return hit

    def _compute_permissions(
        self, ws: Workspace, user: dict
    ) -> tuple[set[str], list[tuple[str, str]]]:
        """The union of the user's roles' permissions, and those roles as (id, name)."""
        auth = self.state.auth
        perms: set[str] = set()
        roles: list[tuple[str, str]] = []
        for rid in user.get(auth.role_ids_field) or ():
            role = ws.get(auth.roles, rid)
            if role is not None:
                perms.update(role.get(auth.permissions_field) or ())
                roles.append((rid, str(role.get("name", rid))))
        return perms, roles

    def _open_caller(self, ws: Workspace) -> Caller:
        """With auth off (benchmarks, demos), everyone is the first full-access key's owner."""
        key = next(k for k in self.state.keys if k.access == "full" and not k.revoked)
        user = ws.get(self.state.auth.users, key.user_id) or {"id": key.user_id}
        return Caller(key=key, user=user)

    def identity(self, ex: Exchange) -> dict[str, Any]:
        assert ex.caller is not None
        key, user = ex.caller.key, ex.caller.user
        perms, roles = self._role_permissions(ex.workspace, user)
        rate = ex.rate or self.state.limiter.peek(
            self._bucket(ex.workspace, key.id), self.state.rate_limit_of(key)
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
            "scopes": effective_scopes(self.families, perms, ex.caller),
            "organisation": dict(self.state.recipe.organisation),
            "rate_limit": {
                "limit": rate.limit,
                "remaining": rate.remaining,
                "reset": rate.reset,
                "window_seconds": WINDOW_SECONDS,
            },
        }

    @staticmethod
    def _bucket(ws: Workspace, key_id: str) -> str:
        return f"{ws.name}/{key_id}"

    async def _read_body(self, request: Request, declared: str | None) -> bytes:
        limit = self.state.settings.max_body_bytes
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                raise ApiError("HEADER_INVALID", "Content-Length must be a whole number.") from None
            if too_big:
                raise ApiError("PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")
            body = await request.body()  # the declared size is within the limit: read it whole
            if len(body) > limit:
                raise ApiError("PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")
            return body
        chunks: list[bytes] = []  # no declared size: read in chunks and stop at the limit
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError("PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    def _commit(
        self, ws: Workspace, status: int, encoded: bytes, headers: dict[str, str], size: int
    ) -> tuple[int, bytes]:
        """Make the request's writes durable, then visible; a 503 that changed nothing if not.

        Runs after the answer is encoded and checked, so no later error can leave a write
        applied without its success answer.
        """
        try:
            ws.commit()
        except ApiError as err:
            headers.update(err.headers)
            return err.status, encode(err.body())
        if self.hosted is not None:
            self.hosted.charge(ws, size)  # only accepted changes spend a visitor's budget
        return status, encoded

    # -------------------------------------------------------------- the run
    async def run(
        self, op: Operation, request: Request, path_names: dict[str, str]
    ) -> EncodedResponse | Response[bytes]:
        started = time.perf_counter()
        state = self.state
        caller: Caller | None = None
        rate: RateState | None = None
        ws: Workspace | None = None
        outcome: Outcome | None = None
        headers: dict[str, str] = dict(self.deprecation[op.operation_id])
        raw_body = b""
        payload: Any
        try:
            headers_in = RequestHeaders.parse(request.scope["headers"])
            ws, caller = self.enter(request.scope, headers_in)
            bucket = self._bucket(ws, caller.key.id)
            limit = state.rate_limit_of(caller.key)
            try:
                perms, roles = self._role_permissions(ws, caller.user)
                authorize(op, caller, perms, [name for _, name in roles])
            except ApiError:
                if state.settings.auth:
                    rate = state.limiter.peek(bucket, limit)
                raise
            if state.settings.auth:
                rate = state.limiter.hit(bucket, limit)
            if self.faults is not None:
                outcome = self.faults(
                    op,
                    request,
                    headers_in,
                    caller,
                    ws,
                    rate or state.limiter.peek(bucket, limit),
                    state,
                )
                if outcome is not None:
                    if outcome.delay:
                        await asyncio.sleep(outcome.delay)
                    if outcome.warning:
                        headers["warning"] = outcome.warning
                    if outcome.error is not None:
                        raise outcome.error
            validator = self.validators[op.operation_id]
            raw_path = request.path_params
            params, supplied = validator.request_params(
                {name: str(raw_path.get(alias, "")) for alias, name in path_names.items()},
                request.scope.get("query_string", b"").decode("latin-1"),
            )
            body = None
            declared = headers_in.get("content-length")
            if self.hosted is not None and op.method not in _READS:
                size = int(declared) if declared and declared.isdigit() else None
                self.hosted.admit_write(ws, size)
            if op.body_schema is not None:
                raw_body = await self._read_body(request, declared)
                body = validator.body(raw_body, headers_in.get("content-type"))
            ex = Exchange(op, ws, caller, params, supplied, body, rate)
            if op.method not in _READS:
                ws.begin()  # the handler's writes are staged, and applied once the answer is sure
            status, data = self.resources.handle(ex)
            payload = {"data": data}
        except ApiError as err:
            if rate is None and caller is not None and ws is not None and state.settings.auth:
                rate = state.limiter.peek(
                    self._bucket(ws, caller.key.id), state.rate_limit_of(caller.key)
                )
            if rate is not None:
                headers.update(rate.headers())
            headers.update(err.headers)
            status, payload = err.status, err.body()
        else:
            if rate is not None:
                headers.update(rate.headers())
        try:
            forced = outcome is not None and outcome.error is not None
            if self.strict is not None:
                try:
                    self.strict.check(op, status, payload, headers, forced, rate is not None)
                except ApiError as err:
                    status, payload = err.status, err.body()
            encoded = encode(payload)
            if ws is not None and ws.in_transaction and status < 400:
                status, encoded = self._commit(ws, status, encoded, headers, len(raw_body))
        finally:
            if ws is not None:
                ws.rollback()  # nothing after a commit; an error answer leaves nothing behind
        response: EncodedResponse | Response[bytes]
        if outcome is not None and outcome.transform is not None:
            response = Response(
                content=encoded, status_code=status, media_type=JSON, headers=headers
            )
            result = outcome.transform(response)
            response = await result if asyncio.iscoroutine(result) else result  # type: ignore[assignment]
        else:
            # the common path skips Litestar's Response -> ASGI conversion
            response = EncodedResponse(status, encoded, headers)
        state.journal.add(
            Entry(
                at=state.clock.now(),
                method=op.method,
                path=request.scope["path"],
                query=request.scope.get("query_string", b"").decode("latin-1")[:500],
                operation_id=op.operation_id,
                status=status,
                key_name=caller.key.name if caller else None,
                key_id=caller.key.id if caller else None,
                workspace=ws.name if ws else "-",
                fault=outcome.name if outcome else None,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        )
        return response

"""Stage: injected faults. Decides, per request, what the Prefer header or a rule asks for.

A forced answer is what the real API sends for that status: the catalogue's code in the error
envelope, `Retry-After` and `X-RateLimit-*` (Remaining 0) on a 429, `WWW-Authenticate` (and no
rate headers, as no key was recognised) on a 401. When the spec does not document the status for
the operation, a `Warning: 299` header says the sandbox forced it. With no rule and no Prefer
header, the stage costs two membership tests and returns None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from litestar import Response

from opsmerge_sandbox.catalogue import Catalogue
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.faults.connection import ConnectionFault, broken
from opsmerge_sandbox.faults.prefer import (
    Preferences,
    PreferError,
    invalid,
    merge,
    parse_prefer,
    parse_query,
)
from opsmerge_sandbox.faults.rules import Rule
from opsmerge_sandbox.pipeline.authenticate import Caller
from opsmerge_sandbox.pipeline.context import Outcome, RequestContext
from opsmerge_sandbox.pipeline.envelope import header_value
from opsmerge_sandbox.pipeline.headers import RequestHeaders
from opsmerge_sandbox.pipeline.ratelimit import (
    RATE_LIMIT_HEADERS,
    RETRY_AFTER_HEADER,
    RateState,
    rate_limit_headers,
)
from opsmerge_sandbox.pipeline.request import ApiRequest
from opsmerge_sandbox.spec import Operation
from opsmerge_sandbox.state import SandboxState
from opsmerge_sandbox.store.workspace import Workspace
from opsmerge_sandbox.stores import FaultRules

_CHALLENGE = 'Bearer realm="OpsMerge API", error="invalid_token"'

Transform = Callable[[Response[bytes]], Response[bytes]]


def forced_error(
    catalogue: Catalogue, status: int, rate: RateState, retry_after: int | None
) -> ApiError:
    """The error the real API would answer with this status, headers included."""
    code = catalogue.code_for_status(status)
    override = None if catalogue.status_of(code) == status else status
    message = catalogue.codes[code].meaning if override is None else _phrase(status)
    headers: dict[str, str] = {}
    if status == 429:
        retry = retry_after if retry_after is not None else max(1, rate.reset)
        reset = retry_after if retry_after is not None else rate.reset
        headers = {**rate_limit_headers(rate.limit, 0, reset), RETRY_AFTER_HEADER: str(retry)}
        message = (
            f"API key rate limit exceeded: {rate.limit} requests per minute. Retry after {retry} s."
        )
    elif status == 401:
        headers = {"www-authenticate": _CHALLENGE}
    elif retry_after is not None:
        headers = {"retry-after": str(retry_after)}
    return ApiError(code, message, headers=headers, status_override=override)


def _phrase(status: int) -> str:
    """The message for a status without a code of its own: the code's meaning would mislead."""
    try:
        return f"{status} {HTTPStatus(status).phrase}."
    except ValueError:
        return f"The server answered {status}."


def undocumented_warning(op: Operation, status: int) -> str | None:
    if status in op.documented_statuses:
        return None
    return (
        f'299 - "status {status} forced by the sandbox: the spec does not document it for '
        f'{op.operation_id}"'
    )


def _chain(*steps: Transform | None) -> Transform | None:
    kept = [s for s in steps if s is not None]
    if not kept:
        return None

    def run(response: Response[bytes]) -> Response[bytes]:
        for step in kept:
            response = step(response)
        return response

    return run


def _drop_rate_headers(response: Response[bytes]) -> Response[bytes]:
    for name in RATE_LIMIT_HEADERS:
        response.headers.pop(name, None)
    return response


def _applied(value: str) -> Transform:
    def add(response: Response[bytes]) -> Response[bytes]:
        response.headers["preference-applied"] = header_value(value)  # it may quote a client
        return response

    return add


HOSTED_MAX_DELAY_MS = 5_000


async def _after(delay: float, error: ApiError | None) -> None:
    """Wait out a fault's delay, then answer with its forced error, if it has one."""
    await asyncio.sleep(delay)
    if error is not None:
        raise error


def _wrong_preference(sources: Mapping[str, str], name: str, message: str) -> ApiError:
    """A 400 naming where the wrong preference came from: the query parameter that set it,
    else the Prefer header (a module function: a closure here would be a reference cycle per
    request once compiled)."""
    if name in sources:
        return invalid("query", sources[name], message)
    return invalid("header", "Prefer", message)


class Faults:
    """Stage: Prefer first (it is explicit), then the fault rules in order.

    A forced error answers early; a delay waits here; a Warning header and a transform of the
    answer (a broken connection, Preference-Applied) are left on the context for the answer
    stages.
    """

    def __init__(self, registry: FaultRules, state: SandboxState) -> None:
        self.registry = registry
        self.catalogue = state.spec.catalogue
        self.limiter = state.limiter
        # strangers on a hosted sandbox must not hold connections open for a minute each
        self.max_delay_ms = HOSTED_MAX_DELAY_MS if state.settings.hosted else None
        self.base_path = state.spec.base_path
        # on shared state: the registry whose rules fire by one Redis script (pick_async)
        self.shared: Any = registry if hasattr(registry, "pick_async") else None

    def __call__(self, ctx: RequestContext) -> Awaitable[None] | None:
        assert ctx.headers is not None and ctx.caller is not None and ctx.workspace is not None
        scope = ctx.request.scope
        asked = b"__" in scope.get("query_string", b"") or "prefer" in ctx.headers
        if not asked and not self.registry.rules:  # the common case: nothing to decide
            return None
        rate = ctx.rate or self.limiter.peek(ctx.bucket, ctx.limit)
        if self.shared is not None:  # the rules' counters live in the shared store
            return self._shared(ctx, rate)
        outcome = self.decide(ctx.op, ctx.request, ctx.headers, ctx.caller, ctx.workspace, rate)
        return self._apply(ctx, outcome)

    def _apply(self, ctx: RequestContext, outcome: Outcome | None) -> Awaitable[None] | None:
        if outcome is None:
            return None
        ctx.outcome = outcome
        if outcome.warning:
            ctx.answer_headers["warning"] = outcome.warning
        if outcome.delay:
            return _after(outcome.delay, outcome.error)  # the wait, then the forced answer
        if outcome.error is not None:
            raise outcome.error
        return None

    def decide(
        self,
        op: Operation,
        request: ApiRequest,
        headers: RequestHeaders,
        caller: Caller,
        ws: Workspace,
        rate: RateState,
    ) -> Outcome | None:
        """What this request's Prefer header and the rules ask for; None when nothing."""
        query_string: bytes = request.scope.get("query_string", b"")
        asked = b"__" in query_string or "prefer" in headers
        if not asked and not self.registry.rules:
            return None
        prefs = self.preferences(op, headers, query_string) if asked else None
        if prefs is not None and prefs.acts(op.success_status):
            return self._from_preferences(op, prefs, rate)
        outcome = None
        if self.registry.rules:
            path: str = request.scope["path"]
            relative = path[len(self.base_path) :] if path.startswith(self.base_path) else path
            rule = self.registry.pick(
                op.method, path, relative, op.operation_id, caller.key, ws.name
            )
            if rule is not None:
                outcome = self._from_rule(op, rule, rate)
        if outcome is None and prefs is not None and prefs.applied():
            # code=<success>, example=, dynamic=: accepted and honoured by answering normally
            outcome = Outcome(transform=_applied(prefs.applied()))
        return outcome

    async def _shared(self, ctx: RequestContext, rate: RateState) -> None:
        """`decide` on shared state: the rule that fires is picked by the shared counters."""
        assert ctx.headers is not None and ctx.caller is not None and ctx.workspace is not None
        query_string: bytes = ctx.request.scope.get("query_string", b"")
        op, asked = ctx.op, b"__" in query_string or "prefer" in ctx.headers
        prefs = self.preferences(op, ctx.headers, query_string) if asked else None
        outcome = None
        if prefs is not None and prefs.acts(op.success_status):
            outcome = self._from_preferences(op, prefs, rate)
        elif self.registry.rules:
            path: str = ctx.request.scope["path"]
            relative = path[len(self.base_path) :] if path.startswith(self.base_path) else path
            rule = await self.shared.pick_async(
                op.method, path, relative, op.operation_id, ctx.caller.key, ctx.workspace.name
            )
            if rule is not None:
                outcome = self._from_rule(op, rule, rate)
        if outcome is None and prefs is not None and prefs.applied():
            outcome = Outcome(transform=_applied(prefs.applied()))
        waiting = self._apply(ctx, outcome)
        if waiting is not None:
            await waiting

    # ------------------------------------------------------------------ Prefer
    def preferences(
        self, op: Operation, headers: RequestHeaders, query_string: bytes
    ) -> Preferences:
        """The request's preferences, checked against the operation; a 400 when one is wrong."""
        try:
            header = parse_prefer(headers.getall("prefer"))
        except PreferError as exc:
            raise invalid("header", "Prefer", exc.message) from None
        query, sources = Preferences(), dict[str, str]()
        if b"__" in query_string:
            try:
                query, sources = parse_query(
                    parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
                )
            except PreferError as exc:
                raise invalid("query", exc.name, exc.message) from None
        prefs = merge(header, query)
        success = op.success_status
        if prefs.code is not None and prefs.code != success and not 400 <= prefs.code <= 599:
            raise _wrong_preference(
                sources,
                "code",
                f"code={prefs.code}: force {success} (this operation's success "
                "status) or an error status from 400 to 599",
            )
        if self.max_delay_ms is not None and (prefs.delay_ms or 0) > self.max_delay_ms:
            raise _wrong_preference(
                sources, "delay", f"a hosted sandbox delays at most {self.max_delay_ms} ms"
            )
        if prefs.retry_after is not None and prefs.code not in (429, 503):
            raise _wrong_preference(
                sources, "retry-after", "retry-after only applies with code=429 or code=503"
            )
        return prefs

    def _from_preferences(self, op: Operation, prefs: Preferences, rate: RateState) -> Outcome:
        outcome = Outcome(name=f"prefer {prefs.applied()}", delay=(prefs.delay_ms or 0) / 1000)
        strip = None
        if prefs.code is not None and prefs.code != op.success_status:
            outcome.error = forced_error(self.catalogue, prefs.code, rate, prefs.retry_after)
            outcome.warning = undocumented_warning(op, prefs.code)
            strip = _drop_rate_headers if prefs.code == 401 else None
        outcome.transform = _chain(strip, _applied(prefs.applied()))
        return outcome

    # ------------------------------------------------------------------ rules
    def _from_rule(self, op: Operation, rule: Rule, rate: RateState) -> Outcome:
        effect = rule.effect
        assert effect is not None  # pick() only returns rules with an effect
        outcome = Outcome(name=rule.label, delay=effect.delay_ms / 1000)
        if effect.status is not None:
            outcome.error = forced_error(self.catalogue, effect.status, rate, effect.retry_after)
            outcome.warning = undocumented_warning(op, effect.status)
            if effect.status == 401:
                outcome.transform = _drop_rate_headers
        if effect.connection is not None:
            fault = ConnectionFault(
                effect.connection, effect.chunk_bytes, effect.interval_ms / 1000
            )
            # the connection fault is async and last in the chain: the runner awaits what it returns
            outcome.transform = _chain(outcome.transform, lambda r: broken(r, fault))  # type: ignore[arg-type]
            if effect.connection == "reset" and not effect.process:  # dropped before the handler
                outcome.error = ApiError(
                    "SERVICE_UNAVAILABLE",
                    "The connection was reset before the request was processed.",
                )
        return outcome

"""The API's fast path: spec operations go straight to the pipeline, ahead of Litestar's router.

Litestar stays the application: the docs, the control API, 404, 405 with `Allow`, OPTIONS and CORS
preflights. An API request whose method and path match an operation skips Litestar's router,
signature model and response conversion, which cost more than the pipeline's own work; the
pipeline's answer (pre-encoded bytes) is sent as it is. A request with an `Origin` header while
CORS is on still goes through Litestar, whose CORS layer adds the headers browsers need.

The stages get a lean request (request.py), not Litestar's `Request`, and a path already matched
is remembered (bounded), so a repeated request costs one dictionary lookup to route.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import LitestarException

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.journal import redact_path
from opsmerge_sandbox.pipeline.envelope import EncodedResponse, encode
from opsmerge_sandbox.pipeline.request import ApiRequest
from opsmerge_sandbox.pipeline.routing import Endpoint, litestar_path
from opsmerge_sandbox.spec import Operation

log = logging.getLogger("sandbox")
_TEMPLATE = re.compile(r"\{([^}]+)\}")

# counts a request no operation serves: its rate-limit headers, or ApiError (429) when spent
Admit = Callable[[ApiRequest], Awaitable[dict[str, str]]]
# one path template: its pattern, and its operations by method with their parameter aliases
Route = tuple[str, re.Pattern[str], dict[str, tuple[Operation, dict[str, str]]]]
# what a method and path resolve to: the operation, its aliases and the path's values
Found = tuple[Operation, dict[str, str], dict[str, str]]
_MATCHED_MAX = 4096  # paths remembered; past it the memory starts over


def _pattern(base: str, template: str) -> re.Pattern[str]:
    """`/agents/{id}` -> `/api/v1/agents/(?P<p_id>[^/]+)`, with the aliases routing.py uses."""
    parts, pos = [re.escape(base)], 0
    for m in _TEMPLATE.finditer(template):
        alias = "p_" + re.sub(r"\W", "_", m.group(1))
        parts += [re.escape(template[pos : m.start()]), f"(?P<{alias}>[^/]+)"]
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts))


def _specificity(template: str) -> tuple[int, ...]:
    """Segment by segment, fixed before templated: the order Litestar's router prefers them."""
    return tuple(1 if "{" in seg else 0 for seg in template.strip("/").split("/"))


def route_table(operations: Iterable[Operation], base: str) -> list[Route]:
    """One route per path template, most specific first.

    A request is served here only by the route Litestar would pick for its path (whatever the
    method): `PATCH /users/invite` meets the fixed `/users/invite`, which has no PATCH, so it goes
    to Litestar for its 405 rather than to `PATCH /users/{id}`.
    """
    by_path: dict[str, dict[str, tuple[Operation, dict[str, str]]]] = {}
    for op in operations:
        _, names = litestar_path(base, op.path)
        by_path.setdefault(op.path, {})[op.method] = (op, names)
    ordered = sorted(by_path, key=_specificity)
    return [(t, _pattern(base, t), by_path[t]) for t in ordered]


class ApiDispatch:
    """ASGI layer inside the connection-fault wrapper and outside Litestar's own handler."""

    def __init__(
        self,
        inner: Any,
        app: Litestar,
        endpoint: Endpoint,
        admit: Admit,
        operations: Iterable[Operation],
        base: str,
        cors: bool,
    ) -> None:
        self.inner = inner
        self.app = app
        self.endpoint = endpoint
        self.admit = admit
        self.table = route_table(operations, base)
        self.base = base
        # routes by the path's first segment, so a request tries a handful of patterns, not all
        # (only when no template starts with a parameter; else every route is tried)
        self.by_head: dict[str, list[Route]] | None = {}
        for route in self.table:
            first = route[0].strip("/").split("/")[0]
            if "{" in first:
                self.by_head = None
                break
            self.by_head.setdefault(first, []).append(route)
        self.cors = cors
        # (method, path) -> what _match found; None is remembered too (Litestar's to answer)
        self._matched: dict[tuple[str, str], Found | None] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.base):
            found = self._found(scope["method"], scope["path"])
            if found is None:
                # no operation serves it (404, 405, OPTIONS, HEAD): Litestar answers, but a
                # request with a valid key is counted like any other, and says so in its headers
                send = await self._admit(scope, receive, send)
                if send is None:
                    return
            elif not (self.cors and _has_origin(scope)):
                response = await self.answer(found, scope, receive, send)
                if isinstance(response, EncodedResponse):
                    await response(scope, receive, send)
                else:
                    await self.deliver(response, scope, receive, send)
                return
        await self.inner(scope, receive, send)

    def direct(self, scope: Any) -> Found | None:
        """The operation that answers this request beneath ASGI (`api_lane.py`), or None when
        the request takes the ASGI way (Litestar answers it, or its CORS headers are needed)."""
        path: str = scope["path"]
        if not path.startswith(self.base):
            return None
        found = self._found(scope["method"], path)
        if found is None or (self.cors and _has_origin(scope)):
            return None
        return found

    def _found(self, method: str, path: str) -> Found | None:
        at = (method, path)
        try:
            return self._matched[at]
        except KeyError:
            found = self._match(path, method)
            if len(self._matched) >= _MATCHED_MAX:
                self._matched.clear()
            self._matched[at] = found
            return found

    def _match(self, path: str, method: str) -> Found | None:
        routes = self.table
        if self.by_head is not None:
            head = path[len(self.base) :].split("/", 2)[1:2]
            routes = self.by_head.get(head[0], []) if head else []
        for _, pattern, methods in routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            found = methods.get(method)
            if found is None:  # Litestar answers (405, OPTIONS, HEAD)
                return None
            return found[0], found[1], match.groupdict()
        return None

    async def _admit(self, scope: Any, receive: Any, send: Any) -> Any:
        """Count a request no operation serves; the `send` that adds its rate-limit headers,
        or None once a 429 has been sent."""
        scope.setdefault("litestar_app", self.app)
        try:
            headers = await self.admit(ApiRequest(scope, receive, send))
        except ApiError as err:
            await EncodedResponse(err.status, encode(err.body()), err.headers)(scope, receive, send)
            return None
        if not headers:
            return send
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

        async def with_rate_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        return with_rate_headers

    async def answer(
        self, found: Found, scope: Any, receive: Any, send: Any
    ) -> EncodedResponse | Response[bytes]:
        """The pipeline's answer to a request an operation serves (a crash answers 500)."""
        try:
            return await self.run(found, scope, receive, send)
        except Exception:
            return self.crashed(found, scope)

    def run(
        self,
        found: Found,
        scope: Any,
        receive: Any,
        send: Any,
        take_body: Callable[[], bytes | None] | None = None,
    ) -> Awaitable[EncodedResponse | Response[bytes]]:
        """The pipeline's run for a request an operation serves, not started (a crash raises:
        the caller answers it with `crashed`); `take_body`: see `ApiRequest`."""
        op, names, path_params = found
        scope["path_params"] = path_params
        return self.endpoint(op, ApiRequest(scope, receive, send, take_body), names)

    @staticmethod
    def crashed(found: Found, scope: Any) -> EncodedResponse:
        """The 500 for a request the sandbox failed on, logged without its query."""
        log.exception("unhandled error on %s %s", found[0].method, redact_path(scope["path"]))
        err = ApiError("INTERNAL_ERROR", "The sandbox failed on this request; see its log.")
        return EncodedResponse(err.status, encode(err.body()), {})

    async def deliver(self, response: Response[bytes], scope: Any, receive: Any, send: Any) -> None:
        """Send a Litestar Response a fault reshaped (a broken connection may raise while
        sending); the pre-encoded answers never come here."""
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        scope.setdefault("litestar_app", self.app)
        full: Request[Any, Any, Any] = Request(scope, receive, send)
        try:
            await response.to_asgi_response(None, full)(scope, receive, tracked)
        except Exception as exc:
            if not started:
                raise
            # as Litestar reports it: the server can only drop the connection now
            raise LitestarException("Exception caught after response started") from exc


def _has_origin(scope: Any) -> bool:
    return any(k == b"origin" for k, _ in scope["headers"])

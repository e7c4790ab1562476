"""Stage 1: one Litestar route per operation of the spec, made at startup.

Litestar then answers unknown paths (404), wrong methods (405 with Allow) and CORS preflights;
the app's exception handlers put those answers in the error envelope too. Path parameters are
renamed (`{id}` -> `{p_id:str}`) because some names (`data`, `query`) are reserved.

The methods of a path have one source: the handlers registered on it, which for the API are the
spec's operations on that path. `OPTIONS` answers `Allow` with those methods plus OPTIONS, and a
405 lists the same set (HEAD is not served, so it is not listed). Litestar's own OPTIONS handler
is not used: it is made when the first handler of a path is registered and keeps that first
route's methods, so it would hide every method registered later on the same path.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from litestar import Request, Response, route
from litestar.enums import HttpMethod, MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp

from opsmerge_sandbox.pipeline.envelope import EncodedResponse
from opsmerge_sandbox.pipeline.request import ApiRequest
from opsmerge_sandbox.spec import Operation

_PARAM = re.compile(r"\{([^}]+)\}")
Endpoint = Callable[
    [Operation, ApiRequest, dict[str, str]], Awaitable[EncodedResponse | Response[bytes]]
]


def litestar_path(base: str, template: str) -> tuple[str, dict[str, str]]:
    """The Litestar path for an OpenAPI template, and Litestar's param names -> the spec's."""
    names: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        alias = "p_" + re.sub(r"\W", "_", match.group(1))
        names[alias] = match.group(1)
        return "{" + alias + ":str}"

    return base + _PARAM.sub(rename, template), names


def _handler(
    endpoint: Endpoint, op: Operation, names: dict[str, str]
) -> Callable[..., Awaitable[ASGIApp]]:
    # annotated as an ASGI app: Litestar sends what the pipeline returns as it is, and still
    # converts a Response (which the fault stage returns when it reshapes an answer)
    async def handler(request: Request) -> ASGIApp:
        lean = ApiRequest(request.scope, request.receive, request.send)
        return await endpoint(op, lean, names)  # type: ignore[return-value]

    handler.__name__ = op.operation_id
    return handler


def build_routes(
    operations: list[Operation], base: str, endpoint: Endpoint
) -> list[HTTPRouteHandler]:
    handlers = []
    for op in operations:
        path, names = litestar_path(base, op.path)

        handler = _handler(endpoint, op, names)
        handlers.append(
            route(
                path,
                http_method=[HttpMethod(op.method)],
                name=op.operation_id,
                status_code=op.success_status,
                include_in_schema=False,
            )(handler)
        )
    return handlers


def allow_header(methods: Iterable[str]) -> str:
    """The Allow value for a set of methods: OPTIONS included, sorted, each once."""
    return ", ".join(sorted({m.strip().upper() for m in methods if m.strip()} | {"OPTIONS"}))


def _options_handler(path: str, allow: str) -> HTTPRouteHandler:
    def options() -> Response[None]:
        headers = {"allow": allow}
        return Response(content=None, status_code=204, headers=headers, media_type=MediaType.TEXT)

    options.__name__ = "options"
    return route(
        path,
        http_method=["OPTIONS"],
        name=f"options:{path}",
        include_in_schema=False,
        sync_to_thread=False,
    )(options)


def with_options(handlers: Sequence[Any]) -> list[Any]:
    """The handlers plus one OPTIONS handler per path, listing every method served there.

    Anything else in the list (a static-files router) is passed through as it is.
    """
    methods: dict[str, set[str]] = {}
    for handler in handlers:
        if not isinstance(handler, HTTPRouteHandler):
            continue
        for path in handler.paths:
            methods.setdefault(path, set()).update(handler.http_methods)
    extra = [
        _options_handler(path, allow_header(found))
        for path, found in methods.items()
        if "OPTIONS" not in found
    ]
    return [*extra, *handlers]  # first: Litestar adds its own OPTIONS to a path without one

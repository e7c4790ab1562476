"""Stage 1: one Litestar route per operation of the spec, made at startup.

Litestar then answers unknown paths (404), wrong methods (405 with Allow), OPTIONS and CORS
preflights; the app's exception handlers put those answers in the error envelope too. Path
parameters are renamed (`{id}` -> `{p_id:str}`) because some names (`data`, `query`) are reserved.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from litestar import Request, Response, route
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp

from sandbox.pipeline.envelope import EncodedResponse
from sandbox.spec import Operation

_PARAM = re.compile(r"\{([^}]+)\}")
Endpoint = Callable[
    [Operation, Request, dict[str, str]], Awaitable[EncodedResponse | Response[bytes]]
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
        return await endpoint(op, request, names)

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
                http_method=[op.method],
                name=op.operation_id,
                status_code=op.success_status,
                include_in_schema=False,
            )(handler)
        )
    return handlers

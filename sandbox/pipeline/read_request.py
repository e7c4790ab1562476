"""Stage: read and validate the request: path and query parameters, then the body and its size.

A body is read only for operations that take one, and never past the size limit (a declared
Content-Length over it is refused unread). In hosted mode a write whose workspace has spent its
budget is refused before its body is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import Request
from litestar.types import Receive

from sandbox.errors import ApiError
from sandbox.pipeline.validate import OperationValidator

if TYPE_CHECKING:
    from sandbox.pipeline.context import RequestContext
    from sandbox.state import SandboxState

READS = frozenset({"GET", "HEAD", "OPTIONS"})


class ReadRequest:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.max_body = state.settings.max_body_bytes
        self.validators = {op.operation_id: OperationValidator(op) for op in state.spec.operations}

    async def __call__(self, ctx: RequestContext) -> None:
        op, request, headers = ctx.op, ctx.request, ctx.headers
        assert headers is not None and ctx.workspace is not None
        validator = self.validators[op.operation_id]
        raw_path = request.path_params
        ctx.params, ctx.supplied = validator.request_params(
            {name: str(raw_path.get(alias, "")) for alias, name in ctx.path_names.items()},
            request.scope.get("query_string", b"").decode("latin-1"),
        )
        declared = headers.get("content-length")
        hosted = self.state.hosted
        if hosted is not None and op.method not in READS:
            size = int(declared) if declared and declared.isdigit() else None
            hosted.admit_write(ctx.workspace, size)
        if op.body_schema is not None:
            ctx.raw_body = await self._read_body(request, declared)
            ctx.body = validator.body(ctx.raw_body, headers.get("content-type"))

    async def _read_body(self, request: Request, declared: str | None) -> bytes:
        return await read_body(request.receive, self.max_body, declared)


async def read_body(receive: Receive, limit: int, declared: str | None = None) -> bytes:
    """A request body straight from ASGI `receive`, never past `limit` (a declared
    Content-Length over it is refused unread). The API and the control API both read this way;
    Litestar's Request helpers need its router's state, which the API's fast path does not build.
    """
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise ApiError("HEADER_INVALID", "Content-Length must be a whole number.") from None
        if too_big:
            raise ApiError("PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(
                "VALIDATION_ERROR", "The client closed the connection before the whole body."
            )
        body = message.get("body")
        chunk = body if isinstance(body, bytes) else b""
        size += len(chunk)
        if size > limit:
            raise ApiError("PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)

"""Stage: read and validate the request: path and query parameters, then the body and its size.

A body is read only for operations that take one, and never past the size limit (a declared
Content-Length over it is refused unread). In hosted mode a write whose workspace has spent its
budget is refused before its body is read.

Query parameters the operation does not take are ignored, as the real API ignores them, and
named in a `Warning` header and the journal; `serve --reject-unknown-params` refuses them instead.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from litestar.types import Receive

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.faults.prefer import QUERY_NAMES
from opsmerge_sandbox.journal import UNKNOWN_PARAMS
from opsmerge_sandbox.pipeline.validate import OperationValidator, unknown_warning

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.state import SandboxState

READS = frozenset({"GET", "HEAD", "OPTIONS"})


class ReadRequest:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.max_body = state.settings.max_body_bytes
        twins = frozenset(QUERY_NAMES)  # `?__code=` and the like are the sandbox's own
        self.validators = {
            op.operation_id: OperationValidator(op, twins) for op in state.spec.operations
        }
        self.reject_unknown = state.settings.reject_unknown_params

    def __call__(self, ctx: RequestContext) -> Awaitable[None] | None:
        op, request, headers = ctx.op, ctx.request, ctx.headers
        assert headers is not None and ctx.workspace is not None
        validator = self.validators[op.operation_id]
        query_string = request.scope.get("query_string", b"").decode("latin-1")
        path_values: dict[str, str] = {}
        if ctx.path_names:
            raw_path = request.path_params
            path_values = {
                name: str(raw_path.get(alias, "")) for alias, name in ctx.path_names.items()
            }
        unknown = validator.unknown(query_string)
        if unknown:
            # for the journal (record_exchange.py)
            request.scope[UNKNOWN_PARAMS] = unknown  # type: ignore[literal-required]
            if self.reject_unknown:
                raise _refusal(validator, unknown, path_values, query_string)
            # (a fault's Warning never reaches here: a forced status answers before this stage)
            ctx.answer_headers["warning"] = unknown_warning(unknown)
        ctx.params, ctx.supplied = validator.request_params(path_values, query_string)
        declared = headers.get("content-length")
        hosted = self.state.hosted
        if hosted is not None and op.method not in READS:
            size = int(declared) if declared and declared.isdigit() else None
            hosted.admit_write(ctx.workspace, size)
        if op.body_schema is None:
            return None
        take = request.take_body
        whole = None if take is None else take()
        if whole is None:
            return self._read_body(ctx, validator, declared)  # the one stage part that waits
        # the server already holds the whole body (the API lane): read at once, same limits
        check_declared(self.max_body, declared)
        check_size(self.max_body, len(whole))
        ctx.raw_body = whole
        ctx.body = validator.body(whole, headers.get("content-type"))
        return None

    async def _read_body(
        self, ctx: RequestContext, validator: OperationValidator, declared: str | None
    ) -> None:
        assert ctx.headers is not None
        ctx.raw_body = await read_body(ctx.request.receive, self.max_body, declared)
        ctx.body = validator.body(ctx.raw_body, ctx.headers.get("content-type"))


def _refusal(
    validator: OperationValidator,
    unknown: tuple[str, ...],
    path_values: dict[str, str],
    query_string: str,
) -> ApiError:
    """The 400 for unknown parameters, also naming what is wrong with the known ones, so one
    answer lists every problem of the query."""
    refusal = validator.refuse_unknown(unknown)
    try:
        validator.request_params(path_values, query_string)
    except ApiError as err:
        refusal.details.extend(err.details)
    return refusal


async def read_body(receive: Receive, limit: int, declared: str | None = None) -> bytes:
    """A request body straight from ASGI `receive`, never past `limit` (a declared
    Content-Length over it is refused unread). The API and the control API both read this way;
    Litestar's Request helpers need its router's state, which the API's fast path does not build.
    """
    check_declared(limit, declared)
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
        check_size(limit, size)
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def check_declared(limit: int, declared: str | None) -> None:
    """Refuse a declared Content-Length over `limit` (the body is then not read), or one that
    is not a number."""
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise ApiError("HEADER_INVALID", "Content-Length must be a whole number.") from None
        if too_big:
            raise ApiError("PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")


def check_size(limit: int, size: int) -> None:
    """Refuse a body that has grown past `limit`."""
    if size > limit:
        raise ApiError("PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")

"""Stage: the ASGI answer: pre-encoded bytes, or a Litestar Response a fault transforms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from litestar import Response

from opsmerge_sandbox.pipeline.envelope import JSON, EncodedResponse

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext


def respond(ctx: RequestContext) -> Awaitable[None] | None:
    transform = ctx.outcome.transform if ctx.outcome is not None else None
    if transform is None:
        # the common path skips Litestar's Response -> ASGI conversion
        ctx.response = EncodedResponse(ctx.status, ctx.encoded, ctx.answer_headers)
        return None
    response = Response(
        content=ctx.encoded, status_code=ctx.status, media_type=JSON, headers=ctx.answer_headers
    )
    result = transform(response)
    if asyncio.iscoroutine(result):  # a connection fault's answer is made asynchronously
        return _settle(ctx, result)
    ctx.response = result  # type: ignore[assignment]
    return None


async def _settle(ctx: RequestContext, result: Awaitable[Response[bytes]]) -> None:
    ctx.response = await result

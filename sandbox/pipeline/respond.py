"""Stage: the ASGI answer: pre-encoded bytes, or a Litestar Response a fault transforms."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from litestar import Response

from sandbox.pipeline.envelope import JSON, EncodedResponse

if TYPE_CHECKING:
    from sandbox.pipeline.context import RequestContext


async def respond(ctx: RequestContext) -> None:
    transform = ctx.outcome.transform if ctx.outcome is not None else None
    if transform is None:
        # the common path skips Litestar's Response -> ASGI conversion
        ctx.response = EncodedResponse(ctx.status, ctx.encoded, ctx.answer_headers)
        return
    response = Response(
        content=ctx.encoded, status_code=ctx.status, media_type=JSON, headers=ctx.answer_headers
    )
    result = transform(response)
    ctx.response = await result if asyncio.iscoroutine(result) else result  # type: ignore[assignment]

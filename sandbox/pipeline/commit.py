"""Stage: encode the answer, then make the request's writes durable and visible.

It runs after the answer is built and checked, so no later error can leave a write applied
without its success answer; a write the store cannot save is answered 503 STORE_UNAVAILABLE and
changes nothing. An error answer drops whatever the handler staged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.errors import ApiError
from sandbox.pipeline.envelope import encode

if TYPE_CHECKING:
    from sandbox.pipeline.context import RequestContext
    from sandbox.state import SandboxState


class Commit:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def __call__(self, ctx: RequestContext) -> None:
        ctx.encoded = encode(ctx.payload)
        ws = ctx.workspace
        if ws is None or not ws.in_transaction:
            return
        if ctx.status >= 400:
            ws.rollback()
            return
        try:
            ws.commit()
        except ApiError as err:
            ctx.answer_headers.update(err.headers)
            ctx.status, ctx.payload = err.status, err.body()
            ctx.encoded = encode(ctx.payload)
            return
        hosted = self.state.hosted
        if hosted is not None:
            hosted.charge(ws, len(ctx.raw_body))  # only accepted changes spend a visitor's budget

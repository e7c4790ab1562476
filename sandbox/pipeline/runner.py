"""Runs one API request through the stages `stages.py` lists, with one error path.

Request stages run until one answers early (ApiError); the answer stages always run. Whatever
happens, a write the request staged and did not commit is dropped.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response

from sandbox.errors import ApiError
from sandbox.pipeline.context import RequestContext
from sandbox.pipeline.envelope import EncodedResponse
from sandbox.pipeline.stages import Stages
from sandbox.spec import Operation


class Pipeline:
    def __init__(self, stages: Stages) -> None:
        self.stages = stages

    async def run(
        self, op: Operation, request: Request[Any, Any, Any], path_names: dict[str, str]
    ) -> EncodedResponse | Response[bytes]:
        ctx = RequestContext(op, request, path_names, time.perf_counter())
        try:
            try:
                for stage in self.stages.request:
                    await stage(ctx)
            except ApiError as err:
                ctx.error = err
            for stage in self.stages.answer:
                await stage(ctx)
        finally:
            if ctx.workspace is not None:
                ctx.workspace.rollback()  # nothing after a commit; drops an uncommitted write
        assert ctx.response is not None
        return ctx.response

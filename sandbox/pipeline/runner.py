"""Runs one API request through the stages `stages.py` lists, with one error path.

Request stages run until one answers early (ApiError); the answer stages always run. Whatever
happens, a write the request staged and did not commit is dropped.

A stage that has nothing to wait for is a plain call that returns None; one that may wait returns
an awaitable (an `async def` stage always does), which the runner awaits. Most stages never wait,
and a coroutine per stage per request is a cost the work does not need.
"""

from __future__ import annotations

import time

from litestar import Response

from opsmerge_sandbox.clock import begin_instant, end_instant
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.extensions import OperationHints
from opsmerge_sandbox.pipeline.context import RequestContext
from opsmerge_sandbox.pipeline.envelope import EncodedResponse
from opsmerge_sandbox.pipeline.request import ApiRequest
from opsmerge_sandbox.pipeline.stages import Stages, direct
from opsmerge_sandbox.spec import Operation


class Pipeline:
    def __init__(self, stages: Stages) -> None:
        self.stages = stages

    @property
    def stages(self) -> Stages:
        return self._stages

    @stages.setter
    def stages(self, stages: Stages) -> None:
        self._stages = stages
        self._request = tuple(map(direct, stages.request))
        self._answer = tuple(map(direct, stages.answer))
        self._admission = tuple(map(direct, stages.admission))

    async def run(
        self, op: Operation, request: ApiRequest, path_names: dict[str, str]
    ) -> EncodedResponse | Response[bytes]:
        ctx = RequestContext(op, request, path_names, time.perf_counter())
        held = begin_instant()  # every time the request writes is one instant
        try:
            try:
                for stage in self._request:
                    waiting = stage(ctx)
                    if waiting is not None:
                        await waiting
            except ApiError as err:
                ctx.error = err.as_answer()
            for stage in self._answer:
                waiting = stage(ctx)
                if waiting is not None:
                    await waiting
        finally:
            end_instant(held)
            if ctx.workspace is not None:
                # drops this request's uncommitted write (nothing once committed, and never
                # another request's transaction: one that opened none drops nothing)
                ctx.workspace.rollback(ctx.transaction)
        assert ctx.response is not None
        return ctx.response

    async def admit(self, request: ApiRequest) -> dict[str, str]:
        """Count a request that no operation serves (an unknown path or method).

        The admission stages run as for any request; one with a valid key spends a request of
        its bucket and gets the rate-limit headers (a 429 ApiError once spent). One without a
        valid key is not counted and is answered as before (404 or 405).
        """
        ctx = RequestContext(UNROUTED, request, {}, time.perf_counter())
        try:
            for stage in self._admission:
                waiting = stage(ctx)
                if waiting is not None:
                    await waiting
        except ApiError as err:
            if err.code == "RATE_LIMITED":
                raise
            return {}
        return ctx.rate.headers() if ctx.rate is not None else {}


# what the admission stages see of a request no operation serves
UNROUTED = Operation(
    operation_id="",
    method="",
    path="",
    tag="",
    summary="",
    stability="",
    deprecated=False,
    deprecated_at=None,
    sunset=None,
    scopes=(),
    session_only=False,
    hints=OperationHints(kind=""),
    params=(),
    body_schema=None,
    body_required=False,
    responses={},
    raw={},
)

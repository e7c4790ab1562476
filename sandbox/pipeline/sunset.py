"""Stage: a deprecated operation past its `Sunset` date (on the sandbox clock) answers 410.

The article promises that a deprecated operation stops working on its sunset date; a client that
passes in the sandbox must meet that answer here first, not in production. The date is the
operation's `x-sunset` in the spec, the same instant the `Sunset` header announces (RFC 8594), and
the clock is the sandbox's, so a test crosses it by advancing the clock instead of waiting.

The stage runs after authentication and the rate limit: a call to a sunset operation is still
authenticated, authorized and counted like any other, and the answer keeps its `Deprecation` and
`Sunset` headers (the envelope adds them to every answer of a deprecated operation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsmerge_sandbox.clock import parse_iso
from opsmerge_sandbox.errors import ApiError

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.spec import Operation
    from opsmerge_sandbox.state import SandboxState
    from opsmerge_sandbox.stores import ClockStore

SUNSET_CODE = "OPERATION_SUNSET"


def sunset_at(op: Operation) -> float | None:
    """When a deprecated operation stops working (seconds since the epoch), or None if never."""
    if not op.deprecated or not op.sunset:
        return None
    return parse_iso(str(op.sunset))


def sunset_error(op: Operation) -> ApiError:
    replacement = op.raw.get("x-replacement")
    advice = f" Use {replacement} instead." if replacement else ""
    return ApiError(
        SUNSET_CODE,
        f"{op.method} {op.path} was deprecated and stopped working on its sunset date, "
        f"{op.sunset}.{advice}",
    )


class Sunset:
    """Stage: 410 OPERATION_SUNSET once the sandbox clock reaches the operation's sunset."""

    def __init__(self, state: SandboxState) -> None:
        self.clock: ClockStore = state.clock
        # operationId -> sunset instant, prepared once; most operations have none
        self.sunsets = {
            op.operation_id: at for op in state.spec.operations if (at := sunset_at(op)) is not None
        }

    def __call__(self, ctx: RequestContext) -> None:
        at = self.sunsets.get(ctx.op.operation_id)
        if at is not None and self.clock.now() >= at:
            raise sunset_error(ctx.op)

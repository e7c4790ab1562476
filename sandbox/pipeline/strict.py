"""The last stage, on in strict mode: the sandbox checks its own answer against the spec.

A mismatch is a bug in the sandbox or the spec, so it fails loudly: the answer becomes a 500
naming the operation and the problem, and the problem is logged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.ratelimit import RATE_LIMIT_HEADERS, RETRY_AFTER_HEADER
from opsmerge_sandbox.pipeline.validate import compile_schema, schema_details
from opsmerge_sandbox.spec import Operation

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext

log = logging.getLogger("sandbox.strict")


class StrictChecker:
    def __init__(self) -> None:
        self._validators: dict[tuple[str, str], Any] = {}

    def _validator(self, op: Operation, status: str) -> Any:
        key = (op.operation_id, status)
        v = self._validators.get(key)
        if v is None and op.responses.get(status) is not None:
            v = self._validators[key] = compile_schema(op.responses[status])  # type: ignore[arg-type]
        return v

    def check(
        self,
        op: Operation,
        status: int,
        payload: Any,
        headers: dict[str, str],
        forced: bool,
        has_bucket: bool = True,
    ) -> None:
        """Raise INTERNAL_ERROR when the answer breaks the spec; forced faults are exempt.

        `has_bucket` is False for answers given before the caller's key was known (a 401, a
        repeated Authorization header): there is no bucket whose headers could be sent.
        """
        if forced:
            return
        problems: list[str] = []
        key = str(status)
        if key not in op.responses:
            problems.append(f"status {status} is not documented")
        else:
            validator = self._validator(op, key)
            if validator is not None:
                details = schema_details(validator, payload, "body", 5)
                problems += [f"{d.field or '(root)'}: {d.message}" for d in details]
        missing = [h for h in RATE_LIMIT_HEADERS if h not in headers]
        if missing and has_bucket and status != 401:  # no key, so no bucket to describe
            problems.append(f"missing headers {', '.join(missing)}")
        if status == 429 and RETRY_AFTER_HEADER not in headers:
            problems.append("429 without Retry-After")
        if status == 401 and "www-authenticate" not in headers:
            problems.append("401 without WWW-Authenticate")
        if (
            op.deprecated
            and status < 300
            and ("deprecation" not in headers or "sunset" not in headers)
        ):
            problems.append("deprecated operation without Deprecation and Sunset headers")
        if problems:
            message = (
                f"strict mode: {op.operation_id} answered {status} against its spec: "
                + "; ".join(problems)
            )
            log.error(message)
            raise ApiError("INTERNAL_ERROR", message)


class StrictCheck:
    """Stage (strict mode only): an answer that breaks the spec becomes a loud 500."""

    def __init__(self) -> None:
        self.checker = StrictChecker()

    async def __call__(self, ctx: RequestContext) -> None:
        try:
            self.checker.check(
                ctx.op, ctx.status, ctx.payload, ctx.answer_headers, ctx.forced,
                ctx.rate is not None,
            )
        except ApiError as err:
            ctx.status, ctx.payload = err.status, err.body()

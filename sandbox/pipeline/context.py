"""The one typed object a request carries through every stage of the pipeline.

Each stage reads what earlier stages wrote here and adds its own part; none reads the raw request
again for something another stage already decided (the headers are parsed once, the workspace
and the caller are resolved once).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from litestar import Response

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.authenticate import ApiKey, Caller
from opsmerge_sandbox.pipeline.envelope import EncodedResponse
from opsmerge_sandbox.pipeline.headers import RequestHeaders
from opsmerge_sandbox.pipeline.ratelimit import RateState
from opsmerge_sandbox.pipeline.request import ApiRequest
from opsmerge_sandbox.spec import Operation
from opsmerge_sandbox.store.workspace import Transaction, Workspace

Transform = Callable[[Response[bytes]], Awaitable[Response[bytes]] | Response[bytes]]


@dataclass(slots=True)
class Outcome:
    """What the faults stage decided for one request (None of it when no rule matched)."""

    name: str | None = None  # shown in the journal
    delay: float = 0.0  # seconds to wait before answering
    error: ApiError | None = None  # answer with this instead of running the handler
    warning: str | None = None  # a Warning header, e.g. for a status the spec does not document
    transform: Transform | None = None


@dataclass(slots=True)
class RequestContext:
    """One API request: what it asked, who asked, and the answer being built."""

    op: Operation
    request: ApiRequest
    path_names: dict[str, str]  # route parameter alias -> spec parameter name
    started: float  # perf_counter() at arrival, for the journal's duration
    headers: RequestHeaders | None = None
    key: ApiKey | None = None  # the bearer key, once it is known to exist and be valid
    caller: Caller | None = None  # the key and its active owner
    workspace: Workspace | None = None
    bucket: str = ""  # the caller's rate-limit bucket
    limit: int = 0  # and its requests per minute
    rate: RateState | None = None
    lock_token: str | None = None  # shared state: the workspace write lock this request holds
    transaction: Transaction | None = None  # the write's own, from `Workspace.begin`
    # a read that logged its key's use committed that entry itself (`pipeline/key_use.py`)
    logged_use: bool = False
    outcome: Outcome | None = None
    params: dict[str, Any] = field(default_factory=dict)
    supplied: frozenset[str] = frozenset()
    body: Any = None
    raw_body: bytes = b""
    # the answer
    error: ApiError | None = None  # set when a stage answered early
    status: int = 0
    payload: Any = None
    answer_headers: dict[str, str] = field(default_factory=dict)
    encoded: bytes = b""
    response: EncodedResponse | Response[bytes] | None = None

    @property
    def forced(self) -> bool:
        """Whether the answer is a fault asked for on purpose (exempt from the strict check)."""
        return self.outcome is not None and self.outcome.error is not None

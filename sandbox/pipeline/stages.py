"""The order of the pipeline, in one place: every API request passes these stages in turn.

A request stage may answer early by raising ApiError; the answer stages then run all the same,
so every answer, early or not, gets the same envelope, headers, check and journal entry. A new
stage is one module and one line here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FunctionType, MethodType
from typing import TYPE_CHECKING

from opsmerge_sandbox.pipeline.authenticate import Authenticate
from opsmerge_sandbox.pipeline.authorize import Authorize, RolePermissions
from opsmerge_sandbox.pipeline.commit import Commit
from opsmerge_sandbox.pipeline.envelope import Envelope
from opsmerge_sandbox.pipeline.faults import Faults
from opsmerge_sandbox.pipeline.handle import Handle
from opsmerge_sandbox.pipeline.headers import parse_headers
from opsmerge_sandbox.pipeline.ratelimit import RateLimit
from opsmerge_sandbox.pipeline.read_request import ReadRequest
from opsmerge_sandbox.pipeline.record_exchange import RecordExchange
from opsmerge_sandbox.pipeline.resolve_workspace import ResolveWorkspace
from opsmerge_sandbox.pipeline.respond import respond
from opsmerge_sandbox.pipeline.strict import StrictCheck
from opsmerge_sandbox.pipeline.sunset import Sunset

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.state import SandboxState

# a stage that never waits returns None; one that may wait returns what to await
Stage = Callable[["RequestContext"], Awaitable[None] | None]


def direct(stage: Stage) -> Stage:
    """What to call for a stage: a stage object's bound `__call__` rather than the object. The
    interpreter calls a bound method of a Python function inline, an object through its type's
    call slot (a lookup and a C-level call each time): ~0.6 us a request over 13 stages."""
    if isinstance(stage, FunctionType | MethodType):
        return stage
    return stage.__call__  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class Stages:
    request: tuple[Stage, ...]  # may answer early (raise ApiError)
    answer: tuple[Stage, ...]  # always run, in order, on the answer being built
    # the request stages up to the rate limit: what a request no operation serves still passes
    # (an unknown path or method with a valid key is counted like any other request)
    admission: tuple[Stage, ...] = ()


def _on_shared(state: SandboxState, stage: Stage) -> Stage:
    """The stage, or on shared state the same stage holding its workspace's write lock."""
    return stage if state.shared is None else state.shared.wrap(state, stage)


def build_stages(state: SandboxState) -> Stages:
    settings = state.settings
    permissions = RolePermissions(state.auth)
    # what every request to the API passes, even one no operation serves (404, 405)
    admission: list[Stage] = [
        parse_headers,  # one parse of the headers; a repeated Authorization is a 400
        Authenticate(lambda: state.keys, state.clock, settings.auth),  # the om_ key
        ResolveWorkspace(state),  # its owner, the address budget (hosted), then the workspace
        # every authenticated request counts, whatever its answer (a denial included)
        RateLimit(state.limiter, settings.auth),  # 300 a minute per key and workspace
    ]
    shared = state.shared
    if shared is not None:  # the same stages, resolved against Redis in one round trip
        admission[1:] = [shared.admission(state, admission[1], admission[2])]
    request: list[Stage] = [
        *admission,
        Authorize(permissions),  # roles, then key scopes
        Sunset(state),  # a deprecated operation past its Sunset date on the sandbox clock: 410
        Faults(state.faults, state),  # Prefer and fault rules
        ReadRequest(state),  # parameters, body size, body
        _on_shared(state, Handle(state, permissions)),  # the x-sandbox kind, writes staged
    ]
    answer: list[Stage] = [
        Envelope(state),  # status, body, rate-limit and deprecation headers
        *([StrictCheck()] if settings.strict else []),  # the answer against the spec
        _on_shared(state, Commit(state)),  # encode, then writes durable and visible (or 503)
        respond,  # the ASGI answer (a fault may break it)
        RecordExchange(state),  # the journal
    ]
    return Stages(tuple(request), tuple(answer), tuple(admission))

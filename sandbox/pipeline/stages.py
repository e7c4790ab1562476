"""The order of the pipeline, in one place: every API request passes these stages in turn.

A request stage may answer early by raising ApiError; the answer stages then run all the same,
so every answer, early or not, gets the same envelope, headers, check and journal entry. A new
stage is one module and one line here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.pipeline.authenticate import Authenticate
from sandbox.pipeline.authorize import Authorize, RolePermissions
from sandbox.pipeline.commit import Commit
from sandbox.pipeline.envelope import Envelope
from sandbox.pipeline.faults import Faults
from sandbox.pipeline.handle import Handle
from sandbox.pipeline.headers import parse_headers
from sandbox.pipeline.ratelimit import RateLimit
from sandbox.pipeline.read_request import ReadRequest
from sandbox.pipeline.record_exchange import RecordExchange
from sandbox.pipeline.resolve_workspace import ResolveWorkspace
from sandbox.pipeline.respond import respond
from sandbox.pipeline.strict import StrictCheck

if TYPE_CHECKING:
    from sandbox.pipeline.context import RequestContext
    from sandbox.state import SandboxState

Stage = Callable[["RequestContext"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Stages:
    request: tuple[Stage, ...]  # may answer early (raise ApiError)
    answer: tuple[Stage, ...]  # always run, in order, on the answer being built


def build_stages(state: SandboxState) -> Stages:
    settings = state.settings
    permissions = RolePermissions(state.auth)
    request: list[Stage] = [
        parse_headers,  # one parse of the headers; a repeated Authorization is a 400
        Authenticate(lambda: state.keys, state.clock, settings.auth),  # the om_ key
        ResolveWorkspace(state),  # its owner, the address budget (hosted), then the workspace
        Authorize(permissions),  # roles, then key scopes
        RateLimit(state.limiter, settings.auth),  # 300 a minute per key and workspace
        Faults(state.faults, state),  # Prefer and fault rules
        ReadRequest(state),  # parameters, body size, body
        Handle(state, permissions),  # the x-sandbox kind, writes staged
    ]
    answer: list[Stage] = [
        Envelope(state),  # status, body, rate-limit and deprecation headers
        *([StrictCheck()] if settings.strict else []),  # the answer against the spec
        Commit(state),  # encode, then writes durable and visible (or 503)
        respond,  # the ASGI answer (a fault may break it)
        RecordExchange(state),  # the journal
    ]
    return Stages(tuple(request), tuple(answer))

"""create_app: the Litestar app for one sandbox, built from the spec at startup."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, cast

from litestar import Litestar, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException

from opsmerge_sandbox.api_lane import Lane
from opsmerge_sandbox.control_api import build_admin
from opsmerge_sandbox.docs import docs_routes
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.events.control_endpoints import add_event_endpoints
from opsmerge_sandbox.events.engine import rule_engine_for
from opsmerge_sandbox.faults.connection import wrap_connection_faults
from opsmerge_sandbox.faults.control_endpoints import add_fault_endpoints
from opsmerge_sandbox.faults.loader import load_faults_file
from opsmerge_sandbox.hosted import lifespans as hosted_lifespans
from opsmerge_sandbox.hosted import policy_for
from opsmerge_sandbox.invariant_endpoints import add_invariant_endpoints
from opsmerge_sandbox.journal import redact_path
from opsmerge_sandbox.pipeline.dispatch import ApiDispatch
from opsmerge_sandbox.pipeline.envelope import error_response, json_response
from opsmerge_sandbox.pipeline.routing import allow_header, build_routes, with_options
from opsmerge_sandbox.pipeline.runner import Pipeline
from opsmerge_sandbox.pipeline.stages import build_stages
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.state import SandboxState, build_state
from opsmerge_sandbox.store.idle_making import IdleMaking
from opsmerge_sandbox.store.workspace import Workspaces
from opsmerge_sandbox.world.recipe import demo_keys

if TYPE_CHECKING:
    from opsmerge_sandbox.shared.records import SharedWorkspaces

log = logging.getLogger("sandbox")


def _not_found(request: Request, exc: NotFoundException) -> Response[bytes]:
    return error_response(
        ApiError("NOT_FOUND", f"No route for {request.method} {request.url.path[:200]}.")
    )


def _method_not_allowed(request: Request, exc: MethodNotAllowedException) -> Response[bytes]:
    # the methods registered on the path, written as the OPTIONS answer writes them
    allow = allow_header((exc.headers or {}).get("allow", "").split(","))
    err = ApiError(
        "METHOD_NOT_ALLOWED",
        f"{request.method} is not allowed here; use {allow or 'another method'}.",
    )
    return error_response(err, {"allow": allow})


def _http_error(request: Request, exc: HTTPException) -> Response[bytes]:
    code = request.app.state.sandbox.spec.catalogue.code_for_status(exc.status_code)
    err = ApiError(code, str(exc.detail)[:300], status_override=exc.status_code)
    return error_response(err, dict(exc.headers or {}))


def _crash(request: Request, exc: Exception) -> Response[bytes]:
    # the path, not the query: a key sent in the URL must not reach the log
    log.exception("unhandled error on %s %s", request.method, redact_path(request.url.path))
    return error_response(
        ApiError("INTERNAL_ERROR", "The sandbox failed on this request; see its log.")
    )


def shown_keys(state: SandboxState) -> list[dict[str, str]]:
    """Keys the docs page offers for pasting: all sandbox keys, or only the demo key when hosted."""
    offered = demo_keys(state.recipe) if state.settings.hosted else state.recipe.keys
    return [{"name": k.name, "key": k.key, "access": k.access} for k in offered]


def _idle_making(state: SandboxState) -> IdleMaking | None:
    """What makes deferred records while the server is idle, where records are deferred at
    all: in memory (`store/idle_making.py`)."""
    records = state.workspaces
    if state.shared is not None or not isinstance(records, Workspaces):
        return None
    return None if records.delta.keeps_records else IdleMaking(records)


def create_app(settings: Settings | None = None, state: SandboxState | None = None) -> Litestar:
    settings = settings or Settings()
    state = state or build_state(settings)
    if state.settings.state_url and state.shared is None:  # what changes lives in Redis
        from opsmerge_sandbox.shared.build import share

        share(state)
    # the parts of the state that need the whole state to exist, assembled here, once
    load_faults_file(state)
    if state.settings.hosted:
        policy_for(state)
    if state.events is None:
        state.events = rule_engine_for(state)  # before the stages: the handlers check rules
    if state.events is not None and state.shared is not None:
        # what the rules write outside a request takes the workspace's write lock too
        records = cast("SharedWorkspaces", state.workspaces)
        state.events.exclusive = functools.partial(state.shared.exclusive, records)
    pipeline = Pipeline(build_stages(state))
    routes = build_routes(state.spec.operations, state.spec.base_path, pipeline.run)

    @get("/healthz", include_in_schema=False)
    async def health() -> Response[bytes]:
        if state.shared is not None and not await state.shared.ready():
            from opsmerge_sandbox.shared.link import unavailable

            err = unavailable()  # not ready: every API request would answer this 503
            return json_response(
                503, {"data": {"status": "unavailable", "state": err.body()["error"]}},
                headers=err.headers,
            )
        return json_response(200, {"data": {"status": "ok"}})

    handlers = [*routes, *docs_routes(state, shown_keys(state)), health]
    if not settings.hosted:
        admin = build_admin(state)
        add_fault_endpoints(admin, state, state.faults)
        add_invariant_endpoints(admin, state)
        if state.events is not None:
            add_event_endpoints(admin, state.events)
        handlers += admin.handlers()
    handlers = with_options(handlers)
    cors = None
    if settings.cors_origins:
        cors = CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Prefer", "X-Sandbox-Workspace"],
            expose_headers=[
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "Retry-After",
                "WWW-Authenticate",
                "Deprecation",
                "Sunset",
                "Warning",
                "Preference-Applied",
            ],
            allow_credentials=False,
            max_age=600,
        )
    idle = _idle_making(state)
    app = Litestar(
        route_handlers=handlers,
        exception_handlers={
            NotFoundException: _not_found,
            MethodNotAllowedException: _method_not_allowed,
            HTTPException: _http_error,
            Exception: _crash,
        },
        cors_config=cors,
        lifespan=[
            *hosted_lifespans(state),
            *([state.events.running] if state.events else []),
            *([idle.running] if idle is not None else []),
        ],
        on_shutdown=[state.close],  # queued writes saved, the change log folded into the snapshot
        openapi_config=None,
        logging_config=None,  # leave the host's logging alone (no root logger reconfiguration)
        request_max_body_size=None,
        debug=False,
    )
    app.state.sandbox = state
    app.state.idle_making = idle
    app.state.pipeline = pipeline
    # the API's operations skip Litestar's router (pipeline/dispatch.py); the rest keeps it
    dispatch = ApiDispatch(
        app.asgi_handler,
        app,
        pipeline.run,
        pipeline.admit,
        state.spec.operations,
        state.spec.base_path,
        cors=bool(settings.cors_origins),
    )
    app.asgi_handler = dispatch
    # and beneath ASGI, from the connection's protocol (api_lane.py); with shared state every
    # answer waits on the store, so it runs as a task from the start
    app.state.api_lane = Lane(dispatch, app, eager=state.shared is None)
    return wrap_connection_faults(app)

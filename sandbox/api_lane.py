"""The API's operations answered straight from the connection's protocol, beneath ASGI.

Counted with callgrind, uvicorn's request cycle around an ASGI app (the scope's cycle object, its
event, a task per request, the two `send` messages with their per-header checks) cost ~128k
instructions a request, against ~11k for a bare httptools protocol on the same loop: more than
half a get's whole cost beyond the pipeline's own work. So a request that an API operation
answers (`ApiDispatch.direct`: the same match the ASGI fast path makes) is taken here: its body
gathered as the parser hands it over, the pipeline run as soon as the message is complete (the
whole body handed to it at once, `take_body`, with no `receive` round), and the answer written as
one head-and-body. With the embedded store the pipeline's first step runs
as a plain callback once the loop step that read the request is done (most answers never wait, so
no task is made). One that waits on a future (a write waiting for its group commit to disk) is
parked on it with every other request waiting on the same future, and one callback carries them
all on when it is done: still no task. On shared state (whose client needs a task of its own)
the request is a task from the start, which the loop also starts after the step's reads. What is
written is what uvicorn would have written for the same answer.

Why a callback and not at once, inside the read: at 64 connections a loop step reads many
requests, and each read is a system call whose kernel work evicts the caches the pipeline's code
and data live in. Run after the step's reads, one request after the other, the pipelines find
them warm: more requests a second and a shorter tail for creates, gets and lists alike
(`benchmarks/README.md`, "The API lane"). A request whose body is still coming when its head is
whole starts at once, as before: its answer may not need the body.

Everything else takes uvicorn's own way, unchanged: a request that Litestar answers, one with a
CORS origin, an `Expect: 100-continue`, a chunked or large body, one behind another still being
answered on the connection (pipelining keeps its order), or one arriving while the client is not
reading answers. An answer that a fault reshapes into a Litestar Response (a reset, a truncation,
a trickle) is handed to a uvicorn cycle of its own for delivery. Only the httptools protocol has
this lane; h11 serves everything through ASGI.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from opsmerge_sandbox.faults.connection import ConnectionFaults
from opsmerge_sandbox.pipeline.envelope import EncodedResponse

if TYPE_CHECKING:
    from litestar import Response

    from opsmerge_sandbox.pipeline.dispatch import ApiDispatch, Found

log = logging.getLogger("sandbox")

BODY_MAX = 64 * 1024  # a larger declared body is read through ASGI, under its size limit


class Lane:
    """What the protocol needs of the app: the dispatch, the app it belongs to, and whether a
    first step may run at once."""

    __slots__ = ("app", "dispatch", "eager")

    def __init__(self, dispatch: ApiDispatch, app: Any, eager: bool) -> None:
        self.dispatch = dispatch
        self.app = app
        self.eager = eager

    def open_for(self, app: Any) -> bool:
        """Whether the server calls the app itself and the app's ASGI chain is still the
        connection-fault layer around the dispatch alone. Whatever is put around the API (an
        ASGI wrapper of the app, the access log, a recorder) must see every request, so while
        there is one every request takes the ASGI way."""
        if app is not self.app:
            return False
        handler = app.asgi_handler
        if type(handler) is ConnectionFaults:
            handler = handler.app
        return handler is self.dispatch


def lane_of(app: Any) -> Lane | None:
    """The lane an app offers (`create_app` files it in the app's state), or None."""
    state = getattr(app, "state", None)
    lane = getattr(state, "api_lane", None) if state is not None else None
    return lane if isinstance(lane, Lane) else None


class LaneRequest:
    """A request on the lane, standing where uvicorn keeps its cycle (`protocol.cycle`), with the
    attributes uvicorn and the connection deadlines read there."""

    __slots__ = (
        "body",
        "disconnected",
        "found",
        "keep_alive",
        "more_body",
        "response_complete",
        "scope",
        "started",
        "waiter",
    )

    def __init__(self, scope: Any, found: Found, keep_alive: bool, more_body: bool) -> None:
        self.scope = scope
        self.found = found
        self.keep_alive = keep_alive
        self.body = b""
        self.more_body = more_body  # no body declared: no body deadline to keep
        self.response_complete = False
        self.disconnected = False
        self.started = False
        self.waiter: asyncio.Future[None] | None = None

    @property
    def message_event(self) -> LaneRequest:
        """What uvicorn sets when the connection goes (`set` below)."""
        return self

    def set(self) -> None:
        """The body is whole, or the client has gone: a `receive` waiting for it goes on."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take_body(self) -> bytes | None:
        """The whole body at once, when it has come and the client is still there (what
        `receive` would hand over without waiting); else None, and `receive` reads it."""
        if self.more_body or self.disconnected:
            return None
        body, self.body = self.body, b""
        return body

    async def receive(self) -> dict[str, Any]:
        """ASGI `receive` for the pipeline: the whole body, once, when it has arrived."""
        if self.more_body and not self.disconnected:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        if self.disconnected:
            return {"type": "http.disconnect"}
        body, self.body = self.body, b""
        return {"type": "http.request", "body": body, "more_body": False}


async def _no_send(message: Any) -> None:
    raise RuntimeError("a request on the lane is answered by the pipeline's return value")


# future -> the lane requests parked on it, in the order they came; a future's entry goes when
# it is done (one callback resumes them all, one after the other)
_Parked = tuple["ApiLane", LaneRequest, Coroutine[Any, Any, Any], Any]
_PARKED: dict[Any, list[_Parked]] = {}


def _park(future: Any, parked: _Parked) -> None:
    waiting = _PARKED.get(future)
    if waiting is None:
        waiting = _PARKED[future] = []
        future.add_done_callback(_unpark)
    waiting.append(parked)


def _unpark(future: Any) -> None:
    for protocol, request, run, context in _PARKED.pop(future):
        try:
            protocol._step(request, run, context)
        except Exception:  # one request's failure must not strand those parked after it
            log.exception("answering a request that waited on %r failed", future)


class ApiLane:
    """Mixin for uvicorn's httptools protocol (which supplies everything it reads but `_lane`)."""

    _lane: Lane | None = None
    _unstarted: LaneRequest | None = None  # a lane request whose body is still coming
    _idle_since: float | None = None  # when the last lane answer went, if nothing came since
    _idle_timer: asyncio.TimerHandle | None = None
    _defaults: Any = None  # the server's default fields, as last seen, and their lines
    _default_lines = b""

    app: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    parser: Any
    scope: Any
    url: bytes
    cycle: Any
    pipeline: Any
    flow: Any
    tasks: set[asyncio.Task[Any]]
    server_state: Any
    access_log: bool
    root_path: str
    expect_100_continue: bool
    logger: logging.Logger
    access_logger: logging.Logger
    on_response_complete: Callable[[], None]
    timeout_keep_alive: int

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._lane = lane_of(self.app)

    def on_headers_complete(self) -> None:
        lane = self._lane
        if lane is not None and lane.open_for(self.app):
            request = self._take(lane)
            if request is not None:
                self.cycle = self._unstarted = request
                return
        super().on_headers_complete()  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        self._idle_since = None  # not idle: the keep-alive timer leaves the connection open
        super().data_received(data)  # type: ignore[misc]
        request = self._unstarted
        if request is not None:
            # the head is whole and the body is still coming: the pipeline starts now, as the
            # ASGI way would (an answer that needs no body, a 401 say, goes out before it)
            self._unstarted = None
            self._answer(request)

    def _take(self, lane: Lane) -> LaneRequest | None:
        """The request as a lane request, or None when it takes uvicorn's way."""
        cycle = self.cycle
        if (
            (cycle is not None and not cycle.response_complete)
            or self.pipeline
            or self.expect_100_continue
            or self.flow.write_paused
        ):
            return None
        parser = self.parser
        if parser.should_upgrade():
            return None
        scope = self.scope
        body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if body or not value.isdigit() or int(value) > BODY_MAX:
                    return None  # a repeated length, or a body read through ASGI
                body = True
            elif name == b"transfer-encoding":
                return None
        try:
            url = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            return None
        raw_path = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root = self.root_path
        if root:
            path, raw_path = root + path, root.encode("ascii") + raw_path
        scope["method"] = parser.get_method().decode("ascii")
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = url.query or b""
        version = parser.get_http_version()
        if version != "1.1":
            scope["http_version"] = version
        found = lane.dispatch.direct(scope)
        if found is None:
            return None
        keep_alive = version != "1.0" and parser.should_keep_alive()
        return LaneRequest(scope, found, keep_alive, body)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is LaneRequest:
            if not cycle.response_complete:  # else answered early: the rest is dropped
                cycle.body += body
            return
        super().on_body(body)  # type: ignore[misc]

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is LaneRequest:
            cycle.more_body = False
            if cycle.started:
                cycle.set()
            else:  # the common case: the whole request came in this read
                self._unstarted = None
                lane = self._lane
                if lane is not None and lane.eager:
                    # answered once this loop step's reads are done (see the module's docstring)
                    self.loop.call_soon(self._answer, cycle)
                else:  # a task of its own, whose first step the loop runs after the reads anyway
                    self._answer(cycle)
            return
        super().on_message_complete()  # type: ignore[misc]

    def _answer(self, request: LaneRequest) -> None:
        request.started = True
        lane = self._lane
        assert lane is not None
        dispatch = lane.dispatch
        context = contextvars.copy_context()  # what the request sets stays the request's
        try:
            run = cast(
                "Coroutine[Any, Any, Any]",  # the pipeline's coroutine, not yet started
                dispatch.run(
                    request.found, request.scope, request.receive, _no_send, request.take_body
                ),
            )
        except Exception:
            self._crashed(request)
            return
        if lane.eager:
            self._step(request, run, context)
            return
        self._task(request, run, context)

    def _step(self, request: LaneRequest, run: Coroutine[Any, Any, Any], context: Any) -> None:
        """Run the pipeline on until it answers or waits. A wait on a future parks it there,
        with every other request waiting on the same future (`_park`), rather than making a
        task of it: a group commit to disk is one future for every request in its batch."""
        try:
            waiting = context.run(run.send, None)
        except StopIteration as done:
            self._respond(request, done.value)
            return
        except asyncio.CancelledError:  # what it waited on was cancelled: the server is stopping
            self.transport.close()
            return
        except Exception:
            self._crashed(request)
            return
        if getattr(waiting, "_asyncio_future_blocking", None) is True:
            # taken off, as a task would: a future still marked as being handed over refuses
            # the next request that awaits it ("await wasn't used with future")
            waiting._asyncio_future_blocking = False
            _park(waiting, (self, request, run, context))
            return
        if waiting is None:  # a bare yield (`asyncio.sleep(0)`): a task's first step resumes it
            self._task(request, run, context)
            return
        run.close()  # neither: a task would refuse it too ("bad yield"), and so the request
        try:
            raise RuntimeError(f"the pipeline yielded {waiting!r}, which nothing can wait on")
        except RuntimeError:
            self._crashed(request)

    def _task(self, request: LaneRequest, run: Coroutine[Any, Any, Any], context: Any) -> None:
        task = self.loop.create_task(run, context=context)
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._answered, request))

    def _answered(self, request: LaneRequest, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():  # the server is stopping
            self.transport.close()
            return
        try:
            response = task.result()
        except Exception:
            self._crashed(request)
            return
        self._respond(request, response)

    def _crashed(self, request: LaneRequest) -> None:
        """Answer 500 for the exception being handled (logged with its traceback)."""
        lane = self._lane
        assert lane is not None
        self._respond(request, lane.dispatch.crashed(request.found, request.scope))

    def _respond(self, request: LaneRequest, response: EncodedResponse | Response[bytes]) -> None:
        if type(response) is not EncodedResponse:
            self._deliver(request, response)  # type: ignore[arg-type]
            return
        request.response_complete = True
        if request.disconnected or self.transport.is_closing():
            return
        if self.access_log:  # uvicorn's line, as its cycle writes it
            scope = request.scope
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(scope),
                scope["method"],
                get_path_with_query_string(scope),
                scope["http_version"],
                response.status_code,
            )
        defaults = self.server_state.default_headers  # uvicorn's Date (a new list each tick)
        if defaults is not self._defaults:
            self._defaults = defaults
            self._default_lines = b"".join([b"%s: %s\r\n" % field for field in defaults])
        head = [STATUS_LINE[response.status_code], self._default_lines, response.head_fields()]
        if not request.keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", response.body)
        self.transport.write(b"".join(head))
        if not request.keep_alive:
            self.transport.close()
        self._answered_one()

    def _answered_one(self) -> None:
        """uvicorn's `on_response_complete`, with its keep-alive timer made lazy: rather than a
        timer armed after every answer and cancelled by the next request's first byte, one timer
        per connection that, when it fires, closes the connection only if it has been idle for
        the whole keep-alive time since the last answer (else it is armed for what is left)."""
        if self.pipeline or self.transport.is_closing():
            self.on_response_complete()  # uvicorn's: starts the request held behind this one
            return
        self.server_state.total_requests += 1
        self.flow.resume_reading()
        self._idle_since = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        since = self._idle_since
        if since is None or self.transport.is_closing():
            return  # a request came since: its answer arms the timer again
        left = since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._idle_timer = self.loop.call_later(left, self._idle_check)
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def _deliver(self, request: LaneRequest, response: Response[bytes]) -> None:
        """A Litestar Response (a fault's) goes out through a uvicorn cycle of its own."""
        cycle = RequestResponseCycle(
            scope=request.scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=request.keep_alive,
            on_response=self.on_response_complete,
        )
        cycle.more_body = False
        cycle.disconnected = request.disconnected
        cycle.message_event.set()
        if self.cycle is request:
            self.cycle = cycle
        lane = self._lane
        assert lane is not None
        # the fault layer files the cycle's `send`, which a reset or a truncation closes
        send_it: Any = ConnectionFaults(functools.partial(lane.dispatch.deliver, response))
        task = self.loop.create_task(cycle.run_asgi(send_it))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)



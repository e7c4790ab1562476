"""Limits on the server's connections, so slow and idle clients cannot hold them forever.

What uvicorn offers, and why it is not enough on its own:

- `timeout_keep_alive` closes a connection that stays idle after a response. It is used as is.
- Nothing bounds the time to read a request head. A fresh connection has no timer at all, and the
  keep-alive timer is disarmed by the first byte of the next request, so a client that sends
  nothing, or one header byte a second, keeps its connection (and a file descriptor) forever.
- `limit_concurrency` is checked only once a complete head has arrived (and counts tasks too):
  idle and trickling connections beyond it are accepted and held all the same.
- httptools (uvicorn's default parser) has no limit on the size of a head; h11 has one
  (`h11_max_incomplete_event_size`).

So `protocol_class` subclasses uvicorn's own protocol (httptools or h11, the one the server would
pick) and adds what is missing: a deadline for each request head (from the connection's start, or
from the first byte of a later request), a deadline for each request body, a head size limit that
holds for httptools too, and a cap on open connections: beyond it a new connection gets a 503 in
the error envelope and is closed at once, before it can cost more than an accept. Parsing,
keep-alive, pipelining and everything else stay uvicorn's. A deadline that passes while the server
itself has paused reading (a pipelined request waiting for the one before it, a large body the app
has not consumed yet) waits for the server, not the client, so it is checked again later.

The class also writes each loop step's output of a connection at once (`gathered_writes.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from opsmerge_sandbox.api_lane import ApiLane
from opsmerge_sandbox.catalogue import load_catalogue
from opsmerge_sandbox.gathered_writes import GatheredWrites

log = logging.getLogger("sandbox.connections")

# Descriptors the process needs besides its client connections (listener, store, logs, imports).
DESCRIPTOR_RESERVE = 64


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float  # seconds to receive a complete request head
    keep_alive_timeout: float  # seconds an idle connection stays open after a response
    body_timeout: float  # seconds to receive a request body once its head has arrived
    max_connections: int  # open connections; beyond it new ones get a 503 and are closed
    max_head_bytes: int = 64 * 1024  # request line plus headers


LOCAL = ConnectionLimits(
    header_timeout=10.0, keep_alive_timeout=5.0, body_timeout=30.0, max_connections=1000
)
# Strangers on the internet: shorter patience, and fewer connections so one process keeps its
# memory and descriptors for the visitors who do send requests.
HOSTED = ConnectionLimits(
    header_timeout=5.0, keep_alive_timeout=5.0, body_timeout=15.0, max_connections=512
)


def resolve_limits(
    hosted: bool,
    header_timeout: float | None = None,
    keep_alive_timeout: float | None = None,
    body_timeout: float | None = None,
    max_connections: int | None = None,
) -> ConnectionLimits:
    """The limits for a mode, with any value given explicitly taking the place of the default."""
    base = HOSTED if hosted else LOCAL
    return ConnectionLimits(
        header_timeout=base.header_timeout if header_timeout is None else header_timeout,
        keep_alive_timeout=(
            base.keep_alive_timeout if keep_alive_timeout is None else keep_alive_timeout
        ),
        body_timeout=base.body_timeout if body_timeout is None else body_timeout,
        max_connections=base.max_connections if max_connections is None else max_connections,
        max_head_bytes=base.max_head_bytes,
    )


def fit_descriptor_limit(max_connections: int) -> int:
    """Raise the soft descriptor limit to fit the cap, or lower the cap to fit the hard limit.

    A cap above what the process may open is no cap: accept() fails with EMFILE first, and the
    event loop stops accepting anyone for a while.
    """
    try:
        import resource
    except ImportError:  # no rlimits on this platform
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + DESCRIPTOR_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - DESCRIPTOR_RESERVE))


def uvicorn_options(limits: ConnectionLimits, http: str = "auto") -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` that put the limits in force (on the loop that
    accepts waiting connections all at once, `sandbox/accept.py`)."""
    from opsmerge_sandbox.accept import LOOP

    return {
        "loop": LOOP,
        "http": protocol_class(limits, http),
        "timeout_keep_alive": limits.keep_alive_timeout,
        "h11_max_incomplete_event_size": limits.max_head_bytes,
    }


def protocol_class(limits: ConnectionLimits, http: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (`auto`, `httptools` or `h11`) with the limits built in."""
    if http not in ("auto", "httptools", "h11"):
        raise ValueError(f"http must be auto, httptools or h11, not {http!r}")
    if http != "h11":
        try:
            return _httptools_class(limits)
        except ImportError:
            if http == "httptools":
                raise
    return _h11_class(limits)


def _closing_answer(status: int, message: str, extra: str = "") -> bytes:
    """A whole answer in the error envelope, written straight to a connection about to close.

    Written raw because no request has been parsed (or can be) for the parser to answer.
    """
    body = json.dumps(
        {"error": {"code": load_catalogue().code_for_status(status), "message": message}}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"{extra}connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _prepare(cls: type[_Deadlines], limits: ConnectionLimits) -> None:
    """Give a protocol class its limits and the answers it writes, built once per server."""
    cls.limits = limits
    cls.refusal = _closing_answer(
        503,
        f"the server already holds its limit of {limits.max_connections} open connections; "
        "retry in a moment",
        "retry-after: 1\r\n",
    )
    cls.head_too_large = _closing_answer(
        400, f"the request line and headers are over the limit of {limits.max_head_bytes} bytes"
    )


class _Deadlines:
    """The limits, over either uvicorn protocol (which supplies loop, transport, flow, cycle)."""

    limits: ClassVar[ConnectionLimits]
    refusal: ClassVar[bytes]
    head_too_large: ClassVar[bytes]
    _warned_at: ClassVar[float] = 0.0

    def send_400_response(self, msg: str) -> None:
        """uvicorn's own 400, for bytes that are not HTTP/1.1, in the error envelope."""
        self.transport.write(
            _closing_answer(400, f"The request is not valid HTTP/1.1 ({msg.rstrip('.')}).")
        )
        self.transport.close()

    # Per connection; class-level defaults so uvicorn's __init__ stays untouched.
    _head_due = False  # a head has begun (or the connection is new) and is not whole yet
    _head_deadline: asyncio.TimerHandle | None = None
    _body_deadline: asyncio.TimerHandle | None = None
    _body_due: Any = None  # the cycle whose head came in this read, while its body may be coming
    _head_bytes = 0
    _refused = False

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    connections: set[Any]
    flow: Any
    cycle: Any
    timeout_keep_alive_task: asyncio.TimerHandle | None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.limits.max_connections:
            self._refuse()
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self._cancel_body_deadline()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head_due:
            # While a head is due, count the bytes up to the blank line that ends it (a read may
            # carry a body too, which does not count), and refuse before the parser sees them.
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end + 4
            if self._head_bytes > self.limits.max_head_bytes:
                self._refused = True
                self.transport.write(self.head_too_large)
                self.transport.close()
                return
        super().data_received(data)  # type: ignore[misc]
        if self._head_due and self._head_deadline is None and not self._refused:
            # a head begun in this read and not whole by its end: its deadline runs from now
            # (one that is whole within the read, the common case, never needs a timer)
            self._await_head()
        cycle = self._body_due
        if cycle is not None:
            # a body begun in this read and not whole by its end: likewise (a create's body
            # nearly always comes in the read that brought its head)
            self._body_due = None
            if cycle.more_body and self.cycle is cycle and not self._refused:
                self._body_deadline = self.loop.call_later(
                    self.limits.body_timeout, self._body_overdue, cycle
                )

    def _refuse(self) -> None:
        self._refused = True
        now = time.monotonic()
        if now - type(self)._warned_at > 10:
            type(self)._warned_at = now
            log.warning(
                "open connections at the limit of %d: refusing new ones",
                self.limits.max_connections,
            )
        self.transport.write(self.refusal)
        self.transport.close()

    def _await_head(self) -> None:
        """A request head is due: arm its deadline unless one is already running."""
        self._head_due = True
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(
                self.limits.header_timeout, self._head_overdue
            )

    def _head_received(self) -> None:
        """A complete head arrived: its deadline ends and the body's (if any) starts (armed
        when the read that brought the head ends without the whole body)."""
        self._head_due = False
        self._cancel_head_deadline()
        self._cancel_body_deadline()
        self._head_bytes = 0
        cycle = self.cycle
        if cycle is not None and cycle.more_body:
            self._body_due = cycle  # its deadline is armed at the end of the read, if still due

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _cancel_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _ours(self) -> bool:
        """Still this protocol's open connection (not closed, not handed to a WebSocket)."""
        return not self.transport.is_closing() and self.transport.get_protocol() is self

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if not self._ours():
            return
        if self.flow.read_paused:  # the server stopped reading, not the client
            self._await_head()
            return
        log.info("closing a connection whose request head did not arrive in time")
        self.transport.close()

    def _body_overdue(self, cycle: Any) -> None:
        self._body_deadline = None
        if not self._ours() or self.cycle is not cycle:
            return
        if cycle.response_complete:
            # Answered before its body was read. uvicorn's keep-alive timer is disarmed by the
            # body bytes that come after the answer and never armed again, so unless that timer
            # or a next head's deadline still watches the connection, nothing would close it.
            if self.timeout_keep_alive_task is None and self._head_deadline is None:
                self.transport.close()
            return
        if not cycle.more_body:
            return
        if self.flow.read_paused:  # the app has not consumed what it has: the wait is ours
            self._body_deadline = self.loop.call_later(
                self.limits.body_timeout, self._body_overdue, cycle
            )
            return
        log.info("closing a connection whose request body did not arrive in time")
        self.transport.close()


def _httptools_class(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class LimitedHttpToolsProtocol(_Deadlines, GatheredWrites, ApiLane, HttpToolsProtocol):
        """httptools with deadlines (its parser reports where each message and head begin and
        end) and the API's own lane."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_due = True  # its deadline is armed at the end of the read, if still due

        def on_headers_complete(self) -> None:
            before = self.cycle
            super().on_headers_complete()
            if self.cycle is not before:
                self._head_received()

    _prepare(LimitedHttpToolsProtocol, limits)
    return LimitedHttpToolsProtocol


def _h11_class(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LimitedH11Protocol(_Deadlines, GatheredWrites, H11Protocol):
        """h11 with deadlines: a head is due while the client is idle in h11's state machine."""

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE and not self._refused:
                self._await_head()
            super().data_received(data)

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:
                self._head_received()

    _prepare(LimitedH11Protocol, limits)
    return LimitedH11Protocol

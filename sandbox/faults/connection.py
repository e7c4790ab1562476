"""Connection-level faults: a reset, a truncated body, malformed JSON, a slow trickle.

These break the transport, not the answer, so they need the server's raw ASGI `send`. Litestar's
own `middleware=[...]` never sees it (its exception middleware wraps `send` first), so
`ConnectionFaults` sits around the app's outermost ASGI handler and only files the raw `send` in
a context variable: a plain function, no extra coroutine, so a request without a fault pays one
store. Not in the scope: the server's `send` is a method of the object that holds the scope, so
filing it there made every request a reference cycle that only the cyclic collector frees, and
its full passes grew with the store. When the fault stage decides to break an answer, it swaps
the final Litestar Response for a `BrokenResponse`, whose ASGI callable passes the real answer's
messages through `_apply`. They still go out through Litestar's `send` (so CORS headers stay on,
and browsers see the fault rather than a CORS refusal); the raw `send` only leads to the
transport that a reset or truncation closes.

A reset and a truncation close the socket through the server's transport: with uvicorn (both its
httptools and h11 protocols) `send` is a method of the connection's cycle, which holds the
transport. A reset sets SO_LINGER to zero and aborts, so the peer gets a TCP RST and not one byte;
a truncation sends the headers and part of the body, then closes. Under a server whose `send`
hides its transport (or an in-process ASGI client) the fallback raises `ConnectionDropped` after
the partial answer, which makes ASGI servers drop the connection and in-process clients raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import struct
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

# Each request runs in its own task, hence its own context: the value is the current request's.
_RAW_SEND: contextvars.ContextVar[Send | None] = contextvars.ContextVar("raw_send", default=None)


class ConnectionDropped(ConnectionError):
    """Raised to make an ASGI server drop a connection when its transport is out of reach."""


@dataclass(frozen=True, slots=True)
class ConnectionFault:
    kind: str  # reset | truncate | malformed_json | trickle
    chunk_bytes: int = 64
    interval_s: float = 0.1


class ConnectionFaults:
    """Around the outermost ASGI handler: keeps the server's own `send` within reach."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        _RAW_SEND.set(send)
        return self.app(scope, receive, send)


class _BrokenASGI:
    """Runs the real ASGI answer, but hands its messages to `_apply` to break on the way out."""

    def __init__(self, inner: Any, fault: ConnectionFault) -> None:
        self.inner = inner
        self.fault = fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Messages still go through Litestar's send (CORS headers, its notion of "started");
        # the raw send only leads to the transport, to close it.
        raw: Any = _RAW_SEND.get()
        pending: list[Message] = []

        async def breaking(message: Message) -> None:
            await _apply(self.fault, message, pending, send, raw)

        await self.inner(scope, receive, breaking)


class BrokenResponse(Response[bytes]):
    """A Response that breaks its own delivery with a connection fault."""

    fault: ConnectionFault

    def to_asgi_response(self, app: Any, request: Request, **kwargs: Any) -> Any:
        return _BrokenASGI(super().to_asgi_response(app, request, **kwargs), self.fault)


def broken(response: Response[bytes], fault: ConnectionFault) -> Response[bytes]:
    """The same answer, set to break in transit."""
    out = BrokenResponse(
        content=response.content,
        status_code=response.status_code,
        media_type=response.media_type,
        headers=dict(response.headers),
    )
    out.fault = fault
    return out


async def _apply(
    fault: ConnectionFault, message: Message, pending: list[Message], send: Send, raw: Any
) -> None:
    """Handle one ASGI message of an answer that must break; the start waits for the body."""
    if message["type"] == "http.response.start":
        if fault.kind == "reset":
            await _reset(send, raw, message)
        else:
            pending.append(message)
        return
    if message["type"] != "http.response.body" or not pending:
        return  # a reset answer, or a message after the connection was dropped
    start = pending[0]
    pending.append(message)
    if message.get("more_body", False):
        return
    body = b"".join(m.get("body", b"") for m in pending[1:])  # type: ignore[misc]
    pending.clear()
    if fault.kind == "truncate":
        await send(start)
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        await _close(raw)
    elif fault.kind == "malformed_json":
        broken = _malformed(body)
        await send({**start, "headers": _with_length(start.get("headers", []), len(broken))})  # type: ignore[arg-type]
        await send({"type": "http.response.body", "body": broken, "more_body": False})
    else:
        await send(start)
        await _trickle(body, fault, send, raw)


def _malformed(body: bytes) -> bytes:
    """The first half of the real answer: what a proxy cut mid-stream hands a client as 200 JSON."""
    half = body[: max(1, len(body) // 2)].decode("utf-8", "ignore").encode()
    return half if half else b"{"


def _with_length(headers: Any, length: int) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    return [*kept, (b"content-length", str(length).encode())]


async def _trickle(body: bytes, fault: ConnectionFault, send: Send, raw: Any) -> None:
    """The body in small pieces with pauses; stops early once the client has hung up."""
    owner, _ = _cycle(raw)
    step = max(1, fault.chunk_bytes)
    for offset in range(0, len(body), step):
        last = offset + step >= len(body)
        piece = body[offset : offset + step]
        await send({"type": "http.response.body", "body": piece, "more_body": not last})
        if last or getattr(owner, "disconnected", False):
            return
        await asyncio.sleep(fault.interval_s)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _cycle(raw: Any) -> tuple[Any, Any]:
    """The connection cycle and transport behind a server's `send`, when the server exposes them."""
    owner = getattr(raw, "__self__", None)
    transport = getattr(owner, "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        return None, None
    return owner, transport


async def _until_disconnected(owner: Any) -> None:
    """Let the server notice the loss, so it neither answers 500 nor logs an error."""
    for _ in range(200):
        if getattr(owner, "disconnected", True):
            return
        await asyncio.sleep(0.001)


async def _reset(send: Send, raw: Any, start: Message) -> None:
    owner, transport = _cycle(raw)
    if transport is None:  # the server would answer 500 to an exception before the start
        await send(start)
        raise ConnectionDropped("connection reset on purpose by a sandbox fault")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the abort drops the connection either way
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await _until_disconnected(owner)


async def _close(raw: Any) -> None:
    owner, transport = _cycle(raw)
    if transport is None:
        raise ConnectionDropped("connection closed mid-body on purpose by a sandbox fault")
    transport.close()
    await _until_disconnected(owner)


def wrap_connection_faults(app: Litestar) -> Litestar:
    """Wrap the app's outermost ASGI handler, the first place that holds the server's raw send."""
    if not isinstance(app.asgi_handler, ConnectionFaults):
        app.asgi_handler = ConnectionFaults(app.asgi_handler)
    return app

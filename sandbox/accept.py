"""Accepting every waiting connection at once: the event loop the server runs on.

uvloop is the fastest loop uvicorn offers here (asyncio's own answers a sixth of the requests on
this machine), but its libuv accepts one connection per loop iteration (libuv#3696). Under load an
iteration serves every busy connection once, ~10 ms at 64 connections of creates, so a burst of
new connections queued one iteration each: the 64th of a test suite's fresh connections waited
~0.6 s before its first byte was read, and a client opening a connection per request waited in
line behind every other one.

`BatchAcceptLoop` is uvloop's loop whose `create_server(sock=...)` (how uvicorn serves the socket
`serve` bound) watches the listening socket itself and accepts until the kernel's queue is empty,
as asyncio's own loop does, handing each connection to uvloop's transport. Everything else is
uvloop's. uvicorn makes it by name: `Config(loop=LOOP)`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvloop

from opsmerge_sandbox import start_together

log = logging.getLogger("opsmerge_sandbox.accept")

LOOP = "opsmerge_sandbox.accept:BatchAcceptLoop"  # uvicorn's `loop` option: what makes the loop
WORKER_LOOP = "opsmerge_sandbox.accept:WorkerAcceptLoop"  # the same, for `serve --workers`
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_RETRY_AFTER_S = 0.1  # when the process is out of descriptors: accept again after this


class BatchAcceptServer(asyncio.AbstractServer):
    """A listening socket whose waiting connections are all accepted per readiness."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._factory = factory
        self._sock = sock
        self._backlog = backlog
        self._serving = False
        self._closed = asyncio.Event()
        self._connecting: set[asyncio.Task[Any]] = set()
        sock.setblocking(False)
        sock.listen(backlog)  # as asyncio does: the socket may come bound but not listening
        self._start()

    def _start(self) -> None:
        self._loop.add_reader(self._sock.fileno(), self._accept)
        self._serving = True

    def _accept(self) -> None:
        for _ in range(self._backlog):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                if exc.errno not in _OUT_OF_FILES:
                    raise
                # level-triggered: a full process would be told again at once; pause instead
                log.warning("cannot accept connections: %s; retrying", exc.strerror)
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(_RETRY_AFTER_S, self._resume)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    def _resume(self) -> None:
        if self._serving:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:
            conn.close()  # the peer went away before its transport was set up

    # asyncio.AbstractServer: what uvicorn uses to stop and report
    def close(self) -> None:
        if self._serving:
            self._serving = False
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        """Serve (it already does from creation) until `close()`."""
        await self._closed.wait()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._sock.fileno() < 0 else (self._sock,)


class BatchAcceptLoop(uvloop.Loop):
    """uvloop, accepting in batches on a socket it is handed (see the module docstring)."""

    async def create_server(  # type: ignore[override]
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], *args: Any, **kwargs: Any
    ) -> asyncio.AbstractServer:
        sock = kwargs.get("sock")
        if sock is None or kwargs.get("ssl") is not None or args:
            return await super().create_server(protocol_factory, *args, **kwargs)
        return BatchAcceptServer(self, protocol_factory, sock, int(kwargs.get("backlog") or 100))


def reserve(sock: socket.socket) -> socket.socket:
    """For worker processes: a socket bound where `sock` listens, holding the port for them
    without listening (each worker listens on a socket of its own; see `WorkerAcceptLoop`).
    `sock` is closed. Where the system has no `SO_REUSEPORT`, `sock` itself is kept and shared.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        return sock
    family, address = sock.family, sock.getsockname()
    sock.close()
    held = _port_sharing_socket(family, address)
    held.set_inheritable(True)
    return held


def _port_sharing_socket(family: int, address: Any, backlog: int | None = None) -> socket.socket:
    """A TCP socket bound to `address` beside others that share the port (`SO_REUSEPORT`),
    listening when given a backlog."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if backlog is not None:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _own_socket(shared: socket.socket, backlog: int) -> socket.socket:
    """This worker's listening socket beside the others on the reserved address; the shared
    one itself (listening) when it was not reserved or another socket cannot join it."""
    reserved = (
        hasattr(socket, "SO_REUSEPORT")
        and shared.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        and not shared.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    )
    if not reserved:
        return shared
    try:
        return _port_sharing_socket(shared.family, shared.getsockname(), backlog)
    except OSError as exc:
        log.warning("worker serves the shared socket (cannot open its own: %s)", exc)
        return shared


class WorkerAcceptLoop(BatchAcceptLoop):
    """For one of several worker processes (see the module docstring)."""

    async def create_server(  # type: ignore[override]
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], *args: Any, **kwargs: Any
    ) -> asyncio.AbstractServer:
        sock = kwargs.get("sock")
        if sock is not None and not args:
            kwargs["sock"] = _own_socket(sock, int(kwargs.get("backlog") or 100))
            await start_together.all_ready()  # serve once every worker listens (start_together.py)
        return await super().create_server(protocol_factory, *args, **kwargs)

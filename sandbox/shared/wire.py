"""One pipelined connection to the shared store, for the request path.

Through redis-py's asyncio client a read's one script call took about a quarter of the worker's
time (a pool checkout, a pipeline object, and a timeout context and a parser round per reply).
Here every command sent in one event-loop turn leaves in one write on one connection, packed in
C (hiredis); replies are parsed in C as they arrive and handed to the waiting requests in order.
Redis runs a connection's commands in the order they came, so one connection loses nothing
against many.

Failure is what redis-py reports, so callers keep one `except`: a store that cannot be reached
raises `redis.ConnectionError`; a command unanswered within the timeout raises
`redis.TimeoutError` and takes the connection down with every command still waiting on it (their
answers can no longer be told apart); the next command connects again. Error replies raise
`redis.exceptions.ResponseError` (`NoScriptError` for a script the store lacks).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import re
import socket
import ssl
from collections.abc import Coroutine
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis
import redis.exceptions

_pack = hiredis.pack_command


def _error(reply: hiredis.ReplyError) -> redis.exceptions.ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return redis.exceptions.NoScriptError(message)
    return redis.exceptions.ResponseError(message)


class _Connection(asyncio.Protocol):
    """A connection's transport, its parser, and the commands written and not yet answered."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.reader = hiredis.Reader()
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = (
            collections.deque()
        )
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, out: list[bytes], waiters: list[asyncio.Future[Any]]) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        pending = self.pending
        for waiter in waiters:
            pending.append((waiter, now))
        if self._timer is None:
            self._timer = loop.call_at(now + self.wire.timeout, self._check)

    def _check(self) -> None:
        """The oldest command's time is up: the store is too slow, or gone."""
        self._timer = None
        if not self.pending or self.closed:
            return
        loop = asyncio.get_running_loop()
        due = self.pending[0][1] + self.wire.timeout
        if due > loop.time():
            self._timer = loop.call_at(due, self._check)
            return
        self._fail(redis.TimeoutError, "Timeout reading from the shared store")
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:
                self._fail(redis.ConnectionError, "The shared store sent an unreadable reply")
                if self.transport is not None:
                    self.transport.abort()
                return
            if reply is False:
                return
            waiter, _ = pending.popleft()
            if not waiter.done():
                if isinstance(reply, hiredis.ReplyError):
                    waiter.set_exception(_error(reply))
                else:
                    waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.ConnectionError, "The shared store closed the connection")

    def _fail(self, kind: type[Exception], message: str) -> None:
        """Every command still waiting fails; the connection is done."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.wire.conn is self:
            self.wire.conn = None
        pending, self.pending = self.pending, collections.deque()
        for waiter, _ in pending:
            if not waiter.done():
                waiter.set_exception(kind(message))


class Wire:
    """Commands to one store, each answered by a future; all sent in a loop turn go together."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.db = int(parts.path.strip("/") or 0)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password is not None else None
        self.tls = parts.scheme == "rediss"
        self.timeout = timeout
        self.conn: _Connection | None = None
        self.scripts: list[WireScript] = []  # loaded on every new connection, before its use
        self._out: list[bytes] = []
        self._waiters: list[asyncio.Future[Any]] = []
        self._flushing = False
        self._connecting: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Send one command (with the others of this loop turn); its answer."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._queue(loop, _pack(args), waiter)
        return waiter

    def call_packed(self, command: bytes) -> asyncio.Future[Any]:
        """`call` for a command already packed (`pack`): a caller that sends the same command
        often packs it once."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._queue(loop, command, waiter)
        return waiter

    def _queue(
        self, loop: asyncio.AbstractEventLoop, command: bytes,
        waiter: asyncio.Future[Any],
    ) -> None:
        if loop is not self._loop:  # a connection serves the loop that opened it
            self._loop = loop
            self.close()
        self._out.append(command)
        self._waiters.append(waiter)
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if not self._out:
            return
        conn = self.conn
        if conn is None or conn.closed:
            if self._connecting is None:
                loop = asyncio.get_running_loop()
                self._connecting = loop.create_task(self._connect())
            return  # sent once connected
        out, waiters = self._out, self._waiters
        self._out, self._waiters = [], []
        conn.send(out, waiters)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            conn = await self._open(loop)
        except Exception as exc:  # everyone queued hears of it; the next command tries again
            waiters, self._out, self._waiters = self._waiters, [], []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(self._refused(exc))
        else:
            self.conn = conn
            self._flush()
        finally:
            self._connecting = None

    def _refused(self, exc: Exception) -> redis.ConnectionError:
        """What a command hears when no connection could be opened: redis-py's error kinds
        (a refused password is its `AuthenticationError`), naming the store and the cause."""
        where = f"The shared store at {self.host}:{self.port}"
        if isinstance(exc, redis.exceptions.ResponseError):  # AUTH or SELECT refused
            message = str(exc)
            if message.startswith(("NOAUTH", "WRONGPASS")):
                return redis.exceptions.AuthenticationError(f"{where} refused: {message}")
            return redis.ConnectionError(f"{where} refused: {message}")
        return redis.ConnectionError(f"{where} cannot be reached ({type(exc).__name__})")

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        context = ssl.create_default_context() if self.tls else None
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(self), self.host, self.port,
                                   ssl=context),
            self.timeout,
        )
        hello: list[tuple[Any, ...]] = []
        if self.password is not None:
            hello.append(("AUTH", self.username, self.password) if self.username
                         else ("AUTH", self.password))
        if self.db:
            hello.append(("SELECT", self.db))
        hello += [("SCRIPT", "LOAD", script.script) for script in self.scripts]
        if hello:
            waiters: list[asyncio.Future[Any]] = [loop.create_future() for _ in hello]
            conn.send([_pack(h) for h in hello], waiters)
            try:
                answers = await asyncio.wait_for(
                    asyncio.gather(*waiters, return_exceptions=True),
                    self.timeout,
                )
                refused = [a for a in answers if isinstance(a, BaseException)]
                if refused:
                    raise refused[0]
            except BaseException:
                if conn.transport is not None:
                    conn.transport.abort()
                raise
        return conn

    def close(self) -> None:
        """Let the connection go; what was queued and not sent fails (the next call connects)."""
        conn, self.conn = self.conn, None
        waiters, self._out, self._waiters = self._waiters, [], []
        self._flushing, self._connecting = False, None
        with contextlib.suppress(RuntimeError):  # the loop that served them may be closed
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(redis.ConnectionError("The connection was closed"))
            if conn is not None and conn.transport is not None:
                conn.transport.close()


_INDEXED = re.compile(r"\b(KEYS|ARGV)\[([^\]]*)\]")


def rebased(part: str, keys: int, args: int) -> str:
    """A script's part that also runs alone, to run inline in a larger script whose keys and
    arguments for it start `keys` and `args` further on: each KEYS[i] and ARGV[i] moved by that
    much. Inline, a part costs the store only its own commands; as a Lua function of tables of
    its keys and arguments it cost a closure and two tables a run, and the store's garbage
    collector their sweep. The part leaves its results in locals; an index it computes, or a
    `return` of its own, could not be moved, so such a part is refused."""
    if re.search(r"^return\b", part, re.M):
        raise ValueError("a rebased part must leave its results in locals, not return them")

    def move(found: re.Match[str]) -> str:
        kind, index = found[1], found[2]
        if not index.isdigit():
            raise ValueError(f"a rebased part indexes {kind}[{index}]: only literal indices move")
        return f"{kind}[{int(index) + (keys if kind == 'KEYS' else args)}]"

    return _INDEXED.sub(move, part)


def lua_function(name: str, body: str) -> str:
    """A script's text as a local Lua function of its own KEYS and ARGV, for a script made of
    parts that also run alone."""
    return f"local function {name}(KEYS, ARGV)\n{body}\nend\n"


class WireScript:
    """A Lua script run by EVALSHA on the wire; loaded and run again where the store lacks it."""

    def __init__(self, wire: Wire, source: str) -> None:
        self.wire = wire
        self.script = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        wire.scripts.append(self)

    def pack(self, keys: list[str], args: list[Any]) -> bytes:
        """A run of this script as the bytes `send_packed` sends (for a run made often)."""
        return _pack(("EVALSHA", self.sha, len(keys), *keys, *args))

    def send(self, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue a run now (it reaches the store after every command queued before it); pass
        the future to `answer`."""
        return self.wire.call_packed(self.pack(keys, args))

    def send_packed(self, command: bytes) -> asyncio.Future[Any]:
        """`send` for a run packed beforehand; pass the future to `answer_packed`."""
        return self.wire.call_packed(command)

    async def answer(self, sent: asyncio.Future[Any], keys: list[str], args: list[Any]) -> Any:
        """The answer of a run `send` queued; if the store lacked the script (flushed since this
        connection loaded it), it is loaded and run again."""
        try:
            return await sent
        except redis.exceptions.NoScriptError:
            return await self._run_again(self.pack(keys, args))

    async def answer_packed(self, sent: asyncio.Future[Any], command: bytes) -> Any:
        """`answer` for a run `send_packed` queued."""
        try:
            return await sent
        except redis.exceptions.NoScriptError:
            return await self._run_again(command)

    async def _run_again(self, command: bytes) -> Any:
        await self.wire.call("SCRIPT", "LOAD", self.script)
        return await self.wire.call_packed(command)

    def __call__(self, keys: list[str], args: list[Any]) -> Coroutine[Any, Any, Any]:
        return self.answer(self.send(keys, args), keys, args)

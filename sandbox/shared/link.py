"""The connection to the shared store, its key names, and what an unreachable store answers.

One `limits` Redis storage (redis-py's asyncio client) carries the request path, so the rate
windows run on `limits`' own Lua scripts and every other command shares its connection pool; a
small synchronous client serves the rare control operations. Every key of one sandbox lives under
a namespace drawn from its spec and recipe (seed included): hosts started with the same inputs
and state URL share a sandbox, and a sandbox with other inputs never reads their changes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hiredis
import redis
import redis.asyncio
import redis.exceptions
from limits.aio.storage import RedisStorage

from opsmerge_sandbox.errors import ApiError

T = TypeVar("T")
SOCKET_TIMEOUT = 2.0  # seconds a command may take before the store counts as unreachable
MAX_CONNECTIONS = 256  # per worker: requests beyond it wait for a connection
RETRY_AFTER = "1"  # seconds a client should wait after a STATE_UNAVAILABLE answer
SCHEMES = ("redis", "rediss", "valkey", "valkeys")
# what a store that is down or slow raises; the commands themselves never fail otherwise
STORE_DOWN: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
UNREACHABLE: tuple[type[Exception], ...] = (*STORE_DOWN, OSError)


class StateUrlError(ValueError):
    """A `--state` value that is not a usable store URL."""


def check_url(url: str) -> str:
    """The URL with a `valkey://` scheme spelled as redis-py reads it (same protocol)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise StateUrlError(
            f"--state {url!r}: give redis://HOST:PORT/DB (or valkey://, rediss:// for TLS)"
        )
    if not parts.hostname:
        raise StateUrlError(f"--state {url!r}: the URL names no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise StateUrlError(f"--state {url!r}: the database must be a number (redis://host:6379/0)")
    return url.replace("valkey", "redis", 1) if parts.scheme.startswith("valkey") else url


def shown_url(url: str) -> str:
    """The URL without any password, for banners and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=f"{user}{host}{port}").geturl()


def namespace(inputs: Iterable[bytes]) -> str:
    """`om:<digest>:`: the key prefix of one (spec, recipe, seed)."""
    digest = hashlib.sha256()
    for part in inputs:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return f"om:{digest.hexdigest()[:16]}:"


def unavailable(exc: BaseException | None = None) -> ApiError:
    """The answer while the shared store cannot be reached: 503, and when to try again."""
    why = f" ({type(exc).__name__})" if exc is not None else ""
    return ApiError(
        "STATE_UNAVAILABLE",
        f"The sandbox's shared state store is unreachable{why}, so nothing was read or changed; "
        f"retry after {RETRY_AFTER} s.",
        headers={"retry-after": RETRY_AFTER},
    )


class Batched:
    """One script, called by many requests at once, sent in one pipeline per event-loop turn.

    Each call is the script's own EVALSHA with its own keys and answer; calls made in the same
    turn of the event loop share one write and one read on one connection instead of a pair of
    system calls each (the costliest part of a call on a busy machine). A store that lacks the
    script answers NOSCRIPT for those calls: the script is loaded and they are sent again.
    """

    def __init__(self, client: Any, script: Any) -> None:
        self.client = client
        self.script = script
        self._queue: list[tuple[list[Any], asyncio.Future[Any]]] = []

    def __call__(self, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._send)
        self._queue.append(([len(keys), *keys, *args], future))
        return future

    def _send(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        _sending.add(task)
        task.add_done_callback(_sending.discard)

    async def _run(self, batch: list[tuple[list[Any], asyncio.Future[Any]]]) -> None:
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for call, _ in batch:
                pipe.evalsha(self.script.sha, *call)
            try:
                answers = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # every caller hears of it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            missing = [i for i, a in enumerate(answers)
                       if isinstance(a, redis.exceptions.NoScriptError)]
            if attempt == 1 and missing:
                try:
                    await self.client.script_load(self.script.script)
                except Exception as exc:
                    for i in missing:
                        batch[i][1].set_exception(exc)
                    missing = []
            for i, ((_, future), answer) in enumerate(zip(batch, answers, strict=True)):
                if i in missing or future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
            batch = [batch[i] for i in missing]
            if not batch:
                return


_sending: set[asyncio.Task[None]] = set()  # batches under way (kept from the collector)


class _CPacked(redis.asyncio.Connection):
    """redis-py's asyncio connection packs each command in Python (its sync one uses hiredis);
    hiredis packs it in C, the larger part of what a request's one script call costs here."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:  # "SCRIPT LOAD": one word per argument
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


class Link:
    """The clients of one sandbox's shared store, and its key names."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = check_url(url)
        self.prefix = prefix
        options: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": SOCKET_TIMEOUT,
            "retry_on_timeout": False,
            "health_check_interval": 0,
        }
        # a request waits for a free connection (up to the timeout) rather than failing
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.url, max_connections=MAX_CONNECTIONS, timeout=SOCKET_TIMEOUT,
            connection_class=_CPacked, **options,
        )
        # the rate windows' storage; its client carries every other command of the request path
        shared_pool: Any = pool  # limits types its options as scalars; it hands them on
        self.limits = RedisStorage(
            "async+" + self.url, implementation="redispy", key_prefix=prefix + "rate",
            connection_pool=shared_pool,
        )
        bridge: Any = self.limits.bridge  # redis-py's, as `implementation` asks
        self.bridge = bridge
        self.client: Any = bridge.get_connection()
        self.sync: Any = redis.Redis.from_url(self.url, **options)
        self._scripts: list[Any] = []  # every script queued in pipelines, to load on NOSCRIPT

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def script(self, source: str) -> Any:
        """A Lua script run by EVALSHA on the async client (loaded on first use)."""
        script = self.client.register_script(source)
        self._scripts.append(script)
        return script

    @staticmethod
    def queue(pipe: Any, script: Any, keys: list[str], args: list[Any]) -> None:
        """Add a script's run to a pipeline, by its digest alone (see `execute`)."""
        pipe.evalsha(script.sha, len(keys), *keys, *args)

    def batched(self, source: str) -> Batched:
        """A script for the request path, its concurrent calls sent together (`Batched`)."""
        return Batched(self.client, self.script(source))

    async def run(self, build: Callable[..., T], *args: Any) -> tuple[list[Any], T]:
        """Fill a pipeline with `build(pipe, *args)` and send it: one round trip; what `build`
        returned.

        redis-py would first ask whether each script of a pipeline is loaded (a second round
        trip, every time); instead a store that lacks them (new, or restarted) answers NOSCRIPT,
        and the scripts are loaded and the pipeline built and sent again. A script Redis lacked
        did not run, and the pipelines change nothing outside their scripts, so sending one
        again is safe."""
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            made = build(pipe, *args)
            try:
                return list(await pipe.execute()), made
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                for script in self._scripts:
                    await self.client.script_load(script.script)
        raise AssertionError("unreachable")

    def sync_script(self, source: str) -> Any:
        return self.sync.register_script(source)

    def rate_key(self, key: str) -> str:
        """The Redis key `limits` keeps a rate window under."""
        return str(self.bridge.prefixed_key(key))

    def ping(self) -> None:
        """Raise (one of UNREACHABLE) when the store cannot be reached now."""
        self.sync.ping()

    async def aping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except UNREACHABLE:
            return False

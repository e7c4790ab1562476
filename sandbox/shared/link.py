"""The connection to the shared store, its key names, and what an unreachable store answers.

The request path's scripts (the rate windows among them, on `limits`' own Lua text) and the
journal go over one pipelined connection (`wire.Wire`); `limits`' Redis storage (redis-py's
asyncio client) carries the rest of the async commands, and a small synchronous client the rare
control operations. Every key of one sandbox lives under a namespace drawn from its spec and
recipe (seed included): hosts started with the same inputs and state URL share a sandbox, and a
sandbox with other inputs never reads their changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.exceptions
from limits.aio.storage import RedisStorage

from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.shared.wire import Wire, WireScript

T = TypeVar("T")
SOCKET_TIMEOUT = 2.0  # seconds a command may take before the store counts as unreachable
MAX_CONNECTIONS = 256  # per worker, for what the wire does not carry: callers beyond it wait
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
            self.url, max_connections=MAX_CONNECTIONS, timeout=SOCKET_TIMEOUT, **options,
        )
        # the rate windows' storage (its script's text runs in each admission, on the wire); its
        # client carries the async commands the request path does not send (control, clock)
        shared_pool: Any = pool  # limits types its options as scalars; it hands them on
        self.limits = RedisStorage(
            "async+" + self.url, implementation="redispy", key_prefix=prefix + "rate",
            connection_pool=shared_pool,
        )
        bridge: Any = self.limits.bridge  # redis-py's, as `implementation` asks
        self.bridge = bridge
        self.client: Any = bridge.get_connection()
        self.sync: Any = redis.Redis.from_url(self.url, **options)
        self.wire = Wire(self.url, SOCKET_TIMEOUT)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def script(self, source: str) -> WireScript:
        """A Lua script run by EVALSHA on the wire (loaded where the store lacks it)."""
        return WireScript(self.wire, source)

    @staticmethod
    def queue(pipe: Any, script: Any, keys: list[str], args: list[Any]) -> None:
        """Add a script's run to a pipeline, by its digest alone (see `execute`)."""
        pipe.evalsha(script.sha, len(keys), *keys, *args)

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
                for script in self.wire.scripts:  # every script a pipeline may queue
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
            return bool(await self.wire.call("PING"))
        except UNREACHABLE:
            return False

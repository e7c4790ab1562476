"""A sandbox the run owns: in-process over ASGI, or on a loopback port for code that needs a URL.

Building the sandbox app generates the seeded world, which takes a second or two, so sandboxes
are kept in a pool per configuration and "fresh" means reset: the world restored, minted keys
dropped, revocations undone, rate-limit buckets emptied, fault rules cleared. Advancing the clock
never moves it back, but a reset of the whole sandbox (what "fresh" does) puts it back to real
time.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from opsmerge_contracts.sandbox_control import AdminError, SandboxAdmin
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.world.recipe import KeySpec, load_recipe

AppFactory = Callable[[Settings], Any]
IN_PROCESS_ROOT = "http://sandbox.local"
SERVE_ROOT = "http://127.0.0.1:4010"  # where `opsmerge-sandbox serve` listens by default


def load_factory(path: str | None) -> AppFactory:
    """`module:callable` to a factory taking Settings and returning an ASGI app."""
    if not path:
        from opsmerge_sandbox.app import create_app

        return create_app
    module_name, _, attr = path.rpartition(":")
    if not module_name or not attr:
        raise ValueError(
            f"an app factory is written module:callable or file.py:callable, got {path!r}"
        )
    if module_name.endswith(".py"):
        file = Path(module_name).resolve()
        spec = importlib.util.spec_from_file_location(f"_opsmerge_app_{file.stem}", file)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, attr)
    return getattr(importlib.import_module(module_name), attr)


class SandboxKeys:
    """The recipe's keys, found by what they are rather than by their strings."""

    def __init__(self, specs: tuple[KeySpec, ...]) -> None:
        self.specs = specs

    def __iter__(self) -> Iterator[KeySpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def _usable(self) -> list[KeySpec]:
        return [k for k in self.specs if not k.revoked and k.expires_at is None]

    def named(self, name: str) -> KeySpec:
        """A key by id, exact name, or a case-insensitive part of its name."""
        for k in self.specs:
            if name in (k.id, k.name):
                return k
        matches = [k for k in self.specs if name.lower() in k.name.lower()]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(f"no single sandbox key named {name!r}")

    @property
    def owner(self) -> KeySpec:
        """A full-access key with the default rate limit, the tenant owner's if there is one.

        The owner is the user of the recipe's first usable full-access key: the recipe, not this
        code, says who that is.
        """
        full = [k for k in self._usable() if k.access == "full"]
        plain = [k for k in full if k.rate_limit is None]
        if not plain:
            raise KeyError("the recipe has no usable full-access key")
        return next((k for k in plain if k.user_id == full[0].user_id), plain[0])

    @property
    def limited(self) -> KeySpec:
        """A usable key with custom (narrower) scopes."""
        custom = [k for k in self._usable() if k.access == "custom"]
        if not custom:
            raise KeyError("the recipe has no usable custom-scope key")
        return custom[0]

    @property
    def low_rate(self) -> KeySpec:
        """The usable key with the lowest rate limit of its own."""
        limited = [k for k in self._usable() if k.rate_limit is not None]
        if not limited:
            raise KeyError("the recipe has no key with a rate limit of its own")
        return min(limited, key=lambda k: k.rate_limit or 0)


class _SharedTransport(httpx.BaseTransport):
    """A transport many clients send through; closing one client must not close it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:
        pass


@dataclass(slots=True)
class Sandbox:
    """One running sandbox: its URLs, keys, admin control and a raw transport to it."""

    settings: Settings
    app: Any
    root_url: str
    base_url: str  # root + the API base path, e.g. http://127.0.0.1:PORT/api/v1
    transport: httpx.BaseTransport
    admin: SandboxAdmin
    keys: SandboxKeys
    loopback: bool
    _close: list[Callable[[], None]] = field(default_factory=list)

    def client(self, key: str | KeySpec | None = "owner", **kwargs: Any) -> httpx.Client:
        """A plain httpx client for the API (base URL set, key as bearer token), unguarded."""
        secret = self.keys.owner.key if key == "owner" else key
        if isinstance(secret, KeySpec):
            secret = secret.key
        headers = dict(kwargs.pop("headers", {}) or {})
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        return httpx.Client(
            base_url=self.base_url, transport=self.transport, headers=headers, **kwargs
        )

    def reset(self) -> None:
        """Back to the seeded world: writes, minted keys, revocations, buckets and faults undone."""
        self.admin.reset(keys=True)
        with contextlib.suppress(AdminError):  # a sandbox without the faults stage has none
            self.admin.clear_faults()

    def close(self) -> None:
        while self._close:
            self._close.pop()()


def start_sandbox(
    settings: Settings | None = None,
    loopback: bool = False,
    app_factory: AppFactory | None = None,
    port: int = 0,
) -> Sandbox:
    settings = settings or Settings()
    if not settings.admin_token:
        settings.admin_token = "sbx_admin_" + secrets.token_urlsafe(18)
    app = (app_factory or load_factory(None))(settings)
    from opsmerge_sandbox.spec import load_spec

    base_path = load_spec(settings.spec_path).base_path
    closers: list[Callable[[], None]] = []
    if loopback:
        server = LoopbackServer(app, port)
        closers.append(server.stop)
        root = server.root_url
        inner: httpx.BaseTransport = httpx.HTTPTransport()
        closers.append(inner.close)
    else:
        from litestar.testing import TestClient
        from litestar.testing.transport import TestClientTransport

        test_client = TestClient(app, base_url=IN_PROCESS_ROOT, raise_server_exceptions=False)
        test_client.__enter__()
        closers.append(lambda: test_client.__exit__(None, None, None))
        root = IN_PROCESS_ROOT
        inner = TestClientTransport(client=test_client, raise_server_exceptions=False)  # type: ignore[assignment]
    transport = _SharedTransport(inner)
    admin_client = httpx.Client(base_url=root, transport=transport, timeout=30)
    closers.append(admin_client.close)
    recipe = load_recipe(settings.recipe, settings.seed)
    return Sandbox(
        settings=settings,
        app=app,
        root_url=root,
        base_url=root + base_path,
        transport=transport,
        admin=SandboxAdmin(admin_client, settings.admin_token),
        keys=SandboxKeys(recipe.keys),
        loopback=loopback,
        _close=closers,
    )


class LoopbackServer:
    """uvicorn in a thread on 127.0.0.1, on a port bound before it starts (no race for it)."""

    def __init__(self, app: Any, port: int = 0, timeout: float = 20.0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.root_url = f"http://127.0.0.1:{self.port}"
        # proxy_headers off: the sandbox decides itself whom to believe about client addresses
        from opsmerge_sandbox.connection_limits import resolve_limits, uvicorn_options

        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="auto",
            access_log=False,
            proxy_headers=False,
            **uvicorn_options(resolve_limits(False)),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.sock]},
            daemon=True,
            name="opsmerge-sandbox",
        )
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the loopback sandbox did not start on {self.root_url}")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return self.root_url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SandboxPool:
    """Sandboxes of a run, one per configuration, reused (after a reset) by every test asking."""

    def __init__(self, app_factory: AppFactory | None = None) -> None:
        self.app_factory = app_factory
        self._sandboxes: dict[tuple[Any, ...], Sandbox] = {}

    def get(self, loopback: bool = False, slot: str = "test", **settings: Any) -> Sandbox:
        """The sandbox for (slot, loopback, settings); `slot` keeps a shared one apart from the
        one tests reset."""
        key = (slot, loopback, *sorted((k, str(v)) for k, v in settings.items()))
        sandbox = self._sandboxes.get(key)
        if sandbox is None:
            sandbox = start_sandbox(
                Settings(**settings), loopback=loopback, app_factory=self.app_factory
            )
            self._sandboxes[key] = sandbox
        return sandbox

    def close(self) -> None:
        for sandbox in self._sandboxes.values():
            sandbox.close()
        self._sandboxes.clear()

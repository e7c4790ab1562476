"""A real sandbox on a loopback socket for the fault tests: uvicorn in a thread, on a free port.

Connection faults only exist on a real socket, so these tests talk to the server the way an
integrator's client does, through httpx over TCP.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from litestar import Litestar

from opsmerge_contracts.sandboxes import LoopbackServer
from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.state import SandboxState

ADMIN_TOKEN = "sbx_admin_faults_tests"
_TLS = ssl.create_default_context()  # built once: httpx builds one per client otherwise (~25 ms)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class LiveServer:
    base_url: str
    state: SandboxState
    server_log: list[logging.LogRecord] = field(default_factory=list)

    def key(self, name_prefix: str) -> str:
        return next(k.key for k in self.state.recipe.keys if k.name.startswith(name_prefix))

    @property
    def owner(self) -> str:
        return self.key("Owner - full")

    def client(self, **kwargs: Any) -> httpx.Client:
        timeout = kwargs.pop("timeout", 10)
        return httpx.Client(base_url=self.base_url, timeout=timeout, verify=_TLS, **kwargs)

    def api(
        self, key: str | None = None, workspace: str | None = None, **kwargs: Any
    ) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.owner}", **kwargs.pop("headers", {})}
        if workspace:
            headers["X-Sandbox-Workspace"] = workspace
        return self.client(headers=headers, **kwargs)

    def async_api(self, workspace: str, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.owner}", "X-Sandbox-Workspace": workspace}
        return httpx.AsyncClient(
            base_url=self.base_url, headers=headers, verify=_TLS, timeout=10, **kwargs
        )

    def admin(self, workspace: str | None = None) -> httpx.Client:
        headers = {"X-Sandbox-Admin-Token": ADMIN_TOKEN}
        if workspace:
            headers["X-Sandbox-Workspace"] = workspace
        return self.client(headers=headers)

    def add_rule(self, rule: dict[str, Any], workspace: str | None = None) -> dict[str, Any]:
        with self.admin(workspace) as admin:
            r = admin.post("/_sandbox/faults", json=rule)
        assert r.status_code == 201, r.text
        return r.json()["data"]  # type: ignore[no-any-return]

    def clean(self) -> None:
        """Between tests: no rules, empty rate buckets, a pristine world and journal."""
        with self.admin() as admin:
            for path in ("/_sandbox/faults", "/_sandbox/requests"):
                assert admin.delete(path).status_code == 200
            assert admin.post("/_sandbox/reset", json={}).status_code == 200


@contextmanager
def live_server(**settings: Any) -> Iterator[LiveServer]:
    with serve_app(create_app(Settings(admin_token=ADMIN_TOKEN, strict=True, **settings))) as live:
        yield live


@contextmanager
def serve_app(app: Litestar) -> Iterator[LiveServer]:
    """Serve an app built by create_app on a free loopback port, until the block ends."""
    collect = _Collect()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(collect)
    try:
        with LoopbackServer(app) as server:
            yield LiveServer(server.url, app.state.sandbox, collect.records)
    finally:
        uvicorn_log.removeHandler(collect)

"""Real servers for the shared-state tests: Debian's redis-server on a free loopback port, and
sandbox hosts (`opsmerge-sandbox serve --state ... --workers N`) as separate processes on it; or
one worker's state in the test's own process (`worker_state`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from opsmerge_sandbox.commands.workers import APP, SETTINGS_ENV, settings_to_env
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.shared.build import share
from opsmerge_sandbox.shared.records import SharedWorkspaces
from opsmerge_sandbox.state import SandboxState, build_state
from tests.conftest import ADMIN_TOKEN, SMALL_RECIPE, free_port

REDIS = shutil.which("redis-server")


class RedisServer:
    """One redis-server process; `stop` kills it and `start` brings it back on the same port."""

    def __init__(self, *options: str) -> None:
        if REDIS is None:
            pytest.fail("redis-server is missing: `make test` installs it (make redis-deps)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sandbox-redis-")
        self.options = options or ("--save", "", "--appendonly", "no")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        assert REDIS is not None
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             *self.options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if done.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10
        ).stdout

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def worker_state(state_url: str) -> SandboxState:
    """One worker's state on the store, in this process, as each `serve --workers` worker builds
    its own (the small recipe)."""
    state = build_state(Settings(recipe=str(SMALL_RECIPE), state_url=state_url))
    share(state)
    return state


def records_of(state: SandboxState) -> SharedWorkspaces:
    """The shared record store of a worker's state."""
    assert isinstance(state.workspaces, SharedWorkspaces)
    return state.workspaces


def redis_server() -> Iterator[RedisServer]:
    """A fixture's body: one redis-server for as long as the fixture lasts."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.close()


def start_hosts(state_url: str, *options: dict[str, object]) -> list[Host]:
    """Several hosts started at once (each builds its world meanwhile), ready when returned."""
    hosts: list[Host] = []
    try:
        for opts in options:
            hosts.append(Host(state_url, wait=False, **opts))  # type: ignore[arg-type]
        for host in hosts:
            host.wait_ready()
    except BaseException:
        for host in hosts:
            host.close()
        raise
    return hosts


def running_hosts(state_url: str, *options: dict[str, object]) -> Iterator[tuple[Host, ...]]:
    """A fixture's body: hosts started at once (`start_hosts`), closed when the fixture ends."""
    hosts = start_hosts(state_url, *options)
    try:
        yield tuple(hosts)
    finally:
        for host in hosts:
            host.close()


class Host:
    """One `serve` process (one or more workers) on shared state."""

    def __init__(
        self,
        state_url: str,
        workers: int = 1,
        extra: Sequence[str] = (),
        settings: Settings | None = None,
        wait: bool = True,
    ) -> None:
        """`serve` with these options; or, given `settings` (options `serve` has no flag
        for), one worker as `serve --workers` starts each: its app factory under uvicorn."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        fd, self.log = tempfile.mkstemp(prefix="sandbox-host-", suffix=".log")
        env = {**os.environ, "OPSMERGE_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}
        command = [
            sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--port", str(self.port),
            "--recipe", str(SMALL_RECIPE), "--state", state_url, "--workers", str(workers),
            "--log-level", "warning", *extra,
        ]
        if settings is not None:
            settings.state_url, settings.admin_token = state_url, ADMIN_TOKEN
            env[SETTINGS_ENV] = settings_to_env(settings)
            command = [
                sys.executable, "-m", "uvicorn", APP, "--factory", "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "warning",
            ]
        self.proc = subprocess.Popen(
            command,
            stdout=fd,
            stderr=subprocess.STDOUT,
            env=env,
        )
        os.close(fd)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {Path(self.log).read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not answer: {Path(self.log).read_text()[-2000:]}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        Path(self.log).unlink(missing_ok=True)

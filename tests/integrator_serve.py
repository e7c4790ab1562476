"""`opsmerge-sandbox serve` as a user starts it: a real process on a free loopback port, its
output read as it comes (the banner on stderr, the access log on stdout)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OWNER_KEY = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
# variables a developer's shell may hold that would change what these tests start
SERVE_ENV = (
    "OPSMERGE_SANDBOX_ADMIN_TOKEN",
    "OPSMERGE_SANDBOX_DATA_DIR",
    "OPSMERGE_SANDBOX_ACCESS_LOG",
    "OPSMERGE_SANDBOX_REJECT_UNKNOWN_PARAMS",
    "OPSMERGE_SANDBOX_HOSTED",
    "OPSMERGE_SANDBOX_PORT",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVE_ENV}
    env.update(extra)
    return env


class Served:
    """A running serve process and everything it has written so far."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._drain, args=(proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.stderr}")
            try:
                httpx.get(f"{self.url}/healthz", timeout=0.5)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"serve did not answer: {self.stderr}")

    def wait_for(self, text: str, seconds: float = 5) -> str:
        """stdout once it holds `text` (the log is written after the answer is sent)."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            if text in self.stdout:
                return self.stdout
            time.sleep(0.02)
        raise AssertionError(f"{text!r} never appeared in stdout: {self.stdout}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this helper started
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        for reader in self._readers:
            reader.join(timeout=5)


def start(cmd: Sequence[str], port: int, env: dict[str, str] | None = None) -> Served:
    proc = subprocess.Popen(
        list(cmd),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else clean_env(),
        start_new_session=True,  # its own group, so a `make serve` stops with its child
    )
    return Served(proc, port)


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`opsmerge-sandbox serve ARGS` on a free port, ready, stopped afterwards."""
    port = free_port()
    served = start(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--port", str(port), *args],
        port,
        env,
    )
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A serve expected to stop by itself (a refusal at start)."""
    return subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--port", str(free_port()), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env if env is not None else clean_env(),
    )

"""The client tools of tests/client-tools/ (installed into .tools/ by `make client-tools`) and a
real sandbox on a free loopback port to feed its served spec to them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsmerge_contracts.sandboxes import LoopbackServer
from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
PYTHON_BIN = TOOLS / "python" / "bin"
NPM_BIN = TOOLS / "npm" / "node_modules" / ".bin"
ADMIN_TOKEN = "client-tools-admin-token"
OWNER_KEY = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
AGENTS_READ_KEY = "om_sbx_agents_read_zzYk9GbH1Oz32ByfZOEW4GAQRD"
SPEC_URL = "/api/docs/openapi.json"


def tool(path: Path) -> str:
    """A tool's executable; a missing one fails the test saying how to install it (never a skip)."""
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is not installed: run `make client-tools` first")
    return str(path)


def run(cmd: Sequence[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a tool, .tools/python/bin first on PATH (openapi-python-client calls ruff from it)."""
    env = {**os.environ, "PATH": f"{PYTHON_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("NODE_OPTIONS", None)
    return subprocess.run(
        list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@contextmanager
def sandbox(**settings: Any) -> Iterator[LoopbackServer]:
    """A sandbox with the default world, served over real HTTP on a free port."""
    server = LoopbackServer(create_app(Settings(admin_token=ADMIN_TOKEN, **settings)))
    try:
        yield server
    finally:
        server.stop()


def download_spec(base_url: str, dest: Path) -> dict[str, Any]:
    """The spec as an integrator downloads it from the running sandbox, saved to `dest`."""
    response = httpx.get(base_url + SPEC_URL, timeout=30)
    response.raise_for_status()
    dest.write_bytes(response.content)
    spec: dict[str, Any] = response.json()
    return spec


def reset(base_url: str) -> None:
    response = httpx.post(
        base_url + "/_sandbox/reset", headers={"X-Sandbox-Admin-Token": ADMIN_TOKEN}, json={}
    )
    response.raise_for_status()

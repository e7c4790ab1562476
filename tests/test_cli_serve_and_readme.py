"""The command as a user runs it: the banner, refusals, and the README's curl lines verbatim."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _serve(*args: str, port: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--port", str(port), *args]
    env = {k: v for k, v in os.environ.items() if k != "OPSMERGE_SANDBOX_ADMIN_TOKEN"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("serve did not answer")


README_PORT = 4010  # where `make serve` listens, as the README's examples say


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served_port() -> int:
    """A free port: the tests must pass while a developer's `make serve` holds 4010."""
    return _free_port()


@pytest.fixture(scope="module")
def default_port_server(served_port: int) -> Iterator[subprocess.Popen[str]]:
    """`opsmerge-sandbox serve` as `make serve` runs it, on a port of the test's own."""
    proc = _serve(port=served_port)
    try:
        _wait(served_port, proc)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _readme_examples() -> list[tuple[str, str]]:
    text = README.read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    examples: list[tuple[str, str]] = []
    expect = ""
    for line in quickstart.splitlines():
        m = re.match(r"# expect: (\d{3})", line)
        if m:
            expect = m.group(1)
        elif line.startswith("curl "):
            examples.append((expect, line))
    return examples


def test_the_readme_has_curl_examples_for_success_and_errors() -> None:
    expects = {e for e, _ in _readme_examples()}
    assert {"200", "201", "202", "401", "403"} <= expects


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples_work_verbatim_against_a_fresh_serve(
    default_port_server: object, served_port: int
) -> None:
    for expect, line in _readme_examples():
        assert f"localhost:{README_PORT}" in line, line  # the README speaks of `make serve`
        line = line.replace(f"localhost:{README_PORT}", f"localhost:{served_port}")
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, (line, done.stderr)
        body = json.loads(done.stdout)
        if expect.startswith("2"):
            assert "data" in body, (line, body)
        else:
            assert (
                body["error"]["code"] == {"401": "AUTH_REQUIRED", "403": "SCOPE_DENIED"}[expect]
            ), line


def test_the_banner_shows_the_url_docs_and_keys_and_a_made_up_admin_token(
    default_port_server: subprocess.Popen[str], served_port: int
) -> None:
    # the banner is printed before the server answers, so it is in the pipe by now
    os.set_blocking(default_port_server.stderr.fileno(), False)  # type: ignore[union-attr]
    time.sleep(0.2)
    banner = default_port_server.stderr.read() or ""  # type: ignore[union-attr]
    root = f"http://localhost:{served_port}"
    assert f"{root}/api/v1" in banner and f"{root}/api/docs" in banner
    assert "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD" in banner
    assert re.search(r"X-Sandbox-Admin-Token: sbx_admin_\S+", banner)


def test_more_than_one_worker_is_refused_with_a_reason() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "shared state" in done.stderr


def test_an_unknown_recipe_is_a_readable_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--recipe", "nope", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        done.returncode == 2 and "unknown recipe" in done.stderr and "Traceback" not in done.stderr
    )


def test_the_reset_command_restores_a_running_sandbox() -> None:
    from tests.conftest import ADMIN_TOKEN, LoopbackServer, bearer, key_named, make_app

    app = make_app()
    h = bearer(key_named(app, "Owner - full"))
    with LoopbackServer(app) as server, httpx.Client(base_url=server.url) as client:
        total = client.get("/api/v1/clients?per_page=1", headers=h).json()["data"]["total"]
        client.post("/api/v1/clients", headers=h, json={"name": "Before reset"})
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "opsmerge_sandbox.cli",
                "reset",
                "--url",
                server.url,
                "--admin-token",
                ADMIN_TOKEN,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert client.get("/api/v1/clients?per_page=1", headers=h).json()["data"]["total"] == total
        wrong = subprocess.run(
            [
                sys.executable,
                "-m",
                "opsmerge_sandbox.cli",
                "reset",
                "--url",
                server.url,
                "--admin-token",
                "nope",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert wrong.returncode == 1 and "401" in wrong.stderr

"""A target that is down, is not this API or refuses the key stops a run at once: one line, its
own exit code, no tracebacks. Each case is a real socket and the command (or pytest) in a
subprocess, as a user would meet it."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsmerge_contracts import exit_codes
from opsmerge_contracts.sandboxes import Sandbox

ROOT = Path(__file__).resolve().parents[1]
WRONG_KEY = "om_sbx_nobody_Zq81WxLmPd0RtY6uVb4cNe2Hs9"


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`opsmerge-sandbox contracts ...` in a fresh process, from a directory with no tests."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPSMERGE_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "contracts", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=ROOT.parent,
    )


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPSMERGE_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=tmp_path,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *secrets: str) -> str:
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    for secret in secrets:
        assert secret not in output and secret[3:12] not in output
    return output


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _NotFoundPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body><h1>404 Not Found</h1></body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def html_server() -> Iterator[str]:
    """A plain web server that answers every path with a 404 HTML page."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_target_stops_with_one_line_and_exit_code_10(closed_port: int) -> None:
    result = run_command("--target", f"http://127.0.0.1:{closed_port}", "--key", WRONG_KEY)
    assert result.returncode == exit_codes.UNREACHABLE
    line = assert_one_clear_line(result, WRONG_KEY)
    assert f"cannot reach http://127.0.0.1:{closed_port}" in line


def test_a_target_that_is_not_this_api_stops_with_exit_code_11(html_server: str) -> None:
    result = run_command("--target", html_server, "--key", WRONG_KEY)
    assert result.returncode == exit_codes.NOT_THIS_API
    line = assert_one_clear_line(result, WRONG_KEY)
    assert "does not answer as this API" in line and "404 (text/html)" in line


def test_a_refused_key_stops_with_exit_code_12(served: Sandbox) -> None:
    served.admin.clear_requests()
    result = run_command("--target", served.root_url, "--key", WRONG_KEY)
    assert result.returncode == exit_codes.KEY_REJECTED
    line = assert_one_clear_line(result, WRONG_KEY)
    assert "refused the key" in line and "AUTH_REQUIRED" in line
    assert len(served.admin.requests()) == 2  # the check, not a run: one without a key, one with


def test_a_refused_admin_token_stops_with_exit_code_13_and_never_shows_it(served: Sandbox) -> None:
    token = "not-the-token-" + "x" * 20
    result = run_command(
        "--target", served.root_url, env={"OPSMERGE_SANDBOX_ADMIN_TOKEN": token}
    )
    assert result.returncode == exit_codes.ADMIN_REJECTED
    line = assert_one_clear_line(result, token)
    assert "refused the admin token" in line


def test_the_pytest_plugin_stops_as_early_with_the_same_exit_code(
    tmp_path: Path, closed_port: int, html_server: str
) -> None:
    down = run_pytest(tmp_path, f"--opsmerge-target=http://127.0.0.1:{closed_port}")
    assert down.returncode == exit_codes.UNREACHABLE
    assert "Traceback" not in down.stdout + down.stderr
    assert f"cannot reach http://127.0.0.1:{closed_port}" in down.stdout + down.stderr
    assert " passed" not in down.stdout and " failed" not in down.stdout
    other = run_pytest(tmp_path, f"--opsmerge-target={html_server}")
    assert other.returncode == exit_codes.NOT_THIS_API


def test_a_reachable_target_that_takes_the_key_runs_its_contracts(served: Sandbox) -> None:
    result = run_command(
        "--target", served.root_url, "--key", served.keys.owner.key, "-q", "-k", "test_unknown_id"
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert " passed" in result.stdout


def test_the_check_runs_once_and_counts_against_the_budget(served: Sandbox) -> None:
    served.reset()
    served.admin.clear_requests()
    result = run_command(
        "--target",
        served.root_url,
        "--key",
        served.keys.owner.key,
        "--budget",
        "12",
        "-q",
        "-k",
        "test_unknown_id or test_conforms",
    )
    journal = served.admin.requests(limit=1000)
    assert result.returncode in (0, 1), result.stdout[-2000:]
    assert len(journal) <= 12
    keyless = [e for e in journal if e["status"] == 401]
    assert len(keyless) == 1  # the command checked the target; the pytest it ran did not again


def test_help_names_the_admin_token_variable_and_every_exit_code() -> None:
    result = run_command("--help")
    assert result.returncode == 0
    assert "--admin-token" in result.stdout and "OPSMERGE_SANDBOX_ADMIN_TOKEN" in result.stdout
    for code, meaning in exit_codes.EXIT_CODES:
        assert f"  {code:<3} {meaning}" in result.stdout
    readme = (ROOT / "README.md").read_text()
    harness = readme[readme.index("## The contract harness") :]
    for code in (exit_codes.UNREACHABLE, exit_codes.NOT_THIS_API, exit_codes.KEY_REJECTED):
        assert f"{code} " in harness


def test_the_admin_token_given_on_the_command_line_is_never_echoed(served: Sandbox) -> None:
    token = served.settings.admin_token
    result = run_command(
        "--target", served.root_url, "--admin-token", token, "--no-such-option", "-q"
    )
    assert token not in result.stdout + result.stderr

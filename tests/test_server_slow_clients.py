"""Slow and idle clients cannot hold the sandbox's connections: real `serve`, real sockets.

Each test starts `opsmerge-sandbox serve` as a subprocess on a free loopback port with timeouts of
a second or two, so what a real attacker does over minutes (open and say nothing, trickle a
header byte at a time, trickle a body, sit on a kept-alive connection, open more connections than
the server should hold) happens here in seconds. Both of uvicorn's HTTP/1.1 parsers are covered.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from opsmerge_sandbox.cli import build_parser
from opsmerge_sandbox.commands.serve import settings_from_args
from opsmerge_sandbox.connection_limits import HOSTED, LOCAL, ConnectionLimits, resolve_limits
from opsmerge_sandbox.world.recipe import load_recipe
from tests.conftest import free_port

HEADER_TIMEOUT = 1.0
KEEP_ALIVE_TIMEOUT = 2.0  # unlike the header timeout, so a test can tell which one closed
BODY_TIMEOUT = 1.5
SLACK = 1.5  # timers on a shared two-core machine; a held connection never closes at all
PARSERS = ("httptools", "h11")
POST_PATH = "/api/v1/tickets"
POST_BODY = json.dumps({"subject": "Printer offline", "client_id": "cli_acme", "priority": "High"})


def _owner_key() -> str:
    return next(k.key for k in load_recipe("default").keys if k.name.startswith("Owner - full"))


class Served:
    """`opsmerge-sandbox serve` in a subprocess, with what a test needs to watch it."""

    def __init__(self, *options: str, max_files: int | None = None) -> None:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "opsmerge_sandbox.cli",
            "serve",
            "--port",
            str(self.port),
            *options,
        ]

        def limit_files() -> None:
            if max_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit_files,  # only setrlimit, before exec
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=0.5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError("serve did not answer") from None
                time.sleep(0.05)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def open_sockets(self) -> int:
        """Sockets the server process holds right now (its listener included), from /proc."""
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        count = 0
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                count += os.readlink(fd).startswith("socket:")
        return count

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def serving(*options: str, max_files: int | None = None) -> Iterator[Served]:
    served = Served(*options, max_files=max_files)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module", params=PARSERS)
def server(request: pytest.FixtureRequest) -> Iterator[Served]:
    options = (
        "--http",
        request.param,
        "--header-timeout",
        str(HEADER_TIMEOUT),
        "--keep-alive-timeout",
        str(KEEP_ALIVE_TIMEOUT),
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--rate-limit",
        "100000",
    )
    with serving(*options) as served:
        yield served


def _closed_after(sock: socket.socket, give_up: float) -> tuple[float | None, bytes]:
    """Seconds until the server closes `sock` (None if it never does), and what it sent first."""
    start = time.monotonic()
    received = b""
    while time.monotonic() - start < give_up:
        sock.settimeout(max(0.01, give_up - (time.monotonic() - start)))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return time.monotonic() - start, received
        if not chunk:
            return time.monotonic() - start, received
        received += chunk
    return None, received


def _trickle(
    sock: socket.socket, data: bytes, every: float, give_up: float
) -> tuple[float | None, int]:
    """Send `data` a byte every `every` seconds; when (if) the server closes, and bytes sent."""
    start = time.monotonic()
    sent = 0
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        for byte in data:
            try:
                sock.send(bytes([byte]))
            except OSError:  # broken pipe or reset: already closed
                return time.monotonic() - start, sent
            sent += 1
            if sel.select(timeout=every):
                try:
                    closed = sock.recv(65536) == b""
                except ConnectionResetError:
                    closed = True
                if closed:
                    return time.monotonic() - start, sent
            if time.monotonic() - start > give_up:
                break
    return None, sent


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole HTTP/1.1 response (Content-Length framed), leaving the connection open."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _post_head(length: int, key: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST {POST_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_an_idle_connection_that_sends_nothing_is_closed_at_the_header_timeout(
    server: Served,
) -> None:
    with server.connect() as sock:
        closed, received = _closed_after(sock, HEADER_TIMEOUT + SLACK)
    assert closed is not None, "an idle connection was still open"
    assert HEADER_TIMEOUT - 0.2 <= closed <= HEADER_TIMEOUT + SLACK
    assert received == b""


def test_a_head_trickled_a_byte_at_a_time_is_closed_at_the_header_timeout(
    server: Served,
) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
    with server.connect() as sock:
        closed, sent = _trickle(sock, head, every=0.3, give_up=HEADER_TIMEOUT + SLACK + 1)
    assert closed is not None, f"still open after trickling {sent} header bytes"
    assert closed <= HEADER_TIMEOUT + SLACK
    assert sent >= 3  # bytes kept arriving right up to the close


def _api_get() -> bytes:
    """An API operation's request: its answer goes out from the protocol (sandbox/api_lane.py)."""
    return (
        "GET /api/v1/agents/agt_acmesrv01 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {_owner_key()}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("api", [False, True], ids=["litestar", "api"])
def test_a_kept_alive_connection_idle_after_a_response_is_closed_at_the_keep_alive_timeout(
    server: Served, api: bool
) -> None:
    with server.connect() as sock:
        sock.sendall(_api_get() if api else b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, _ = _read_response(sock)
        assert status == 200 and headers.get("connection") != "close"
        closed, received = _closed_after(sock, KEEP_ALIVE_TIMEOUT + SLACK)
    assert closed is not None, "a kept-alive idle connection was still open"
    assert KEEP_ALIVE_TIMEOUT - 0.3 <= closed <= KEEP_ALIVE_TIMEOUT + SLACK
    assert received == b""


def test_a_connection_kept_busy_with_api_requests_outlives_the_keep_alive_timeout(
    server: Served,
) -> None:
    started = time.monotonic()
    with server.connect() as sock:
        while time.monotonic() - started < 2.5 * KEEP_ALIVE_TIMEOUT:
            sock.sendall(_api_get())
            assert _read_response(sock)[0] == 200  # never closed between two requests
            time.sleep(KEEP_ALIVE_TIMEOUT / 3)


def test_a_second_request_trickled_on_a_kept_alive_connection_is_closed_at_the_header_timeout(
    server: Served,
) -> None:
    # the first byte disarms uvicorn's keep-alive timer; the head deadline takes over
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _read_response(sock)[0] == 200
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
        closed, sent = _trickle(sock, head, every=0.3, give_up=HEADER_TIMEOUT + SLACK + 1)
    assert closed is not None, f"still open after trickling {sent} header bytes"
    assert closed <= HEADER_TIMEOUT + SLACK


def test_a_body_trickled_after_a_complete_head_is_closed_at_the_body_timeout(
    server: Served,
) -> None:
    with server.connect() as sock:
        sock.sendall(_post_head(len(POST_BODY), _owner_key()))
        closed, sent = _trickle(
            sock, POST_BODY.encode(), every=0.3, give_up=BODY_TIMEOUT + SLACK + 1
        )
    assert closed is not None, f"still open after trickling {sent} body bytes"
    assert closed <= BODY_TIMEOUT + SLACK


def test_a_body_trickled_after_an_early_answer_does_not_hold_the_connection(
    server: Served,
) -> None:
    # no key: the 401 goes out before the body is read, and the body keeps coming a byte at a time
    with server.connect() as sock:
        sock.sendall(_post_head(200))
        status, _, body = _read_response(sock)
        assert status == 401 and json.loads(body)["error"]["code"] == "AUTH_REQUIRED"
        closed, sent = _trickle(sock, b"x" * 200, every=0.3, give_up=BODY_TIMEOUT + SLACK + 1)
    assert closed is not None, f"still open after trickling {sent} body bytes past the answer"
    assert closed <= BODY_TIMEOUT + SLACK


def test_a_normal_request_and_a_slow_but_complete_one_still_succeed(server: Served) -> None:
    assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200
    # the head in time, the body in two parts, the whole exchange longer than the header timeout
    body = POST_BODY.encode()
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(_post_head(len(body), _owner_key()))
        time.sleep(0.6)
        sock.sendall(body[:20])
        time.sleep(0.6)
        sock.sendall(body[20:])
        status, _, answer = _read_response(sock)
        assert time.monotonic() - started > HEADER_TIMEOUT
        assert status == 201, answer
        assert json.loads(answer)["data"]["subject"] == "Printer offline"
        # the connection is still usable for the next request
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _read_response(sock)[0] == 200


def test_a_request_head_over_the_size_limit_gets_a_400_and_a_closed_connection(
    server: Served,
) -> None:
    # httptools sets no limit of its own: without one a head could grow for as long as it arrives
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(200))
    with server.connect() as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + padding + b"\r\n")
        status, _, _ = _read_response(sock)
        closed, _ = _closed_after(sock, 5)
    assert status == 400
    assert closed is not None


def test_a_cap_above_the_descriptor_limit_is_lowered_to_fit_and_still_answers() -> None:
    # a cap the process cannot reach is no cap: accept() would fail with EMFILE and stall
    with serving("--max-connections", "1000", max_files=200) as server:
        holders = [server.connect() for _ in range(190)]
        try:
            answer = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        finally:
            for sock in holders:
                sock.close()
        server.proc.terminate()
        _, err = server.proc.communicate(timeout=10)
    assert "--max-connections lowered to 136" in err


def test_a_large_body_the_app_has_not_read_yet_does_not_count_against_the_client(
    server: Served,
) -> None:
    # a forced delay holds the request before its body is read; past 64 KiB uvicorn stops
    # reading, so the body's deadline passes while the wait is the server's, not the client's
    body = json.dumps({"subject": "x" * 600_000, "client_id": "cli_acme", "priority": "High"})
    delay_ms = int((BODY_TIMEOUT + 1) * 1000)
    answer = httpx.post(
        f"http://127.0.0.1:{server.port}{POST_PATH}",
        content=body,
        headers={
            "Authorization": f"Bearer {_owner_key()}",
            "Content-Type": "application/json",
            "Prefer": f"delay={delay_ms}",
        },
        timeout=10,
    )
    assert answer.status_code in (201, 400), answer.text[:200]
    assert answer.elapsed.total_seconds() > BODY_TIMEOUT


@pytest.mark.parametrize("parser", PARSERS)
def test_connections_over_the_cap_are_refused_at_once_and_the_server_recovers(
    parser: str,
) -> None:
    cap, extra = 20, 30
    with serving(
        "--http", parser, "--max-connections", str(cap), "--header-timeout", str(HEADER_TIMEOUT)
    ) as server:
        time.sleep(0.3)  # the readiness probe's connection is gone
        baseline = server.open_sockets()  # the listener
        holders = [server.connect() for _ in range(cap + extra)]
        try:
            time.sleep(0.5)
            held_by_server = server.open_sockets() - baseline
            refused = 0
            for sock in holders:
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    first = sock.recv(65536)
                    assert first.startswith(b"HTTP/1.1 503 "), first
                    envelope = json.loads(first.partition(b"\r\n\r\n")[2])
                    assert envelope["error"]["code"] == "SERVICE_UNAVAILABLE"
                    assert str(cap) in envelope["error"]["message"]
                    assert b"\r\nretry-after: 1\r\n" in first.lower()
                    refused += 1
            assert held_by_server <= cap, f"the server holds {held_by_server} connections"
            assert refused >= extra
            # at the cap, a normal client gets a clear 503 rather than a hang
            answer = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        finally:
            for sock in holders:
                sock.close()
        # holders that never spoke are gone once the header timeout passed; service is back
        time.sleep(HEADER_TIMEOUT + 0.5)
        assert server.open_sockets() - baseline == 0
        assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("parser", PARSERS)
def test_a_thousand_idle_connections_are_all_closed_at_the_header_timeout(parser: str) -> None:
    count = 1000
    with serving(
        "--http", parser, "--max-connections", "1100", "--header-timeout", str(HEADER_TIMEOUT)
    ) as server:
        time.sleep(0.3)
        baseline = server.open_sockets()
        socks = [server.connect() for _ in range(count)]
        opened = time.monotonic()
        closed_at: list[float] = []
        try:
            with selectors.DefaultSelector() as sel:
                for sock in socks:
                    sock.setblocking(False)
                    sel.register(sock, selectors.EVENT_READ)
                while len(closed_at) < count and time.monotonic() - opened < HEADER_TIMEOUT + 10:
                    for key, _ in sel.select(timeout=0.5):
                        sock = key.fileobj
                        try:
                            data = sock.recv(65536)  # type: ignore[union-attr]
                        except ConnectionResetError:
                            data = b""
                        assert data == b"", data
                        sel.unregister(sock)
                        closed_at.append(time.monotonic() - opened)
            still_held = server.open_sockets() - baseline
        finally:
            for sock in socks:
                sock.close()
    print(
        f"\n[{parser}] {count} idle connections: {count - len(closed_at)} still open, "
        f"{still_held} held by the server; the last closed "
        f"{max(closed_at, default=0):.2f} s after the last was opened"
    )
    assert len(closed_at) == count
    assert still_held == 0
    assert max(closed_at) <= HEADER_TIMEOUT + SLACK + 1


def test_hosted_serve_closes_idle_connections_at_its_shorter_default_header_timeout() -> None:
    hosted = resolve_limits(hosted=True)
    assert hosted.header_timeout < resolve_limits(hosted=False).header_timeout
    with serving("--hosted") as server, server.connect() as sock:
        closed, _ = _closed_after(sock, hosted.header_timeout + SLACK)
    assert closed is not None, "an idle connection outlived the hosted header timeout"
    assert hosted.header_timeout - 0.2 <= closed <= hosted.header_timeout + SLACK


def test_serve_takes_the_limits_from_options_then_environment_then_the_mode() -> None:
    def limits(argv: list[str]) -> ConnectionLimits:
        settings = settings_from_args(build_parser().parse_args(argv))
        return resolve_limits(
            settings.hosted,
            settings.header_timeout,
            settings.keep_alive_timeout,
            settings.body_timeout,
            settings.max_connections,
        )

    assert limits(["serve", "--hosted"]) == HOSTED
    assert limits(["serve"]) == LOCAL
    given = limits(["serve", "--hosted", "--header-timeout", "2.5", "--max-connections", "64"])
    assert (given.header_timeout, given.max_connections) == (2.5, 64)
    assert given.body_timeout == HOSTED.body_timeout
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPSMERGE_SANDBOX_KEEP_ALIVE_TIMEOUT", "7")
        assert limits(["serve"]).keep_alive_timeout == 7.0


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--header-timeout", "0"], {}, "argument --header-timeout: '0' must be a finite number"),
        (["--keep-alive-timeout", "-1"], {}, "argument --keep-alive-timeout: '-1' must be"),
        (["--body-timeout", "soon"], {}, "argument --body-timeout: 'soon' is not a number"),
        (["--max-connections", "1.5"], {}, "argument --max-connections: '1.5' is not a whole"),
        ([], {"OPSMERGE_SANDBOX_MAX_CONNECTIONS": "0"}, "argument --max-connections: '0' must"),
        (["--header-timeout", "nan"], {}, "argument --header-timeout: 'nan' must be"),
    ],
)
def test_a_bad_limit_is_a_usage_error_naming_the_option(
    argv: list[str], env: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(["serve", *argv])
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err

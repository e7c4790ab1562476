"""API operations served from the connection's protocol (`sandbox/api_lane.py`): no ASGI cycle and
no task per request, the same bytes the ASGI way writes, and HTTP/1.1 kept whole around it
(pipelining order, bodies in pieces, large bodies, closing connections, answers that wait)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from uvicorn.protocols.http import httptools_impl

from opsmerge_contracts.sandboxes import LoopbackServer
from opsmerge_sandbox import clock as clock_module
from opsmerge_sandbox.store.persistence import ChangeLog
from tests.conftest import make_app

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
GET = "/api/v1/agents/agt_acmesrv01"
TICKET = json.dumps({"subject": "on the lane", "client_id": "cli_acme"})


def request(method: str, path: str, body: str = "", key: str = OWNER, extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Bearer {key}\r\n{extra}"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body.encode())}\r\n"
    return (head + "\r\n").encode() + body.encode()


class Answers:
    """Reads whole HTTP/1.1 answers (content-length framed) off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self) -> tuple[bytes, bytes]:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = self.buf[:end]
                length = next(
                    int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )  # fmt: skip
                if len(self.buf) >= end + 4 + length:
                    body = self.buf[end + 4 : end + 4 + length]
                    self.buf = self.buf[end + 4 + length :]
                    return head, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed with {self.buf[:200]!r} unread")
            self.buf += chunk


def status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def field(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.lower() == name:
            return value.strip()
    return None


def exchange(port: int, raw: bytes) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        return Answers(sock).next()


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(make_app()) as s:
        yield s


def on_server_loop(server: LoopbackServer, work: Callable[[], Any]) -> None:
    """Run `work` on the server's loop thread (a callback: no task of its own) and wait for it."""
    loop = server.server.servers[0].get_loop()
    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    loop.call_soon_threadsafe(run)
    assert done.wait(5)


@pytest.mark.parametrize(
    ("method", "path", "body", "key", "expected"),
    [
        ("GET", GET, "", OWNER, 200),
        ("GET", "/api/v1/agents?per_page=50", "", OWNER, 200),
        ("POST", "/api/v1/tickets", TICKET, OWNER, 201),
        ("GET", GET, "", "om_sbx_nobody_0000000000000000000000", 401),
        ("GET", "/api/v1/agents/agt_nobody", "", OWNER, 404),
        ("POST", "/api/v1/tickets", '{"subject": 5}', OWNER, 400),
    ],
)
def test_an_api_request_makes_no_asgi_cycle_and_no_task_on_the_embedded_store(
    server: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    body: str,
    key: str,
    expected: int,
) -> None:
    cycles = tasks = 0
    made = httptools_impl.RequestResponseCycle.__init__

    def counted_cycle(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal cycles
        cycles += 1
        made(self, *args, **kwargs)

    def counted_task(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        nonlocal tasks
        tasks += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop = server.server.servers[0].get_loop()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        answers = Answers(sock)
        sock.sendall(request(method, path, body, key))  # connected (accepting makes a task)
        assert status(answers.next()[0]) == expected
        monkeypatch.setattr(httptools_impl.RequestResponseCycle, "__init__", counted_cycle)
        on_server_loop(server, lambda: loop.set_task_factory(counted_task))
        try:
            for _ in range(20):
                sock.sendall(request(method, path, body, key))
                assert status(answers.next()[0]) == expected
        finally:
            on_server_loop(server, lambda: loop.set_task_factory(None))
    assert (cycles, tasks) == (0, 0)


def test_a_lane_answer_is_byte_for_byte_what_the_asgi_way_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # an online agent's heartbeat keeps pace with the clock: both answers are read in one
    # second of it, so the bytes compare whatever second each request lands in
    held = time.time()
    monkeypatch.setattr(clock_module, "time", SimpleNamespace(time=lambda: held))
    lane_app, asgi_app = make_app(), make_app()
    del asgi_app.state.api_lane  # the same sandbox, every request through ASGI
    cases = [
        request("GET", GET),
        request("GET", "/api/v1/agents?per_page=3&page=2"),
        request("GET", GET, key="om_sbx_nobody_0000000000000000000000"),
        request("GET", "/api/v1/agents/agt_nobody"),
        request("POST", "/api/v1/tickets", '{"subject": 5}'),
        request("GET", GET, extra="Prefer: code=503, retry-after=7\r\n"),
        request("GET", "/api/v1/agents?per_page=3&bogus=1"),
        request("GET", GET, extra="Connection: close\r\n"),
    ]
    with LoopbackServer(lane_app) as lane, LoopbackServer(asgi_app) as asgi:
        for raw in cases:
            got = [exchange(s.port, raw) for s in (lane, asgi)]
            (lane_head, lane_body), (asgi_head, asgi_body) = got
            assert lane_body == asgi_body, raw
            assert _steady(lane_head) == _steady(asgi_head), raw
            assert field(lane_head, b"date") is not None


def _steady(head: bytes) -> list[bytes]:
    """A head's lines but those that tell the time."""
    changing = (b"date:", b"x-ratelimit-reset:", b"x-request-id:")
    return [line for line in head.split(b"\r\n") if not line.lower().startswith(changing)]


def test_pipelined_requests_are_answered_in_order_across_the_lane_and_litestar(
    server: LoopbackServer,
) -> None:
    burst = b"".join([
        request("GET", GET),
        request("GET", "/api/v1/no-such-thing"),  # Litestar's 404
        request("POST", "/api/v1/tickets", TICKET),
        request("GET", "/healthz"),  # Litestar's
        request("GET", GET, extra="Prefer: delay=150\r\n"),  # waits on the lane
        request("GET", "/api/v1/agents?per_page=2"),
    ])  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(burst)
        answers = Answers(sock)
        got = [answers.next() for _ in range(6)]
    assert [status(h) for h, _ in got] == [200, 404, 201, 200, 200, 200]
    assert json.loads(got[0][1])["data"]["id"] == "agt_acmesrv01"
    assert json.loads(got[2][1])["data"]["subject"] == "on the lane"
    assert json.loads(got[3][1])["data"]["status"] == "ok"
    assert json.loads(got[4][1])["data"]["id"] == "agt_acmesrv01"
    assert len(json.loads(got[5][1])["data"]["items"]) == 2


def test_a_body_arriving_in_pieces_is_read_whole(server: LoopbackServer) -> None:
    raw = request("POST", "/api/v1/tickets", TICKET)
    head_end = raw.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw[:head_end])
        time.sleep(0.1)
        sock.sendall(raw[head_end : head_end + 10])
        time.sleep(0.1)
        sock.sendall(raw[head_end + 10 :])
        head, body = Answers(sock).next()
    assert status(head) == 201
    assert json.loads(body)["data"]["subject"] == "on the lane"


def test_a_whole_body_on_the_lane_reaches_the_pipeline_without_a_receive_round(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opsmerge_sandbox.api_lane import LaneRequest

    received = 0
    receive = LaneRequest.receive

    async def counted(self: LaneRequest) -> dict[str, Any]:
        nonlocal received
        received += 1
        return await receive(self)

    monkeypatch.setattr(LaneRequest, "receive", counted)
    head, body = exchange(server.port, request("POST", "/api/v1/tickets", TICKET))
    assert status(head) == 201
    assert json.loads(body)["data"]["subject"] == "on the lane"
    assert received == 0
    # a body still coming when the head is whole is read through `receive`, as before
    raw = request("POST", "/api/v1/tickets", TICKET)
    head_end = raw.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw[:head_end])
        time.sleep(0.1)
        sock.sendall(raw[head_end:])
        head, body = Answers(sock).next()
    assert status(head) == 201
    assert received == 1


def test_a_whole_body_on_the_lane_over_the_sandboxs_limit_is_refused_and_stores_nothing() -> None:
    limit = 200  # under what the lane gathers (64 KiB): the body reaches the pipeline whole
    with LoopbackServer(make_app(max_body_bytes=limit)) as small:
        listed = json.loads(exchange(small.port, request("GET", "/api/v1/tickets?per_page=1"))[1])
        before = listed["data"]["total"]
        big = json.dumps({"subject": "x" * 300, "client_id": "cli_acme"})
        head, body = exchange(small.port, request("POST", "/api/v1/tickets", big))
        assert status(head) == 413
        assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"
        # one under the limit is taken
        head, _ = exchange(small.port, request("POST", "/api/v1/tickets", TICKET))
        assert status(head) == 201
        listed = json.loads(exchange(small.port, request("GET", "/api/v1/tickets?per_page=1"))[1])
        assert listed["data"]["total"] == before + 1


def test_a_large_declared_body_is_refused_unread_and_one_past_the_lane_is_still_read(
    server: LoopbackServer,
) -> None:
    # over the sandbox's body limit: refused from its Content-Length, before any body is sent
    huge = (
        f"POST /api/v1/tickets HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Bearer {OWNER}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {8 * 1024 * 1024}\r\n\r\n"
    ).encode()
    head, body = exchange(server.port, huge)
    assert status(head) == 413
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # larger than the lane gathers (64 KiB), under the limit: read through ASGI and answered
    big = json.dumps({"subject": "big", "client_id": "cli_acme", "description": "x" * 100_000})
    head, body = exchange(server.port, request("POST", "/api/v1/tickets", big))
    assert status(head) in (201, 400), body[:300]
    if status(head) == 201:
        assert json.loads(body)["data"]["subject"] == "big"


@pytest.mark.parametrize(
    "raw",
    [
        f"GET {GET} HTTP/1.0\r\nAuthorization: Bearer {OWNER}\r\n\r\n".encode(),
        request("GET", GET, extra="Connection: close\r\n"),
    ],
)
def test_a_request_that_does_not_keep_the_connection_is_answered_then_closed(
    server: LoopbackServer, raw: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):  # ends: the server closed the connection
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert status(head) == 200
    assert field(head, b"connection") == b"close"
    assert len(body) == int(field(head, b"content-length") or 0)


def test_a_client_gone_while_its_answer_waits_leaves_the_server_serving(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request("GET", GET, extra="Prefer: delay=200\r\n"))
    time.sleep(0.4)  # the answer was due after the client left
    head, body = exchange(server.port, request("GET", GET))
    assert status(head) == 200
    assert json.loads(body)["data"]["id"] == "agt_acmesrv01"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("extra", ["", "Prefer: delay=50\r\n"])  # at once, and after a wait
def test_a_request_the_sandbox_fails_on_is_answered_500_and_the_connection_serves_on(
    extra: str, caplog: pytest.LogCaptureFixture
) -> None:
    from opsmerge_sandbox.pipeline.stages import Stages

    app = make_app()
    pipeline = app.state.pipeline
    stages = pipeline.stages

    def failing(ctx: Any) -> None:
        if ctx.op.operation_id == "getAgent":
            raise RuntimeError("a fault of the sandbox's own")

    pipeline.stages = Stages((*stages.request, failing), stages.answer, stages.admission)
    caplog.set_level(logging.ERROR, logger="sandbox")
    with LoopbackServer(app) as served, socket.create_connection(
        ("127.0.0.1", served.port), timeout=10
    ) as sock:
        answers = Answers(sock)
        sock.sendall(request("GET", GET, extra=extra))
        head, body = answers.next()
        assert status(head) == 500
        assert json.loads(body)["error"]["code"] == "INTERNAL_ERROR"
        sock.sendall(request("GET", "/api/v1/agents?per_page=1"))  # same connection
        assert status(answers.next()[0]) == 200
    assert any("unhandled error on GET /api/v1/agents/" in r.getMessage() for r in caplog.records)


def test_concurrent_durable_creates_sharing_one_group_commit_are_all_acknowledged(
    tmp_path: Any,
) -> None:
    # many creates in one loop step wait on the same commit to disk: each first step hands that
    # one future over while the others still await it
    app = make_app(data_dir=tmp_path)
    connections = 48
    with LoopbackServer(app) as served:
        before = _ticket_total(served.port)
        socks = [
            socket.create_connection(("127.0.0.1", served.port), timeout=10)
            for _ in range(connections)
        ]
        try:
            for _round in range(3):
                for sock in socks:
                    sock.sendall(request("POST", "/api/v1/tickets", TICKET))
                got = [Answers(sock).next() for sock in socks]
                assert [status(h) for h, _ in got] == [201] * connections, got[0][1][:300]
        finally:
            for sock in socks:
                sock.close()
        assert _ticket_total(served.port) == before + 3 * connections  # each one written


def test_a_durable_create_waits_for_its_commit_to_disk_without_a_task_of_its_own(
    tmp_path: Any,
) -> None:
    # the requests of one group commit wait parked on its future and go on in the loop step
    # that learns it is on disk: a task each would cost more than the rest of the wait
    app = make_app(data_dir=tmp_path)
    tasks: list[str] = []

    def counted_task(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        tasks.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    with LoopbackServer(app) as served:
        loop = served.server.servers[0].get_loop()
        socks = [socket.create_connection(("127.0.0.1", served.port), timeout=10)
                 for _ in range(8)]  # fmt: skip
        try:
            for sock in socks:  # connected and written to once (accepting makes a task)
                sock.sendall(request("POST", "/api/v1/tickets", TICKET))
                assert status(Answers(sock).next()[0]) == 201
            on_server_loop(served, lambda: loop.set_task_factory(counted_task))
            try:
                for _round in range(3):
                    for sock in socks:
                        sock.sendall(request("POST", "/api/v1/tickets", TICKET))
                    assert [status(Answers(s).next()[0]) for s in socks] == [201] * len(socks)
            finally:
                on_server_loop(served, lambda: loop.set_task_factory(None))
        finally:
            for sock in socks:
                sock.close()
    # the store's own background work (folding its log into the snapshot) may start meanwhile
    assert [name for name in tasks if name != "DeltaStore._compact"] == []


def test_every_create_waiting_on_a_commit_the_disk_refuses_is_answered_503(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = threading.Event()
    real = ChangeLog.append

    def append(log: ChangeLog, data: bytes) -> None:
        if refusing.is_set():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(log, data)

    monkeypatch.setattr(ChangeLog, "append", append)
    connections = 16
    with LoopbackServer(make_app(data_dir=tmp_path)) as served:
        before = _ticket_total(served.port)
        socks = [socket.create_connection(("127.0.0.1", served.port), timeout=10)
                 for _ in range(connections)]  # fmt: skip
        try:
            refusing.set()
            for sock in socks:
                sock.sendall(request("POST", "/api/v1/tickets", TICKET))
            refused = [Answers(sock).next() for sock in socks]
            assert [status(h) for h, _ in refused] == [503] * connections
            assert {json.loads(b)["error"]["code"] for _, b in refused} == {"STORE_UNAVAILABLE"}
            assert _ticket_total(served.port) == before  # nothing the disk refused is kept
            refusing.clear()
            for sock in socks:  # the same connections serve on
                sock.sendall(request("POST", "/api/v1/tickets", TICKET))
            assert [status(Answers(s).next()[0]) for s in socks] == [201] * connections
        finally:
            for sock in socks:
                sock.close()
        assert _ticket_total(served.port) == before + connections


def _ticket_total(port: int) -> int:
    head, body = exchange(port, request("GET", "/api/v1/tickets?per_page=1"))
    assert status(head) == 200
    return int(json.loads(body)["data"]["total"])

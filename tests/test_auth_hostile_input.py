"""Hostile input against authentication: each gets its 4xx, and bad keys leave nothing behind."""

from __future__ import annotations

import asyncio
import gc
import os
import socket

import httpx

from tests.conftest import LoopbackServer, make_app


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_header_injection_oversized_headers_and_non_ascii_keys_get_4xx_and_the_server_lives() -> (
    None
):
    with LoopbackServer(make_app()) as server:
        injected = _raw(
            server.port,
            b"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer om_x\rX-Evil: 1\r\nConnection: close\r\n\r\n",
        )
        assert injected.startswith(b"HTTP/1.1 4"), injected[:80]
        huge = (
            b"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer om_" + b"a" * 200_000
        )
        answer = _raw(server.port, huge + b"\r\nConnection: close\r\n\r\n")
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:80]
        non_ascii = "Bearer om_ключ-🔑".encode()
        answer = _raw(
            server.port,
            b"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + non_ascii
            + b"\r\nConnection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 401"), answer[:80]
        assert "ключ".encode() not in answer and b"AUTH_REQUIRED" in answer
        assert httpx.get(server.url + "/healthz").status_code == 200


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_ten_thousand_distinct_bad_keys_leave_no_state_behind() -> None:
    app = make_app()
    state = app.state.sandbox

    async def run(tag: str, batches: int) -> list[int]:
        transport = httpx.ASGITransport(app=app)
        statuses: list[int] = []
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sandbox.local"
        ) as client:
            for batch in range(batches):
                rs = await asyncio.gather(
                    *(
                        client.get(
                            "/api/v1/agents",
                            headers={"Authorization": f"Bearer om_{tag}_{batch}_{i}"},
                        )
                        for i in range(500)
                    )
                )
                statuses += [r.status_code for r in rs]
        return statuses

    buckets_before = len(state.limiter.storage.storage)
    keys_before = len(list(state.keys))
    asyncio.run(run("warm", 4))  # the journal fills and allocations settle
    gc.collect()
    rss_before = _rss_bytes()
    statuses = asyncio.run(run("bad", 20))
    gc.collect()
    grown = _rss_bytes() - rss_before
    assert statuses == [401] * 10_000
    assert len(state.limiter.storage.storage) == buckets_before
    assert len(list(state.keys)) == keys_before
    assert len(state.journal) <= state.settings.journal_size
    assert state.workspaces.names() == []  # a caller who is not authenticated allocates nothing
    assert grown < 8 * 1024 * 1024, f"memory grew by {grown} bytes for 10,000 bad keys"

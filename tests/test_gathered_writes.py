"""A served response leaves the server in one write to its socket, whole and in order, also when
the connection closes right after it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest
import uvloop

from opsmerge_contracts.sandboxes import LoopbackServer
from opsmerge_sandbox.gathered_writes import HeldTransport
from tests.conftest import bearer, make_app, write_calls

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
GET = "/api/v1/agents/agt_acmesrv01"


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(make_app()) as s:
        yield s


@pytest.mark.parametrize(
    ("method", "path", "body", "key", "status"),
    [
        ("GET", GET, None, OWNER, 200),
        ("GET", "/api/v1/agents?per_page=50", None, OWNER, 200),
        ("POST", "/api/v1/tickets", {"subject": "one write", "client_id": "cli_acme"}, OWNER, 201),
        ("GET", GET, None, "om_sbx_nobody_0000000000000000000000", 401),
        ("GET", "/api/v1/agents/agt_nobody", None, OWNER, 404),
    ],
)
def test_a_served_response_leaves_the_server_in_one_write(
    server: LoopbackServer, method: str, path: str, body: object, key: str, status: int
) -> None:
    io_file = f"/proc/self/task/{server.thread.native_id}/io"  # the server's thread
    with httpx.Client(base_url=server.root_url, headers=bearer(key)) as client:
        assert client.request(method, path, json=body).status_code == status  # connected
        before = write_calls(io_file)
        for _ in range(40):
            assert client.request(method, path, json=body).status_code == status
        per_response = (write_calls(io_file) - before) / 40
    assert per_response == 1.0


def test_a_response_on_a_connection_that_closes_after_it_arrives_whole(
    server: LoopbackServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            f"GET {GET} HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Bearer {OWNER}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )  # fmt: skip
    assert len(body) == length > 0
    assert b'"agt_acmesrv01"' in body


def test_a_held_transport_keeps_order_across_steps_and_writes_what_it_holds_before_closing() -> (
    None
):
    seen: dict[str, object] = {}

    class Writer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            loop = asyncio.get_running_loop()
            held = HeldTransport(transport, loop)  # type: ignore[arg-type]
            held.write(b"head,")
            held.write(bytearray(b"body,"))
            seen["held"] = held.get_write_buffer_size()
            loop.call_later(0.05, self._later, held)

        def _later(self, held: HeldTransport) -> None:
            held.write(b"later,")
            held.writelines([b"last"])
            held.close()  # before the step ends: what it holds goes out first

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Writer, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        srv.close()
        return data

    assert uvloop.run(main()) == b"head,body,later,last"
    assert seen["held"] == len(b"head,body,")

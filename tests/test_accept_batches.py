"""The server's loop accepts every connection waiting at once, not one per loop turn."""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from opsmerge_sandbox.accept import LOOP, BatchAcceptLoop, BatchAcceptServer
from opsmerge_sandbox.connection_limits import LOCAL, uvicorn_options

WAITING = 24


class _Counted(asyncio.Protocol):
    made: list[_Counted] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(self)
        self.transport = transport


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


def test_connections_waiting_together_are_all_set_up_within_a_few_loop_turns() -> None:
    """libuv accepts one connection per turn: a burst of 24 took 24 turns (each a whole round
    of every busy connection under load). Here they are all up after four."""
    listener = _listener()
    clients = [socket.create_connection(listener.getsockname()) for _ in range(WAITING)]
    made: list[_Counted] = []
    _Counted.made = made
    loop = BatchAcceptLoop()
    try:

        async def scenario() -> int:
            server = await loop.create_server(_Counted, sock=listener, backlog=2048)
            for _ in range(4):
                await asyncio.sleep(0)
            up = len(made)
            server.close()
            await server.wait_closed()
            return up

        assert loop.run_until_complete(scenario()) == WAITING
        for protocol in made:
            protocol.transport.close()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
        for c in clients:
            c.close()


def test_accepted_connections_carry_bytes_both_ways_with_nodelay() -> None:
    listener = _listener()
    loop = BatchAcceptLoop()

    nodelay: list[int] = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)  # uvloop's, not a subclass
            sock = transport.get_extra_info("socket")
            nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        def data_received(self, data: bytes) -> None:
            self.transport.write(data.upper())

    async def scenario() -> bytes:
        server = await loop.create_server(Echo, sock=listener, backlog=16)
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        writer.write(b"ping")
        answer = await asyncio.wait_for(reader.readexactly(4), 5)
        writer.close()
        server.close()
        await server.wait_closed()
        return answer

    try:
        assert loop.run_until_complete(scenario()) == b"PING"
        assert nodelay == [1]
    finally:
        loop.close()


def test_a_socket_bound_but_not_listening_is_served() -> None:
    """uvicorn hands over sockets it bound itself (and tests do): listening is the server's job."""
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    made: list[_Counted] = []
    _Counted.made = made
    loop = BatchAcceptLoop()

    async def scenario() -> int:
        server = await loop.create_server(_Counted, sock=bound, backlog=16)
        client = socket.create_connection(bound.getsockname(), timeout=5)
        for _ in range(20):
            await asyncio.sleep(0.01)
            if made:
                break
        client.close()
        for protocol in made:
            protocol.transport.close()
        server.close()
        await server.wait_closed()
        return len(made)

    try:
        assert loop.run_until_complete(scenario()) == 1
    finally:
        loop.close()


def test_a_closed_server_accepts_nothing_more() -> None:
    listener = _listener()
    address = listener.getsockname()
    loop = BatchAcceptLoop()

    async def scenario() -> None:
        server = await loop.create_server(_Counted, sock=listener, backlog=16)
        assert isinstance(server, BatchAcceptServer)
        assert server.is_serving() and server.sockets
        server.close()
        await server.wait_closed()
        assert not server.is_serving() and not server.sockets

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    try:
        socket.create_connection(address, timeout=1).close()
        refused = False
    except OSError:
        refused = True
    assert refused


def test_serve_runs_on_the_batch_accepting_loop() -> None:
    assert uvicorn_options(LOCAL)["loop"] == LOOP


def test_the_proxy_runs_on_the_batch_accepting_loop() -> None:
    from opsmerge_sandbox.commands.proxy import proxy_server

    assert proxy_server(object()).config.loop == LOOP


def test_serve_forever_returns_once_the_server_is_closed() -> None:
    listener = _listener()
    loop = BatchAcceptLoop()

    async def scenario() -> bool:
        server = await loop.create_server(_Counted, sock=listener, backlog=16)
        serving = loop.create_task(server.serve_forever())
        await asyncio.sleep(0.01)
        still = not serving.done()
        server.close()
        await asyncio.wait_for(serving, 2)
        return still

    try:
        assert loop.run_until_complete(scenario())
    finally:
        loop.close()

"""What a connection writes in one step of the event loop, handed to its socket in one write at
the end of that step.

uvicorn writes a response's head as soon as the app sends it and its body after: two writes into
the kernel per response, made in the middle of the loop's Python work. Held until the step is
done, a response is one write made after that work; on one pinned core the server answered ~35%
more gets and ~27% more creates, with less system and less user time per request
(`benchmarks/README.md`, "One write per answer"). The bytes and their order are the same, and a
held write still goes out in the loop turn it was made in: before the loop next waits for the
network, and before a close, an abort or an end of file.

`GatheredWrites` is a protocol mixin: it hands uvicorn's protocol a `HeldTransport` in place of
the socket's transport, so every write uvicorn makes (heads, bodies, its own error answers) goes
through it, and everything else is the transport's own.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast


class HeldTransport(asyncio.Transport):
    """A transport whose writes of one loop step are joined and written once the step ends."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data.__class__ is not bytes:
            data = bytes(data)  # the caller may change its buffer once the call returns
        held = self._held
        if held is None:
            self._held = [data]
            self._loop.call_soon(self.flush)
        else:
            held.append(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write what is held, now (a no-op once it went out)."""
        held = self._held
        if held is None:
            return
        self._held = None
        if not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self.flush()  # what was written before the abort was the kernel's before, too
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        held = self._held
        return self._transport.get_write_buffer_size() + sum(map(len, held or ()))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


class GatheredWrites:
    """Mixin for uvicorn's HTTP protocols: the connection's writes go through a `HeldTransport`."""

    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        held = HeldTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(held)  # type: ignore[misc]

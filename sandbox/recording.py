"""`serve --record FILE`: every API exchange the sandbox answers, appended to a HAR file.

An ASGI layer put around the app only when recording is asked for (`install`), so a sandbox that
does not record pays nothing per request. It keeps the request body as the app reads it and the
answer as the app sends it, and writes the entry once the answer is complete; credentials are
redacted by `har.entry`. Only the API (under the spec's base path) is recorded: the docs and the
control API are not traffic an integrator would replay.
"""

from __future__ import annotations

import time
from typing import Any

from opsmerge_sandbox.har import HarWriter, entry


def _decode(headers: Any) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers or ()]


def request_url(scope: Any) -> str:
    """The URL the client asked for, from the scope (Host header, else the server address)."""
    host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{scope['path']}" + (f"?{query}" if query else "")


class Recorder:
    """ASGI layer: records each API exchange as a HAR entry once its answer is complete."""

    def __init__(self, app: Any, writer: HarWriter, base_path: str) -> None:
        self.app = app
        self.writer = writer
        self.base_path = base_path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.base_path):
            await self.app(scope, receive, send)
            return
        started, clock = time.time(), time.perf_counter()
        body: list[bytes] = []
        answer: dict[str, Any] = {"status": 0, "headers": [], "body": []}

        async def receiving() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = _decode(message.get("headers"))
            elif message["type"] == "http.response.body":
                answer["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        finally:
            if answer["status"]:
                self.writer.add(
                    entry(
                        started=started,
                        elapsed_ms=(time.perf_counter() - clock) * 1000,
                        method=scope["method"],
                        url=request_url(scope),
                        request_headers=_decode(scope.get("headers")),
                        request_body=b"".join(body),
                        status=answer["status"],
                        response_headers=answer["headers"],
                        response_body=b"".join(answer["body"]),
                    )
                )


def install(app: Any, writer: HarWriter, base_path: str) -> None:
    """Put the recorder inside the connection-fault layer, which must stay outermost (it keeps
    the server's own `send`), as the access log does."""
    from opsmerge_sandbox.faults.connection import ConnectionFaults

    outer = app.asgi_handler
    if isinstance(outer, ConnectionFaults):
        outer.app = Recorder(outer.app, writer, base_path)
    else:
        app.asgi_handler = Recorder(outer, writer, base_path)

"""The bare-ASGI floor: a plain ASGI callable that answers each path with fixed bytes.

No framework at all: per request one dict lookup and two `send()` calls. What the server
(uvicorn or granian) costs is all that is left, so "sandbox req/s / this floor's req/s" says how
much of the per-core budget the sandbox spends on itself. Given a stub file (JSON written by
`benchmarks/run.py`: {path: {"status", "content_type", "body"}}) it answers each path with what
the sandbox answered for it; other paths get 404 and a small body.

uvicorn, with the sandbox's settings:  python benchmarks/asgi_floor.py --port 4099 --stubs F
granian (when installed):  BENCH_STUBS=F python -m granian --interface asgi --factory
                           --working-dir benchmarks asgi_floor:app_from_env
Its app imports nothing outside the standard library, so any server can load it (`main`, which
serves it on uvicorn, takes the sandbox's server options).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STUBS_ENV = "BENCH_STUBS"  # the stub file, for servers that import the app by name (granian)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

NOT_FOUND = b'{"error":{"code":"not_found","message":"no stub for this path"}}'


@dataclass(slots=True, frozen=True)
class Stub:
    """One canned answer: what the sandbox sent for a path, replayed byte for byte."""

    status: int
    content_type: str
    body: bytes
    method: str = "GET"


def load_stubs(path: Path) -> dict[str, Stub]:
    """Read a stub file; a bare string value (the older format) is a 200 JSON body."""
    raw = json.loads(path.read_text())
    out: dict[str, Stub] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            out[str(key)] = Stub(200, "application/json", value.encode())
        else:
            out[str(key)] = Stub(int(value["status"]), str(value["content_type"]),
                                 str(value["body"]).encode(), str(value.get("method", "GET")))
    return out


def dump_stubs(stubs: dict[str, Stub]) -> str:
    """The stub file's text (bodies are the sandbox's JSON, so they are valid UTF-8)."""
    return json.dumps({
        path: {"method": s.method, "status": s.status, "content_type": s.content_type,
               "body": s.body.decode()}
        for path, s in stubs.items()
    })


def make_app(stubs: dict[str, Stub]) -> App:
    """The ASGI callable: start and body messages built once, looked up per request."""
    table: dict[str, tuple[Message, Message]] = {}
    for path, stub in stubs.items():
        start = {
            "type": "http.response.start", "status": stub.status,
            "headers": [(b"content-type", stub.content_type.encode()),
                        (b"content-length", str(len(stub.body)).encode())],
        }
        table[path] = (start, {"type": "http.response.body", "body": stub.body})
    missing = (
        {"type": "http.response.start", "status": 404,
         "headers": [(b"content-type", b"application/json"),
                     (b"content-length", str(len(NOT_FOUND)).encode())]},
        {"type": "http.response.body", "body": NOT_FOUND},
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # The request body is not read: a floor does no work it does not have to.
            start, body = table.get(scope["path"], missing)
            await send(start)
            await send(body)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app


def app_from_env() -> App:
    """granian's `--factory` target: the stubs named by $BENCH_STUBS (none: every path 404s)."""
    path = os.environ.get(STUBS_ENV)
    return make_app(load_stubs(Path(path)) if path else {})


def serve_as_the_sandbox(app: Any, host: str, port: int, **options: Any) -> None:
    """Serve `app` with uvicorn as the sandbox is served: one worker, no access log, no server
    header, and the sandbox's own loop and protocol (`uvicorn_options`: connections accepted
    all at once, each loop step's writes in one), so a fraction of a floor is the sandbox's own
    work. Both floors run under it."""
    import uvicorn

    from opsmerge_sandbox.connection_limits import resolve_limits, uvicorn_options

    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", workers=1,
                server_header=False, **options, **uvicorn_options(resolve_limits(False)))


def main() -> None:
    parser = argparse.ArgumentParser(description="bare-ASGI floor for the benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4099)
    parser.add_argument("--stubs", type=Path, default=None, help="stub file written by run.py")
    args = parser.parse_args()
    stubs = load_stubs(args.stubs) if args.stubs else {}
    serve_as_the_sandbox(make_app(stubs), args.host, args.port, lifespan="on")


if __name__ == "__main__":
    main()

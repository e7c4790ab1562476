"""The floor: a bare Litestar app that answers every request with a constant JSON body.

No routing table from a spec, no auth, no store, no validation: whatever the sandbox does beyond
this is its own cost, so "sandbox req/s / floor req/s" says how much of Litestar's speed is left.
Given a stub file (`--bodies FILE`, written by `benchmarks/run.py`; see `asgi_floor.load_stubs`)
it answers each path with the status, content type and bytes the sandbox sent for it, so both
sides move the same bytes; other paths get a small built-in body.
Run it the way the benchmark does: ``python benchmarks/floor_app.py --port 4099``, or under
granian: ``BENCH_STUBS=F python -m granian --interface asgi --factory --working-dir benchmarks
floor_app:app_from_env``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from asgi_floor import (  # a sibling: benchmarks/ is on the path
    STUBS_ENV,
    Stub,
    load_stubs,
    serve_as_the_sandbox,
)
from litestar import Litestar, Request, Response, route

# Shaped like a sandbox "get one" answer so the response size is in the same range.
DEFAULT_BODY: bytes = (
    b'{"data":{"id":"agt_floor","hostname":"FLOOR-SRV01","client_id":"cli_floor",'
    b'"site_id":"sit_floor","os":"Windows Server 2022","status":"online",'
    b'"last_seen_at":"2024-01-01T00:00:00Z","created_at":"2024-01-01T00:00:00Z"}}'
)
DEFAULT_STUB = Stub(200, "application/json", DEFAULT_BODY)


def make_app(stubs: dict[str, Stub] | None = None) -> Litestar:
    """One catch-all handler; a dict lookup is the only per-request work besides Litestar's."""
    table = dict(stubs or {})

    @route(["/", "/{path:path}"], http_method=["GET", "POST"], sync_to_thread=False)
    def constant(request: Request) -> Response[bytes]:
        # The body of a POST is not read: a floor does no work it does not have to.
        stub = table.get(request.url.path, DEFAULT_STUB)
        return Response(stub.body, media_type=stub.content_type, status_code=stub.status)

    return Litestar(route_handlers=[constant], openapi_config=None, logging_config=None)


app = make_app()


def app_from_env() -> Litestar:
    """granian's `--factory` target: the stubs named by $BENCH_STUBS."""
    path = os.environ.get(STUBS_ENV)
    return make_app(load_stubs(Path(path)) if path else {})


def main() -> None:
    parser = argparse.ArgumentParser(description="bare Litestar floor for the benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4099)
    parser.add_argument("--bodies", type=Path, default=None, help="stub file written by run.py")
    args = parser.parse_args()
    stubs = load_stubs(args.bodies) if args.bodies else {}
    serve_as_the_sandbox(make_app(stubs), args.host, args.port)


if __name__ == "__main__":
    main()

"""The floor: a bare Litestar app that answers every request with a constant JSON body.

No routing table from a spec, no auth, no store, no validation: whatever the sandbox does beyond
this is its own cost, so "sandbox req/s / floor req/s" says how much of Litestar's speed is left.
Given `--bodies FILE` (JSON: {path: body}), it answers each path with the bytes the sandbox sent
for it, so both sides move the same number of bytes; other paths get a small built-in body.
Run it the way the benchmark does: ``python benchmarks/floor_app.py --port 4099``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from litestar import Litestar, Request, Response, route

# Shaped like a sandbox "get one" answer so the response size is in the same range.
DEFAULT_BODY: bytes = (
    b'{"data":{"id":"agt_floor","hostname":"FLOOR-SRV01","client_id":"cli_floor",'
    b'"site_id":"sit_floor","os":"Windows Server 2022","status":"online",'
    b'"last_seen_at":"2024-01-01T00:00:00Z","created_at":"2024-01-01T00:00:00Z"}}'
)


def make_app(bodies: dict[str, bytes] | None = None) -> Litestar:
    """One catch-all handler; a dict lookup is the only per-request work besides Litestar's."""
    table = dict(bodies or {})

    @route(["/", "/{path:path}"], http_method=["GET", "POST"], sync_to_thread=False)
    def constant(request: Request) -> Response[bytes]:
        # The body of a POST is not read: a floor does no work it does not have to.
        body = table.get(request.url.path, DEFAULT_BODY)
        return Response(body, media_type="application/json", status_code=200)

    return Litestar(route_handlers=[constant], openapi_config=None, logging_config=None)


app = make_app()


def load_bodies(path: Path) -> dict[str, bytes]:
    raw = json.loads(path.read_text())
    return {str(k): str(v).encode() for k, v in raw.items()}


def main() -> None:
    """Serve with uvicorn as the sandbox does: one worker, no access log, no server header."""
    import uvicorn

    parser = argparse.ArgumentParser(description="bare Litestar floor for the benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4099)
    parser.add_argument("--bodies", type=Path, default=None, help="JSON file: {path: body}")
    args = parser.parse_args()
    bodies = load_bodies(args.bodies) if args.bodies else {}
    uvicorn.run(make_app(bodies), host=args.host, port=args.port, access_log=False,
                log_level="warning", workers=1, server_header=False)


if __name__ == "__main__":
    main()

"""The floor: a bare Litestar app that answers every request with one constant JSON body.

No routing table from a spec, no auth, no store, no validation: whatever the sandbox does beyond
this is its own cost, so "sandbox req/s / floor req/s" says how much of Litestar's speed is left.
Run it the way the benchmark does: ``python benchmarks/floor_app.py --port 4099``.
"""

from __future__ import annotations

import argparse

from litestar import Litestar, Request, Response, route

# Shaped like a sandbox "get one" answer so the response size is in the same range.
BODY: bytes = (
    b'{"data":{"id":"agt_floor","hostname":"FLOOR-SRV01","client_id":"cli_floor",'
    b'"site_id":"sit_floor","os":"Windows Server 2022","status":"online",'
    b'"last_seen_at":"2024-01-01T00:00:00Z","created_at":"2024-01-01T00:00:00Z"}}'
)


@route(["/", "/{path:path}"], http_method=["GET", "POST"], sync_to_thread=False)
def constant(request: Request) -> Response[bytes]:
    """Answer with the constant body; the body of a POST is not read, as a floor should not."""
    return Response(BODY, media_type="application/json", status_code=200)


app = Litestar(route_handlers=[constant], openapi_config=None, logging_config=None)


def main() -> None:
    """Serve with uvicorn as the sandbox does: one worker, no access log."""
    import uvicorn

    parser = argparse.ArgumentParser(description="bare Litestar floor for the benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4099)
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, loop=args.loop, http=args.http,
                access_log=False, log_level="warning", workers=1, server_header=False)


if __name__ == "__main__":
    main()

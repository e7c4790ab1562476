"""What one API request costs the sandbox itself, in process: no server, no sockets, no load tool.

Requests go straight into the ASGI app (Litestar, the fast path, the pipeline), so the number is
the sandbox's own per-request work (`--cases`: get, list, create; a create is a ticket, and
each round adds its tickets to the store). Two measures:

- time: best of several rounds, microseconds per request (noisy on shared machines);
- `--instructions`: CPU instructions per request counted by valgrind's callgrind (the difference
  between two run lengths, so start-up cancels out). Repeatable to a fraction of a percent on the
  same machine whatever else it is doing, which makes it the measure for before/after a change.

    .venv/bin/python benchmarks/per_request.py [--instructions] [--cases get,create] [--root DIR]

`--root` measures another checkout (for example `git worktree add /tmp/before HEAD~1`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tooling

KEY = b"Bearer om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
# name -> (method, target, body, the status it answers)
CASES = {
    "get": ("GET", "/api/v1/agents/agt_acmesrv01", b"", 200),
    "list": ("GET", "/api/v1/agents?per_page=50", b"", 200),
    "create": ("POST", "/api/v1/tickets", b'{"subject": "Bench", "client_id": "cli_acme"}', 201),
}


def _scope(method: str, target: str, body: bytes) -> dict[str, Any]:
    path, _, query = target.partition("?")
    headers = [(b"host", b"127.0.0.1"), (b"authorization", KEY)]
    if body:
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 4010), "state": {},
    }


def _app(root: Path, auth: bool = True) -> Any:
    sys.path.insert(0, str(root))
    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.settings import Settings

    app = create_app(Settings(rate_limit=10**9, auth=auth))
    gc.collect()
    gc.freeze()  # as `serve` does: the seeded world is never garbage, and a full collection
    return app  # walking it would land in one run's count and not the other's


async def _run(app: Any, case: str, n: int) -> None:
    method, target, body, status = CASES[case]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(n):
        await app(_scope(method, target, body), receive, send)
    if set(statuses) != {status}:
        raise SystemExit(f"{method} {target} answered {sorted(set(statuses))}")


def _time(root: Path, cases: list[str], auth: bool) -> None:
    app = _app(root, auth)
    for name in cases:
        asyncio.run(_run(app, name, 500))
        best = min(_round(app, name) for _ in range(10))
        print(f"{name:5} {best * 1e6:8.1f} us/request")


def _round(app: Any, case: str, n: int = 2000) -> float:
    started = time.perf_counter()
    asyncio.run(_run(app, case, n))
    return (time.perf_counter() - started) / n


def _instructions(root: Path, cases: list[str], auth: bool) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    env = tooling.private_cache_env(root, "per-request")
    for name in cases:
        cmd = [sys.executable, __file__, "--root", str(root), *([] if auth else ["--no-auth"]),
               "--one", name]
        subprocess.run([*cmd, "1"], check=True, env=env)
        per_request = tooling.instructions_per_unit(cmd, env, 100, 600)
        print(f"{name:5} {per_request:10.0f} instructions/request")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--instructions", action="store_true", help="count with callgrind")
    p.add_argument("--cases", default=",".join(CASES), help="which of " + ", ".join(CASES))
    p.add_argument("--no-auth", action="store_true",
                   help="as `serve --no-auth`: what auth and rate limiting cost, by difference")
    p.add_argument("--one", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    auth = not args.no_auth
    if args.one:
        asyncio.run(_run(_app(args.root, auth), args.one[0], int(args.one[1])))
        return
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        p.error(f"unknown cases {unknown}: choose from {sorted(CASES)}")
    if args.instructions:
        _instructions(args.root, cases, auth)
    else:
        _time(args.root, cases, auth)


if __name__ == "__main__":
    main()

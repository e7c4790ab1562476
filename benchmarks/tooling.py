"""What the benchmark scripts share: npm installs of the reference servers, callgrind counts, and
requests driven straight into an app in process (what those counts measure).

Run from `benchmarks/` like the other scripts (`import tooling`).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvloop

NPM_TIMEOUT_S = 300  # one npm fetch can hang; a second try usually goes through


def npm_install(npm: str, prefix: Path, package: str, log: Path, done: Callable[[], bool]) -> bool:
    """`npm install package` into `prefix` (output to `log`), tried twice; whether `done()`."""
    prefix.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", package]
    for _attempt in range(2):
        with log.open("ab") as out:
            try:
                subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, timeout=NPM_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired:
                continue
        if done():
            return True
    return False


def private_cache_env(root: Path, label: str) -> dict[str, str]:
    """The environment with a start-up cache of this checkout's own: warmed once outside
    valgrind, both counted runs then start the same way (a shared cache keeps few entries, and
    other runs evict them). The name is a stable digest of the checkout's path."""
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    cache = Path(tempfile.gettempdir()) / f"opsmerge-{label}" / digest
    return {**os.environ, "XDG_CACHE_HOME": str(cache)}


def per_unit(count: Callable[[int], float], short: int, long: int) -> float:
    """What one unit of work costs: `count(n)` measures a run of n units, for two values of n,
    and the difference is divided by the difference (start-up and tear-down cancel out, as long
    as both runs start from the same state)."""
    first = count(short)
    return (count(long) - first) / (long - short)


def instructions_per_unit(
    cmd: Sequence[str], env: dict[str, str], short: int, long: int,
    before: Callable[[], object] | None = None,
) -> float:
    """Instructions per unit of work: `cmd N` run under callgrind (`per_unit`); `before` runs
    ahead of each run, to put back the state both start from."""

    def count(n: int) -> float:
        if before is not None:
            before()
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd, str(n)],
            capture_output=True, text=True, check=True, env=env,
        ).stderr  # fmt: skip
        found = re.search(r"Collected : (\d+)", out)
        if found is None:
            raise SystemExit(out[-2000:])
        return int(found.group(1))

    return per_unit(count, short, long)


def in_process(
    app: Any, method: str, target: str, authorization: str, body: bytes, count: int,
    at_once: int = 1, warm: int = 0,
) -> set[int]:
    """Send `count` requests straight into an ASGI app, `at_once` in flight, after `warm` one by
    one (then the collector's survivors frozen, as `serve` does); the statuses answered."""
    path, _, query = target.partition("?")
    headers = [(b"host", b"127.0.0.1"), (b"authorization", authorization.encode())]
    if body:
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 4010),
        "headers": headers,
    }
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def one_by_one(n: int) -> None:
        for _ in range(n):
            await app({**scope, "state": {}}, receive, send)

    async def run() -> None:
        await one_by_one(warm)
        gc.collect()
        gc.freeze()
        await asyncio.gather(*(one_by_one(count // at_once) for _ in range(at_once)))
        await asyncio.sleep(0.05)  # what the app writes in the background (a journal's batch)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as `serve` runs
        runner.run(run())
    return statuses

"""What a create costs as the in-memory store grows: in process, at each store size.

Creates go straight into the ASGI app, as in `per_request.py`, with a full collector pass every
1,000 creates and its survivors frozen, as `serve`'s timer does at ~10k creates a second
(`sandbox/collector.py`). At each step it prints the best of three 2,000-create rounds in
microseconds per create, and the Python bytecodes one create executes. Flat bytecodes and a
rising time mean the same work got slower. Nothing in the code then reads more as the store
grows; the memory it works in changed.

    .venv/bin/python benchmarks/store_growth.py [--steps 8] [--per-step 60000] [--root DIR]

Pin it to one core (`taskset -c 0`) on a quiet machine: the times are wall-clock.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path
from typing import Any

from per_request import CASES, _app, _scope


async def _creates(app: Any, n: int, full_pass: Any) -> None:
    method, target, body, status = CASES["create"]
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    for i in range(n):
        await app(_scope(method, target, body), receive, send)
        if i % 1000 == 999:
            full_pass()
    if statuses != {status}:
        raise SystemExit(f"creates answered {sorted(statuses)}")


def _bytecodes(app: Any, full_pass: Any, n: int = 50) -> float:
    """Bytecodes per create, counted with opcode trace events."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        asyncio.run(_creates(app, n, full_pass))
    finally:
        sys.settrace(None)
    return count / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--per-step", type=int, default=60_000, help="creates between measurements")
    args = p.parse_args()
    app = _app(args.root)
    from opsmerge_sandbox.collector import Collector

    collector = Collector()
    collector.take_over()
    made = 0
    print(f"{'store (creates)':>16} {'us/create':>10} {'bytecodes':>10} {'max RSS MB':>11}")
    for step in range(args.steps + 1):
        rounds = []
        for _ in range(3):
            started = time.perf_counter()
            asyncio.run(_creates(app, 2000, collector.full_pass))
            rounds.append((time.perf_counter() - started) / 2000)
        made += 6000
        codes = _bytecodes(app, collector.full_pass)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{made:>16,} {min(rounds) * 1e6:>10.1f} {codes:>10.0f} {rss:>11.0f}", flush=True)
        if step < args.steps:
            asyncio.run(_creates(app, args.per_step, collector.full_pass))
            made += args.per_step + 50


if __name__ == "__main__":
    main()

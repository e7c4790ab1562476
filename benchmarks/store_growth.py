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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from per_request import _app, _run
from profile_requests import stage_bytecodes


async def _creates(app: Any, n: int, full_pass: Callable[[], object]) -> None:
    """`n` creates, a full collector pass after each thousand (as `serve`'s timer makes them)."""
    for _ in range(n // 1000):
        await _run(app, "create", 1000)
        full_pass()
    if n % 1000:
        await _run(app, "create", n % 1000)


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
        codes = stage_bytecodes(app, "create", 50)["(total)"]  # after 200 creates to warm
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{made:>16,} {min(rounds) * 1e6:>10.1f} {codes:>10.0f} {rss:>11.0f}", flush=True)
        if step < args.steps:
            asyncio.run(_creates(app, args.per_step, collector.full_pass))
            made += args.per_step + 250


if __name__ == "__main__":
    main()

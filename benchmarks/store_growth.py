"""What a create costs as the in-memory store grows: in process, at each store size.

Creates go straight into the ASGI app, as in `per_request.py`, with a full collector pass every
1,000 creates and its survivors frozen, as `serve`'s timer does at ~10k creates a second
(`sandbox/collector.py`). At each step it prints the best of three 2,000-create rounds in
microseconds per create, and the Python bytecodes one create executes. Flat bytecodes and a
rising time mean the same work got slower. Nothing in the code then reads more as the store
grows; the memory it works in changed. It ends with the first read of the audit log, which makes
the entries the creates deferred (`Workspace.defer`), and what that read took.

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
    _first_log_read(app)


def _first_log_read(app: Any) -> None:
    """The first read of the audit log after the creates, which makes every entry they deferred
    (`Workspace.defer`), then a second read of the same page."""
    from opsmerge_sandbox.pipeline.audit import AuditModel

    state = app.state.sandbox
    model = AuditModel.from_spec(state.spec.resolved)
    if model is None:
        return
    view = state.workspaces.get().view(model.collection)
    waiting = len(view.deferred)
    took = []
    for _ in range(2):
        started = time.perf_counter()
        view.query([], None, "created_at", True)
        took.append((time.perf_counter() - started) * 1000)
    print(f"first read of the log: {took[0]:,.0f} ms for {waiting:,} deferred entries "
          f"({took[0] * 1000 / max(waiting, 1):.1f} us each); the next read {took[1]:,.0f} ms")


if __name__ == "__main__":
    main()

"""What a list costs right after a create, as the store grows: in process, at each store size.

An integration that writes and then lists (create a ticket, show the queue) reads a collection
whose cached results the write made stale. Requests go straight into the ASGI app, as in
`per_request.py`. At each size it prints the best of five lists that each follow one ticket
create, and a list repeated with no write between (served from the result cache), for the
ticket queue in two orders and the audit log:

    .venv/bin/python benchmarks/reads_after_writes.py [--sizes 1000,20000,60000] [--root DIR]

Pin it to one core (`taskset -c 0`) on a quiet machine: the times are wall-clock.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from per_request import CASES, _app, _run

LISTS = {
    "tickets (-created_at)": ("GET", "/api/v1/tickets?per_page=50", b"", 200),
    "tickets (number)": ("GET", "/api/v1/tickets?per_page=50&sort=number", b"", 200),
    "audit log": ("GET", "/api/v1/audit-log?per_page=50", b"", 200),
}


async def _ms(app: Any, case: str) -> float:
    started = time.perf_counter()
    await _run(app, case, 1)
    return (time.perf_counter() - started) * 1000


async def _measure(app: Any, sizes: list[int]) -> None:
    print(f"{'tickets created':>15}  {'list':22} {'after a create':>15} {'no write between':>17}")
    done = 0
    for size in sizes:
        if size > done:
            await _run(app, "create", size - done)
            done = size
        for name in LISTS:
            await _run(app, name, 1)  # listed once before: what a queue page does
            after = []
            for _ in range(5):
                await _run(app, "create", 1)
                done += 1
                after.append(await _ms(app, name))
            again = min([await _ms(app, name) for _ in range(5)])
            print(f"{size:>15,}  {name:22} {min(after):12.2f} ms {again:14.2f} ms", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--sizes", default="1000,20000,60000",
                   help="tickets created before each step (comma-separated, ascending)")
    args = p.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    CASES.update(LISTS)
    asyncio.run(_measure(_app(args.root), sizes))


if __name__ == "__main__":
    main()

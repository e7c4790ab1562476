"""Where one API request's time goes, in process: cProfile over many requests, summed by place.

The same in-process requests as `per_request.py` (straight into the ASGI app, no server, no
sockets), profiled with cProfile. Prints the own time of every function grouped by where it
lives (a pipeline stage's module, Litestar, msgspec, the standard library...) in microseconds
per request, then the top functions by cumulative time. cProfile's own overhead inflates every
number roughly alike, so read the shares, not the totals; `per_request.py` gives the totals.

    .venv/bin/python benchmarks/profile_requests.py [--case get|list] [-n 5000] [--top 25]
    .venv/bin/python benchmarks/profile_requests.py --stages [--case get|list]
    .venv/bin/python benchmarks/profile_requests.py --stage-times [--case create] [--root DIR]

`--stages` counts the Python bytecodes each pipeline stage executes per request instead, plus
those outside the stages (the ASGI layers, dispatch, the runner, the driver): deterministic, so
it compares two checkouts (`--root`) on a busy machine where timings do not.

With the compiled modules in use (`sandbox/native.py`) only the code left interpreted counts:
run it with `OPSMERGE_SANDBOX_NATIVE=0` to compare two checkouts' sources.

`--stage-times` times each stage instead (best of five rounds, pinned by the caller with
`taskset`): the one split that still sees into modules compiled by mypyc, which neither cProfile
nor the bytecode count can (their functions are C functions). The timing wrapper's own cost
lands in "outside".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from per_request import CASES, _app, _run


def _place(filename: str) -> str:
    """A function's home: `sandbox/pipeline/ratelimit.py`, `litestar`, `limits`, `stdlib`..."""
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    for home in ("opsmerge_sandbox", "sandbox"):  # the package, or the folder it links to
        if home in parts:
            return "/".join(("sandbox", *parts[parts.index(home) + 1 :]))
    if "benchmarks" in parts:
        return "benchmarks (driver)"
    return "stdlib"


def _stage_name(stage: Any) -> str:
    return getattr(stage, "__name__", None) or type(stage).__name__


OUTSIDE = "(outside the stages: ASGI layers, dispatch, runner, driver)"


@contextlib.contextmanager
def _metered_stages(app: Any, meter: Callable[[], int]) -> Iterator[dict[str, int]]:
    """The app's pipeline with each stage adding how far `meter` moved while it ran to its
    name's total (the totals, yielded); the stages are put back afterwards."""
    pipeline = app.state.pipeline
    original = pipeline.stages
    spent: dict[str, int] = {}

    def metered(stage: Any) -> Callable[[Any], Awaitable[None]]:
        name = _stage_name(stage)
        spent.setdefault(name, 0)

        async def run(ctx: Any) -> None:
            before = meter()
            waiting = stage(ctx)  # None from a stage with nothing to wait for
            if waiting is not None:
                await waiting
            spent[name] += meter() - before

        return run

    pipeline.stages = type(original)(
        tuple(metered(s) for s in original.request),
        tuple(metered(s) for s in original.answer),
        original.admission,
    )
    try:
        yield spent
    finally:
        pipeline.stages = original


def _per_request(spent: dict[str, int], total: int, n: int, unit: int = 1) -> dict[str, float]:
    out = {name: v / n / unit for name, v in spent.items()}
    out[OUTSIDE] = (total - sum(spent.values())) / n / unit
    out["(total)"] = total / n / unit
    return out


def stage_bytecodes(app: Any, case: str, n: int) -> dict[str, float]:
    """Python bytecodes executed per request in each stage and outside them.

    Counted with `sys.settrace` opcode events, so the numbers are the same on a busy machine
    and a quiet one (work done in C, such as msgspec's encoding, does not show).
    """
    count = [0]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            count[0] += 1
        return tracer

    with _metered_stages(app, lambda: count[0]) as spent:
        asyncio.run(_run(app, case, 200))  # warm, not counted: no tracer yet
        sys.settrace(tracer)
        try:
            asyncio.run(_run(app, case, n))
        finally:
            sys.settrace(None)
    return _per_request(spent, count[0], n)


def stage_times(app: Any, case: str, n: int, rounds: int = 5) -> dict[str, float]:
    """Microseconds a request spends in each pipeline stage and outside them, from the round
    with the least total time."""
    clock = time.perf_counter_ns
    best: dict[str, float] = {}
    with _metered_stages(app, clock) as spent:
        asyncio.run(_run(app, case, 500))  # warm
        for _ in range(rounds):
            spent.update(dict.fromkeys(spent, 0))
            start = clock()
            asyncio.run(_run(app, case, n))
            per = _per_request(spent, clock() - start, n, 1000)
            if not best or per["(total)"] < best["(total)"]:
                best = per
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--case", choices=sorted(CASES), default="get")
    p.add_argument("-n", type=int, default=5000)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--stages", action="store_true", help="bytecodes per stage, no profiler")
    p.add_argument("--stage-times", action="store_true", help="microseconds per stage")
    args = p.parse_args()
    app = _app(args.root)
    if args.stage_times or args.stages:
        if args.stage_times:
            title, digits = "microseconds per request, by stage (best of five rounds)", 2
            per_stage = stage_times(app, args.case, min(args.n, 2000))
        else:
            title, digits = "Python bytecodes per request, by stage", 0
            per_stage = stage_bytecodes(app, args.case, min(args.n, 1000))
        print(f"{args.case}: {title}")
        for name, per in per_stage.items():
            print(f"  {per:7.{digits}f}  {name}")
        return
    asyncio.run(_run(app, args.case, 500))  # warm
    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(_run(app, args.case, args.n))
    prof.disable()
    stats = pstats.Stats(prof)
    by_place: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_place[_place(filename)] += own
        total += own
    print(f"{args.case}: {total / args.n * 1e6:.1f} us/request under cProfile, own time by place")
    for place, own in sorted(by_place.items(), key=lambda kv: -kv[1]):
        if own / total >= 0.005:
            print(f"  {own / args.n * 1e6:7.2f} us  {own / total:6.1%}  {place}")
    print()
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()

"""The first read of the audit log after a burst of creates, served: at once, and after a pause.

In memory a create defers its audit entry (`Workspace.defer`), and the first read of the log
makes every entry still deferred, with every request behind it on the event loop waiting. Idle
time makes them in the background (`sandbox/store/idle_making.py`). This drives a fresh
`opsmerge-sandbox serve` with creates (wrk, else hey; 64 connections) for `--duration` seconds,
then times `GET /api/v1/audit-log?per_page=1` (and an agent's read sent 5 ms after it, which waits
behind it) either at once or after `--pause` seconds of quiet, on a fresh server each, and prints
one line per case. What is left of the first read after a pause is the log's first query since
the writes (its order, by time, over every entry), which the next read finds in its cache.

    .venv/bin/python benchmarks/first_log_read.py [--duration 10] [--pause 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time

import loadgen
import run as bench

AUDIT = f"{bench.API}/audit-log?per_page=1"
TICKETS = f"{bench.API}/tickets"


def _timed(port: int, path: str, headers: dict[str, str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    status, body = bench.http_call(port, "GET", path, headers)
    assert status == 200, body[:300]
    return (time.perf_counter() - started) * 1000, body


def _case(pause: float, duration: float, tool: str, pinning: bench.Pinning) -> str:
    headers = {"Authorization": f"Bearer {bench.owner_key('default')}"}
    procs = bench.Processes(bench.BENCH_DIR / "logs")
    try:
        port, _ = bench.start_sandbox(
            procs, "sandbox", ["--rate-limit", bench.HUGE_RATE_LIMIT], headers, 120,
            pinning.server,
        )
        request = loadgen.LoadRequest(
            "POST", f"http://{bench.HOST}:{port}{TICKETS}",
            {**headers, "Content-Type": "application/json"}, bench.TICKET_BODY,
        )
        load = loadgen.run_load(tool, request, duration=duration, connections=64, threads=2,
                                prefix=pinning.load)
        time.sleep(pause)
        beside: list[float] = []

        def other_read() -> None:  # a request that arrives while the log is being read
            time.sleep(0.005)
            beside.append(_timed(port, f"{bench.API}/agents/{bench.AGENT_ID}", headers)[0])

        thread = threading.Thread(target=other_read)
        thread.start()
        first, body = _timed(port, AUDIT, headers)
        thread.join()
        second, _ = _timed(port, AUDIT, headers)
        total = json.loads(body)["data"]["total"]
    finally:
        procs.stop_all()
    return (f"pause {pause:4.1f} s after {load.requests:,} creates ({load.rps:,.0f}/s): first log "
            f"read {first:7.1f} ms, an agent read beside it {beside[0]:7.1f} ms, next log read "
            f"{second:5.1f} ms ({total:,} entries)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of creates")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds of quiet before reading")
    parser.add_argument("--tool", choices=["auto", "wrk", "hey"], default="auto")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    tool = loadgen.ensure_tool(args.tool)
    pinning = bench.plan_pinning(not args.no_pin, bench.allowed_cpus(), shutil.which("taskset"))
    for pause in (0.0, args.pause):
        print(_case(pause, args.duration, tool, pinning), flush=True)


if __name__ == "__main__":
    main()

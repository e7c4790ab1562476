"""What one request costs the server's CPU, user and system time apart: the sandbox against the
bare-Litestar floor, served, under load.

Callgrind counts instructions (`served_instructions.py`), which the floor and the sandbox are
compared by, but not how fast they run: a request whose instructions touch more memory runs them
slower, and the kernel's share (page faults as the store grows, socket work) is not counted at
all. This starts each server pinned to one core, loads it with wrk (else hey) on the other for
`--duration` seconds after a warm-up, and prints, per request: user and system CPU time (from
/proc), minor page faults, and context switches, alternating the two servers `--rounds` times.

    .venv/bin/python benchmarks/cpu_split.py [--case create|get|list] [--duration 5] [--rounds 2]

The floor answers the sandbox's own bytes for the path (`floor_app.py`, stubs captured from the
sandbox first), as in `make bench`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import loadgen
import run as bench

CASES = {
    "create": ("POST", f"{bench.API}/tickets", bench.TICKET_BODY),
    "get": ("GET", f"{bench.API}/agents/{bench.AGENT_ID}", ""),
    "list": ("GET", f"{bench.API}/agents?per_page=50", ""),
}


def _use(pid: int) -> tuple[float, float, int, int]:
    """(user s, system s, minor faults, context switches) of every thread of a process."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    faults = switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text()
        except OSError:
            continue
        faults += int(fields[7])
        user += int(fields[11]) / ticks
        system += int(fields[12]) / ticks
        for line in status.splitlines():
            if "ctxt_switches:" in line:  # voluntary and not
                switches += int(line.split()[1])
    return user, system, faults, switches


def _measure(name: str, port: int, pid: int, case: str, headers: dict[str, str],
             duration: float, tool: str, pinning: bench.Pinning) -> str:
    method, path, body = CASES[case]
    sent = {**headers, "Content-Type": "application/json"} if body else headers
    request = loadgen.LoadRequest(method, f"http://{bench.HOST}:{port}{path}", sent, body)
    loadgen.run_load(tool, request, duration=2, connections=64, threads=2, prefix=pinning.load)
    before = _use(pid)
    result = loadgen.run_load(tool, request, duration=duration, connections=64, threads=2,
                              prefix=pinning.load)
    after = _use(pid)
    n = max(1, result.requests)
    user, system, faults, switches = (b - a for a, b in zip(before, after, strict=True))
    return (f"{name:8} {case:6} {result.rps:9,.0f} req/s  user {user / n * 1e6:6.1f} us  "
            f"system {system / n * 1e6:5.1f} us  minor faults {faults / n:5.2f}  "
            f"switches {switches / n:5.3f} a request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), default="create")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tool", choices=["auto", "wrk", "hey"], default="auto")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    tool = loadgen.ensure_tool(args.tool)
    pinning = bench.plan_pinning(not args.no_pin, bench.allowed_cpus(), shutil.which("taskset"))
    headers = {"Authorization": f"Bearer {bench.owner_key('default')}"}
    print(f"{args.case}: {pinning.note}, load average {os.getloadavg()[0]:.2f} at start")
    procs = bench.Processes(bench.BENCH_DIR / "logs")
    try:
        port, _ = bench.start_sandbox(procs, "cpu-stubs", ["--rate-limit", bench.HUGE_RATE_LIMIT],
                                      headers, 120)
        scenarios = bench.scenarios(bench.API, bench.AGENT_ID, bench.SCENARIOS)
        stubs = bench.write_stub_file(bench.capture_stubs(port, headers, scenarios))
        procs.stop("cpu-stubs")
        servers = {
            "sandbox": lambda port: bench.sandbox_command(
                port, "--rate-limit", bench.HUGE_RATE_LIMIT
            ),
            "floor": lambda port: [sys.executable, str(bench.FLOOR_APP), "--host", bench.HOST,
                                   "--port", str(port), "--bodies", str(stubs)],
        }
        for _ in range(args.rounds):
            for name, command in servers.items():
                port = bench.free_port()
                proc = procs.start(f"cpu-{name}", [*pinning.server, *command(port)])
                bench.wait_until_answers(procs, f"cpu-{name}", proc, time.perf_counter(), port,
                                         CASES["get"][1], headers, 120,
                                         lambda status: 200 <= status < 300)
                print(_measure(name, port, proc.pid, args.case, headers, args.duration, tool,
                               pinning), flush=True)
                procs.stop(f"cpu-{name}")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()

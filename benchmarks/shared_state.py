"""Shared state: the in-memory sandbox on one worker against Redis with 1, 2 and 4 workers.

Every number comes from a real `opsmerge-sandbox serve` on loopback (with `--state` on a real
`redis-server` started here, without persistence, each target on a database of its own), driven
by the same load tool as `make bench` (wrk, else hey) at one connection count, one server under
load at a time. Every target runs side by side and each kind is measured on one after the other
within a minute, so the ratios (Redis to memory, 2 workers to 1) are not skewed by the machine's
speed drifting between them (it moves by up to 40% from one minute to the next here).
Scenarios as in `run.py`: `list`, `get`, `create`. Nothing is pinned: several workers need
several cores, and on this 2-core machine the workers, Redis and the load tool share them.

Then, per operation kind, what one request costs Redis, from `INFO` deltas over sequential
requests to one worker: round trips (the server's socket reads) and commands. The journal's
writes run off the request path, in batches; they are shown apart.

    .venv/bin/python benchmarks/shared_state.py [--duration 10] [--workers 1,2,4] [--rounds 2]
    .venv/bin/python benchmarks/shared_state.py --instructions [--root DIR] [--kinds list,get]

`--instructions` counts, with callgrind, the CPU instructions one request of each kind costs a
worker in process (the app called directly, 64 requests at a time, no HTTP server), in memory and
on a Redis it starts: repeatable on a busy machine, where wall-clock runs of the same build
differ by 10-40%, so it is the measure for a before/after of the worker's own work on shared
state (`--root` measures another checkout). It also counts Redis's own work per request (the same
requests from a worker run natively, on a second redis-server run under callgrind): one Redis
serves every worker and host, so what a request costs it bounds the whole sandbox. It does not
count the kernel's work.

Targets (printed met/missed): Redis with 1 worker >= 70% of the in-memory rate for list and
get; 2 workers >= 1.3x one worker for list and get; p99 <= 50 ms at 64 connections throughout.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import loadgen
import run as bench
import tooling

P99_LIMIT_MS = 50.0
REDIS_SHARE = 0.70
TWO_WORKERS = 1.3
SEQUENTIAL = 200  # requests per kind for the round-trip count
KINDS = ("list", "get", "create")
JOURNAL_COMMANDS = ("multi", "rpush", "ltrim", "exec")


@dataclass(slots=True)
class Redis:
    port: int
    proc: subprocess.Popen[bytes]
    dir: str

    @property
    def url(self) -> str:
        return self.db(0)

    def db(self, number: int) -> str:
        return f"redis://{bench.HOST}:{self.port}/{number}"

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout

    def stats(self) -> dict[str, int]:
        """Socket reads, commands, and the calls of the commands the journal's batches are made
        of (one transaction each: MULTI, RPUSH, LTRIM, EXEC) so far."""
        info = self.cli("info", "all")
        found: dict[str, int] = dict.fromkeys(("reads", "commands", *JOURNAL_COMMANDS), 0)
        for line in info.splitlines():
            if line.startswith("total_reads_processed:"):
                found["reads"] = int(line.split(":")[1])
            elif line.startswith("total_commands_processed:"):
                found["commands"] = int(line.split(":")[1])
            elif line.startswith("cmdstat_"):
                command = line[len("cmdstat_"):].split(":")[0]
                if command in JOURNAL_COMMANDS:
                    found[command] = int(line.split("calls=")[1].split(",")[0])
        return found

    def instructions(self, run: Callable[[], object]) -> int:
        """The instructions a server started with `counted` spent while `run` ran."""
        pid = str(self.proc.pid)
        subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
        run()
        for old in Path(self.dir).glob("callgrind.out*"):
            old.unlink()
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
        total = 0
        for dump in Path(self.dir).glob("callgrind.out*"):
            found = re.search(rb"^(?:totals|summary): (\d+)", dump.read_bytes(), re.M)
            if found is None:
                raise SystemExit(f"{dump}: no instruction total")
            total += int(found[1])
        return total


def start_redis(counted: bool = False) -> Redis:
    """A redis-server without persistence; `counted`: under callgrind, so `Redis.instructions`
    can count its work."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is missing: make redis-deps (apt-get install redis-server)")
    port = bench.free_port()
    folder = tempfile.mkdtemp(prefix="opsmerge-bench-redis-")
    argv = [exe, "--port", str(port), "--bind", bench.HOST, "--save", "", "--appendonly", "no",
            "--dir", folder]
    if counted:
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/callgrind.out",
                *argv]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    redis = Redis(port, proc, folder)
    for _ in range(600 if counted else 200):
        try:
            if redis.cli("ping").strip() == "PONG":
                return redis
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def scenarios(agent_id: str) -> dict[str, bench.Scenario]:
    return {
        "list": bench.Scenario("list", "GET", f"{bench.API}/agents?per_page=50"),
        "get": bench.Scenario("get", "GET", f"{bench.API}/agents/{agent_id}"),
        "create": bench.Scenario("create", "POST", f"{bench.API}/tickets", bench.TICKET_BODY),
    }


def round_trips(redis: Redis, port: int, headers: dict[str, str], agent_id: str,
                ) -> dict[str, tuple[float, float, float]]:
    """Per kind: (round trips, commands, journal writes) per request, sequential requests."""
    out = {}
    for kind, scenario in scenarios(agent_id).items():
        hdrs = {**headers, **({"Content-Type": "application/json"} if scenario.body else {})}
        bench.http_call(port, scenario.method, scenario.path, hdrs, scenario.body)  # warm
        time.sleep(0.2)
        before = redis.stats()
        for _ in range(SEQUENTIAL):
            status, body = bench.http_call(port, scenario.method, scenario.path, hdrs,
                                           scenario.body)
            if status >= 300:
                raise SystemExit(f"{kind} answered {status}: {body[:200]!r}")
        time.sleep(0.3)  # the journal's writer
        after = redis.stats()
        # the journal's batches: one transaction each (its read)
        journal = (after["exec"] - before["exec"]) / SEQUENTIAL
        journal_commands = sum(after[c] - before[c] for c in JOURNAL_COMMANDS) / SEQUENTIAL
        # `redis-cli info` itself is one read and one command on each side of the run
        reads = (after["reads"] - before["reads"] - 1) / SEQUENTIAL
        commands = (after["commands"] - before["commands"] - 1) / SEQUENTIAL
        out[kind] = (reads - journal, commands - journal_commands, journal)
    return out


CONCURRENT = 64  # requests in flight in the in-process runs, as wrk's connections


def _requests(root: Path, kind: str, state_url: str, n: int) -> None:
    """Run `n` requests of one kind straight into the app of the checkout at `root`,
    `CONCURRENT` at a time (on Redis when `state_url` is not empty)."""
    sys.path.insert(0, str(root))
    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.settings import Settings

    app = create_app(Settings(rate_limit=10**9, state_url=state_url or None))
    scenario = scenarios(bench.AGENT_ID)[kind]
    statuses = tooling.in_process(
        app, scenario.method, scenario.path, f"Bearer {bench.owner_key('default')}",
        (scenario.body or "").encode(), n, CONCURRENT, warm=20,
    )
    if statuses - {200, 201}:
        raise SystemExit(f"{kind} answered {sorted(statuses)}")


def _requests_command(root: Path, kind: str, state_url: str) -> list[str]:
    """This script run as `_requests` (append the count)."""
    return [sys.executable, __file__, "--root", str(root), "--requests", kind,
            "--state-url", state_url]


def instructions(root: Path, kinds: Sequence[str]) -> None:
    """Instructions per request of each kind, in memory and on Redis, and Redis's own: the
    difference of two run lengths (start-up cancels out)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    redis = start_redis()
    counted = start_redis(counted=True)
    env = tooling.private_cache_env(root, "shared-state")
    short, long = 5 * CONCURRENT, 25 * CONCURRENT
    try:
        print(f"instructions per request in one worker, in process, {CONCURRENT} at a time, "
              "and in Redis")
        # each run from an empty Redis: a run after another would first catch up on the other's
        # writes (creates), and the difference of the two would count that too
        fresh = functools.partial(redis.cli, "flushall")
        for kind in kinds:
            counts = []
            for url in ("", redis.url):
                cmd = _requests_command(root, kind, url)
                subprocess.run([*cmd, str(CONCURRENT)], check=True, env=env)  # warm the cache
                counts.append(tooling.instructions_per_unit(cmd, env, short, long, before=fresh))
            memory, shared = counts
            # the same requests from a worker run natively, on a Redis run under callgrind
            cmd = _requests_command(root, kind, counted.url)

            def in_redis(n: int, cmd: list[str] = cmd) -> float:
                counted.cli("flushall")
                return counted.instructions(functools.partial(
                    subprocess.run, [*cmd, str(n)], check=True, env=env))

            in_store = tooling.per_unit(in_redis, short, long)
            print(f"{kind:<7} memory {memory / 1000:8.1f}k   redis {shared / 1000:8.1f}k   "
                  f"(+{(shared - memory) / 1000:.1f}k, {shared / memory:.2f}x)   "
                  f"in Redis {in_store / 1000:6.1f}k", flush=True)
    finally:
        for server in (redis, counted):
            server.proc.terminate()
            server.proc.wait(30)
            shutil.rmtree(server.dir, ignore_errors=True)


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown kind {', '.join(unknown)!r}: expected some of {', '.join(KINDS)}"
            if unknown else f"no kind named: expected some of {', '.join(KINDS)}")
    return kinds


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=2, help="seconds of load before each run")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="load tool threads (wrk only)")
    p.add_argument("--workers", default="1,2,4", help="worker counts on Redis")
    p.add_argument("--rounds", type=int, default=2, help="runs per target and kind")
    p.add_argument("--tool", choices=["auto", "wrk", "hey"], default="auto")
    p.add_argument("--instructions", action="store_true",
                   help="count instructions per request with callgrind instead")
    p.add_argument("--root", type=Path, default=bench.ROOT, help="the checkout to measure")
    p.add_argument("--kinds", type=_kinds, default=KINDS,
                   help=f"with --instructions: which kinds, comma-separated ({','.join(KINDS)})")
    p.add_argument("--requests", choices=KINDS, help=argparse.SUPPRESS)
    p.add_argument("--state-url", default="", help=argparse.SUPPRESS)
    p.add_argument("count", nargs="?", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.requests is not None:
        _requests(args.root, args.requests, args.state_url, args.count)
        return 0
    if args.instructions:
        instructions(args.root, args.kinds)
        return 0
    tool = loadgen.ensure_tool(args.tool)
    opts = bench.Options(tool, args.duration, args.warmup, args.connections, args.threads, 1,
                         bench.Pinning(note="not pinned"), 0)
    headers = {"Authorization": f"Bearer {bench.owner_key('default')}"}
    agent_id = bench.AGENT_ID
    limit = ["--rate-limit", bench.HUGE_RATE_LIMIT]
    procs = bench.Processes(bench.BENCH_DIR / "logs")
    redis = start_redis()
    rows: dict[tuple[str, str], loadgen.LoadResult | None] = {}
    print(f"shared state: {tool}, {args.connections} connections, {args.duration:g} s per run, "
          f"unpinned, load average {bench.os.getloadavg()[0]:.2f} at start", flush=True)
    # each Redis target on a database of its own: one's writes are not the others' to catch up on
    targets = [("memory 1w", [*limit])] + [
        (f"redis {n}w", [*limit, "--state", redis.db(i), "--workers", str(n)])
        for i, n in enumerate(int(w) for w in args.workers.split(","))
    ]
    trips: dict[str, tuple[float, float, float]] = {}
    try:
        ports = {}
        for name, extra in targets:
            ports[name] = bench.start_sandbox(procs, name, extra, headers, 300)[0]
            if name == "redis 1w":  # counted while it is the only one on Redis
                trips = round_trips(redis, ports[name], headers, agent_id)
        # every kind measured on each target in turn, within a minute of each other, and in the
        # opposite order the next round (so no target is always measured first)
        runs: dict[tuple[str, str], list[loadgen.LoadResult | None]] = {}
        for kind, scenario in scenarios(agent_id).items():
            for round_ in range(args.rounds):
                order = list(ports.items())
                for name, port in order if round_ % 2 == 0 else reversed(order):
                    run = bench.measure(opts, name, port, scenario, headers)
                    runs.setdefault((name, kind), []).append(run.result)
                    note = f"  {run.note}" if run.note else ""
                    print(f"{name:<10} {kind:<7} {_cell(run.result)}{note}", flush=True)
        if args.rounds > 1:
            print(f"\nover {args.rounds} rounds (mean rate, worst p99):")
        for (name, kind), results in runs.items():
            rows[(name, kind)] = _combined(results)
            if args.rounds > 1:
                print(f"{name:<10} {kind:<7} {_cell(rows[(name, kind)])}")
    finally:
        procs.stop_all()
        redis.proc.terminate()
        redis.proc.wait(10)
        shutil.rmtree(redis.dir, ignore_errors=True)
    print()
    for kind, (reads, commands, journal) in trips.items():
        print(f"redis round trips per {kind:<6}: {reads:4.2f} on the request path "
              f"({commands:4.2f} commands, those scripts run included), "
              f"journal {journal:4.2f} writes off the path")
    print()
    for line in verdicts(rows):
        print(line)
    return 0


def _combined(results: list[loadgen.LoadResult | None]) -> loadgen.LoadResult | None:
    """Rounds of one target and kind as one: the mean rate, the worst p99 (and p50)."""
    done = [r for r in results if r is not None]
    if len(done) < len(results) or not done:
        return None
    p99s = [r.p99_ms for r in done if r.p99_ms is not None]
    p50s = [r.p50_ms for r in done if r.p50_ms is not None]
    return dataclasses.replace(
        done[0],
        requests=sum(r.requests for r in done),
        duration_s=sum(r.duration_s for r in done),
        rps=sum(r.rps for r in done) / len(done),
        p50_ms=max(p50s) if p50s else None,
        p99_ms=max(p99s) if p99s else None,
        non_2xx=sum(r.non_2xx for r in done),
        errors=sum(r.errors for r in done),
    )


def _cell(result: loadgen.LoadResult | None) -> str:
    if result is None:
        return "no measurement"
    p99 = "n/a" if result.p99_ms is None else f"{result.p99_ms:6.1f}"
    p50 = "n/a" if result.p50_ms is None else f"{result.p50_ms:6.1f}"
    bad = f" ({result.non_2xx} non-2xx, {result.errors} errors)" if (
        result.non_2xx or result.errors) else ""
    return f"{result.rps:8.0f} req/s  p50 {p50} ms  p99 {p99} ms{bad}"


def verdicts(rows: dict[tuple[str, str], loadgen.LoadResult | None]) -> list[str]:
    """The issue's targets, each met or missed, from the measured rows."""
    def rps(target: str, kind: str) -> float | None:
        r = rows.get((target, kind))
        return None if r is None or r.failed_fraction > bench.MAX_FAILED else r.rps

    lines = []
    for kind in ("list", "get"):
        mem, one, two = rps("memory 1w", kind), rps("redis 1w", kind), rps("redis 2w", kind)
        if mem and one:
            share = one / mem
            met = "met" if share >= REDIS_SHARE else "missed"
            lines.append(f"{kind}: redis 1w / memory 1w = {share:.3f} "
                         f"(target >= {REDIS_SHARE:.2f}): {met}")
        if one and two:
            scale = two / one
            met = "met" if scale >= TWO_WORKERS else "missed"
            lines.append(f"{kind}: redis 2w / redis 1w = {scale:.3f} "
                         f"(target >= {TWO_WORKERS}): {met}")
    worst = max((r.p99_ms or 0.0 for r in rows.values() if r is not None), default=0.0)
    lines.append(f"worst p99 {worst:.1f} ms (target <= {P99_LIMIT_MS:.0f} ms): "
                 f"{'met' if worst <= P99_LIMIT_MS else 'missed'}")
    return lines


if __name__ == "__main__":
    sys.exit(main())

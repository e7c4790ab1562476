"""The write path: durable creates at 0 and at many changed records, and in-memory creates.

Every number comes from a real `opsmerge-sandbox serve` on loopback driven by wrk (else hey) at
one connection count, one server at a time, pinned as `make bench` pins (the server on one core,
its writer thread included, the load tool on another; `--no-pin` turns that off):

- `memory`: creates without `--data-dir` (req/s, p50, p99);
- `durable N`: creates with `--data-dir`, on a store that already holds N changed records
  (prefilled by writing the store file directly, in the format the sandbox writes), so what a
  create costs can be compared as the store grows. An acknowledged create is fsynced.

Beside each run, what a request cost the server process over the measured run (Linux, from
/proc): CPU (user and system, every thread) and voluntary context switches, the times one of its
threads gave up a CPU to wait (for the disk, or for the interpreter's lock). Both move less from
one minute to the next on a shared machine than req/s and p99 do.

    .venv/bin/python benchmarks/write_path.py [--prefill 0,50000] [--duration 10]
    .venv/bin/python benchmarks/write_path.py --instructions [--root DIR]

`--instructions` counts, with callgrind, the CPU instructions one in-memory create costs the
sandbox in process (no server, no sockets): repeatable on a busy machine, so it is the measure
for a before/after of the per-write work (`--root` measures another checkout).

The targets printed beside the numbers are the issue's: durable p99 <= 25 ms at 64 connections,
and a p99 at the largest prefill within 1.3x of the one at 0. `make bench` runs the durable part
too (`durable_runs`, at 0 and 50,000 changed records) and judges it in its own table of targets.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loadgen
import run as bench
import tooling

TICKETS = f"{bench.API}/tickets"
SHARDS = 256  # the store's table count per workspace (sandbox/store/persistence.py)
P99_LIMIT_MS = 25.0
FLAT_LIMIT = 1.3


def _start(procs: bench.Processes, name: str, extra: Sequence[str], headers: dict[str, str],
           pinning: bench.Pinning) -> tuple[int, int]:
    """The port of a fresh server, and its process id (`taskset` execs the server: the same)."""
    port = bench.free_port()
    proc = procs.start(name, [*pinning.server,
                              *bench.sandbox_command(port, "--rate-limit", bench.HUGE_RATE_LIMIT,
                                                     *extra)])
    bench.wait_until_answers(procs, name, proc, time.perf_counter(), port,
                             f"{TICKETS}?per_page=1", headers, 300, lambda s: s == 200)
    return port, proc.pid


def _server_use(pid: int) -> tuple[float, int]:
    """CPU seconds (user and system, every thread) the server has used, and how many times its
    threads gave up a CPU to wait (voluntary context switches): on Linux, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu, waits = 0.0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text()
        except OSError:
            continue  # a thread that ended meanwhile
        cpu += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        waits += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return cpu, waits


def _template(port: int, headers: dict[str, str]) -> tuple[dict[str, Any], int]:
    """A created record as the sandbox writes it, and how many seeded records its kind has."""
    status, body = bench.http_call(port, "GET", f"{TICKETS}?per_page=1", headers)
    assert status == 200, body[:300]
    seeded = int(json.loads(body)["data"]["total"])
    status, body = bench.http_call(port, "POST", TICKETS, _json(headers), bench.TICKET_BODY)
    assert status == 201, body[:300]
    return json.loads(body)["data"], seeded


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


def prefill(data_dir: Path, template: dict[str, Any], seeded: int, count: int) -> None:
    """Write a store file holding `count` created records in the default workspace."""
    tables: dict[str, dict[str, Any]] = {}
    prefix = template["id"].split("_", 1)[0]
    for i in range(1, count + 1):
        rid = f"{prefix}_prefill{i:07d}"
        doc = {"collection": "tickets", "id": rid, "record": {**template, "id": rid},
               "created": True, "seq": seeded + i}
        tables.setdefault(f"ws:default:{i % SHARDS:02x}", {})[str(i)] = doc
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "delta.json").write_text(json.dumps(tables, separators=(",", ":")))


@dataclass(frozen=True, slots=True)
class Load:
    """How each run is driven: the tool, its connections and threads, the seconds of warm-up
    and of measurement, and where the server and the tool run."""

    tool: str
    duration: float
    warmup: float
    connections: int
    threads: int
    pinning: bench.Pinning


def _load(port: int, pid: int, headers: dict[str, str], how: Load,
          ) -> tuple[loadgen.LoadResult, str]:
    """The measured run, and what each request cost the server (CPU, waits for the disk)."""
    request = loadgen.LoadRequest("POST", f"http://{bench.HOST}:{port}{TICKETS}", _json(headers),
                                  bench.TICKET_BODY)

    def run(duration: float) -> loadgen.LoadResult:
        return loadgen.run_load(how.tool, request, duration=duration,
                                connections=how.connections, threads=how.threads,
                                prefix=how.pinning.load)

    if how.warmup > 0:
        run(how.warmup)
    before = _server_use(pid) if Path("/proc").is_dir() else None
    result = run(how.duration)
    if before is None or not result.requests:
        return result, ""
    after = _server_use(pid)
    per = 1e6 / result.requests
    use = (f"   cpu {(after[0] - before[0]) * per:5.0f} us/req"
           f"   waits {(after[1] - before[1]) / result.requests:5.2f}/req")
    return result, use


def template_record(procs: bench.Processes, headers: dict[str, str], how: Load,
                    ) -> tuple[dict[str, Any], int]:
    """The record prefills copy, and the seeded world's count of its kind (see `_template`),
    from a short-lived in-memory server."""
    port, _ = _start(procs, "write-template", [], headers, how.pinning)
    try:
        return _template(port, headers)
    finally:
        procs.stop("write-template")


def durable_runs(procs: bench.Processes, headers: dict[str, str], counts: Sequence[int],
                 how: Load, template: tuple[dict[str, Any], int] | None = None,
                 ) -> Iterator[tuple[int, loadgen.LoadResult, str]]:
    """Durable creates on a fresh store holding each count of changed records: (count, the
    measured run, what a request cost the server). One server at a time, each on a directory
    of its own, removed after its run."""
    template = template or template_record(procs, headers, how)
    for count in counts:
        with durable_servers(procs, headers, (count,), how, template) as servers:
            port, pid = servers[count]
            result, use = _load(port, pid, headers, how)
        yield count, result, use


def server_name(count: int) -> str:
    """The process name of the durable server on a store of `count` changed records."""
    return f"write-durable-{count}"


@contextmanager
def durable_servers(procs: bench.Processes, headers: dict[str, str], counts: Sequence[int],
                    how: Load, template: tuple[dict[str, Any], int],
                    ) -> Iterator[dict[int, tuple[int, int]]]:
    """Fresh durable servers up at once, one per count of changed records in its store: the
    port and pid of each; stopped, and their directories removed, on the way out."""
    record, seeded = template
    with ExitStack() as stack:
        servers: dict[int, tuple[int, int]] = {}
        for count in counts:
            data_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="opsmerge-write-"))) / "data"
            prefill(data_dir, record, seeded, count)
            name = server_name(count)
            stack.callback(procs.stop, name)  # before its directory goes: callbacks run last-in
            servers[count] = _start(procs, name, ["--data-dir", str(data_dir)], headers,
                                    how.pinning)
        yield servers


def _row(name: str, result: loadgen.LoadResult, use: str) -> str:
    return loadgen.result_row(name, result, 16) + use


def _creates(root: Path, n: int) -> None:
    """Run `n` creates straight into the in-memory app of the checkout at `root`."""
    sys.path.insert(0, str(root))
    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.settings import Settings

    app = create_app(Settings(rate_limit=10**9))
    owner = f"Bearer {bench.owner_key('default')}"
    statuses = tooling.in_process(app, "POST", TICKETS, owner, bench.TICKET_BODY.encode(), n)
    if statuses - {201}:
        raise SystemExit(f"creates answered {sorted(statuses)}")


def instructions(root: Path) -> None:
    """Instructions per in-memory create: the difference of two run lengths (start-up cancels)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    cmd = [sys.executable, __file__, "--root", str(root), "--creates"]
    env = tooling.private_cache_env(root, "write-path")
    subprocess.run([*cmd, "1"], check=True, env=env)
    per_create = tooling.instructions_per_unit(cmd, env, 100, 400)
    print(f"create (memory) {per_create:10.0f} instructions/request")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefill", default="0,50000",
                   help="changed records already in the store, comma-separated")
    p.add_argument("--duration", type=float, default=10, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=2, help="seconds of load before each run")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="load tool threads (wrk only)")
    p.add_argument("--tool", choices=["auto", "wrk", "hey"], default="auto")
    p.add_argument("--skip-memory", action="store_true", help="only the durable runs")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the server and the load tool to a CPU each")
    p.add_argument("--instructions", action="store_true",
                   help="count instructions per in-memory create with callgrind instead")
    p.add_argument("--root", type=Path, default=bench.ROOT, help="the checkout to measure")
    p.add_argument("--creates", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.creates is not None:
        _creates(opts.root, opts.creates)
        return 0
    if opts.instructions:
        instructions(opts.root)
        return 0
    pinning = bench.plan_pinning(not opts.no_pin, bench.allowed_cpus(), shutil.which("taskset"))
    how = Load(loadgen.ensure_tool(opts.tool), opts.duration, opts.warmup, opts.connections,
               opts.threads, pinning)
    headers = {"Authorization": f"Bearer {bench.owner_key('default')}"}
    counts = [int(c) for c in opts.prefill.split(",") if c.strip()]
    procs = bench.Processes(bench.BENCH_DIR / "logs")
    results: dict[str, loadgen.LoadResult] = {}
    print(f"write path: {how.tool}, {opts.connections} connections, {opts.duration:g} s per run, "
          f"{pinning.note}, load average {bench.os.getloadavg()[0]:.2f} at start")
    try:
        if not opts.skip_memory:
            port, pid = _start(procs, "write-memory", [], headers, pinning)
            results["memory"], use = _load(port, pid, headers, how)
            procs.stop("write-memory")
            print(_row("memory", results["memory"], use), flush=True)
        for count, result, use in durable_runs(procs, headers, counts, how):
            results[f"durable {count}"] = result
            print(_row(f"durable {count}", result, use), flush=True)
    finally:
        procs.stop_all()
    durable = [results[f"durable {c}"] for c in counts]
    for count, result in zip(counts, durable, strict=True):
        met = result.p99_ms is not None and result.p99_ms <= P99_LIMIT_MS
        print(f"target durable {count} p99 <= {P99_LIMIT_MS:g} ms: "
              f"{'met' if met else 'missed'}")
    if len(durable) > 1 and durable[0].p99_ms and durable[-1].p99_ms:
        ratio = durable[-1].p99_ms / durable[0].p99_ms
        print(f"target p99 at {counts[-1]} / at {counts[0]} <= {FLAT_LIMIT}: {ratio:.2f}x "
              f"{'met' if ratio <= FLAT_LIMIT else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

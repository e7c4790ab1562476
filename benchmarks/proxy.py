"""The validating proxy's added latency: the same requests straight to the sandbox and through
`opsmerge-sandbox proxy`, on loopback, one request at a time.

    .venv/bin/python benchmarks/proxy.py [--requests 2000] [--warmup 200]

A real `opsmerge-sandbox serve` (default recipe, limiter on but never throttling) and a real
`opsmerge-sandbox proxy --upstream` in front of it, each its own process, not pinned: this is
the latency of one request at a time, not throughput per core, and on a two-CPU machine pinning
put the proxy on the client's CPU, which measured the scheduler (list p50 +3.2 ms pinned,
+1.0 ms not, in back-to-back runs). `--pin` pins them as `run.py` pins its servers.
One client on one keep-alive connection per path
sends the scenarios (`get`: one agent; `list`: 50 agents) in alternating blocks, direct then
proxied, so a slow moment of a shared machine lands on both. Per scenario it prints p50 and p99
of each and the difference: what the proxy's forwarding and its checks (schema included) add
to a request. The target is <= 2 ms added at p50 on loopback. `make bench` runs it after the
other targets (`run.py --only proxy` alone).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import run as bench

P50_TARGET_MS = 2.0
BLOCK = 50  # requests per block before switching between direct and proxied


@dataclass(frozen=True, slots=True)
class Added:
    scenario: str
    direct_p50: float
    direct_p99: float
    proxied_p50: float
    proxied_p99: float

    @property
    def added_p50(self) -> float:
        return self.proxied_p50 - self.direct_p50

    @property
    def added_p99(self) -> float:
        return self.proxied_p99 - self.direct_p99

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "direct_p50_ms": round(self.direct_p50, 3),
            "direct_p99_ms": round(self.direct_p99, 3),
            "proxied_p50_ms": round(self.proxied_p50, 3),
            "proxied_p99_ms": round(self.proxied_p99, 3),
            "added_p50_ms": round(self.added_p50, 3),
            "added_p99_ms": round(self.added_p99, 3),
            "target_p50_ms": P50_TARGET_MS,
            "met": self.added_p50 <= P50_TARGET_MS,
        }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _timed(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
    if response.getheader("x-sandbox-violations"):
        found = response.getheader("x-sandbox-violations")
        raise RuntimeError(f"GET {path}: the proxy found {found}")
    return elapsed


def measure(
    direct_port: int, proxy_port: int, headers: dict[str, str], paths: dict[str, str],
    requests: int, warmup: int,
) -> list[Added]:  # fmt: skip
    out = []
    for scenario, path in paths.items():
        direct = http.client.HTTPConnection(bench.HOST, direct_port, timeout=30)
        proxied = http.client.HTTPConnection(bench.HOST, proxy_port, timeout=30)
        for _ in range(warmup):
            _timed(direct, path, headers)
            _timed(proxied, path, headers)
        times: dict[str, list[float]] = {"direct": [], "proxied": []}
        while len(times["proxied"]) < requests:
            for name, conn in (("direct", direct), ("proxied", proxied)):
                times[name] += [_timed(conn, path, headers) for _ in range(BLOCK)]
        direct.close()
        proxied.close()
        out.append(Added(
            scenario,
            statistics.median(times["direct"]), _percentile(times["direct"], 0.99),
            statistics.median(times["proxied"]), _percentile(times["proxied"], 0.99),
        ))  # fmt: skip
    return out


def run_proxy_bench(
    procs: bench.Processes, pinning: bench.Pinning, requests: int, warmup: int
) -> list[Added]:
    """Start the sandbox and the proxy, measure, stop them; `run.py` calls this too."""
    headers = {"Authorization": f"Bearer {bench.owner_key('default')}"}
    port = bench.free_port()
    sandbox = procs.start("proxy-upstream", [*pinning.server, *bench.sandbox_command(
        port, "--rate-limit", bench.HUGE_RATE_LIMIT)])  # fmt: skip
    bench.wait_until_answers(procs, "proxy-upstream", sandbox, time.perf_counter(), port,
                             f"{bench.API}/auth/me", headers, 300, lambda s: s == 200)  # fmt: skip
    proxy_port = bench.free_port()
    upstream = f"http://{bench.HOST}:{port}"
    proxy = procs.start("proxy", [*pinning.load, bench.sandbox_cli(), "proxy", "--upstream",
                                  upstream, "--port", str(proxy_port)])  # fmt: skip
    bench.wait_until_answers(procs, "proxy", proxy, time.perf_counter(), proxy_port,
                             f"{bench.API}/auth/me", headers, 120, lambda s: s == 200)  # fmt: skip
    paths = {
        "get": f"{bench.API}/agents/{bench.AGENT_ID}",
        "list": f"{bench.API}/agents?per_page=50",
    }
    try:
        return measure(port, proxy_port, headers, paths, requests, warmup)
    finally:
        procs.stop("proxy")
        procs.stop("proxy-upstream")


def print_results(results: Sequence[Added]) -> None:
    for r in results:
        verdict = "met" if r.added_p50 <= P50_TARGET_MS else "missed"
        print(
            f"proxy {r.scenario:<4}  direct p50 {r.direct_p50:6.2f} ms p99 {r.direct_p99:6.2f} ms"
            f" | proxied p50 {r.proxied_p50:6.2f} ms p99 {r.proxied_p99:6.2f} ms"
            f" | added p50 {r.added_p50:5.2f} ms p99 {r.added_p99:5.2f} ms"
            f"  (target p50 <= {P50_TARGET_MS} ms: {verdict})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000, help="measured requests per path")
    p.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    p.add_argument("--pin", action="store_true", help="sandbox on one CPU, proxy on another")
    p.add_argument("--output", default=str(bench.BENCH_DIR / "proxy.json"))
    args = p.parse_args(argv)
    import shutil

    pinning = bench.plan_pinning(args.pin, bench.allowed_cpus(), shutil.which("taskset"))
    print(pinning.note)
    procs = bench.Processes(bench.BENCH_DIR / "logs")
    try:
        results = run_proxy_bench(procs, pinning, args.requests, args.warmup)
    finally:
        procs.stop_all()
    print_results(results)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps([r.to_dict() for r in results], indent=2))
    print(f"results written to {args.output}")
    return 0 if all(r.added_p50 <= P50_TARGET_MS for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

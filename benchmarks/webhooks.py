"""Webhooks off the request path: the API's p99 while a receiver stalls, against one that does not.

A real `opsmerge-sandbox serve` on loopback takes creates (`POST /api/v1/tickets`) from wrk
(else hey) in four runs, each in a workspace of its own:

- `no rule`: no ticket rule, so no write makes an event (the floor);
- `prompt receiver`: a rule fires on every create and posts it to a receiver on loopback that
  answers at once (every create costs a firing, a delivery and its log entry);
- `slow receiver`: the same rule, posting to a receiver that sleeps `--receiver-sleep` (10)
  seconds per delivery: every delivery times out, is retried on the clock, and the bounded queue
  fills and overflows (dropped deliveries, logged and journaled);
- `no rule again`: the first run repeated, to show how much the machine drifted.

The four runs are repeated `--rounds` (2) times, round robin, and the best p99 of each is kept:
on a shared machine one neighbour's burst would otherwise decide the comparison.

    .venv/bin/python benchmarks/webhooks.py [--duration 10] [--connections 32] [--rounds 2]
    .venv/bin/python benchmarks/webhooks.py --per-write 2000

`--per-write N` measures instead, in process (no sockets, so repeatable on a busy machine), the
microseconds a create costs with no rule and with a rule that fires a webhook into a full queue.

The target printed is the issue's: the API's p99 unchanged while a receiver sleeps 10 s per
delivery, read as the slow run's p99 within 1.5x of the prompt run's (the same rule, the same
work per request; only the receiver differs). What a firing rule costs a write at all is the
difference between the prompt run and the runs without a rule. The sandbox's queue at the end
(`GET /_sandbox/webhooks`) is printed too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import loadgen
import run as bench

from opsmerge_contracts.webhook_receiver import WebhookReceiver

TICKETS = f"{bench.API}/tickets"
P99_RATIO = 1.5


def _headers(key: str, workspace: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key}",
        "X-Sandbox-Workspace": workspace,
        "Content-Type": "application/json",
    }


def _load(tool: str, port: int, headers: dict[str, str], opts: argparse.Namespace,
          ) -> loadgen.LoadResult:
    request = loadgen.LoadRequest("POST", f"http://{bench.HOST}:{port}{TICKETS}", headers,
                                  bench.TICKET_BODY)
    return loadgen.run_warmed(tool, request, warmup=opts.warmup, duration=opts.duration,
                              connections=opts.connections, threads=opts.threads)


def _row(name: str, result: loadgen.LoadResult) -> str:
    return loadgen.result_row(name, result, 22)


def per_write(n: int) -> None:
    """Microseconds per create in process (ASGI direct, no sockets, no load tool): in a workspace
    without a rule, and in one whose rule fires a webhook at a stalled receiver (a full queue)."""
    import asyncio

    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.settings import Settings

    app = create_app(Settings(rate_limit=10**9))
    owner = f"Bearer {bench.owner_key('default')}".encode()

    async def call(path: str, workspace: str, body: bytes) -> int:
        statuses: list[int] = []
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 4010), "state": {},
            "headers": [(b"host", b"127.0.0.1"), (b"authorization", owner),
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-sandbox-workspace", workspace.encode())],
        }

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(int(message["status"]))  # type: ignore[call-overload]

        await app(scope, receive, send)
        return statuses[0]

    async def creates(workspace: str) -> float:
        body = bench.TICKET_BODY.encode()
        started = time.perf_counter()
        for _ in range(n):
            assert await call(TICKETS, workspace, body) == 201
        return (time.perf_counter() - started) / n * 1e6

    async def run() -> None:
        with WebhookReceiver() as stalled:
            stalled.answer_with(200, delay=10)
            rule = {"name": "per write", "trigger": "ticket.created",
                    "actions": [{"type": "send_webhook", "url": stalled.url}]}
            assert await call(f"{bench.API}/ticket-rules", "hooked",
                              json.dumps(rule).encode()) == 201
            await creates("plain")
            await creates("hooked")  # warm both, and fill the queue
            print(f"create, no rule          {await creates('plain'):8.0f} us")
            print(f"create, rule fires       {await creates('hooked'):8.0f} us")
            print(f"create, no rule (again)  {await creates('plain'):8.0f} us")

    asyncio.run(run())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=2, help="seconds of load before each run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="load tool threads (wrk only)")
    p.add_argument("--tool", choices=["auto", "wrk", "hey"], default="auto")
    p.add_argument("--rounds", type=int, default=2,
                   help="times each run is repeated, round robin; the best p99 of each counts")
    p.add_argument("--per-write", type=int, metavar="N",
                   help="instead: N creates in process, with and without a firing rule")
    p.add_argument("--receiver-sleep", type=float, default=10.0,
                   help="seconds the receiver sleeps before answering each delivery")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.per_write:
        per_write(opts.per_write)
        return 0
    tool = loadgen.ensure_tool(opts.tool)
    key = bench.owner_key("default")
    procs = bench.Processes(bench.BENCH_DIR / "logs")
    results: dict[str, loadgen.LoadResult] = {}
    print(f"webhooks: {tool}, {opts.connections} connections, {opts.duration:g} s per run, "
          f"receiver sleeps {opts.receiver_sleep:g} s, "
          f"load average {bench.os.getloadavg()[0]:.2f} at start")
    with WebhookReceiver() as prompt, WebhookReceiver() as slow:
        slow.answer_with(200, delay=opts.receiver_sleep)
        try:
            port = bench.free_port()
            name = "webhooks"
            proc = procs.start(name, bench.sandbox_command(
                port, "--rate-limit", bench.HUGE_RATE_LIMIT))
            bench.wait_until_answers(procs, name, proc, time.perf_counter(), port,
                                     f"{TICKETS}?per_page=1", _headers(key, "probe"), 300,
                                     lambda s: s == 200)
            runs = [("no rule", None), ("prompt receiver", prompt), ("slow receiver", slow),
                    ("no rule again", None)]
            for i, (label, receiver) in enumerate(runs):
                headers = _headers(key, f"bench-{i}")
                if receiver is not None:
                    rule = {"name": label, "trigger": "ticket.created",
                            "actions": [{"type": "send_webhook", "url": receiver.url}]}
                    status, body = bench.http_call(port, "POST", f"{bench.API}/ticket-rules",
                                                   headers, json.dumps(rule))
                    assert status == 201, body[:300]
            for round_ in range(1, opts.rounds + 1):  # round robin: drift hits every run alike
                for i, (label, _receiver) in enumerate(runs):
                    result = _load(tool, port, _headers(key, f"bench-{i}"), opts)
                    print(_row(f"{label} #{round_}", result), flush=True)
                    best = results.get(label)
                    if best is None or (result.p99_ms or 1e9) < (best.p99_ms or 1e9):
                        results[label] = result
            for label, _ in runs:
                print(_row(f"best {label}", results[label]))
            admin = {"X-Sandbox-Admin-Token": bench.ADMIN_TOKEN}
            status, body = bench.http_call(port, "GET", "/_sandbox/webhooks", admin)
            print(f"queue at the end: {json.loads(body)['data']}")
            print(f"deliveries received: prompt {len(prompt.received())}, "
                  f"slow {len(slow.received())}")
        finally:
            procs.stop_all()
    prompt_p99 = results["prompt receiver"].p99_ms
    slow_p99 = results["slow receiver"].p99_ms
    if prompt_p99 and slow_p99 is not None:
        ratio = slow_p99 / prompt_p99
        print(f"target p99 with a receiver sleeping {opts.receiver_sleep:g} s / with one "
              f"answering at once <= {P99_RATIO}: {ratio:.2f}x "
              f"{'met' if ratio <= P99_RATIO else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


"""Under abuse: many keys and many workspaces at once against a hosted sandbox on loopback.

    .venv/bin/python benchmarks/abuse.py [--requests 20000] [--concurrency 32] [--cap 500]
                                         [--pool 4000] [--rounds 5] [--json out.json]

The sandbox runs in hosted mode in a child process bound to 127.0.0.1, so its memory is its own:
the resident set size is read from /proc before the load (after a short warm-up), after each
round, every 100 ms during the load (the peak under load) and from the kernel's high-water mark.
The load is bounded (a fixed number of requests, sent only to 127.0.0.1) and seeded: docs-visitor
traffic across every recipe key and a pool of workspace names larger than the cap, mixed with
abuse (bad keys, bad headers, malformed and oversized bodies, unknown paths and methods, admin
probes, CORS preflights). Every answer is checked: the error or data envelope with a catalogue
code and status, the headers the status promises, no 5xx; the share of well-formed answers is
printed with the figures.

`Mix`, `run_load` and `serve_in_thread` are also what tests/test_hosted_abuse.py runs, shorter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
BASE = "/api/v1"
ORIGIN = "http://docs.example.test"
_LISTS = ("agents", "clients", "tickets", "contacts", "sites", "scripts", "invoices", "checks")
_SEEDED = ("/clients/cli_acme", "/agents/agt_acmesrv01")


# ---------------------------------------------------------------------- the traffic
@dataclass(frozen=True, slots=True)
class Shot:
    """One request to send, and what kind of traffic it stands for."""

    kind: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


class Mix:
    """A seeded stream of requests: mostly what docs visitors send, a good share of abuse."""

    WEIGHTS: dict[str, float] = {
        "list": 30, "get": 8, "me": 4, "create": 12, "big_write": 2, "update": 6, "delete": 3,
        "bad_json": 4, "bad_media": 2, "bad_params": 4, "bad_path": 3, "bad_method": 2,
        "no_key": 3, "unknown_key": 3, "mangled_key": 2, "bad_workspace": 3,
        "preflight": 6, "admin": 2, "health": 1, "huge": 0.2,
    }

    def __init__(self, keys: Sequence[str], pool: int, seed: int = 7,
                 only: Sequence[str] | None = None) -> None:
        self.keys = list(keys)
        self.pool = pool
        self.rng = random.Random(seed)
        self._kinds = list(only or self.WEIGHTS)
        self._weights = [self.WEIGHTS[k] for k in self._kinds]

    def _auth(self, ws: bool = True) -> dict[str, str]:
        rng = self.rng
        headers = {"authorization": f"Bearer {rng.choice(self.keys)}", "origin": ORIGIN}
        if ws and rng.random() < 0.9:  # one request in ten leaves the workspace to the key
            headers["x-sandbox-workspace"] = f"visitor-{rng.randrange(self.pool)}"
        return headers

    def _json(self, payload: Any) -> tuple[dict[str, str], bytes]:
        return {"content-type": "application/json"}, json.dumps(payload).encode()

    def next(self) -> Shot:
        rng = self.rng
        kind = rng.choices(self._kinds, self._weights)[0]
        word = f"w{rng.randrange(10**6)}"
        if kind == "list":
            query = f"page={rng.randint(1, 4)}&per_page={rng.choice((5, 20, 50, 100))}"
            if rng.random() < 0.3:
                query += f"&q={word[:3]}"
            return Shot(kind, "GET", f"{BASE}/{rng.choice(_LISTS)}?{query}", self._auth())
        if kind == "get":
            path = rng.choice((*_SEEDED, f"/tickets/tkt_{word}"))
            return Shot(kind, "GET", BASE + path, self._auth())
        if kind == "me":
            return Shot(kind, "GET", f"{BASE}/auth/me", self._auth())
        if kind == "create":
            if rng.random() < 0.5:
                extra, body = self._json({"name": f"Abuse {word} Ltd"})
                return Shot(kind, "POST", f"{BASE}/clients", {**self._auth(), **extra}, body)
            extra, body = self._json({"subject": f"Printer {word}", "client_id": "cli_acme"})
            return Shot(kind, "POST", f"{BASE}/tickets", {**self._auth(), **extra}, body)
        if kind == "big_write":  # as large as the spec allows a ticket to be
            payload = {"subject": "S" * 200, "client_id": "cli_acme", "description": "D" * 19000}
            extra, body = self._json(payload)
            return Shot(kind, "POST", f"{BASE}/tickets", {**self._auth(), **extra}, body)
        if kind == "update":
            extra, body = self._json({"name": f"Acme {word}"})
            return Shot(kind, "PATCH", f"{BASE}/clients/cli_acme", {**self._auth(), **extra}, body)
        if kind == "delete":
            return Shot(kind, "DELETE", f"{BASE}/tickets/tkt_{word}", self._auth())
        if kind == "bad_json":
            headers = {**self._auth(), "content-type": "application/json"}
            return Shot(kind, "POST", f"{BASE}/clients", headers, b'{"name": "unterminated')
        if kind == "bad_media":
            headers = {**self._auth(), "content-type": "text/plain"}
            return Shot(kind, "POST", f"{BASE}/clients", headers, b"name=Acme")
        if kind == "bad_params":
            query = rng.choice(("per_page=1000", "page=0", "per_page=abc", "sort=nonsense"))
            return Shot(kind, "GET", f"{BASE}/agents?{query}", self._auth())
        if kind == "bad_path":
            return Shot(kind, "GET", f"{BASE}/nothing-here/{word}", self._auth())
        if kind == "bad_method":
            return Shot(kind, "PUT", f"{BASE}/agents", self._auth())
        if kind == "no_key":
            headers = {"x-sandbox-workspace": f"visitor-{rng.randrange(self.pool)}"}
            return Shot(kind, "GET", f"{BASE}/agents", headers)
        if kind == "unknown_key":
            headers = {**self._auth(), "authorization": f"Bearer om_sbx_{word}{word}"}
            return Shot(kind, "GET", f"{BASE}/clients", headers)
        if kind == "mangled_key":
            good = rng.choice(self.keys)
            bad = rng.choice((f"Bearer  {good}", f"Bearer{good}", f"Token {good}", "Bearer"))
            return Shot(kind, "GET", f"{BASE}/clients", {**self._auth(), "authorization": bad})
        if kind == "bad_workspace":
            name = rng.choice(("x" * 100, "bad name!", "default", "-leading-dash", "a/b"))
            return Shot(kind, "GET", f"{BASE}/agents",
                        {**self._auth(ws=False), "x-sandbox-workspace": name})
        if kind == "preflight":
            headers = {
                "origin": ORIGIN,
                "access-control-request-method": rng.choice(("GET", "POST", "PATCH", "DELETE")),
                "access-control-request-headers": "authorization,content-type,x-sandbox-workspace",
            }
            return Shot(kind, "OPTIONS", f"{BASE}/{rng.choice(_LISTS)}", headers)
        if kind == "admin":
            method, path = rng.choice((("POST", "/_sandbox/reset"), ("GET", "/_sandbox/keys"),
                                       ("POST", "/_sandbox/clock"), ("GET", "/_sandbox/requests")))
            headers = {"x-sandbox-admin-token": "guess", "content-type": "application/json"}
            return Shot(kind, method, path, headers, b"{}" if method == "POST" else None)
        if kind == "health":
            return Shot(kind, "GET", "/healthz", {})
        extra, _ = self._json({})
        body = b'{"name": "' + b"A" * (1024 * 1024 + 16) + b'"}'
        return Shot(kind, "POST", f"{BASE}/clients", {**self._auth(), **extra}, body)


# ---------------------------------------------------------------------- the verdict
def verdict(shot: Shot, status: int, headers: httpx.Headers, body: bytes,
            catalogue: Any) -> str | None:
    """None when the answer is well-formed; otherwise what is wrong with it."""
    if shot.kind == "preflight":
        if not 200 <= status < 300:
            return f"preflight answered {status}"
        if "access-control-allow-origin" not in headers:
            return "preflight without Access-Control-Allow-Origin"
        if headers.get("access-control-allow-credentials", "").lower() == "true":
            return "preflight allows credentials"
        return None
    if status >= 500:
        return f"server error {status}"
    if not headers.get("content-type", "").startswith("application/json"):
        return f"{status} with content-type {headers.get('content-type')!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        return f"{status} with a body that is not JSON"
    if not isinstance(doc, dict) or len(doc) != 1:
        return f"{status} body is not a one-key envelope"
    if status < 400:
        data = doc.get("data")
        if not isinstance(data, dict):
            return f"{status} without a data object"
        if shot.kind == "list" and not {"items", "total", "page", "per_page"} <= set(data):
            return "list without items/total/page/per_page"
        if shot.path.startswith(BASE) and "x-ratelimit-remaining" not in headers:
            return f"{status} without X-RateLimit headers"
        return None
    err = doc.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("message"), str) or not err["message"]:
        return f"{status} without an error code and message"
    entry = catalogue.codes.get(err.get("code"))
    if entry is None:
        return f"{status} with code {err.get('code')!r}, not in the catalogue"
    if entry.status != status:
        return f"{err['code']} travels with {entry.status}, answered {status}"
    for detail in err.get("details") or ():
        if not {"location", "field", "message"} <= set(detail):
            return f"{err['code']} detail without location/field/message"
    if status == 401 and "www-authenticate" not in headers:
        return "401 without WWW-Authenticate"
    if status == 429 and "retry-after" not in headers:
        return "429 without Retry-After"
    return None


@dataclass(slots=True)
class LoadResult:
    requests: int = 0
    well_formed: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    preflight_ms: list[float] = field(default_factory=list)

    @property
    def share_well_formed(self) -> float:
        return self.well_formed / self.requests if self.requests else 0.0

    def merge(self, other: LoadResult) -> None:
        self.requests += other.requests
        self.well_formed += other.well_formed
        self.seconds += other.seconds
        self.statuses.update(other.statuses)
        self.kinds.update(other.kinds)
        self.failures.extend(other.failures[: max(0, 20 - len(self.failures))])
        self.preflight_ms.extend(other.preflight_ms)


def _require_loopback(base_url: str) -> None:
    if urlsplit(base_url).hostname != LOOPBACK:
        raise SystemExit(f"refusing to load anything but {LOOPBACK}: {base_url}")


async def run_load(base_url: str, mix: Mix, requests: int, concurrency: int = 16,
                   on_progress: Callable[[int], None] | None = None,
                   every: int = 50) -> LoadResult:
    """Send `requests` shots from `mix` with `concurrency` connections; judge every answer."""
    from sandbox.catalogue import load_catalogue

    _require_loopback(base_url)
    catalogue = load_catalogue()
    result = LoadResult()
    shots = iter([mix.next() for _ in range(requests)])

    async def worker() -> None:
        # One client (one connection) per worker: httpx's shared pool gets slow with many.
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
            await _drain(client)

    async def _drain(client: httpx.AsyncClient) -> None:
        for shot in shots:
            started = time.perf_counter()
            try:
                r = await client.request(shot.method, shot.path, headers=shot.headers,
                                         content=shot.body)
                problem = verdict(shot, r.status_code, r.headers, r.content, catalogue)
                result.statuses[r.status_code] += 1
            except httpx.HTTPError as exc:
                problem = f"transport error: {type(exc).__name__}: {exc}"
            if shot.kind == "preflight":
                result.preflight_ms.append((time.perf_counter() - started) * 1000)
            result.requests += 1
            result.kinds[shot.kind] += 1
            if problem is None:
                result.well_formed += 1
            elif len(result.failures) < 20:
                result.failures.append(f"{shot.kind} {shot.method} {shot.path[:60]}: {problem}")
            if on_progress is not None and result.requests % every == 0:
                on_progress(result.requests)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------- the server
@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            server_header=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sandbox did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def server_stats(state: Any) -> dict[str, int]:
    """What the sandbox holds that grows with visitors."""
    return {
        "workspaces": len(state.workspaces),
        "change_tables": len(state.workspaces.delta.workspaces()),
        "rate_windows": len(state.limiter.storage.expirations),
        "journal": len(state.journal),
    }


def _child(conn: Connection, cap: int, ttl: float) -> None:
    """The server process: a hosted sandbox on loopback that answers stats over `conn`."""
    import logging

    import uvicorn

    sys.path.insert(0, str(ROOT))
    from sandbox.app import create_app
    from sandbox.settings import Settings
    from sandbox.state import build_state

    logging.disable(logging.WARNING)
    settings = Settings(hosted=True, cors_origins=("*",), hosted_max_workspaces=cap,
                        hosted_workspace_ttl=ttl)
    state = build_state(settings)
    app = create_app(settings, state)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    conn.send({"port": sock.getsockname()[1], "keys": [k.key for k in state.recipe.keys]})

    def answer() -> None:
        while True:
            try:
                conn.recv()
            except EOFError:
                return
            conn.send(server_stats(state))

    threading.Thread(target=answer, daemon=True).start()
    config = uvicorn.Config(app, log_level="error", access_log=False, lifespan="on",
                            server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a process, in KiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


class _Sampler:
    """Reads a process's RSS every 100 ms in a thread; keeps the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid)[0])
            self._stop.wait(0.1)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cap", type=int, default=500, help="hosted_max_workspaces")
    parser.add_argument("--ttl", type=float, default=1800.0, help="hosted_workspace_ttl, seconds")
    parser.add_argument("--pool", type=int, default=4000, help="distinct workspace names sent")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, args.cap, args.ttl), daemon=True)
    proc.start()
    try:
        hello = parent.recv()
        base = f"http://{LOOPBACK}:{hello['port']}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the sandbox did not start")
            time.sleep(0.1)

        def stats() -> dict[str, int]:
            parent.send("stats")
            return parent.recv()

        start_rss, _ = rss_kib(proc.pid)
        asyncio.run(run_load(base, Mix(hello["keys"], 50, args.seed + 1), args.warmup, 8))
        idle = asyncio.run(run_load(base, Mix(hello["keys"], 50, only=["preflight"]), 300, 1))
        before, _ = rss_kib(proc.pid)
        mix = Mix(hello["keys"], args.pool, args.seed)
        total = LoadResult()
        rows = []
        per_round = max(1, args.requests // args.rounds)
        with _Sampler(proc.pid) as sampler:
            for i in range(args.rounds):
                part = asyncio.run(run_load(base, mix, per_round, args.concurrency))
                total.merge(part)
                rss, _ = rss_kib(proc.pid)
                rows.append({"round": i + 1, "requests": total.requests, "rss_kib": rss,
                             "req_per_s": round(part.requests / part.seconds), **stats()})
        after, hwm = rss_kib(proc.pid)
        final = stats()
    finally:
        proc.terminate()
        proc.join(timeout=10)

    pre = sorted(total.preflight_ms)
    quiet = sorted(idle.preflight_ms)
    figures = {
        "requests": total.requests,
        "seconds": round(total.seconds, 2),
        "req_per_s": round(total.requests / total.seconds),
        "concurrency": args.concurrency,
        "workspace_cap": args.cap,
        "workspace_names_sent": args.pool,
        "well_formed": total.well_formed,
        "share_well_formed": round(total.share_well_formed, 5),
        "rss_start_kib": start_rss,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_peak_under_load_kib": max(sampler.peak, after),
        "rss_high_water_kib": hwm,
        "preflight_idle_ms_p50": round(quiet[len(quiet) // 2], 2),
        "preflight_idle_ms_p99": round(quiet[int(len(quiet) * 0.99)], 2),
        "preflight_ms_p50": round(pre[len(pre) // 2], 2) if pre else None,
        "preflight_ms_p99": round(pre[int(len(pre) * 0.99)], 2) if pre else None,
        "statuses": dict(sorted(total.statuses.items())),
        "final": final,
        "rounds": rows,
        "failures": total.failures,
    }
    print(f"abuse: {total.requests} requests in {total.seconds:.1f} s "
          f"({figures['req_per_s']} req/s, concurrency {args.concurrency}), "
          f"{args.pool} workspace names against a cap of {args.cap}")
    print(f"  well-formed  {total.well_formed}/{total.requests} "
          f"({100 * total.share_well_formed:.2f} %)")
    print(f"  RSS          start {_mib(start_rss)} · before {_mib(before)} · after {_mib(after)}"
          f" · peak under load {_mib(figures['rss_peak_under_load_kib'])}"
          f" · high-water {_mib(hwm)}")
    print(f"  preflight    alone: p50 {figures['preflight_idle_ms_p50']} ms · p99 "
          f"{figures['preflight_idle_ms_p99']} ms; under the load: p50 "
          f"{figures['preflight_ms_p50']} ms · p99 {figures['preflight_ms_p99']} ms")
    print(f"  alive after  {final['workspaces']} workspaces · {final['change_tables']} change "
          f"tables · {final['rate_windows']} rate windows · journal {final['journal']}")
    print("  statuses     " + ", ".join(f"{k}: {v}" for k, v in figures["statuses"].items()))
    for row in rows:
        print(f"  round {row['round']}: {row['requests']:>6} requests · RSS {_mib(row['rss_kib'])}"
              f" · {row['workspaces']} workspaces · {row['rate_windows']} rate windows"
              f" · {row['req_per_s']} req/s")
    for failure in total.failures:
        print(f"  NOT WELL-FORMED {failure}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if total.well_formed == total.requests else 1


if __name__ == "__main__":
    sys.exit(main())

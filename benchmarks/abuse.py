"""Under abuse: many keys and many workspaces at once against a hosted sandbox on loopback.

    .venv/bin/python benchmarks/abuse.py [--requests 20000] [--concurrency 32] [--cap 500]
                                         [--pool 4000] [--rounds 5] [--tricks 2000]
                                         [--rotation-seconds 60] [--json out.json]

The sandbox runs in hosted mode in a child process bound to 127.0.0.1, so its memory is its own:
the resident set size is read from /proc before the load (after a short warm-up), after each
round, every 100 ms during the load (the peak under load) and from the kernel's high-water mark.
The load is bounded (a fixed number of requests, sent only to 127.0.0.1) and seeded: docs-visitor
traffic across every recipe key and a pool of workspace names larger than the cap, mixed with
abuse (bad keys, bad headers, malformed and oversized bodies, unknown paths and methods, admin
probes, CORS preflights). Every answer is checked: the error or data envelope with a catalogue
code and status, the headers the status promises, no 5xx; the share of well-formed answers is
printed with the figures. Visitors arrive through the docs' proxy (the sandbox trusts loopback's
X-Forwarded-For), each from an address of their own.

Then two tricks, each with its own figures:
- the two-header trick: two Authorization headers on one request (a usable key first and a
  different one second, and the other way round; on reads and writes), and two
  X-Sandbox-Workspace headers. Every one must be refused (400 HEADER_INVALID) and write nothing;
- the workspace rotation: one key from one address, a new X-Sandbox-Workspace on every request
  (each a write), for a minute. Per-key buckets live per workspace, so only the per-address
  limit can cap it: the requests that get through must stay within that budget, the workspaces
  alive within the cap, and the RSS flat.

`Mix`, `run_load` and `serve_in_thread` are also what tests/test_hosted_abuse.py runs, shorter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
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
Headers = dict[str, str] | list[tuple[str, str]]  # a list may repeat a header


@dataclass(frozen=True, slots=True)
class Shot:
    """One request to send, and what kind of traffic it stands for."""

    kind: str
    method: str
    path: str
    headers: Headers
    body: bytes | None = None


TRICKS = ("two_keys", "two_workspaces")  # refused, every one, or the trick worked
_VISITOR_NET = "10.{}.{}.{}"  # the address a visitor's proxied requests come from


class Mix:
    """A seeded stream of requests: mostly what docs visitors send, a good share of abuse."""

    WEIGHTS: dict[str, float] = {
        "list": 30, "get": 8, "me": 4, "create": 12, "big_write": 2, "update": 6, "delete": 3,
        "bad_json": 4, "bad_media": 2, "bad_params": 4, "bad_path": 3, "bad_method": 2,
        "no_key": 3, "unknown_key": 3, "mangled_key": 2, "bad_workspace": 3,
        "preflight": 6, "admin": 2, "health": 1, "huge": 0.2,
    }

    # Not in the default traffic: each is its own phase of the benchmark.
    EXTRA: dict[str, float] = {"two_keys": 1, "two_workspaces": 1, "rotate": 1}

    def __init__(self, keys: Sequence[str], pool: int, seed: int = 7,
                 only: Sequence[str] | None = None, forwarded: bool = False) -> None:
        self.keys = list(keys)
        self.pool = pool
        self.rng = random.Random(seed)
        self.forwarded = forwarded  # send each visitor's own address in X-Forwarded-For
        self.rotations = 0
        weights = {**self.WEIGHTS, **self.EXTRA}
        self._kinds = list(only or self.WEIGHTS)
        self._weights = [weights[k] for k in self._kinds]

    def _auth(self, ws: bool = True) -> dict[str, str]:
        rng = self.rng
        headers = {"authorization": f"Bearer {rng.choice(self.keys)}", "origin": ORIGIN}
        visitor = rng.randrange(self.pool)
        if ws and rng.random() < 0.9:  # one request in ten leaves the workspace to the key
            headers["x-sandbox-workspace"] = f"visitor-{visitor}"
        if self.forwarded:
            headers["x-forwarded-for"] = _VISITOR_NET.format(
                visitor >> 16 & 255, visitor >> 8 & 255, visitor & 255
            )
        return headers

    def _trick(self, kind: str) -> Shot:
        """Two Authorization (or two X-Sandbox-Workspace) headers on one request."""
        rng = self.rng
        first, second = rng.sample(self.keys, 2)
        if kind == "two_keys":
            if rng.random() < 0.25:  # a usable key then a key that does not exist
                second = f"om_sbx_unknown{rng.randrange(10**9)}"
            pair = [("authorization", f"Bearer {first}"), ("authorization", f"Bearer {second}")]
            if rng.random() < 0.5:
                pair.reverse()
            headers = [*pair, ("x-sandbox-workspace", f"trick-{rng.randrange(self.pool)}")]
        else:
            a, b = rng.sample(range(self.pool), 2)
            headers = [("authorization", f"Bearer {first}"),
                       ("x-sandbox-workspace", f"trick-{a}"), ("x-sandbox-workspace", f"trick-{b}")]
        if self.forwarded:
            visitor = rng.randrange(self.pool)
            headers.append(("x-forwarded-for", _VISITOR_NET.format(
                visitor >> 16 & 255, visitor >> 8 & 255, visitor & 255)))
        if rng.random() < 0.5:
            return Shot(kind, "GET", f"{BASE}/{rng.choice(_LISTS)}?per_page=5", headers)
        extra, body = self._json({"name": f"Trick {rng.randrange(10**6)} Ltd"})
        return Shot(kind, "POST", f"{BASE}/clients", [*headers, *extra.items()], body)

    def _rotate(self) -> Shot:
        """One key, one address, a workspace never used before: a write in each."""
        self.rotations += 1
        extra, body = self._json({"name": f"Rotation {self.rotations} Ltd"})
        headers = {"authorization": f"Bearer {self.keys[0]}",
                   "x-sandbox-workspace": f"rotation-{self.rotations}", **extra}
        return Shot("rotate", "POST", f"{BASE}/clients", headers, body)

    def _json(self, payload: Any) -> tuple[dict[str, str], bytes]:
        return {"content-type": "application/json"}, json.dumps(payload).encode()

    def next(self) -> Shot:
        rng = self.rng
        kind = rng.choices(self._kinds, self._weights)[0]
        if kind in TRICKS:
            return self._trick(kind)
        if kind == "rotate":
            return self._rotate()
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
    if shot.kind in TRICKS and status < 400:
        return f"{status}: two {shot.kind.removeprefix('two_')} headers taken at face value"
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
                   every: int = 50, seconds: float | None = None) -> LoadResult:
    """Send `requests` shots from `mix` with `concurrency` connections; judge every answer.

    With `seconds`, send for that long instead (at most `requests`).
    """
    from opsmerge_sandbox.catalogue import load_catalogue

    _require_loopback(base_url)
    catalogue = load_catalogue()
    result = LoadResult()
    if seconds is None:
        shots: Iterator[Shot] = iter([mix.next() for _ in range(requests)])
    else:
        until = time.monotonic() + seconds
        shots = itertools.takewhile(lambda _: time.monotonic() < until,
                                    (mix.next() for _ in range(requests)))

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
    from opsmerge_sandbox.hosted import changes_in

    workspaces = state.workspaces
    return {
        "workspaces": len(workspaces),
        "change_tables": len(workspaces.delta.workspaces()),
        "changed_records": sum(changes_in(workspaces.get(n)) for n in workspaces.names()),
        "rate_windows": len(state.limiter.storage.expirations),
        "journal": len(state.journal),
    }


def hosted_settings(**values: Any) -> Any:
    """Hosted Settings with those of `values` this version of the sandbox has."""
    from opsmerge_sandbox.settings import Settings

    known = {f.name for f in dataclasses.fields(Settings)}
    return Settings(hosted=True, cors_origins=("*",),
                    **{k: v for k, v in values.items() if k in known})


def _child(conn: Connection, cap: int, ttl: float, address_limit: int | None = None) -> None:
    """The server process: a hosted sandbox on loopback that answers stats over `conn`."""
    import logging

    import uvicorn

    sys.path.insert(0, str(ROOT))
    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.hosted import policy_for
    from opsmerge_sandbox.state import build_state

    logging.disable(logging.WARNING)
    # Visitors come through the docs' proxy: loopback is trusted to say who they are.
    extra = {"hosted_address_rate_limit": address_limit} if address_limit else {}
    settings = hosted_settings(hosted_max_workspaces=cap, hosted_workspace_ttl=ttl,
                               trusted_proxies=(LOOPBACK,), **extra)
    state = build_state(settings)
    app = create_app(settings, state)
    policy = policy_for(state)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    conn.send({"port": sock.getsockname()[1], "keys": [k.key for k in state.recipe.keys],
               "address_limit": getattr(policy, "address_limit", None),
               "max_changes": policy.max_changes, "max_total_bytes": policy.max_total_bytes})

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
    parser.add_argument("--tricks", type=int, default=2000,
                        help="requests with two Authorization or X-Sandbox-Workspace headers")
    parser.add_argument("--rotation-seconds", type=float, default=60.0,
                        help="how long one key rotates workspaces from one address")
    parser.add_argument("--address-limit", type=int, default=None,
                        help="hosted_address_rate_limit (default: the sandbox's)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, args.cap, args.ttl, args.address_limit),
                       daemon=True)
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
        mix = Mix(hello["keys"], args.pool, args.seed, forwarded=True)
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

        # The two-header trick: every one refused, nothing written.
        trick_mix = Mix(hello["keys"], args.pool, args.seed + 2, only=TRICKS, forwarded=True)
        tricks = asyncio.run(run_load(base, trick_mix, args.tricks, args.concurrency))
        after_tricks = stats()  # what the refused tricks left behind
        # The rotation: one key, one address, a new workspace (and a write) every request.
        rot_before, _ = rss_kib(proc.pid)
        rotation = asyncio.run(run_load(
            base, Mix(hello["keys"], args.pool, only=["rotate"]), 10**9, args.concurrency,
            seconds=args.rotation_seconds))
        rot_after, _ = rss_kib(proc.pid)
        after_rotation = stats()
    finally:
        proc.terminate()
        proc.join(timeout=10)

    limit = hello.get("address_limit")
    windows = int(args.rotation_seconds // 60) + 1  # a minute's window may start mid-run
    budget = limit * windows if limit else None
    through = sum(v for k, v in rotation.statuses.items() if 200 <= k < 300)
    tricks_taken = sum(v for k, v in tricks.statuses.items() if k < 400)
    two_headers = {
        "sent": tricks.requests,
        "refused": sum(v for k, v in tricks.statuses.items() if 400 <= k < 500),
        "taken": tricks_taken,
        "statuses": dict(sorted(tricks.statuses.items())),
        "records_written": tricks.statuses.get(201, 0),
        "well_formed": tricks.well_formed,
        "workspaces_after": after_tricks["workspaces"],
    }
    rotation_figures = {
        "sent": rotation.requests,
        "seconds": round(rotation.seconds, 1),
        "through": through,
        "address_limit_per_minute": limit,
        "budget": budget,
        "statuses": dict(sorted(rotation.statuses.items())),
        "records_written": rotation.statuses.get(201, 0),
        "changed_records_held": after_rotation["changed_records"],
        "changes_budget": args.cap * hello["max_changes"],
        "workspaces_alive": after_rotation["workspaces"],
        "rss_before_kib": rot_before,
        "rss_after_kib": rot_after,
        "well_formed": rotation.well_formed,
    }
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
        "two_headers": two_headers,
        "rotation": rotation_figures,
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
    print(f"  two headers  {two_headers['sent']} sent · refused {two_headers['refused']} · taken "
          f"{tricks_taken} · records written {two_headers['records_written']} · statuses "
          + ", ".join(f"{k}: {v}" for k, v in two_headers["statuses"].items()))
    allowance = f"{limit}/min, {budget} in {windows} windows" if limit else "none: no limit"
    print(f"  rotation     {rotation.requests} writes in {rotation.seconds:.1f} s, one key from "
          f"one address, a new workspace each · through {through} (budget {allowance})"
          f" · records written {rotation_figures['records_written']}, held "
          f"{rotation_figures['changed_records_held']} · workspaces alive "
          f"{after_rotation['workspaces']}/{args.cap} · RSS {_mib(rot_before)} -> "
          f"{_mib(rot_after)}")
    print("  rotation statuses " + ", ".join(f"{k}: {v}" for k, v in
                                            rotation_figures["statuses"].items()))
    for failure in total.failures + tricks.failures + rotation.failures:
        print(f"  NOT WELL-FORMED {failure}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    bounded = budget is not None and through <= budget \
        and rotation_figures["records_written"] <= budget \
        and rotation_figures["changed_records_held"] <= rotation_figures["changes_budget"] \
        and after_rotation["workspaces"] <= args.cap
    clean = tricks_taken == 0 and two_headers["records_written"] == 0
    well = total.well_formed == total.requests and tricks.well_formed == tricks.requests \
        and rotation.well_formed == rotation.requests
    return 0 if well and clean and bounded else 1


if __name__ == "__main__":
    sys.exit(main())

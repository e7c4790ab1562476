"""`make bench`: the sandbox against WireMock, Stoplight Prism, and bare Litestar and ASGI floors.

One run, one load tool, one connection count for every target, every server pinned to one core
with the load tool on another (`--no-pin` turns that off). Every reference answers with the bytes
the sandbox answered. Each scenario gets a warm-up (a longer one for the JVM), then a measured
run; the results go to a table with the issue's targets marked met or missed, and to
`.bench/results.json`.

A shared machine's speed drifts by a factor of three within a minute, so a reference measured
minutes after the sandbox says more about the machine than about either server. Each reference is
therefore measured beside a fresh sandbox on the same core: the two take turns in short slices
(`--rounds`, default 5, each `duration / rounds` long), and a ratio target is the median of the
rounds' ratios. The server waiting for its turn is stopped (SIGSTOP) until its turn, so it
spends none of the shared core: an idle JVM still compiles and collects (`--no-hold` leaves it
running). Every server is started in its own process group on 127.0.0.1 and stopped on every way
out, Ctrl-C included.

The durable phase serves creates with `--data-dir` on stores already holding 0 and 50,000 changed
records (`write_path.py`, which also measures them alone). Companion scripts measure one path
each: `webhooks.py` (the API's p99 while a webhook receiver stalls), `abuse.py` and `hostile.py`
(see their README).
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
from pathlib import Path
from typing import IO, Any

import loadgen
import prism as prism_setup
import wiremock as wiremock_setup
from asgi_floor import STUBS_ENV, Stub, dump_stubs
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
SPEC = ROOT / "sandbox" / "openapi" / "opsmerge.yaml"
BENCH_SRC = Path(__file__).resolve().parent
FLOOR_APP = BENCH_SRC / "floor_app.py"
ASGI_FLOOR_APP = BENCH_SRC / "asgi_floor.py"
STUB_FILE = BENCH_DIR / "floor-bodies.json"
HOST = "127.0.0.1"
API = "/api/v1"
AGENT_ID = "agt_acmesrv01"  # the default recipe's named agent (docs and tests use it)
TICKET_BODY = '{"subject": "Bench", "client_id": "cli_acme"}'
HUGE_RATE_LIMIT = "100000000"  # per minute: keeps the limiter on without throttling the load
ADMIN_TOKEN = "bench_admin_token"
MAX_FAILED = 0.01  # a run with more non-2xx/socket errors than this is not a measurement

SANDBOX, NOAUTH, LARGE = "sandbox", "sandbox no-auth", "sandbox large"
FLOOR, PRISM_STATIC, PRISM_DYNAMIC = "floor", "prism static", "prism dynamic"
FLOOR_GRANIAN, ASGI, ASGI_GRANIAN = "floor granian", "asgi floor", "asgi floor granian"
SANDBOX_GRANIAN = "sandbox granian"  # the same app on granian: the server chosen by measurement
# the fresh sandbox a reference takes turns with, as its process is named (its slices are the
# sandbox's: see the module's docstring)
BESIDE = "sandbox beside"
WIREMOCK = "wiremock"
# --only names, in running order; `shared` is benchmarks/shared_state.py (Redis, 1-4 workers)
PHASES = ("sandbox", "floor", "asgi", "wiremock", "prism", "proxy", "durable", "shared")
DURABLE_PREFILLS = (0, 50_000)  # changed records already in the store of a durable run

# Wide enough for both tables when the output is piped to a file (rich falls back to 80).
console = Console(width=max(shutil.get_terminal_size((120, 24)).columns, 120))


# ---------------------------------------------------------------------------------------------
# processes


class StartError(RuntimeError):
    """A server exited or never answered."""


class Processes:
    """Every server this run started, so each one is stopped on any way out."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def start(
        self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log = (self._log_dir / f"{name.replace(' ', '-')}.log").open("wb")
        proc = subprocess.Popen(
            list(cmd), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Prism's children stop with it
            env=dict(os.environ, **env) if env else None,
        )
        self._procs[name] = (proc, log)
        return proc

    def check_running(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """A StartError with the end of its log if the server has exited."""
        if proc.poll() is not None:
            raise StartError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self._log_dir / f"{name.replace(' ', '-')}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, name: str) -> None:
        entry = self._procs.pop(name, None)
        if entry is None:
            return
        proc, log = entry
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)  # the group this run created for it, nothing else
                os.killpg(proc.pid, signal.SIGCONT)  # a held server wakes up to its SIGTERM
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        log.close()

    def stop_all(self) -> None:
        for name in list(self._procs):
            self.stop(name)

    @contextmanager
    def held(self, name: str) -> Iterator[None]:
        """The server stopped (SIGSTOP to its process group) for the block, running again after:
        a server waiting for its turn must not spend the core it shares with the one under load
        (an idle JVM's compiler and collector threads keep running)."""
        entry = self._procs.get(name)
        if entry is None or entry[0].poll() is not None:
            yield
            return
        group = entry[0].pid
        os.killpg(group, signal.SIGSTOP)
        try:
            if not wait_stopped(group):
                console.print(f"[yellow]warning:[/] {name} still ran 2 s after SIGSTOP; its "
                              "turns may share the core")
            yield
        finally:
            with suppress(ProcessLookupError):
                os.killpg(group, signal.SIGCONT)


# a server's turn is taken with the other one held (see `Processes.held`); nullcontext: not held
Hold = Callable[[], AbstractContextManager[object]]
STOPPED_STATES = frozenset("TtZX")  # stopped, traced, or gone: it runs nothing


def thread_states(pid: int) -> list[str]:
    """The scheduler state of each of a process's threads (Linux /proc; [] elsewhere or gone)."""
    out = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with suppress(OSError):  # a thread that ended meanwhile
            out.append(stat.read_text().rsplit(")", 1)[1].split()[0])
    return out


def wait_stopped(pid: int, timeout: float = 2.0) -> bool:
    """Wait until every thread of `pid` is stopped (SIGSTOP reaches each thread as it next
    leaves the kernel); False when some still ran at `timeout`."""
    deadline = time.monotonic() + timeout
    while not all(s in STOPPED_STATES for s in thread_states(pid)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http_call(
    port: int, method: str, path: str, headers: dict[str, str], body: str | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    status, _, data = http_answer(port, method, path, headers, body, timeout)
    return status, data


def http_answer(
    port: int, method: str, path: str, headers: dict[str, str], body: str | None = None,
    timeout: float = 5.0,
) -> tuple[int, str, bytes]:
    """Status, content type and body of one request."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type", ""), resp.read()
    finally:
        conn.close()


def wait_until_answers(
    procs: Processes, name: str, proc: subprocess.Popen[bytes], started: float, port: int,
    path: str, headers: dict[str, str], timeout: float, accept: Callable[[int], bool],
) -> float:
    """Poll every 10 ms until `path` answers with an accepted status; seconds since `started`."""
    deadline = started + timeout
    while time.perf_counter() < deadline:
        procs.check_running(name, proc)
        try:
            status, _ = http_call(port, "GET", path, headers, timeout=2.0)
        except OSError:
            status = 0
        if status and accept(status):
            return time.perf_counter() - started
        time.sleep(0.01)
    raise StartError(f"{name} did not answer {path} within {timeout:.0f}s:\n{procs.log_tail(name)}")


# ---------------------------------------------------------------------------------------------
# pinning


@dataclass(slots=True, frozen=True)
class Pinning:
    """Command prefixes that put every server on one core and the load tool on another."""

    server: tuple[str, ...] = ()
    load: tuple[str, ...] = ()
    note: str = "not pinned"


def plan_pinning(enabled: bool, cpus: Sequence[int], taskset: str | None) -> Pinning:
    """Server on the first allowed CPU, load tool on the second, both through `taskset -c`.

    One core each is what "per core" means, and keeps the load tool from taking the server's
    cycles; without two CPUs or without taskset the run goes on unpinned and says so.
    """
    if not enabled:
        return Pinning(note="not pinned (--no-pin)")
    if taskset is None:
        return Pinning(note="not pinned: taskset not found (apt-get install util-linux)")
    allowed = sorted(set(cpus))
    if len(allowed) < 2:
        return Pinning(note=f"not pinned: only {len(allowed)} CPU available")
    server, load = allowed[0], allowed[1]
    return Pinning((taskset, "-c", str(server)), (taskset, "-c", str(load)),
                   f"server on CPU {server}, load tool on CPU {load}")


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (what taskset can choose from)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------
# what is measured


@dataclass(slots=True)
class Scenario:
    name: str
    method: str
    path: str
    body: str | None = None


@dataclass(slots=True)
class Run:
    target: str
    scenario: str
    url: str
    result: loadgen.LoadResult | None
    note: str = ""
    warmup_s: float | None = None
    # measured in turns: (this target's slice, the partner's slice) of each round
    beside: list[tuple[loadgen.LoadResult, loadgen.LoadResult]] = field(default_factory=list)
    partner: str = SANDBOX  # the target whose slices `beside` pairs with this one's

    @property
    def valid(self) -> bool:
        return self.result is not None and self.result.failed_fraction <= MAX_FAILED


@dataclass(slots=True)
class Target:
    name: str
    value: float | None
    limit: float
    op: str  # ">=" or "<="
    unit: str  # "x", "%", "ms", "s"
    note: str = ""
    failed: bool = False  # the sandbox answered errors under load: missed, whatever the value
    status: str = field(init=False)

    def __post_init__(self) -> None:
        if self.failed:
            self.status = "missed"
        elif self.value is None:
            self.status = "n/a"
        elif self.op == ">=":
            self.status = "met" if self.value >= self.limit else "missed"
        else:
            self.status = "met" if self.value <= self.limit else "missed"


@dataclass(slots=True)
class Options:
    tool: str
    duration: float
    warmup: float
    connections: int
    threads: int
    repeat: int = 1
    pinning: Pinning = field(default_factory=Pinning)
    jvm_warmup: float = 120.0  # the most a JVM gets to level off (see `warmed_up`)
    rounds: int = 0  # turns taken with the sandbox beside a reference; 0: measured alone
    hold: bool = True  # the server waiting for its turn is stopped meanwhile (`Processes.held`)


@dataclass(frozen=True, slots=True)
class Beside:
    """The server a target takes turns with: where it listens, its key, its own path of each
    scenario (Prism serves the same operations under another prefix), the target its slices
    are measurements of (the sandbox, unless `name` says otherwise), which the targets pair, and
    what keeps it stopped while the target takes its turn."""

    port: int
    headers: dict[str, str]
    scenarios: dict[str, Scenario]
    name: str = SANDBOX
    hold: Hold = nullcontext


SCENARIOS = ("list", "get", "create")


def scenarios(prefix: str, agent_id: str, names: Sequence[str]) -> list[Scenario]:
    every = {
        "list": Scenario("list", "GET", f"{prefix}/agents?per_page=50"),
        "get": Scenario("get", "GET", f"{prefix}/agents/{agent_id}"),
        "create": Scenario("create", "POST", f"{prefix}/tickets", TICKET_BODY),
    }
    return [every[n] for n in names]


def probe_problem(status: int, body: bytes, expect: Stub | None) -> str:
    """Why a probe's answer must not be measured ("" when it may): an error status, or (for a
    reference replaying the sandbox's answer) other bytes or another status than the sandbox's."""
    if status >= 400:
        return f"probe answered {status}"
    if expect is not None:
        if status != expect.status:
            return f"probe answered {status}, the sandbox {expect.status}"
        if body != expect.body:
            return f"probe answered {len(body)} bytes unlike the sandbox's {len(expect.body)}"
    return ""


WARM_SLICE_S = 5.0
WARM_MIN_SLICES = 6  # measured: pinned to one busy core, WireMock still doubles after 30 s
WARM_WINDOW = 3
WARM_TOLERANCE = 0.05


def warmed_up(slices: Sequence[float]) -> bool:
    """True once throughput stopped climbing: at least WARM_MIN_SLICES slices, and none of the
    last WARM_WINDOW beat the best before them by more than WARM_TOLERANCE. A JVM's climb is
    slow and has flat stretches, so one or two level slices are not enough to call it warm."""
    if len(slices) < max(WARM_MIN_SLICES, WARM_WINDOW + 1):
        return False
    before = max(slices[:-WARM_WINDOW])
    return max(slices[-WARM_WINDOW:]) <= (1 + WARM_TOLERANCE) * before


def _probe(
    port: int, scenario: Scenario, headers: dict[str, str], expect: Stub | None,
) -> tuple[loadgen.LoadRequest | None, str]:
    """One call before the load (a wrong path must not be benchmarked as a fast 404, nor a
    reference that sends other bytes than the sandbox): the request to load, or why not."""
    url = f"http://{HOST}:{port}{scenario.path}"
    all_headers = dict(headers)
    if scenario.body is not None:
        all_headers["Content-Type"] = "application/json"
    try:
        status, body = http_call(port, scenario.method, scenario.path, all_headers, scenario.body)
    except OSError as exc:
        return None, f"probe failed: {exc}"
    problem = probe_problem(status, body, expect)
    if problem:
        return None, problem
    return loadgen.LoadRequest(scenario.method, url, all_headers, scenario.body), ""


def measure(
    opts: Options, target: str, port: int, scenario: Scenario, headers: dict[str, str],
    expect: Stub | None = None, warmup: float | None = None, until_steady: bool = False,
    beside: Beside | None = None, hold: Hold = nullcontext,
) -> Run:
    """Probe, warm up, then measure. With `until_steady`, `warmup` is a ceiling: the warm-up runs
    in slices until the throughput levels off (a JVM). With `beside` (and `opts.rounds`), the
    measured time is cut into rounds, each a slice of this target and a slice of that server,
    the first of the two alternating, so both see the same seconds of the machine; the one
    waiting is held meanwhile (`hold` holds this target's server, `beside.hold` the other)."""
    url = f"http://{HOST}:{port}{scenario.path}"
    warmup = opts.warmup if warmup is None else warmup
    request, problem = _probe(port, scenario, headers, expect)
    if request is None:
        return Run(target, scenario.name, url, None, problem, warmup)
    partner: loadgen.LoadRequest | None = None
    if beside is not None and opts.rounds > 0:
        partner, problem = _probe(beside.port, beside.scenarios[scenario.name], beside.headers,
                                  None)
        if partner is None:
            why = f"{beside.name} taking turns with it: {problem}"
            return Run(target, scenario.name, url, None, why, warmup)
    console.print(f"  [dim]{target:<18} {scenario.name:<7} {scenario.method} {scenario.path}[/]")

    def load_while(held: Hold, what: loadgen.LoadRequest) -> Load:
        """Load `what` while `held` keeps the other server stopped."""
        def load(duration: float) -> loadgen.LoadResult:
            with held():
                return loadgen.run_load(opts.tool, what, duration=duration,
                                        connections=opts.connections, threads=opts.threads,
                                        prefix=opts.pinning.load)
        return load

    # whichever of the two servers is not under load is held (see `Processes.held`)
    holding = beside is not None and partner is not None and opts.hold
    hold_partner = beside.hold if holding and beside is not None else nullcontext
    hold_target = hold if holding else nullcontext
    load = load_while(hold_partner, request)
    try:
        if until_steady:
            slices: list[float] = []
            while len(slices) * WARM_SLICE_S < warmup and not warmed_up(slices):
                slices.append(load(WARM_SLICE_S).rps)
            warmup = len(slices) * WARM_SLICE_S
        elif warmup > 0:
            load(warmup)
        if partner is not None:
            assert beside is not None
            partner_load = load_while(hold_target, partner)
            return _in_turns(opts, target, scenario.name, url, warmup, load, partner_load,
                             beside.name)
        results = [load(opts.duration) for _ in range(opts.repeat)]
    except loadgen.LoadToolError as exc:
        return Run(target, scenario.name, url, None, str(exc).splitlines()[0], warmup)
    result = max(results, key=lambda r: (r.failed_fraction <= MAX_FAILED, r.rps))
    return Run(target, scenario.name, url, result, failures(result), warmup)


Load = Callable[[float], loadgen.LoadResult]


def _in_turns(
    opts: Options, target: str, scenario: str, url: str, warmup: float, load_target: Load,
    load_partner: Load, partner: str,
) -> Run:
    """The target and the server beside it (whose slices are `partner`'s) in `opts.rounds`
    rounds of one slice each (that server warmed up first); the target's row adds its slices
    up."""
    if opts.warmup > 0:
        load_partner(opts.warmup)
    piece = opts.duration / opts.rounds
    rounds: list[tuple[loadgen.LoadResult, loadgen.LoadResult]] = []
    for turn in range(opts.rounds):
        if turn % 2:
            partner_first = load_partner(piece)
            rounds.append((load_target(piece), partner_first))
        else:
            rounds.append((load_target(piece), load_partner(piece)))
    result = combined([its for its, _ in rounds])
    note = failures(result) or failures(combined([p for _, p in rounds]), f"{partner}: ")
    return Run(target, scenario, url, result, note, warmup, rounds, partner)


def combined(slices: Sequence[loadgen.LoadResult]) -> loadgen.LoadResult:
    """Slices of one load as one result: requests and failures added up, req/s over their total
    time, and the median slice's latencies (slices cannot be merged percentile by percentile)."""
    requests = sum(r.requests for r in slices)
    duration = sum(r.duration_s for r in slices)

    def middle(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    return loadgen.LoadResult(
        slices[0].tool, requests, duration, requests / duration if duration > 0 else 0.0,
        middle([r.p50_ms for r in slices]), middle([r.p99_ms for r in slices]),
        sum(r.non_2xx for r in slices), sum(r.errors for r in slices),
    )


def failures(result: loadgen.LoadResult, whose: str = "") -> str:
    """What makes a run no measurement (its errors, when over `MAX_FAILED`), or ""."""
    if result.failed_fraction <= MAX_FAILED:
        return ""
    return f"{whose}{result.non_2xx} non-2xx, {result.errors} socket errors"


# ---------------------------------------------------------------------------------------------
# targets under test


def sandbox_cli() -> str:
    beside = Path(sys.executable).parent / "opsmerge-sandbox"
    return str(beside) if beside.exists() else (shutil.which("opsmerge-sandbox") or str(beside))


@cache
def owner_key(recipe: str) -> str:
    """The owner's full-access key, from `opsmerge-sandbox keys --json` (once per recipe)."""
    done = subprocess.run([sandbox_cli(), "keys", "--recipe", recipe, "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise StartError(f"opsmerge-sandbox keys failed: {done.stderr.strip()[:300]}")
    rows = json.loads(done.stdout)
    usable = [r for r in rows if r.get("status") == "active" and r.get("scopes") == "full"]
    owners = [r for r in usable if "owner" in str(r.get("role", "")).lower()]
    if not (owners or usable):
        raise StartError("no active full-access key in `opsmerge-sandbox keys --json`")
    return str((owners or usable)[0]["key"])


def serve_supports(flag: str) -> bool:
    done = subprocess.run([sandbox_cli(), "serve", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    return flag in done.stdout


def sandbox_command(port: int, *extra: str) -> list[str]:
    return [sandbox_cli(), "serve", "--host", HOST, "--port", str(port),
            "--admin-token", ADMIN_TOKEN, *extra]


def start_sandbox(
    procs: Processes, name: str, extra: Sequence[str], headers: dict[str, str], timeout: float,
    prefix: Sequence[str] = (),
) -> tuple[int, float]:
    """Start a sandbox and wait until it answers; with `--workers N`, until every worker
    listens too (see `wait_until_listening`). The port, and seconds to its first answer."""
    port = free_port()
    started = time.perf_counter()
    proc = procs.start(name, [*prefix, *sandbox_command(port, *extra)])
    ready = wait_until_answers(procs, name, proc, started, port, f"{API}/agents?per_page=1",
                               headers, timeout, accept=lambda s: 200 <= s < 300)
    if "--workers" in extra:
        workers = int(extra[list(extra).index("--workers") + 1])
        wait_until_listening(procs, name, proc, port, workers, started + timeout)
    return port, ready


@contextmanager
def sandbox_beside(procs: Processes, opts: Options, agent_id: str) -> Iterator[Beside | None]:
    """A fresh default-recipe sandbox on the servers' core for a reference to take turns with
    (its creates start from the same store as the sandbox phase's); None with `--rounds 0`."""
    if opts.rounds <= 0:
        yield None
        return
    auth = {"Authorization": f"Bearer {owner_key('default')}"}
    port, _ = start_sandbox(procs, BESIDE, ["--rate-limit", HUGE_RATE_LIMIT], auth, 120,
                            opts.pinning.server)
    try:
        yield Beside(port, auth, {sc.name: sc for sc in scenarios(API, agent_id, SCENARIOS)},
                     hold=partial(procs.held, BESIDE))
    finally:
        procs.stop(BESIDE)


def listeners(port: int) -> int:
    """Sockets listening on this TCP port on loopback, from the kernel's tables (Linux)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                count += 1
    return count


def wait_until_listening(
    procs: Processes, name: str, proc: subprocess.Popen[bytes], port: int, workers: int,
    deadline: float,
) -> None:
    """Until each of `workers` listens on the port. Each worker opens its own listening socket
    once it has built its state, and the first answers long before the last is up (more so on
    a busy machine): a load tool connecting in between puts every connection on the workers
    already listening and keeps them there for the whole run (measured: 64 of 64 on one of
    two workers). Where the kernel's tables are not readable, only the first answer is waited
    for."""
    if not Path("/proc/net/tcp").exists():
        return
    while listeners(port) < workers:
        procs.check_running(name, proc)
        if time.perf_counter() > deadline:
            raise StartError(f"{name}: {listeners(port)} of {workers} workers listening:\n"
                             f"{procs.log_tail(name)}")
        time.sleep(0.05)


def ready_times(procs: Processes, headers: dict[str, str], runs: int) -> list[float]:
    """Seconds from process start to the first 2xx answer, default recipe, fresh start each
    (not pinned: this is start-up time, not throughput per core)."""
    samples = []
    for i in range(runs):
        _, ready = start_sandbox(procs, "sandbox-ready", [], headers, timeout=120)
        procs.stop("sandbox-ready")
        samples.append(ready)
        console.print(f"  [dim]ready run {i + 1}: {ready:.3f} s[/]")
    return samples


def discover_agent_id(port: int, headers: dict[str, str]) -> str:
    """The named agent if the recipe has it, else the first listed one."""
    status, _ = http_call(port, "GET", f"{API}/agents/{AGENT_ID}", headers)
    if status == 200:
        return AGENT_ID
    status, body = http_call(port, "GET", f"{API}/agents?per_page=1", headers)
    items = json.loads(body)["data"]["items"] if status == 200 else []
    return str(items[0]["id"]) if items else AGENT_ID


def capture_stubs(port: int, headers: dict[str, str], scs: Sequence[Scenario]) -> dict[str, Stub]:
    """The sandbox's own answers (status, content type, bytes), keyed by path, for the floors and
    WireMock to send back verbatim."""
    stubs: dict[str, Stub] = {}
    for sc in scs:
        h = dict(headers, **({"Content-Type": "application/json"} if sc.body else {}))
        status, content_type, body = http_answer(port, sc.method, sc.path, h, sc.body)
        if status < 400:
            stubs[sc.path.split("?", 1)[0]] = Stub(status, content_type, body, sc.method)
    return stubs


def stub_for(stubs: dict[str, Stub], scenario: Scenario) -> Stub | None:
    """What the sandbox answered on this scenario's path (None: nothing to compare with)."""
    return stubs.get(scenario.path.split("?", 1)[0])


def write_stub_file(stubs: dict[str, Stub]) -> Path:
    STUB_FILE.parent.mkdir(parents=True, exist_ok=True)
    STUB_FILE.write_text(dump_stubs(stubs))
    return STUB_FILE


def granian_available() -> bool:
    """granian importable by this interpreter (it is optional: `pip install granian`)."""
    return importlib.util.find_spec("granian") is not None


def granian_command(target: str, port: int) -> list[str]:
    """granian serving `module:factory` from benchmarks/ like the sandbox's uvicorn: one worker,
    one runtime thread, HTTP/1.1, no websockets, no access log."""
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--host", HOST,
        "--port", str(port), "--workers", "1", "--runtime-threads", "1", "--http", "1",
        "--no-ws", "--log-level", "warning", "--no-access-log",
        "--working-dir", str(BENCH_SRC), "--factory", target,
    ]


def prism_prefix(port: int, headers: dict[str, str]) -> str:
    """Prism serves paths relative to the first server URL, or not; ask it which."""
    for prefix in (API, ""):
        try:
            status, _ = http_call(port, "GET", f"{prefix}/agents", headers)
        except OSError:
            continue
        if status < 400:
            return prefix
    return API


# ---------------------------------------------------------------------------------------------
# report


class _Lookup:
    """Numbers out of the runs, with the reason a number is missing or not to be trusted."""

    def __init__(self, runs: dict[tuple[str, str], Run]) -> None:
        self.runs = runs

    def __call__(self, target: str, scenario: str, metric: str) -> tuple[float | None, str]:
        run = self.runs.get((target, scenario))
        if run is None or run.result is None:
            why = f": {run.note}" if run and run.note else ""
            return None, f"{target} {scenario} not measured{why}"
        value = _metric(run.result, metric)
        if not run.valid:
            return value, f"{target} {scenario}: {run.note}"
        return value, ""

    def in_turns(
        self, mine: tuple[str, str], ref: tuple[str, str]
    ) -> list[tuple[loadgen.LoadResult, loadgen.LoadResult]]:
        """(mine, ref) slices of each round when one side was measured in turns with the
        other; [] when they were measured apart."""
        if mine[1] != ref[1]:
            return []
        run = self.runs.get(mine)
        if run is not None and run.beside and run.partner == ref[0]:
            return list(run.beside)
        run = self.runs.get(ref)
        if run is not None and run.beside and run.partner == mine[0]:
            return [(theirs, its) for its, theirs in run.beside]
        return []


def _metric(result: loadgen.LoadResult, metric: str) -> float | None:
    return {"rps": result.rps, "p50": result.p50_ms, "p99": result.p99_ms}[metric]


def _compare(
    name: str, look: _Lookup, mine: tuple[str, str], ref: tuple[str, str] | None, metric: str,
    limit: float, op: str, unit: str, note: str = "",
) -> Target:
    """`mine` alone, or `mine / ref`: errors on the sandbox's side miss the target, errors on
    the reference's side leave it unjudged. Two sides measured in turns are judged by the median
    of the rounds' ratios (see the module's docstring)."""
    turns = look.in_turns(mine, ref) if ref is not None else []
    if turns:
        return _compare_in_turns(name, mine, ref or mine, turns, metric, limit, op, unit, note)
    value, why_mine = look(*mine, metric)
    failed = bool(why_mine) and value is not None
    if ref is not None:
        ref_value, why_ref = look(*ref, metric)
        if why_ref:
            ref_value = None
        value = value / ref_value if value is not None and ref_value else None
        why_mine = "; ".join(w for w in (why_mine, why_ref) if w)
    notes = "; ".join(n for n in (note, why_mine) if n)
    return Target(name, value, limit, op, unit, notes, failed)


def _compare_in_turns(
    name: str, mine: tuple[str, str], ref: tuple[str, str],
    turns: Sequence[tuple[loadgen.LoadResult, loadgen.LoadResult]], metric: str, limit: float,
    op: str, unit: str, note: str,
) -> Target:
    """`mine / ref` as the median of each round's ratio, with the same rule on errors."""
    mine_failed = failures(combined([m for m, _ in turns]))
    ref_failed = failures(combined([r for _, r in turns]))
    ratios = [
        m / r
        for m, r in ((_metric(a, metric), _metric(b, metric)) for a, b in turns)
        if m is not None and r
    ]
    complete = bool(ratios) and len(ratios) == len(turns)
    value = statistics.median(ratios) if complete and not ref_failed else None
    whys = [note, f"median of {len(turns)} rounds in turns"]
    whys += [f"{' '.join(mine)}: {mine_failed}"] if mine_failed else []
    whys += [f"{' '.join(ref)}: {ref_failed}"] if ref_failed else []
    if len(ratios) < len(turns):
        whys.append(f"a round without {metric}")
    return Target(name, value, limit, op, unit, "; ".join(w for w in whys if w),
                  bool(mine_failed))


def build_targets(
    runs: dict[tuple[str, str], Run], ready: list[float], connections: int
) -> list[Target]:
    """The issue's targets, each from measured numbers; n/a when a side was not measured."""
    look = _Lookup(runs)
    out = [
        _compare(f"{sc} >= 1.0x WireMock static stubs", look, (SANDBOX, sc), (WIREMOCK, sc),
                 "rps", 1.0, ">=", "x", "req/s, same bytes, same core")
        for sc in ("get", "list")
    ]
    out += [
        _compare(f"{sc} p99 <= 20 ms at {connections} connections", look, (SANDBOX, sc), None,
                 "p99", 20.0, "<=", "ms")
        for sc in ("get", "list")
    ]
    out += [
        _compare("list >= 3x Prism static", look, (SANDBOX, "list"), (PRISM_STATIC, "list"),
                 "rps", 3.0, ">=", "x"),
        _compare("get >= 4x Prism static", look, (SANDBOX, "get"), (PRISM_STATIC, "get"),
                 "rps", 4.0, ">=", "x"),
    ]
    for sc in ("list", "get", "create"):
        out.append(_compare(f"{sc} >= 60% of the Litestar floor", look, (SANDBOX, sc),
                            (FLOOR, sc), "rps", 0.60, ">=", "%"))
    for sc in ("list", "get", "create"):
        out.append(_compare(f"{sc} p99 <= 50 ms at {connections} connections", look,
                            (SANDBOX, sc), None, "p99", 50.0, "<=", "ms"))
    out.append(Target("ready <= 1.5 s (default recipe)",
                      statistics.median(ready) if ready else None, 1.5, "<=", "s",
                      f"median of {len(ready)}" if ready else "not measured"))
    for sc in ("list", "get"):
        out.append(_compare(f"{sc} latency large/default <= 1.3x", look, (LARGE, sc),
                            (SANDBOX, sc), "p50", 1.3, "<=", "x", "p50"))
    for sc in ("list", "get"):
        out.append(_compare(f"{sc} auth+rate limit on within 15% of off", look, (SANDBOX, sc),
                            (NOAUTH, sc), "rps", 0.85, ">=", "%", "req/s on / off"))
    for count in DURABLE_PREFILLS:
        out.append(_compare(
            f"durable create p99 <= 25 ms at {connections} connections, {count:,} changed "
            "records", look, (durable_target(count), "create"), None, "p99", 25.0, "<=", "ms"))
    first, last = DURABLE_PREFILLS[0], DURABLE_PREFILLS[-1]
    out.append(_compare(f"durable create p99 flat: at {last:,} / at {first:,} changed records",
                        look, (durable_target(last), "create"), (durable_target(first), "create"),
                        "p99", 1.3, "<=", "x", "--data-dir"))
    return out


def durable_target(count: int) -> str:
    """The name of the durable run on a store holding `count` changed records."""
    return f"{SANDBOX} durable {count}"


def proxy_targets(measured: Sequence[dict[str, Any]]) -> list[Target]:
    """The validating proxy's target: at most 2 ms added per request at p50 on loopback."""
    by_scenario = {m["scenario"]: m for m in measured}
    return [
        Target(f"proxy {sc}: added p50 <= 2 ms", by_scenario[sc]["added_p50_ms"]
               if sc in by_scenario else None, 2.0, "<=", "ms",
               "over direct calls, one at a time" if sc in by_scenario else "not measured")
        for sc in ("get", "list")
    ]  # fmt: skip


FRACTION_REFERENCES = (SANDBOX_GRANIAN, ASGI, ASGI_GRANIAN, FLOOR, FLOOR_GRANIAN, WIREMOCK)


@dataclass(slots=True)
class Fraction:
    """The sandbox's req/s over a reference's on one scenario: reported, not judged."""

    reference: str
    scenario: str
    value: float | None
    note: str = ""


def build_fractions(runs: dict[tuple[str, str], Run]) -> list[Fraction]:
    """Sandbox / reference for every reference measured on a scenario the sandbox ran; the
    bare-ASGI floors say how much of the per-core budget is left for the sandbox's own work."""
    look = _Lookup(runs)
    out = []
    for ref in FRACTION_REFERENCES:
        for sc in ("get", "list", "create"):
            if (ref, sc) not in runs or (SANDBOX, sc) not in runs:
                continue
            t = _compare("", look, (SANDBOX, sc), (ref, sc), "rps", 0.0, ">=", "%")
            out.append(Fraction(ref, sc, t.value, t.note))
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.0f}%"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:.2f} s"


def print_report(
    runs: list[Run], targets: list[Target], opts: Options, fractions: Sequence[Fraction] = ()
) -> None:
    best = f", best of {opts.repeat}" if opts.repeat > 1 else ""
    if opts.rounds > 0:
        best += (f"; each reference in {opts.rounds} turns with a fresh sandbox beside it "
                 f"({opts.duration / opts.rounds:g} s each, the one waiting "
                 f"{'stopped' if opts.hold else 'left running'})")
    threads = f", {opts.threads} threads" if opts.tool == "wrk" else ""
    table = Table(title=f"{opts.tool}, {opts.connections} connections{threads}, "
                        f"{opts.duration:g} s per run after the warm-up shown{best}; "
                        f"{opts.pinning.note}")
    for col, justify in (("target", "left"), ("scenario", "left"), ("req/s", "right"),
                         ("p50 ms", "right"), ("p99 ms", "right"), ("requests", "right"),
                         ("warm-up s", "right"), ("note", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for run in runs:
        r = run.result
        num = lambda v: "-" if v is None else f"{v:,.1f}"  # noqa: E731
        style = "" if run.valid else "yellow" if run.note.startswith("n/a") else "red"
        warm = "-" if run.warmup_s is None else f"{run.warmup_s:g}"
        table.add_row(run.target, run.scenario, num(r.rps) if r else "-",
                      num(r.p50_ms) if r else "-", num(r.p99_ms) if r else "-",
                      f"{r.requests:,}" if r else "-", warm, run.note, style=style)
    console.print(table)
    if any(run.target == WIREMOCK for run in runs):
        console.print(f"[dim]WireMock is warmed up in {WARM_SLICE_S:g} s slices until its req/s "
                      f"stops climbing (at most {opts.jvm_warmup:g} s per scenario; the others "
                      f"{opts.warmup:g} s): the JVM compiles its hot path while it runs, and a "
                      "longer warm-up is what it needs to show its best.[/]")
    if fractions:
        ftable = Table(title="Sandbox req/s as a fraction of each reference (reported, no target)")
        for col in ("reference", "scenario", "sandbox / reference", "note"):
            ftable.add_column(col)
        for f in fractions:
            ftable.add_row(f.reference, f.scenario, _fmt(f.value, "%"), f.note)
        console.print(ftable)
    ttable = Table(title="Targets")
    for col in ("target", "measured", "limit", "status", "note"):
        ttable.add_column(col)
    colours = {"met": "green", "missed": "red", "n/a": "yellow"}
    for t in targets:
        ttable.add_row(t.name, _fmt(t.value, t.unit), f"{t.op} {_fmt(t.limit, t.unit)}",
                       f"[{colours[t.status]}]{t.status}[/]", t.note)
    console.print(ttable)


def write_json(
    path: Path, runs: list[Run], targets: list[Target], ready: list[float], opts: Options,
    extra: dict[str, Any], fractions: Sequence[Fraction] = (),
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "tool": opts.tool, "connections": opts.connections, "threads": opts.threads,
            "duration_s": opts.duration, "warmup_s": opts.warmup, "repeat": opts.repeat,
            "cpus": os.cpu_count(), "pinning": opts.pinning.note,
            "jvm_warmup_s": opts.jvm_warmup, "rounds": opts.rounds,
            "held_while_waiting": opts.hold if opts.rounds else None,
            "python": platform.python_version(), "machine": platform.machine(), **extra,
        },
        "runs": [
            {"target": r.target, "scenario": r.scenario, "url": r.url, "valid": r.valid,
             "note": r.note, "warmup_s": r.warmup_s,
             "result": r.result.as_dict() if r.result else None,
             "partner": r.partner if r.beside else None,
             "rounds": [{"result": its.as_dict(), "partner": theirs.as_dict()}
                        for its, theirs in r.beside]}
            for r in runs
        ],
        "ready_s": {"samples": ready, "median": statistics.median(ready) if ready else None},
        "targets": [
            {"name": t.name, "value": t.value, "limit": t.limit, "op": t.op, "unit": t.unit,
             "status": t.status, "note": t.note}
            for t in targets
        ],
        "fractions": [
            {"reference": f.reference, "scenario": f.scenario, "sandbox_over_reference": f.value,
             "note": f.note}
            for f in fractions
        ],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# the run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per scenario")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="load tool threads (wrk only)")
    p.add_argument("--quick", action="store_true", help="2 s runs, 1 s warm-up: a smoke run")
    p.add_argument("--only", default=",".join(PHASES),
                   help=f"comma-separated targets: {', '.join(PHASES)} (the floors and WireMock "
                        "replay the sandbox's answers, so they need the sandbox phase)")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the server and the load tool to a CPU each")
    p.add_argument("--jvm-warmup", type=float, default=None,
                   help="WireMock's longest warm-up per scenario, s (default 120, 40 with --quick)")
    p.add_argument("--skip-large", action="store_true", help="do not start the large recipe")
    p.add_argument("--ready-runs", type=int, default=None,
                   help="fresh starts timed for the ready time (default 3, 1 with --quick)")
    p.add_argument("--repeat", type=int, default=1,
                   help="measured runs per scenario; the fastest is kept (others only slow it)")
    p.add_argument("--rounds", type=int, default=5,
                   help="turns each reference takes with a sandbox beside it, the ratio targets "
                        "being the median of the rounds' ratios; 0: each measured alone")
    p.add_argument("--no-hold", action="store_true",
                   help="let the server waiting for its turn run (by default it is stopped "
                        "with SIGSTOP until its turn, so it spends none of the shared core)")
    p.add_argument("--tool", choices=["auto", "wrk", "hey"], default="auto")
    p.add_argument("--output", type=Path, default=BENCH_DIR / "results.json")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2.0, 1.0
    if args.jvm_warmup is None:
        # a ceiling: on a busy 2-core machine, WireMock pinned to one core climbed for over 30 s
        args.jvm_warmup = 40.0 if args.quick else 120.0
    if args.ready_runs is None:
        args.ready_runs = 1 if args.quick else 3
    args.repeat = max(1, args.repeat)
    args.rounds = max(0, args.rounds)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = args.only - set(PHASES)
    if unknown:
        p.error(f"unknown --only target(s): {', '.join(sorted(unknown))}")
    return args


def run_sandbox(
    procs: Processes, opts: Options, args: argparse.Namespace, runs: list[Run],
    ready: list[float], meta: dict[str, Any],
) -> tuple[str, dict[str, Stub]]:
    """Default recipe (ready time, list/get/create), no-auth, then the large recipe."""
    key = owner_key("default")
    auth = {"Authorization": f"Bearer {key}"}
    console.print("[bold]sandbox[/] ready time")
    ready.extend(ready_times(procs, auth, args.ready_runs))

    console.print("[bold]sandbox[/] default recipe")
    pin = opts.pinning.server
    port, _ = start_sandbox(procs, SANDBOX, ["--rate-limit", HUGE_RATE_LIMIT], auth, 120, pin)
    agent_id = discover_agent_id(port, auth)
    scs = scenarios(API, agent_id, ["list", "get", "create"])
    stubs = capture_stubs(port, auth, scs)
    runs.extend(measure(opts, SANDBOX, port, sc, auth) for sc in scs)
    procs.stop(SANDBOX)

    # the server chosen by measurement: the same app on granian, the same key and limit
    if granian_available():
        console.print("[bold]sandbox[/] default recipe on granian")
        serve_reference(procs, opts, runs, SANDBOX_GRANIAN,
                        lambda port: granian_command("sandbox_granian:app_from_env", port), scs,
                        {}, headers=auth, env={"BENCH_RATE_LIMIT": HUGE_RATE_LIMIT},
                        timeout=120,  # no bytes to match: live times move, creates are new
                        agent_id=agent_id)
    else:
        runs.extend(not_run(SANDBOX_GRANIAN, scs, GRANIAN_MISSING))

    if serve_supports("--no-auth"):
        console.print("[bold]sandbox[/] --no-auth")
        port, _ = start_sandbox(procs, NOAUTH, ["--no-auth"], {}, 120, pin)
        with sandbox_beside(procs, opts, agent_id) as beside:
            runs.extend(measure(opts, NOAUTH, port, sc, {}, beside=beside,
                                hold=partial(procs.held, NOAUTH))
                        for sc in scenarios(API, agent_id, ["list", "get"]))
        procs.stop(NOAUTH)
    else:
        meta["no_auth"] = "serve has no --no-auth flag"

    if not args.skip_large:
        console.print("[bold]sandbox[/] large recipe (building the world takes a while)")
        large_auth = {"Authorization": f"Bearer {owner_key('large')}"}
        port, start_s = start_sandbox(
            procs, LARGE, ["--recipe", "large", "--rate-limit", HUGE_RATE_LIMIT], large_auth, 900,
            pin,
        )
        meta["large_ready_s"] = round(start_s, 3)
        large_id = discover_agent_id(port, large_auth)
        with sandbox_beside(procs, opts, agent_id) as beside:
            runs.extend(measure(opts, LARGE, port, sc, large_auth, beside=beside,
                                hold=partial(procs.held, LARGE))
                        for sc in scenarios(API, large_id, ["list", "get"]))
        procs.stop(LARGE)
    return agent_id, stubs


def serve_reference(
    procs: Processes, opts: Options, runs: list[Run], name: str,
    command: Callable[[int], Sequence[str]],
    scs: Sequence[Scenario], stubs: dict[str, Stub], *, headers: dict[str, str] | None = None,
    env: dict[str, str] | None = None, timeout: float = 60, jvm: bool = False,
    agent_id: str = AGENT_ID,
) -> None:
    """Start one reference server pinned like the sandbox, measure each scenario in turns with
    a fresh sandbox beside it (`agent_id`: the agent of that sandbox's get), stop both; a JVM is
    warmed up until its throughput levels off."""
    port = free_port()
    started = time.perf_counter()
    proc = procs.start(name, [*opts.pinning.server, *command(port)], env)
    wait_until_answers(procs, name, proc, started, port, "/", {}, timeout, accept=lambda s: True)
    warmup = opts.jvm_warmup if jvm else None
    with sandbox_beside(procs, opts, agent_id) as beside:
        runs.extend(measure(opts, name, port, sc, headers or {}, stub_for(stubs, sc), warmup,
                            until_steady=jvm, beside=beside, hold=partial(procs.held, name))
                    for sc in scs)
    procs.stop(name)


GRANIAN_MISSING = "n/a: granian not installed (pip install granian)"


def not_run(target: str, scs: Sequence[Scenario], why: str) -> list[Run]:
    """Rows for a target that could not run here, so the table and the JSON say why."""
    return [Run(target, sc.name, "", None, why) for sc in scs]


def run_floor(
    procs: Processes, opts: Options, runs: list[Run], agent_id: str, stubs: dict[str, Stub],
    meta: dict[str, Any],
) -> None:
    """Bare Litestar on uvicorn (the sandbox's settings), then on granian when installed."""
    console.print("[bold]floor[/] bare Litestar")
    cmd = [sys.executable, str(FLOOR_APP), "--host", HOST]
    if stubs:
        cmd += ["--bodies", str(write_stub_file(stubs))]
    meta["floor_bodies"] = "the sandbox's own answers" if stubs else "built-in constant"
    scs = scenarios(API, agent_id, ["list", "get", "create"])
    serve_reference(procs, opts, runs, FLOOR, lambda port: [*cmd, "--port", str(port)], scs,
                    stubs, agent_id=agent_id)
    if not granian_available():
        runs.extend(not_run(FLOOR_GRANIAN, scs, GRANIAN_MISSING))
        return
    console.print("[bold]floor[/] bare Litestar on granian")
    env = {STUBS_ENV: str(write_stub_file(stubs))} if stubs else None
    serve_reference(procs, opts, runs, FLOOR_GRANIAN,
                    lambda port: granian_command("floor_app:app_from_env", port), scs, stubs,
                    env=env, agent_id=agent_id)


def run_asgi(
    procs: Processes, opts: Options, runs: list[Run], agent_id: str, stubs: dict[str, Stub],
    meta: dict[str, Any],
) -> None:
    """The bare-ASGI callable on uvicorn, then on granian when installed."""
    if not stubs:
        raise StartError("no sandbox answers to replay: run the sandbox phase too")
    stub_file = write_stub_file(stubs)
    scs = scenarios(API, agent_id, ["list", "get", "create"])
    console.print("[bold]asgi floor[/] bare ASGI callable on uvicorn")
    serve_reference(procs, opts, runs, ASGI,
                    lambda port: [sys.executable, str(ASGI_FLOOR_APP), "--host", HOST,
                                  "--port", str(port), "--stubs", str(stub_file)], scs, stubs,
                    agent_id=agent_id)
    meta["granian"] = "installed" if granian_available() else "not installed"
    if not granian_available():
        console.print("[yellow]granian not installed:[/] its floors are n/a (pip install granian)")
        runs.extend(not_run(ASGI_GRANIAN, scs, GRANIAN_MISSING))
        return
    console.print("[bold]asgi floor[/] bare ASGI callable on granian")
    serve_reference(procs, opts, runs, ASGI_GRANIAN,
                    lambda port: granian_command("asgi_floor:app_from_env", port), scs, stubs,
                    env={STUBS_ENV: str(stub_file)}, agent_id=agent_id)


def run_wiremock(
    procs: Processes, opts: Options, runs: list[Run], agent_id: str, stubs: dict[str, Stub],
    meta: dict[str, Any],
) -> None:
    """WireMock's static stubs, one per read path, answering the sandbox's bytes."""
    found, how = wiremock_setup.ensure_wiremock(BENCH_DIR / "wiremock",
                                                BENCH_DIR / "logs" / "npm-wiremock.log")
    if found is None:
        console.print(f"[yellow]WireMock skipped:[/] {how}")
        meta["wiremock"] = f"skipped: {how}"
        return
    if not stubs:
        raise StartError("no sandbox answers to replay: run the sandbox phase too")
    java, jar = found
    scs = scenarios(API, agent_id, ["list", "get"])
    reads = {path: stub for path, stub in stubs.items() if stub.method == "GET"}
    root = BENCH_DIR / "wiremock-root"
    wiremock_setup.write_stubs(root, {
        path: {"method": s.method, "status": s.status, "content_type": s.content_type,
               "body": s.body}
        for path, s in reads.items()
    })
    meta["wiremock"] = f"{jar.name}, {wiremock_setup.CONTAINER_THREADS} container threads"
    console.print(f"[bold]wiremock[/] static stubs (warmed up until its req/s levels off, at "
                  f"most {opts.jvm_warmup:g} s per scenario: the JVM compiles its hot path while "
                  "it runs)")
    serve_reference(procs, opts, runs, WIREMOCK,
                    lambda port: wiremock_setup.wiremock_command(java, jar, root, port), scs,
                    stubs, timeout=120, jvm=True, agent_id=agent_id)


def run_durable(procs: Processes, opts: Options, runs: list[Run]) -> None:
    """Creates acknowledged once durable (`--data-dir`), on stores already holding each count of
    changed records (`write_path.py`); pinned like the rest, the writer thread on the server's
    core."""
    import write_path

    console.print("[bold]sandbox[/] durable creates (--data-dir)")
    auth = {"Authorization": f"Bearer {owner_key('default')}"}
    how = write_path.Load(opts.tool, opts.duration, opts.warmup, opts.connections, opts.threads,
                          opts.pinning)
    template = write_path.template_record(procs, auth, how)
    measured = {}
    for count, result, use in write_path.durable_runs(procs, auth, DURABLE_PREFILLS, how,
                                                      template):
        note = failures(result) or use.strip()
        measured[count] = Run(durable_target(count), "create", f"{API}/tickets", result, note,
                              opts.warmup)
        runs.append(measured[count])
    first, last = DURABLE_PREFILLS[0], DURABLE_PREFILLS[-1]
    if opts.rounds <= 0 or first == last:
        return
    # the flat target's two stores side by side, fresh again, taking turns as every reference
    # does with the sandbox; each run above stays the absolute p99 of its store
    console.print(f"  [dim]durable stores at {first:,} and {last:,} in turns[/]")
    create = scenarios(API, AGENT_ID, ["create"])[0]
    with write_path.durable_servers(procs, auth, (first, last), how, template) as servers:
        beside = Beside(servers[first][0], auth, {"create": create}, durable_target(first),
                        partial(procs.held, write_path.server_name(first)))
        pair = measure(opts, durable_target(last), servers[last][0], create, auth,
                       beside=beside, hold=partial(procs.held, write_path.server_name(last)))
    measured[last].beside, measured[last].partner = pair.beside, pair.partner
    if not pair.beside:
        measured[last].note = "; ".join(n for n in (measured[last].note, pair.note) if n)


def run_shared(opts: Options) -> None:
    """In-memory 1 worker against Redis with 1, 2 and 4 workers (its own table and targets)."""
    import shared_state

    console.print("[bold]shared state[/] (benchmarks/shared_state.py)")
    shared_state.main(["--duration", str(opts.duration), "--warmup", str(opts.warmup),
                       "--connections", str(opts.connections), "--threads", str(opts.threads),
                       "--tool", opts.tool])


def run_prism(
    procs: Processes, opts: Options, runs: list[Run], agent_id: str, meta: dict[str, Any]
) -> None:
    binary, how = prism_setup.ensure_prism(BENCH_DIR / "prism", BENCH_DIR / "logs" / "npm.log")
    if binary is None:
        console.print(f"[yellow]Prism skipped:[/] {how}")
        meta["prism"] = f"skipped: {how}"
        return
    auth = {"Authorization": "Bearer om_x"}  # Prism only checks that the bearer is there
    for name, dynamic in ((PRISM_STATIC, False), (PRISM_DYNAMIC, True)):
        console.print(f"[bold]{name}[/]")
        port = free_port()
        started = time.perf_counter()
        proc = procs.start(name, [*opts.pinning.server,
                                  *prism_setup.prism_command(binary, SPEC, port, dynamic=dynamic)])
        wait_until_answers(procs, name, proc, started, port, "/", {}, 180, accept=lambda s: True)
        prefix = prism_prefix(port, auth)
        meta["prism_prefix"] = prefix or "/"
        with sandbox_beside(procs, opts, agent_id) as beside:
            runs.extend(measure(opts, name, port, sc, auth, beside=beside,
                                hold=partial(procs.held, name))
                        for sc in scenarios(prefix, agent_id, SCENARIOS))
        procs.stop(name)


def run_proxy(procs: Processes, opts: Options, meta: dict[str, Any]) -> None:
    """The validating proxy's added latency over direct calls (benchmarks/proxy.py)."""
    import proxy as proxy_bench

    console.print("[bold]proxy[/]")
    requests = 300 if opts.duration < 5 else 2000
    # latency one request at a time: not pinned (see benchmarks/proxy.py)
    results = proxy_bench.run_proxy_bench(procs, Pinning(), requests, requests // 10)
    proxy_bench.print_results(results)
    meta["proxy"] = [r.to_dict() for r in results]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        tool = loadgen.ensure_tool(args.tool)
    except loadgen.LoadToolError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    pinning = plan_pinning(not args.no_pin, allowed_cpus(), shutil.which("taskset"))
    opts = Options(tool, args.duration, args.warmup, args.connections, args.threads, args.repeat,
                   pinning, args.jvm_warmup, args.rounds, not args.no_hold)
    console.print(f"[dim]{pinning.note}[/]")
    procs = Processes(BENCH_DIR / "logs")
    runs: list[Run] = []
    ready: list[float] = []
    meta: dict[str, Any] = {}
    agent_id: str = AGENT_ID
    stubs: dict[str, Stub] = {}
    code = 0
    load = os.getloadavg()[0]
    meta["loadavg_1m_at_start"] = round(load, 2)
    if load > 0.5 * (os.cpu_count() or 1):
        console.print(f"[yellow]warning:[/] load average {load:.1f} on {os.cpu_count()} cpus: "
                      "other work is running; numbers will be noisy")
    # The lambdas read agent_id and stubs when they run, after the sandbox phase has set them.
    phases: list[tuple[str, Callable[[], object]]] = [
        ("sandbox", lambda: run_sandbox(procs, opts, args, runs, ready, meta)),
        ("floor", lambda: run_floor(procs, opts, runs, agent_id, stubs, meta)),
        ("asgi", lambda: run_asgi(procs, opts, runs, agent_id, stubs, meta)),
        ("wiremock", lambda: run_wiremock(procs, opts, runs, agent_id, stubs, meta)),
        ("prism", lambda: run_prism(procs, opts, runs, agent_id, meta)),
        ("proxy", lambda: run_proxy(procs, opts, meta)),
        ("durable", lambda: run_durable(procs, opts, runs)),
        ("shared", lambda: run_shared(opts)),
    ]
    assert [name for name, _ in phases] == list(PHASES)
    try:
        for name, phase in phases:
            if name not in args.only:
                continue
            try:
                out = phase()
            except (StartError, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                # One broken target must not cost the others their numbers.
                console.print(f"[red]{name} stopped:[/] {exc}")
                meta.setdefault("errors", {})[name] = str(exc)[:1000]
                code = 1
                procs.stop_all()
                continue
            if name == "sandbox":
                agent_id, stubs = out  # type: ignore[misc]
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: reporting what was measured[/]")
        code = 130
    finally:
        procs.stop_all()
    meta["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    by_key = {(r.target, r.scenario): r for r in runs}
    targets = build_targets(by_key, ready, opts.connections)
    targets += proxy_targets(meta.get("proxy") or [])
    fractions = build_fractions(by_key)
    print_report(runs, targets, opts, fractions)
    write_json(args.output, runs, targets, ready, opts, meta, fractions)
    console.print(f"results written to {args.output}")
    return code


if __name__ == "__main__":
    sys.exit(main())

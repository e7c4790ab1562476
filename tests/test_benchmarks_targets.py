"""`make bench`'s plan, without timing anything: pinning, the references' stubs and commands,
the bare-ASGI floor's answers, and the WireMock and floor targets in the report.

The floors are served on loopback by a real server and read by a real client, since what they
must prove is that they send the very bytes the sandbox sent.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from opsmerge_contracts.sandboxes import LoopbackServer
from tests.conftest import bearer, free_port, key_named, make_app, write_calls

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
SIBLINGS = ("loadgen", "prism", "wiremock", "asgi_floor")


def _load_all() -> dict[str, ModuleType]:
    """The benchmarks/ modules the way `python benchmarks/run.py` sees them (siblings imported by
    bare name, one copy each, so a Stub is the same class everywhere), taken out of sys.modules
    again so other tests never meet those names."""
    modules: dict[str, ModuleType] = {}
    sys.path.insert(0, str(BENCH))
    try:
        for name in (*SIBLINGS, "floor_app", "run"):
            # siblings under their bare names for the imports; the rest kept under a prefixed
            # one, since dataclasses and Litestar look a module up while building
            key = name if name in SIBLINGS else f"bench_{name}"
            spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            spec.loader.exec_module(module)
            modules[name] = module
        return modules
    finally:
        sys.path.remove(str(BENCH))
        for name in SIBLINGS:
            sys.modules.pop(name, None)


_MODULES = _load_all()
bench = _MODULES["run"]
asgi_floor = _MODULES["asgi_floor"]
floor_app = _MODULES["floor_app"]
wiremock = _MODULES["wiremock"]
loadgen = _MODULES["loadgen"]

WRK = """\
Running 3s test @ http://127.0.0.1:4099/api/v1/agents
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.06ms   26.29ms 213.48ms   91.76%
    Req/Sec     3.92k     1.91k    8.43k    61.82%
  Latency Distribution
     50%    {p50}
     75%   11.48ms
     90%   28.75ms
     99%  {p99}
  {requests} requests in 3.07s, 7.23MB read
{extra}Requests/sec:   {rps}
Transfer/sec:      2.36MB
"""


def wrk(rps: float, p99: str = "15.00ms", non_2xx: int = 0) -> Any:
    extra = f"  Non-2xx or 3xx responses: {non_2xx}\n" if non_2xx else ""
    return loadgen.parse_wrk(WRK.format(p50="6.88ms", p99=p99, requests=22099, extra=extra,
                                        rps=f"{rps:.2f}"))


def runs(*rows: tuple[str, str, Any]) -> dict[tuple[str, str], Any]:
    return {(t, s): bench.Run(t, s, "http://127.0.0.1:1/", r) for t, s, r in rows}


# ---------------------------------------------------------------------------------------------
# pinning


def test_pinning_puts_the_server_on_the_first_cpu_and_the_load_tool_on_the_second() -> None:
    pin = bench.plan_pinning(True, [1, 0], "/usr/bin/taskset")
    assert pin.server == ("/usr/bin/taskset", "-c", "0")
    assert pin.load == ("/usr/bin/taskset", "-c", "1")
    assert "CPU 0" in pin.note and "CPU 1" in pin.note


def test_pinning_uses_the_cpus_this_process_may_run_on() -> None:
    pin = bench.plan_pinning(True, [3, 5, 2], "taskset")
    assert (pin.server[-1], pin.load[-1]) == ("2", "3")


@pytest.mark.parametrize(
    ("enabled", "cpus", "taskset", "why"),
    [
        (False, [0, 1], "taskset", "--no-pin"),
        (True, [0], "taskset", "only 1 CPU"),
        (True, [0, 1], None, "taskset not found"),
    ],
)
def test_no_pinning_when_off_or_impossible_and_the_note_says_why(
    enabled: bool, cpus: list[int], taskset: str | None, why: str
) -> None:
    pin = bench.plan_pinning(enabled, cpus, taskset)
    assert pin.server == () and pin.load == ()
    assert why in pin.note


def test_the_load_tool_runs_behind_the_pinning_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, WRK.format(
            p50="1ms", p99="2ms", requests=10, extra="", rps="5.00"), "")

    monkeypatch.setattr(loadgen.subprocess, "run", fake_run)
    request = loadgen.LoadRequest("GET", "http://127.0.0.1:1/x")
    result = loadgen.run_load("wrk", request, duration=1, connections=4,
                              prefix=("taskset", "-c", "1"))
    assert seen[0][:4] == ["taskset", "-c", "1", "wrk"]
    assert result.rps == pytest.approx(5.0)


def test_no_pin_flag_and_new_targets_are_accepted_and_unknown_ones_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = bench.parse_args(["--no-pin", "--only", "sandbox,asgi,wiremock", "--quick"])
    assert args.no_pin is True
    assert args.only == {"sandbox", "asgi", "wiremock"}
    assert args.jvm_warmup > args.warmup  # the JVM gets the longer warm-up, even in a smoke run
    assert set(bench.parse_args([]).only) == set(bench.PHASES)
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "sandbox,jetty"])
    assert "jetty" in capsys.readouterr().err


def test_the_shared_state_instruction_count_refuses_a_kind_it_does_not_know() -> None:
    """A misspelt kind is an error naming it, not a run that silently counts nothing."""
    ran = subprocess.run(
        [sys.executable, str(BENCH / "shared_state.py"), "--instructions", "--kinds", "lst,get"],
        capture_output=True, text=True, timeout=60,
    )
    assert ran.returncode == 2
    assert "unknown kind 'lst'" in ran.stderr and "list, get, create" in ran.stderr


def test_served_instructions_refuses_a_case_it_does_not_know() -> None:
    ran = subprocess.run(
        [sys.executable, str(BENCH / "served_instructions.py"), "--cases", "gett"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 2
    assert "unknown case 'gett'" in ran.stderr and "get, list, create" in ran.stderr


@pytest.mark.parametrize("case", ["get", "create"])
def test_served_instructions_serves_its_requests_and_stops_once_the_client_is_done(
    case: str,
) -> None:
    """What callgrind counts: a sandbox served as `serve` serves it, answering every request
    its untraced client sends with a 2xx (the client fails the run otherwise), then exiting."""
    ran = subprocess.run(
        [sys.executable, str(BENCH / "served_instructions.py"), "--one", case, "48"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]


def _port_sharing(port: int, listen: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    if listen:
        sock.listen(8)
    return sock


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket tables")
def test_a_benchmark_waits_until_every_worker_listens_before_it_loads_them(
    tmp_path: Path,
) -> None:
    """The first worker answers long before the last listens; a load tool connecting in
    between put all 64 of its connections on one of two workers for a whole run."""
    held = _port_sharing(0, listen=False)  # as `serve --workers` holds the port: not listening
    port = held.getsockname()[1]
    first = _port_sharing(port, listen=True)
    opened = [held, first]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert bench.listeners(port) == 1
        timer = threading.Timer(0.3, lambda: opened.append(_port_sharing(port, listen=True)))
        timer.start()
        procs = bench.Processes(tmp_path)
        started = time.perf_counter()
        bench.wait_until_listening(procs, "w", proc, port, 2, started + 20)
        assert bench.listeners(port) == 2 and time.perf_counter() - started >= 0.25
        with pytest.raises(bench.StartError, match="2 of 3 workers listening"):
            bench.wait_until_listening(procs, "w", proc, port, 3, time.perf_counter() + 0.2)
    finally:
        proc.kill()
        proc.wait()
        for sock in opened:
            sock.close()


def test_a_cost_per_unit_is_the_difference_of_two_run_lengths() -> None:
    """Start-up and tear-down cancel out: what one unit costs, whatever the fixed cost."""
    spec = importlib.util.spec_from_file_location("bench_tooling", BENCH / "tooling.py")
    assert spec and spec.loader
    tooling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tooling)
    runs: list[int] = []

    def count(n: int) -> float:
        runs.append(n)
        return 5_000_000 + 7 * n  # a fixed start-up, then 7 a unit

    assert tooling.per_unit(count, 100, 600) == 7
    assert runs == [100, 600]


# ---------------------------------------------------------------------------------------------
# the JVM's warm-up


@pytest.mark.parametrize(
    ("slices", "steady"),
    [
        ([], False),
        ([9000.0] * 5, False),  # level, but too soon to tell a JVM is warm
        ([9000.0] * 6, True),
        ([456, 948, 2629, 3224, 3268, 4010, 4504, 4943, 6634, 8228], False),  # measured: climbing
        ([4655, 4512, 5203, 5895, 5633, 8296, 8475], False),  # a flat stretch, then a climb
        ([3000, 9000, 9500, 9300, 4000, 9400], True),  # one slow slice does not restart it
    ],
)
def test_jvm_warm_up_ends_when_throughput_stops_climbing(slices: list[float],
                                                         steady: bool) -> None:
    assert bench.warmed_up(slices) is steady


def _fake_load(monkeypatch: pytest.MonkeyPatch, rps: list[float]) -> list[float]:
    """Stands in for wrk: each call answers the next req/s; returns the durations asked for."""
    asked: list[float] = []

    def run_load(tool: str, request: Any, *, duration: float, **_: Any) -> Any:
        asked.append(duration)
        return wrk(rps[min(len(asked) - 1, len(rps) - 1)])

    monkeypatch.setattr(bench.loadgen, "run_load", run_load)
    return asked


def _answering(path: str) -> Iterator[int]:
    """The port of a loopback server answering `path`'s probe, so `measure` goes on to load it."""
    stub = asgi_floor.Stub(200, "application/json", b"{}")
    with LoopbackServer(asgi_floor.make_app({path: stub})) as server:
        yield server.port


@pytest.fixture()
def echo_port() -> Iterator[int]:
    """A server to measure."""
    yield from _answering("/w")


def test_jvm_is_warmed_in_slices_until_steady_then_measured(
    monkeypatch: pytest.MonkeyPatch, echo_port: int,
) -> None:
    asked = _fake_load(monkeypatch, [300, 3000, 9000, 9200, 9300, 9100, 9700])
    opts = bench.Options("wrk", 10, 2, 64, 2)
    run = bench.measure(opts, "wiremock", echo_port, bench.Scenario("get", "GET", "/w"), {},
                        warmup=120, until_steady=True)
    # 9200, 9300, 9100: the last three of six within 5% of 9000, the best before them
    assert asked == [5.0] * 6 + [10]
    assert run.warmup_s == 30.0
    assert run.result is not None and run.result.rps == pytest.approx(9700)


def test_jvm_warm_up_stops_at_its_ceiling_even_while_climbing(
    monkeypatch: pytest.MonkeyPatch, echo_port: int,
) -> None:
    asked = _fake_load(monkeypatch, [1000 * 2**i for i in range(20)])
    opts = bench.Options("wrk", 10, 2, 64, 2)
    run = bench.measure(opts, "wiremock", echo_port, bench.Scenario("get", "GET", "/w"), {},
                        warmup=15, until_steady=True)
    assert asked == [5.0, 5.0, 5.0, 10]
    assert run.warmup_s == 15.0


def test_other_servers_get_the_fixed_warm_up(
    monkeypatch: pytest.MonkeyPatch, echo_port: int,
) -> None:
    asked = _fake_load(monkeypatch, [5000])
    opts = bench.Options("wrk", 10, 2, 64, 2, repeat=2)
    run = bench.measure(opts, "asgi floor", echo_port, bench.Scenario("get", "GET", "/w"), {})
    assert asked == [2, 10, 10]
    assert run.warmup_s == 2


# ---------------------------------------------------------------------------------------------
# targets and fractions


def test_reads_are_judged_against_wiremock_on_req_per_s() -> None:
    targets = {t.name: t for t in bench.build_targets(runs(
        ("sandbox", "get", wrk(7400)), ("wiremock", "get", wrk(21500)),
        ("sandbox", "list", wrk(9300)), ("wiremock", "list", wrk(9200)),
    ), [0.8], 64)}
    get = targets["get >= 1.0x WireMock static stubs"]
    lst = targets["list >= 1.0x WireMock static stubs"]
    assert get.value == pytest.approx(7400 / 21500) and get.status == "missed"
    assert lst.value == pytest.approx(9300 / 9200) and lst.status == "met"


def test_wiremock_target_is_unjudged_when_wiremock_was_not_measured() -> None:
    targets = {t.name: t for t in bench.build_targets(runs(("sandbox", "get", wrk(7400))),
                                                      [], 64)}
    assert targets["get >= 1.0x WireMock static stubs"].status == "n/a"
    assert "wiremock get not measured" in targets["get >= 1.0x WireMock static stubs"].note


def test_sandbox_errors_miss_the_wiremock_target_whatever_its_speed() -> None:
    targets = {t.name: t for t in bench.build_targets(runs(
        ("sandbox", "get", wrk(99000, non_2xx=22099)), ("wiremock", "get", wrk(21500)),
    ), [], 64)}
    assert targets["get >= 1.0x WireMock static stubs"].status == "missed"


def test_read_p99_is_held_to_20_ms() -> None:
    targets = {t.name: t for t in bench.build_targets(runs(
        ("sandbox", "get", wrk(7400, p99="19.90ms")), ("sandbox", "list", wrk(6000, p99="36.10ms")),
    ), [], 64)}
    assert targets["get p99 <= 20 ms at 64 connections"].status == "met"
    assert targets["list p99 <= 20 ms at 64 connections"].status == "missed"
    assert targets["list p99 <= 20 ms at 64 connections"].value == pytest.approx(36.1)


DURABLE_EMPTY = "durable create p99 <= 25 ms at 64 connections, 0 changed records"
DURABLE_FULL = "durable create p99 <= 25 ms at 64 connections, 50,000 changed records"
DURABLE_FLAT = "durable create p99 flat: at 50,000 / at 0 changed records"


def test_durable_creates_are_held_to_25_ms_p99_at_each_store_size_and_to_a_flat_p99() -> None:
    targets = {t.name: t for t in bench.build_targets(runs(
        (bench.durable_target(0), "create", wrk(4800, p99="20.00ms")),
        (bench.durable_target(50_000), "create", wrk(4200, p99="27.00ms")),
    ), [], 64)}
    assert targets[DURABLE_EMPTY].status == "met"
    assert targets[DURABLE_FULL].status == "missed"
    assert targets[DURABLE_FULL].value == pytest.approx(27.0)
    assert targets[DURABLE_FLAT].value == pytest.approx(27.0 / 20.0)
    assert targets[DURABLE_FLAT].status == "missed"


def test_a_durable_p99_within_1_3x_of_the_empty_stores_is_flat() -> None:
    targets = {t.name: t for t in bench.build_targets(runs(
        (bench.durable_target(0), "create", wrk(4800, p99="20.00ms")),
        (bench.durable_target(50_000), "create", wrk(4600, p99="24.00ms")),
    ), [], 64)}
    assert targets[DURABLE_FLAT].value == pytest.approx(1.2)
    assert {targets[n].status for n in (DURABLE_EMPTY, DURABLE_FULL, DURABLE_FLAT)} == {"met"}


def test_durable_errors_miss_the_durable_targets_whatever_the_p99() -> None:
    targets = {t.name: t for t in bench.build_targets(runs(
        (bench.durable_target(0), "create", wrk(4800, p99="5.00ms", non_2xx=22099)),
    ), [], 64)}
    assert targets[DURABLE_EMPTY].status == "missed"


def test_durable_targets_are_unjudged_when_the_durable_phase_did_not_run() -> None:
    targets = {t.name: t for t in bench.build_targets(runs(("sandbox", "get", wrk(7400))),
                                                      [], 64)}
    for name in (DURABLE_EMPTY, DURABLE_FULL, DURABLE_FLAT):
        assert targets[name].status == "n/a"
        assert "not measured" in targets[name].note


def test_the_durable_phase_runs_in_make_bench_and_alone() -> None:
    assert "durable" in bench.parse_args([]).only
    assert bench.parse_args(["--only", "durable"]).only == {"durable"}


def _write_path() -> ModuleType:
    """`write_path.py`, importing the copy of `run.py` loaded above (one `Pinning` class), its
    bare sibling names taken out of sys.modules again afterwards."""
    names = ("run", "loadgen", "tooling")
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules["run"], sys.modules["loadgen"] = bench, loadgen
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_write_path", BENCH / "write_path.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_write_path"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))
        for name, was in saved.items():
            if was is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = was


def test_durable_runs_pin_the_server_and_the_load_tool_as_make_bench_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_path = _write_path()
    pin = bench.plan_pinning(True, [0, 1], "taskset")
    started: list[list[str]] = []

    class Procs:
        def start(self, name: str, cmd: list[str], env: Any = None) -> Any:
            started.append(cmd)
            proc = subprocess.Popen(["true"])  # a pid, as a server would have
            proc.wait()
            return proc

    prefixes: list[tuple[str, ...]] = []

    def run_load(tool: str, request: Any, **kw: Any) -> Any:
        prefixes.append(tuple(kw["prefix"]))
        return wrk(4800)

    monkeypatch.setattr(bench, "wait_until_answers", lambda *a, **kw: 0.0)
    monkeypatch.setattr(loadgen, "run_load", run_load)
    port, _ = write_path._start(Procs(), "write-durable", ["--data-dir", "d"], {}, pin)
    assert started[0][:4] == ["taskset", "-c", "0", bench.sandbox_cli()]
    assert started[0][-2:] == ["--data-dir", "d"]
    how = write_path.Load("wrk", 1.0, 1.0, 4, 1, pin)
    # a warm-up, then the measured run; the server's use read from this process's /proc
    result, use = write_path._load(port, os.getpid(), {}, how)
    assert "us/req" in use
    assert prefixes == [("taskset", "-c", "1")] * 2
    assert result.rps == pytest.approx(4800)


def test_the_flat_durable_target_is_judged_on_the_two_stores_taking_turns() -> None:
    # alone, the 0 store fell on a quiet minute and the 50,000 store on a busy one
    measured = runs(
        (bench.durable_target(0), "create", wrk(4800, p99="15.00ms")),
        (bench.durable_target(50_000), "create", wrk(3000, p99="45.00ms")),
    )
    full = measured[(bench.durable_target(50_000), "create")]
    full.partner = bench.durable_target(0)
    full.beside = [(slice_of(4000, p50=5.0), slice_of(4000, p50=4.5)),
                   (slice_of(3000, p50=10.0), slice_of(3000, p50=9.0)),
                   (slice_of(4500, p50=4.0), slice_of(4500, p50=4.0))]
    targets = targets_of(measured)
    # p99s 20/18, 40/36, 16/16: each round within 1.3x, and their median is 1.11x
    assert targets[DURABLE_FLAT].value == pytest.approx(20 / 18)
    assert targets[DURABLE_FLAT].status == "met"
    assert targets[DURABLE_FULL].value == pytest.approx(45.0)  # its own run, alone
    assert targets[DURABLE_FULL].status == "missed"


def test_durable_servers_are_all_up_at_once_then_stopped_and_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_path = _write_path()
    events: list[tuple[str, str]] = []
    dirs: list[Path] = []

    class Procs:
        def start(self, name: str, cmd: list[str], env: Any = None) -> Any:
            events.append(("start", name))
            dirs.append(Path(cmd[cmd.index("--data-dir") + 1]))
            assert (dirs[-1] / "delta.json").is_file()  # prefilled before the server starts
            proc = subprocess.Popen(["true"])
            proc.wait()
            return proc

        def stop(self, name: str) -> None:
            events.append(("stop", name))

    monkeypatch.setattr(bench, "wait_until_answers", lambda *a, **kw: 0.0)
    how = write_path.Load("wrk", 1.0, 1.0, 4, 1, bench.Pinning())
    template = ({"id": "tkt_x", "subject": "Bench"}, 10)
    with write_path.durable_servers(Procs(), {}, (0, 3), how, template) as ports:
        assert set(ports) == {0, 3}
        assert events == [("start", "write-durable-0"), ("start", "write-durable-3")]
        held = json.loads((dirs[1] / "delta.json").read_text())
        assert sum(len(table) for table in held.values()) == 3
    assert sorted(events[2:]) == [("stop", "write-durable-0"), ("stop", "write-durable-3")]
    assert not any(d.exists() for d in dirs)
    # the runs alone take the same servers one at a time, each stopped before the next starts
    events.clear()
    monkeypatch.setattr(write_path, "_load", lambda *a: (wrk(4800), ""))
    assert [c for c, _, _ in write_path.durable_runs(Procs(), {}, (0, 3), how, template)] == [0, 3]
    assert events == [("start", "write-durable-0"), ("stop", "write-durable-0"),
                      ("start", "write-durable-3"), ("stop", "write-durable-3")]


def test_the_durable_phase_measures_the_two_stores_in_turns_after_each_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    fake = ModuleType("write_path")
    fake.Load = lambda *a: a  # type: ignore[attr-defined]
    fake.template_record = lambda *a: ({}, 0)  # type: ignore[attr-defined]
    fake.server_name = lambda count: f"durable {count}"  # type: ignore[attr-defined]
    procs = bench.Processes(tmp_path)
    held: list[str] = []

    @contextmanager
    def holding(name: str) -> Iterator[None]:
        held.append(name)
        yield

    monkeypatch.setattr(procs, "held", holding)

    def durable_runs(*a: Any) -> Iterator[tuple[int, Any, str]]:
        yield 0, wrk(4800, p99="15.00ms"), ""
        yield 50_000, wrk(3000, p99="45.00ms"), ""

    class Servers:
        def __enter__(self) -> dict[int, int]:
            return {0: (1000, 1), 50_000: (1001, 2)}

        def __exit__(self, *exc: object) -> None:
            return None

    pairs = [(slice_of(4000, p50=5.0), slice_of(4000, p50=4.5))]
    asked: list[tuple[str, int, int]] = []

    def measure(opts: Any, target: str, port: int, scenario: Any, headers: Any,
                beside: Any = None, hold: Any = None) -> Any:
        asked.append((target, port, beside.port))
        with hold(), beside.hold():  # each turn holds the other store's server
            pass
        return bench.Run(target, "create", "", bench.combined([p[0] for p in pairs]), "", 2.0,
                         list(pairs), beside.name)

    fake.durable_runs = durable_runs  # type: ignore[attr-defined]
    fake.durable_servers = lambda *a: Servers()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "write_path", fake)
    monkeypatch.setattr(bench, "owner_key", lambda recipe: "om_x")
    monkeypatch.setattr(bench, "measure", measure)
    measured: list[Any] = []
    bench.run_durable(procs, bench.Options("wrk", 10, 2, 64, 2, rounds=5), measured)
    assert asked == [(bench.durable_target(50_000), 1001, 1000)]
    assert held == ["durable 50000", "durable 0"]
    full = {r.target: r for r in measured}[bench.durable_target(50_000)]
    assert full.result.p99_ms == 45.0 and full.beside == pairs
    assert targets_of({(r.target, r.scenario): r for r in measured})[DURABLE_FLAT].value == (
        pytest.approx(20 / 18))
    measured.clear()
    asked.clear()
    bench.run_durable(procs, bench.Options("wrk", 10, 2, 64, 2, rounds=0), measured)
    assert asked == [] and all(not r.beside for r in measured)


def test_fractions_of_each_floor_are_reported_for_what_was_measured() -> None:
    fractions = bench.build_fractions(runs(
        ("sandbox", "get", wrk(7400)), ("asgi floor", "get", wrk(31000)),
        ("asgi floor granian", "get", wrk(47500)), ("sandbox", "create", wrk(3000)),
        ("asgi floor", "create", wrk(30000)), ("floor", "get", wrk(10200)),
    ))
    got = {(f.reference, f.scenario): f.value for f in fractions}
    assert got[("asgi floor", "get")] == pytest.approx(7400 / 31000)
    assert got[("asgi floor granian", "get")] == pytest.approx(7400 / 47500)
    assert got[("asgi floor", "create")] == pytest.approx(0.1)
    assert got[("floor", "get")] == pytest.approx(7400 / 10200)
    assert ("asgi floor granian", "create") not in got  # not measured: not listed
    assert ("wiremock", "get") not in got


def test_a_server_that_is_not_installed_is_listed_as_not_measured_with_the_reason() -> None:
    scs = bench.scenarios(bench.API, "agt_x", ["get", "list"])
    measured = runs(("sandbox", "get", wrk(7400)))
    for run in bench.not_run("asgi floor granian", scs, bench.GRANIAN_MISSING):
        measured[(run.target, run.scenario)] = run
    fractions = {f.scenario: f for f in bench.build_fractions(measured)}
    assert set(fractions) == {"get"}  # the sandbox ran no list here: nothing to divide
    assert fractions["get"].value is None
    assert "granian not installed" in fractions["get"].note


def test_report_json_carries_pinning_warmups_and_fractions(tmp_path: Path) -> None:
    measured = runs(("sandbox", "get", wrk(7400)), ("wiremock", "get", wrk(21500)))
    measured[("wiremock", "get")].warmup_s = 20.0
    opts = bench.Options("wrk", 10, 2, 64, 2, 1, bench.plan_pinning(True, [0, 1], "taskset"),
                         20.0)
    out = tmp_path / "results.json"
    targets = bench.build_targets(measured, [], 64)
    bench.write_json(out, list(measured.values()), targets, [], opts, {},
                     bench.build_fractions(measured))
    doc = json.loads(out.read_text())
    assert doc["meta"]["pinning"] == "server on CPU 0, load tool on CPU 1"
    assert doc["meta"]["jvm_warmup_s"] == 20.0
    assert [r["warmup_s"] for r in doc["runs"]] == [None, 20.0]
    assert doc["fractions"][0]["reference"] == "wiremock"
    assert doc["fractions"][0]["sandbox_over_reference"] == pytest.approx(7400 / 21500)


# ---------------------------------------------------------------------------------------------
# references measured in turns with a sandbox beside them


def slice_of(rps: float, p50: float = 5.0, non_2xx: int = 0) -> Any:
    """One 2 s slice of load at `rps`."""
    return loadgen.LoadResult("wrk", int(rps * 2), 2.0, rps, p50, 4 * p50, non_2xx)


def in_turns(target: str, scenario: str, *rounds: tuple[Any, Any]) -> Any:
    """A reference's run measured beside the sandbox: (its slice, the sandbox's) per round."""
    result = bench.combined([theirs for theirs, _ in rounds])
    return bench.Run(target, scenario, "http://127.0.0.1:1/", result, "", 2.0, list(rounds))


def targets_of(measured: dict[tuple[str, str], Any]) -> dict[str, Any]:
    return {t.name: t for t in bench.build_targets(measured, [], 64)}


def test_a_reference_measured_in_turns_is_judged_by_the_median_of_the_rounds_ratios() -> None:
    # the machine ran at three speeds; the sandbox's own phase fell on its slowest minute
    measured = runs(("sandbox", "get", wrk(7000)))
    measured[("wiremock", "get")] = in_turns(
        "wiremock", "get",
        (slice_of(20000), slice_of(22000)), (slice_of(5000), slice_of(5500)),
        (slice_of(6000), slice_of(6000)),
    )
    target = targets_of(measured)["get >= 1.0x WireMock static stubs"]
    assert target.value == pytest.approx(1.1)  # 1.1, 1.1 and 1.0: not 7000 / 10333
    assert target.status == "met"
    assert "median of 3 rounds in turns" in target.note


def test_a_slower_sandbox_in_every_round_misses_however_its_own_phase_ran() -> None:
    measured = runs(("sandbox", "get", wrk(99000)), ("sandbox", "list", wrk(99000)))
    measured[("sandbox no-auth", "get")] = in_turns(
        "sandbox no-auth", "get", (slice_of(10000), slice_of(7000)),
        (slice_of(20000), slice_of(15000)), (slice_of(9000), slice_of(6000)),
    )
    target = targets_of(measured)["get auth+rate limit on within 15% of off"]
    assert target.value == pytest.approx(0.7)
    assert target.status == "missed"


def test_the_large_recipes_latency_is_divided_by_the_sandboxs_beside_it_round_by_round() -> None:
    measured = runs(("sandbox", "list", wrk(9000)))  # its own p50: 6.88 ms
    measured[("sandbox large", "list")] = in_turns(
        "sandbox large", "list", (slice_of(9000, p50=3.0), slice_of(9000, p50=2.5)),
        (slice_of(9000, p50=12.0), slice_of(9000, p50=10.0)),
        (slice_of(9000, p50=6.0), slice_of(9000, p50=5.0)),
    )
    target = targets_of(measured)["list latency large/default <= 1.3x"]
    assert target.value == pytest.approx(1.2)
    assert target.status == "met"


def test_errors_beside_the_reference_miss_the_target_and_the_references_own_leave_it_open(
) -> None:
    mine_failing = runs()
    mine_failing[("floor", "get")] = in_turns(
        "floor", "get", (slice_of(5000), slice_of(9000, non_2xx=18000)),
    )
    theirs_failing = runs()
    theirs_failing[("floor", "get")] = in_turns(
        "floor", "get", (slice_of(5000, non_2xx=10000), slice_of(9000)),
    )
    name = "get >= 60% of the Litestar floor"
    assert targets_of(mine_failing)[name].status == "missed"
    assert "sandbox get: 18000 non-2xx" in targets_of(mine_failing)[name].note
    assert targets_of(theirs_failing)[name].status == "n/a"
    assert "floor get: 10000 non-2xx" in targets_of(theirs_failing)[name].note


def test_fractions_use_the_rounds_in_turns_too() -> None:
    measured = runs(("sandbox", "create", wrk(3000)))
    measured[("asgi floor", "create")] = in_turns(
        "asgi floor", "create", (slice_of(30000), slice_of(6000)),
        (slice_of(10000), slice_of(2000)), (slice_of(20000), slice_of(4000)),
    )
    (fraction,) = bench.build_fractions(measured)
    assert fraction.value == pytest.approx(0.2)


def test_slices_add_up_to_one_result_with_the_median_slices_latencies() -> None:
    total = bench.combined([slice_of(1000, p50=1.0), slice_of(3000, p50=9.0),
                            slice_of(2000, p50=2.0, non_2xx=7)])
    assert total.requests == 12000 and total.duration_s == 6.0
    assert total.rps == pytest.approx(2000)
    assert (total.p50_ms, total.p99_ms, total.non_2xx) == (2.0, 8.0, 7)


def test_report_json_keeps_every_round_and_whom_it_was_paired_with(tmp_path: Path) -> None:
    measured = runs(("sandbox", "get", wrk(7400)))
    measured[("floor", "get")] = in_turns("floor", "get", (slice_of(9000), slice_of(8000)),
                                          (slice_of(5000), slice_of(4000)))
    out = tmp_path / "results.json"
    opts = bench.Options("wrk", 10, 2, 64, 2, rounds=2)
    bench.write_json(out, list(measured.values()), bench.build_targets(measured, [], 64), [],
                     opts, {})
    doc = json.loads(out.read_text())
    assert doc["meta"]["rounds"] == 2
    alone, paired = doc["runs"]
    assert alone["partner"] is None and alone["rounds"] == []
    assert paired["partner"] == "sandbox"
    assert [(r["result"]["rps"], r["partner"]["rps"]) for r in paired["rounds"]] == [
        (9000, 8000), (5000, 4000)]


@pytest.fixture()
def sandbox_beside_port() -> Iterator[int]:
    """A second server, standing in for the sandbox a reference takes turns with."""
    yield from _answering("/mine")


def test_a_reference_and_the_sandbox_beside_it_take_turns_first_one_then_the_other(
    monkeypatch: pytest.MonkeyPatch, echo_port: int, sandbox_beside_port: int,
) -> None:
    asked: list[tuple[str, float]] = []

    def run_load(tool: str, request: Any, *, duration: float, **_: Any) -> Any:
        who = "mine" if request.url.endswith("/mine") else "theirs"
        asked.append((who, duration))
        return slice_of(len(asked) * 1000)

    monkeypatch.setattr(bench.loadgen, "run_load", run_load)
    opts = bench.Options("wrk", 10, 2, 64, 2, rounds=5)
    beside = bench.Beside(sandbox_beside_port, {}, {"get": bench.Scenario("get", "GET", "/mine")})
    run = bench.measure(opts, "floor", echo_port, bench.Scenario("get", "GET", "/w"), {},
                        beside=beside)
    assert asked == [("theirs", 2), ("mine", 2),  # each warmed up
                     ("theirs", 2), ("mine", 2), ("mine", 2), ("theirs", 2),
                     ("theirs", 2), ("mine", 2), ("mine", 2), ("theirs", 2),
                     ("theirs", 2), ("mine", 2)]
    # each round pairs the reference's slice with the sandbox's of the same round
    assert [(t.rps, m.rps) for t, m in run.beside] == [
        (3000, 4000), (6000, 5000), (7000, 8000), (10000, 9000), (11000, 12000)]
    assert run.result.requests == 2 * (3000 + 6000 + 7000 + 10000 + 11000)
    assert run.valid and run.warmup_s == 2
    # the run as measured pairs with the sandbox's own row: the target is the rounds' median
    measured = {("sandbox", "get"): bench.Run("sandbox", "get", "", slice_of(99000)),
                ("floor", "get"): run}
    target = targets_of(measured)["get >= 60% of the Litestar floor"]
    assert target.value == pytest.approx(12 / 11)  # of 4/3, 5/6, 8/7, 9/10 and 12/11
    assert "median of 5 rounds in turns" in target.note


def test_without_rounds_a_reference_is_measured_alone(
    monkeypatch: pytest.MonkeyPatch, echo_port: int, sandbox_beside_port: int,
) -> None:
    asked = _fake_load(monkeypatch, [5000])
    opts = bench.Options("wrk", 10, 2, 64, 2, rounds=0)
    beside = bench.Beside(sandbox_beside_port, {}, {"get": bench.Scenario("get", "GET", "/mine")})
    run = bench.measure(opts, "floor", echo_port, bench.Scenario("get", "GET", "/w"), {},
                        beside=beside)
    assert asked == [2, 10]
    assert run.beside == []


def test_a_sandbox_beside_that_does_not_answer_leaves_the_reference_unmeasured(
    monkeypatch: pytest.MonkeyPatch, echo_port: int,
) -> None:
    asked = _fake_load(monkeypatch, [5000])
    beside = bench.Beside(free_port(), {}, {"get": bench.Scenario("get", "GET", "/mine")})
    run = bench.measure(bench.Options("wrk", 10, 2, 64, 2, rounds=5), "floor", echo_port,
                        bench.Scenario("get", "GET", "/w"), {}, beside=beside)
    assert asked == []
    assert run.result is None
    assert run.note.startswith("sandbox taking turns with it: probe failed")


def test_make_bench_takes_five_rounds_unless_told_otherwise() -> None:
    assert bench.parse_args([]).rounds == 5
    assert bench.parse_args(["--rounds", "0"]).rounds == 0
    assert bench.parse_args(["--rounds", "-3"]).rounds == 0


# ---------------------------------------------------------------------------------------------
# the server waiting for its turn is held


# busy in two threads (as a JVM's compiler and collector are while it answers nothing), and
# leaving through its own handler on SIGTERM, as the servers do
BUSY = """
import signal, sys, threading
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
spin()
"""


def _cpu_ticks(pid: int) -> int:
    """User plus system clock ticks a process has run (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _running(procs: Any, name: str, code: str) -> Any:
    proc = procs.start(name, [sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while len(bench.thread_states(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux /proc")
def test_a_held_server_spends_no_cpu_until_the_block_ends_then_runs_again(tmp_path: Path) -> None:
    procs = bench.Processes(tmp_path)
    try:
        proc = _running(procs, "busy", BUSY)
        with procs.held("busy"):
            assert set(bench.thread_states(proc.pid)) <= {"T"}
            before = _cpu_ticks(proc.pid)
            time.sleep(0.5)
            assert _cpu_ticks(proc.pid) == before
        time.sleep(0.3)
        assert "T" not in bench.thread_states(proc.pid)
        assert _cpu_ticks(proc.pid) > before
    finally:
        procs.stop_all()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux /proc")
def test_a_server_stopped_while_held_leaves_through_its_own_sigterm_handler(
    tmp_path: Path,
) -> None:
    procs = bench.Processes(tmp_path)
    try:
        proc = _running(procs, "busy", BUSY)
        started = time.monotonic()
        with procs.held("busy"):
            procs.stop("busy")  # Ctrl-C during a turn: every server is stopped on the way out
        assert time.monotonic() - started < 5  # not the SIGKILL after 10 s
        assert proc.returncode == 0
    finally:
        procs.stop_all()  # whatever failed, no busy process outlives the test


def _http_server(procs: Any, name: str, root: Path) -> int:
    port = free_port()
    started = time.perf_counter()
    proc = procs.start(name, [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                              str(port), "--directory", str(root)])
    bench.wait_until_answers(procs, name, proc, started, port, "/", {}, 30,
                             accept=lambda s: True)
    return port


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux /proc")
@pytest.mark.parametrize("hold", [True, False])
def test_the_server_waiting_for_its_turn_is_stopped_while_the_other_is_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hold: bool,
) -> None:
    (tmp_path / "w").write_text("{}")
    (tmp_path / "mine").write_text("{}")
    procs = bench.Processes(tmp_path / "logs")
    try:
        ports = {who: _http_server(procs, who, tmp_path) for who in ("theirs", "mine")}
        pids = {who: procs._procs[who][0].pid for who in ports}
        seen: list[tuple[str, bool, int]] = []

        def run_load(tool: str, request: Any, *, duration: float, **_: Any) -> Any:
            who = "mine" if request.url.endswith("/mine") else "theirs"
            other = "theirs" if who == "mine" else "mine"
            status, _ = bench.http_call(ports[who], "GET", request.url.split(str(ports[who]))[1],
                                        {}, timeout=5.0)  # the one under load answers
            stopped = set(bench.thread_states(pids[other])) <= {"T"}
            seen.append((who, stopped, status))
            return slice_of(1000)

        monkeypatch.setattr(bench.loadgen, "run_load", run_load)
        opts = bench.Options("wrk", 4, 1, 64, 2, rounds=2, hold=hold)
        beside = bench.Beside(ports["mine"], {}, {"get": bench.Scenario("get", "GET", "/mine")},
                              hold=lambda: procs.held("mine"))
        run = bench.measure(opts, "floor", ports["theirs"], bench.Scenario("get", "GET", "/w"),
                            {}, beside=beside, hold=lambda: procs.held("theirs"))
        assert run.valid and len(run.beside) == 2
        # warm-ups, then round 1 (theirs first) and round 2 (mine first)
        assert [who for who, _, _ in seen] == ["theirs", "mine", "theirs", "mine", "mine",
                                               "theirs"]
        assert {status for _, _, status in seen} == {200}
        assert {stopped for _, stopped, _ in seen} == {hold}
        for pid in pids.values():  # both run again once measured
            assert "T" not in bench.thread_states(pid)
    finally:
        procs.stop_all()


def test_make_bench_holds_the_waiting_server_unless_told_otherwise() -> None:
    assert bench.parse_args([]).no_hold is False
    assert bench.parse_args(["--no-hold"]).no_hold is True
    assert bench.Options("wrk", 10, 2, 64, 2).hold is True


# ---------------------------------------------------------------------------------------------
# the same bytes everywhere


def test_probe_refuses_a_reference_that_answers_other_bytes_or_status() -> None:
    stub = asgi_floor.Stub(200, "application/json", b'{"data":1}')
    assert bench.probe_problem(200, b'{"data":1}', stub) == ""
    assert "bytes" in bench.probe_problem(200, b'{"data":2}', stub)
    assert "201" in bench.probe_problem(201, b'{"data":1}', stub)
    assert "404" in bench.probe_problem(404, b"", None)
    assert bench.probe_problem(200, b"anything", None) == ""  # Prism: nothing to compare with


@pytest.fixture(scope="module")
def sandbox_answers() -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """What a real sandbox answered on loopback for the three scenarios, captured as run.py
    captures it."""
    app = make_app()
    auth = bearer(key_named(app, "Owner - full"))
    with LoopbackServer(app) as server:
        agent = bench.discover_agent_id(server.port, auth)
        scs = bench.scenarios(bench.API, agent, ["list", "get", "create"])
        yield bench.capture_stubs(server.port, auth, scs), scs


def test_captured_stubs_hold_the_sandboxs_status_type_and_bytes(
    sandbox_answers: tuple[dict[str, Any], list[Any]], tmp_path: Path,
) -> None:
    stubs, scs = sandbox_answers
    by_name = {sc.name: bench.stub_for(stubs, sc) for sc in scs}
    assert by_name["create"].status == 201 and by_name["create"].method == "POST"
    assert by_name["get"].status == 200 and by_name["list"].status == 200
    assert all(s.content_type.startswith("application/json") for s in by_name.values())
    assert json.loads(by_name["list"].body)["data"]["items"]
    path = tmp_path / "stubs.json"  # the file the floors read round-trips exactly
    path.write_text(asgi_floor.dump_stubs(stubs))
    assert asgi_floor.load_stubs(path) == stubs


@pytest.mark.parametrize("floor", ["asgi", "litestar"])
def test_floors_replay_the_sandboxs_answers_byte_for_byte(
    sandbox_answers: tuple[dict[str, Any], list[Any]], floor: str,
) -> None:
    stubs, scs = sandbox_answers
    app = asgi_floor.make_app(stubs) if floor == "asgi" else floor_app.make_app(stubs)
    with LoopbackServer(app) as server:
        for sc in scs:
            h = {"Content-Type": "application/json"} if sc.body else {}
            status, ctype, body = bench.http_answer(server.port, sc.method, sc.path, h, sc.body)
            expect = bench.stub_for(stubs, sc)
            assert bench.probe_problem(status, body, expect) == "", sc.name
            assert ctype == expect.content_type
        status, _, _ = bench.http_answer(server.port, "GET", "/no/such/path", {})
    if floor == "asgi":
        assert status == 404  # a wrong path is never mistaken for a measured one


@pytest.mark.parametrize("script", ["floor_app.py", "asgi_floor.py"])
def test_floors_serve_on_the_sandboxs_own_server_options_one_write_an_answer(
    script: str, tmp_path: Path
) -> None:
    """A floor started as `run.py` starts it writes each answer to its socket once, as the
    sandbox's server does: a fraction of it is the sandbox's own work, not the server's."""
    stub = asgi_floor.Stub(200, "application/json", b'{"data":{"id":"x"}}')
    path = tmp_path / "stubs.json"
    path.write_text(asgi_floor.dump_stubs({"/w": stub}))
    port = free_port()
    flag = "--bodies" if script == "floor_app.py" else "--stubs"
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / script), "--host", "127.0.0.1", "--port", str(port),
         flag, str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while bench.listeners(port) < 1:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            request = b"GET /w HTTP/1.1\r\nHost: floor\r\n\r\n"

            def answer() -> bytes:
                sock.sendall(request)
                data = b""
                while not data.endswith(stub.body):
                    data += sock.recv(65536)
                return data

            answer()
            before = write_calls(f"/proc/{proc.pid}/io")
            for _ in range(40):
                assert answer().startswith(b"HTTP/1.1 200")
            assert (write_calls(f"/proc/{proc.pid}/io") - before) / 40 == 1.0
    finally:
        proc.terminate()
        proc.wait(10)


def test_old_stub_files_with_bare_bodies_still_load(tmp_path: Path) -> None:
    path = tmp_path / "bodies.json"
    path.write_text(json.dumps({"/a": '{"x":1}'}))
    assert asgi_floor.load_stubs(path) == {"/a": asgi_floor.Stub(200, "application/json",
                                                                 b'{"x":1}')}


def test_asgi_floor_from_env_serves_the_named_stub_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "stubs.json"
    path.write_text(asgi_floor.dump_stubs({"/p": asgi_floor.Stub(202, "text/plain", b"ok")}))
    monkeypatch.setenv(asgi_floor.STUBS_ENV, str(path))
    with LoopbackServer(asgi_floor.app_from_env()) as server:
        assert bench.http_answer(server.port, "GET", "/p", {}) == (202, "text/plain", b"ok")


# ---------------------------------------------------------------------------------------------
# WireMock and granian commands


def test_wiremock_stub_answers_the_exact_bytes_on_method_and_path() -> None:
    body = '{"name":"Zoë","n":1}'.encode()
    mapping = wiremock.stub_mapping("GET", "/api/v1/x", 200, "application/json", body)
    assert mapping["request"] == {"method": "GET", "urlPath": "/api/v1/x"}  # any query string
    assert mapping["response"]["body"].encode("utf-8") == body  # sent back as UTF-8
    assert mapping["response"]["headers"] == {"Content-Type": "application/json"}
    raw = b"\xff\x00 not utf-8"
    mapping = wiremock.stub_mapping("GET", "/bin", 200, "application/octet-stream", raw)
    assert base64.b64decode(mapping["response"]["base64Body"]) == raw
    assert "body" not in mapping["response"]


def test_wiremock_stub_files_replace_the_previous_runs(tmp_path: Path) -> None:
    stale = tmp_path / "mappings" / "stub-09.json"
    stale.parent.mkdir()
    stale.write_text("{}")
    written = wiremock.write_stubs(tmp_path, {
        "/a": {"method": "GET", "status": 200, "content_type": "application/json", "body": b"1"},
        "/b": {"method": "GET", "status": 200, "content_type": "application/json", "body": "2"},
    })
    assert sorted(p.name for p in (tmp_path / "mappings").iterdir()) == [p.name for p in written]
    bodies = {json.loads(p.read_text())["request"]["urlPath"]:
              json.loads(p.read_text())["response"]["body"] for p in written}
    assert bodies == {"/a": "1", "/b": "2"}


def test_wiremock_runs_on_loopback_without_journal_logging_or_chunking(tmp_path: Path) -> None:
    cmd = wiremock.wiremock_command("/usr/bin/java", tmp_path / "w.jar", tmp_path, 4321)
    assert cmd[:3] == ["/usr/bin/java", "-jar", str(tmp_path / "w.jar")]
    assert cmd[cmd.index("--bind-address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--port") + 1] == "4321"
    assert cmd[cmd.index("--root-dir") + 1] == str(tmp_path)
    for flag in ("--no-request-journal", "--disable-request-logging", "--disable-gzip"):
        assert flag in cmd
    assert "--verbose" not in cmd
    assert cmd[cmd.index("--use-chunked-encoding") + 1] == "never"
    assert int(cmd[cmd.index("--container-threads") + 1]) >= 1


def test_wiremock_jar_is_found_in_the_npm_package(tmp_path: Path) -> None:
    assert wiremock.find_jar(tmp_path) is None
    build = tmp_path / "node_modules" / "wiremock" / "build"
    build.mkdir(parents=True)
    (build / "wiremock-standalone-3.13.2.jar").write_bytes(b"")
    assert wiremock.find_jar(tmp_path) == build / "wiremock-standalone-3.13.2.jar"


def test_granian_serves_one_worker_on_loopback_from_the_benchmarks_dir() -> None:
    cmd = bench.granian_command("asgi_floor:app_from_env", 4322)
    assert cmd[:3] == [sys.executable, "-m", "granian"]
    assert cmd[cmd.index("--interface") + 1] == "asgi"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--port") + 1] == "4322"
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--working-dir") + 1] == str(BENCH)
    assert cmd[-2:] == ["--factory", "asgi_floor:app_from_env"]

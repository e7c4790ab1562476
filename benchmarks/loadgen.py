"""Drive one load tool (wrk, else hey) and turn its text report into numbers.

Both tools come from Debian. wrk is preferred: it is lighter on the CPU the server also needs, and
reports p50/p99 from its full histogram. Custom headers and POST bodies go through a Lua script
for wrk and through flags for hey. Parsing is pure (text in, `LoadResult` out) so it is tested on
captured outputs without a network.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

TOOLS = ("wrk", "hey")

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class LoadToolError(RuntimeError):
    """The load tool could not run or printed something that is not a report."""


@dataclass(slots=True, frozen=True)
class LoadRequest:
    """One request shape, repeated by the load tool for the whole run."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass(slots=True)
class LoadResult:
    """What one run measured; latencies in milliseconds, None when the tool had no data."""

    tool: str
    requests: int
    duration_s: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    non_2xx: int = 0
    errors: int = 0

    @property
    def failed_fraction(self) -> float:
        """Share of answers that were not 2xx/3xx or never came; a high share voids the run."""
        total = self.requests + (self.errors if self.tool == "hey" else 0)
        if total <= 0:
            return 1.0
        return min(1.0, (self.non_2xx + self.errors) / total)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# wrk


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(text: str) -> LoadResult:
    """Parse `wrk --latency` output.

    wrk counts every completed response in "N requests in T"; "Non-2xx or 3xx responses" and
    "Socket errors" (connect/read/write/timeout) come on their own lines only when non-zero.
    A run where every request timed out prints zero latencies, which are reported as None.
    """
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.M)
    rps_m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not m or not rps_m:
        raise LoadToolError("not a wrk report:\n" + text.strip()[:500])
    requests = int(m.group(1))
    duration_s = float(m.group(2)) * _DURATION_UNITS_S[m.group(3)]
    percentiles: dict[int, float] = {}
    dist = text.split("Latency Distribution", 1)
    if len(dist) == 2:
        for pm in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", dist[1], re.M):
            percentiles[int(pm.group(1))] = _ms(pm.group(2), pm.group(3))
    non_2xx_m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock_m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = sum(int(g) for g in sock_m.groups()) if sock_m else 0
    p50 = percentiles.get(50) or None
    p99 = percentiles.get(99) or None
    return LoadResult(
        tool="wrk",
        requests=requests,
        duration_s=duration_s,
        rps=float(rps_m.group(1)),
        p50_ms=p50,
        p99_ms=p99,
        non_2xx=int(non_2xx_m.group(1)) if non_2xx_m else 0,
        errors=errors,
    )


def _lua_string(value: str) -> str:
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def wrk_script(request: LoadRequest) -> str:
    """The Lua script that makes wrk send `request` (method, headers, body) every time."""
    lines = [f"wrk.method = {_lua_string(request.method)}"]
    if request.body is not None:
        lines.append(f"wrk.body = {_lua_string(request.body)}")
    for name, value in request.headers.items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    return "\n".join(lines) + "\n"


def wrk_command(
    request: LoadRequest, script: Path, duration: float, connections: int, threads: int
) -> list[str]:
    return [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
        "--timeout", "5s", "--latency", "-s", str(script), request.url,
    ]


# ---------------------------------------------------------------------------------------------
# hey


def parse_hey(text: str) -> LoadResult:
    """Parse hey's default report.

    hey lists every status code it saw and every transport error; with too few samples it
    prints "0% in 0.0000 secs" for the percentiles it could not compute, read here as None.
    """
    total_m = re.search(r"^\s*Total:\s+([\d.]+) secs", text, re.M)
    rps_m = re.search(r"^\s*Requests/sec:\s+([\d.]+)", text, re.M)
    if not total_m or not rps_m:
        raise LoadToolError("not a hey report:\n" + text.strip()[:500])
    percentiles: dict[int, float] = {}
    for pm in re.finditer(r"^\s*(\d+)% in ([\d.]+) secs", text, re.M):
        pct, secs = int(pm.group(1)), float(pm.group(2))
        if pct > 0 and secs > 0:
            percentiles[pct] = secs * 1000.0
    ok = non_2xx = 0
    status_part = text.split("Status code distribution:", 1)
    if len(status_part) == 2:
        block = status_part[1].split("Error distribution:", 1)[0]
        for sm in re.finditer(r"\[(\d{3})\]\s+(\d+) responses", block):
            code, count = int(sm.group(1)), int(sm.group(2))
            if 200 <= code < 400:
                ok += count
            else:
                non_2xx += count
    errors = 0
    error_part = text.split("Error distribution:", 1)
    if len(error_part) == 2:
        errors = sum(int(c) for c in re.findall(r"^\s*\[(\d+)\]\s", error_part[1], re.M))
    return LoadResult(
        tool="hey",
        requests=ok + non_2xx,
        duration_s=float(total_m.group(1)),
        rps=float(rps_m.group(1)),
        p50_ms=percentiles.get(50),
        p99_ms=percentiles.get(99),
        non_2xx=non_2xx,
        errors=errors,
    )


def hey_command(request: LoadRequest, duration: float, connections: int) -> list[str]:
    cmd = ["hey", "-z", f"{max(1, round(duration))}s", "-c", str(connections), "-t", "5",
           "-m", request.method]
    for name, value in request.headers.items():
        if name.lower() == "content-type":
            cmd += ["-T", value]
        else:
            cmd += ["-H", f"{name}: {value}"]
    if request.body is not None:
        cmd += ["-d", request.body]
    return [*cmd, request.url]


# ---------------------------------------------------------------------------------------------
# choosing, installing and running


def find_tool(preferred: str = "auto") -> str | None:
    """The load tool on PATH: `preferred` if given, else wrk, else hey."""
    candidates = TOOLS if preferred == "auto" else (preferred,)
    for name in candidates:
        if shutil.which(name):
            return name
    return None


def ensure_tool(preferred: str = "auto") -> str:
    """Find a load tool, installing the Debian package once if none is there."""
    found = find_tool(preferred)
    if found:
        return found
    package = "hey" if preferred == "hey" else "wrk"
    if shutil.which("apt-get"):
        subprocess.run(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
            f"apt-get install -y -qq {package}",
            shell=True, check=False, timeout=600,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    found = find_tool(preferred)
    if not found:
        raise LoadToolError("no load tool: install wrk or hey (apt-get install wrk)")
    return found


def run_load(
    tool: str,
    request: LoadRequest,
    *,
    duration: float,
    connections: int,
    threads: int = 2,
    prefix: Sequence[str] = (),
) -> LoadResult:
    """Run one bounded load test and return its parsed report; `prefix` goes before the tool's
    command (`taskset -c 1` pins it to a CPU of its own)."""
    with tempfile.TemporaryDirectory(prefix="opsmerge-bench-") as tmp:
        if tool == "wrk":
            script = Path(tmp) / "request.lua"
            script.write_text(wrk_script(request))
            cmd = wrk_command(request, script, duration, connections, threads)
            parse = parse_wrk
        elif tool == "hey":
            cmd = hey_command(request, duration, connections)
            parse = parse_hey
        else:
            raise LoadToolError(f"unknown load tool {tool!r}")
        try:
            done = subprocess.run(
                [*prefix, *cmd], capture_output=True, text=True, timeout=duration + 60, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise LoadToolError(f"{tool} did not finish within {duration + 60:.0f}s") from exc
    if done.returncode != 0:
        raise LoadToolError(f"{tool} exited {done.returncode}: {done.stderr.strip()[:500]}")
    return parse(done.stdout)


def run_warmed(
    tool: str, request: LoadRequest, *, warmup: float, duration: float, connections: int,
    threads: int,
) -> LoadResult:
    """`warmup` seconds of load first (not measured), then the measured run."""
    if warmup > 0:
        run_load(tool, request, duration=warmup, connections=connections, threads=threads)
    return run_load(tool, request, duration=duration, connections=connections, threads=threads)


def result_row(name: str, result: LoadResult, width: int = 16) -> str:
    """One line of req/s, p50 and p99, with the failures when there were any."""
    p50 = "n/a" if result.p50_ms is None else f"{result.p50_ms:7.2f}"
    p99 = "n/a" if result.p99_ms is None else f"{result.p99_ms:7.2f}"
    bad = f"  ({result.non_2xx} non-2xx, {result.errors} errors)" if (
        result.non_2xx or result.errors) else ""
    return f"{name:<{width}} {result.rps:9.0f} req/s   p50 {p50} ms   p99 {p99} ms{bad}"

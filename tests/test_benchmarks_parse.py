"""The load-tool report parsers, proven on outputs captured from wrk 4.1.0 and hey (Debian 12).

Samples are verbatim except trailing spaces stripped and hey's error list cut to three lines.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "loadgen.py"
_SPEC = importlib.util.spec_from_file_location("bench_loadgen", _PATH)
assert _SPEC and _SPEC.loader
loadgen = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_loadgen"] = loadgen
_SPEC.loader.exec_module(loadgen)

WRK_OK = """\
Running 3s test @ http://127.0.0.1:4099/api/v1/agents
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.06ms   26.29ms 213.48ms   91.76%
    Req/Sec     3.92k     1.91k    8.43k    61.82%
  Latency Distribution
     50%    6.88ms
     75%   11.48ms
     90%   28.75ms
     99%  151.21ms
  22099 requests in 3.07s, 7.23MB read
Requests/sec:   7203.87
Transfer/sec:      2.36MB
"""


WRK_POST_OK = """\
Running 3s test @ http://127.0.0.1:4099/api/v1/tickets
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    11.81ms   21.19ms 306.61ms   96.72%
    Req/Sec     3.70k     1.51k    7.14k    61.67%
  Latency Distribution
     50%    7.53ms
     75%   11.08ms
     90%   17.12ms
     99%  126.54ms
  22312 requests in 3.06s, 7.30MB read
Requests/sec:   7289.34
Transfer/sec:      2.38MB
"""


WRK_NON_2XX = """\
Running 3s test @ http://127.0.0.1:4097/missing
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    24.56ms  136.74ms   1.69s    97.49%
    Req/Sec   709.06    654.64     2.16k    72.92%
  Latency Distribution
     50%    2.79ms
     75%    7.49ms
     90%   15.65ms
     99%  784.22ms
  3415 requests in 3.01s, 1.69MB read
  Non-2xx or 3xx responses: 3415
Requests/sec:   1135.77
Transfer/sec:    576.76KB
"""


WRK_ALL_TIMEOUTS = """\
Running 4s test @ http://127.0.0.1:4096/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec    13.83     19.27    50.00     83.33%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  22 requests in 4.01s, 2.43KB read
  Socket errors: connect 0, read 0, write 0, timeout 22
Requests/sec:      5.48
Transfer/sec:     619.59B
"""


WRK_REFUSED = """\
unable to connect to 127.0.0.1:4098 Connection refused
"""


HEY_OK = """\

Summary:
  Total:	3.0093 secs
  Slowest:	0.0446 secs
  Fastest:	0.0014 secs
  Average:	0.0109 secs
  Requests/sec:	5853.5666

  Total data:	3822455 bytes
  Size/request:	217 bytes

Response time histogram:
  0.001 [1]	|
  0.006 [1886]	|■■■■■■■■■■
  0.010 [7570]	|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.014 [4647]	|■■■■■■■■■■■■■■■■■■■■■■■■■
  0.019 [1873]	|■■■■■■■■■■
  0.023 [893]	|■■■■■
  0.027 [400]	|■■
  0.032 [207]	|■
  0.036 [91]	|
  0.040 [40]	|
  0.045 [7]	|


Latency distribution:
  10% in 0.0057 secs
  25% in 0.0073 secs
  50% in 0.0094 secs
  75% in 0.0128 secs
  90% in 0.0181 secs
  95% in 0.0220 secs
  99% in 0.0302 secs

Details (average, fastest, slowest):
  DNS+dialup:	0.0000 secs, 0.0014 secs, 0.0446 secs
  DNS-lookup:	0.0000 secs, 0.0000 secs, 0.0000 secs
  req write:	0.0000 secs, 0.0000 secs, 0.0080 secs
  resp wait:	0.0108 secs, 0.0013 secs, 0.0445 secs
  resp read:	0.0001 secs, 0.0000 secs, 0.0176 secs

Status code distribution:
  [200]	17615 responses



"""


HEY_ERRORS = """\

Summary:
  Total:	14.4251 secs
  Slowest:	7.7653 secs
  Fastest:	0.0008 secs
  Average:	0.0335 secs
  Requests/sec:	290.8134

  Total data:	1486191 bytes
  Size/request:	357 bytes

Response time histogram:
  0.001 [1]	|
  0.777 [4112]	|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  1.554 [30]	|
  2.330 [6]	|
  3.107 [2]	|
  3.883 [0]	|
  4.659 [6]	|
  5.436 [0]	|
  6.212 [0]	|
  6.989 [0]	|
  7.765 [6]	|


Latency distribution:
  10% in 0.0026 secs
  25% in 0.0031 secs
  50% in 0.0036 secs
  75% in 0.0044 secs
  90% in 0.0068 secs
  95% in 0.0096 secs
  99% in 1.0175 secs

Details (average, fastest, slowest):
  DNS+dialup:	0.0128 secs, 0.0008 secs, 7.7653 secs
  DNS-lookup:	0.0000 secs, 0.0000 secs, 0.0000 secs
  req write:	0.0000 secs, 0.0000 secs, 0.0064 secs
  resp wait:	0.0203 secs, 0.0004 secs, 6.7551 secs
  resp read:	0.0003 secs, 0.0000 secs, 0.0067 secs

Status code distribution:
  [501]	4163 responses

Error distribution:
"""
# hey's error lines run past the line-length limit, so they are rebuilt from their parts.
_RESET = (
    '  [1]\tPost "http://127.0.0.1:4097/x": read tcp 127.0.0.1:{}->127.0.0.1:4097: '
    "read: connection reset by peer\n"
)
HEY_ERRORS += "".join(_RESET.format(port) for port in ("52798", "52804", "52806"))


HEY_FEW_SAMPLES = """\

Summary:
  Total:	2.3267 secs
  Slowest:	0.6439 secs
  Fastest:	0.3019 secs
  Average:	0.3496 secs
  Requests/sec:	20.6302

  Total data:	96 bytes
  Size/request:	2 bytes

Response time histogram:
  0.302 [1]	|■
  0.336 [7]	|■■■■■■■
  0.370 [38]	|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.404 [0]	|
  0.439 [0]	|
  0.473 [0]	|
  0.507 [0]	|
  0.541 [0]	|
  0.576 [0]	|
  0.610 [0]	|
  0.644 [2]	|■■


Latency distribution:
  10% in 0.3028 secs
  25% in 0.3438 secs
  50% in 0.3440 secs
  75% in 0.3441 secs
  90% in 0.3444 secs
  95% in 0.6438 secs
  0% in 0.0000 secs

Details (average, fastest, slowest):
  DNS+dialup:	0.0000 secs, 0.3019 secs, 0.6439 secs
  DNS-lookup:	0.0000 secs, 0.0000 secs, 0.0000 secs
  req write:	0.0000 secs, 0.0000 secs, 0.0002 secs
  resp wait:	0.3009 secs, 0.3004 secs, 0.3031 secs
  resp read:	0.0360 secs, 0.0000 secs, 0.0473 secs

Status code distribution:
  [200]	48 responses



"""


def test_wrk_report_gives_throughput_and_percentiles_in_ms() -> None:
    r = loadgen.parse_wrk(WRK_OK)
    assert r.tool == "wrk"
    assert r.requests == 22099
    assert r.duration_s == pytest.approx(3.07)
    assert r.rps == pytest.approx(7203.87)
    assert r.p50_ms == pytest.approx(6.88)
    assert r.p99_ms == pytest.approx(151.21)
    assert (r.non_2xx, r.errors) == (0, 0)
    assert r.failed_fraction == 0.0


def test_wrk_report_of_a_post_script_run_parses_the_same_way() -> None:
    r = loadgen.parse_wrk(WRK_POST_OK)
    assert (r.requests, r.rps, r.p99_ms) == (22312, pytest.approx(7289.34), pytest.approx(126.54))


def test_wrk_counts_non_2xx_answers_so_the_run_is_voided() -> None:
    r = loadgen.parse_wrk(WRK_NON_2XX)
    assert r.non_2xx == 3415 == r.requests
    assert r.failed_fraction == 1.0
    assert r.p99_ms == pytest.approx(784.22)


def test_wrk_run_where_everything_timed_out_has_no_latency_and_counts_errors() -> None:
    r = loadgen.parse_wrk(WRK_ALL_TIMEOUTS)
    assert r.errors == 22
    assert r.p50_ms is None and r.p99_ms is None
    assert r.failed_fraction == 1.0


def test_wrk_unit_suffixes_convert_to_milliseconds() -> None:
    text = WRK_OK.replace("50%    6.88ms", "50%  812.00us").replace("99%  151.21ms", "99%    1.50s")
    text = text.replace("22099 requests in 3.07s", "22099 requests in 1.00m")
    r = loadgen.parse_wrk(text)
    assert r.p50_ms == pytest.approx(0.812)
    assert r.p99_ms == pytest.approx(1500.0)
    assert r.duration_s == pytest.approx(60.0)


def test_wrk_error_text_is_not_mistaken_for_a_report() -> None:
    with pytest.raises(loadgen.LoadToolError, match="not a wrk report"):
        loadgen.parse_wrk(WRK_REFUSED)


def test_hey_report_gives_throughput_percentiles_and_status_counts() -> None:
    r = loadgen.parse_hey(HEY_OK)
    assert r.tool == "hey"
    assert r.requests == 17615
    assert r.rps == pytest.approx(5853.5666)
    assert r.p50_ms == pytest.approx(9.4)
    assert r.p99_ms == pytest.approx(30.2)
    assert (r.non_2xx, r.errors) == (0, 0)


def test_hey_counts_error_statuses_and_transport_errors() -> None:
    r = loadgen.parse_hey(HEY_ERRORS)
    assert r.non_2xx == 4163
    assert r.errors == 3
    assert r.p99_ms == pytest.approx(1017.5)
    assert r.failed_fraction == 1.0


def test_hey_percentile_it_could_not_compute_is_none_not_zero() -> None:
    r = loadgen.parse_hey(HEY_FEW_SAMPLES)
    assert r.requests == 48
    assert r.p50_ms == pytest.approx(344.0)
    assert r.p99_ms is None


def test_hey_parser_rejects_a_wrk_report() -> None:
    with pytest.raises(loadgen.LoadToolError, match="not a hey report"):
        loadgen.parse_hey(WRK_OK)


def test_wrk_script_sends_method_headers_and_an_escaped_body() -> None:
    req = loadgen.LoadRequest(
        "POST", "http://127.0.0.1:1/api/v1/tickets",
        headers={"Authorization": "Bearer om_x", "Content-Type": "application/json"},
        body='{"subject": "a\\b"}\n',
    )
    script = loadgen.wrk_script(req)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Authorization"] = "Bearer om_x"' in script
    assert r'wrk.body = "{\"subject\": \"a\\b\"}\n"' in script


def test_hey_command_puts_content_type_in_its_own_flag() -> None:
    req = loadgen.LoadRequest(
        "POST", "http://127.0.0.1:1/x",
        headers={"Content-Type": "application/json", "Authorization": "Bearer k"}, body="{}",
    )
    cmd = loadgen.hey_command(req, duration=2, connections=8)
    assert cmd[cmd.index("-T") + 1] == "application/json"
    assert cmd[cmd.index("-H") + 1] == "Authorization: Bearer k"
    assert cmd[cmd.index("-d") + 1] == "{}"
    assert cmd[-1] == "http://127.0.0.1:1/x"


def _run_module() -> ModuleType:
    """benchmarks/run.py imports its siblings by bare name, as `python benchmarks/run.py` does."""
    sys.path.insert(0, str(_PATH.parent))
    try:
        spec = importlib.util.spec_from_file_location("bench_run", _PATH.parent / "run.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_run"] = module  # dataclasses look their module up while building
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(_PATH.parent))
        for sibling in ("loadgen", "prism", "wiremock", "asgi_floor"):  # keep bare names out
            sys.modules.pop(sibling, None)


def _targets(runs: list[tuple[str, str, str]]) -> dict[str, Any]:
    bench = _run_module()
    parsed = {
        (t, s): bench.Run(t, s, "http://127.0.0.1:1/", loadgen.parse_wrk(text))
        for t, s, text in runs
    }
    return {t.name: t for t in bench.build_targets(parsed, [0.8], 64)}


def test_targets_compare_sandbox_with_prism_and_leave_unmeasured_ones_unjudged() -> None:
    targets = _targets([("sandbox", "list", WRK_OK), ("prism static", "list", WRK_POST_OK)])
    ratio = targets["list >= 3x Prism static"]
    assert ratio.value == pytest.approx(7203.87 / 7289.34)
    assert ratio.status == "missed"
    assert targets["get >= 4x Prism static"].status == "n/a"
    assert targets["ready <= 1.5 s (default recipe)"].status == "met"


def test_sandbox_errors_under_load_miss_the_target_but_reference_errors_do_not() -> None:
    targets = _targets([
        ("sandbox", "list", WRK_NON_2XX), ("prism static", "list", WRK_OK),
        ("sandbox", "get", WRK_OK), ("prism static", "get", WRK_NON_2XX),
    ])
    assert targets["list >= 3x Prism static"].status == "missed"
    assert targets["get >= 4x Prism static"].status == "n/a"

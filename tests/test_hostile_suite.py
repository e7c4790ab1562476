"""The hostile-input suite (benchmarks/hostile.py) against real `serve --strict` processes.

Every hostile request, sent byte for byte over a raw loopback socket, must be refused with a 4xx
in the error envelope, never a 5xx, never repeat part of a key, and leave the sandbox's state as
it was. The suite's own judge is tested too: a suite that cannot see a change or a bad answer
would pass a broken sandbox.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "hostile.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hostile_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


hostile = _load()


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[tuple[Any, Any]]:
    """A plain and a hosted sandbox, each `opsmerge-sandbox serve --strict` in its own process."""
    with hostile.spawn_sandbox() as plain, hostile.spawn_sandbox("--hosted") as hosted:
        yield plain, hosted


def _failures(report: Any) -> str:
    lines = []
    for f in report.figures()["failures"]:
        changed = "; ".join(f["state_changed"][:3])
        lines.append(f"[{f['category']}] {f['case']}: {f['status']} {f['code']} {f['verdict']} "
                     f"{changed} {'LEAK' if f['leak'] else ''} {f['problem'][:80]}")
    return "\n".join(lines)


def test_every_hostile_request_is_refused_with_the_envelope_and_changes_nothing(
    sandboxes: tuple[Any, Any],
) -> None:
    plain, hosted = sandboxes
    report = hostile.run_suite(plain.port, plain.admin_token, plain.pid, hosted.port,
                               server_log=plain.log, log_start=plain.log_start)
    figures = report.figures()
    assert figures["sent"] == len(hostile.CASES)
    assert figures["server_errors_5xx"] == 0, _failures(report)
    assert figures["bad_envelopes"] == 0, _failures(report)
    assert figures["not_refused"] == 0 and figures["no_answer"] == 0, _failures(report)
    assert figures["state_changes"] == 0, _failures(report)
    assert figures["key_leaks_in_answers"] == 0, _failures(report)
    assert not figures["key_leak_in_journal"], "the journal keeps part of a key sent in a query"
    assert not figures["key_leak_in_server_log"], "the server log shows part of a key"
    assert report.ok, _failures(report)


def test_the_suite_counts_an_accepted_write_as_a_failure_and_a_state_change(
    sandboxes: tuple[Any, Any],
) -> None:
    """The fingerprint has teeth: the same edit without its hostile part is seen landing."""
    plain, _ = sandboxes
    harmless = hostile.Case("a plain edit", "control", b"PATCH", b"$ITEM",
                            (hostile.OWNER, hostile.JSON_CT), hostile.PATCH_BODY, write=True)
    report = hostile.run_suite(plain.port, plain.admin_token, cases=[harmless])
    (outcome,) = report.outcomes
    assert outcome.status == 200 and outcome.verdict == "not-refused"
    assert any("/" in what for what in outcome.state_changed), outcome.state_changed
    assert not report.ok
    # The world was put back: the next fingerprint matches a fresh one.
    again = hostile.run_suite(plain.port, plain.admin_token, cases=[])
    assert again.ok and again.outcomes == []


def test_the_suite_holds_80_distinct_hostile_requests_and_no_acceptable_write() -> None:
    cases = hostile.CASES
    assert len(cases) >= 80
    assert len({c.name for c in cases}) == len(cases)
    rendered = {c.raw or (c.method, c.target, c.headers, c.body, c.length) for c in cases}
    assert len(rendered) == len(cases), "two cases send the same request"
    categories = {c.category for c in cases}
    assert {"repeated-auth", "repeated-workspace", "no-scheme", "key-bytes", "no-key",
            "huge-header", "deep-json", "bad-text", "numbers", "content-type",
            "content-length", "transfer-encoding", "prefer", "query", "path", "method",
            "admin", "workspace"} <= categories
    for c in cases:
        if c.write:  # a write may only ever be refused, or cut short by the client itself
            assert c.allowed in ("", hostile._NO_ANSWER), c.name


def test_a_plain_text_400_is_not_an_envelope_and_a_5xx_is_a_failure() -> None:
    from opsmerge_sandbox.catalogue import load_catalogue

    catalogue = load_catalogue()
    case = hostile.CASES[0]
    plain = hostile.parse_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n"
                                 b"content-length: 3\r\n\r\nbad")
    assert hostile.judge(case, plain, catalogue).verdict == "bad-envelope"
    wrong_code = hostile.parse_answer(
        b'HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\r\n'
        b'{"error": {"code": "RATE_LIMITED", "message": "x"}}'
    )
    assert hostile.judge(case, wrong_code, catalogue).verdict == "bad-envelope"
    good = hostile.parse_answer(
        b'HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\r\n'
        b'{"error": {"code": "HEADER_INVALID", "message": "twice"}}'
    )
    assert hostile.judge(case, good, catalogue).verdict == "refused"
    crash = hostile.parse_answer(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    assert hostile.judge(case, crash, catalogue).failed


def test_eight_characters_of_a_key_are_a_leak_and_its_public_prefix_is_not() -> None:
    key = b"om_sbx_example_0123456789abcdef"
    assert hostile.leaked(b'{"message": "bad key ...0123456789ab"}', key)
    assert not hostile.leaked(b'{"message": "bad key 0123456"}', key)
    assert hostile.leaked(b'"key_prefix": "om_sbx_exa"', key)
    assert not hostile.leaked(b'"key_prefix": "om_sbx_exa"', key, shown=10)

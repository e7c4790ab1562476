"""Proof that the harness catches what it claims: one broken convention, one failing check.

The target is the real sandbox behind `tests/broken_server.py`, which breaks one rule at a time.
Each case runs the contract that guards the rule and asserts on the id of the check that failed;
against the unbroken app the same contracts pass. Two cases also run through pytest itself (the
plugin, the report file and the exit status), as a user's CI would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import broken_server
import pytest

from opsmerge_contracts import probes
from opsmerge_contracts.options import Options
from opsmerge_contracts.session import Contract, ContractFailure, ContractRun

pytest_plugins = ["pytester"]

BROKEN = Path(broken_server.__file__)
APP = f"{BROKEN}:create_broken_app"

Probe = Callable[[Contract], None]


def _op(name: str) -> Callable[[Callable[[Contract, object], None]], Probe]:
    def bind(probe: Callable[[Contract, object], None]) -> Probe:
        return lambda c: probe(c, c.spec.operation(name))

    return bind


PROBES: dict[str, Probe] = {
    "conforms getTicket": _op("getTicket")(probes.conformance),
    "conforms listTickets": _op("listTickets")(probes.conformance),
    "conforms listClientAssets": _op("listClientAssets")(probes.conformance),
    "conforms createTicket": _op("createTicket")(probes.conformance),
    "bodies createTicket": _op("createTicket")(probes.bodies),
    "pagination listTickets": _op("listTickets")(probes.pagination),
    "auth listTickets": _op("listTickets")(probes.auth),
    "auth getTicket": _op("getTicket")(probes.auth),
    "unknown id getTicket": _op("getTicket")(probes.unknown_id),
    "rate limit burst": probes.rate_limit_burst,
    "rate limit retry": probes.rate_limit_retry,
    "role matrix createTicket": _op("createTicket")(probes.role_matrix),
    "role matrix createInvoice": _op("createInvoice")(probes.role_matrix),
    "role matrix listTickets": _op("listTickets")(probes.role_matrix),
}

# breakage -> (the contract that exercises the rule, the check id that must fail)
CASES: dict[str, tuple[str, str]] = {
    "envelope_missing": ("conforms listTickets", "envelope"),
    "total_off_by_one": ("pagination listTickets", "pagination_total"),
    "repeated_item": ("pagination listTickets", "pagination_unique"),
    "per_page_cap_ignored": ("pagination listTickets", "pagination_bounds"),
    "scope_not_enforced": ("auth listTickets", "scope_denied"),
    "no_www_authenticate": ("auth getTicket", "www_authenticate"),
    "no_retry_after": ("rate limit retry", "retry_after"),
    "remaining_stuck": ("rate limit burst", "rate_limit_remaining"),
    "code_status_mismatch": ("unknown id getTicket", "envelope"),
    "field_type_drift": ("conforms getTicket", "response_schema"),
    "deprecation_missing": ("conforms listClientAssets", "deprecation_headers"),
    "server_error_on_bad_input": ("bodies createTicket", "no_server_error"),
    "content_type_text": ("conforms getTicket", "content_type_json"),
    "undocumented_status": ("unknown id getTicket", "status_documented"),
    "unstable_order": ("pagination listTickets", "pagination_stable"),
    "past_end_total_zero": ("pagination listTickets", "pagination_past_end"),
    "readback_drift": ("conforms createTicket", "readback"),
    "unknown_id_found": ("unknown id getTicket", "unknown_id"),
    "no_key_accepted": ("auth listTickets", "auth_required"),
    "deprecation_on_stable": ("conforms listTickets", "deprecation_headers"),
    "existing_id_not_found": ("conforms getTicket", "request_succeeds"),
    "undocumented_field": ("conforms getTicket", "response_schema"),
    "role_bypass": ("role matrix createTicket", "role_forbidden"),
    "scope_bypass": ("role matrix createInvoice", "role_scope_denied"),
    "forbidden_as_scope_denied": ("role matrix createTicket", "role_forbidden"),
    "scope_denied_as_forbidden": ("role matrix createInvoice", "role_scope_denied"),
}
ROLE_BREAKAGES = (
    "role_bypass",
    "scope_bypass",
    "forbidden_as_scope_denied",
    "scope_denied_as_forbidden",
)


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractRun]:
    import os

    os.environ[broken_server.ENV] = "none"
    run = ContractRun(Options(target="sandbox", app=APP, profile="sandbox"))
    try:
        yield run
    finally:
        run.close()
        os.environ.pop(broken_server.ENV, None)


def _attempt(run: ContractRun, breakage: str, probe: Probe, name: str) -> ContractFailure | None:
    """Run one contract with the app broken as asked; the failure it raised, if any."""
    run.target.sandbox.app.breakage = breakage  # type: ignore[union-attr]
    run.target.admin.reset(keys=True)  # type: ignore[union-attr]
    run.target.forget_minted()
    run.pool.invalidate()
    contract = Contract(run, f"{name}[{breakage}]")
    try:
        probe(contract)
    except ContractFailure as failure:
        return failure
    except pytest.skip.Exception as skipped:
        pytest.fail(f"the contract did not run against {breakage!r}: {skipped}")
    finally:
        contract.finish()
        run.target.sandbox.app.breakage = "none"  # type: ignore[union-attr]
    return None


def test_every_breakage_has_a_case() -> None:
    assert set(CASES) == set(broken_server.BREAKAGES)
    assert len(CASES) >= 12


@pytest.mark.parametrize("breakage", sorted(CASES))
def test_breakage_is_caught_by_its_check(broken_run: ContractRun, breakage: str) -> None:
    probe, check_id = CASES[breakage]
    failure = _attempt(broken_run, breakage, PROBES[probe], "broken")
    assert failure is not None, f"{breakage} went unnoticed by {probe}"
    assert check_id in failure.check_ids, (
        f"{breakage} was caught by {failure.check_ids}, not {check_id}"
    )


@pytest.mark.parametrize("breakage", ROLE_BREAKAGES)
def test_a_role_breakage_fails_naming_the_keys_role_and_the_operation(
    broken_run: ContractRun, breakage: str
) -> None:
    probe, check_id = CASES[breakage]
    op = broken_run.spec.operation(probe.rsplit(" ", 1)[1])
    failure = _attempt(broken_run, breakage, PROBES[probe], "broken")
    assert failure is not None, f"{breakage} went unnoticed by {probe}"
    named = re.compile(
        rf"key '[^']+' \(role [^)]+\): {op.operation_id} \({op.method} {re.escape(op.path)}\)"
    )
    messages = [r.message for r in failure.results if r.check == check_id]
    assert messages and all(named.search(m) for m in messages), messages
    assert named.search(str(failure)), str(failure)


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_the_same_contracts_pass_against_the_unbroken_app(
    broken_run: ContractRun, probe: str
) -> None:
    assert _attempt(broken_run, "none", PROBES[probe], "unbroken") is None


@pytest.mark.parametrize(
    ("breakage", "selection", "check_id"),
    [
        ("total_off_by_one", "test_pagination and listTickets", "pagination_total"),
        ("no_www_authenticate", "test_auth and getTicket", "www_authenticate"),
    ],
)
def test_a_run_through_pytest_fails_and_names_the_check(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    breakage: str,
    selection: str,
    check_id: str,
) -> None:
    monkeypatch.setenv(broken_server.ENV, breakage)
    report = pytester.path / "report.json"
    result = pytester.runpytest_inprocess(
        "--opsmerge-target=sandbox",
        f"--opsmerge-app={APP}",
        f"--opsmerge-report={report}",
        "-k",
        selection,
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    data = json.loads(report.read_text())
    assert check_id in data["summary"]["failed_checks"]
    assert all(f["curl"].startswith("curl ") for f in data["failures"])
    result.stdout.fnmatch_lines([f"*{check_id}*"])

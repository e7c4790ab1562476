"""The plugin's options: command line over environment over ini file over default."""

from __future__ import annotations

import pytest

from opsmerge_contracts.plugin import SUITE_PATH

pytest_plugins = ["pytester"]

SHOW = """
from opsmerge_contracts.plugin import options_for

def test_show(pytestconfig):
    o = options_for(pytestconfig)
    print("OPTIONS", o.target, o.profile, o.budget, o.key, o.limited_key, o.report, o.run_suite)
"""
ENV_NAMES = (
    "OPSMERGE_TARGET",
    "OPSMERGE_API_KEY",
    "OPSMERGE_LIMITED_KEY",
    "OPSMERGE_PROFILE",
    "OPSMERGE_BUDGET",
    "OPSMERGE_REPORT",
    "OPSMERGE_SUITE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def shown(pytester: pytest.Pytester, *args: str) -> list[str]:
    pytester.makepyfile(test_show=SHOW)
    result = pytester.runpytest_inprocess(
        "-s", "--opsmerge-suite=no", "-p", "no:cacheprovider", *args
    )
    assert result.ret == 0, result.stdout.str()
    line = next(line for line in result.stdout.lines if "OPTIONS " in line)
    return line.split("OPTIONS ", 1)[1].split()


def test_defaults_target_the_sandbox_in_process_with_the_sandbox_profile(
    pytester: pytest.Pytester,
) -> None:
    assert shown(pytester) == ["sandbox", "sandbox", "None", "None", "None", "None", "False"]


def test_a_url_target_defaults_to_the_read_only_production_profile(
    pytester: pytest.Pytester,
) -> None:
    assert shown(pytester, "--opsmerge-target=http://127.0.0.1:4010")[:2] == [
        "http://127.0.0.1:4010",
        "production",
    ]


def test_each_option_comes_from_ini_env_or_command_line_in_that_order_of_strength(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("""
        [pytest]
        opsmerge_target = http://ini.example
        opsmerge_profile = staging
        opsmerge_budget = 10
        opsmerge_key = om_from_ini_0000
        opsmerge_limited_key = om_limited_ini
        opsmerge_report = ini-report
    """)
    assert shown(pytester)[:6] == [
        "http://ini.example",
        "staging",
        "10",
        "om_from_ini_0000",
        "om_limited_ini",
        "ini-report",
    ]
    monkeypatch.setenv("OPSMERGE_BUDGET", "20")
    monkeypatch.setenv("OPSMERGE_API_KEY", "om_from_env_0000")
    monkeypatch.setenv("OPSMERGE_PROFILE", "production")
    assert shown(pytester)[1:4] == ["production", "20", "om_from_env_0000"]
    assert shown(
        pytester,
        "--opsmerge-budget=30",
        "--opsmerge-key=om_from_cli_0000",
        "--opsmerge-profile=sandbox",
    )[1:4] == ["sandbox", "30", "om_from_cli_0000"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--opsmerge-profile=prod",), "--opsmerge-profile must be one of"),
        (("--opsmerge-target=ftp://x",), "must be 'sandbox' or an http(s) URL"),
        (("--opsmerge-budget=many",), "--opsmerge-budget must be a whole number"),
        (("--opsmerge-budget=-1",), "cannot be negative"),
    ],
)
def test_bad_values_are_usage_errors(
    pytester: pytest.Pytester, args: tuple[str, ...], message: str
) -> None:
    pytester.makepyfile(test_show=SHOW)
    result = pytester.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_the_built_in_suite_joins_a_run_only_when_a_target_is_set(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_mine="def test_mine(): pass")
    plain = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    assert "suite_test.py" not in plain.stdout.str()
    targeted = pytester.runpytest_inprocess(
        "--collect-only", "-q", "-p", "no:cacheprovider", "--opsmerge-target=sandbox"
    )
    out = targeted.stdout.str()
    assert "test_mine.py::test_mine" in out
    assert "suite_test.py::test_conforms[listTickets]" in out
    assert "suite_test.py::test_pagination[listTickets]" in out
    assert "suites/tickets.contract.yaml::ticket lifecycle" in out
    refused = pytester.runpytest_inprocess(
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "--opsmerge-target=sandbox",
        "--opsmerge-suite=no",
    )
    assert "suite_test.py" not in refused.stdout.str()
    assert SUITE_PATH.name == "suite_test.py"


def test_the_key_is_never_printed_in_the_report_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_mine(): pass")
    secret = "om_abcdSECRETSECRETSECRET"
    result = pytester.runpytest_inprocess(
        "--opsmerge-target=http://127.0.0.1:9",
        f"--opsmerge-key={secret}",
        "--opsmerge-suite=no",
        "-p",
        "no:cacheprovider",
    )
    out = result.stdout.str()
    assert "om_abcd…" in out and secret not in out

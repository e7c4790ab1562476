"""The harness's reports read well where people read them: an 80-column terminal and a browser.

A real pytest runs in a subprocess with COLUMNS=80 against a deliberately broken sandbox (its
answers labelled text/plain, so operations fail in several check groups); its terminal summary
and its HTML report are what is judged. The HTML is opened in Debian's chromium at a 1280-pixel
window and screenshotted into test-output/. An integrator's own tests that only use the
fixtures, and the `contracts` command, are run as a user runs them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import broken_server
import pytest

from opsmerge_contracts.checks import OBSERVED_ONLY, REGISTRY
from opsmerge_contracts.report import _SHORT

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
APP = f"{Path(broken_server.__file__)}:create_broken_app"
# contracts of a few operations, the rate limits and a scenario: nearly every check gets
# exchanges to judge, so the HTML matrix is as wide as a full run's
SELECTION = (
    "listTickets or getTicket or createTicket or deleteTicket or listClientAssets"
    " or rate_limit or lifecycle"
)


def _environ(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPSMERGE_", "PYTEST_"))}
    environ.update(extra)
    return environ


def _pytest(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=_environ(**env),
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run of the built-in suite against a sandbox whose answers are mislabelled."""
    where = tmp_path_factory.mktemp("broken-run")
    result = _pytest(
        where,
        "--opsmerge-target=sandbox",
        f"--opsmerge-app={APP}",
        "--opsmerge-report=report",
        "-k",
        SELECTION,
        COLUMNS="80",
        LINES="40",
        **{broken_server.ENV: "content_type_text"},
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    yield {
        "stdout": result.stdout,
        "json": json.loads((where / "report.json").read_text()),
        "html": where / "report.html",
    }


def _summary(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "OpsMerge contracts" in line)
    # pytest's own short summary follows ours; on CI (CI=... set) it is never trimmed
    end = next(
        (i for i, line in enumerate(lines) if i > start and "short test summary info" in line),
        len(lines),
    )
    return lines[start:end]


def test_the_terminal_summary_fits_80_columns_with_every_group_and_whole_operation_names(
    broken_run: dict[str, Any],
) -> None:
    summary = _summary(broken_run["stdout"])
    too_wide = [line for line in summary if len(line) > 80]
    assert not too_wide, "\n".join(too_wide)
    header = next(line for line in summary if line.split()[:1] == ["operation"])
    groups = {info.group for info in REGISTRY.values()}
    for group in groups:
        assert _SHORT.get(group, group)[:4] in header.split(), (group, header)
    failed_ops = {f["operation"] for f in broken_run["json"]["failures"] if f["operation"]}
    assert failed_ops
    text = "\n".join(summary)
    for op in failed_ops:
        assert re.search(rf"^\s*{op}\s", text, re.M), f"{op} is not shown whole:\n{text}"
    assert "…" not in text  # nothing cut with an ellipsis


def test_the_html_report_has_no_python_literals_and_no_sideways_scrolling_in_chromium(
    broken_run: dict[str, Any],
) -> None:
    from test_docs_browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser-deps` (or apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    checked = len(broken_run["json"]["summary"]["checks"])
    runnable = len(REGISTRY.keys() - OBSERVED_ONLY)  # those judge only the proxy's traffic
    assert checked >= runnable - 3, f"only {checked} checks ran: the matrix proves little"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(broken_run["html"].as_uri())
            OUTPUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT / "contracts-report.png"), full_page=True)
            matrix = page.locator("table.matrix")
            if matrix.count():
                matrix.screenshot(path=str(OUTPUT / "contracts-matrix.png"))
            sizes = page.evaluate(
                """() => {
                    const doc = document.documentElement;
                    const matrix = document.querySelector('table.matrix');
                    return {scroll: doc.scrollWidth, client: doc.clientWidth,
                            inner: window.innerWidth,
                            matrixRight: matrix ? matrix.getBoundingClientRect().right : null,
                            columns: matrix ? matrix.querySelectorAll('th.v').length : 0,
                            text: document.body.innerText};
                }"""
            )
        finally:
            browser.close()
    assert sizes["columns"] == checked
    assert sizes["scroll"] <= sizes["client"], sizes
    assert sizes["matrixRight"] is not None and sizes["matrixRight"] <= sizes["client"], sizes
    literals = re.findall(r"\b(None|True|False)\b", sizes["text"])
    assert not literals, literals


def test_a_users_own_tests_with_the_fixtures_print_no_empty_contracts_table(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_integration.py").write_text(
        "def test_who_am_i(opsmerge_client):\n"
        "    assert opsmerge_client.get('/auth/me').status_code == 200\n"
    )
    result = _pytest(tmp_path, "-W", "error::pytest.PytestAssertRewriteWarning", COLUMNS="80")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OpsMerge contracts" not in result.stdout, result.stdout
    assert "PytestAssertRewriteWarning" not in result.stdout + result.stderr


def test_the_contracts_command_prints_no_assert_rewrite_warnings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "contracts", "--target", "sandbox", "--",
         "-k", "rate_limit_headers"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_environ(COLUMNS="80"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PytestAssertRewriteWarning" not in result.stdout + result.stderr, result.stdout

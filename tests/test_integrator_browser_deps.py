"""`make test` without chromium: root (as in CI) installs it with apt; anyone else is told what to
install and how, and the run stops before apt is touched (it would fail on apt's lock)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from integrator_serve import ROOT
from make_targets import MAKE, run_target, tool_path

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _browser_deps(tmp_path: Path, user_id: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`make browser-deps` with a PATH that holds no chromium and an apt-get that only records
    its arguments, as the user `user_id`."""
    bin_dir, calls = tool_path(tmp_path)
    return run_target("browser-deps", bin_dir, user_id), calls


def test_without_chromium_a_user_who_is_not_root_is_told_what_to_install_and_apt_is_not_run(
    tmp_path: Path,
) -> None:
    done, calls = _browser_deps(tmp_path, "1000")
    assert done.returncode != 0
    assert "sudo apt-get install chromium" in done.stderr
    assert "tests/test_docs_browser.py" in done.stderr  # what needs it, and how to run the rest
    assert "lock" not in done.stderr.lower()
    assert not calls.exists()  # apt was never started


def test_without_chromium_root_installs_it_with_apt_as_ci_does(tmp_path: Path) -> None:
    done, calls = _browser_deps(tmp_path, "0")
    assert done.returncode == 0, done.stderr
    assert "installing Debian's chromium" in done.stdout
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq chromium"]


def test_with_chromium_on_the_path_nothing_is_installed_whoever_runs_it(tmp_path: Path) -> None:
    bin_dir, _ = tool_path(tmp_path, "chromium")
    for user_id in ("0", "1000"):
        done = run_target("browser-deps", bin_dir, user_id)
        assert done.returncode == 0 and done.stdout == done.stderr == ""


def test_the_makefile_takes_the_user_from_id_when_not_told() -> None:
    done = subprocess.run(
        [str(MAKE), "-s", "--eval", "uid-of-make: ; @echo $(USER_ID)", "uid-of-make"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and done.stdout.strip() == str(os.getuid())

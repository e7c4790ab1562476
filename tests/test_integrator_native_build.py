"""`make native` without a C compiler: root (as in CI) installs Debian's gcc and headers with apt;
anyone else is told what is missing, apt is not run, and the target still succeeds: the sandbox
runs its request path interpreted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from integrator_serve import ROOT
from make_targets import MAKE, run_target, tool_path

pytestmark = pytest.mark.skipif(
    MAKE is None or not (ROOT / ".venv" / ".installed").exists(),
    reason="needs make and the project's venv",
)


def _native(tmp_path: Path, user_id: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`make native` with a PATH that holds no C compiler and an apt-get that only records its
    arguments, as the user `user_id`."""
    bin_dir, calls = tool_path(tmp_path)
    return run_target("native", bin_dir, user_id, timeout=60), calls


def test_without_a_compiler_a_user_who_is_not_root_is_told_and_the_target_still_succeeds(
    tmp_path: Path,
) -> None:
    done, calls = _native(tmp_path, "1000")
    assert done.returncode == 0, done.stderr
    assert "sudo apt-get install gcc python3-dev" in done.stderr
    assert "runs interpreted" in done.stderr
    assert not calls.exists()  # apt was never started


def test_without_a_compiler_root_installs_gcc_and_the_headers_with_apt(tmp_path: Path) -> None:
    done, calls = _native(tmp_path, "0")
    assert done.returncode == 0, done.stderr
    assert "installing Debian's gcc and python3-dev" in done.stdout
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq gcc python3-dev"]
    assert "runs interpreted" in done.stderr  # this apt installed nothing: still none to use

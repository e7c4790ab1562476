"""The interpreter `make` builds `.venv` with: the system's python3 when it can make a venv (an
optimised distribution build, measured faster than pyenv's default one), and a venv made with
another interpreter than the chosen one is made again rather than kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from integrator_serve import ROOT

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _dry_run(venv: Path, *args: str) -> str:
    """What `make` would run to build the venv at `venv` (nothing is run)."""
    done = subprocess.run(
        [str(MAKE), "-n", f"VENV={venv}", f"{venv}/.installed", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _venv_made_with(tmp_path: Path, executable: str) -> Path:
    venv = tmp_path / "venv"
    venv.mkdir()
    home = Path(executable).parent
    (venv / "pyvenv.cfg").write_text(f"home = {home}\nexecutable = {executable}\n")
    return venv


def _system_python_qualifies() -> bool:
    check = "import sys, ensurepip; ensurepip.version(); sys.exit(sys.version_info < (3, 11))"
    try:
        return subprocess.run(["/usr/bin/python3", "-c", check], capture_output=True,
                              timeout=30, check=False).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _system_python_qualifies(),
                    reason="no /usr/bin/python3 of 3.11+ that can make a venv with pip")
def test_the_system_python3_makes_the_venv_when_it_can(tmp_path: Path) -> None:
    plan = _dry_run(tmp_path / "venv")
    assert f"/usr/bin/python3 -m venv {tmp_path / 'venv'}" in plan


def test_a_python_named_on_the_command_line_makes_the_venv(tmp_path: Path) -> None:
    plan = _dry_run(tmp_path / "venv", f"PYTHON={sys.executable}")
    assert f"{sys.executable} -m venv {tmp_path / 'venv'}" in plan


def test_a_venv_made_with_another_interpreter_is_made_again(tmp_path: Path) -> None:
    venv = _venv_made_with(tmp_path, "/bin/sh")  # any existing file but the chosen python
    plan = _dry_run(venv, f"PYTHON={sys.executable}")
    assert f"rm -rf {venv}" in plan.splitlines()


def test_a_venv_made_with_the_chosen_interpreter_is_kept(tmp_path: Path) -> None:
    venv = _venv_made_with(tmp_path, os.path.realpath(sys.executable))
    plan = _dry_run(venv, f"PYTHON={sys.executable}")
    assert f"rm -rf {venv}" not in plan.splitlines()
    assert f"{sys.executable} -m venv {venv}" in plan  # still built: its stamp is missing

"""The built-in suite runs however the package was installed, a project's own `.venv` included.

pytest silently drops a command-line argument that lies inside a virtualenv, and the plugin used
to add the suite as one: with the package installed in the project's `.venv` (the common layout),
`pytest --opsmerge-target=...` ran only the user's tests. The package is installed here, not
editable, into a scratch project's `.venv`, and that project's pytest run is read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    venv = tmp_path / ".venv"
    (venv / "lib").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")  # what makes pytest see a virtualenv
    site = venv / "lib" / "site-packages"
    # built from a copy, as a user's pip builds a release: nothing is left in this checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("sandbox", "contracts", "fixtures"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_mine.py").write_text("def test_mine():\n    pass\n")
    # the installed copy, not this checkout: the checkout's own plugin registration is turned off
    env = {**os.environ, "PYTHONPATH": str(site)}
    return tmp_path, env


def _pytest(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:opsmerge",
         "-p", "opsmerge_contracts.plugin", "--opsmerge-target=sandbox", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_suite_in_a_projects_venv_runs_beside_the_users_tests(tmp_path: Path) -> None:
    project, env = _project(tmp_path)
    done = _pytest(project, env, "-k", "test_mine or (test_conforms and getAgent)")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert ".venv/lib/site-packages/opsmerge_contracts/suite_test.py" in _ids(project, env)
    assert "passed" in output and "1 passed" not in output, output[-2000:]
    # a selection that leaves no contract says so
    none = _pytest(project, env, "-k", "test_mine")
    assert "no contract was selected against sandbox" in none.stdout + none.stderr


def _ids(project: Path, env: dict[str, str]) -> str:
    listed = _pytest(project, env, "--collect-only", "-k", "getAgent")
    return listed.stdout

"""`make test` without redis-server: root (as in CI) installs Debian's package with apt; anyone
else is told what to install, and the run stops before apt is touched."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from integrator_serve import ROOT

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _redis_deps(bin_dir: Path, user_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MAKE), "-s", "redis-deps", f"USER_ID={user_id}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": str(bin_dir)},
    )


def _fake_apt(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH without redis-server, whose apt-get only records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "apt-get").chmod(0o755)
    return bin_dir, calls


def test_without_redis_a_user_who_is_not_root_is_told_what_to_install(tmp_path: Path) -> None:
    bin_dir, calls = _fake_apt(tmp_path)
    done = _redis_deps(bin_dir, "1000")
    assert done.returncode != 0
    assert "sudo apt-get install redis-server" in done.stderr
    assert "tests/test_shared_state_" in done.stderr
    assert not calls.exists()


def test_without_redis_root_installs_it_with_apt(tmp_path: Path) -> None:
    bin_dir, calls = _fake_apt(tmp_path)
    done = _redis_deps(bin_dir, "0")
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq redis-server"]


def test_with_redis_on_the_path_nothing_is_installed(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").write_text("#!/bin/sh\n")
    (bin_dir / "redis-server").chmod(0o755)
    for user_id in ("0", "1000"):
        done = _redis_deps(bin_dir, user_id)
        assert done.returncode == 0 and done.stdout == done.stderr == ""


def test_make_test_and_make_bench_need_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test:", "bench:"):
        line = next(ln for ln in makefile.splitlines() if ln.startswith(target))
        assert "redis-deps" in line

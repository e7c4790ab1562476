"""`make test` without redis-server: root (as in CI) installs Debian's package with apt; anyone
else is told what to install, and the run stops before apt is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from integrator_serve import ROOT
from make_targets import MAKE, run_target, tool_path

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def test_without_redis_a_user_who_is_not_root_is_told_what_to_install(tmp_path: Path) -> None:
    bin_dir, calls = tool_path(tmp_path)
    done = run_target("redis-deps", bin_dir, "1000")
    assert done.returncode != 0
    assert "sudo apt-get install redis-server" in done.stderr
    assert "tests/test_shared_state_" in done.stderr
    assert not calls.exists()


def test_without_redis_root_installs_it_with_apt(tmp_path: Path) -> None:
    bin_dir, calls = tool_path(tmp_path)
    done = run_target("redis-deps", bin_dir, "0")
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq redis-server"]


def test_with_redis_on_the_path_nothing_is_installed(tmp_path: Path) -> None:
    bin_dir, _ = tool_path(tmp_path, "redis-server")
    for user_id in ("0", "1000"):
        done = run_target("redis-deps", bin_dir, user_id)
        assert done.returncode == 0 and done.stdout == done.stderr == ""


def test_make_test_and_make_bench_need_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test:", "bench:"):
        line = next(ln for ln in makefile.splitlines() if ln.startswith(target))
        assert "redis-deps" in line

"""`serve --state` and `--workers`: what starts, and what is refused with a reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_several_workers_without_shared_state_are_refused_and_told_about_state() -> None:
    done = _serve("--workers", "2")
    assert done.returncode == 2
    assert "--state redis://" in done.stderr


def test_a_state_url_that_is_not_redis_is_refused_naming_it() -> None:
    done = _serve("--state", "http://127.0.0.1:6379/0")
    assert done.returncode == 2
    assert "redis://HOST:PORT/DB" in done.stderr


def test_an_unreachable_store_stops_the_start_in_one_line() -> None:
    port = free_port()  # nothing listens there
    done = _serve("--state", f"redis://:secret@127.0.0.1:{port}/0")
    assert done.returncode == 2
    assert f"the state store at redis://:***@127.0.0.1:{port}/0 is unreachable" in done.stderr
    assert "secret" not in done.stderr  # the password is never printed


def test_state_and_data_dir_exclude_each_other(tmp_path: Path) -> None:
    done = _serve("--state", "redis://127.0.0.1:1/0", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert "exclude each other" in done.stderr

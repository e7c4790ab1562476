"""Running a Makefile target as a given user on a PATH the test controls: an apt-get that only
records its arguments, and any tools the test says are installed. The Makefile's targets that
install Debian packages (chromium, redis-server, a C compiler) are judged this way."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from integrator_serve import ROOT

MAKE = shutil.which("make")


def tool_path(tmp_path: Path, *installed: str) -> tuple[Path, Path]:
    """(a PATH directory, the file its apt-get records calls in): the directory holds the fake
    apt-get and an empty script for each `installed` tool, nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "apt-get").chmod(0o755)
    for tool in installed:
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    return bin_dir, calls


def run_target(
    target: str, bin_dir: Path, user_id: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`make -s target` in the project, as the user `user_id`, with `bin_dir` as the whole PATH."""
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "-s", target, f"USER_ID={user_id}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": str(bin_dir)},
    )

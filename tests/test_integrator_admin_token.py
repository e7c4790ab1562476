"""A fixed admin token made easy: `make serve ADMIN_TOKEN=...`, the environment variable, or one
kept in the data directory; the banner says where it came from and never prints a chosen one."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import httpx
from integrator_serve import ROOT, clean_env, free_port, run_serve, serving, start

TOKEN_LINE = re.compile(r"X-Sandbox-Admin-Token: (\S+)")


def _accepted(url: str, token: str) -> bool:
    r = httpx.get(f"{url}/_sandbox/workspaces", headers={"X-Sandbox-Admin-Token": token})
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_two_starts_with_the_same_data_dir_use_the_same_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving("--data-dir", str(data)) as first:
        kept = (data / "admin-token").read_text().strip()
        assert _mode(data / "admin-token") == 0o600
        assert TOKEN_LINE.search(first.stderr)[1] == kept  # type: ignore[index]
        assert f"made up now and kept in {data / 'admin-token'}" in first.stderr
        assert _accepted(first.url, kept)
    with serving("--data-dir", str(data)) as second:
        assert (data / "admin-token").read_text().strip() == kept
        assert TOKEN_LINE.search(second.stderr)[1] == kept  # type: ignore[index]
        assert f"kept in {data / 'admin-token'}" in second.stderr
        assert "made up now" not in second.stderr
        assert _accepted(second.url, kept)


def test_without_a_data_dir_or_a_given_token_each_start_makes_up_a_new_one() -> None:
    tokens = []
    for _ in range(2):
        with serving() as served:
            tokens.append(TOKEN_LINE.search(served.stderr)[1])  # type: ignore[index]
            assert "made up for this run" in served.stderr and "ADMIN_TOKEN=" in served.stderr
            assert _accepted(served.url, tokens[-1])
    assert tokens[0] != tokens[1]


def test_a_given_token_wins_over_the_kept_one_and_is_never_printed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").write_text("kept-token-123\n")
    (data / "admin-token").chmod(0o600)
    given = "given-token-456"
    with serving("--data-dir", str(data), "--admin-token", given) as by_option:
        assert _accepted(by_option.url, given) and not _accepted(by_option.url, "kept-token-123")
        assert given not in by_option.stderr and "--admin-token" in by_option.stderr
    env = clean_env(OPSMERGE_SANDBOX_ADMIN_TOKEN=given)
    with serving("--data-dir", str(data), env=env) as by_env:
        assert _accepted(by_env.url, given) and not _accepted(by_env.url, "kept-token-123")
        assert given not in by_env.stderr and "OPSMERGE_SANDBOX_ADMIN_TOKEN" in by_env.stderr
    assert (data / "admin-token").read_text() == "kept-token-123\n"


def test_a_kept_token_file_others_can_read_is_made_private_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").write_text("opened-up-token\n")
    (data / "admin-token").chmod(0o644)
    with serving("--data-dir", str(data)) as served:
        assert _accepted(served.url, "opened-up-token")
    assert _mode(data / "admin-token") == 0o600


def test_an_unusable_token_stops_serve_in_one_line_that_does_not_repeat_it(tmp_path: Path) -> None:
    done = run_serve("--admin-token", "two words")
    assert done.returncode == 2
    assert "--admin-token" in done.stderr and "visible ASCII" in done.stderr
    assert "two words" not in done.stderr and "Sandbox API keys" not in done.stderr
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").write_text("\n")
    done = run_serve("--data-dir", str(data))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert f"{data / 'admin-token'}: the kept admin token is not usable: it is empty" in done.stderr


def test_make_serve_admin_token_reaches_the_sandbox_without_being_echoed() -> None:
    token = "make-serve-token-789"
    port = free_port()
    # -o: the venv counts as up to date (a test must not reinstall it); PORT: not 4010
    make = ["make", "-o", ".venv/.installed", "serve", f"ADMIN_TOKEN={token}", f"PORT={port}"]
    shown = subprocess.run([*make[:1], "-n", *make[1:]], cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    command = [line for line in shown.stdout.splitlines() if "opsmerge-sandbox serve" in line]
    assert command and f"--port {port}" in command[0]
    assert token not in shown.stdout  # passed in the environment: not in argv, not echoed
    served = start(make, port)
    try:
        served.wait_ready()
        assert _accepted(served.url, token)
        assert token not in served.stdout + served.stderr
        assert "OPSMERGE_SANDBOX_ADMIN_TOKEN" in served.stderr
    finally:
        served.stop()

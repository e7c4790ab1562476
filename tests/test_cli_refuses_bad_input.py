"""Inputs the CLI and control API used to accept and should refuse (and a quiet broken pipe)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.cli import build_parser
from tests.conftest import ADMIN, make_app


@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_serve_refuses_a_rate_limit_that_is_not_a_positive_whole_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "--rate-limit", value])
    assert exc.value.code == 2
    assert "--rate-limit" in capsys.readouterr().err


def test_every_option_of_every_command_has_help_text() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    missing = []
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.help is None and action.dest not in ("help",):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
            if isinstance(getattr(action, "choices", None), dict):
                for inner_name, inner in action.choices.items():
                    missing += [
                        f"{name} {inner_name} {'/'.join(a.option_strings) or a.dest}"
                        for a in inner._actions
                        if a.help is None and a.dest != "help"
                    ]
    assert missing == []


def test_minting_a_key_with_a_scope_no_operation_uses_is_a_400_naming_it() -> None:
    with TestClient(make_app()) as client:
        before = client.get("/_sandbox/keys", headers=ADMIN).json()["data"]["items"]
        r = client.post("/_sandbox/keys", headers=ADMIN,
                        json={"name": "typo", "scopes": ["agents:read", "zzz:read"]})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert "zzz:read" in error["message"]
        assert error["details"][0]["field"] == "scopes"
        after = client.get("/_sandbox/keys", headers=ADMIN).json()["data"]["items"]
        assert len(after) == len(before)


def test_fixtures_dump_into_a_pipe_that_closes_early_ends_without_a_traceback() -> None:
    dump = subprocess.Popen(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "fixtures", "dump"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert dump.stdout is not None
    dump.stdout.read(100)  # like `| head -c 100`
    dump.stdout.close()
    _, err = dump.communicate(timeout=120)
    assert dump.returncode == 0
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_serve_on_a_port_in_use_says_so_in_one_line_before_any_banner() -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "opsmerge_sandbox.cli", "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        taken.close()
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert str(port) in lines[0] and "--port" in lines[0]
    assert "sbx_admin_" not in done.stderr + done.stdout  # no token a running sandbox rejects
    assert "Sandbox API keys" not in done.stderr + done.stdout

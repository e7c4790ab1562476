"""compose.yaml: the documented way to run a shared sandbox (checked as data: Docker is not on
the test machines)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_several_workers_on_redis_with_append_only_persistence() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    sandbox, redis = compose["services"]["sandbox"], compose["services"]["redis"]
    env = sandbox["environment"]
    assert env["OPSMERGE_SANDBOX_STATE"] == "redis://redis:6379/0"
    assert int(env["OPSMERGE_SANDBOX_WORKERS"]) > 1
    assert "?" in env["OPSMERGE_SANDBOX_ADMIN_TOKEN"]  # required: replicas must share one token
    assert sandbox["depends_on"]["redis"]["condition"] == "service_healthy"
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert "/healthz" in " ".join(sandbox["healthcheck"]["test"])
    assert "ping" in redis["healthcheck"]["test"]


def test_the_environment_names_compose_uses_are_the_commands_own() -> None:
    read = (ROOT / "sandbox" / "cli.py").read_text() + (
        ROOT / "sandbox" / "admin_token.py"
    ).read_text()
    for name in ("STATE", "WORKERS", "ADMIN_TOKEN"):
        assert f"OPSMERGE_SANDBOX_{name}" in read

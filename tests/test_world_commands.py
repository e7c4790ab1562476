"""`opsmerge-sandbox keys` and `fixtures dump`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from opsmerge_sandbox.spec import load_spec
from opsmerge_sandbox.world import build_world, load_recipe


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsmerge_sandbox.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


@pytest.fixture(scope="module")
def keys() -> list[dict[str, object]]:
    return json.loads(_cli("keys", "--json").stdout)


def test_keys_json_lists_every_recipe_key_with_its_fields(keys: list[dict[str, object]]) -> None:
    recipe = load_recipe()
    assert [k["key"] for k in keys] == [k.key for k in recipe.keys]
    for row in keys:
        assert set(row) == {"key", "name", "role", "scopes", "status", "rate_limit"}
        assert isinstance(row["rate_limit"], int)


def test_keys_json_reports_roles_scopes_limits_and_statuses(keys: list[dict[str, object]]) -> None:
    by_key = {k.id: row for k, row in zip(load_recipe().keys, keys, strict=True)}
    assert by_key["key_ownerfull"]["role"] == "Owner"
    assert by_key["key_ownerfull"]["scopes"] == "full"
    assert by_key["key_agentsread"]["scopes"] == ["agents:read"]
    assert by_key["key_billingfull"]["role"] == "Billing clerk"
    assert by_key["key_slow"]["rate_limit"] == 5
    assert by_key["key_demo"]["rate_limit"] == 300
    assert by_key["key_demo"]["status"] == "active"
    assert by_key["key_expired"]["status"] == "expired"
    assert by_key["key_revoked"]["status"] == "revoked"
    assert by_key["key_former"]["status"] == "owner_deactivated"


def test_keys_table_shows_whole_keys() -> None:
    out = _cli("keys").stdout
    for key in load_recipe().keys:
        assert key.key in out


def test_fixtures_dump_is_the_built_world_as_sorted_json() -> None:
    out = _cli("fixtures", "dump", "--seed", "99").stdout
    world = build_world(load_spec(), load_recipe("default", seed=99))
    assert json.loads(out) == world
    assert (
        out == json.dumps(world, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    )


def test_unknown_recipe_exits_2_with_a_message() -> None:
    result = _cli("keys", "--recipe", "nope", check=False)
    assert result.returncode == 2
    assert "unknown recipe 'nope'" in result.stderr
    assert result.stdout == ""

"""Recipes load by name or path, fail clearly, and keys report the right status."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsmerge_sandbox.world.recipe import KeySpec, RecipeError, key_status, load_recipe

EPOCH = datetime(2026, 11, 1, 9, tzinfo=UTC)


def _key(**over: object) -> KeySpec:
    base = dict(id="key_x", key="om_x", name="x", user_id="usr_a", access="full", scopes=(),
                expires_at=None, revoked=False, rate_limit=None)
    base.update(over)
    return KeySpec(**base)  # type: ignore[arg-type]


def test_default_recipe_loads_by_name_with_tz_aware_epoch() -> None:
    recipe = load_recipe()
    assert recipe.name == "default"
    assert recipe.epoch.tzinfo is not None and recipe.epoch.utcoffset().total_seconds() == 0
    assert recipe.organisation == {"id": "org_northwind", "name": "Northwind IT Services Ltd",
                                   "region": "eu", "domain": "northwind-it.co.uk"}
    assert recipe.rate_limit == 300


def test_seed_argument_overrides_the_recipe_seed() -> None:
    assert load_recipe("default", seed=7).seed == 7
    assert load_recipe("default").seed != 7


def test_large_recipe_extends_default_with_its_named_records_and_keys() -> None:
    default, large = load_recipe("default"), load_recipe("large")
    assert large.name == "large"
    assert large.counts["agents"] >= 100_000
    assert large.keys == default.keys
    assert large.records == default.records
    assert large.counts["checks"] > default.counts["checks"]


def test_recipe_loads_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "seed: 5\nepoch: 2026-01-01T00:00:00Z\n"
        "organisation: {id: org_t, name: T, region: us}\ncounts: {clients: 3}\n"
    )
    recipe = load_recipe(str(path))
    assert (recipe.name, recipe.seed, recipe.counts) == ("tiny", 5, {"clients": 3})
    assert recipe.epoch == datetime(2026, 1, 1, tzinfo=UTC)
    assert recipe.keys == ()


def test_recipe_extends_a_sibling_file(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "seed: 5\nepoch: '2026-01-01T00:00:00Z'\norganisation: {id: o, name: O, region: eu}\n"
        "counts: {clients: 3, agents: 4}\n"
    )
    (tmp_path / "more.yaml").write_text("extends: base.yaml\ncounts: {agents: 9}\n")
    recipe = load_recipe(str(tmp_path / "more.yaml"))
    assert recipe.counts == {"clients": 3, "agents": 9}


def test_unknown_recipe_name_lists_the_known_ones() -> None:
    with pytest.raises(RecipeError, match=r"unknown recipe 'nope'.*default.*large"):
        load_recipe("nope")


def test_missing_recipe_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(str(tmp_path / "absent.yaml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just a list\n", "mapping at the top level"),
        ("seed: 1\norganisation: {id: o, name: O, region: eu}\n", "missing 'epoch'"),
        ("seed: 1\nepoch: soon\norganisation: {id: o, name: O, region: eu}\n", "ISO 8601"),
        ("seed: 1\nepoch: '2026-01-01T00:00:00Z'\norganisation: {id: o, name: O, region: eu}\n"
         "counts: {clients: -1}\n", "counts"),
        ("seed: 1\nepoch: '2026-01-01T00:00:00Z'\norganisation: {id: o, name: O, region: eu}\n"
         "keys: [{id: key_a, key: om_a, name: a, user_id: usr_a, access: root}]\n", "access"),
        ("seed: 1\nepoch: '2026-01-01T00:00:00Z'\norganisation: {id: o, name: O, region: eu}\n"
         "keys: [{id: key_a, key: om_a, name: a, user_id: usr_a, access: full, "
         "scopes: ['agents:read']}]\n", "full-access key takes no scopes"),
        ("seed: 1\nepoch: '2026-01-01T00:00:00Z'\norganisation: {id: o, name: O, region: eu}\n"
         "records: {clients: [{id: cli_a}, {id: cli_a}]}\n", "repeats an id"),
        ("seed: [1\n", "not valid YAML"),
    ],
)
def test_malformed_recipes_are_refused_with_the_reason(tmp_path: Path, text: str,
                                                       message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(path))


def test_recipe_that_extends_itself_is_refused(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(RecipeError, match="extends itself"):
        load_recipe(str(tmp_path / "loop.yaml"))


def test_key_status_precedence_revoked_then_expired_then_owner() -> None:
    users = {"usr_a": {"status": "active"}, "usr_gone": {"status": "deactivated"}}
    past = "2026-01-01T00:00:00Z"
    assert key_status(_key(), users, EPOCH) == "active"
    assert key_status(_key(user_id="usr_gone"), users, EPOCH) == "owner_deactivated"
    assert key_status(_key(user_id="usr_gone", expires_at=past), users, EPOCH) == "expired"
    assert key_status(_key(user_id="usr_gone", expires_at=past, revoked=True), users,
                      EPOCH) == "revoked"
    assert key_status(_key(expires_at="2027-01-01T00:00:00Z"), users, EPOCH) == "active"


def test_default_keys_cover_every_status_and_access_mode() -> None:
    recipe = load_recipe()
    users = {u["id"]: u for u in recipe.records["users"]}
    statuses = {k.id: key_status(k, users, EPOCH) for k in recipe.keys}
    assert set(statuses.values()) == {"active", "expired", "revoked", "owner_deactivated"}
    custom = [k for k in recipe.keys if k.access == "custom"]
    assert [k.scopes for k in custom] == [("agents:read",)]
    assert any(k.rate_limit == 5 for k in recipe.keys)
    assert all(k.key.startswith("om_") and len(k.key) >= 30 for k in recipe.keys)
    assert len({k.key[:12] for k in recipe.keys}) == len(recipe.keys)  # prefixes tell keys apart
    owners = {k.user_id for k in recipe.keys if k.access == "full"}
    assert {"usr_owner", "usr_admin", "usr_tech", "usr_readonly", "usr_billing"} <= owners


def test_default_roles_match_the_documented_defaults() -> None:
    roles = {r["id"]: r for r in load_recipe().records["roles"]}
    assert {r for r, v in roles.items() if v["builtin"]} == {
        "rol_owner", "rol_admin", "rol_technician", "rol_readonly"}
    tech = set(roles["rol_technician"]["permissions"])
    assert "*:read" in tech
    assert not {p for p in tech if p.split(":")[0] in
                ("psa_billing", "settings", "users", "roles") and not p.endswith(":read")}
    assert roles["rol_readonly"]["permissions"] == ["*:read"]
    assert "psa_billing:write" in roles["rol_billing"]["permissions"]

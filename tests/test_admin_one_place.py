"""The control API decides each thing in one place: the default owner of a minted key comes from
the recipe, the workspace-name rule and its message are the pipeline's, a fault request is
validated once, admin.yaml is read once, and every key is minted by the key ring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import opsmerge_sandbox.control_api as control_api
import opsmerge_sandbox.faults.control_endpoints as control_endpoints
from opsmerge_sandbox.pipeline.authenticate import KeyRing
from opsmerge_sandbox.pipeline.workspace_name import RULE
from opsmerge_sandbox.world import load_recipe
from tests.conftest import ADMIN, LoopbackServer, bearer, make_app

SMALL = Path(__file__).resolve().parent / "contracts_small_recipe.yaml"


def _recipe_with_keys(tmp_path: Path, keys: list[dict[str, Any]]) -> str:
    path = tmp_path / "reordered.yaml"
    path.write_text(yaml.safe_dump({"extends": str(SMALL), "name": "reordered", "keys": keys}))
    return str(path)


def _key_dicts(order: list[str]) -> list[dict[str, Any]]:
    by_id = {k.id: k for k in load_recipe(str(SMALL)).keys}
    out = []
    for key_id in order:
        k = by_id[key_id]
        out.append({"id": k.id, "key": k.key, "name": k.name, "user_id": k.user_id,
                    "access": k.access, **({"scopes": list(k.scopes)} if k.scopes else {})})
    return out


def _full_keys_by_owner() -> list[str]:
    """Ids of usable full-access keys with distinct owners, in recipe order."""
    seen: dict[str, str] = {}
    for k in load_recipe(str(SMALL)).keys:
        if k.access == "full" and not k.revoked and k.expires_at is None and k.rate_limit is None:
            seen.setdefault(k.user_id, k.id)
    return list(seen.values())


@pytest.fixture()
def reordered(tmp_path: Path) -> Iterator[tuple[LoopbackServer, str]]:
    """A sandbox whose recipe lists a second user's full-access key first."""
    first, second = _full_keys_by_owner()[:2]
    owner_of_second = next(k.user_id for k in load_recipe(str(SMALL)).keys if k.id == second)
    with LoopbackServer(make_app(recipe=_recipe_with_keys(tmp_path, _key_dicts([second, first])))
                        ) as server:
        yield server, owner_of_second


def test_a_key_minted_without_an_owner_belongs_to_the_recipes_first_full_access_key_owner(
    reordered: tuple[LoopbackServer, str],
) -> None:
    server, expected = reordered
    r = httpx.post(f"{server.url}/_sandbox/keys", json={"name": "ci"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    minted = r.json()["data"]
    assert minted["user_id"] == expected
    me = httpx.get(f"{server.url}/api/v1/auth/me", headers=bearer(minted["key"]))
    assert me.status_code == 200, me.text


def test_without_a_working_full_access_key_minting_needs_an_owner(tmp_path: Path) -> None:
    custom = [k.id for k in load_recipe(str(SMALL)).keys if k.access == "custom"]
    app = make_app(recipe=_recipe_with_keys(tmp_path, _key_dicts(custom)))
    with LoopbackServer(app) as server:
        r = httpx.post(f"{server.url}/_sandbox/keys", json={"name": "ci"}, headers=ADMIN)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"][0]["field"] == "user_id"
        assert len(httpx.get(f"{server.url}/_sandbox/keys", headers=ADMIN).json()["data"]
                   ["items"]) == len(custom)  # nothing was minted


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(make_app()) as s:
        yield s


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "location", "field"),
    [
        ("GET", "/_sandbox/faults?workspace=-bad", {}, "query", "workspace"),
        ("GET", "/_sandbox/faults", {"headers": {"X-Sandbox-Workspace": "-bad"}}, "header",
         "X-Sandbox-Workspace"),
        ("POST", "/_sandbox/workspaces/-bad/reset", {}, "path", "name"),
        ("GET", "/_sandbox/requests?workspace=-bad", {}, "query", "workspace"),
    ],
)
def test_a_bad_workspace_name_gets_the_one_rule_wherever_it_is_given(
    server: LoopbackServer, method: str, path: str, kwargs: dict[str, Any], location: str,
    field: str,
) -> None:
    headers = {**ADMIN, **kwargs.get("headers", {})}
    r = httpx.request(method, server.url + path, headers=headers)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == ("HEADER_INVALID" if location == "header" else "VALIDATION_ERROR")
    assert error["message"] == f"{field} must be {RULE}."
    detail = {"location": location, "field": field, "message": f"must be {RULE}"}
    assert error["details"] == [detail]


def test_a_fault_request_is_validated_against_its_schema_once(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[Any] = []

    def counting(original: Any) -> Any:
        def details(validator: Any, data: Any, *args: Any) -> Any:
            checked.append(data)
            return original(validator, data, *args)

        return details

    monkeypatch.setattr(control_api, "schema_details", counting(control_api.schema_details))
    monkeypatch.setattr(
        control_endpoints, "schema_details", counting(control_endpoints.schema_details)
    )
    body = {"name": "once", "match": {"workspace": "once"}, "effect": {"status": 503}}
    r = httpx.post(f"{server.url}/_sandbox/faults", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert checked == [body]
    bad = httpx.post(f"{server.url}/_sandbox/faults", json={"times": "x"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "times"
    httpx.delete(f"{server.url}/_sandbox/faults", headers=ADMIN)


def test_admin_yaml_is_read_once_for_the_control_api_and_the_fault_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[Path] = []
    original = control_api.load_yaml

    def counting(path: Path) -> Any:
        reads.append(Path(path))
        return original(path)

    monkeypatch.setattr(control_api, "load_yaml", counting)
    monkeypatch.setattr(control_endpoints, "load_yaml", counting, raising=False)
    control_api.admin_schemas.cache_clear()
    control_api.admin_validator.cache_clear()
    try:
        with LoopbackServer(make_app()) as s:
            body = {"scenario": "rate-limit-storm", "params": {"every": 2}}
            assert httpx.post(f"{s.url}/_sandbox/faults", json=body, headers=ADMIN
                              ).status_code == 201
            assert httpx.post(f"{s.url}/_sandbox/keys", json={}, headers=ADMIN).status_code == 201
    finally:
        control_api.admin_schemas.cache_clear()
        control_api.admin_validator.cache_clear()
    assert reads.count(control_api.ADMIN_SPEC_PATH) == 1


def test_the_key_ring_mints_a_fixed_secret_with_the_access_its_scopes_imply() -> None:
    ring = KeyRing([])
    common: dict[str, Any] = dict(name="n", user_id="u", expires_at=None, rate_limit=None,
                                  created_at="2026-01-01T00:00:00Z")
    fixed = ring.mint(scopes=[], secret="om_fixed_secret_0123456789", **common)
    assert (fixed.secret, fixed.access, fixed.scopes) == (
        "om_fixed_secret_0123456789", "custom", frozenset())
    assert ring.lookup("om_fixed_secret_0123456789") is fixed
    random_full = ring.mint(scopes=None, **common)
    assert random_full.access == "full" and random_full.secret.startswith("om_sbx_")
    assert random_full.secret != fixed.secret and ring.by_id(random_full.id) is random_full

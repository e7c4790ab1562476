"""Behaviour comes from the spec: a family added to it is seeded and served with no code change."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from litestar.testing import TestClient

from opsmerge_sandbox.spec import SPEC_PATH
from tests.conftest import bearer, key_named, make_app


def _with_warranties(tmp_path: Path) -> tuple[Path, Path]:
    raw = yaml.safe_load(SPEC_PATH.read_text())
    schemas = raw["components"]["schemas"]
    schemas["WarrantyWritable"] = {
        "type": "object",
        "properties": {
            "agent_id": {"type": "string", "x-ref": "agents"},
            "vendor": {
                "type": "string",
                "minLength": 1,
                "x-faker": {"choices": ["Dell", "Lenovo", "HP"]},
            },
            "expires_on": {"type": "string", "format": "date", "x-time": {"ahead_days": 700}},
        },
    }
    schemas["Warranty"] = {
        "type": "object",
        "allOf": [{"$ref": "#/components/schemas/WarrantyWritable"}],
        "properties": {
            "id": {"type": "string", "readOnly": True, "pattern": "^wty_[0-9a-z]+$"},
            "created_at": {"type": "string", "format": "date-time", "readOnly": True},
            "updated_at": {"type": "string", "format": "date-time", "readOnly": True},
        },
        "required": ["id", "agent_id", "vendor", "expires_on", "created_at", "updated_at"],
        "unevaluatedProperties": False,
        "x-collection": {"name": "warranties", "id-prefix": "wty"},
    }
    schemas["WarrantyCreate"] = {
        "type": "object",
        "allOf": [{"$ref": "#/components/schemas/WarrantyWritable"}],
        "required": ["agent_id", "vendor", "expires_on"],
        "unevaluatedProperties": False,
    }
    env = {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"$ref": "#/components/schemas/Warranty"}},
    }
    page = copy.deepcopy(schemas["AgentPage"])
    page["properties"]["data"] = {"$ref": "#/components/schemas/WarrantyPageData"}
    data = copy.deepcopy(schemas["AgentPageData"])
    data["properties"]["items"]["items"] = {"$ref": "#/components/schemas/Warranty"}
    schemas["WarrantyEnvelope"], schemas["WarrantyPage"] = env, page
    schemas["WarrantyPageData"] = data
    list_op = copy.deepcopy(raw["paths"]["/agents"]["get"])
    list_op.update(
        operationId="listWarranties",
        summary="List warranties",
        tags=["Agents"],
        security=[{"bearerAuth": ["agents:read"]}],
        **{"x-sandbox": {"kind": "list", "collection": "warranties"}},
    )
    list_op["parameters"] = [p for p in list_op["parameters"] if "$ref" in p] + [
        {
            "name": "sort",
            "in": "query",
            "schema": {"type": "string", "enum": ["created_at"], "default": "created_at"},
        },
        {"name": "vendor", "in": "query", "schema": {"type": "string"}},
    ]
    list_op["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/WarrantyPage"
    }
    create_op = copy.deepcopy(raw["paths"]["/tickets"]["post"])
    create_op.update(
        operationId="createWarranty",
        summary="Create a warranty",
        tags=["Agents"],
        security=[{"bearerAuth": ["agents:write"]}],
        **{"x-sandbox": {"kind": "create", "collection": "warranties"}},
    )
    create_op["requestBody"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/WarrantyCreate"
    }
    create_op["responses"]["201"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/WarrantyEnvelope"
    }
    raw["paths"]["/warranties"] = {"get": list_op, "post": create_op}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    from opsmerge_sandbox.world.recipe import fixtures_dirs

    recipe = yaml.safe_load((fixtures_dirs()[0] / "default.yaml").read_text())
    recipe.setdefault("counts", {})["warranties"] = 25
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return spec_path, recipe_path


def test_a_family_added_to_the_spec_is_seeded_served_and_writable(tmp_path: Path) -> None:
    spec_path, recipe_path = _with_warranties(tmp_path)
    app = make_app(spec_path=spec_path, recipe=str(recipe_path))
    h = bearer(key_named(app, "Owner - full"))
    with TestClient(app, base_url="http://sandbox.local") as c:
        page = c.get("/api/v1/warranties?per_page=100", headers=h)
        assert page.status_code == 200, page.text
        data = page.json()["data"]
        assert data["total"] == 25
        assert all(
            w["id"].startswith("wty_") and w["vendor"] in ("Dell", "Lenovo", "HP")
            for w in data["items"]
        )
        dell = c.get("/api/v1/warranties?vendor=Dell&per_page=100", headers=h).json()["data"]
        assert dell["total"] == sum(1 for w in data["items"] if w["vendor"] == "Dell")
        made = c.post(
            "/api/v1/warranties",
            headers=h,
            json={"agent_id": "agt_acmesrv01", "vendor": "Dell", "expires_on": "2028-01-31"},
        )
        assert made.status_code == 201, made.text
        bad = c.post(
            "/api/v1/warranties",
            headers=h,
            json={"agent_id": "agt_ghost", "vendor": "HP", "expires_on": "2028-01-31"},
        )
        assert bad.status_code == 422
        scoped = c.post(
            "/_sandbox/keys",
            headers={"X-Sandbox-Admin-Token": "test-admin-token"},
            json={"name": "t", "scopes": ["psa_tickets:read"]},  # a real scope, not this one
        ).json()["data"]["key"]
        assert (
            c.get("/api/v1/warranties", headers=bearer(scoped)).json()["error"]["code"]
            == "SCOPE_DENIED"
        )


def test_docs_serve_the_bundled_spec_and_the_catalogue(client: Any) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "cdn" not in page.text.lower()
    served = client.get("/api/docs/openapi.yaml").content
    assert yaml.safe_load(served)["servers"][0]["url"] == "http://sandbox.local/api/v1"
    assert served.replace(b"'http://sandbox.local/api/v1'", b"/api/v1") == SPEC_PATH.read_bytes()
    as_json = client.get("/api/docs/openapi.json").json()
    assert as_json["openapi"].startswith("3.1") and "/agents" in as_json["paths"]
    codes = {e["code"]: e["status"] for e in client.get("/api/docs/errors").json()["data"]["items"]}
    assert codes["RATE_LIMITED"] == 429 and codes["SCOPE_DENIED"] == 403
    assert client.get("/healthz").json() == {"data": {"status": "ok"}}

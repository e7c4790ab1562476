"""The API's fast path serves each spec operation itself, and leaves the rest to Litestar."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from litestar.testing import TestClient

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.pipeline.dispatch import ApiDispatch
from opsmerge_sandbox.pipeline.envelope import EncodedResponse
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import load_spec

SPEC = load_spec()


def _dispatch(app: Any) -> ApiDispatch:
    handler = app.asgi_handler
    while not isinstance(handler, ApiDispatch):
        handler = handler.app
    return handler


def _concrete(template: str) -> str:
    return SPEC.base_path + re.sub(r"\{[^}]+\}", "x1", template)


def test_every_operation_is_reached_by_its_own_method_and_path() -> None:
    dispatch = _dispatch(create_app(Settings()))
    seen: list[str] = []

    async def endpoint(op: Any, request: Any, names: dict[str, str]) -> EncodedResponse:
        seen.append(op.operation_id)
        return EncodedResponse(200, b"{}", {})

    async def litestar(*_: Any) -> None:
        seen.append("litestar")

    dispatch.endpoint = endpoint
    dispatch.inner = litestar

    async def call_each() -> None:
        for op in SPEC.operations:
            scope = {"type": "http", "method": op.method, "path": _concrete(op.path),
                     "headers": [], "query_string": b""}
            await dispatch(scope, _receive, _send)

    asyncio.run(call_each())
    assert seen == [op.operation_id for op in SPEC.operations]


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    pass


def test_a_fixed_path_without_the_method_is_litestars_405_not_a_templated_route() -> None:
    with TestClient(create_app(Settings(strict=True))) as client:
        r = client.patch("/api/v1/users/invite", json={})
        assert r.status_code == 405
        assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert "POST" in r.headers["allow"]


def test_unknown_paths_and_trailing_slashes_are_answered_as_before() -> None:
    with TestClient(create_app(Settings(strict=True))) as client:
        assert client.get("/api/v1/nothing-here").status_code == 404
        assert client.get("/api/v1").status_code == 404


def test_browser_requests_keep_their_cors_headers_when_cors_is_on() -> None:
    settings = Settings(cors_origins=("http://docs.example",), strict=True)
    key = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
    with TestClient(create_app(settings)) as client:
        r = client.get("/api/v1/agents?per_page=1", headers={
            "Authorization": f"Bearer {key}", "Origin": "http://docs.example"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://docs.example"
        assert "X-RateLimit-Remaining" in r.headers["access-control-expose-headers"]

"""One answer to "which methods does this path take": OPTIONS and a 405 list the same set.

The set is the spec's operations on the path plus OPTIONS. HEAD is not served (a HEAD gets the
same 405 as any other method the path does not take), so it is not listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.control_api import ADMIN_SPEC_PATH, PREFIX
from opsmerge_sandbox.spec import load_spec
from opsmerge_sandbox.yamlio import load_yaml
from tests.conftest import ADMIN, make_app

SPEC = load_spec()
HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")


def _expected(methods: set[str]) -> set[str]:
    return {m.upper() for m in methods} | {"OPTIONS"}


def _api_paths() -> dict[str, set[str]]:
    paths: dict[str, set[str]] = {}
    for op in SPEC.operations:
        paths.setdefault(SPEC.base_path + op.path, set()).add(op.method)
    return paths


def _admin_paths() -> dict[str, set[str]]:
    doc = load_yaml(ADMIN_SPEC_PATH)
    return {
        PREFIX + path: {m.upper() for m in item if m.upper() in HTTP_METHODS}
        for path, item in doc["paths"].items()
    }


def _concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", template)


def _allow(value: str) -> set[str]:
    return {m.strip() for m in value.split(",") if m.strip()}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(make_app(), base_url="http://sandbox.local") as c:
        yield c


def _check(client: TestClient, template: str, methods: set[str]) -> None:
    path = _concrete(template)
    expected = _expected(methods)
    options = client.options(path, headers=ADMIN)
    assert options.status_code == 204, (template, options.text[:200])
    assert _allow(options.headers["allow"]) == expected, template
    others = ("PUT", "PATCH", "DELETE", "POST", "GET", "HEAD")
    for missing in [m for m in others if m not in expected]:
        refused = client.request(missing, path, headers=ADMIN)
        assert refused.status_code == 405, (template, missing, refused.text[:200])
        if missing != "HEAD":  # an answer to HEAD has no body
            assert refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert _allow(refused.headers["allow"]) == expected, (template, missing)
        assert refused.headers["allow"] == options.headers["allow"]  # the same words, in order


def test_every_spec_path_lists_the_same_methods_for_options_and_405(client: TestClient) -> None:
    paths = _api_paths()
    assert any(len(methods) > 1 for methods in paths.values())  # the case that used to differ
    for template, methods in paths.items():
        _check(client, template, methods)


def test_every_control_path_lists_the_same_methods_for_options_and_405(
    client: TestClient,
) -> None:
    for template, methods in _admin_paths().items():
        _check(client, template, methods)


def test_a_cors_preflight_is_still_answered_by_the_cors_layer() -> None:
    origin = "http://docs.opsmerge.test"
    with TestClient(make_app(cors_origins=(origin,))) as c:
        r = c.options(
            "/api/v1/tickets",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == origin
        assert "POST" in r.headers["access-control-allow-methods"]

"""Hosted mode from the outside: admin off, CORS for the docs, the demo key, the docs page."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.cli import build_parser
from opsmerge_sandbox.commands.serve import settings_from_args
from opsmerge_sandbox.control_api import TOKEN_HEADER, build_admin
from opsmerge_sandbox.hosted import demo_key
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.state import SandboxState, build_state
from opsmerge_sandbox.world.recipe import demo_keys

logging.getLogger("httpx").setLevel(logging.WARNING)

DOCS_ORIGIN = "http://docs.opsmerge.test"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type,x-sandbox-workspace",
}


def _start(**overrides: object) -> tuple[TestClient, SandboxState]:
    settings = Settings(**{"hosted": True, "admin_token": "t0ken", **overrides})  # type: ignore[arg-type]
    state = build_state(settings)
    return TestClient(create_app(settings, state)), state


@pytest.fixture(scope="module")
def docs_only() -> Iterator[tuple[TestClient, SandboxState]]:
    """Hosted, with CORS for one docs origin."""
    client, state = _start(cors_origins=(DOCS_ORIGIN,))
    with client:
        yield client, state


@pytest.fixture(scope="module")
def any_origin() -> Iterator[tuple[TestClient, SandboxState]]:
    """Hosted, with CORS for any origin (what `serve --hosted` does without --cors-origin)."""
    client, state = _start(cors_origins=("*",), rate_limit=3)
    with client:
        yield client, state


# ---------------------------------------------------------------------- admin endpoints off
def _admin_requests(state: SandboxState) -> list[tuple[str, str]]:
    routes = build_admin(state).routes
    assert routes, "the admin API has no routes to check"
    return [
        (method, "/_sandbox" + re.sub(r"\{[^}]+\}", "key_x", path)) for method, path, _, _ in routes
    ]


def test_admin_endpoints_answer_404_in_hosted_mode(docs_only: tuple) -> None:
    client, state = docs_only
    for method, path in _admin_requests(state):
        r = client.request(method, path, headers={TOKEN_HEADER: "t0ken"}, json={})
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "NOT_FOUND"


def test_admin_endpoints_answer_with_the_token_when_not_hosted() -> None:
    client, _ = _start(hosted=False)
    with client:
        r = client.get("/_sandbox/requests", headers={TOKEN_HEADER: "t0ken"})
        assert r.status_code == 200, r.text


# ---------------------------------------------------------------------- CORS
def test_a_preflight_from_the_docs_origin_is_allowed(docs_only: tuple) -> None:
    client, _ = docs_only
    r = client.options("/api/v1/clients", headers={"Origin": DOCS_ORIGIN, **PREFLIGHT})
    assert r.status_code in (200, 204)
    assert r.headers["access-control-allow-origin"] == DOCS_ORIGIN
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PATCH", "DELETE"} <= methods
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "x-sandbox-workspace" in allowed
    assert int(r.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in r.headers


def test_a_preflight_from_another_origin_is_not_allowed(docs_only: tuple) -> None:
    client, _ = docs_only
    r = client.options("/api/v1/clients", headers={"Origin": "http://evil.test", **PREFLIGHT})
    assert "access-control-allow-origin" not in r.headers
    assert r.status_code >= 400


def test_a_preflight_never_reaches_the_pipeline(docs_only: tuple) -> None:
    client, state = docs_only
    journal, workspaces = len(state.journal), set(state.workspaces.names())
    windows = dict(state.limiter.storage.storage)
    for i in range(20):
        r = client.options(
            "/api/v1/agents",
            headers={"Origin": DOCS_ORIGIN, **PREFLIGHT, "X-Sandbox-Workspace": f"pre-{i}"},
        )
        assert r.status_code in (200, 204)
    assert len(state.journal) == journal
    assert set(state.workspaces.names()) == workspaces
    assert dict(state.limiter.storage.storage) == windows


def test_api_answers_to_the_docs_origin_expose_the_rate_limit_headers(docs_only: tuple) -> None:
    client, state = docs_only
    r = client.get(
        "/api/v1/agents?per_page=1",
        headers={"Origin": DOCS_ORIGIN, "Authorization": f"Bearer {demo_key(state)}"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == DOCS_ORIGIN
    exposed = r.headers["access-control-expose-headers"].lower()
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"):
        assert name in exposed
    assert "access-control-allow-credentials" not in r.headers


def test_any_origin_mode_allows_every_origin_but_never_credentials(any_origin: tuple) -> None:
    client, state = any_origin
    for origin in ("http://a.test", "https://docs.example.com:8443"):
        pre = client.options("/api/v1/agents", headers={"Origin": origin, **PREFLIGHT})
        assert pre.status_code in (200, 204)
        got = client.get(
            "/api/v1/agents?per_page=1",
            headers={
                "Origin": origin,
                "Authorization": f"Bearer {demo_key(state)}",
                "X-Sandbox-Workspace": "any-origin",
                "Cookie": "om_session=abc",
            },
        )
        for r in (pre, got):
            assert r.headers["access-control-allow-origin"] in ("*", origin)
            assert r.headers.get("access-control-allow-credentials", "false") != "true"


# ---------------------------------------------------------------------- the demo key
def test_the_demo_key_works_out_of_the_box(docs_only: tuple) -> None:
    client, state = docs_only
    key = demo_key(state)
    assert key is not None
    r = client.get("/api/v1/agents", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["total"] == len(state.bases["agents"]) and data["items"]
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"}).json()
    assert me["data"]["key"]["name"] == demo_keys(state.recipe)[0].name


def test_the_demo_key_is_rate_limited_like_any_key(any_origin: tuple) -> None:
    client, state = any_origin
    owner = next(k.key for k in state.recipe.keys if k.id == "key_ownerfull")
    for key in (demo_key(state), owner):
        headers = {"Authorization": f"Bearer {key}", "X-Sandbox-Workspace": "rate-visitor"}
        seen = [client.get("/api/v1/agents?per_page=1", headers=headers) for _ in range(4)]
        assert [r.status_code for r in seen] == [200, 200, 200, 429]
        limited = seen[-1]
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
        assert limited.headers["x-ratelimit-limit"] == "3"
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert int(limited.headers["retry-after"]) >= 1


# ---------------------------------------------------------------------- the docs page
def test_the_hosted_docs_page_offers_only_the_demo_key(docs_only: tuple) -> None:
    client, state = docs_only
    r = client.get("/api/docs")
    assert r.status_code == 200
    page = r.text
    for k in state.recipe.keys:
        assert (k.key in page) == (k.role == "demo"), k.name
    for code in state.spec.catalogue.codes:
        assert code in page
    assert "forgotten after 30 minutes" in page
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page loads from a CDN"


def test_the_local_docs_page_offers_every_key() -> None:
    client, state = _start(hosted=False)
    with client:
        page = client.get("/api/docs").text
    assert all(k.key in page for k in state.recipe.keys)


# ---------------------------------------------------------------------- serve --hosted
def test_hosted_mode_comes_from_the_environment_and_allows_any_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSMERGE_SANDBOX_HOSTED", "1")
    settings = settings_from_args(build_parser().parse_args(["serve"]))
    assert settings.hosted and settings.cors_origins == ("*",)
    args = build_parser().parse_args(["serve", "--cors-origin", DOCS_ORIGIN])
    assert settings_from_args(args).cors_origins == (DOCS_ORIGIN,)
    monkeypatch.setenv("OPSMERGE_SANDBOX_HOSTED", "0")
    assert not settings_from_args(build_parser().parse_args(["serve"])).hosted


def test_a_hosted_sandbox_refuses_long_forced_delays() -> None:
    from litestar.testing import TestClient

    from opsmerge_sandbox.app import create_app
    from opsmerge_sandbox.settings import Settings

    app = create_app(Settings(hosted=True, strict=True))
    demo = demo_keys(app.state.sandbox.recipe)[0].key
    headers = {"Authorization": f"Bearer {demo}", "X-Sandbox-Workspace": "visitor-delay"}
    with TestClient(app, base_url="http://sandbox.local") as c:
        r = c.get("/api/v1/auth/me", headers={**headers, "Prefer": "delay=60000"})
        assert r.status_code == 400
        assert r.json()["error"]["details"][0]["field"] == "Prefer"
        assert (
            c.get("/api/v1/auth/me", headers={**headers, "Prefer": "delay=10"}).status_code == 200
        )

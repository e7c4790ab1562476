"""The docs pages over plain HTTP, from a sandbox on loopback.

- `/api/docs/errors` is a page for a browser (its Accept prefers text/html) and the JSON it always
  was for every other client (`*/*`, no Accept, `application/json`); `/api/docs/errors.json` is
  JSON whatever is asked.
- Every response the sandbox sends names its charset at most once (the docs page said
  `text/html; charset=utf-8; charset=utf-8`): each GET route of the app is fetched, as a browser
  and as a client, and its Content-Type is checked.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_ui_bundles.swagger_ui import static_path as swagger_static

from opsmerge_contracts.sandboxes import LoopbackServer
from tests.conftest import ADMIN_TOKEN, bearer, key_named, make_app

BROWSER = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
CLIENT_ACCEPTS = (None, "*/*", "application/json", "application/json, text/html")
HTML_UTF8 = "text/html; charset=utf-8"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[httpx.Client, Any]]:
    """A sandbox on loopback and the app behind it (for its routes and keys)."""
    app = make_app()
    with (
        LoopbackServer(app, timeout=30) as srv,
        httpx.Client(base_url=srv.url, timeout=10) as client,
    ):
        yield client, app


def _get(client: httpx.Client, path: str, accept: str | None) -> httpx.Response:
    """GET with this Accept; with None, no Accept header at all (httpx would add `*/*`)."""
    request = client.build_request("GET", path)
    if accept is None:
        del request.headers["accept"]
    else:
        request.headers["accept"] = accept
    return client.send(request)


# ---------------------------------------------------------------------- the error catalogue
def test_the_error_catalogue_is_a_page_for_a_browser(served: tuple[httpx.Client, Any]) -> None:
    client, app = served
    page = client.get("/api/docs/errors", headers={"Accept": BROWSER})
    assert page.status_code == 200
    assert page.headers["content-type"] == HTML_UTF8
    assert "Accept" in page.headers["vary"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.text.startswith("<!doctype html>")
    codes = app.state.sandbox.spec.catalogue.codes.values()
    rows = re.findall(r"<tr class='error' id='(\w+)'>", page.text)
    assert rows == [e.code for e in codes]
    for e in codes:
        assert html.escape(e.meaning) in page.text
    assert 'href="/api/docs/errors.json"' in page.text and 'href="/api/docs"' in page.text


@pytest.mark.parametrize("accept", CLIENT_ACCEPTS)
def test_the_error_catalogue_is_json_for_a_client(
    served: tuple[httpx.Client, Any], accept: str | None
) -> None:
    client, app = served
    answer = _get(client, "/api/docs/errors", accept)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert "Accept" in answer.headers["vary"]
    items = answer.json()["data"]["items"]
    assert items == app.state.sandbox.spec.catalogue.as_list()


def test_the_error_catalogue_as_json_answers_json_even_to_a_browser(
    served: tuple[httpx.Client, Any],
) -> None:
    client, app = served
    answer = client.get("/api/docs/errors.json", headers={"Accept": BROWSER})
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["data"]["items"] == app.state.sandbox.spec.catalogue.as_list()


def test_the_docs_page_links_the_error_catalogue_page(served: tuple[httpx.Client, Any]) -> None:
    client, _ = served
    docs = client.get("/api/docs", headers={"Accept": BROWSER})
    assert re.search(r'<a href="/api/docs/errors">error catalogue</a>', docs.text)


# ---------------------------------------------------------------------- Content-Type
@pytest.mark.parametrize("path", ["/api/docs", "/api/docs/changelog", "/api/docs/errors"])
def test_each_docs_page_says_text_html_utf8_exactly_once(
    served: tuple[httpx.Client, Any], path: str
) -> None:
    client, _ = served
    page = client.get(path, headers={"Accept": BROWSER})
    assert page.status_code == 200
    assert page.headers.get_list("content-type") == [HTML_UTF8]


def _concrete(path: str) -> str:
    """A route's path with each parameter filled in (an unknown id answers 404: still checked)."""
    return re.sub(r"\{[^}]+\}", "sbx-probe", path)


def _get_paths(app: Any) -> list[str]:
    """Every GET path the app serves, the static files one by one."""
    paths: list[str] = []
    for route in app.routes:
        if "GET" not in getattr(route, "methods", ()):
            continue
        if "{file_path:path}" in route.path:
            prefix = route.path.split("{", 1)[0]
            root = Path(swagger_static)
            files = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            paths += [prefix + f for f in files]
        else:
            paths.append(_concrete(route.path))
    return paths


def test_every_response_names_its_charset_at_most_once(served: tuple[httpx.Client, Any]) -> None:
    client, app = served
    headers = {**bearer(key_named(app, "Owner - full")), "X-Sandbox-Admin-Token": ADMIN_TOKEN}
    paths = _get_paths(app)
    assert {"/api/docs", "/api/docs/errors", "/healthz", "/_sandbox/keys"} <= set(paths)
    assert any(p.endswith("swagger-ui-bundle.js") for p in paths)
    repeated = []
    for path in [*paths, "/no-such-page"]:
        for accept in (BROWSER, "*/*"):
            answer = client.get(path, headers={**headers, "Accept": accept})
            for value in answer.headers.get_list("content-type"):
                if value.lower().count("charset=") > 1:
                    repeated.append((path, accept[:9], value))
            assert len(answer.headers.get_list("content-type")) <= 1, path
    assert repeated == []

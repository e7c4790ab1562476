"""A downloaded spec names the sandbox it came from, so tools that need an absolute server work.

The bundled file keeps its relative server; the served JSON and YAML carry the URL the client
used: `http://` and the Host header when talking to the sandbox directly, the forwarded scheme and
host behind a trusted proxy. A Host that is not a plain host[:port], and a hosted sandbox that was
not told which proxy fronts it, get the relative URL rather than a guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from opsmerge_sandbox.spec import SPEC_PATH, load_spec
from opsmerge_sandbox.yamlio import load_yaml
from tests.client_tooling import sandbox

BASE = load_spec().base_path
JSON = "/api/docs/openapi.json"
YAML = "/api/docs/openapi.yaml"


def _servers(url: str, path: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = httpx.get(url + path, headers=headers or {})
    assert response.status_code == 200, response.text
    doc = response.json() if path == JSON else yaml.safe_load(response.text)
    servers: list[dict[str, Any]] = doc["servers"]
    return servers


@pytest.fixture(scope="module")
def direct() -> Iterator[str]:
    with sandbox() as server:
        yield server.url


def test_the_bundled_spec_keeps_a_relative_server() -> None:
    assert load_yaml(SPEC_PATH)["servers"][0]["url"] == BASE


@pytest.mark.parametrize("path", [JSON, YAML])
def test_the_served_spec_names_the_sandbox_it_was_fetched_from(direct: str, path: str) -> None:
    servers = _servers(direct, path)
    assert servers[0]["url"] == direct + BASE
    assert servers[0]["description"] == "This sandbox"


@pytest.mark.parametrize("path", [JSON, YAML])
def test_the_host_header_is_what_the_client_used(direct: str, path: str) -> None:
    port = direct.rsplit(":", 1)[1]
    servers = _servers(direct, path, {"Host": f"localhost:{port}"})
    assert servers[0]["url"] == f"http://localhost:{port}{BASE}"


@pytest.mark.parametrize(
    "host",
    ["x:99999", "ex.com:0", "-bad.example", "user@host", "a_b.example", "x.ex,y.ex", "h" * 300, ""],
)
def test_a_host_that_is_not_plain_gets_the_relative_url(direct: str, host: str) -> None:
    for path in (JSON, YAML):
        assert _servers(direct, path, {"Host": host})[0]["url"] == BASE


def test_a_bracketed_ipv6_host_is_plain(direct: str) -> None:
    assert _servers(direct, JSON, {"Host": "[::1]:80"})[0]["url"] == f"http://[::1]:80{BASE}"


def test_forwarded_headers_from_anyone_else_are_ignored(direct: str) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "attacker.example"}
    assert _servers(direct, JSON, headers)[0]["url"] == direct + BASE


def test_behind_a_trusted_proxy_the_forwarded_scheme_and_host_are_used() -> None:
    with sandbox(trusted_proxies=("127.0.0.1",)) as server:
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "docs.example.com"}
        for path in (JSON, YAML):
            assert (
                _servers(server.url, path, headers)[0]["url"] == f"https://docs.example.com{BASE}"
            )
        # a proxy that does not say which scheme the visitor used leaves the URL relative
        no_scheme = {"X-Forwarded-Host": "docs.example.com"}
        assert _servers(server.url, JSON, no_scheme)[0]["url"] == BASE


def test_a_hosted_sandbox_without_a_named_proxy_serves_the_relative_url() -> None:
    with sandbox(hosted=True) as server:
        assert _servers(server.url, JSON)[0]["url"] == BASE
        assert _servers(server.url, YAML)[0]["url"] == BASE

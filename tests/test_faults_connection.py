"""Connection-level faults and delays, seen from httpx and from a bare socket on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from faults_live import LiveServer, live_server, serve_app
from litestar.testing import TestClient

from opsmerge_sandbox.app import create_app


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with live_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(live: LiveServer) -> None:
    live.clean()


def _raw_get(live: LiveServer, path: str) -> bytes:
    """Everything the server sends for one request, read until it closes the socket."""
    host, port = live.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Bearer {live.owner}\r\n\r\n"
        )
        sock.sendall(request.encode())
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


def _server_errors(live: LiveServer) -> list[str]:
    return [r.getMessage() for r in live.server_log if r.levelname in ("ERROR", "CRITICAL")]


def _count_clients(live: LiveServer) -> int:
    with live.api() as api:
        return int(api.get("/api/v1/clients", params={"per_page": 1}).json()["data"]["total"])


def test_reset_drops_the_connection_before_a_single_byte(live: LiveServer) -> None:
    live.add_rule(
        {"match": {"operation_id": "getCurrentIdentity"}, "effect": {"connection": "reset"}}
    )
    with live.api() as api, pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        api.get("/api/v1/auth/me")
    assert _raw_get(live, "/api/v1/auth/me") == b""
    with live.api() as api:  # the next connection works, and other operations were never touched
        assert api.get("/api/v1/clients").status_code == 200
    assert _server_errors(live) == []


def test_reset_after_processing_keeps_the_write_and_before_does_not(live: LiveServer) -> None:
    before = _count_clients(live)
    rule = {"match": {"operation_id": "createClient"}, "times": 1}
    live.add_rule({**rule, "effect": {"connection": "reset", "process": False}})
    with live.api() as api, pytest.raises(httpx.TransportError):
        api.post("/api/v1/clients", json={"name": "Dropped Ltd"})
    assert _count_clients(live) == before
    live.add_rule({**rule, "effect": {"connection": "reset"}})
    with live.api() as api, pytest.raises(httpx.TransportError):
        api.post("/api/v1/clients", json={"name": "Lost Answer Ltd"})
    assert _count_clients(live) == before + 1


def test_truncated_body_promises_more_than_it_sends(live: LiveServer) -> None:
    live.add_rule({"match": {"path": "/api/v1/clients"}, "effect": {"connection": "truncate"}})
    with live.api() as api, api.stream("GET", "/api/v1/clients") as response:
        assert response.status_code == 200
        promised = int(response.headers["content-length"])
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            response.read()
    raw = _raw_get(live, "/api/v1/clients")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-length: %d" % promised in head.lower()
    assert 0 < len(body) < promised
    assert _server_errors(live) == []


def test_malformed_json_is_a_200_that_no_json_parser_accepts(live: LiveServer) -> None:
    live.add_rule({"match": {"path": "/clients"}, "effect": {"connection": "malformed_json"}})
    with live.api() as api:
        response = api.get("/api/v1/clients")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["content-length"]) == len(response.content) > 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_trickle_sends_the_whole_body_in_small_pieces_with_pauses(live: LiveServer) -> None:
    effect = {"connection": "trickle", "chunk_bytes": 256, "interval_ms": 40}
    live.add_rule({"match": {"operation_id": "getCurrentIdentity"}, "effect": effect})
    started = time.perf_counter()
    pieces = []
    with live.api() as api, api.stream("GET", "/api/v1/auth/me") as response:
        pieces = list(response.iter_raw())
    elapsed = time.perf_counter() - started
    body = b"".join(pieces)
    expected_chunks = -(-len(body) // 256)
    assert expected_chunks >= 3
    assert len(pieces) >= 2
    assert elapsed >= (expected_chunks - 1) * 0.04 * 0.9
    assert json.loads(body)["data"]["key"]["name"] == "Owner - full access"


def test_trickle_trips_a_client_read_timeout(live: LiveServer) -> None:
    effect = {"connection": "trickle", "chunk_bytes": 64, "interval_ms": 500}
    live.add_rule({"match": {"operation_id": "getCurrentIdentity"}, "effect": effect, "times": 1})
    with live.api(timeout=httpx.Timeout(5, read=0.15)) as api, pytest.raises(httpx.ReadTimeout):
        api.get("/api/v1/auth/me")


def test_rule_delay_and_prefer_delay_hold_the_answer_back(live: LiveServer) -> None:
    live.add_rule({"match": {"operation_id": "listClients"}, "effect": {"delay_ms": 250}})
    with live.api() as api:
        started = time.perf_counter()
        assert api.get("/api/v1/clients").status_code == 200
        assert time.perf_counter() - started >= 0.25
        started = time.perf_counter()
        response = api.get("/api/v1/auth/me", headers={"Prefer": "delay=200"})
        assert response.status_code == 200
        assert time.perf_counter() - started >= 0.2
        assert response.headers["preference-applied"] == "delay=200"
        started = time.perf_counter()
        assert api.get("/api/v1/auth/me").status_code == 200
        assert time.perf_counter() - started < 0.2


def test_the_journal_names_connection_faults(live: LiveServer) -> None:
    rule = live.add_rule(
        {
            "name": "cut",
            "match": {"operation_id": "getCurrentIdentity"},
            "effect": {"connection": "truncate"},
        }
    )
    with live.api() as api, pytest.raises(httpx.RemoteProtocolError):
        api.get("/api/v1/auth/me")
    with live.admin() as admin:
        items = admin.get("/_sandbox/requests").json()["data"]["items"]
    assert [(i["operation_id"], i["status"], i["fault"]) for i in items] == [
        ("getCurrentIdentity", 200, f"{rule['id']} cut")
    ]


def test_without_a_socket_a_reset_raises_in_the_in_process_client(live: LiveServer) -> None:
    app = create_app(live.state.settings, live.state)  # shares the live server's rules
    live.add_rule(
        {"match": {"operation_id": "getCurrentIdentity"}, "effect": {"connection": "reset"}}
    )
    with TestClient(app) as client, pytest.raises(Exception, match="after response started"):
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {live.owner}"})


def test_broken_answers_keep_their_cors_headers_for_browser_apps(live: LiveServer) -> None:
    settings = replace(live.state.settings, cors_origins=("https://app.example",))
    live.add_rule({"match": {"path": "/clients"}, "effect": {"connection": "malformed_json"}})
    live.add_rule({"match": {"path": "/sites"}, "effect": {"connection": "truncate"}})
    app = create_app(settings, live.state)  # a browser-facing app on the same world and rules
    origin = {"Origin": "https://app.example"}
    with serve_app(app) as browser_facing, browser_facing.api(headers=origin) as api:
        response = api.get("/api/v1/clients")
        with api.stream("GET", "/api/v1/sites") as cut:
            cut_headers = cut.headers
            with pytest.raises(httpx.RemoteProtocolError):
                cut.read()
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert cut_headers["access-control-allow-origin"] == "https://app.example"

"""The validating proxy on real sockets: in front of the sandbox it finds nothing; in front of a
deliberately broken server it names each broken rule by its check id and hands the client the
upstream's answer byte for byte (unless `--errors`); the key passes through and is never kept."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import broken_server
import httpx
import pytest
from proxy_live import ProxyServer, Tap

from opsmerge_contracts.sandboxes import LoopbackServer, SandboxKeys
from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.har import HarWriter
from opsmerge_sandbox.proxy.app import ProxyConfig, ValidatingProxy
from opsmerge_sandbox.proxy.fallback import Fallback
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.spec import load_spec

API = "/api/v1"
TOKEN = "proxy-test-token"


class Upstream:
    def __init__(self) -> None:
        self.broken = broken_server.BrokenApp(
            create_app(Settings(recipe=str(broken_server.SMALL_RECIPE))), "none"
        )
        self.tap = Tap(self.broken)
        self.server = LoopbackServer(self.tap)
        keys = SandboxKeys(self.broken.app.state.sandbox.recipe.keys)
        self.key = keys.owner.key
        self.limited = keys.limited.key


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    try:
        yield up
    finally:
        up.server.stop()


def _proxy(upstream: Upstream, **config: Any) -> ValidatingProxy:
    return ValidatingProxy(
        ProxyConfig(upstream=upstream.server.url, spec=load_spec(), admin_token=TOKEN, **config)
    )


@pytest.fixture(scope="module")
def proxy(upstream: Upstream) -> Iterator[tuple[ProxyServer, ValidatingProxy]]:
    app = _proxy(upstream)
    with ProxyServer(app) as server:
        yield server, app


@pytest.fixture
def client(
    upstream: Upstream, proxy: tuple[ProxyServer, ValidatingProxy]
) -> Iterator[httpx.Client]:
    upstream.broken.breakage = "none"
    with httpx.Client(
        base_url=proxy[0].url + API, headers={"Authorization": f"Bearer {upstream.key}"}
    ) as c:
        yield c
    upstream.broken.breakage = "none"


def _ticket_id(client: httpx.Client) -> str:
    return str(client.get("/tickets", params={"per_page": 1}).json()["data"]["items"][0]["id"])


def test_in_front_of_the_sandbox_no_answer_violates_the_spec(
    client: httpx.Client, upstream: Upstream, proxy: tuple[ProxyServer, ValidatingProxy]
) -> None:
    before = proxy[1].findings.requests
    ticket = _ticket_id(client)
    answers = [
        client.get("/tickets", params={"per_page": 3, "page": 2}),
        client.get(f"/tickets/{ticket}"),
        client.get("/tickets/tkt_does_not_exist"),
        client.get("/clients/cli_acme/assets"),  # deprecated: Deprecation and Sunset
        client.get("/auth/me"),
        client.get("/tickets", headers={"Authorization": ""}),  # 401
        client.get("/invoices", headers={"Authorization": f"Bearer {upstream.limited}"}),  # 403
        client.post("/tickets", json={"subject": "Through the proxy", "client_id": "cli_acme"}),
        client.post("/tickets", json={"subject": 5}),  # 400
    ]
    created = answers[7].json()["data"]["id"]
    answers += [
        client.patch(f"/tickets/{created}", json={"priority": "High"}),
        client.delete(f"/tickets/{created}"),
    ]
    statuses = [a.status_code for a in answers]
    assert statuses == [200, 200, 404, 200, 200, 401, 403, 201, 400, 200, 200]
    named = [a.headers.get("x-sandbox-violations") for a in answers]
    # every answer is right; the one request that is not (a number for a subject) is named
    assert named == [None] * 8 + ["request_valid", None, None]
    assert proxy[1].findings.requests - before == len(answers) + 1
    assert set(proxy[1].findings.summary()["violations"]) == {"request_valid"}


# breakage -> (request, the check id the proxy must name)
CASES: dict[str, tuple[str, str]] = {
    "envelope_missing": ("/tickets", "envelope"),
    "total_off_by_one": ("/tickets?per_page=100", "pagination_page"),
    "field_type_drift": ("/tickets/{ticket}", "response_schema"),
    "undocumented_field": ("/tickets/{ticket}", "response_schema"),
    "content_type_text": ("/tickets/{ticket}", "content_type_json"),
    "undocumented_status": ("/tickets/tkt_does_not_exist", "status_documented"),
    "code_status_mismatch": ("/tickets/tkt_does_not_exist", "envelope"),
    "deprecation_missing": ("/clients/cli_acme/assets", "deprecation_headers"),
    "deprecation_on_stable": ("/tickets", "deprecation_headers"),
    "no_www_authenticate": ("/tickets?anonymous", "www_authenticate"),
}


@pytest.mark.parametrize("breakage", sorted(CASES))
def test_a_broken_rule_is_named_by_its_check_and_the_answer_arrives_byte_for_byte(
    client: httpx.Client, upstream: Upstream, breakage: str
) -> None:
    path, check_id = CASES[breakage]
    path = path.replace("{ticket}", _ticket_id(client))
    headers = {"Authorization": ""} if path.endswith("?anonymous") else {}
    path = path.removesuffix("?anonymous")
    upstream.broken.breakage = breakage
    answer = client.get(path, headers=headers)
    sent = upstream.tap.last
    named = (answer.headers.get("x-sandbox-violations") or "").split(",")
    assert check_id in named, f"{breakage}: the proxy named {named}, not {check_id}"
    assert answer.status_code == sent["status"]
    assert answer.content == sent["body"]
    # every header as the upstream sent it, in its order; uvicorn's Date and Server, the
    # violations header after them
    received = [(k.lower(), v) for k, v in answer.headers.raw]
    expected = [(k.lower(), v) for k, v in sent["headers"]]
    extra = [h for h in received if h not in expected]
    assert [h for h in received if h in expected] == expected
    assert {k for k, _ in extra} <= {b"x-sandbox-violations", b"date", b"server"}


def test_errors_answers_a_violation_with_a_502_naming_each_check(upstream: Upstream) -> None:
    app = _proxy(upstream, errors=True)
    upstream.broken.breakage = "none"
    with ProxyServer(app) as server, httpx.Client(
        base_url=server.url + API, headers={"Authorization": f"Bearer {upstream.key}"}
    ) as c:
        clean = c.get("/tickets", params={"per_page": 2})
        assert clean.status_code == 200
        assert clean.content == upstream.tap.last["body"]
        upstream.broken.breakage = "envelope_missing"
        try:
            broken = c.get("/tickets", params={"per_page": 2})
        finally:
            upstream.broken.breakage = "none"
    assert broken.status_code == 502
    error = broken.json()["error"]
    assert error["code"] == "CONTRACT_VIOLATION"
    named = {d["field"] for d in error["details"]}
    assert "envelope" in named
    assert "envelope" in broken.headers["x-sandbox-violations"].split(",")
    assert all(d["location"] == "response" and d["message"] for d in error["details"])


def test_errors_names_a_bad_request_and_leaves_the_upstreams_answer(upstream: Upstream) -> None:
    app = _proxy(upstream, errors=True)
    upstream.broken.breakage = "none"
    with ProxyServer(app) as server, httpx.Client(
        base_url=server.url + API, headers={"Authorization": f"Bearer {upstream.key}"}
    ) as c:
        refused = c.post("/tickets", json={"subject": 5}, params={"colour": "red"})
    assert refused.status_code == 400  # the upstream's own answer, not a 502
    assert refused.content == upstream.tap.last["body"]
    assert refused.headers["x-sandbox-violations"] == "request_valid"
    [observed] = app.findings.recent()
    [(check, message)] = [(v["check"], v["message"]) for v in observed["violations"]]
    assert check == "request_valid"
    assert "'colour'" in message and "subject" in message


def test_the_violations_are_listed_with_the_admin_token_and_never_show_the_key(
    client: httpx.Client, upstream: Upstream, proxy: tuple[ProxyServer, ValidatingProxy]
) -> None:
    upstream.broken.breakage = "field_type_drift"
    client.get(f"/tickets/{_ticket_id(client)}", params={"api_key": upstream.key})
    upstream.broken.breakage = "none"
    root = proxy[0].url
    refused = httpx.get(f"{root}/_proxy/violations")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "AUTH_REQUIRED"
    listed = httpx.get(f"{root}/_proxy/violations", headers={"X-Sandbox-Admin-Token": TOKEN})
    assert listed.status_code == 200
    last = listed.json()["data"]["items"][-1]
    assert last["operation_id"] == "getTicket"
    assert "response_schema" in {v["check"] for v in last["violations"]}
    assert upstream.key not in listed.text
    assert upstream.key[:12] not in listed.text
    summary = httpx.get(f"{root}/_proxy/summary", headers={"X-Sandbox-Admin-Token": TOKEN})
    assert summary.json()["data"]["violations"]["response_schema"] >= 1
    bad_limit = httpx.get(
        f"{root}/_proxy/violations?limit=0", headers={"X-Sandbox-Admin-Token": TOKEN}
    )
    assert bad_limit.status_code == 400
    assert bad_limit.json()["error"]["details"][0]["field"] == "limit"


def test_the_clients_key_reaches_the_upstream_and_never_the_recording(
    upstream: Upstream, tmp_path: Path
) -> None:
    writer = HarWriter(tmp_path / "proxy.har")
    app = _proxy(upstream, record=writer)
    upstream.broken.breakage = "none"
    with ProxyServer(app) as server, httpx.Client(base_url=server.url + API) as c:
        me = c.get("/auth/me", headers={"Authorization": f"Bearer {upstream.key}"})
        refused = c.get("/auth/me", headers={"Authorization": "Bearer om_not_a_real_key_000000"})
        created = c.post(
            "/tickets",
            json={"subject": "Recorded", "client_id": "cli_acme"},
            headers={"Authorization": f"Bearer {upstream.key}", "X-Api-Key": "secret-value"},
        )
        c.delete(
            f"/tickets/{created.json()['data']['id']}",
            headers={"Authorization": f"Bearer {upstream.key}"},
        )
        c.get(server.url + "/_sandbox/clock", headers={"X-Sandbox-Admin-Token": "adm-secret"})
    assert me.status_code == 200 and refused.status_code == 401
    text = (tmp_path / "proxy.har").read_text()
    har = json.loads(text)  # valid JSON, written as it went
    entries = har["log"]["entries"]
    assert har["log"]["version"] == "1.2" and har["log"]["creator"]["name"]
    assert [e["response"]["status"] for e in entries][:4] == [200, 401, 201, 200]
    assert upstream.key not in text and "om_not_a_real_key" not in text
    assert "secret-value" not in text and "adm-secret" not in text
    post = entries[2]["request"]
    headers = {h["name"].lower(): h["value"] for h in post["headers"]}
    assert headers["authorization"] == "Bearer [redacted]"
    assert headers["x-api-key"] == "[redacted]"
    assert json.loads(post["postData"]["text"]) == {"subject": "Recorded", "client_id": "cli_acme"}
    assert json.loads(entries[2]["response"]["content"]["text"])["data"]["subject"] == "Recorded"
    assert all({"send", "wait", "receive"} <= e["timings"].keys() for e in entries)


class _MissingInvoices:
    """An upstream that is only partly built: it has no invoices (404 for them)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(f"{API}/invoices"):
            body = b'{"error": {"code": "NOT_FOUND", "message": "No route."}}'
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def test_fallback_serves_what_the_upstream_lacks_and_nothing_it_has(upstream: Upstream) -> None:
    partial = LoopbackServer(_MissingInvoices(upstream.tap))
    fallback = Fallback(Settings(recipe=str(broken_server.SMALL_RECIPE)))
    app = ValidatingProxy(
        ProxyConfig(upstream=partial.url, spec=load_spec(), admin_token=TOKEN, fallback=fallback)
    )
    try:
        with ProxyServer(app) as server, httpx.Client(
            base_url=server.url + API, headers={"Authorization": f"Bearer {upstream.key}"}
        ) as c:
            invoices = c.get("/invoices", params={"per_page": 2})
            ticket = _ticket_id(c)
            found = c.get(f"/tickets/{ticket}")
            missing = c.get("/tickets/tkt_does_not_exist")
    finally:
        partial.stop()
    assert invoices.status_code == 200
    assert invoices.headers["x-sandbox-served-by"] == "sandbox"
    assert invoices.json()["data"]["items"]
    assert "x-sandbox-violations" not in invoices.headers
    assert found.status_code == 200 and "x-sandbox-served-by" not in found.headers
    # the upstream has answered getTicket itself: its 404 is an answer, not a missing operation
    assert missing.status_code == 404 and "x-sandbox-served-by" not in missing.headers


def test_an_unreachable_upstream_is_a_502_in_the_error_envelope() -> None:
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = ValidatingProxy(ProxyConfig(upstream=url, spec=load_spec(), admin_token=TOKEN))
    with ProxyServer(app) as server:
        answer = httpx.get(server.url + API + "/tickets")
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "BAD_GATEWAY"


def test_the_command_prints_a_summary_and_writes_its_report_on_exit(
    upstream: Upstream, tmp_path: Path
) -> None:
    from conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSMERGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsmerge_sandbox.cli", "proxy", "--upstream", upstream.server.url,
         "--port", str(port), "--report", str(tmp_path / "proxy"),
         "--record", str(tmp_path / "proxy.har")],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}{API}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/auth/me", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        upstream.broken.breakage = "envelope_missing"
        try:
            httpx.get(base + "/tickets", headers={"Authorization": f"Bearer {upstream.key}"})
        finally:
            upstream.broken.breakage = "none"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert re.search(r"proxy: \d+ request\(s\), 1 violating the spec", err), err
    assert "envelope" in err
    report = json.loads((tmp_path / "proxy.json").read_text())
    assert "envelope" in report["summary"]["failed_checks"]
    assert (tmp_path / "proxy.html").exists()
    entries = json.loads((tmp_path / "proxy.har").read_text())["log"]["entries"]
    assert entries[-1]["request"]["url"].endswith("/tickets")
    assert entries[-1]["_violations"] and "envelope" in entries[-1]["_violations"]
    assert upstream.key not in err


class _Framing:
    """An upstream that answers in every framing a server may use: chunked, a HEAD with a
    Content-Length and no body, and `Connection: close` after which a kept connection is dead."""

    def __init__(self) -> None:
        self.peers: list[int] = []  # the proxy's port per request: one port, one connection

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.peers.append(scope["client"][1])
        path = scope["path"]
        if path == "/chunked":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            for part in (b'{"data": ', b'{"parts": ', b"3}}"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b'{"data": {"path": "' + path.encode() + b'"}}'
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]  # fmt: skip
        if path == "/close":
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        sent = b"" if scope["method"] == "HEAD" else body
        await send({"type": "http.response.body", "body": sent})


def test_chunked_head_and_closed_connections_reach_the_client_whole() -> None:
    upstream = _Framing()
    with LoopbackServer(upstream) as up:
        app = ValidatingProxy(ProxyConfig(upstream=up.url, spec=load_spec(), admin_token=TOKEN))
        with ProxyServer(app) as server, httpx.Client(base_url=server.url) as c:
            chunked = c.get("/chunked")
            head = c.head("/plain")
            after_head = c.get("/plain")
            closed = c.get("/close")
            after_close = c.get("/plain")
    assert chunked.status_code == 200 and chunked.json() == {"data": {"parts": 3}}
    assert "transfer-encoding" not in chunked.headers  # framed by the proxy's own connection
    assert head.status_code == 200 and head.content == b""
    assert after_head.json() == {"data": {"path": "/plain"}}  # the kept connection still works
    assert closed.json() == {"data": {"path": "/close"}}
    assert after_close.json() == {"data": {"path": "/plain"}}
    # one kept-alive connection until the upstream said `Connection: close`, then a new one
    first, *same, closing, after = upstream.peers
    assert same == [first, first] and closing == first and after != first


def test_a_kept_connection_the_upstream_closed_is_replaced_without_losing_the_request() -> None:
    import socketserver
    import threading

    class OneAnswerEach(socketserver.StreamRequestHandler):
        """Answers one request per connection, says nothing of closing, then closes: what a
        server whose keep-alive timeout ran out looks like to a pool."""

        def handle(self) -> None:
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            body = b'{"data": {"ok": true}}'
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
            self.wfile.flush()
            time.sleep(0.01)  # the close comes after the answer, not with it

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), OneAnswerEach)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        app = ValidatingProxy(ProxyConfig(upstream=url, spec=load_spec(), admin_token=TOKEN))
        with ProxyServer(app) as proxy, httpx.Client(base_url=proxy.url) as c:
            answers = []
            for _ in range(4):
                answers.append(c.get("/anything"))
                time.sleep(0.05)  # the upstream's close arrives while the connection is idle
    finally:
        server.shutdown()
        server.server_close()
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json() == {"data": {"ok": True}} for a in answers)

"""Hosted-mode isolation under abuse: one parse of the headers, nothing allocated before the
caller is authenticated, a per-address budget, budgets charged only for accepted writes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from opsmerge_contracts.sandboxes import LoopbackServer
from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.hosted import HostedPolicy, install
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.state import SandboxState, build_state

OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
DEMO = "om_sbx_demo_OL6XsWpZuQUEQCLdAQ7VTn2Meg"
ADMIN = "om_sbx_admin_full_F9s8eWf3sPYJWznUGDwLrTK3jF"
FORMER = "om_sbx_former_user_IIq3xVem3vT6iVysZdTatzjGqQ"
EXPIRED = "om_sbx_expired_iDDSHZTlWWjV2wIRu8s6LsJbv9"
REVOKED = "om_sbx_revoked_iXRmmYBP3nqmZvCSBUHNae6Ul1"


def _start(hosted: bool, policy: dict[str, int] | None = None, **overrides: Any) -> tuple[
    TestClient, SandboxState
]:
    settings = Settings(hosted=hosted, strict=True, **overrides)
    state = build_state(settings)
    if policy is not None:
        install(state, HostedPolicy(state, **policy))
    return TestClient(create_app(settings, state)), state


@pytest.fixture(params=[True, False], ids=["hosted", "plain"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, SandboxState]]:
    client, state = _start(request.param)
    with client:
        yield client, state


def _buckets(state: SandboxState) -> int:
    return len(state.limiter.storage.storage)


def _raw(port: int, lines: list[str], body: bytes = b"") -> tuple[int, bytes]:
    """Send a request as raw bytes (HTTP clients merge or refuse repeated headers)."""
    head = "\r\n".join([*lines, f"Content-Length: {len(body)}", "Connection: close", "", ""])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(
    "repeated",
    [
        [f"Authorization: Bearer {DEMO}", f"Authorization: Bearer {OWNER}"],
        [f"Authorization: Bearer {OWNER}", f"Authorization: Bearer {OWNER}"],
        [f"Authorization: Bearer {OWNER}", "X-Sandbox-Workspace: a", "X-Sandbox-Workspace: b"],
    ],
    ids=["two-keys", "same-key-twice", "two-workspaces"],
)
@pytest.mark.parametrize("hosted", [True, False], ids=["hosted", "plain"])
def test_a_repeated_authorization_or_workspace_header_is_refused_before_anything_is_allocated(
    repeated: list[str], hosted: bool
) -> None:
    settings = Settings(hosted=hosted, strict=True)
    state = build_state(settings)
    with LoopbackServer(create_app(settings, state)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        status, body = _raw(
            port,
            ["POST /api/v1/clients HTTP/1.1", f"Host: 127.0.0.1:{port}", *repeated,
             "Content-Type: application/json"],
            b'{"name": "Two Headers Ltd"}',
        )
        assert status == 400, body
        error = httpx.Response(400, content=body).json()["error"]
        assert error["code"] == "HEADER_INVALID"
        assert "more than once" in error["message"]
        assert OWNER not in body.decode() and DEMO not in body.decode()
        assert [n for n in state.workspaces.names() if n != "default"] == []
        assert _buckets(state) == 0
        # nothing was written anywhere: the shared default world is as seeded
        default = state.workspaces.get("default")
        assert all(view.pristine for view in default.views.values())


def test_admin_endpoints_refuse_a_repeated_workspace_header() -> None:
    settings = Settings(strict=True)
    state = build_state(settings)
    with LoopbackServer(create_app(settings, state)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        status, body = _raw(
            port,
            ["GET /_sandbox/faults HTTP/1.1", f"Host: 127.0.0.1:{port}",
             f"X-Sandbox-Admin-Token: {settings.admin_token}",
             "X-Sandbox-Workspace: a", "X-Sandbox-Workspace: b"],
        )
        assert status == 400, body
        assert httpx.Response(400, content=body).json()["error"]["code"] == "HEADER_INVALID"


@pytest.mark.parametrize("key", [FORMER, EXPIRED, REVOKED, "om_unknown_key_0000000000", None])
def test_requests_that_end_in_401_allocate_no_workspace_and_no_bucket(
    sandbox: tuple[TestClient, SandboxState], key: str | None
) -> None:
    client, state = sandbox
    before = set(state.workspaces.names())
    for i in range(50):
        headers = {"X-Sandbox-Workspace": f"visitor-{i}"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        r = client.post("/api/v1/clients", json={"name": f"Nobody {i}"}, headers=headers)
        assert r.status_code == 401, r.text
    assert set(state.workspaces.names()) == before
    assert _buckets(state) == 0


def test_a_key_whose_owner_is_deactivated_in_the_workspace_allocates_nothing_there() -> None:
    client, state = _start(False)
    with client:
        # deactivate the admin in workspace "w1" only: the admin key fails there, works elsewhere
        users = state.auth.users
        admin = state.workspaces.get("w1").get(users, "usr_admin")
        assert admin is not None
        state.workspaces.get("w1").write(users, {**admin, "status": "deactivated"})
        in_w1 = {"Authorization": f"Bearer {ADMIN}", "X-Sandbox-Workspace": "w1"}
        denied = client.get("/api/v1/agents", headers=in_w1)
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "AUTH_DISABLED"
        buckets = _buckets(state)
        client.get("/api/v1/agents",
                   headers={"Authorization": f"Bearer {ADMIN}", "X-Sandbox-Workspace": "w1"})
        assert _buckets(state) == buckets  # a refused caller gets no bucket
        ok = client.get("/api/v1/agents",
                        headers={"Authorization": f"Bearer {ADMIN}", "X-Sandbox-Workspace": "w2"})
        assert ok.status_code == 200


def test_rotating_workspace_names_buys_no_extra_requests_per_address() -> None:
    client, state = _start(True, hosted_address_rate_limit=20)
    with client:
        answers = [
            client.get("/api/v1/agents?per_page=1",
                       headers={"Authorization": f"Bearer {DEMO}", "X-Sandbox-Workspace": f"v-{i}"})
            for i in range(30)
        ]
    assert [r.status_code for r in answers].count(200) == 20
    # a caller past the address's budget opens no workspace, so it evicts nobody
    assert len(state.workspaces.names()) == 20
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert refused.headers["x-ratelimit-limit"] == "20"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["retry-after"] == refused.headers["x-ratelimit-reset"]


def _hosted_server(**overrides: Any) -> tuple[LoopbackServer, SandboxState]:
    settings = Settings(hosted=True, strict=True, cors_origins=("*",), **overrides)
    state = build_state(settings)
    return LoopbackServer(create_app(settings, state)), state


def _from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def test_each_client_address_has_its_own_budget_on_loopback() -> None:
    server, _ = _hosted_server(hosted_address_rate_limit=5)
    with server, _from("127.0.0.2") as a, _from("127.0.0.3") as b:
        url = f"{server.url}/api/v1/agents?per_page=1"
        auth = {"Authorization": f"Bearer {DEMO}"}
        assert [a.get(url, headers={**auth, "X-Sandbox-Workspace": f"a{i}"}).status_code
                for i in range(6)] == [200] * 5 + [429]
        assert b.get(url, headers={**auth, "X-Sandbox-Workspace": "b0"}).status_code == 200


def test_forwarded_for_counts_only_behind_a_trusted_proxy() -> None:
    auth = {"Authorization": f"Bearer {DEMO}"}
    # not trusted: every forged X-Forwarded-For still counts against the socket's address
    server, _ = _hosted_server(hosted_address_rate_limit=3)
    with server, httpx.Client(timeout=10) as c:
        codes = [c.get(f"{server.url}/api/v1/agents", headers={
            **auth, "X-Sandbox-Workspace": f"f{i}", "X-Forwarded-For": f"198.51.100.{i}"
        }).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]
    # trusted: the right-most untrusted hop is the client
    server, _ = _hosted_server(hosted_address_rate_limit=3, trusted_proxies=("127.0.0.0/8",))
    with server, httpx.Client(timeout=10) as c:
        codes = [c.get(f"{server.url}/api/v1/agents", headers={
            **auth, "X-Sandbox-Workspace": f"t{i}",
            "X-Forwarded-For": f"203.0.113.9, 198.51.100.{i}, 127.0.0.5",
        }).status_code for i in range(4)]
        assert codes == [200, 200, 200, 200]


def test_callers_sharing_a_key_without_the_header_never_share_a_workspace() -> None:
    server, state = _hosted_server()
    with server, _from("127.0.0.2") as a, _from("127.0.0.3") as b:
        auth = {"Authorization": f"Bearer {DEMO}"}
        r = a.post(f"{server.url}/api/v1/clients", json={"name": "Only Mine Ltd"}, headers=auth)
        assert r.status_code == 201, r.text
        found = a.get(f"{server.url}/api/v1/clients?q=Only%20Mine", headers=auth).json()
        assert found["data"]["total"] == 1
        other = b.get(f"{server.url}/api/v1/clients?q=Only%20Mine", headers=auth).json()
        assert other["data"]["total"] == 0
        assert "default" not in state.workspaces.names()


def test_refused_bodies_do_not_spend_the_write_budget() -> None:
    client, _state = _start(True, policy={"max_workspace_bytes": 4000})
    headers = {"Authorization": f"Bearer {DEMO}", "X-Sandbox-Workspace": "budget"}
    with client:
        for _ in range(20):  # 20 x ~600 bytes of invalid bodies: far over the 4000-byte budget
            r = client.post("/api/v1/clients", json={"name": 5, "pad": "x" * 600}, headers=headers)
            assert r.status_code == 400, r.text
        r = client.post("/api/v1/clients", json={"name": "Still Welcome Ltd"}, headers=headers)
        assert r.status_code == 201, r.text


def test_accepted_writes_still_spend_the_write_budget() -> None:
    # not strict: the spec describes OpsMerge, and a full visitor workspace is the sandbox's own 409
    settings = Settings(hosted=True)
    state = build_state(settings)
    install(state, HostedPolicy(state, max_workspace_bytes=400))
    client = TestClient(create_app(settings, state))
    headers = {"Authorization": f"Bearer {DEMO}", "X-Sandbox-Workspace": "budget"}
    codes = []
    with client:
        for i in range(10):
            r = client.post("/api/v1/clients", json={"name": f"Client {i} " + "x" * 80},
                            headers=headers)
            codes.append(r.status_code)
    assert 201 in codes and codes[-1] == 409
    assert codes.count(201) <= 400 // 90 + 1


@pytest.mark.parametrize(
    "header",
    [f"{OWNER} {OWNER}", f"{OWNER}", f"Token {OWNER}", f"{OWNER[:25]} x", f"Basic {OWNER}"],
)
def test_no_part_of_a_key_is_ever_echoed_in_a_401(
    sandbox: tuple[TestClient, SandboxState], header: str
) -> None:
    client, _state = sandbox
    r = client.get("/api/v1/agents", headers={"Authorization": header})
    assert r.status_code == 401
    text = r.text + "".join(r.headers.values())
    secret = OWNER[3:]
    assert not any(secret[i : i + 8] in text for i in range(len(secret) - 7))
    assert "om_sbx" not in text


def test_serve_takes_trusted_proxies_and_the_address_budget_from_its_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from opsmerge_sandbox.cli import build_parser
    from opsmerge_sandbox.commands.serve import settings_from_args

    args = build_parser().parse_args(
        ["serve", "--hosted", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "127.0.0.1",
         "--address-rate-limit", "42"]
    )
    settings = settings_from_args(args)
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert settings.hosted_address_rate_limit == 42
    monkeypatch.setenv("OPSMERGE_SANDBOX_TRUSTED_PROXIES", "192.0.2.1, 2001:db8::/32")
    args = build_parser().parse_args(["serve", "--hosted"])
    assert settings_from_args(args).trusted_proxies == ("192.0.2.1", "2001:db8::/32")
    for bad in (["--trusted-proxy", "proxy.example"], ["--address-rate-limit", "0"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["serve", *bad])
        assert exc.value.code == 2
        assert bad[0] in capsys.readouterr().err

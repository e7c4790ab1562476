"""Business rules on change and inventions, through the HTTP API of a sandbox on loopback.

- A deprecated operation works until its `Sunset` date on the sandbox clock, then answers
  `410 OPERATION_SUNSET` with its Deprecation and Sunset headers, still authenticated and counted.
- The changelog is served from the spec, as JSON and as a page, and agrees with the operations.
- Every listed invention carries `x-invented: true` in the served spec.
- `auth/me` lists only effective scopes some operation requires.

The deprecated operations are read from the served spec, not named here, so a new deprecation is
tested too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from opsmerge_contracts.sandboxes import LoopbackServer
from tests.conftest import ADMIN_TOKEN, make_app

ADMIN = {"X-Sandbox-Admin-Token": ADMIN_TOKEN}
OWNER = "om_sbx_owner_full_pG5aQxpYERgXwi9iPGPE2lWARD"
SLOW = "om_sbx_slow_5rpm_J0TOEaFMUla8CiDfq5NyxgNtEs"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture()
def server() -> Iterator[httpx.Client]:
    """A sandbox of its own on loopback (these tests move its clock forward)."""
    with (
        LoopbackServer(make_app(), timeout=30) as srv,
        httpx.Client(base_url=srv.url, timeout=10) as client,
    ):
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _spec(client: httpx.Client) -> dict[str, Any]:
    answer = client.get("/api/docs/openapi.json")
    assert answer.status_code == 200
    return dict(answer.json())


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _sunset_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = [
        (m, p, op) for m, p, op in _operations(spec) if op.get("deprecated") and op.get("x-sunset")
    ]
    assert found, "the spec has no deprecated operation with a sunset date to test"
    return found


def _url(path: str) -> str:
    """An API URL for a path template, with the seeded client where the path names one."""
    return "/api/v1" + path.replace("{client_id}", "cli_acme").replace("{id}", "cli_acme")


def _now(client: httpx.Client) -> float:
    answer = client.get("/_sandbox/clock", headers=ADMIN)
    assert answer.status_code == 200, answer.text[:200]
    now = answer.json()["data"]["now"].replace("Z", "+00:00")
    return dt.datetime.fromisoformat(now).timestamp()


def _advance_to(client: httpx.Client, when: float) -> None:
    seconds = max(0, when - _now(client))
    answer = client.post("/_sandbox/clock", json={"advance_seconds": seconds}, headers=ADMIN)
    assert answer.status_code == 200, answer.text[:200]


def _sunset_of(op: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(op["x-sunset"])).replace(tzinfo=dt.UTC).timestamp()


# ---------------------------------------------------------------------- sunset
def test_a_deprecated_operation_works_until_its_sunset_then_answers_410(
    server: httpx.Client,
) -> None:
    for method, path, op in _sunset_operations(_spec(server)):
        assert "410" in op["responses"], f"{op['operationId']} does not document its 410"
        _advance_to(server, _sunset_of(op) - 120)  # two minutes before: it works as ever
        before = server.request(method, _url(path), headers=_auth(OWNER))
        assert before.status_code == 200, before.text[:300]
        assert "data" in before.json()
        _advance_to(server, _sunset_of(op))  # the instant the Sunset header names
        after = server.request(method, _url(path), headers=_auth(OWNER))
        assert after.status_code == 410, after.text[:300]
        error = after.json()["error"]
        assert error["code"] == "OPERATION_SUNSET"
        assert str(op["x-sunset"]) in error["message"]
        for answer in (before, after):
            assert answer.headers["Deprecation"].startswith("@")
            sunset = parsedate_to_datetime(answer.headers["Sunset"])
            assert sunset.timestamp() == _sunset_of(op)


def test_the_sunset_code_is_in_the_catalogue_marked_invented(server: httpx.Client) -> None:
    codes = {e["code"]: e for e in server.get("/api/docs/errors").json()["data"]["items"]}
    assert codes["OPERATION_SUNSET"]["status"] == 410
    assert codes["OPERATION_SUNSET"]["documented"] is False


def test_a_call_to_a_sunset_operation_is_still_authenticated_and_counted(
    server: httpx.Client,
) -> None:
    method, path, op = _sunset_operations(_spec(server))[0]
    _advance_to(server, _sunset_of(op) + 60)
    anonymous = server.request(method, _url(path))
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "AUTH_REQUIRED"
    # the 5-a-minute key: five 410s spend its budget, the sixth call is a 429, not a 410
    statuses = [server.request(method, _url(path), headers=_auth(SLOW)) for _ in range(6)]
    assert [a.status_code for a in statuses] == [410] * 5 + [429]
    remaining = [int(a.headers["X-RateLimit-Remaining"]) for a in statuses[:5]]
    assert remaining == [4, 3, 2, 1, 0]
    assert "Retry-After" in statuses[5].headers


def test_operations_that_are_not_deprecated_keep_working_after_every_sunset(
    server: httpx.Client,
) -> None:
    spec = _spec(server)
    _advance_to(server, max(_sunset_of(op) for _, _, op in _sunset_operations(spec)) + 86400)
    plain = [
        (m, p)
        for m, p, op in _operations(spec)
        if m == "GET" and not op.get("deprecated") and "{" not in p and op.get("security")
    ]
    assert plain
    for method, path in plain[:10]:
        answer = server.request(method, _url(path), headers=_auth(OWNER))
        assert answer.status_code == 200, (path, answer.text[:200])
        assert "Sunset" not in answer.headers


# ---------------------------------------------------------------------- changelog
def _changelog(client: httpx.Client, **headers: str) -> dict[str, Any]:
    answer = client.get("/api/docs/changelog.json", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    return dict(answer.json()["data"])


def test_the_changelog_announces_every_deprecation_and_sunset_of_the_spec(
    server: httpx.Client,
) -> None:
    spec = _spec(server)
    items = _changelog(server)["items"]
    assert items == sorted(items, key=lambda e: e["date"], reverse=True)  # newest first
    announced = {
        (o["operation_id"], e["change"]): e["date"] for e in items for o in e["operations"]
    }
    where = {op["operationId"]: (method, path) for method, path, op in _operations(spec)}
    for entry in items:
        for o in entry["operations"]:
            assert (o["method"], o["path"]) == where[o["operation_id"]]
    for _, _, op in _operations(spec):
        if op.get("deprecated"):
            assert announced[(op["operationId"], "deprecated")] == str(op["x-deprecated-at"])
            assert announced[(op["operationId"], "sunset")] == str(op["x-sunset"])
    for entry in items:
        assert entry["change"] in ("added", "changed", "deprecated", "sunset")
        assert isinstance(entry["invented"], bool) and entry["summary"]


def test_the_changelog_says_which_changes_are_in_effect_on_the_sandbox_clock(
    server: httpx.Client,
) -> None:
    _, _, op = _sunset_operations(_spec(server))[0]

    def sunset_entry() -> dict[str, Any]:
        return next(
            e
            for e in _changelog(server)["items"]
            if e["change"] == "sunset"
            and op["operationId"] in {o["operation_id"] for o in e["operations"]}
        )

    _advance_to(server, _sunset_of(op) - 3600)
    assert sunset_entry()["in_effect"] is False
    _advance_to(server, _sunset_of(op))
    assert sunset_entry()["in_effect"] is True
    assert _changelog(server)["now"].startswith(str(op["x-sunset"]))


def test_the_changelog_is_html_for_browsers_and_json_for_clients_that_ask(
    server: httpx.Client,
) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = server.get("/api/docs/changelog", headers={"Accept": browser})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    items = _changelog(server)["items"]
    assert page.text.count("<tr class='change") == len(items) > 0
    for entry in items:
        assert entry["date"] in page.text
    as_json = server.get("/api/docs/changelog", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json()["data"]["items"] == items
    docs = server.get("/api/docs")
    assert 'href="/api/docs/changelog"' in docs.text


# ---------------------------------------------------------------------- inventions
# JSON pointers into the spec (after the `paths` or `components/schemas` root) of what the facts
# digest tags [SILENT] or [INFERRED]: each must keep its `x-invented: true`.
INVENTIONS: tuple[tuple[Any, ...], ...] = (
    ("components", "schemas", "TicketWritable", "properties", "status"),
    ("components", "schemas", "TicketWritable", "properties", "queue"),
    ("components", "schemas", "Contract", "allOf", 1, "properties", "status"),
    ("components", "schemas", "Contract", "allOf", 1, "properties", "currency"),
    ("components", "schemas", "Invoice", "allOf", 1, "properties", "currency"),
    ("components", "schemas", "RoleWritable", "properties", "permissions"),
    ("components", "schemas", "AuditEntry", "allOf", 1, "properties", "action"),
    ("components", "schemas", "AuditEntry", "allOf", 1, "properties", "object_type"),
    ("components", "schemas", "UserInvite"),
    ("components", "schemas", "UserInvite", "properties", "team"),
    ("components", "schemas", "UserWritable", "properties", "team"),
    ("paths", "/clients/{id}/archive", "post"),
    ("paths", "/contracts/{id}/void", "post"),
    ("paths", "/invoices/{id}/send", "post"),
    ("paths", "/invoices/{id}/void", "post"),
    ("paths", "/invoices/{id}/mark-paid", "post"),
    ("paths", "/users/invite", "post"),
    ("components", "responses", "Gone"),
)


def test_every_listed_invention_is_marked_in_the_served_spec(server: httpx.Client) -> None:
    spec = _spec(server)
    unmarked = []
    for pointer in INVENTIONS:
        node: Any = spec
        for part in pointer:
            node = node[part]
        if node.get("x-invented") is not True:
            unmarked.append("/".join(pointer))
    assert unmarked == []


# ---------------------------------------------------------------------- effective scopes
def test_the_owners_effective_scopes_are_exactly_the_scopes_operations_require(
    server: httpx.Client,
) -> None:
    spec = _spec(server)
    required = {
        scope
        for _, _, op in _operations(spec)
        for requirement in op.get("security", [])
        for scope in requirement.get("bearerAuth", [])
    }
    me = server.get("/api/v1/auth/me", headers=_auth(OWNER))
    assert me.status_code == 200
    scopes = me.json()["data"]["scopes"]
    assert len(scopes) == len(set(scopes))
    assert set(scopes) == required  # the Owner's role grants every level of every family
    for unused in ("audit:write", "audit:execute", "clients:execute"):
        assert unused not in scopes

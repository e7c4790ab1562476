"""Hostile JSON bodies: deep nesting, odd numbers and odd text get a 4xx and change nothing.

Every place the sandbox decodes a request body (API operations and every control endpoint that
takes one) is tried, because a decoder that recurses 10,000 levels deep overflows the stack and
the answer used to be a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.pipeline.validate import MAX_JSON_DEPTH, too_deep
from tests.conftest import ADMIN, bearer, key_named, make_app

TICKET = {"subject": "Printer offline", "client_id": "cli_acme", "priority": "High"}
DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
JSON_TYPE = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = make_app()
    with TestClient(app, base_url="http://sandbox.local") as client:
        yield client, {**bearer(key_named(app, "Owner - full")), **JSON_TYPE}


def _ticket_total(client: TestClient, auth: dict[str, str]) -> int:
    return int(client.get("/api/v1/tickets", headers=auth).json()["data"]["total"])


def _is_malformed(response: Any) -> None:
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "MALFORMED_JSON"
    assert str(MAX_JSON_DEPTH) in error["message"]


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["arrays", "objects"])
def test_a_body_nested_ten_thousand_deep_is_malformed_json_and_writes_nothing(
    sandbox: tuple[TestClient, dict[str, str]], body: bytes
) -> None:
    client, auth = sandbox
    before = _ticket_total(client, auth)
    _is_malformed(client.post("/api/v1/tickets", content=body, headers=auth))
    nested_field = b'{"subject": ' + body + b', "client_id": "cli_acme"}'
    _is_malformed(client.post("/api/v1/tickets", content=nested_field, headers=auth))
    assert _ticket_total(client, auth) == before


@pytest.mark.parametrize(
    "path", ["/_sandbox/faults", "/_sandbox/keys", "/_sandbox/clock", "/_sandbox/reset"]
)
def test_a_control_body_nested_ten_thousand_deep_is_malformed_json_and_changes_nothing(
    sandbox: tuple[TestClient, dict[str, str]], path: str
) -> None:
    client, _ = sandbox
    headers = {**ADMIN, **JSON_TYPE}
    keys = client.get("/_sandbox/keys", headers=ADMIN).json()["data"]["items"]
    faults = client.get("/_sandbox/faults", headers=ADMIN).json()["data"]["items"]
    clock = client.get("/_sandbox/clock", headers=ADMIN).json()["data"]["offset_seconds"]
    for body in (DEEP_ARRAY, DEEP_OBJECT):
        _is_malformed(client.post(path, content=body, headers=headers))
    assert client.get("/_sandbox/keys", headers=ADMIN).json()["data"]["items"] == keys
    assert client.get("/_sandbox/faults", headers=ADMIN).json()["data"]["items"] == faults
    after = client.get("/_sandbox/clock", headers=ADMIN).json()["data"]["offset_seconds"]
    assert after == clock


def test_brackets_inside_strings_do_not_count_as_nesting(
    sandbox: tuple[TestClient, dict[str, str]],
) -> None:
    """Only structure nests: a subject full of brackets and escaped quotes is an ordinary write."""
    client, auth = sandbox
    subject = '[{"' * 50 + '\\"' + "]}" * 40  # 180 brackets, none of them structure
    response = client.post("/api/v1/tickets", json={**TICKET, "subject": subject}, headers=auth)
    assert response.status_code == 201, response.text[:300]
    assert response.json()["data"]["subject"] == subject


def test_the_depth_bound_counts_every_level_whatever_the_bracket_kind() -> None:
    def nested(depth: int) -> bytes:
        opening = "".join("[" if i % 2 else '{"k":' for i in range(depth))
        closing = "".join("]" if i % 2 else "}" for i in reversed(range(depth)))
        return (opening + "0" + closing).encode()

    assert json.loads(nested(MAX_JSON_DEPTH + 1))  # the test builds valid JSON
    assert not too_deep(nested(MAX_JSON_DEPTH))
    assert too_deep(nested(MAX_JSON_DEPTH + 1))
    assert not too_deep(b"]}" * MAX_JSON_DEPTH * 2)  # never opened: left to the decoder
    wide = json.dumps([[i] for i in range(5_000)]).encode()  # many brackets, two levels
    assert not too_deep(wide)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"subject": 1e400, "client_id": "cli_acme"}', "MALFORMED_JSON"),
        (b'{"subject": "\\ud800", "client_id": "cli_acme"}', "MALFORMED_JSON"),
        (b'{"subject": ' + b"9" * 5000 + b', "client_id": "cli_acme"}', "MALFORMED_JSON"),
        (b'{"subject": NaN, "client_id": "cli_acme"}', "MALFORMED_JSON"),
        (b'{"subject": "x", "client_id": "cli_acme", "priority": 1e308}', "VALIDATION_ERROR"),
    ],
    ids=["overflowing-float", "lone-surrogate", "5000-digit-integer", "nan", "huge-float"],
)
def test_odd_numbers_and_broken_unicode_in_a_body_get_a_400_and_write_nothing(
    sandbox: tuple[TestClient, dict[str, str]], body: bytes, code: str
) -> None:
    client, auth = sandbox
    before = _ticket_total(client, auth)
    response = client.post("/api/v1/tickets", content=body, headers=auth)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["code"] == code
    assert _ticket_total(client, auth) == before


def test_a_control_body_over_the_size_limit_is_refused_before_it_is_decoded() -> None:
    app = make_app(max_body_bytes=1024)
    with TestClient(app) as client:
        body = json.dumps({"name": "x" * 4096}).encode()
        before = client.get("/_sandbox/keys", headers=ADMIN).json()["data"]["items"]
        response = client.post("/_sandbox/keys", content=body, headers={**ADMIN, **JSON_TYPE})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert client.get("/_sandbox/keys", headers=ADMIN).json()["data"]["items"] == before


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=x", None], ids=str
)
def test_a_control_body_not_sent_as_json_is_a_415_and_changes_nothing(
    sandbox: tuple[TestClient, dict[str, str]], content_type: str | None
) -> None:
    client, _ = sandbox
    rule = json.dumps({"effect": {"status": 503}, "match": {"path": "/nowhere"}}).encode()
    headers = dict(ADMIN) if content_type is None else {**ADMIN, "Content-Type": content_type}
    before = client.get("/_sandbox/faults", headers=ADMIN).json()["data"]["items"]
    response = client.post("/_sandbox/faults", content=rule, headers=headers)
    assert response.status_code == 415, response.text[:300]
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert client.get("/_sandbox/faults", headers=ADMIN).json()["data"]["items"] == before

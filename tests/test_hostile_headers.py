"""Client text echoed into answer headers: never a 500, never raw, never after a lost answer.

`Prefer: example=<name>` (and `?__example=`) is echoed in Preference-Applied. A name beyond
Latin-1 used to fail the header encoding after the handler had written the record, so the client
saw a 500 for a write that happened. Now the echo is visible ASCII (percent-encoded), a name
with control or formatting characters is a 400 before anything is written, and the encoder of
the fast path cannot fail on any header value.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from opsmerge_sandbox.pipeline.envelope import EncodedResponse, header_value
from tests.conftest import ADMIN, ADMIN_TOKEN, LoopbackServer, bearer, key_named, make_app

TICKET = {"subject": "Printer offline", "client_id": "cli_acme", "priority": "High"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = make_app()
    with TestClient(app, base_url="http://sandbox.local") as client:
        yield client, bearer(key_named(app, "Owner - full"))


def _tickets(client: TestClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/tickets?per_page=100&sort=-created_at", headers=auth)
    return list(answer.json()["data"]["items"])


def _visible_ascii(value: str) -> bool:
    return all(0x20 <= ord(ch) < 0x7F for ch in value)


@pytest.mark.parametrize(
    "query",
    ["__example=%E2%9C%93", "__example=%C3%A9t%C3%A9", "__code=201&__example=%F0%9F%94%91"],
    ids=["check-mark", "latin-1-letters", "emoji-with-code"],
)
def test_a_non_latin1_example_on_a_write_is_applied_and_echoed_as_visible_ascii(
    sandbox: tuple[TestClient, dict[str, str]], query: str
) -> None:
    client, auth = sandbox
    subject = f"echo {query}"
    response = client.post(
        f"/api/v1/tickets?{query}", json={**TICKET, "subject": subject}, headers=auth
    )
    assert response.status_code == 201, response.text[:300]
    applied = response.headers["preference-applied"]
    assert _visible_ascii(applied) and "example=" in applied
    created = response.json()["data"]["id"]
    assert client.get(f"/api/v1/tickets/{created}", headers=auth).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "__example=a%00b",
        "__example=%E2%80%AEevil",
        "__example=a%0D%0AX-Evil:%201",
        "__example=%D0%BF%C2%85",
        "__example=%C2%85",
    ],
    ids=["nul", "right-to-left-override", "crlf", "c1-control-last", "c1-control-alone"],
)
def test_an_example_with_control_or_formatting_characters_is_a_400_and_writes_nothing(
    sandbox: tuple[TestClient, dict[str, str]], query: str
) -> None:
    client, auth = sandbox
    before = _tickets(client, auth)
    response = client.post(f"/api/v1/tickets?{query}", json=TICKET, headers=auth)
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == "__example"
    assert "x-evil" not in {k.lower() for k in response.headers}
    assert _tickets(client, auth) == before


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def _post_raw(port: int, secret: str, body: bytes, prefer: bytes) -> tuple[int, bytes, bytes]:
    answer = _raw(
        port,
        b"POST /api/v1/tickets HTTP/1.1\r\nHost: sandbox\r\n"
        b"Authorization: Bearer " + secret.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nPrefer: "
        + prefer
        + b"\r\nConnection: close\r\n\r\n"
        + body,
    )
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, payload


def test_a_prefer_header_with_bytes_beyond_ascii_on_a_write_is_a_400_that_writes_nothing() -> None:
    """Real clients send UTF-8 bytes in headers; only a raw socket sends them as they are.

    Header values are octets (Latin-1 to the server): the sandbox does not guess which text the
    client meant, so it refuses them before anything is written, naming the header.
    """
    app = make_app()
    secret = key_named(app, "Owner - full")
    with LoopbackServer(app) as server, TestClient(app) as reader:
        auth = bearer(secret)
        before = _tickets(reader, auth)
        for prefer in (
            "example=✓".encode(),
            "code=201, example=é".encode(),
            "example=пример".encode(),
            b"example=\xff\xfe",
            b"example=abc\x85",  # a C1 control byte at the end, where stripping would hide it
        ):
            body = json.dumps({**TICKET, "subject": f"raw {prefer!r}"}).encode()
            status, head, payload = _post_raw(server.port, secret, body, prefer)
            assert status == 400, (prefer, head[:200], payload[:300])
            error = json.loads(payload)["error"]
            assert error["code"] == "VALIDATION_ERROR"
            assert error["details"][0] == {
                "location": "header",
                "field": "Prefer",
                "message": error["details"][0]["message"],
            }
            assert all(0x20 <= b < 0x7F or b in b"\r\n" for b in head), head
        ascii_body = json.dumps({**TICKET, "subject": "raw ascii"}).encode()
        status, head, payload = _post_raw(server.port, secret, ascii_body, b'example="a b"')
        assert status == 201, payload[:300]
        assert b'preference-applied: example="a b"' in head.lower()
        after = _tickets(reader, auth)
        assert [t["id"] for t in after if t not in before] == [json.loads(payload)["data"]["id"]]


def test_the_fast_path_encoder_sends_any_header_value_as_visible_ascii() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    hostile = {"x-echo": "✓ café\r\nX-Evil: 1", "x-plain": "ok, fine", "x-nul": "a\x00b"}
    asyncio.run(EncodedResponse(201, b"{}", hostile)({}, None, send))
    headers = dict(sent[0]["headers"])
    assert headers[b"x-plain"] == b"ok, fine"  # ordinary values go out unchanged
    for name in (b"x-echo", b"x-nul"):
        assert all(0x20 <= b < 0x7F for b in headers[name]), headers[name]
    assert b"\r\n" not in headers[b"x-echo"] and b"x-evil" not in headers
    assert header_value("✓") == "%E2%9C%93"


def test_a_control_call_with_two_admin_tokens_is_refused_whichever_comes_first() -> None:
    """Which of two tokens counts must never be a guess; neither order gets through."""
    app = make_app()
    with LoopbackServer(app) as server, TestClient(app) as reader:
        before = reader.get("/_sandbox/keys", headers=ADMIN).json()["data"]["items"]
        body = json.dumps({"name": "two tokens"}).encode()
        right = b"X-Sandbox-Admin-Token: " + ADMIN_TOKEN.encode()
        wrong = b"X-Sandbox-Admin-Token: not-the-token"
        for first, second in ((right, wrong), (wrong, right), (right, right)):
            answer = _raw(
                server.port,
                b"POST /_sandbox/keys HTTP/1.1\r\nHost: sandbox\r\n"
                + first
                + b"\r\n"
                + second
                + b"\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body,
            )
            head, _, payload = answer.partition(b"\r\n\r\n")
            assert int(head.split(b" ")[1]) == 400, answer[:300]
            error = json.loads(payload)["error"]
            assert error["code"] == "HEADER_INVALID"
            assert error["details"][0]["field"] == "X-Sandbox-Admin-Token"
            assert ADMIN_TOKEN.encode() not in answer
        assert reader.get("/_sandbox/keys", headers=ADMIN).json()["data"]["items"] == before

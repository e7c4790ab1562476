"""The API's read path does only the work its answer needs, and its shortcuts never go stale."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from litestar.connection.base import ASGIConnection
from litestar.testing import TestClient

from opsmerge_sandbox import clock as clock_module
from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.pipeline.context import RequestContext
from opsmerge_sandbox.pipeline.dispatch import ApiDispatch
from opsmerge_sandbox.pipeline.envelope import EncodedResponse
from opsmerge_sandbox.pipeline.request import ApiRequest
from opsmerge_sandbox.pipeline.runner import UNROUTED, Pipeline
from opsmerge_sandbox.pipeline.stages import Stages
from opsmerge_sandbox.settings import Settings
from opsmerge_sandbox.store.base import BaseCollection
from tests.conftest import ADMIN, ADMIN_TOKEN, bearer, key_named

LIST = "/api/v1/agents?per_page=50"
GET = "/api/v1/agents/agt_acmesrv01"
FIXED_NOW = 1_800_000_000.5  # a moment of the clock, held for a test that needs one second


def _scope(target: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "root_path": "", "headers": [(b"host", b"sandbox.local"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 4010), "state": {},
    }


def _call(app: Any, target: str, secret: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight into the ASGI app, as a server hands it over."""
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    auth = (b"authorization", f"Bearer {secret}".encode())
    asyncio.run(app(_scope(target, [auth]), receive, send))
    start, body = messages[0], b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], dict(start["headers"]), body


@pytest.fixture()
def lean_app() -> Any:
    """The app as `serve` runs it: not strict, so seeded records go out pre-encoded."""
    return create_app(Settings(admin_token=ADMIN_TOKEN, strict=False))


def test_an_api_read_builds_no_litestar_request(
    lean_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    original = ASGIConnection.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ASGIConnection, "__init__", counting)
    secret = key_named(lean_app, "Owner - full")
    for target in (GET, LIST):
        status, _, _ = _call(lean_app, target, secret)
        assert status == 200
    assert built == []


@pytest.mark.interpreted
def test_a_page_served_again_is_not_encoded_again(
    lean_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = key_named(lean_app, "Owner - full")
    raw_calls: list[str] = []  # every record encoded (a seeded one through `raw`, once)
    original_encoded = BaseCollection.encoded

    def counting_encoded(record: Any) -> Any:
        raw_calls.append(record["id"])
        return original_encoded(record)

    # a record whose times keep pace with the clock is encoded again only once the clock's
    # second has moved on: both calls fall in one second
    monkeypatch.setattr(BaseCollection, "encoded", staticmethod(counting_encoded))
    monkeypatch.setattr(clock_module, "time", SimpleNamespace(time=lambda: FIXED_NOW))
    first = _call(lean_app, LIST, secret)
    assert first[0] == 200 and len(raw_calls) == 50
    raw_calls.clear()
    again = _call(lean_app, LIST, secret)
    assert raw_calls == []
    assert again[2] == first[2]  # the same bytes


def test_a_page_shows_a_record_changed_after_the_page_was_first_served(lean_app: Any) -> None:
    owner = bearer(key_named(lean_app, "Owner - full"))
    with TestClient(lean_app, base_url="http://sandbox.local") as c:
        c.headers.update({"X-Sandbox-Workspace": "read-path-costs"})
        before = c.get("/api/v1/clients?per_page=5", headers=owner).json()["data"]["items"]
        changed = before[2]["id"]
        change = {"contact_email": "ops@renamed.example"}
        r = c.patch(f"/api/v1/clients/{changed}", headers=owner, json=change)
        assert r.status_code == 200, r.text
        after = c.get("/api/v1/clients?per_page=5", headers=owner).json()["data"]["items"]
        assert [i["id"] for i in after] == [i["id"] for i in before]
        assert after[2]["contact_email"] == "ops@renamed.example" != before[2]["contact_email"]
        assert [i for n, i in enumerate(after) if n != 2] == [
            i for n, i in enumerate(before) if n != 2
        ]
        # another workspace still sees the seeded record, from the page it was served before
        other = c.get(
            "/api/v1/clients?per_page=5",
            headers={**owner, "X-Sandbox-Workspace": "read-path-costs-other"},
        ).json()["data"]["items"]
        assert other == before


def test_a_rate_limited_request_reads_the_clock_once(
    lean_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = lean_app.state.sandbox.limiter
    clock = lean_app.state.sandbox.clock
    reads: list[float] = []
    original = type(clock).now

    def counting(self: Any) -> float:
        now = original(self)
        reads.append(now)
        return now

    monkeypatch.setattr(type(clock), "now", counting)
    state = limiter.hit("read-path-costs/key_x", 2)
    assert len(reads) == 1
    assert (state.limit, state.remaining, state.reset) == (2, 1, 60)


@pytest.mark.interpreted
def test_a_path_routed_once_is_not_matched_again(
    lean_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = lean_app.asgi_handler
    while not isinstance(handler, ApiDispatch):
        handler = handler.app
    matched: list[str] = []
    original = ApiDispatch._match

    def counting(self: ApiDispatch, path: str, method: str) -> Any:
        matched.append(path)
        return original(self, path, method)

    monkeypatch.setattr(ApiDispatch, "_match", counting)
    secret = key_named(lean_app, "Owner - full")
    for _ in range(3):
        assert _call(lean_app, GET, secret)[0] == 200
    assert matched == [GET]


def test_stages_with_nothing_to_wait_for_are_plain_calls_and_the_others_are_awaited() -> None:
    ran: list[str] = []

    def plain(ctx: RequestContext) -> None:
        ran.append("plain")

    async def waiting(ctx: RequestContext) -> None:
        await asyncio.sleep(0)
        ran.append("awaited")

    def refusing(ctx: RequestContext) -> None:
        raise ApiError("NOT_FOUND", "nothing here")

    def answer(ctx: RequestContext) -> None:
        status = ctx.error.status if ctx.error is not None else 200
        ctx.response = EncodedResponse(status, b"{}", {})

    pipeline = Pipeline(Stages((plain, waiting, refusing, plain), (answer,)))
    request = ApiRequest(_scope(GET, []), _never, _never)
    response = asyncio.run(pipeline.run(UNROUTED, request, {}))
    assert ran == ["plain", "awaited"]
    assert isinstance(response, EncodedResponse) and response.status_code == 404


async def _never(*_: Any) -> Any:
    raise AssertionError("not called")


def test_a_revoked_key_is_refused_although_its_header_was_seen_before(lean_app: Any) -> None:
    with TestClient(lean_app, base_url="http://sandbox.local") as c:
        r = c.post("/_sandbox/keys", headers=ADMIN, json={"name": "short-lived"})
        assert r.status_code == 201, r.text
        minted = r.json()["data"]
        assert c.get(GET, headers=bearer(minted["key"])).status_code == 200
        r = c.delete(f"/_sandbox/keys/{minted['id']}", headers=ADMIN)
        assert r.status_code == 200, r.text
        r = c.get(GET, headers=bearer(minted["key"]))
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]

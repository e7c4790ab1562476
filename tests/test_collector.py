"""A serving process's collector: requests make no reference cycles, and full passes freeze
what survives them, so no pause walks the whole store."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from opsmerge_sandbox.collector import NEVER, Collector
from tests.conftest import ADMIN_TOKEN, bearer, key_named, make_app


class _Exchange:
    """One request as an ASGI server holds it: its `send` is a method of the object that also
    holds the scope (uvicorn's request cycle is such an object)."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        path, _, query = path.partition("?")
        self.scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "", "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 4010),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        self.body = body
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


@pytest.fixture()
def no_automatic_collection() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.enable()


def test_requests_of_every_kind_leave_no_reference_cycles(no_automatic_collection: None) -> None:
    app = make_app()
    owner = bearer(key_named(app, "Owner - full"))
    json_owner = {**owner, "Content-Type": "application/json", "X-Sandbox-Workspace": "cycles"}
    ticket = json.dumps({"subject": "Cycles", "client_id": "cli_acme"}).encode()
    requests = [
        ("GET", "/api/v1/clients/cli_acme", owner, b""),
        ("GET", "/api/v1/tickets?per_page=50", owner, b""),
        ("GET", "/api/v1/tickets?per_page=5&status=New&sort=-created_at", owner, b""),
        ("POST", "/api/v1/tickets", json_owner, ticket),
        ("PATCH", "/api/v1/clients/cli_acme", json_owner, b'{"industry": "Legal"}'),
        ("POST", "/api/v1/tickets", json_owner, b'{"subject": 5}'),  # 400
        ("GET", "/api/v1/clients/cli_nothing", owner, b""),  # 404
        ("GET", "/api/v1/clients", {}, b""),  # 401
        ("GET", "/api/v1/clients", {"Authorization": "Bearer om_wrong"}, b""),  # 401
        ("GET", "/api/v1/clients", {**owner, "Prefer": "code=503"}, b""),  # forced fault
        ("GET", "/api/v1/clients", {**owner, "Prefer": "code=429"}, b""),
        ("GET", "/api/v1/no-such-thing", owner, b""),  # no operation
        ("DELETE", "/api/v1/clients/cli_acme", owner, b""),  # refused: 409, referenced
        ("GET", "/healthz", {}, b""),
        ("GET", "/_sandbox/requests?limit=5", {"Authorization": f"Bearer {ADMIN_TOKEN}"}, b""),
        ("GET", "/_sandbox/requests", {}, b""),  # no admin token
    ]
    statuses: list[int] = []

    async def serve_all() -> None:
        async def one(method: str, path: str, headers: dict[str, str], body: bytes) -> None:
            exchange = _Exchange(method, path, headers, body)
            await app(exchange.scope, exchange.receive, exchange.send)
            statuses.append(exchange.status)

        for _ in range(3):  # a task per request, as a server runs them
            for request in requests:
                await asyncio.get_running_loop().create_task(one(*request))

    asyncio.run(serve_all())  # start-up work (caches, first workspace) is done once here
    gc.collect()
    statuses.clear()
    asyncio.run(serve_all())
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    garbage = Counter(type(o).__qualname__ for o in gc.garbage)
    gc.garbage.clear()
    assert {200, 201, 400, 401, 404, 409, 429, 503} <= set(statuses), statuses
    assert statuses.count(200) >= 3 * 4, statuses  # the PATCH and the control API answered
    assert not garbage, garbage.most_common(10)


class _Node:
    other: _Node | None = None


@pytest.fixture()
def gc_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_the_collector_leaves_the_oldest_generation_to_its_own_passes(gc_restored: None) -> None:
    collector = Collector()
    collector.take_over()
    young, middle, oldest = gc.get_threshold()
    assert oldest == NEVER and young > 0 and middle > 0  # young passes stay automatic
    assert gc.get_freeze_count() > 0  # what start-up built is out of every pass


def test_a_full_pass_frees_cycles_then_freezes_what_survived(gc_restored: None) -> None:
    collector = Collector()
    collector.take_over()
    frozen = gc.get_freeze_count()
    kept = [{"id": i, "tags": [str(i)]} for i in range(1000)]  # what a store keeps
    node = _Node()
    node.other = _Node()
    node.other.other = node
    gone = weakref.ref(node)
    del node
    pause_ms = collector.full_pass()
    assert gone() is None  # the cycle made before the pass was freed by it
    # survivors are frozen: out of the next passes (no generation the collector walks holds
    # them; the frozen count alone would also move with objects other threads free meanwhile)
    assert gc.get_freeze_count() > frozen
    walked = {id(o) for o in gc.get_objects()}
    assert not any(id(d) in walked or id(d["tags"]) in walked for d in kept)
    assert collector.passes == 1 and pause_ms >= 0 and collector.longest_ms == pause_ms


def _passes_while_serving(collector: Collector, seconds: float) -> int:
    """The full passes a collector's timer runs on a serving loop in `seconds`."""
    collector.take_over()

    async def serve_a_while() -> int:
        await collector.start()
        await asyncio.sleep(seconds)
        await collector.stop()
        return collector.passes

    return asyncio.run(serve_a_while())


def test_the_timer_runs_full_passes_on_the_serving_loop(gc_restored: None) -> None:
    assert _passes_while_serving(Collector(interval=0.01), 0.2) >= 3


def test_a_serving_collector_passes_several_times_a_second_so_each_pause_covers_little(
    gc_restored: None,
) -> None:
    # a pass walks what survived since the last one, and every request in flight waits for it:
    # passes a second apart paused a worker under a write burst for 15-25 ms
    assert _passes_while_serving(Collector(), 0.6) >= 3

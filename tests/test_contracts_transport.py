"""Where requests leave the harness: the production gate, the budget, pacing and recording.

A scripted server (httpx's MockTransport) stands in for a deployment where the exact sequence of
answers matters (a 429, then success); the real sandbox is used where it can say it itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from opsmerge_contracts.budget import Budget, BudgetExhausted
from opsmerge_contracts.exchange import Exchange
from opsmerge_contracts.pacing import Pacer
from opsmerge_contracts.routes import Router
from opsmerge_contracts.sandboxes import Sandbox, start_sandbox
from opsmerge_contracts.transport import Guard, GuardedTransport, Throttled, UnsafeRequestError
from opsmerge_sandbox.spec import load_spec

BASE = "http://deploy.example/api/v1"
KEY = "om_live_secretsecretsecret"


class Server:
    """A scripted server: answers in order, and remembers what reached it."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if len(self.answers) > 1:
            return self.answers.pop(0)
        return self.answers[0]


def ok(remaining: int = 299, reset: int = 60) -> httpx.Response:
    return httpx.Response(
        200,
        json={"data": {}},
        headers={
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        },
    )


def throttled(retry_after: str | None = "7") -> httpx.Response:
    headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "42"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return httpx.Response(
        429, json={"error": {"code": "RATE_LIMITED", "message": "slow down"}}, headers=headers
    )


def client(
    server: Server,
    profile: str = "staging",
    budget: int | None = None,
    pacer: Pacer | None = None,
    sink: Callable[[Exchange], None] | None = None,
) -> httpx.Client:
    guard = Guard(profile, Budget(budget), pacer, Router(load_spec()))
    transport = GuardedTransport(httpx.MockTransport(server), guard, sink)
    return httpx.Client(
        base_url=BASE, transport=transport, headers={"Authorization": f"Bearer {KEY}"}
    )


def waits() -> tuple[list[float], Pacer]:
    waited: list[float] = []
    return waited, Pacer(wait=waited.append, reserve=0)


# --- the production gate ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_production_refuses_anything_but_get_and_head_before_sending(method: str) -> None:
    server = Server(ok())
    with client(server, profile="production") as c, pytest.raises(UnsafeRequestError, match=method):
        c.request(method, "/tickets", json={})
    assert server.seen == []


def test_production_sends_get_and_head() -> None:
    server = Server(ok())
    with client(server, profile="production") as c:
        assert c.get("/tickets").status_code == 200
        assert c.head("/tickets").status_code == 200
    assert [r.method for r in server.seen] == ["GET", "HEAD"]


def test_staging_sends_writes() -> None:
    server = Server(ok())
    with client(server, profile="staging") as c:
        c.post("/tickets", json={"subject": "x"})
    assert [r.method for r in server.seen] == ["POST"]


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        Guard("yolo", Budget(None))


# --- the budget ----------------------------------------------------------------------------------


def test_the_budget_stops_the_request_that_would_exceed_it() -> None:
    server = Server(ok())
    with client(server, budget=2) as c:
        c.get("/tickets")
        c.get("/tickets")
        with pytest.raises(BudgetExhausted, match="budget of 2"):
            c.get("/tickets")
    assert len(server.seen) == 2


def test_retries_after_429_spend_the_budget_too() -> None:
    _, pacer = waits()
    server = Server(throttled(), ok())
    with client(server, budget=1, pacer=pacer) as c, pytest.raises(BudgetExhausted):
        c.get("/tickets")
    assert len(server.seen) == 1


def test_budget_arithmetic() -> None:
    budget = Budget(3)
    assert budget.allows(3) and not budget.allows(4)
    budget.spend()
    assert budget.remaining == 2 and not budget.allows(3)
    with pytest.raises(ValueError):
        Budget(-1)


# --- pacing ---------------------------------------------------------------------------------------


def test_a_429_is_waited_out_and_retried_not_returned() -> None:
    waited, pacer = waits()
    recorded: list[Exchange] = []
    server = Server(throttled("7"), ok())
    with client(server, pacer=pacer, sink=recorded.append) as c:
        response = c.get("/tickets")
    assert response.status_code == 200
    assert waited == [7.0]
    assert [e.role for e in recorded] == ["throttled", "call"]
    assert pacer.throttled == 1


def test_a_429_without_retry_after_waits_for_the_window_reset() -> None:
    waited, pacer = waits()
    with client(Server(throttled(None), ok()), pacer=pacer) as c:
        c.get("/tickets")
    assert waited == [42.0]


def test_endless_429s_end_in_throttled_not_a_failure_of_the_contract() -> None:
    waited, pacer = waits()
    with client(Server(throttled("1")), pacer=pacer) as c, pytest.raises(Throttled):
        c.get("/tickets")
    assert len(waited) == pacer.max_retries


def test_the_pacer_waits_for_the_reset_when_the_window_is_spent() -> None:
    waited, pacer = waits()
    with client(
        Server(ok(remaining=1, reset=30), ok(remaining=0, reset=30), ok()), pacer=pacer
    ) as c:
        c.get("/tickets")
        assert waited == []
        c.get("/tickets")
        assert waited == []
        c.get("/tickets")
    assert len(waited) == 1 and 20 < waited[0] <= 30


def test_the_pacer_keeps_a_bucket_per_key() -> None:
    waited, pacer = waits()
    server = Server(ok(remaining=0, reset=30))
    with client(server, pacer=pacer) as c:
        c.get("/tickets")
        c.get("/tickets", headers={"Authorization": "Bearer om_other_key_0000000"})
    assert waited == []


def test_pacing_can_be_switched_off_for_one_request() -> None:
    waited, pacer = waits()
    with client(Server(ok(remaining=0, reset=30), throttled(), ok()), pacer=pacer) as c:
        c.get("/tickets")
        response = c.get("/tickets", extensions={"opsmerge": {"pace": False, "retry_429": False}})
    assert response.status_code == 429 and waited == []


# --- recording ------------------------------------------------------------------------------------


def test_recorded_exchanges_mask_the_key_and_name_the_operation() -> None:
    recorded: list[Exchange] = []
    server = Server(ok())
    with client(server, sink=recorded.append) as c:
        c.get("/tickets/tkt_1", extensions={"opsmerge": {"role": "page", "meta": {"page": 2}}})
    [exchange] = recorded
    assert exchange.operation_id == "getTicket"
    assert exchange.role == "page" and exchange.meta == {"page": 2}
    assert exchange.request.headers["authorization"] == "Bearer om_live…"
    assert KEY not in repr(exchange)
    assert "opsmerge" not in server.seen[0].extensions


def test_a_key_echoed_back_by_the_server_is_masked_in_the_record() -> None:
    recorded: list[Exchange] = []
    echo = httpx.Response(
        401,
        json={"error": {"code": "AUTH_REQUIRED", "message": f"bad key {KEY}"}},
        headers={"X-Echo": KEY},
    )
    with client(Server(echo), sink=recorded.append) as c:
        c.get("/tickets")
    assert KEY not in recorded[0].response.body.decode()
    assert KEY not in str(recorded[0].response.headers)
    assert "om_live…" in recorded[0].response.body.decode()


def test_a_deliberately_malformed_key_is_recorded_as_sent() -> None:
    recorded: list[Exchange] = []
    with client(Server(ok()), sink=recorded.append) as c:
        c.get(
            "/tickets",
            headers={"Authorization": "Bearer not-a-key"},
            extensions={"opsmerge": {"key_label": "malformed"}},
        )
    assert recorded[0].request.headers["authorization"] == "Bearer not-a-key"


# --- against the sandbox: its clock is the pacer's wait -----------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = start_sandbox()
    try:
        yield box
    finally:
        box.close()


def test_paced_requests_never_see_a_429_from_the_sandbox(sandbox: Sandbox) -> None:
    key = sandbox.admin.mint_key("paced", rate_limit=3)["key"]
    pacer = Pacer(wait=lambda s: sandbox.admin.advance_clock(s))
    recorded: list[Exchange] = []
    guard = Guard("sandbox", Budget(None), pacer, Router(load_spec()))
    with httpx.Client(
        base_url=sandbox.base_url,
        headers={"Authorization": f"Bearer {key}"},
        transport=GuardedTransport(sandbox.transport, guard, recorded.append),
    ) as c:
        statuses = [c.get("/auth/me").status_code for _ in range(10)]
    assert statuses == [200] * 10
    assert all(e.role == "call" for e in recorded)
    assert pacer.throttled == 0 and pacer.waited >= 3 * 55


def test_an_unpaced_burst_is_throttled_and_the_wait_lets_the_retry_through(
    sandbox: Sandbox,
) -> None:
    key = sandbox.admin.mint_key("burst", rate_limit=2)["key"]
    pacer = Pacer(wait=lambda s: sandbox.admin.advance_clock(s))
    recorded: list[Exchange] = []
    guard = Guard("sandbox", Budget(None), pacer, Router(load_spec()))
    with httpx.Client(
        base_url=sandbox.base_url,
        headers={"Authorization": f"Bearer {key}"},
        transport=GuardedTransport(sandbox.transport, guard, recorded.append),
    ) as c:
        for _ in range(3):
            assert c.get("/auth/me", extensions={"opsmerge": {"pace": False}}).status_code == 200
    assert [e.role for e in recorded] == ["call", "call", "throttled", "call"]
    assert pacer.throttled == 1

"""A failing receiver sees the documented retries on the sandbox clock, then the action is
disabled; fault rules duplicate, reorder, delay and drop deliveries."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from opsmerge_contracts.sandboxes import Sandbox
from opsmerge_contracts.webhook_receiver import WebhookReceiver
from opsmerge_sandbox.spec import load_spec
from tests.webhooks_support import (
    ADMIN,
    add_fault,
    advance,
    deliveries,
    make_rule,
    make_ticket,
    wait_logged,
)

POLICY = load_spec().events.delivery  # type: ignore[union-attr]


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def test_the_documented_schedule(api: httpx.Client) -> None:
    assert POLICY.retry_after == (60, 300, 1800, 7200, 21600)
    assert POLICY.disable_after == 10


def test_a_receiver_answering_500_sees_the_retries_then_the_action_is_disabled(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.answer_with(500)
    rule = make_rule(api, receiver, trigger="ticket.created")
    make_ticket(api)
    receiver.wait_for(rule_id=rule["id"])
    for n, wait in enumerate(POLICY.retry_after, start=1):
        log = wait_logged(api, rule["id"], n)
        assert log[-1]["outcome"] == "failed" and log[-1]["response_status"] == 500
        assert log[-1]["next_attempt_at"] is not None
        advance(box, api, wait - 1)
        receiver.expect_none(rule_id=rule["id"], within=0.05)  # not due yet
        advance(box, api, 1)
        (again,) = receiver.wait_for(rule_id=rule["id"])
        assert again.attempt == n + 1
    log = wait_logged(api, rule["id"], POLICY.attempts)
    assert [d["attempt"] for d in log] == list(range(1, POLICY.attempts + 1))
    assert len({d["delivery_id"] for d in log}) == 1
    assert log[-1]["next_attempt_at"] is None  # the last attempt: no retry follows
    sent = receiver.received(rule_id=rule["id"])
    assert {d.delivery_id for d in sent} == {log[0]["delivery_id"]}
    # a second event: its failures add up to disable-after consecutive failed attempts
    make_ticket(api)
    receiver.wait_for(rule_id=rule["id"])
    left = POLICY.disable_after - POLICY.attempts - 1
    for n, wait in enumerate(POLICY.retry_after[:left], start=POLICY.attempts + 1):
        wait_logged(api, rule["id"], n)
        advance(box, api, wait)
        receiver.wait_for(rule_id=rule["id"])
    wait_logged(api, rule["id"], POLICY.disable_after)
    action = api.get(f"/ticket-rules/{rule['id']}").json()["data"]["actions"][0]
    assert action["enabled"] is False
    assert "10 consecutive failed" in action["disabled_reason"]
    # disabled: no retry of the second delivery, and a new event posts nothing
    advance(box, api, 86400)
    make_ticket(api)
    receiver.expect_none(rule_id=rule["id"], within=0.3)
    assert len(deliveries(api, rule["id"])) == POLICY.disable_after
    firings = api.get(f"/ticket-rules/{rule['id']}/firings").json()["data"]["items"]
    assert max(firings, key=lambda f: f["fired_at"])["actions"][0]["outcome"] == "skipped"


def test_a_success_resets_the_failure_count(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.answer_with(503)
    rule = make_rule(api, receiver, trigger="ticket.created")
    make_ticket(api)
    receiver.wait_for(rule_id=rule["id"])
    wait_logged(api, rule["id"], 1)
    receiver.answer_with(204)
    advance(box, api, POLICY.retry_after[0])
    receiver.wait_for(rule_id=rule["id"])
    log = wait_logged(api, rule["id"], 2)
    assert [d["outcome"] for d in log] == ["failed", "succeeded"]
    assert log[-1]["response_status"] == 204


def test_a_slow_receiver_times_out_and_is_retried(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.answer_with(200, delay=POLICY.timeout + 1)
    rule = make_rule(api, receiver, trigger="ticket.created")
    make_ticket(api)
    log = wait_logged(api, rule["id"], 1, timeout=POLICY.timeout + 5)
    assert log[0]["outcome"] == "failed"
    assert "no answer within" in log[0]["error"]
    assert log[0]["duration_ms"] >= POLICY.timeout * 1000 * 0.9


def test_a_duplicate_fault_sends_one_delivery_twice(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = make_rule(api, receiver, trigger="ticket.created")
    add_fault(
        box,
        {
            "match": {"deliveries": True, "rule_id": rule["id"]},
            "effect": {"delivery": "duplicate"},
            "times": 1,
        },
    )
    make_ticket(api)
    first, second = receiver.wait_for(rule_id=rule["id"], count=2)
    assert first.delivery_id == second.delivery_id and first.body == second.body
    assert first.verified and second.verified


def test_a_reorder_fault_lets_the_next_delivery_overtake(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = make_rule(api, receiver, trigger="ticket.created")
    add_fault(
        box,
        {
            "match": {"deliveries": True, "rule_id": rule["id"]},
            "effect": {"delivery": "reorder"},
            "times": 1,
        },
    )
    one = make_ticket(api, subject="first")
    two = make_ticket(api, subject="second")
    got = receiver.wait_for(rule_id=rule["id"], count=2)
    assert [d.json["data"]["object"]["id"] for d in got] == [two["id"], one["id"]]


def test_without_faults_deliveries_of_an_action_arrive_in_order(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    rule = make_rule(api, receiver, trigger="ticket.created")
    made = [make_ticket(api, subject=f"n{i}")["id"] for i in range(5)]
    got = receiver.wait_for(rule_id=rule["id"], count=5)
    assert [d.json["data"]["object"]["id"] for d in got] == made


def test_drop_and_delay_faults(box: Sandbox, api: httpx.Client, receiver: WebhookReceiver) -> None:
    rule = make_rule(api, receiver, trigger="ticket.created")
    add_fault(
        box,
        {
            "match": {"deliveries": True, "rule_id": rule["id"]},
            "effect": {"delivery": "drop"},
            "times": 1,
        },
    )
    make_ticket(api)
    receiver.expect_none(rule_id=rule["id"], within=0.3)
    assert [d["outcome"] for d in wait_logged(api, rule["id"], 1)] == ["dropped"]
    add_fault(
        box,
        {
            "match": {"deliveries": True, "rule_id": rule["id"]},
            "effect": {"delivery": "delay", "delay_ms": 400},
            "times": 1,
        },
    )
    make_ticket(api)
    receiver.expect_none(rule_id=rule["id"], within=0.2)
    receiver.wait_for(rule_id=rule["id"], timeout=3)


def test_a_delivery_fault_rule_must_have_a_delivery_effect(box: Sandbox) -> None:
    from tests.webhooks_support import ADMIN

    r = httpx.post(
        f"{box.root_url}/_sandbox/faults",
        json={"match": {"deliveries": True}, "effect": {"status": 500}},
        headers=ADMIN,
    )
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["field"].startswith("effect.")
    r = httpx.post(
        f"{box.root_url}/_sandbox/faults",
        json={"match": {"path": "/tickets"}, "effect": {"delivery": "drop"}},
        headers=ADMIN,
    )
    assert r.status_code == 400


def test_a_full_queue_drops_the_delivery_and_says_so_in_the_journal(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    deliveries_queue = box.app.state.sandbox.events.deliveries
    receiver.answer_with(200, delay=1.0)
    rule = make_rule(api, receiver, trigger="ticket.created")
    saved = deliveries_queue.max_pending
    # room for two more: retries other tests left waiting count against the bound too
    deliveries_queue.max_pending = deliveries_queue.pending + len(deliveries_queue.retries) + 2
    try:
        for i in range(4):
            make_ticket(api, subject=f"burst {i}")
    finally:
        deliveries_queue.max_pending = saved
    log = wait_logged(api, rule["id"], 2)
    dropped = [d for d in log if d["outcome"] == "dropped"]
    assert len(dropped) == 2 and all(d["error"] == "the webhook queue is full" for d in dropped)
    workspace = api.headers["X-Sandbox-Workspace"]
    journal = httpx.get(
        f"{box.root_url}/_sandbox/requests", params={"workspace": workspace}, headers=ADMIN
    ).json()["data"]["items"]
    full = [e for e in journal if (e["fault"] or "").startswith("webhook queue full")]
    assert len(full) == 2 and all(e["path"] == "/hooks" for e in full)
    queue = httpx.get(f"{box.root_url}/_sandbox/webhooks", headers=ADMIN).json()["data"]
    assert queue["overflowed"] >= 2


def test_a_deleted_rule_sends_no_more_retries(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.answer_with(500)
    rule = make_rule(api, receiver, trigger="ticket.created")
    make_ticket(api)
    receiver.wait_for(rule_id=rule["id"])
    wait_logged(api, rule["id"], 1)
    assert api.delete(f"/ticket-rules/{rule['id']}").status_code == 200
    advance(box, api, POLICY.retry_after[0])
    receiver.expect_none(rule_id=rule["id"], within=0.3)


def test_a_workspace_reset_forgets_its_waiting_retries(
    box: Sandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.answer_with(500)
    rule = make_rule(api, receiver, trigger="ticket.created")
    make_ticket(api)
    receiver.wait_for(rule_id=rule["id"])
    wait_logged(api, rule["id"], 1)
    queue = f"{box.root_url}/_sandbox/webhooks"
    waiting = httpx.get(queue, headers=ADMIN).json()["data"]["retries_waiting"]
    workspace = api.headers["X-Sandbox-Workspace"]
    r = httpx.post(f"{box.root_url}/_sandbox/workspaces/{workspace}/reset", headers=ADMIN)
    assert r.status_code == 200
    assert httpx.get(queue, headers=ADMIN).json()["data"]["retries_waiting"] == waiting - 1
    assert api.get(f"/ticket-rules/{rule['id']}").status_code == 404
    advance(box, api, 86400)
    receiver.expect_none(rule_id=rule["id"], within=0.3)

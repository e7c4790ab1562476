"""Webhook deliveries: posted from the sandbox process, off the request path, on the clock.

A rule's `send_webhook` action hands a delivery to `Deliveries.submit`, which never waits: the
delivery joins its action's lane (deliveries of one action go out in the order they were made)
and a task drains the lane through one shared `httpx.AsyncClient`, at most `concurrency` posts
at a time. What is waiting or in flight is bounded: past `max_pending` a delivery is dropped,
logged as such, and the overflow is written to the journal. A slow or dead receiver holds only
its own lane, never a request.

Every attempt is written to the delivery log (the spec's deliveries collection). A timeout, a
connection error or a non-2xx answer schedules a retry after the spec's `retry-after-seconds`
on the workspace's sandbox clock, so advancing the clock makes due retries run (`run_due`, called
by the clock endpoint and a periodic tick). After `disable-after` consecutive failed attempts the
action is disabled (an audited change of the rule) and its waiting retries are cancelled.

Fault rules on deliveries (`match.deliveries`) duplicate, delay, hold back (reorder) or drop a
delivery, so a receiver can be proved idempotent and order-tolerant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opsmerge_sandbox.clock import format_iso
from opsmerge_sandbox.events.allowlist import WebhookAllow
from opsmerge_sandbox.events.declarations import EventModel
from opsmerge_sandbox.events.signing import signature
from opsmerge_sandbox.journal import Entry

if TYPE_CHECKING:
    import httpx

    from opsmerge_sandbox.state import SandboxState

Lane = tuple[str, str, int]  # workspace, rule id, action index
log = logging.getLogger("sandbox.webhooks")
USER_AGENT = "OpsMerge-Sandbox-Webhooks/1"
_REORDER_POLL = 0.02


@dataclass(slots=True)
class Delivery:
    """One event on its way to one webhook action's URL; retries keep the delivery id."""

    workspace: str
    rule_id: str
    action_index: int
    url: str
    secret: str
    event_type: str
    event_id: str
    delivery_id: str
    body: bytes
    attempt: int = 1
    due: float = 0.0  # retries: when on the workspace's clock

    @property
    def lane(self) -> Lane:
        return (self.workspace, self.rule_id, self.action_index)


@dataclass(slots=True)
class Attempt:
    """What one post came to."""

    outcome: str  # succeeded | failed | dropped
    status: int | None = None
    error: str | None = None
    duration_ms: float = 0.0


@dataclass(slots=True)
class Deliveries:
    state: SandboxState
    model: EventModel
    allow: WebhookAllow
    # writes the attempt's log record, and disables an action: supplied by the engine, which
    # owns the audited write path
    log: Callable[[Delivery, Attempt, str | None], None]
    disable: Callable[[Delivery, str], None]
    # whether the delivery's rule still exists (a deleted rule's deliveries are not sent)
    alive: Callable[[Delivery], bool]
    max_pending: int = 1000
    concurrency: int = 8
    lanes: dict[Lane, deque[Delivery]] = field(default_factory=dict)
    draining: dict[Lane, asyncio.Task[None]] = field(default_factory=dict)
    retries: list[Delivery] = field(default_factory=list)
    failures: dict[Lane, int] = field(default_factory=dict)  # consecutive failed attempts
    overflowed: int = 0
    sent: int = 0
    in_flight: int = 0
    stopping: bool = False  # shutting down: a lane that ends starts no other
    _client: httpx.AsyncClient | None = None
    _gate: asyncio.Semaphore | None = None

    # ---------------------------------------------------------------- lifecycle
    async def stop(self) -> None:
        """At shutdown: lanes stop where they are and the shared client closes."""
        self.stopping = True
        tasks = list(self.draining.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.draining.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _ensure_client(self) -> httpx.AsyncClient:
        """The shared client, made on first use (httpx is imported only by a sandbox that
        delivers, so start-up does not pay for it)."""
        if self._client is None:
            import httpx

            policy = self.model.delivery
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(policy.timeout),
                follow_redirects=False,
                trust_env=False,  # a proxy from the environment must not carry webhooks away
                limits=httpx.Limits(max_connections=self.concurrency * 2),
            )
            self._gate = asyncio.Semaphore(self.concurrency)
        return self._client

    # ---------------------------------------------------------------- queueing
    @property
    def pending(self) -> int:
        """Deliveries queued in a lane or being sent now (retries waiting are not counted)."""
        return sum(len(q) for q in self.lanes.values()) + self.in_flight

    def submit(self, delivery: Delivery) -> bool:
        """Queue a delivery without waiting; False (logged, journaled) when the queue is full."""
        if self.pending + len(self.retries) >= self.max_pending:
            self.overflowed += 1
            self._journal_overflow(delivery)
            self.log(delivery, Attempt("dropped", error="the webhook queue is full"), None)
            return False
        self.lanes.setdefault(delivery.lane, deque()).append(delivery)
        self._kick(delivery.lane)
        return True

    def _kick(self, lane: Lane) -> None:
        if lane in self.draining:
            return
        self._ensure_client()
        self.draining[lane] = asyncio.get_running_loop().create_task(
            self._drain(lane), name=f"webhook-lane-{lane[1]}-{lane[2]}"
        )

    def run_due(self) -> int:
        """Queue every retry whose time has come on its workspace's clock; returns how many."""
        if not self.retries:
            return 0
        due: list[Delivery] = []
        waiting: list[Delivery] = []
        for d in self.retries:
            (due if self._now(d.workspace) >= d.due else waiting).append(d)
        self.retries = waiting
        for d in sorted(due, key=lambda d: d.due):
            self.lanes.setdefault(d.lane, deque()).append(d)
            self._kick(d.lane)
        return len(due)

    def cancel(self, workspace: str, rule_id: str | None = None, why: str = "") -> int:
        """Drop waiting deliveries of a workspace (or of one rule), each logged `cancelled`."""
        gone = [
            d
            for d in self.retries
            if d.workspace == workspace and (rule_id is None or d.rule_id == rule_id)
        ]
        self.retries = [d for d in self.retries if d not in gone]
        for lane in [k for k in self.lanes if k[0] == workspace and rule_id in (None, k[1])]:
            queue = self.lanes.pop(lane)
            gone.extend(queue)
            queue.clear()  # a lane still draining must not send what was cancelled
        if why:
            for d in gone:
                self.log(d, Attempt("cancelled", error=why), None)
        return len(gone)

    def forget(self, workspace: str | None) -> None:
        """A reset: the workspace's deliveries and failure counts go with its records."""
        names = {k[0] for k in [*self.lanes, *self.failures]} | {d.workspace for d in self.retries}
        for name in names:
            if workspace is None or name == workspace:
                self.cancel(name)
                for lane in [k for k in self.failures if k[0] == name]:
                    del self.failures[lane]

    def view(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "retries_waiting": len(self.retries),
            "next_retry_at": min((format_iso(d.due) for d in self.retries), default=None),
            "overflowed": self.overflowed,
            "max_pending": self.max_pending,
            "sent": self.sent,
            "allowed": self.allow.describe(),
        }

    # ---------------------------------------------------------------- sending
    async def _drain(self, lane: Lane) -> None:
        try:
            queue = self.lanes.get(lane)
            while queue:
                delivery = queue.popleft()
                self.in_flight += 1
                try:
                    await self._deliver(delivery, queue)
                except Exception:  # one broken delivery must not stall the lane behind it
                    log.exception("webhook delivery %s failed in the sandbox", delivery.delivery_id)
                finally:
                    self.in_flight -= 1
                queue = self.lanes.get(lane)
        finally:
            self.draining.pop(lane, None)
            if not self.lanes.get(lane):
                self.lanes.pop(lane, None)
            elif not self.stopping:  # cancelled with work left: a new task takes it on
                self._kick(lane)

    async def _deliver(self, delivery: Delivery, queue: deque[Delivery]) -> None:
        if not self.alive(delivery):
            return
        rule = self.state.faults.pick_delivery(
            delivery.workspace, delivery.rule_id, delivery.event_type
        )
        effect = rule.effect if rule is not None else None
        what = effect.delivery if effect is not None else None
        if what == "drop" and rule is not None:
            self.log(delivery, Attempt("dropped", error=f"dropped by fault rule {rule.id}"), None)
            return
        if what == "delay" and effect is not None:
            await asyncio.sleep(effect.delay_ms / 1000)
        hold = effect.delay_ms / 1000 if effect is not None else 0.0
        if what == "reorder" and await self._held_back(delivery, queue, hold):
            return
        await self._attempt(delivery)
        if what == "duplicate":
            await self._attempt(delivery, duplicate=True)

    async def _held_back(self, delivery: Delivery, queue: deque[Delivery], hold: float) -> bool:
        """Reorder: let the next delivery of the lane go first (waiting up to `hold` for one)."""
        deadline = time.monotonic() + hold
        while not queue and time.monotonic() < deadline:
            await asyncio.sleep(_REORDER_POLL)
        if not queue:
            return False
        nxt = queue.popleft()
        queue.appendleft(delivery)  # sent right after the one that overtook it
        await self._attempt(nxt)
        return True

    def _now(self, workspace: str) -> float:
        return time.time() + self.state.clock.offset_of(workspace)

    async def _attempt(self, delivery: Delivery, duplicate: bool = False) -> None:
        import httpx

        client = self._ensure_client()
        refusal = self.allow.refusal(delivery.url, self.model.delivery.max_url_length)
        if refusal is not None:  # the operator narrowed the list since the rule was made
            self.log(delivery, Attempt("dropped", error=f"url {refusal}"), None)
            return
        names = self.model.delivery.headers
        stamp = int(self._now(delivery.workspace))
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            names["signature"]: signature(delivery.secret, stamp, delivery.body),
            names["event"]: delivery.event_type,
            names["delivery"]: delivery.delivery_id,
            names["attempt"]: str(delivery.attempt),
        }
        assert self._gate is not None
        started = time.perf_counter()
        result = Attempt("failed")
        async with self._gate:
            try:
                answer = await client.post(delivery.url, content=delivery.body, headers=headers)
                result.status = answer.status_code
                if 200 <= answer.status_code < 300:
                    result.outcome = "succeeded"
                else:
                    result.error = f"the receiver answered {answer.status_code}"
            except httpx.TimeoutException:
                result.error = f"no answer within {self.model.delivery.timeout:g} s"
            except (httpx.HTTPError, OSError) as exc:
                result.error = f"{type(exc).__name__}: {str(exc)[:200] or 'connection failed'}"
        result.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        self.sent += 1
        if duplicate:  # a copy a fault sent: logged, but it changes no retry or failure count
            self.log(delivery, result, None)
            return
        self._settle(delivery, result)

    def _settle(self, delivery: Delivery, result: Attempt) -> None:
        lane = delivery.lane
        if result.outcome == "succeeded":
            self.failures.pop(lane, None)
            self.log(delivery, result, None)
            return
        failures = self.failures[lane] = self.failures.get(lane, 0) + 1
        policy = self.model.delivery
        if failures >= policy.disable_after:
            self.log(delivery, result, None)
            why = f"disabled after {failures} consecutive failed deliveries"
            self._cancel_lane(lane, why)
            self.failures.pop(lane, None)
            self.disable(delivery, why)
            return
        if delivery.attempt > len(policy.retry_after):
            self.log(delivery, result, None)  # the last attempt: no retry follows
            return
        wait = policy.retry_after[delivery.attempt - 1]
        delivery.due = self._now(delivery.workspace) + wait
        self.log(delivery, result, format_iso(delivery.due))
        delivery.attempt += 1
        self.retries.append(delivery)

    def _cancel_lane(self, lane: Lane, why: str) -> None:
        gone = [d for d in self.retries if d.lane == lane]
        self.retries = [d for d in self.retries if d.lane != lane]
        queue = self.lanes.pop(lane, deque())
        gone.extend(queue)
        queue.clear()
        for d in gone:
            self.log(d, Attempt("cancelled", error=why), None)

    def _journal_overflow(self, delivery: Delivery) -> None:
        parts = urlsplit(delivery.url)
        self.state.journal.add(
            Entry(
                at=self._now(delivery.workspace),
                method="POST",
                path=parts.path or "/",
                query="",
                operation_id=None,
                status=0,
                key_name=None,
                key_id=None,
                workspace=delivery.workspace,
                fault=(
                    f"webhook queue full ({self.max_pending}): delivery {delivery.delivery_id} "
                    f"to {parts.hostname} dropped"
                ),
                duration_ms=0.0,
            )
        )

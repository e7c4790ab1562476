"""A webhook receiver for integrators' tests: a real HTTP server on loopback that records what
it is sent, verifies signatures, and lets a test wait for "the next delivery for this rule".

The pytest plugin offers it as the `opsmerge_webhook_receiver` fixture. Point a rule's webhook
URL at `receiver.url`, tell the receiver the secret the rule's create answer showed
(`receiver.trust(rule_id, secret)`), make the sandbox fire, then `receiver.wait_for(rule_id=...)`.
Each recorded delivery says whether its signature verified and which spec schema problems its
body has (`problems`), so a test asserts on both. `answer_with(status, delay=)` makes the
receiver fail or stall, to watch retries and disabling.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opsmerge_contracts.checks import CheckContext, Result, run_checks
from opsmerge_contracts.exchange import Exchange, RecordedRequest, RecordedResponse
from opsmerge_contracts.webhook_payloads import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    payload_problems,
)
from opsmerge_sandbox.events.signing import verify
from opsmerge_sandbox.spec import Spec, load_spec


@dataclass(frozen=True, slots=True)
class ReceivedDelivery:
    """One POST the receiver took, as it arrived."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    received_at: float  # time.monotonic()
    verified: bool | None  # None: no secret is known for its rule
    problems: tuple[str, ...]  # what is wrong with the body against the spec's webhooks

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def rule_id(self) -> str | None:
        try:
            return str(self.json.get("rule_id"))
        except (ValueError, AttributeError):
            return None

    @property
    def event_type(self) -> str | None:
        return self.headers.get(EVENT_HEADER)

    @property
    def delivery_id(self) -> str | None:
        return self.headers.get(DELIVERY_HEADER)

    @property
    def attempt(self) -> int:
        return int(self.headers.get(ATTEMPT_HEADER, "0") or 0)

    def exchange(self, url: str, status: int) -> Exchange:
        """The delivery as the contract checks see an exchange (role `webhook`)."""
        request = RecordedRequest("POST", url, dict(self.headers), self.body)
        return Exchange(request, RecordedResponse(status, {}), self.event_type, role="webhook")


@dataclass
class WebhookReceiver:
    host: str = "127.0.0.1"
    deliveries: list[ReceivedDelivery] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # rule id -> signing secret
    status: int = 200
    delay: float = 0.0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _seen: dict[tuple[str | None, str | None], int] = field(default_factory=dict)

    # ------------------------------------------------------------- serving
    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                receiver._record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                status, delay = receiver.status, receiver.delay
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a test's output is not the place for an access log

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the receiver first"
        return f"http://{self.host}:{self._server.server_address[1]}/hooks"

    # ------------------------------------------------------------- behaviour
    def trust(self, rule_id: str, secret: str) -> None:
        """The secret a rule's create answer showed: its deliveries are verified with it."""
        self.secrets[rule_id] = secret

    def answer_with(self, status: int = 200, delay: float = 0.0) -> None:
        """How the receiver answers from now on (a 500, or a stall of `delay` seconds)."""
        self.status, self.delay = status, delay

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        rule_id = payload.get("rule_id") if isinstance(payload, dict) else None
        secret = self.secrets.get(str(rule_id))
        verified = None
        if secret is not None:
            verified = verify(secret, headers.get(SIGNATURE_HEADER, ""), body)
        problems = tuple(payload_problems(headers.get(EVENT_HEADER), payload))
        with self._cond:
            self.deliveries.append(
                ReceivedDelivery(path, headers, body, time.monotonic(), verified, problems)
            )
            self._cond.notify_all()

    # ------------------------------------------------------------- waiting
    def received(
        self, rule_id: str | None = None, event_type: str | None = None
    ) -> list[ReceivedDelivery]:
        with self._cond:
            return [
                d
                for d in self.deliveries
                if (rule_id is None or d.rule_id == rule_id)
                and (event_type is None or d.event_type == event_type)
            ]

    def wait_for(
        self,
        rule_id: str | None = None,
        event_type: str | None = None,
        timeout: float = 5.0,
        count: int = 1,
    ) -> list[ReceivedDelivery]:
        """The next `count` deliveries for this rule (and event type) not yet waited for;
        AssertionError naming what arrived when they do not come within `timeout` seconds."""
        key = (rule_id, event_type)
        start = self._seen.get(key, 0)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    d
                    for d in self.deliveries
                    if (rule_id is None or d.rule_id == rule_id)
                    and (event_type is None or d.event_type == event_type)
                ]
                if len(found) >= start + count:
                    self._seen[key] = start + count
                    return found[start : start + count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} more webhook deliveries for rule {rule_id} "
                        f"(event {event_type or 'any'}) within {timeout} s; "
                        f"{len(found) - start} came, {len(self.deliveries)} in all"
                    )
                self._cond.wait(left)

    def check(self, spec: Spec | None = None) -> list[Result]:
        """The `webhook_payload` contract check over every delivery received so far."""
        with self._cond:
            exchanges = [d.exchange(self.url, self.status) for d in self.deliveries]
        context = CheckContext(spec or load_spec())
        return run_checks(context, exchanges, only=["webhook_payload"])

    def expect_none(self, rule_id: str | None = None, within: float = 0.5) -> None:
        """Nothing more arrives for this rule within `within` seconds."""
        before = len(self.received(rule_id))
        time.sleep(within)
        after = self.received(rule_id)
        assert len(after) == before, f"unexpected delivery: {after[before].json}"

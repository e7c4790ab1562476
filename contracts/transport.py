"""The one place requests leave the harness: safety gate, budget, pacing and recording.

Every client the harness hands out (the probes', the scenarios', `opsmerge_client`) sends through
`GuardedTransport`, so the production profile's read-only rule is enforced where requests are
sent, not by filtering which tests run: a POST raises before a byte goes out, whoever tries it.

Per-request wishes travel in the request's `opsmerge` extension (popped before the request is
passed on): `role` and `meta` for the checks, `key_label` for reports, `pace` and `retry_429`
to switch pacing off for the probe that must hit the limit on purpose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from opsmerge_contracts.budget import Budget
from opsmerge_contracts.exchange import (
    Exchange,
    RecordedRequest,
    RecordedResponse,
    mask_authorization,
    mask_key,
)
from opsmerge_contracts.pacing import Pacer, bucket_of
from opsmerge_contracts.routes import Router

SAFE_METHODS = frozenset({"GET", "HEAD"})
PROFILES = ("sandbox", "staging", "production")
_UNMASKED_LABELS = frozenset({"malformed"})  # made-up keys, shown as sent so a reader sees why


class UnsafeRequestError(RuntimeError):
    """The production profile refused a request that could change something."""


class Throttled(RuntimeError):
    """The target kept answering 429 after every wait: a reason to skip, never a failure."""


@dataclass(slots=True)
class Guard:
    """What every guarded transport of a run shares: the profile, the budget and the pacer."""

    profile: str
    budget: Budget
    pacer: Pacer | None = None
    router: Router | None = None
    sent: int = 0
    refused: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(
                f"unknown profile {self.profile!r}: expected one of {', '.join(PROFILES)}"
            )

    def charge(self, requests: int) -> None:
        """Count requests sent before the guard existed (the target check) against the budget."""
        for _ in range(requests):
            if not self.budget.allows(1):
                break
            self.budget.spend()
            self.sent += 1

    def admit(self, method: str, url: str) -> None:
        if self.profile == "production" and method.upper() not in SAFE_METHODS:
            self.refused.append(f"{method.upper()} {url}")
            raise UnsafeRequestError(
                f"the production profile sends only GET and HEAD; refused {method.upper()} {url}"
            )


Sink = Callable[[Exchange], None]


class GuardedTransport(httpx.BaseTransport):
    def __init__(
        self,
        inner: httpx.BaseTransport,
        guard: Guard,
        sink: Sink | None = None,
        owns_inner: bool = False,
    ) -> None:
        self.inner = inner
        self.guard = guard
        self.sink = sink
        self.owns_inner = owns_inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        wishes: dict[str, Any] = dict(request.extensions.pop("opsmerge", None) or {})
        self.guard.admit(request.method, str(request.url))
        pacer = self.guard.pacer
        pace = wishes.get("pace", True) and pacer is not None
        retry = wishes.get("retry_429", True) and pacer is not None
        bucket = bucket_of(request.headers.get("authorization"))
        request.read()
        attempts = 0
        while True:
            if pace and pacer is not None:
                pacer.before(bucket)
            self.guard.budget.spend()
            self.guard.sent += 1
            started = time.perf_counter()
            response = self.inner.handle_request(request)
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if pacer is not None:
                pacer.after(bucket, response.headers)
            if response.status_code == 429 and retry and pacer is not None:
                self._record(request, response, elapsed, {**wishes, "role": "throttled"})
                if attempts >= pacer.max_retries:
                    raise Throttled(
                        f"{request.method} {request.url} was answered 429 after {attempts} waits"
                    )
                pacer.throttled_wait(bucket, response.headers)
                attempts += 1
                continue
            self._record(request, response, elapsed, wishes)
            return response

    def _record(
        self,
        request: httpx.Request,
        response: httpx.Response,
        elapsed: float,
        wishes: dict[str, Any],
    ) -> None:
        if self.sink is None or wishes.get("record") is False:
            return
        label = str(
            wishes.get("key_label") or ("primary" if "authorization" in request.headers else "none")
        )
        headers = {k.lower(): v for k, v in request.headers.items()}
        secret = ""
        if "authorization" in headers and label not in _UNMASKED_LABELS:
            secret = headers["authorization"].partition(" ")[2].strip()
            headers["authorization"] = mask_authorization(headers["authorization"])
        router = self.guard.router
        op = router.match(request.method, request.url.path) if router else None
        self.sink(
            Exchange(
                request=RecordedRequest(
                    request.method, str(request.url), headers, _scrub(request.content, secret)
                ),
                response=RecordedResponse(
                    response.status_code,
                    {k.lower(): _scrub_text(v, secret) for k, v in response.headers.items()},
                    _scrub(response.content, secret),
                ),
                operation_id=wishes.get("operation_id") or (op.operation_id if op else None),
                role=str(wishes.get("role") or "call"),
                meta=dict(wishes.get("meta") or {}),
                key_label=label,
                elapsed_ms=elapsed,
            )
        )

    def close(self) -> None:
        if self.owns_inner:
            self.inner.close()


def _scrub(content: bytes, secret: str) -> bytes:
    """The content with the key masked, should a server echo it back (records reach reports)."""
    if len(secret) < 8 or secret.encode() not in content:
        return content
    return content.replace(secret.encode(), mask_key(secret).encode())


def _scrub_text(text: str, secret: str) -> str:
    return text.replace(secret, mask_key(secret)) if len(secret) >= 8 and secret in text else text

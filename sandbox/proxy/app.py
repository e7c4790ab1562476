"""The validating proxy: forwards every request to a real deployment and judges the answer.

A bare ASGI app (no framework: every request is forwarded, so routing and responses are ours
to write). It sends the client's request on unchanged, key included, through a keep-alive pool
of connections to the upstream (`upstream.py`), and sends the upstream's answer back
unchanged: status, headers and the body's bytes. Before it does, the exchange is judged by the
contract harness's own checks (`contracts/checks.py`) against the operation the spec's route
table matches, and the ids of the checks that failed are added in one header,
`X-Sandbox-Violations`. The client's request is judged too (`request_valid`: parameters and
body against the operation). With `errors`, an answer that breaks the spec is replaced by a 502
`CONTRACT_VIOLATION` in the error envelope naming each check, as Prism's `--errors` does; a
request that does, with a correct answer, is only named (the upstream's 4xx says it already).

An operation the upstream does not have (it answers 404, 405 or 501 and has never answered that
operation otherwise) can be served by an in-process sandbox (`fallback`), for APIs that are
partly built; such answers say so in `X-Sandbox-Served-By: sandbox`.

`/_proxy/violations` and `/_proxy/summary` (with the admin token in `X-Sandbox-Admin-Token`)
list what was found; everything else is forwarded, `/_sandbox` included, so a contract run
through the proxy can still drive a served sandbox.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opsmerge_contracts.checks import OBSERVED_ONLY, CheckContext, Result, run_checks
from opsmerge_contracts.exchange import (
    Exchange,
    RecordedRequest,
    RecordedResponse,
    mask_authorization,
)
from opsmerge_contracts.routes import Router
from opsmerge_sandbox.errors import ApiError, Detail
from opsmerge_sandbox.har import HarWriter, entry
from opsmerge_sandbox.journal import redact_path
from opsmerge_sandbox.proxy.fallback import Fallback
from opsmerge_sandbox.proxy.findings import Findings
from opsmerge_sandbox.proxy.upstream import UpstreamError, UpstreamPool, UpstreamTimeout
from opsmerge_sandbox.spec import Spec

VIOLATIONS_HEADER = "X-Sandbox-Violations"
SERVED_BY_HEADER = "X-Sandbox-Served-By"
TOKEN_HEADER = b"x-sandbox-admin-token"
ADMIN_PREFIX = "/_proxy"
# what is not forwarded: the connection's own headers (RFC 9110 §7.6.1); Host and
# Content-Length, which the connection to the upstream writes for itself; and Expect, since the
# proxy has the whole body before it sends anything
_HOP_REQUEST = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
     b"transfer-encoding", b"upgrade", b"host", b"content-length", b"expect"}
)  # fmt: skip
_HOP_RESPONSE = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"trailer", b"transfer-encoding",
     b"upgrade"}
)  # fmt: skip
log = logging.getLogger("sandbox.proxy")
MISSING_STATUSES = frozenset({404, 405, 501})  # how an upstream says it lacks an operation

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass(slots=True)
class ProxyConfig:
    upstream: str  # the deployment's root URL (the spec's base path is kept from the request)
    spec: Spec
    errors: bool = False
    admin_token: str = ""
    record: HarWriter | None = None
    fallback: Fallback | None = None
    timeout: float = 30.0


class ValidatingProxy:
    def __init__(
        self,
        config: ProxyConfig,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.upstream = config.upstream.rstrip("/")
        self.router = Router(config.spec)
        self.checks = CheckContext(config.spec)
        self.findings = Findings()
        self.token = (config.admin_token or "").encode()
        self.on_shutdown = on_shutdown
        self.upstream_has: set[str] = set()  # operations the upstream answered as its own
        self.pool = UpstreamPool(self.upstream, config.timeout)
        self.prefix = urlsplit(self.upstream).path.rstrip("/")  # an upstream under a path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"] == ADMIN_PREFIX or scope["path"].startswith(ADMIN_PREFIX + "/"):
                await self._admin(scope, send)
            else:
                await self._forward(scope, receive, send)

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self.config.fallback is not None:
            await self.config.fallback.aclose()
        if self.config.record is not None:
            self.config.record.close()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                if self.on_shutdown is not None:
                    self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- forwarding --------------------------------------------------------------------------

    async def _forward(self, scope: Any, receive: Any, send: Any) -> None:
        body = await _read_body(receive)
        method = scope["method"]
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        target = self.prefix + raw_path + (f"?{query}" if query else "")
        url = self.upstream + raw_path + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_REQUEST]
        op = self.router.match(method, scope["path"])
        started, clock = time.time(), time.perf_counter()
        served_by = "upstream"
        try:
            answer = await self.pool.request(method, target, headers, body)
        except UpstreamTimeout:
            self.findings.unreachable += 1
            await _send(send, *_error_answer(ApiError(
                "GATEWAY_TIMEOUT", f"The upstream did not answer within {self.config.timeout} s."
            )))  # fmt: skip
            return
        except UpstreamError as exc:
            self.findings.unreachable += 1
            await _send(send, *_error_answer(ApiError(
                "BAD_GATEWAY", f"The upstream could not be reached: {str(exc)[:200]}."
            )))  # fmt: skip
            return
        fallback = self.config.fallback
        if op is not None:
            if answer[0] not in MISSING_STATUSES:
                self.upstream_has.add(op.operation_id)
            elif fallback is not None and op.operation_id not in self.upstream_has:
                answer = await fallback.serve(scope, body)
                served_by = "sandbox"
        status, response_headers, raw = answer
        exchange = Exchange(
            RecordedRequest(method, url, _masked(headers), body),
            RecordedResponse(status, _lower(response_headers), _decoded(response_headers, raw)),
            operation_id=op.operation_id if op else None,
            role="observed",
            elapsed_ms=(time.perf_counter() - clock) * 1000,
        )
        failed = self._judge(exchange, served_by)
        if self.config.record is not None:
            self.config.record.add(entry(
                started=started, elapsed_ms=exchange.elapsed_ms, method=method,
                url=url, request_headers=_text(scope["headers"]),
                request_body=body, status=status, response_headers=_text(response_headers),
                response_body=exchange.response.body,
                extra={"_servedBy": served_by, "_violations": [r.check for r in failed],
                       "_operation": exchange.operation_id},
            ))  # fmt: skip
        ids = ",".join(dict.fromkeys(r.check for r in failed))
        # --errors stands in for a bad answer; a bad request (the client's) is named, not replaced
        if self.config.errors and any(r.check not in OBSERVED_ONLY for r in failed):
            await _send(send, *_violation_answer(failed, ids))
            return
        out = [(k, v) for k, v in response_headers if k.lower() not in _HOP_RESPONSE]
        if not any(k.lower() == b"content-length" for k, _ in out):
            out.append((b"content-length", str(len(raw)).encode()))
        if ids:
            out.append((VIOLATIONS_HEADER.encode(), ids.encode()))
        if served_by != "upstream":
            out.append((SERVED_BY_HEADER.encode(), served_by.encode()))
        await _send(send, status, out, raw)

    def _judge(self, exchange: Exchange, served_by: str) -> list[Result]:
        """The harness's checks over the one exchange; the violations are its failed checks."""
        if exchange.operation_id is None:
            self.findings.requests += 1  # outside the spec: forwarded, not judged
            return []
        try:
            results = run_checks(self.checks, [exchange])
        except Exception:  # a check that cannot read this answer must not cost the client it
            log.exception("checking %s %s failed", exchange.request.method,
                          redact_path(exchange.request.path))  # fmt: skip
            return []
        return self.findings.add(exchange, results, served_by)

    # --- the proxy's own endpoints --------------------------------------------------------------

    async def _admin(self, scope: Any, send: Any) -> None:
        given = next((v for k, v in scope["headers"] if k.lower() == TOKEN_HEADER), b"")
        if not self.token or not secrets.compare_digest(given, self.token):
            err = ApiError(
                "AUTH_REQUIRED",
                "The proxy's endpoints need its admin token in X-Sandbox-Admin-Token "
                "(printed when the proxy starts).",
            )
            await _send(send, *_error_answer(err))
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == f"{ADMIN_PREFIX}/violations":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            raw = (query.get("limit") or ["100"])[-1]
            if not raw.isdigit() or not 1 <= int(raw) <= 1000:
                err = ApiError("VALIDATION_ERROR", "limit must be a whole number from 1 to 1000.",
                               [Detail("query", "limit", "must be from 1 to 1000")])  # fmt: skip
                await _send(send, *_error_answer(err))
                return
            items = self.findings.recent(int(raw))
            await _send(send, *_json(200, {"data": {"items": items, "total": len(items)}}))
        elif method == "GET" and path == f"{ADMIN_PREFIX}/summary":
            await _send(send, *_json(200, {"data": self.findings.summary()}))
        elif method == "DELETE" and path == f"{ADMIN_PREFIX}/violations":
            self.findings.journal.clear()
            await _send(send, *_json(200, {"data": {"cleared": True}}))
        else:
            err = ApiError("NOT_FOUND", f"No proxy endpoint {method} {path[:200]}.")
            await _send(send, *_error_answer(err))


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json(status: int, document: Any, extra: list[tuple[bytes, bytes]] | None = None) -> Answer:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return status, [*headers, *(extra or [])], body


def _error_answer(err: ApiError) -> Answer:
    return _json(err.status, err.body())


def _violation_answer(failed: list[Result], ids: str) -> Answer:
    err = ApiError(
        "CONTRACT_VIOLATION",
        f"The upstream's answer breaks the spec ({ids}); the proxy was started with --errors.",
        [Detail("response", r.check, r.message[:500]) for r in failed],
    )
    return _json(err.status, err.body(), [(VIOLATIONS_HEADER.encode(), ids.encode())])


def _text(headers: Any) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


def _lower(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}


def _masked(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers as an exchange keeps them: the key masked (`om_abcd…`)."""
    out = _lower(headers)
    if "authorization" in out:
        out["authorization"] = mask_authorization(out["authorization"])
    return out


def _decoded(headers: list[tuple[bytes, bytes]], raw: bytes) -> bytes:
    """The body the checks read: gzip and deflate undone (the client still gets `raw`)."""
    encoding = next((v for k, v in headers if k.lower() == b"content-encoding"), b"").strip()
    if encoding in (b"gzip", b"x-gzip"):
        return _inflate(raw, 16 + zlib.MAX_WBITS)
    if encoding == b"deflate":
        return _inflate(raw, zlib.MAX_WBITS)
    return raw


def _inflate(raw: bytes, wbits: int) -> bytes:
    try:
        return zlib.decompress(raw, wbits)
    except zlib.error:
        return raw  # not what it says it is: the checks see the bytes (and say it is not JSON)

"""Stage: the envelope of every answer: status, `{"data"}` or `{"error"}`, and headers.

Also the answer's encoding (once, with msgspec) and the lean ASGI response the API sends.
"""

from __future__ import annotations

import contextlib
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec
from litestar import Response

from opsmerge_sandbox.clock import parse_iso
from opsmerge_sandbox.errors import ApiError
from opsmerge_sandbox.spec import Operation

if TYPE_CHECKING:
    from opsmerge_sandbox.pipeline.context import RequestContext
    from opsmerge_sandbox.state import SandboxState

_encode = msgspec.json.Encoder().encode
JSON = "application/json"
_JSON_HEADER = (b"content-type", b"application/json")
# every visible ASCII character except "%", which starts an escape
_VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def header_value(value: str) -> str:
    """A header value that is always visible ASCII: anything else is percent-encoded (as UTF-8).

    Some answers carry text a client chose (a Prefer example name, a path); raw, a character
    beyond Latin-1 fails the encoding after the handler ran (a 500 after a write) and a control
    character could split the header. Spaces between words stay; "%" is escaped only when the
    value needs escaping at all, so ordinary values are sent unchanged.
    """
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe=_VISIBLE + " ")


def safe_headers(headers: dict[str, str] | None) -> dict[str, str]:
    return {header_value(k): header_value(v) for k, v in (headers or {}).items()}


class EncodedResponse:
    """The answer of an API operation, sent as two ASGI messages with pre-encoded headers.

    Litestar's Response classes build a mutable header structure per answer; an operation's
    answer already has its body encoded and a handful of ASCII headers, so this sends them as
    they are. Middleware (CORS, the connection-fault wrapper) still sees both messages.
    """

    __slots__ = ("body", "headers", "status_code")

    def __init__(self, status_code: int, body: bytes, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.body = body
        self.headers = headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        fields = [_JSON_HEADER, (b"content-length", str(len(self.body)).encode())]
        fields += [(k.encode(), v.encode()) for k, v in self._printable().items()]
        await send({"type": "http.response.start", "status": self.status_code, "headers": fields})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})

    def head_fields(self) -> bytes:
        """The head's field lines as an HTTP/1.1 server writes them (names in lower case),
        content type and length first: what the API lane sends without ASGI's messages."""
        lines = "".join([f"{k}: {v}\r\n" for k, v in self._printable().items()])
        return b"content-type: application/json\r\ncontent-length: %d\r\n%s" % (
            len(self.body), lines.encode())

    def _printable(self) -> dict[str, str]:
        """The headers, each name in lower case and each value visible ASCII (`header_value`:
        never a line break); as they are in the common case, checked in one pass."""
        headers = self.headers
        names = "".join(headers)
        text = names + "".join(headers.values())
        if text.isascii() and text.isprintable() and names == names.lower():
            return headers
        return {header_value(k).lower(): header_value(v) for k, v in headers.items()}


def encode(payload: Any) -> bytes:
    return _encode(payload)


def json_response(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=_encode(payload), status_code=status, media_type=JSON, headers=safe_headers(headers)
    )


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> Response[bytes]:
    merged = {**(headers or {}), **err.headers}
    return json_response(err.status, err.body(), merged)


def deprecation_headers(op: Operation) -> dict[str, str]:
    """`Deprecation` and `Sunset` for a deprecated operation, prepared once per operation."""
    if not op.deprecated:
        return {}
    headers = {}
    if op.deprecated_at:
        headers["deprecation"] = f"@{int(parse_iso(op.deprecated_at))}"
    if op.sunset:
        headers["sunset"] = formatdate(parse_iso(op.sunset), usegmt=True)
    return headers


class Envelope:
    """Stage: the answer's status, body and headers, from the handler's result or the error.

    Every answer after authentication carries the caller's bucket in `X-RateLimit-*`; an answer
    given before the key was known has no bucket to describe.
    """

    def __init__(self, state: SandboxState) -> None:
        self.limiter = state.limiter
        self.auth = state.settings.auth
        ops = state.spec.operations
        self.deprecation = {op.operation_id: deprecation_headers(op) for op in ops}

    def __call__(self, ctx: RequestContext) -> None:
        headers = dict(self.deprecation[ctx.op.operation_id])
        headers.update(ctx.answer_headers)  # a fault's Warning
        err = ctx.error
        if err is not None:
            if ctx.rate is None and ctx.caller is not None and self.auth:
                # a bucket that cannot be read now (shared state down) is not told
                with contextlib.suppress(ApiError):
                    ctx.rate = self.limiter.peek(ctx.bucket, ctx.limit)
            if ctx.rate is not None:
                headers.update(ctx.rate.headers())
            headers.update(err.headers)
            ctx.status, ctx.payload = err.status, err.body()
        elif ctx.rate is not None:
            headers.update(ctx.rate.headers())
        ctx.answer_headers = headers

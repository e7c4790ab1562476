"""Stage 8: the body and headers of every answer, encoded once with msgspec."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response

from sandbox.errors import ApiError

_encode = msgspec.json.Encoder().encode
JSON = "application/json"


def encode(payload: Any) -> bytes:
    return _encode(payload)


def json_response(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(content=_encode(payload), status_code=status, media_type=JSON, headers=headers)


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> Response[bytes]:
    merged = {**(headers or {}), **err.headers}
    return json_response(err.status, err.body(), merged)

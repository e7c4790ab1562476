"""`serve --access-log`: one line per request, shaped like uvicorn's access log, plus who asked.

    INFO:     127.0.0.1:54321 - "GET /api/v1/agents?page=2 HTTP/1.1" 200 key=... ws=default 1.2ms

uvicorn's own access log cannot name the key or the workspace, so the sandbox writes its own.
The key appears only by its name (what the journal shows), never the key or any part of it; the
path and query are redacted as the journal redacts them (a key pasted into a URL, the value of
anything named like a credential). Requests outside the API (docs, control API, health) get a
line too, with `key=- ws=-`.

Nothing here runs unless the option is given: `install` puts the layer around the app only then,
so a sandbox without an access log pays nothing per request.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import IO, Any
from urllib.parse import quote

from opsmerge_sandbox.journal import ENTRY, Entry, redact_path, redact_query

LOGGER = "sandbox.access"
MAX_TARGET = 1000  # characters of path and query shown; a longer one ends in "..."
_PATH_SAFE = "/:@!$&'()*+,;=[]~-._"
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "\"\\")  # "%" kept
_PLAIN = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def _shown(text: str | None) -> str:
    """A key name or workspace as it goes in the line: bare when plain, else JSON-quoted (so a
    name a client chose cannot break the line or fake another one)."""
    if not text:
        return "-"
    return text if _PLAIN.fullmatch(text) else json.dumps(text[:200])


def request_target(scope: Any) -> str:
    """The path and query, redacted like the journal's and escaped like uvicorn's."""
    target = quote(redact_path(scope.get("path", "")), safe=_PATH_SAFE)
    query = scope.get("query_string", b"")
    if query:
        target += "?" + quote(redact_query(query.decode("latin-1")), safe=_QUERY_SAFE)
    return target if len(target) <= MAX_TARGET else target[: MAX_TARGET - 3] + "..."


def access_line(scope: Any, status: int, seconds: float) -> str:
    """One request's line (without the level prefix the logger adds)."""
    client = scope.get("client")
    where = f"{client[0]}:{client[1]}" if client else "-"
    method = scope.get("method", "-")
    version = scope.get("http_version", "1.1")
    entry: Entry | None = scope.get(ENTRY)
    key = _shown(entry.key_name) if entry is not None else "-"
    ws = _shown(entry.workspace) if entry is not None and entry.workspace != "-" else "-"
    return (
        f'{where} - "{method} {request_target(scope)} HTTP/{version}" '
        f"{status or '-'} key={key} ws={ws} {seconds * 1000:.1f}ms"
    )


class AccessLog:
    """ASGI layer: runs the request, then writes its line, whatever the outcome."""

    def __init__(self, app: Any, logger: logging.Logger) -> None:
        self.app = app
        self.log = logger

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.log.info(access_line(scope, status, time.perf_counter() - started))


def access_logger(stream: IO[str] | None = None) -> logging.Logger:
    """The access logger: INFO whatever `--log-level` says (the log was asked for), to stdout
    as uvicorn's is, with uvicorn's `INFO:     ` prefix."""
    from uvicorn.logging import DefaultFormatter

    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s", use_colors=None))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def install(app: Any, logger: logging.Logger) -> None:
    """Put the access log inside the connection-fault layer (sandbox/faults/connection.py),
    which must stay outermost: it keeps the server's own `send`, to break connections with."""
    from opsmerge_sandbox.faults.connection import ConnectionFaults

    outer = app.asgi_handler
    if isinstance(outer, ConnectionFaults):
        outer.app = AccessLog(outer.app, logger)
    else:  # no connection-fault layer: the access log is outermost itself
        app.asgi_handler = AccessLog(outer, logger)

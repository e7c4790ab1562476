"""Deliberately broken deployments: the real sandbox app behind a middleware breaking one rule.

Each breakage mutates one thing on the way in or out (a header dropped, a total off by one, a
code that does not match its status...), so a contract run against it must fail on exactly the
check that guards that rule. The breakage is chosen by the environment variable
`BROKEN_SERVER_BREAKAGE`, so the harness can load the app by path:
`--opsmerge-app=tests/broken_server.py:create_broken_app`; `none` breaks nothing, and the
breakage of a running app can be switched through its `breakage` attribute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from opsmerge_sandbox.app import create_app
from opsmerge_sandbox.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ENV = "BROKEN_SERVER_BREAKAGE"
SMALL_RECIPE = Path(__file__).parent / "contracts_small_recipe.yaml"

# breakage -> the rule it breaks
BREAKAGES = {
    "envelope_missing": "success bodies are wrapped in `data`",
    "total_off_by_one": "`total` counts the items",
    "repeated_item": "an item appears on one page only",
    "per_page_cap_ignored": "per_page over 100 is refused",
    "scope_not_enforced": "a key without the scope gets 403",
    "no_www_authenticate": "a 401 carries WWW-Authenticate",
    "no_retry_after": "a 429 carries Retry-After",
    "remaining_stuck": "X-RateLimit-Remaining goes down",
    "code_status_mismatch": "an error code travels with its catalogue status",
    "field_type_drift": "fields keep the type the schema gives them",
    "deprecation_missing": "deprecated operations send Deprecation",
    "server_error_on_bad_input": "bad input gets a 4xx, never a 5xx",
    "content_type_text": "JSON is labelled application/json",
    "undocumented_status": "only documented statuses are sent",
    "unstable_order": "the order does not depend on the page size",
    "past_end_total_zero": "a page past the end keeps the total",
    "readback_drift": "a record reads back as written",
    "unknown_id_found": "an unknown id is 404",
    "no_key_accepted": "a request without a key is refused",
    "deprecation_on_stable": "only deprecated operations send Deprecation",
    "existing_id_not_found": "a record that exists is found",
    "undocumented_field": "records carry only the fields their schema has",
    # role checks: a deployment whose refusals leak or carry the wrong code
    "role_bypass": "a key whose role may not write cannot write (403 FORBIDDEN)",
    "scope_bypass": "a key whose scopes exclude an operation cannot make it (403 SCOPE_DENIED)",
    "forbidden_as_scope_denied": "a role's refusal is FORBIDDEN, not SCOPE_DENIED",
    "scope_denied_as_forbidden": "a scope's refusal is SCOPE_DENIED, not FORBIDDEN",
}
# refusals a bypass answers as if the owner's key had been sent: the request really happens
BYPASSED = {"role_bypass": "FORBIDDEN", "scope_bypass": "SCOPE_DENIED"}
# codes a wrong-code breakage swaps
RECODED = {
    "forbidden_as_scope_denied": ("FORBIDDEN", "SCOPE_DENIED"),
    "scope_denied_as_forbidden": ("SCOPE_DENIED", "FORBIDDEN"),
}


class BrokenApp:
    def __init__(self, app: Any, breakage: str) -> None:
        if breakage != "none" and breakage not in BREAKAGES:
            raise ValueError(f"unknown breakage {breakage!r}")
        self.app = app
        self.breakage = breakage
        self.last_items: dict[tuple[str, str, int], Any] = {}
        self.owner_key = _owner_key(app)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.breakage == "none"
            or scope["type"] != "http"
            or scope["path"].startswith("/_sandbox")
        ):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        asked_per_page = None
        if self.breakage == "per_page_cap_ignored" and int(query.get("per_page", "0") or 0) > 100:
            asked_per_page = int(query["per_page"])
            query["per_page"] = "100"
            scope["query_string"] = urlencode(query).encode()
        if self.breakage == "no_key_accepted":
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            if len(headers) == len(scope["headers"]):
                headers.append((b"authorization", f"Bearer {self.owner_key}".encode()))
            scope["headers"] = headers
        sent = await _read_body(receive) if self.breakage in BYPASSED else None
        status, headers, body = await self._dispatch(scope, _once(sent) if sent else receive)
        if (
            sent is not None
            and status == 403
            and _code(body) == BYPASSED[self.breakage]
            and (self.breakage == "scope_bypass" or scope["method"] not in ("GET", "HEAD"))
        ):  # the refused request is made again as the owner: it really happens
            owner = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            owner.append((b"authorization", f"Bearer {self.owner_key}".encode()))
            status, headers, body = await self._dispatch({**scope, "headers": owner}, _once(sent))
        status, headers, body = self.mutate(scope, query, asked_per_page, status, headers, body)
        headers["content-length"] = str(len(body))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _dispatch(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, str], bytes]:
        started: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        headers = {k.decode().lower(): v.decode() for k, v in started.get("headers", [])}
        return int(started["status"]), headers, b"".join(chunks)

    def mutate(
        self,
        scope: Scope,
        query: dict[str, str],
        asked_per_page: int | None,
        status: int,
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        data = doc.get("data") if isinstance(doc, dict) else None
        error = doc.get("error") if isinstance(doc, dict) else None
        items = data.get("items") if isinstance(data, dict) else None
        b = self.breakage
        if (
            b == "envelope_missing"
            and 200 <= status < 300
            and isinstance(doc, dict)
            and "data" in doc
        ):
            doc = data
        elif (
            b == "total_off_by_one"
            and isinstance(data, dict)
            and isinstance(data.get("total"), int)
        ):
            data["total"] += 1
        elif b == "repeated_item" and isinstance(items, list):
            page = int(query.get("page", "1") or 1)
            key = (scope["path"], query.get("per_page", ""), page)
            if items:
                self.last_items[key] = items[-1]
            previous = self.last_items.get((scope["path"], query.get("per_page", ""), page - 1))
            if page > 1 and previous is not None and items:
                items[0] = previous
        elif b == "per_page_cap_ignored" and asked_per_page is not None and isinstance(data, dict):
            data["per_page"] = asked_per_page
        elif (
            b == "scope_not_enforced"
            and status == 403
            and isinstance(error, dict)
            and error.get("code") == "SCOPE_DENIED"
        ):
            status, doc = 200, {"data": {}}
        elif b == "no_www_authenticate" and status == 401:
            headers.pop("www-authenticate", None)
        elif b == "no_retry_after" and status == 429:
            headers.pop("retry-after", None)
        elif b == "remaining_stuck" and "x-ratelimit-limit" in headers:
            headers["x-ratelimit-remaining"] = headers["x-ratelimit-limit"]
        elif b == "code_status_mismatch" and isinstance(error, dict):
            error["code"] = "VALIDATION_ERROR" if status != 400 else "NOT_FOUND"
        elif b == "field_type_drift":
            for record in ([data] if isinstance(data, dict) else []) + (items or []):
                if isinstance(record, dict) and isinstance(record.get("number"), int):
                    record["number"] = str(record["number"])
        elif b == "deprecation_missing":
            headers.pop("deprecation", None)
        elif (
            b == "server_error_on_bad_input"
            and status == 400
            and scope["method"] in ("POST", "PATCH")
        ):
            status = 500
            doc = {"error": {"code": "INTERNAL_ERROR", "message": "Unhandled exception."}}
        elif b == "content_type_text" and 200 <= status < 300:
            headers["content-type"] = "text/plain; charset=utf-8"
        elif b == "undocumented_status" and status == 404:
            status = 410
        elif (
            b == "unstable_order"
            and isinstance(items, list)
            and query.get("per_page") not in (None, "100")
        ):
            items.reverse()
        elif (
            b == "past_end_total_zero"
            and isinstance(items, list)
            and not items
            and isinstance(data, dict)
        ):
            data["total"] = 0
        elif (
            b == "readback_drift"
            and scope["method"] == "GET"
            and isinstance(data, dict)
            and "id" in data
        ):
            for name in ("subject", "name", "body", "domain"):
                if isinstance(data.get(name), str):
                    data[name] += " (changed)"
                    break
        elif b == "unknown_id_found" and status == 404 and scope["method"] == "GET":
            status, doc = 200, {"data": {}}
        elif (
            b == "existing_id_not_found"
            and scope["method"] == "GET"
            and status == 200
            and isinstance(data, dict)
            and "id" in data
        ):
            status, doc = (
                404,
                {"error": {"code": "NOT_FOUND", "message": "No record with that id."}},
            )
        elif b in RECODED and isinstance(error, dict) and error.get("code") == RECODED[b][0]:
            error["code"] = RECODED[b][1]
        elif b == "undocumented_field":
            for record in ([data] if isinstance(data, dict) else []) + (items or []):
                if isinstance(record, dict) and "id" in record:
                    record["legacy_code"] = "L-1"
        elif b == "deprecation_on_stable" and 200 <= status < 300:
            headers["deprecation"] = "@1777593600"
        new_body = json.dumps(doc).encode() if doc is not None and body else body
        return status, headers, new_body


async def _read_body(receive: Receive) -> list[Message]:
    """The request's body messages, read once so the request can be dispatched twice."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            return messages


def _once(messages: list[Message]) -> Receive:
    """A receive handing out the body messages once, then a disconnect (the exchange is over)."""
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    return receive


def _code(body: bytes) -> str | None:
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _owner_key(app: Any) -> str:
    for key in app.state.sandbox.recipe.keys:
        if (
            key.access == "full"
            and not key.revoked
            and key.expires_at is None
            and key.rate_limit is None
        ):
            return key.key
    raise LookupError("no usable full-access key in the recipe")


def create_broken_app(settings: Settings) -> BrokenApp:
    """The sandbox app (small world) broken as `BROKEN_SERVER_BREAKAGE` says."""
    settings.recipe = str(SMALL_RECIPE)
    return BrokenApp(create_app(settings), os.environ.get(ENV, "none"))


def create_small_app(settings: Settings) -> Any:
    """The unbroken sandbox app with the small world, for quick runs of the harness."""
    settings.recipe = str(SMALL_RECIPE)
    return create_app(settings)

"""Recorded exchanges: one request and its response, as the checks and the reports see them.

Checks are pure functions over these records, so they can be tested without a server and a report
can show exactly what was sent. Secrets never reach a record: the Authorization header is masked
when the exchange is recorded, and a curl line names the key by environment variable.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

KEY_PREFIX = "om_"
# Which environment variable a curl line names for a key, by the label the caller gave it.
KEY_ENV = {
    "primary": "OPSMERGE_API_KEY",
    "limited": "OPSMERGE_LIMITED_KEY",
    "minted": "OPSMERGE_MINTED_KEY",
}
_CURL_SKIP_HEADERS = frozenset(
    {"host", "user-agent", "accept", "accept-encoding", "connection", "content-length"}
)


def key_env(label: str) -> str | None:
    """The environment variable a curl line reads a key from: a fixed one per kind of key, and
    OPSMERGE_KEY_FOR_<ROLE> for a key given per role (`for:<role>`)."""
    if label.startswith("for:"):
        return "OPSMERGE_KEY_FOR_" + re.sub(r"[^A-Z0-9]+", "_", label[4:].upper()).strip("_")
    return KEY_ENV.get(label)


def mask_key(key: str | None) -> str:
    """What may be shown of a key: its prefix and four characters, never enough to use it."""
    if not key:
        return "(none)"
    if key.startswith(KEY_PREFIX):
        return key[: len(KEY_PREFIX) + 4] + "…"
    return key[:4] + "…"


def mask_authorization(value: str) -> str:
    scheme, sep, token = value.partition(" ")
    if not sep:
        return mask_key(value)
    return f"{scheme} {mask_key(token.strip())}"


@dataclass(slots=True)
class RecordedRequest:
    method: str
    url: str
    headers: dict[str, str]  # lower-case names; Authorization already masked
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass(slots=True)
class RecordedResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    _parsed: Any = field(default=None, repr=False)
    _parsed_done: bool = field(default=False, repr=False)
    _parsed_ok: bool = field(default=False, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON (parsed once)."""
        if not self._parsed_done:
            self._parsed_done = True
            try:
                self._parsed = _decode(self.body) if self.body else None
                self._parsed_ok = bool(self.body)
            except ValueError:
                self._parsed = None
        return self._parsed

    @property
    def is_json(self) -> bool:
        self.json()  # parsed once, whichever check asks first
        return self._parsed_ok


def _decode(body: bytes) -> Any:
    """JSON as Python values: msgspec first (a third of json's time on a page of records, which
    the proxy parses on every answer), json for what msgspec will not hold (1e400, huge ints)."""
    try:
        return _DECODER.decode(body)
    except ValueError:
        return json.loads(body)


_DECODER = msgspec.json.Decoder()


@dataclass(slots=True)
class Exchange:
    """One request and its answer, with what the harness meant by sending it.

    `role` tells the checks why the request was sent ("call", "page", "no-key", ...), `meta`
    carries what they need to judge it (the page number, the body sent, the expectations of a
    scenario step), and `key_label` names the key used so a curl line can name its variable.
    """

    request: RecordedRequest
    response: RecordedResponse
    operation_id: str | None = None
    role: str = "call"
    meta: dict[str, Any] = field(default_factory=dict)
    key_label: str = "primary"
    elapsed_ms: float = 0.0

    def summary(self) -> str:
        return f"{self.request.method} {self.request.url} -> {self.response.status}"

    def to_dict(self, body_limit: int = 4000) -> dict[str, Any]:
        return {
            "operation": self.operation_id,
            "role": self.role,
            "key": self.key_label,
            "request": {
                "method": self.request.method,
                "url": self.request.url,
                "headers": self.request.headers,
                "body": _text(self.request.body, body_limit),
            },
            "response": {
                "status": self.response.status,
                "headers": self.response.headers,
                "body": _text(self.response.body, body_limit),
            },
            "elapsed_ms": round(self.elapsed_ms, 2),
        }


def _text(body: bytes, limit: int) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def curl_line(
    exchange: Exchange, base_url: str | None = None, replace_base: str | None = None
) -> str:
    """A shell command that sends the same request again, with the key read from the environment.

    `replace_base` swaps the recorded origin for another (the in-process sandbox has no address a
    shell can reach; `opsmerge-sandbox serve` listens on http://127.0.0.1:4010).
    """
    req = exchange.request
    url = req.url
    if replace_base and base_url and url.startswith(base_url):
        url = replace_base + url[len(base_url) :]
    parts = ["curl", "-sS", "-i"]
    if req.method != "GET":
        parts += ["-X", req.method]
    parts.append(shlex.quote(url))
    for name, value in req.headers.items():
        if name in _CURL_SKIP_HEADERS:
            continue
        if name == "authorization":
            env = key_env(exchange.key_label)
            if env:
                parts += ["-H", f'"Authorization: Bearer ${env}"']
                continue
        parts += ["-H", shlex.quote(f"{_title(name)}: {value}")]
    if req.body:
        parts += ["--data-raw", shlex.quote(req.body.decode("utf-8", "replace"))]
    return " ".join(parts)


def _title(name: str) -> str:
    return "-".join(p[:1].upper() + p[1:] for p in name.split("-"))

"""Recordings as HAR 1.2: what the proxy and `serve --record` write, and what replay and drift read.

HAR is what browsers' developer tools, Postman, Insomnia and WireMock already import, so a
recording made here can be opened anywhere. Credentials never reach the file: the headers that
carry them (`Authorization`, cookies, `X-Api-Key`, anything named like a token or secret) keep
their name with `[redacted]` as the value, a key pasted into a URL or a body is replaced the way
the journal replaces it, and bodies are kept otherwise (replay and drift need them).

The file is written entry by entry and is valid JSON after every entry: each write goes over
the closing brackets and puts them back after the new entry, so a recorder killed mid-run leaves
a file every HAR reader opens.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from opsmerge_sandbox.journal import REDACTED, redact_path, redact_query

HAR_VERSION = "1.2"
CREATOR = {"name": "opsmerge-sandbox", "version": "1"}
# header names whose values are credentials, whatever else they are called
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
_SECRET_WORD = re.compile(r"token|secret|passw|api-?key|credential|session|signature", re.I)
# an API key inside a body: `om_` at the start of a word, up to the end of the word
_KEY_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])om_[A-Za-z0-9_\-]+", re.IGNORECASE)
_TRAILER = b"\n]}}\n"


class HarError(ValueError):
    """A file that is not a HAR recording; the message names the file and the problem."""


def secret_header(name: str) -> bool:
    low = name.lower()
    return low in _SECRET_HEADERS or _SECRET_WORD.search(low) is not None


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """HAR headers, credentials replaced (`Authorization: Bearer [redacted]` keeps its scheme)."""
    out = []
    for name, value in headers:
        if secret_header(name):
            scheme, sep, _ = value.partition(" ")
            shown = f"{scheme} {REDACTED}" if sep and name.lower().endswith("authorization") else (
                REDACTED
            )
            out.append({"name": name, "value": shown})
        else:
            out.append({"name": name, "value": value})
    return out


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=redact_path(parts.path), query=redact_query(parts.query)))


def _content(body: bytes, mime: str) -> dict[str, Any]:
    """A body as HAR text (UTF-8), or base64 when it is not text; keys inside it redacted."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"mimeType": mime, "size": len(body), "text": base64.b64encode(body).decode(),
                "encoding": "base64"}  # fmt: skip
    if "om_" in text.lower():
        text = _KEY_IN_TEXT.sub(REDACTED, text)
    return {"mimeType": mime, "size": len(body), "text": text}


def _iso(ts: float) -> str:
    millis = int((ts % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{millis:03d}Z"


def entry(
    *,
    started: float,
    elapsed_ms: float,
    method: str,
    url: str,
    request_headers: Sequence[tuple[str, str]],
    request_body: bytes,
    status: int,
    response_headers: Sequence[tuple[str, str]],
    response_body: bytes,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One HAR entry (credentials redacted). `extra` adds custom fields (names start with `_`)."""
    safe_url = redact_url(url)
    req_type = _header(request_headers, "content-type") or "application/octet-stream"
    resp_type = _header(response_headers, "content-type") or ""
    request: dict[str, Any] = {
        "method": method,
        "url": safe_url,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": redact_headers(request_headers),
        "queryString": [
            {"name": k, "value": v}
            for k, v in parse_qsl(urlsplit(safe_url).query, keep_blank_values=True)
        ],
        "headersSize": -1,
        "bodySize": len(request_body),
    }
    if request_body:
        content = _content(request_body, req_type)
        request["postData"] = {"mimeType": req_type, "text": content["text"]}
        if "encoding" in content:
            request["postData"]["_encoding"] = "base64"
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    item: dict[str, Any] = {
        "startedDateTime": _iso(started),
        "time": round(elapsed_ms, 3),
        "request": request,
        "response": {
            "status": status,
            "statusText": reason,
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": redact_headers(response_headers),
            "content": _content(response_body, resp_type),
            "redirectURL": _header(response_headers, "location") or "",
            "headersSize": -1,
            "bodySize": len(response_body),
        },
        "cache": {},
        "timings": {"send": 0, "wait": round(elapsed_ms, 3), "receive": 0},
    }
    if extra:
        item.update({k if k.startswith("_") else "_" + k: v for k, v in extra.items()})
    return item


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


class HarWriter:
    """Appends entries to a HAR file that stays valid JSON after each one (thread-safe)."""

    def __init__(self, path: Path, comment: str = "") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self._lock = threading.Lock()
        self._file = self.path.open("wb")
        head: dict[str, Any] = {"version": HAR_VERSION, "creator": CREATOR}
        if comment:
            head["comment"] = comment
        opening = json.dumps({"log": head})[:-2]  # `{"log": {...` without its last two braces
        self._file.write(opening.encode() + b', "entries": [' + _TRAILER)
        self._file.flush()

    def add(self, item: dict[str, Any]) -> None:
        data = json.dumps(item, ensure_ascii=False).encode()
        with self._lock:
            if self._file.closed:
                return
            self._file.seek(-len(_TRAILER), 2)
            self._file.write((b",\n" if self.count else b"\n") + data + _TRAILER)
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


@dataclass(frozen=True, slots=True)
class HarExchange:
    """One recorded entry as replay and drift read it: bodies as bytes, headers lower-cased."""

    index: int
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes
    started: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> str:
        return urlsplit(self.url).query


def _body(content: Any) -> bytes:
    if not isinstance(content, dict) or not isinstance(content.get("text"), str):
        return b""
    text = content["text"]
    if content.get("encoding") == "base64" or content.get("_encoding") == "base64":
        try:
            return base64.b64decode(text)
        except ValueError:
            return b""
    return text.encode("utf-8")


def _headers(raw: Any) -> dict[str, str]:
    if not isinstance(raw, list):
        return {}
    return {
        str(h["name"]).lower(): str(h.get("value", ""))
        for h in raw
        if isinstance(h, dict) and "name" in h
    }


def read_har(path: Path) -> list[HarExchange]:
    """The entries of a HAR file, in order; HarError names what is wrong with a bad one."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise HarError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise HarError(f"{path}: not JSON ({exc})") from None
    log = doc.get("log") if isinstance(doc, dict) else None
    if not isinstance(log, dict) or not isinstance(log.get("entries"), list):
        raise HarError(f"{path}: not a HAR recording (no log.entries)")
    out = []
    for index, raw in enumerate(log["entries"]):
        req = raw.get("request") if isinstance(raw, dict) else None
        resp = raw.get("response") if isinstance(raw, dict) else None
        if not isinstance(req, dict) or not isinstance(resp, dict):
            raise HarError(f"{path}: entries[{index}] has no request or response")
        if not isinstance(req.get("method"), str) or not isinstance(req.get("url"), str):
            raise HarError(f"{path}: entries[{index}].request needs a method and a url")
        status = resp.get("status")
        if not isinstance(status, int):
            raise HarError(f"{path}: entries[{index}].response.status is not a number")
        out.append(
            HarExchange(
                index=index,
                method=req["method"].upper(),
                url=req["url"],
                request_headers=_headers(req.get("headers")),
                request_body=_body(req.get("postData")),
                status=status,
                response_headers=_headers(resp.get("headers")),
                response_body=_body(resp.get("content")),
                started=str(raw.get("startedDateTime", "")),
                extra={k: v for k, v in raw.items() if k.startswith("_")},
            )
        )
    return out

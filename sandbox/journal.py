"""The request journal: recent exchanges, so a test can assert what its client really did.

A bounded deque: memory stays flat however many requests pass. Keys appear only as their name
and prefix, never in full: a client that puts a secret in the URL (`?api_key=om_...`, a key
pasted into a path) finds it redacted here, because the journal is read by anyone who holds the
admin token and is pasted into bug reports.

An entry is kept as the request left it and redacted when the journal is read: every read
shows only redacted paths and queries, and the requests (thousands a second) do not pay for
redaction that only the few entries anyone reads need.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

from opsmerge_sandbox.clock import format_iso

REDACTED = "[redacted]"
# ASGI scope keys a request's stages leave for the journal and the access log
UNKNOWN_PARAMS = "opsmerge.unknown_params"  # names the operation does not take (a tuple)
ENTRY = "opsmerge.journal_entry"  # the request's journal Entry, when the access log is on
# a value that looks like an API key: "om_" at the start of a word (not "room_1")
_KEY_LIKE = re.compile(r"(?<![A-Za-z0-9])om_", re.IGNORECASE)
# parameter names that carry credentials, matched word by word (api_key, access-token, authToken)
_SECRET_WORDS = frozenset({
    "key", "apikey", "token", "secret", "password", "passwd", "pwd", "credential", "credentials",
    "signature", "sig", "session", "bearer", "jwt",
})
_WORD = re.compile(r"[a-z0-9]+")
# a query that could need redacting: an om_ value, an escape (which could hide one), or one of
# the words above anywhere; anything else (most queries) is kept without being parsed
_MAYBE = (
    "om_", "%", "+", "key", "token", "secret", "passw", "pwd", "credential", "sig", "session",
    "bearer", "jwt", "auth",
)


def looks_like_key(text: str) -> bool:
    """Whether the text holds something shaped like an API key (an `om_` word)."""
    return _KEY_LIKE.search(text) is not None


def _secret_name(name: str) -> bool:
    low = unquote_plus(name).lower()
    if low.startswith("auth"):
        return True
    split_camel = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", unquote_plus(name)).lower()
    return any(w in _SECRET_WORDS for w in _WORD.findall(split_camel))


def redact_query(query: str) -> str:
    """The query string with the value of every credential-like parameter replaced."""
    if not query:
        return query
    low = query.lower()
    if not any(word in low for word in _MAYBE):
        return query
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if _secret_name(name) or _KEY_LIKE.search(unquote_plus(value)):
            value = REDACTED
        if _KEY_LIKE.search(unquote_plus(name)):
            name = REDACTED  # a key sent as a bare `?om_...`
        parts.append(name + eq + value)
    return "&".join(parts)


def redact_path(path: str) -> str:
    """The path with every segment that holds a key-like value replaced."""
    if not _KEY_LIKE.search(path):
        return path
    return "/".join(REDACTED if _KEY_LIKE.search(seg) else seg for seg in path.split("/"))


class Entry(NamedTuple):
    """One exchange (a tuple: one is made for every request)."""

    at: float  # sandbox-clock seconds; formatted when the journal is read
    method: str
    path: str
    query: str
    operation_id: str | None
    status: int
    key_name: str | None
    key_id: str | None  # never any part of the key itself
    workspace: str
    fault: str | None
    duration_ms: float
    # query parameters the operation does not take (ignored, or refused with a 400), as the
    # Warning header shows them: made safe, at most ten, never a key
    unknown_params: tuple[str, ...] = ()


class Journal:
    def __init__(self, size: int) -> None:
        self._entries: deque[Entry] = deque(maxlen=size)

    def add(self, entry: Entry) -> None:
        """Keep the entry; any secret in its path or query string is redacted when read."""
        self._entries.append(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def recent(self, limit: int = 100, workspace: str | None = None) -> list[dict[str, Any]]:
        items = [e for e in self._entries if workspace is None or e.workspace == workspace]
        return [
            {
                **e._asdict(),
                "path": redact_path(e.path),
                "query": redact_query(e.query),
                "at": format_iso(e.at),
                "duration_ms": round(e.duration_ms, 3),
            }
            for e in items[-limit:]
        ]

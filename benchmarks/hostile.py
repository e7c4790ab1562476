"""Hostile input over raw sockets: every request is refused with a clear 4xx and changes nothing.

    .venv/bin/python benchmarks/hostile.py                        # starts its own sandboxes
    .venv/bin/python benchmarks/hostile.py --url http://127.0.0.1:PORT --admin-token T [--pid P]
                                           [--hosted-url http://127.0.0.1:PORT2] [--json out.json]

`CASES` is the suite as data: each case is a request written out byte for byte (method, target,
headers, body, or the whole request raw) with placeholders such as `$OWNER` (a usable key) or
`$ITEM` (a seeded record's path) that are filled in from the spec and the recipe at run time, so
the suite names no resource of its own. Each is sent on a fresh loopback connection with nothing
between it and the server (no client library to tidy up a malformed request), and the answer is
parsed from the bytes.

Every answer is judged: a 4xx must carry the error envelope with a catalogue code that travels
with that status; a 5xx, a 4xx without the envelope, an answer that repeats 8 or more characters
of a key the case sent, or (for the few cases marked `allowed`) anything else than what the
reason allows, is a failure. Before the run and after every case, a fingerprint of the sandbox's
state is read through the admin API and the API itself (every list's total, the targeted record,
singletons, keys, clock, fault rules, workspaces); a case after which it differs changed state,
and the world is reset before the next one. The journal is read at the end: a key sent in a query
string must not be kept there. Exits 1 on any failure.

`run_suite` and `spawn_sandbox` are what tests/test_hostile_suite.py runs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOOPBACK = "127.0.0.1"
DEPTH = 10_000
CALIBRATION = "hostile-calibration"  # the scratch workspace the targets are tried in
LEAK_WINDOW = 8  # this many consecutive characters of a key in an answer is a leak
READ_TIMEOUT = 2.0  # seconds to wait for an answer before half-closing the connection

Header = tuple[bytes, bytes]


# ---------------------------------------------------------------------- the suite (data)
@dataclass(frozen=True, slots=True)
class Case:
    """One hostile request. Placeholders ($OWNER, $ITEM, ...) are filled in at run time."""

    name: str
    category: str
    method: bytes = b"GET"
    target: bytes = b"$LIST"
    headers: tuple[Header, ...] = ()
    body: bytes | None = None
    write: bool = False  # would change state if the server took it at face value
    length: bool = True  # add a Content-Length that matches the body
    raw: bytes | None = None  # the whole request, sent as is (placeholders filled in)
    allowed: str = ""  # why an answer other than a 4xx is acceptable; empty: a 4xx is required
    hosted: bool = False  # sent to a sandbox in hosted mode
    secrets: tuple[bytes, ...] = ()  # key-like strings the case sends besides the placeholders


AUTH = b"Authorization"
OWNER = (AUTH, b"Bearer $OWNER")
OTHER = (AUTH, b"Bearer $OTHER")
LIMITED = (AUTH, b"Bearer $LIMITED")
JSON_CT = (b"Content-Type", b"application/json")
WS = b"X-Sandbox-Workspace"
ADMIN = (b"X-Sandbox-Admin-Token", b"$ADMIN")
WRONG_ADMIN = (b"X-Sandbox-Admin-Token", b"sbx_admin_not-the-token")
PATCH_BODY = b'{"$STR": "hostile edit"}'  # a valid edit: only the hostile part may refuse it
MINT_BODY = b'{"name": "hostile minted key"}'
RULE_BODY = b'{"match": {"method": "GET"}, "effect": {"status": 503}}'
DEEP_ARRAY = b"[" * DEPTH + b"]" * DEPTH
DEEP_OBJECT = b'{"a":' * DEPTH + b"1" + b"}" * DEPTH
BIG = 100 * 1024
FAKE_KEY = b"om_sbx_" + b"Zq8" * 20  # an unknown key that looks real
HUGE_KEY = b"om_" + b"Kx7" * (BIG // 3)
WRITE = {"write": True}


def _patch(
    name: str,
    category: str,
    *headers: Header,
    body: bytes = PATCH_BODY,
    target: bytes = b"$ITEM",
    **kw: Any,
) -> Case:
    """A PATCH of the seeded record that would succeed if not for its hostile part."""
    return Case(name, category, b"PATCH", target, headers, body, write=True, **kw)


def _admin(
    name: str, method: bytes, path: bytes, body: bytes | None, *headers: Header, **kw: Any
) -> Case:
    return Case(
        name, "admin", method, b"/_sandbox" + path, headers, body, write=method != b"GET", **kw
    )


def _chunked(name: str, chunks: bytes, *extra: Header, allowed: str = "") -> Case:
    return Case(
        name,
        "transfer-encoding",
        b"PATCH",
        b"$ITEM",
        (OWNER, JSON_CT, (b"Transfer-Encoding", b"chunked"), *extra),
        chunks,
        write=True,
        length=False,
        allowed=allowed,
    )


_NO_ANSWER = (
    "the client stops short of the body it declared and half-closes: there may be nobody left "
    "to answer, but nothing may be written"
)
_PREFLIGHT = "OPTIONS reads which methods a path allows; it writes nothing"
_HEAD_READ = "HEAD of a path that also answers GET is a read"
_SAME_READ = "a router may merge empty path segments: it is the same read"
_PAST_END = "a page past the end is an empty page with the true total (documented)"
_PRISM = "example= is accepted for Prism compatibility and changes nothing (docs/faults.md)"
_IGNORED = "a read with a parameter the operation does not define, which is ignored"

CASES: tuple[Case, ...] = (
    # -- the same header twice: which one counts must never be a guess
    Case("two keys: usable then limited", "repeated-auth", headers=(OWNER, LIMITED)),
    Case("two keys: limited then usable", "repeated-auth", headers=(LIMITED, OWNER)),
    Case("the same key twice", "repeated-auth", headers=(OWNER, OWNER)),
    _patch("two keys on a write: usable then other", "repeated-auth", OWNER, OTHER, JSON_CT),
    _patch("two keys on a write: limited then usable", "repeated-auth", LIMITED, OWNER, JSON_CT),
    Case(
        "the same key twice on a delete",
        "repeated-auth",
        b"DELETE",
        b"$ITEM",
        (OWNER, OWNER),
        **WRITE,
    ),
    Case(
        "usable key then a garbage one on an action",
        "repeated-auth",
        b"POST",
        b"$ACTION",
        (OWNER, (AUTH, b"Bearer nope")),
        **WRITE,
    ),
    Case("usable key then an empty Authorization", "repeated-auth", headers=(OWNER, (AUTH, b""))),
    _patch(
        "Authorization and authorization with two keys",
        "repeated-auth",
        OWNER,
        (b"authorization", b"Bearer $LIMITED"),
        JSON_CT,
    ),
    Case(
        "two workspaces on a read",
        "repeated-workspace",
        headers=(OWNER, (WS, b"hostile-a"), (WS, b"hostile-b")),
    ),
    _patch(
        "two workspaces on a write, one of them default",
        "repeated-workspace",
        OWNER,
        (WS, b"hostile-a"),
        (WS, b"default"),
        JSON_CT,
    ),
    Case(
        "the same workspace twice",
        "repeated-workspace",
        headers=(OWNER, (WS, b"hostile-a"), (WS, b"hostile-a")),
    ),
    Case(
        "a valid and an invalid workspace",
        "repeated-workspace",
        headers=(OWNER, (WS, b"hostile-a"), (WS, b"..")),
    ),
    Case(
        "two admin tokens: wrong then right",
        "admin",
        b"POST",
        b"/_sandbox/keys",
        (JSON_CT, WRONG_ADMIN, ADMIN),
        MINT_BODY,
        **WRITE,
    ),
    Case(
        "two admin tokens: right then wrong",
        "admin",
        b"POST",
        b"/_sandbox/faults",
        (JSON_CT, ADMIN, WRONG_ADMIN),
        RULE_BODY,
        **WRITE,
    ),
    # -- the key without its scheme, or more than one key in one header
    Case("key key without a scheme", "no-scheme", headers=((AUTH, b"$OWNER $OWNER"),)),
    Case("a key without a scheme", "no-scheme", headers=((AUTH, b"$OWNER"),)),
    _patch("key key without a scheme on a write", "no-scheme", (AUTH, b"$OWNER $OWNER"), JSON_CT),
    Case("Bearer key key", "no-scheme", headers=((AUTH, b"Bearer $OWNER $OWNER"),)),
    _patch(
        "two bearer credentials joined by a comma",
        "no-scheme",
        (AUTH, b"Bearer $OWNER, Bearer $OTHER"),
        JSON_CT,
    ),
    Case("the key as Basic credentials", "no-scheme", headers=((AUTH, b"Basic $OWNER"),)),
    # -- keys with bytes that have no business in a key
    Case("a key with a NUL after it", "key-bytes", headers=((AUTH, b"Bearer $OWNER\x00"),)),
    Case("a key with a NUL inside", "key-bytes", headers=((AUTH, b"Bearer om_\x00$OWNER"),)),
    _patch(
        "a key with a bare CR and a smuggled header",
        "key-bytes",
        (AUTH, b"Bearer $OWNER\rX-Sandbox-Workspace: hostile-cr"),
        JSON_CT,
    ),
    Case(
        "a key in Cyrillic and an emoji",
        "key-bytes",
        headers=((AUTH, "Bearer om_ключ-🔑".encode()),),
        secrets=("om_ключ-🔑".encode(),),
    ),
    _patch(
        "a key followed by a no-break space", "key-bytes", (AUTH, b"Bearer $OWNER\xc2\xa0"), JSON_CT
    ),
    Case("a key with Latin-1 bytes", "key-bytes", headers=((AUTH, b"Bearer om_\xff\xfe\xfd"),)),
    Case(
        "a fullwidth B in Bearer",
        "key-bytes",
        headers=((AUTH, "\uff22earer ".encode() + b"$OWNER"),),
    ),
    Case("a tab between Bearer and the key", "key-bytes", headers=((AUTH, b"Bearer\t$OWNER"),)),
    Case(
        "a key folded onto a continuation line",
        "key-bytes",
        raw=b"GET $LIST HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer\r\n $OWNER\r\n"
        b"Connection: close\r\n\r\n",
    ),
    # -- the scheme with no key
    Case("Bearer and nothing else", "no-key", headers=((AUTH, b"Bearer"),)),
    Case("Bearer and a space", "no-key", headers=((AUTH, b"Bearer "),)),
    Case("Bearer and only the key prefix", "no-key", headers=((AUTH, b"Bearer om_"),)),
    Case("lower-case bearer and spaces", "no-key", headers=((AUTH, b"bearer     "),)),
    _patch("Bearer without a key on a write", "no-key", (AUTH, b"Bearer"), JSON_CT),
    # -- headers far larger than any client sends
    Case(
        "a 100 KB key", "huge-header", headers=((AUTH, b"Bearer " + HUGE_KEY),), secrets=(HUGE_KEY,)
    ),
    Case("a 100 KB workspace name", "huge-header", headers=(OWNER, (WS, b"w" * BIG))),
    _patch(
        "a 100 KB filler header on a write",
        "huge-header",
        OWNER,
        JSON_CT,
        (b"X-Filler", b"f" * BIG),
    ),
    Case(
        "a thousand 100-byte headers",
        "huge-header",
        headers=(OWNER, *((b"X-Many-%d" % i, b"m" * 100) for i in range(1000))),
    ),
    _patch(
        "a 100 KB Prefer header on a write",
        "huge-header",
        OWNER,
        JSON_CT,
        (b"Prefer", b"example=" + b"e" * BIG),
    ),
    # -- 10,000-deep JSON
    _patch(
        "a 10,000-deep array as the body of an edit", "deep-json", OWNER, JSON_CT, body=DEEP_ARRAY
    ),
    _patch(
        "a 10,000-deep object as the body of an edit", "deep-json", OWNER, JSON_CT, body=DEEP_OBJECT
    ),
    _patch(
        "a 10,000-deep array in a field of an edit",
        "deep-json",
        OWNER,
        JSON_CT,
        body=b'{"$STR": ' + DEEP_ARRAY + b"}",
    ),
    Case(
        "a 10,000-deep array as the body of a create",
        "deep-json",
        b"POST",
        b"$CREATE",
        (OWNER, JSON_CT),
        DEEP_ARRAY,
        **WRITE,
    ),
    Case(
        "a 10,000-deep object as the body of a create",
        "deep-json",
        b"POST",
        b"$CREATE",
        (OWNER, JSON_CT),
        DEEP_OBJECT,
        **WRITE,
    ),
    _admin("a 10,000-deep array as a fault rule", b"POST", b"/faults", DEEP_ARRAY, ADMIN, JSON_CT),
    _admin(
        "a 10,000-deep object in a fault match",
        b"POST",
        b"/faults",
        b'{"match": ' + DEEP_OBJECT + b"}",
        ADMIN,
        JSON_CT,
    ),
    _admin(
        "a 10,000-deep array in the scopes of a minted key",
        b"POST",
        b"/keys",
        b'{"scopes": ' + DEEP_ARRAY + b"}",
        ADMIN,
        JSON_CT,
    ),
    _admin(
        "a 10,000-deep array as a clock advance",
        b"POST",
        b"/clock",
        b'{"advance_seconds": ' + DEEP_ARRAY + b"}",
        ADMIN,
        JSON_CT,
    ),
    _admin("a 10,000-deep object as a reset", b"POST", b"/reset", DEEP_OBJECT, ADMIN, JSON_CT),
    # -- bodies that are not UTF-8, or not Unicode at all
    _patch(
        "invalid UTF-8 in a string",
        "bad-text",
        OWNER,
        JSON_CT,
        body=b'{"$STR": "\xff\xfe hostile"}',
    ),
    _patch(
        "overlong UTF-8 in a string",
        "bad-text",
        OWNER,
        JSON_CT,
        body=b'{"$STR": "\xc0\xaf hostile"}',
    ),
    _admin(
        "invalid UTF-8 in the name of a minted key",
        b"POST",
        b"/keys",
        b'{"name": "\xff hostile"}',
        ADMIN,
        JSON_CT,
    ),
    _patch(
        "a UTF-16 body",
        "bad-text",
        OWNER,
        (b"Content-Type", b"application/json"),
        body='{"$STR": "hostile edit"}'.encode("utf-16"),
    ),
    _patch(
        "Latin-1 bytes declared as Latin-1",
        "bad-text",
        OWNER,
        (b"Content-Type", b"application/json; charset=latin-1"),
        body=b'{"$STR": "caf\xe9 hostile"}',
    ),
    _patch("a lone high surrogate", "bad-text", OWNER, JSON_CT, body=b'{"$STR": "\\ud800"}'),
    _patch(
        "a lone low surrogate before text",
        "bad-text",
        OWNER,
        JSON_CT,
        body=b'{"$STR": "\\udc00hostile"}',
    ),
    _admin(
        "a lone surrogate in the name of a minted key",
        b"POST",
        b"/keys",
        b'{"name": "\\ud800"}',
        ADMIN,
        JSON_CT,
    ),
    # -- numbers JSON can write and machines cannot hold
    _patch("1e400 for an integer", "numbers", OWNER, JSON_CT, body=b'{"$INT": 1e400}'),
    _patch(
        "-0 for an integer with a positive minimum", "numbers", OWNER, JSON_CT, body=b'{"$INT": -0}'
    ),
    _patch(
        "10**40 for an integer",
        "numbers",
        OWNER,
        JSON_CT,
        body=b'{"$INT": 10000000000000000000000000000000000000000}',
    ),
    _patch("NaN for an integer", "numbers", OWNER, JSON_CT, body=b'{"$INT": NaN}'),
    _patch("Infinity for an integer", "numbers", OWNER, JSON_CT, body=b'{"$INT": -Infinity}'),
    _admin(
        "1e400 seconds on the clock",
        b"POST",
        b"/clock",
        b'{"advance_seconds": 1e400}',
        ADMIN,
        JSON_CT,
    ),
    _admin(
        "NaN seconds on the clock", b"POST", b"/clock", b'{"advance_seconds": NaN}', ADMIN, JSON_CT
    ),
    _admin(
        "the clock moved backwards", b"POST", b"/clock", b'{"advance_seconds": -1}', ADMIN, JSON_CT
    ),
    _admin(
        "the clock moved past the year 9999",
        b"POST",
        b"/clock",
        b'{"advance_seconds": 300000000000}',
        ADMIN,
        JSON_CT,
    ),
    _admin(
        "10**40 seconds on the clock",
        b"POST",
        b"/clock",
        b'{"advance_seconds": 10000000000000000000000000000000000000000}',
        ADMIN,
        JSON_CT,
    ),
    _admin(
        "seconds as a string on the clock",
        b"POST",
        b"/clock",
        b'{"advance_seconds": "1e12"}',
        ADMIN,
        JSON_CT,
    ),
    _admin(
        "10**40 requests a minute for a minted key",
        b"POST",
        b"/keys",
        b'{"rate_limit": 10000000000000000000000000000000000000000}',
        ADMIN,
        JSON_CT,
    ),
    _admin(
        "a minted key expiring in 1e400 seconds",
        b"POST",
        b"/keys",
        b'{"expires_in": 1e400}',
        ADMIN,
        JSON_CT,
    ),
    # -- bodies that are not declared as JSON
    _patch(
        "a JSON edit sent as text/plain", "content-type", OWNER, (b"Content-Type", b"text/plain")
    ),
    _patch("a JSON edit without a Content-Type", "content-type", OWNER),
    _patch(
        "a JSON edit sent as multipart",
        "content-type",
        OWNER,
        (b"Content-Type", b"multipart/form-data; boundary=x"),
    ),
    _admin(
        "a fault rule sent as text/plain",
        b"POST",
        b"/faults",
        RULE_BODY,
        ADMIN,
        (b"Content-Type", b"text/plain"),
    ),
    # -- Content-Length that does not describe the body
    _patch(
        "Content-Length shorter than the body",
        "content-length",
        OWNER,
        JSON_CT,
        (b"Content-Length", b"5"),
        length=False,
    ),
    _patch(
        "Content-Length longer than the body",
        "content-length",
        OWNER,
        JSON_CT,
        (b"Content-Length", b"500"),
        length=False,
        allowed=_NO_ANSWER,
    ),
    _patch(
        "a negative Content-Length",
        "content-length",
        OWNER,
        JSON_CT,
        (b"Content-Length", b"-1"),
        length=False,
    ),
    _patch(
        "a Content-Length that is not a number",
        "content-length",
        OWNER,
        JSON_CT,
        (b"Content-Length", b"abc"),
        length=False,
    ),
    _patch(
        "two different Content-Length headers",
        "content-length",
        OWNER,
        JSON_CT,
        (b"Content-Length", b"5"),
        (b"Content-Length", b"23"),
        length=False,
    ),
    _patch(
        "a Content-Length with a plus sign",
        "content-length",
        OWNER,
        JSON_CT,
        (b"Content-Length", b"+23"),
        length=False,
    ),
    _patch(
        "a 20-digit Content-Length",
        "content-length",
        OWNER,
        JSON_CT,
        (b"Content-Length", b"99999999999999999999"),
        length=False,
        allowed=_NO_ANSWER,
    ),
    _patch(
        "Content-Length and Transfer-Encoding together",
        "content-length",
        OWNER,
        JSON_CT,
        (b"Content-Length", b"23"),
        (b"Transfer-Encoding", b"chunked"),
        length=False,
    ),
    # -- chunked bodies that are not
    _chunked("a chunk size that is not hex", b"zz\r\n" + PATCH_BODY + b"\r\n0\r\n\r\n"),
    _chunked("a chunk longer than its size", b"3\r\n" + PATCH_BODY + b"\r\n0\r\n\r\n"),
    _chunked("no last chunk", b"17\r\n" + PATCH_BODY + b"\r\n", allowed=_NO_ANSWER),
    _chunked("a 40-digit chunk size", b"f" * 40 + b"\r\n" + PATCH_BODY + b"\r\n0\r\n\r\n"),
    _chunked("a negative chunk size", b"-17\r\n" + PATCH_BODY + b"\r\n0\r\n\r\n"),
    Case(
        "an unknown transfer coding",
        "transfer-encoding",
        b"PATCH",
        b"$ITEM",
        (OWNER, JSON_CT, (b"Transfer-Encoding", b"xchunked")),
        PATCH_BODY,
        length=False,
        **WRITE,
    ),
    Case(
        "gzip then chunked over a plain body",
        "transfer-encoding",
        b"PATCH",
        b"$ITEM",
        (OWNER, JSON_CT, (b"Transfer-Encoding", b"gzip, chunked")),
        b"17\r\n" + PATCH_BODY + b"\r\n0\r\n\r\n",
        length=False,
        **WRITE,
    ),
    # -- Prefer and its query twins with values nobody should send
    Case(
        "Prefer example= in Cyrillic on a read",
        "prefer",
        target=b"$ITEM",
        headers=(OWNER, (b"Prefer", "example=пример".encode())),
        allowed=_PRISM,
    ),
    Case(
        "?__example= with invalid UTF-8 on a read",
        "prefer",
        target=b"$ITEM?__example=%FF%FE",
        headers=(OWNER,),
        allowed=_PRISM,
    ),
    _patch(
        "Prefer example= in Cyrillic with a C1 control on a write",
        "prefer",
        OWNER,
        JSON_CT,
        (b"Prefer", "example=пример".encode()),
    ),
    _patch(
        "?__example= with a UTF-8 C1 control on a write",
        "prefer",
        OWNER,
        JSON_CT,
        target=b"$ITEM?__example=%D0%BF%C2%85",
    ),
    _patch(
        "Prefer code= in Cyrillic on a write",
        "prefer",
        OWNER,
        JSON_CT,
        (b"Prefer", "code=четыре".encode()),
    ),
    _patch(
        "?__code= in Cyrillic on a write",
        "prefer",
        OWNER,
        JSON_CT,
        target=b"$ITEM?__code=%D1%87%D0%B5",
    ),
    _patch(
        "a 20-digit delay", "prefer", OWNER, JSON_CT, (b"Prefer", b"delay=99999999999999999999")
    ),
    _patch("a negative delay", "prefer", OWNER, JSON_CT, (b"Prefer", b"delay=-1")),
    _patch("a five-digit status", "prefer", OWNER, JSON_CT, (b"Prefer", b"code=99999")),
    _patch(
        "a redirect status forced on a write", "prefer", OWNER, JSON_CT, (b"Prefer", b"code=302")
    ),
    _patch(
        "Retry-After of 1e400",
        "prefer",
        OWNER,
        JSON_CT,
        (b"Prefer", b"code=429, retry-after=1e400"),
    ),
    _patch("?__delay=1e400", "prefer", OWNER, JSON_CT, target=b"$ITEM?__delay=1e400"),
    # -- query parameters out of range or out of the alphabet
    Case("page=0", "query", target=b"$LIST?page=0", headers=(OWNER,)),
    Case("page=-1", "query", target=b"$LIST?page=-1", headers=(OWNER,)),
    Case("page=-0", "query", target=b"$LIST?page=-0", headers=(OWNER,)),
    Case(
        "page=10**30",
        "query",
        target=b"$LIST?page=" + b"1" + b"0" * 30,
        headers=(OWNER,),
        allowed=_PAST_END,
    ),
    Case("per_page=1000", "query", target=b"$LIST?per_page=1000", headers=(OWNER,)),
    Case("per_page=1e400", "query", target=b"$LIST?per_page=1e400", headers=(OWNER,)),
    Case("sort on an unknown field", "query", target=b"$LIST?sort=no_such_field", headers=(OWNER,)),
    Case("a raw NUL in the query", "query", target=b"$LIST?page=1\x00", headers=(OWNER,)),
    Case("%00 in page", "query", target=b"$LIST?page=1%00", headers=(OWNER,)),
    Case("%00 in sort", "query", target=b"$LIST?sort=%00", headers=(OWNER,)),
    Case("overlong UTF-8 in a query value", "query", target=b"$LIST?sort=%C0%AF", headers=(OWNER,)),
    Case(
        "a parameter the operation does not define",
        "query",
        target=b"$LIST?hostile=1",
        headers=(OWNER,),
        allowed=_IGNORED,
    ),
    Case("the key in ?api_key= and no header", "query", target=b"$LIST?api_key=$OWNER"),
    Case(
        "the key in ?access_token= on a write",
        "query",
        b"PATCH",
        b"$ITEM?access_token=$OWNER",
        (JSON_CT,),
        PATCH_BODY,
        **WRITE,
    ),
    # -- paths that try to leave the API
    Case(
        "../ from the API to the control API",
        "path",
        b"POST",
        b"/api/v1/../_sandbox/keys",
        (OWNER, JSON_CT),
        MINT_BODY,
        **WRITE,
    ),
    Case(
        "%2e%2e from the API to the control API",
        "path",
        b"POST",
        b"/api/v1/%2e%2e/_sandbox/reset",
        (OWNER, JSON_CT),
        b"{}",
        **WRITE,
    ),
    Case(
        "%2e%2e with the admin token",
        "path",
        b"POST",
        b"/api/v1/%2e%2e/_sandbox/keys",
        (ADMIN, JSON_CT),
        MINT_BODY,
        **WRITE,
    ),
    Case(
        "double slashes on a read",
        "path",
        target=b"/$DOUBLE_ITEM",
        headers=(OWNER,),
        allowed=_SAME_READ,
    ),
    Case("an 8 KB path", "path", target=b"$LIST/" + b"p" * 8192, headers=(OWNER,)),
    _patch("an 8 KB path on a write", "path", OWNER, JSON_CT, target=b"$ITEM" + b"q" * 8192),
    Case("an encoded slash in a path", "path", target=b"$LIST%2F..%2F", headers=(OWNER,)),
    Case("%00 in a path", "path", target=b"$LIST/%00", headers=(OWNER,)),
    Case("raw UTF-8 in a path", "path", target="$LIST/ключ".encode(), headers=(OWNER,)),
    Case(
        "double slashes in the control API",
        "path",
        b"POST",
        b"//_sandbox//keys",
        (JSON_CT,),
        MINT_BODY,
        **WRITE,
    ),
    # -- methods that are not the API's
    Case("PROPFIND", "method", b"PROPFIND", headers=(OWNER,)),
    Case("TRACE with a key", "method", b"TRACE", headers=(OWNER,)),
    Case("PURGE on a record", "method", b"PURGE", b"$ITEM", (OWNER,), **WRITE),
    Case("a lower-case method", "method", b"delete", b"$ITEM", (OWNER,), **WRITE),
    Case("CONNECT", "method", b"CONNECT", b"127.0.0.1:80", (OWNER,)),
    Case(
        "POST with X-HTTP-Method-Override: DELETE",
        "method",
        b"POST",
        b"$ITEM",
        (OWNER, (b"X-HTTP-Method-Override", b"DELETE")),
        **WRITE,
    ),
    Case("HEAD on an action", "method", b"HEAD", b"$ACTION", (OWNER,)),
    Case("HEAD on a record", "method", b"HEAD", b"$ITEM", (OWNER,), allowed=_HEAD_READ),
    Case("OPTIONS on a list", "method", b"OPTIONS", headers=(OWNER,), allowed=_PREFLIGHT),
    Case(
        "OPTIONS preflight for a delete",
        "method",
        b"OPTIONS",
        b"$ITEM",
        ((b"Origin", b"http://evil.example"), (b"Access-Control-Request-Method", b"DELETE")),
        allowed=_PREFLIGHT,
    ),
    # -- the control API without its token
    _admin("reset without a token", b"POST", b"/reset", b"{}", JSON_CT),
    _admin("mint a key with a wrong token", b"POST", b"/keys", MINT_BODY, JSON_CT, WRONG_ADMIN),
    _admin(
        "add a fault rule with a wrong token", b"POST", b"/faults", RULE_BODY, JSON_CT, WRONG_ADMIN
    ),
    _admin("delete every fault rule without a token", b"DELETE", b"/faults", None),
    _admin(
        "move the clock with an empty token",
        b"POST",
        b"/clock",
        b'{"advance_seconds": 60}',
        JSON_CT,
        (b"X-Sandbox-Admin-Token", b""),
    ),
    _admin(
        "the token with a character added",
        b"POST",
        b"/keys",
        MINT_BODY,
        JSON_CT,
        (b"X-Sandbox-Admin-Token", b"$ADMINx"),
    ),
    _admin("the token in the query", b"POST", b"/keys?token=$ADMIN", MINT_BODY, JSON_CT),
    _admin("an API key instead of the token", b"GET", b"/keys", None, OWNER),
    _admin("revoke a key with a wrong token", b"DELETE", b"/keys/$KEYID", None, WRONG_ADMIN),
    _admin(
        "clock with a field it does not define",
        b"POST",
        b"/clock",
        b'{"advance_seconds": 1, "now": "9999-12-31T00:00:00Z"}',
        ADMIN,
        JSON_CT,
    ),
    # -- workspace names that are not names
    Case("workspace ..", "workspace", headers=(OWNER, (WS, b".."))),
    Case("a 65-character workspace", "workspace", headers=(OWNER, (WS, b"w" * 65))),
    Case("a workspace in Cyrillic", "workspace", headers=(OWNER, (WS, "пространство".encode()))),
    Case("workspace ../default", "workspace", headers=(OWNER, (WS, b"../default"))),
    Case("a workspace with a NUL", "workspace", headers=(OWNER, (WS, b"ws\x00x"))),
    Case("an empty workspace", "workspace", headers=(OWNER, (WS, b""))),
    _patch(
        "a workspace with a leading dot on a write", "workspace", OWNER, JSON_CT, (WS, b".hidden")
    ),
    Case(
        "workspace default when hosted", "workspace", headers=(OWNER, (WS, b"default")), hosted=True
    ),
    _patch(
        "workspace default on a write when hosted",
        "workspace",
        OWNER,
        JSON_CT,
        (WS, b"default"),
        hosted=True,
    ),
    Case(
        "two keys when hosted: usable then unknown",
        "repeated-auth",
        headers=(OWNER, (AUTH, b"Bearer " + FAKE_KEY)),
        hosted=True,
        secrets=(FAKE_KEY,),
    ),
)


# ---------------------------------------------------------------------- targets from the spec
@dataclass(slots=True)
class Targets:
    """What the placeholders stand for on one sandbox, read from the spec and the recipe."""

    values: dict[bytes, bytes]
    lists: list[str]  # every list path without parameters (fingerprinted)
    singletons: list[str]  # every read of one fixed record (fingerprinted)
    keys: list[bytes]  # every key secret the suite may send
    # id prefix -> fields that keep pace with the clock: the clock alone moves them, so the
    # fingerprint leaves them out
    live: dict[str, frozenset[str]] = field(default_factory=dict)

    def fill(self, data: bytes) -> bytes:
        for name in sorted(self.values, key=len, reverse=True):
            data = data.replace(name, self.values[name])
        return data


def _schema_props(op: Any) -> dict[str, Any]:
    return dict((op.body_schema or {}).get("properties") or {})


def _free_string(props: dict[str, Any]) -> str | None:
    for name, s in props.items():
        constrained = {"enum", "format", "pattern", "const", "x-ref", "readOnly"} & set(s)
        if s.get("type") == "string" and not constrained and s.get("maxLength", 1000) >= 20:
            return name
    return None


def _bounded_int(props: dict[str, Any]) -> str | None:
    for name, s in props.items():
        if s.get("type") == "integer" and s.get("minimum", 0) >= 1 and "maximum" in s:
            return name
    return None


def _first_id(get: Any, path: str) -> str | None:
    status, doc = get(path + "?per_page=1")
    items = (doc or {}).get("data", {}).get("items") if status == 200 else None
    return items[0]["id"] if items else None


def discover(probe: Probe, spec_path: Path | None = None, recipe: str = "default") -> Targets:
    """Pick, from the spec, one editable record, its list, a create and an action."""
    from opsmerge_contracts.sandboxes import SandboxKeys
    from opsmerge_sandbox.pipeline.live_times import live_fields_by_prefix
    from opsmerge_sandbox.spec import SPEC_PATH, load_spec
    from opsmerge_sandbox.world.recipe import load_recipe

    keys = SandboxKeys(load_recipe(recipe).keys)
    owner = keys.owner
    probe.owner = owner.key.encode()
    get = probe.api
    spec = load_spec(spec_path or SPEC_PATH)
    base = spec.base_path
    ops = spec.operations
    by = {(op.method, op.path): op for op in ops}
    lists = [op.path for op in ops if op.kind == "list" and "{" not in op.path]
    nested = [op.path for op in ops if op.kind == "list" and op.path.count("{") == 1]
    singles = [
        op.path for op in ops if op.method == "GET" and op.kind == "get" and "{" not in op.path
    ]
    item = action = None
    str_prop = int_prop = ""
    for op in ops:
        if op.kind != "update" or op.path.count("{") != 1 or not op.path.endswith("}"):
            continue
        parent = op.path.rsplit("/", 1)[0]
        s, i = _free_string(_schema_props(op)), _bounded_int(_schema_props(op))
        if (
            s
            and i
            and ("DELETE", op.path) in by
            and ("GET", parent) in by
            and ("POST", parent) in by
        ):
            rid = _first_id(get, base + parent)
            path = base + op.path[: op.path.index("{")] + rid if rid else ""
            body = PATCH_BODY.replace(b"$STR", s.encode())
            # Only a record the unhostile request really edits and deletes proves anything.
            if rid and probe.try_write("PATCH", path, body) and probe.try_write("DELETE", path):
                item, str_prop, int_prop = (parent, path.removeprefix(base)), s, i
                break
    if item is None:
        raise SystemExit("no editable, deletable record with a bounded integer field")
    for op in ops:
        if (
            op.kind == "action"
            and op.method == "POST"
            and op.path.count("{") == 1
            and not op.body_required
            and not op.hints.when
        ):
            parent = op.path.split("/{", 1)[0]
            rid = _first_id(get, base + parent) if ("GET", parent) in by else None
            path = op.path.replace(op.path[op.path.index("{") : op.path.index("}") + 1], rid or "")
            if rid and probe.try_write("POST", base + path):
                action = path
                break
    if action is None:
        raise SystemExit("no action the owner's key can run")
    probe.reset()  # the calibration wrote to a workspace of its own: drop it
    other = next(
        k
        for k in keys
        if k.access == "full"
        and not k.revoked
        and k.expires_at is None
        and k.rate_limit is None
        and k.key != owner.key
    )
    limited = keys.limited
    status, doc = probe.admin("GET", "/_sandbox/keys")
    key_id = doc["data"]["items"][0]["id"] if status == 200 else "key_unknown"
    values = {
        b"$OWNER": owner.key.encode(),
        b"$OTHER": other.key.encode(),
        b"$LIMITED": limited.key.encode(),
        b"$LIST": (base + item[0]).encode(),
        b"$CREATE": (base + item[0]).encode(),
        b"$ITEM": (base + item[1]).encode(),
        b"$DOUBLE_ITEM": (base + item[1]).replace("/", "//").encode(),
        b"$ACTION": (base + action).encode(),
        b"$STR": str_prop.encode(),
        b"$INT": int_prop.encode(),
        b"$KEYID": key_id.encode(),
        b"$ADMIN": (probe.admin_token or "").encode(),
    }
    # Lists under the two records the writes aim at (what an action creates there, say).
    records = {item[1].rpartition("/")[0]: item[1].rpartition("/")[2]}
    owner_record = action.rpartition("/")[0]  # the action's own segment dropped
    records[owner_record.rpartition("/")[0]] = owner_record.rpartition("/")[2]
    for path in nested:
        rid = records.get(path[: path.index("{")].rstrip("/"))
        if rid:
            lists.append(path[: path.index("{")] + rid + path[path.index("}") + 1 :])
    return Targets(
        values,
        [base + p for p in lists],
        [base + p for p in singles],
        [k.key.encode() for k in keys],
        live_fields_by_prefix(spec),
    )


# ---------------------------------------------------------------------- raw HTTP
@dataclass(slots=True)
class Answer:
    status: int | None  # None: no status line came back
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    note: str = ""  # how the exchange ended, when it did not end with a full answer

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


def _dechunk(data: bytes) -> bytes:
    out, rest = [], data
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)


def parse_answer(raw: bytes, head_request: bool = False) -> Answer:
    """The first HTTP/1.1 response in `raw`: status, headers, and its body."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1."):
        return Answer(None, [], b"", raw, "no HTTP answer" if raw else "no bytes back")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        return Answer(None, [], b"", raw, "unreadable status line")
    headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
    answer = Answer(status, headers, b"", raw)
    if head_request:
        return answer
    if (answer.header("transfer-encoding") or "").lower() == "chunked":
        answer.body = _dechunk(rest)
    else:
        length = answer.header("content-length")
        answer.body = rest[: int(length)] if length and length.isdigit() else rest
    return answer


def exchange(
    port: int, data: bytes, head_request: bool = False, timeout: float = READ_TIMEOUT
) -> Answer:
    """Send `data` on a fresh loopback connection; read until the server closes."""
    chunks: list[bytes] = []
    note = ""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError as exc:  # the server may answer and close before reading it all
            note = f"send stopped: {type(exc).__name__}"
        half_closed = False
        while True:
            try:
                got = sock.recv(65536)
            except TimeoutError:
                if half_closed or chunks:
                    note = note or "the server kept the connection open"
                    break
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)  # nothing more is coming: say so
                half_closed = True
                continue
            except OSError as exc:
                note = note or f"connection {type(exc).__name__}"
                break
            if not got:
                break
            chunks.append(got)
    answer = parse_answer(b"".join(chunks), head_request)
    answer.note = answer.note or note
    return answer


def render(case: Case, targets: Targets) -> bytes:
    """The bytes of a case's request, placeholders filled in."""
    if case.raw is not None:
        return targets.fill(case.raw)
    lines = [
        targets.fill(case.method) + b" " + targets.fill(case.target) + b" HTTP/1.1",
        b"Host: 127.0.0.1",
    ]
    lines += [name + b": " + targets.fill(value) for name, value in case.headers]
    body = targets.fill(case.body) if case.body is not None else b""
    if case.body is not None and case.length:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def case_secrets(case: Case, targets: Targets) -> list[bytes]:
    """Every key-like string this case sends: the placeholders it uses and its own."""
    text = b"".join((case.raw or b"", case.target, case.body or b"", *(v for _, v in case.headers)))
    found = [
        targets.values[p]
        for p in (b"$OWNER", b"$OTHER", b"$LIMITED", b"$ADMIN")
        if p in text and p in targets.values
    ]
    return found + list(case.secrets)


def leaked(data: bytes, secret: bytes, shown: int = 0) -> bool:
    """Whether `data` holds LEAK_WINDOW consecutive bytes of `secret` beyond its first `shown`."""
    windows = {
        secret[i : i + LEAK_WINDOW]
        for i in range(len(secret) - LEAK_WINDOW + 1)
        if i + LEAK_WINDOW > shown
    }
    return any(w in data for w in windows)


# ---------------------------------------------------------------------- the verdict
def envelope_problem(answer: Answer, catalogue: Any, head_request: bool = False) -> str | None:
    """None when a 4xx answer carries the error envelope with a code of its status."""
    if not (answer.header("content-type") or "").startswith("application/json"):
        return f"content-type {answer.header('content-type')!r}, body {answer.body[:60]!r}"
    if head_request:
        return None  # an answer to HEAD has the headers of the envelope and no body
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return "a body that is not JSON"
    err = doc.get("error") if isinstance(doc, dict) and len(doc) == 1 else None
    if not isinstance(err, dict):
        return 'no {"error": {...}} envelope'
    if not isinstance(err.get("message"), str) or not err["message"]:
        return "an error without a message"
    entry = catalogue.codes.get(err.get("code"))
    if entry is None:
        return f"code {err.get('code')!r} is not in the catalogue"
    if entry.status != answer.status:
        return f"{err['code']} travels with {entry.status}"
    for detail in err.get("details") or ():
        if not isinstance(detail, dict) or not {"location", "field", "message"} <= set(detail):
            return f"{err['code']} with a detail without location/field/message"
    return None


@dataclass(slots=True)
class Outcome:
    case: Case
    status: int | None
    code: str | None
    verdict: str  # refused | allowed | server-error | bad-envelope | not-refused | no-answer
    problem: str = ""
    state_changed: list[str] = field(default_factory=list)
    leak: bool = False

    @property
    def failed(self) -> bool:
        return self.verdict not in ("refused", "allowed") or bool(self.state_changed) or self.leak


def judge(case: Case, answer: Answer, catalogue: Any) -> Outcome:
    status = answer.status
    code = None
    if status is not None and status >= 400:
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            code = json.loads(answer.body)["error"]["code"]
    if status is None:
        if case.allowed == _NO_ANSWER:
            return Outcome(case, None, None, "allowed", answer.note)
        return Outcome(case, None, None, "no-answer", answer.note)
    if status >= 500:
        return Outcome(case, status, code, "server-error", answer.body[:120].decode("latin-1"))
    if 400 <= status < 500:
        problem = envelope_problem(answer, catalogue, case.method == b"HEAD")
        if problem:
            return Outcome(case, status, code, "bad-envelope", problem)
        return Outcome(case, status, code, "refused")
    if case.allowed and case.allowed != _NO_ANSWER:
        return Outcome(case, status, code, "allowed", case.allowed)
    return Outcome(case, status, code, "not-refused", f"answered {status}, not refused")


# ---------------------------------------------------------------------- the state
class Probe:
    """Reads the sandbox over plain loopback HTTP: the state fingerprint, the journal, resets."""

    def __init__(self, port: int, admin_token: str | None, owner: bytes | None = None) -> None:
        self.port = port
        self.admin_token = admin_token
        self.owner = owner

    def _call(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, Any]:
        lines = [
            f"{method} {path} HTTP/1.1",
            "Host: 127.0.0.1",
            "Connection: close",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        answer = exchange(
            self.port, "\r\n".join(lines).encode() + b"\r\n\r\n" + (body or b""), timeout=30
        )
        try:
            return answer.status or 0, json.loads(answer.body)
        except ValueError:
            return answer.status or 0, None

    def api(self, path: str, workspace: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.owner.decode()}"} if self.owner else {}
        if workspace is not None:
            headers["X-Sandbox-Workspace"] = workspace
        return self._call("GET", path, headers)

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = json.dumps(body).encode() if body is not None else None
        return self._call(method, path, {"X-Sandbox-Admin-Token": self.admin_token or ""}, raw)

    def try_write(self, method: str, path: str, body: bytes | None = None) -> bool:
        """Whether the owner's key, sent plainly, may make this write (in a scratch workspace)."""
        headers = {
            "Authorization": f"Bearer {(self.owner or b'').decode()}",
            "X-Sandbox-Workspace": CALIBRATION,
        }
        status, _ = self._call(method, path, headers, body)
        return 200 <= status < 300

    def refill(self) -> None:
        """Empty the rate buckets, so no case is refused for the ones before it."""
        self.admin("POST", "/_sandbox/rate-limits/reset")

    def fingerprint(self, targets: Targets) -> dict[str, str]:
        """One digest per piece of state a hostile request could change."""
        from opsmerge_sandbox.pipeline.live_times import without_live_times

        self.refill()
        out: dict[str, str] = {}
        _, ws = self.admin("GET", "/_sandbox/workspaces")
        # "default" is listed once anything has read it: it is there either way
        names = sorted(n for n in (ws or {}).get("data", {}).get("items") or [] if n != "default")
        out["workspaces"] = ",".join(names)
        _, keys = self.admin("GET", "/_sandbox/keys")
        out["keys"] = _digest((keys or {}).get("data"))
        _, clock = self.admin("GET", "/_sandbox/clock")
        out["clock"] = str((clock or {}).get("data", {}).get("offset_seconds"))
        _, faults = self.admin("GET", "/_sandbox/faults")
        rules = [
            {k: v for k, v in r.items() if k not in ("fired", "matched")}
            for r in (faults or {}).get("data", {}).get("items") or []
        ]
        out["faults"] = _digest(rules)
        for workspace in [None, *names]:
            tag = workspace or "default"
            for path in targets.lists:  # the total, and the first record (a write's target)
                read = self.api(path + "?per_page=1", workspace)
                out[f"{tag} {path}"] = _digest(without_live_times(read, targets.live))
            for path in (*targets.singletons, targets.values[b"$ITEM"].decode()):
                read = self.api(path, workspace)
                out[f"{tag} {path}"] = _digest(without_live_times(read, targets.live))
        return out

    def reset(self) -> None:
        self.admin("POST", "/_sandbox/reset", {"keys": True})
        self.admin("DELETE", "/_sandbox/faults")

    def journal(self) -> bytes:
        status, doc = self.admin("GET", "/_sandbox/requests?limit=1000")
        return json.dumps(doc).encode() if status == 200 else b""


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


# ---------------------------------------------------------------------- the sandbox
@dataclass(slots=True)
class Spawned:
    url: str
    port: int
    pid: int
    admin_token: str
    log: Path
    log_start: int  # bytes of the log written before serving (the banner shows the keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def spawn_sandbox(*extra: str) -> Iterator[Spawned]:
    """`opsmerge-sandbox serve --strict` on a free loopback port, as a child process."""
    port = free_port()
    token = "sbx_admin_" + secrets.token_urlsafe(18)
    log = Path(tempfile.mkstemp(prefix="hostile-serve-", suffix=".log")[1])
    env = {**os.environ, "OPSMERGE_SANDBOX_ADMIN_TOKEN": token}
    env.pop("OPSMERGE_SANDBOX_HOSTED", None)
    cmd = [
        sys.executable,
        "-m",
        "opsmerge_sandbox.cli",
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--strict",
        *extra,
    ]
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if (
                    exchange(
                        port,
                        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        timeout=2,
                    ).status
                    == 200
                ):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not answer within 60 s")
            time.sleep(0.1)
        yield Spawned(f"http://{LOOPBACK}:{port}", port, proc.pid, token, log, log.stat().st_size)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.unlink(missing_ok=True)


# ---------------------------------------------------------------------- the run
@dataclass(slots=True)
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    rss_before_kib: int | None = None
    rss_after_kib: int | None = None
    journal_leak: bool = False
    log_leak: bool = False
    seconds: float = 0.0

    def count(self, verdict: str) -> int:
        return sum(o.verdict == verdict for o in self.outcomes)

    @property
    def state_changes(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state_changed]

    @property
    def leaks(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.leak]

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.journal_leak and not self.log_leak

    def figures(self) -> dict[str, Any]:
        return {
            "sent": len(self.outcomes),
            "writes": sum(o.case.write for o in self.outcomes),
            "refused_4xx_with_envelope": self.count("refused"),
            "server_errors_5xx": self.count("server-error"),
            "bad_envelopes": self.count("bad-envelope"),
            "not_refused": self.count("not-refused"),
            "no_answer": self.count("no-answer"),
            "allowed_non_4xx": self.count("allowed"),
            "state_changes": len(self.state_changes),
            "key_leaks_in_answers": len(self.leaks),
            "key_leak_in_journal": self.journal_leak,
            "key_leak_in_server_log": self.log_leak,
            "rss_before_kib": self.rss_before_kib,
            "rss_after_kib": self.rss_after_kib,
            "seconds": round(self.seconds, 1),
            "failures": [
                {
                    "case": o.case.name,
                    "category": o.case.category,
                    "status": o.status,
                    "code": o.code,
                    "verdict": o.verdict,
                    "problem": o.problem,
                    "state_changed": o.state_changed,
                    "leak": o.leak,
                }
                for o in self.failures
            ],
            "allowed": [
                {"case": o.case.name, "status": o.status, "reason": o.case.allowed}
                for o in self.outcomes
                if o.verdict == "allowed"
            ],
        }


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def run_suite(
    port: int,
    admin_token: str,
    pid: int | None = None,
    hosted_port: int | None = None,
    cases: Sequence[Case] = CASES,
    server_log: Path | None = None,
    log_start: int = 0,
) -> Report:
    """Send every case, judge every answer, and fingerprint the state around each one."""
    from opsmerge_sandbox.catalogue import load_catalogue

    catalogue = load_catalogue()
    started = time.perf_counter()
    probe = Probe(port, admin_token)
    targets = discover(probe)
    report = Report(rss_before_kib=rss_kib(pid))
    baseline = probe.fingerprint(targets)
    sent_secrets: set[bytes] = set()
    for case in cases:
        if case.hosted and hosted_port is None:
            continue
        probe.refill()
        secrets_sent = case_secrets(case, targets)
        sent_secrets.update(secrets_sent)
        answer = exchange(
            hosted_port if case.hosted else port,
            render(case, targets),
            head_request=case.method == b"HEAD",
        )
        outcome = judge(case, answer, catalogue)
        outcome.leak = any(leaked(answer.raw, s) for s in secrets_sent)
        if not case.hosted:  # a hosted sandbox has no control API to read its state with
            now = probe.fingerprint(targets)
            outcome.state_changed = _changed(baseline, now)
            if outcome.state_changed:
                probe.reset()
                baseline = probe.fingerprint(targets)
        report.outcomes.append(outcome)
    journal = probe.journal()
    # No part of a key is kept: the journal names keys by name and id only.
    report.journal_leak = any(leaked(journal, s) for s in sent_secrets)
    if server_log is not None:
        log = server_log.read_bytes()[log_start:]
        report.log_leak = any(leaked(log, s) for s in sent_secrets)
    report.rss_after_kib = rss_kib(pid)
    report.seconds = time.perf_counter() - started
    return report


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def print_report(report: Report) -> None:
    f = report.figures()
    print(
        f"hostile: {f['sent']} hostile requests over raw sockets ({f['writes']} write "
        f"attempts) in {f['seconds']} s"
    )
    print(f"  refused      {f['refused_4xx_with_envelope']} answered 4xx with the error envelope")
    print(f"  5xx          {f['server_errors_5xx']}")
    print(f"  bad 4xx      {f['bad_envelopes']} without a valid envelope")
    print(f"  not refused  {f['not_refused']} · no answer {f['no_answer']}")
    print(f"  allowed      {f['allowed_non_4xx']} non-4xx with a reason")
    print(f"  state        {f['state_changes']} cases changed state")
    print(
        f"  key leaks    {f['key_leaks_in_answers']} answers · journal "
        f"{'LEAK' if f['key_leak_in_journal'] else 'clean'} · server log "
        f"{'LEAK' if f['key_leak_in_server_log'] else 'clean'}"
    )
    print(f"  RSS          before {_mib(f['rss_before_kib'])} · after {_mib(f['rss_after_kib'])}")
    for a in f["allowed"]:
        print(f"  ALLOWED {a['status']} {a['case']}: {a['reason']}")
    for x in f["failures"]:
        what = [x["verdict"]] if x["verdict"] not in ("refused", "allowed") else []
        if x["state_changed"]:
            what.append("changed " + "; ".join(x["state_changed"][:3]))
        if x["leak"]:
            what.append("repeats part of a key")
        print(
            f"  FAILED [{x['category']}] {x['case']}: {x['status']} {x['code'] or ''} "
            f"{' · '.join(what)} {x['problem'][:100]}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running sandbox (default: start one)")
    parser.add_argument("--admin-token", default=os.environ.get("OPSMERGE_SANDBOX_ADMIN_TOKEN"))
    parser.add_argument("--pid", type=int, default=None, help="the --url sandbox's process id")
    parser.add_argument("--hosted-url", default=None, help="a running hosted sandbox")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        if args.url:
            if not args.admin_token:
                parser.error("--url needs --admin-token: the state is read through /_sandbox")
            url = urlsplit(args.url)
            if url.hostname != LOOPBACK:
                parser.error(f"refusing to send hostile input anywhere but {LOOPBACK}")
            port, token, pid, log, log_start = url.port or 80, args.admin_token, args.pid, None, 0
            hosted_port = urlsplit(args.hosted_url).port if args.hosted_url else None
        else:
            plain = stack.enter_context(spawn_sandbox())
            hosted = stack.enter_context(spawn_sandbox("--hosted"))
            port, token, pid = plain.port, plain.admin_token, plain.pid
            log, log_start, hosted_port = plain.log, plain.log_start, hosted.port
        report = run_suite(port, token, pid, hosted_port, server_log=log, log_start=log_start)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report.figures(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Webhook signatures: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

The timestamp is signed with the body, so a receiver can refuse a replayed delivery by its age
as well as a tampered one by its digest. The same two functions sign in the sandbox and verify
in the pytest fixture, so the documented scheme and the tested one cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """Whether `header` signs exactly `body` with `secret` (compared in constant time)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not given:
        return False
    expected = signature(secret, int(stamp), body).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, given)
